//! What `berth serve` hands a new user on a fresh data directory: the commands that work
//! verbatim from another shell (berth's client, docker/podman/skopeo, the AWS CLI), each using
//! the credentials file it has just written. The README's quick start is these same steps.

use std::path::{Path, PathBuf};

/// What the next steps depend on.
pub(crate) struct NextSteps<'a> {
    /// `host:port` clients reach the registry at.
    pub host: &'a str,
    /// Whether that address is HTTPS.
    pub tls: bool,
    /// The region of signatures.
    pub region: &'a str,
    /// The administrator's credentials file (profile `berth`).
    pub credentials: &'a Path,
    /// Whether a push creates missing repositories.
    pub create_on_push: bool,
}

/// How the user runs this very binary from a shell: `berth` when that is what `PATH` finds,
/// else its absolute path (e.g. `target/release/berth` after `cargo run --release`).
fn program() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "berth".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|dir| std::fs::canonicalize(dir.join("berth")).is_ok_and(|found| found == me))
    });
    if on_path {
        "berth".into()
    } else {
        me.display().to_string()
    }
}

/// Quotes a path for a POSIX shell when it needs it.
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The block printed on stdout at first start (no secret in it: only the file's path).
pub(crate) fn next_steps(n: &NextSteps<'_>) -> String {
    let berth = program();
    let creds = shell_word(&absolute(n.credentials));
    // Listening on every address: show the loopback one, which works from the same machine.
    let host = match n.host.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => n.host.to_owned(),
    };
    let host = host.as_str();
    let scheme = if n.tls { "https" } else { "http" };
    let tls_flag = if n.tls { "" } else { " --tls-verify=false" };
    // berth's client speaks plain HTTP to loopback hosts by itself; other plain-HTTP ones must
    // be named.
    let insecure = if n.tls || berth_client::registry::plain_http(host, &[]) {
        String::new()
    } else {
        format!(" --insecure-registry {host}")
    };
    let repos = if n.create_on_push {
        "A push creates its repository (--create-on-push: immutable tags but latest, untagged\nimages expire after 7 days)."
            .to_owned()
    } else {
        format!(
            "As in Amazon ECR, a push needs its repository to exist: create it first\n(`{berth} repo create {host}/my/app`), or restart with --create-on-push."
        )
    };
    let mut lines = vec![
        String::new(),
        "berth serve: a new registry. The administrator's AWS access key is in".to_owned(),
        format!("  {creds}"),
        "(profile \"berth\"; keep it secret). From another shell:".to_owned(),
        String::new(),
        "  # berth's client (push, pull, copy, repo, images)".to_owned(),
        format!("  {berth} login {host} --credentials-file {creds} --profile berth{insecure}"),
        String::new(),
        "  # docker, podman, skopeo (a 12-hour token, user AWS, as with Amazon ECR)".to_owned(),
        format!(
            "  {berth} get-login-password {host}{insecure} | podman login{tls_flag} -u AWS --password-stdin {host}"
        ),
        String::new(),
        "  # the AWS CLI, boto3 and the AWS SDKs".to_owned(),
        format!(
            "  export AWS_SHARED_CREDENTIALS_FILE={creds} AWS_PROFILE=berth AWS_REGION={r} AWS_DEFAULT_REGION={r} AWS_ENDPOINT_URL_ECR={scheme}://{host}",
            r = n.region
        ),
        format!(
            "  aws ecr describe-repositories   # AWS CLI before 2.13: add --endpoint-url {scheme}://{host}"
        ),
        String::new(),
        repos,
        String::new(),
    ];
    if in_container() {
        lines.insert(
            4,
            "(In a container: copy the file out first, e.g. `podman cp CONTAINER:/data/root-credentials .`, and use that path.)"
                .to_owned(),
        );
    }
    lines.join("\n")
}

/// Whether this process runs in a container (podman's and docker's marker files).
fn in_container() -> bool {
    Path::new("/run/.containerenv").exists() || Path::new("/.dockerenv").exists()
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_names_every_client_and_no_secret() {
        let text = next_steps(&NextSteps {
            host: "127.0.0.1:5000",
            tls: false,
            region: "eu-west-1",
            credentials: Path::new("/srv/berth data/root-credentials"),
            create_on_push: false,
        });
        assert!(text.contains(
            "login 127.0.0.1:5000 --credentials-file '/srv/berth data/root-credentials' --profile berth"
        ));
        assert!(text.contains(
            "get-login-password 127.0.0.1:5000 | podman login --tls-verify=false -u AWS"
        ));
        assert!(text.contains(
            "AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 AWS_ENDPOINT_URL_ECR=http://127.0.0.1:5000"
        ));
        assert!(text.contains("--create-on-push"));
        assert!(!text.contains("aws_secret_access_key"));
        assert!(!text.contains("--insecure-registry"));
        let remote = next_steps(&NextSteps {
            host: "registry.internal:5000",
            tls: false,
            region: "eu-west-1",
            credentials: Path::new("/srv/root-credentials"),
            create_on_push: true,
        });
        assert!(remote.contains("--profile berth --insecure-registry registry.internal:5000"));
        assert!(remote.contains(
            "get-login-password registry.internal:5000 --insecure-registry registry.internal:5000 |"
        ));
    }
}
