//! The `berth` command line. Exit codes are decided in one place, [`main`].

mod admin;
mod build;
mod cache_rule;
mod config;
mod first_run;
mod gc;
mod lint;
mod login;
mod mcp;
mod migrate;
mod progress;
mod release;
mod replication;
mod repo;
mod scan;
mod serve;
mod transfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// berth — container images, end to end: a registry you can run (OCI Distribution v1.1) and a
/// client that copies images between registries and OCI layouts.
#[derive(Debug, Parser)]
#[command(name = "berth", version = env!("BERTH_VERSION_LONG"), about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success; 1 runtime failure (network, registry refusal, digest mismatch, missing image); 2 usage or configuration error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry (OCI Distribution v1.1 API on /v2/, the Amazon ECR API on POST /,
    /// health on /healthz).
    Serve(serve::ServeArgs),
    /// Manage a registry's users, access keys and identity policies (on its data directory).
    Admin(admin::AdminArgs),
    /// Manage ECR repositories (Amazon ECR or `berth serve`, through the ECR API).
    Repo(repo::RepoArgs),
    /// Pull-through cache rules: repositories PREFIX/… become caches of an upstream registry
    /// (Amazon ECR or `berth serve`, through the ECR API).
    CacheRule(cache_rule::CacheRuleArgs),
    /// Replication: pushes copied to other registries (Amazon ECR or `berth serve`, through the
    /// ECR API).
    Replication(replication::ReplicationArgs),
    /// Reclaim storage nothing references (on a data directory, or a running registry with
    /// --endpoint-url); safe while the registry serves pushes.
    Gc(gc::GcArgs),
    /// List a repository's images (ECR DescribeImages), newest first.
    Images(repo::ImagesArgs),
    /// Copy an image (every platform, byte-exact) between registries, layouts and archives.
    Copy(transfer::CopyArgs),
    /// Push a local image (OCI layout or archive) to a registry.
    Push(transfer::PushArgs),
    /// Pull an image from a registry into an OCI layout or archive.
    Pull(transfer::PullArgs),
    /// Show an image: platforms, digests, sizes, layers; --raw for the manifest as stored.
    Inspect(transfer::InspectArgs),
    /// List a repository's tags.
    Tags(transfer::TagsArgs),
    /// Print the digest an image reference resolves to.
    Digest(transfer::DigestArgs),
    /// Give an image in a registry more tags (no blobs move).
    Tag(transfer::TagArgs),
    /// Delete a tag, or a manifest by digest, from a registry.
    Rm(transfer::RmArgs),
    /// Log in to a registry: a user name and password (docker's config.json), or — for
    /// Amazon ECR and `berth serve` — AWS credentials (no user name).
    Login(login::LoginArgs),
    /// Remove saved credentials for a registry.
    Logout(login::LogoutArgs),
    /// Print a token password for Amazon ECR or `berth serve` (user `AWS`), for docker,
    /// podman and skopeo logins.
    GetLoginPassword(login::GetLoginPasswordArgs),
    /// Build an image from a Dockerfile, for one or several platforms, with no daemon (RUN
    /// through runc or crun; other architectures through qemu-user binfmt).
    Build(build::BuildArgs),
    /// The build store: its usage (du) and garbage collection (prune).
    Builder(build::BuilderArgs),
    /// Release an image: lint, build every platform, make sure the ECR repository exists with
    /// its settings, push under every tag, verify, gate on the scan, print the image by digest.
    Release(release::ReleaseArgs),
    /// Serve berth's tools to AI assistants over MCP (stdio, or streamable HTTP with --listen);
    /// read-only unless --allow-writes.
    Mcp(mcp::McpArgs),
    /// Lint Dockerfiles with hadolint's rules (same ids, severities, config file, pragmas and
    /// JSON output), judged on a real parse of the Dockerfile and of RUN's shell.
    Lint(lint::LintArgs),
    /// Scan an image for vulnerable packages (OS and language packages, every layer, whiteouts
    /// honoured) against an offline OSV database; `berth scan db` fills it.
    Scan(scan::ScanArgs),
}

/// A usage or configuration error (exit code 2), as opposed to a runtime failure (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Ends the run with this exit code and no message (the command already said why).
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitWith(pub u8);

/// `berth … | head` ends as other Unix tools do when the reader goes away: quietly, with the
/// status a SIGPIPE would give (141), instead of a panic from `println!` (Rust ignores SIGPIPE,
/// and restoring its default action needs `unsafe`, which the workspace denies).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload_as_str().unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message already
/// holds (library errors name their cause in their own message, as `{path}: {source}`).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Repo(args) => repo::run_repo(args),
        Command::Gc(args) => gc::run(args),
        Command::CacheRule(args) => cache_rule::run(args),
        Command::Replication(args) => replication::run(args),
        Command::Images(args) => repo::run_images(args),
        Command::Copy(args) => transfer::run_copy(args),
        Command::Push(args) => transfer::run_push(args),
        Command::Pull(args) => transfer::run_pull(args),
        Command::Inspect(args) => transfer::run_inspect(args),
        Command::Tags(args) => transfer::run_tags(args),
        Command::Digest(args) => transfer::run_digest(args),
        Command::Tag(args) => transfer::run_tag(args),
        Command::Rm(args) => transfer::run_rm(args),
        Command::Login(args) => login::run_login(args),
        Command::Logout(args) => login::run_logout(args),
        Command::GetLoginPassword(args) => login::run_get_login_password(args),
        Command::Build(args) => build::go_rootless(true).and_then(|()| build::run(args)),
        Command::Builder(args) => build::go_rootless(true).and_then(|()| build::builder(args)),
        Command::Lint(args) => lint::run(args),
        Command::Release(args) => build::go_rootless(true).and_then(|()| release::run(args)),
        Command::Mcp(args) => build::go_rootless(false).and_then(|()| mcp::run(args)),
        Command::Scan(args) => scan::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ExitWith(code)) = e.downcast_ref::<ExitWith>() {
                return ExitCode::from(*code);
            }
            // Output written with `writeln!` to a reader that went away (`berth … | head`).
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::from(141);
            }
            eprintln!("berth: error: {}", error_text(&e));
            let usage = e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<berth_ops::OpsError>()
                    .is_some_and(berth_ops::OpsError::is_usage);
            if usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("Permission denied");
        let lib = berth_build::BuildError::Io {
            path: "/store/x".into(),
            source: io,
        };
        let e = anyhow::Error::new(lib).context("opening the store");
        assert_eq!(
            super::error_text(&e),
            "opening the store: /store/x: Permission denied"
        );
    }
}
