//! berth's client and server finding each other's auth with no extra configuration: the server
//! advertises ECR-style auth and its region, the client then uses the AWS credential chain
//! (`berth login HOST` with no arguments remembers that); `--create-on-push`; errors that name
//! the next step.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Server;

/// A user's machine: a fresh HOME (so `~/.aws`, `~/.config/berth`, `~/.docker` are its own) and
/// no AWS or berth environment at all.
struct User {
    home: PathBuf,
}

impl User {
    fn new(dir: &Path) -> User {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        User { home }
    }

    /// Puts the server's administrator key in `~/.aws/credentials` as the default profile.
    fn default_profile_from(&self, server: &Server) {
        let text = std::fs::read_to_string(server.data.join("root-credentials")).unwrap();
        std::fs::create_dir_all(self.home.join(".aws")).unwrap();
        std::fs::write(
            self.home.join(".aws/credentials"),
            text.replace("[berth]", "[default]"),
        )
        .unwrap();
    }

    fn berth(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(args).env("HOME", &self.home);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("BERTH_") || k.starts_with("XDG_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env_remove("DOCKER_CONFIG").output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(!out.status.success(), "berth {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn fixture() -> String {
    format!("oci:{}", common::fixtures().join("busybox").display())
}

#[test]
fn berth_login_with_no_arguments_is_all_a_push_needs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_auth(&dir.path().join("data"), &["--region", "eu-west-3"], &[]);
    let host = server.addr.clone();
    let user = User::new(dir.path());

    // No credentials anywhere yet: the error names the file and the command.
    let err = user.fails(&["push", &fixture(), &format!("{host}/team/app:v1")]);
    assert!(
        err.contains(&format!("berth login {host} --credentials-file")),
        "{err}"
    );

    user.default_profile_from(&server);
    let said = user.ok(&["login", &host]);
    assert!(said.contains("region eu-west-3"), "{said}");
    let logins = std::fs::read_to_string(user.home.join(".config/berth/logins.json")).unwrap();
    assert!(
        logins.contains("eu-west-3") && !logins.contains("aws_secret"),
        "{logins}"
    );

    // The ECR commands take the registry from the name and the region from the server.
    user.ok(&["repo", "create", &format!("{host}/team/app")]);
    user.ok(&["push", &fixture(), &format!("{host}/team/app:v1")]);
    let images = user.ok(&["images", "ls", &format!("{host}/team/app")]);
    assert!(images.contains("v1"), "{images}");
    let tags = user.ok(&["tags", &format!("{host}/team/app")]);
    assert_eq!(tags.trim(), "v1");

    // docker/podman/skopeo get their password from berth.
    let password = user.ok(&["get-login-password", &host]);
    let resp = common::client()
        .get(server.url("/v2/"))
        .basic_auth("AWS", Some(password.trim()))
        .send();
    let status = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(resp)
        .unwrap()
        .status();
    assert_eq!(status, 200);

    // A named profile in a named file (what first start prints), replacing the first login.
    std::fs::remove_file(user.home.join(".aws/credentials")).unwrap();
    let creds = server.data.join("root-credentials");
    user.ok(&[
        "login",
        &host,
        "--credentials-file",
        creds.to_str().unwrap(),
        "--profile",
        "berth",
    ]);
    user.ok(&["push", &fixture(), &format!("{host}/team/app:v2")]);

    // A wrong profile fails at login, naming it; logout forgets the host.
    let err = user.fails(&["login", &host, "--profile", "nobody"]);
    assert!(err.contains("nobody"), "{err}");
    user.ok(&["logout", &host]);
    let logins = std::fs::read_to_string(user.home.join(".config/berth/logins.json")).unwrap();
    assert!(!logins.contains(&host), "{logins}");
}

#[test]
fn the_server_is_recognised_without_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_auth(&dir.path().join("data"), &[], &[]);
    let host = server.addr.clone();
    let user = User::new(dir.path());
    user.default_profile_from(&server);
    // No `berth login`: the 401 says this registry takes AWS credentials, in its region.
    user.ok(&["repo", "create", &format!("{host}/a/b")]);
    user.ok(&["push", &fixture(), &format!("{host}/a/b:v1")]);
    assert_eq!(user.ok(&["tags", &format!("{host}/a/b")]).trim(), "v1");
    // A registry that does not take AWS credentials (a plain Basic challenge) is told apart,
    // and the error says how to log in to it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let other = rt.block_on(async {
        let app = axum::Router::new().route(
            "/v2/",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [("www-authenticate", "Basic realm=\"other\"")],
                    "",
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let err = user.fails(&["login", &other]);
    assert!(
        err.contains("does not take AWS credentials")
            && err.contains(&format!("berth login {other} -u USER --password-stdin")),
        "{err}"
    );
}

/// The administrator's access key id and secret from the server's `root-credentials`.
fn root_key(server: &Server) -> (String, String) {
    let text = std::fs::read_to_string(server.data.join("root-credentials")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
            .unwrap()
    };
    (field("aws_access_key_id"), field("aws_secret_access_key"))
}

#[test]
fn create_on_push_installs_the_recommended_template() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_auth(&data, &[], &[]);
    let host = server.addr.clone();
    let user = User::new(dir.path());
    user.default_profile_from(&server);
    let (_, secret) = root_key(&server);
    // Without it, the push's 404 says what to do.
    let err = user.fails(&["push", &fixture(), &format!("{host}/new/app:v1")]);
    assert!(
        err.contains("NAME_UNKNOWN") && err.contains("--create-on-push"),
        "{err}"
    );
    assert!(!err.contains(&secret));
    drop(server);

    let server = Server::start_auth(&data, &["--create-on-push"], &[]);
    let host = server.addr.clone();
    user.ok(&["push", &fixture(), &format!("{host}/new/app:v1")]);
    let repo = user.ok(&["repo", "describe", &format!("{host}/new/app"), "--json"]);
    let repo: serde_json::Value = serde_json::from_str(&repo).unwrap();
    let text = repo.to_string();
    assert!(text.contains("IMMUTABLE_WITH_EXCLUSION"), "{text}");
    assert!(text.contains("latest"), "{text}");
    assert!(text.contains("\"scanOnPush\":true"), "{text}");
    let policy = user.ok(&["repo", "lifecycle", &format!("{host}/new/app")]);
    assert!(
        policy.contains("untagged") && policy.contains("sinceImagePushed"),
        "{policy}"
    );
    // `latest` moves to another image; any other tag is immutable.
    let other_image = format!("oci:{}", common::fixtures().join("busybox-amd64").display());
    user.ok(&["push", &fixture(), &format!("{host}/new/app:latest")]);
    user.ok(&["push", &other_image, &format!("{host}/new/app:latest")]);
    let err = user.fails(&["push", &other_image, &format!("{host}/new/app:v1")]);
    assert!(err.contains("immutable"), "{err}");
    drop(server);

    // Started without the flag, berth removes its own template: pushes create nothing.
    let server = Server::start_auth(&data, &[], &[]);
    let host = server.addr.clone();
    let err = user.fails(&["push", &fixture(), &format!("{host}/second/app:v1")]);
    assert!(err.contains("NAME_UNKNOWN"), "{err}");

    // An operator's own ROOT template is kept by --create-on-push (and decides what a push
    // creates: here mutable tags, no scanning).
    let (id, secret) = root_key(&server);
    let creds = aws_sdk_ecr::config::Credentials::new(id, secret, None, None, "test");
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(format!("http://{host}"))
        .build();
    let client = aws_sdk_ecr::Client::from_conf(conf);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(
            client
                .create_repository_creation_template()
                .prefix("ROOT")
                .applied_for(aws_sdk_ecr::types::RctAppliedFor::CreateOnPush)
                .image_tag_mutability(aws_sdk_ecr::types::ImageTagMutability::Mutable)
                .send(),
        )
        .unwrap();
    drop(server);
    let server = Server::start_auth(&data, &["--create-on-push"], &[]);
    let host = server.addr.clone();
    user.ok(&["push", &fixture(), &format!("{host}/third/app:v1")]);
    let repo = user.ok(&["repo", "describe", &format!("{host}/third/app"), "--json"]);
    assert!(repo.contains("\"MUTABLE\""), "{repo}");
    assert!(!repo.contains("\"scanOnPush\":true"), "{repo}");
    user.ok(&["push", &other_image, &format!("{host}/third/app:v1")]);
}
