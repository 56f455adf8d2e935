//! `berth login / logout / get-login-password`: a user name and password in docker's
//! config.json, or — with no user name — AWS credentials for Amazon ECR and `berth serve`,
//! remembered in berth's own login file (see [`berth_client::logins`]).

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use berth_client::ClientError;
use berth_client::auth::{Credentials, DockerConfig};
use berth_client::logins::{AwsLogin, Logins};
use clap::Args;

use crate::UsageError;
use crate::transfer::{RegistryOpts, runtime};

/// `berth login REGISTRY`.
#[derive(Debug, Args)]
#[command(
    after_help = "With -u: the user name and password are saved in docker's config.json (or its credential helper), as `docker login` does.\nWithout -u: for Amazon ECR and `berth serve` (which says so on /v2/), berth authenticates with AWS credentials — the credential chain, or --profile / --credentials-file — and remembers that choice for the host; tokens are fetched and renewed as needed. `berth login 127.0.0.1:5000 --credentials-file berth-data/root-credentials --profile berth` uses the administrator's keys `berth serve` wrote on first start."
)]
pub struct LoginArgs {
    /// The registry host, e.g. `ghcr.io` or `127.0.0.1:5000` (`docker.io` for Docker Hub)
    registry: String,
    /// User name (omit it for Amazon ECR and `berth serve`: AWS credentials are used)
    #[arg(short, long)]
    username: Option<String>,
    /// Read the password (or token) from standard input
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// The password (prefer --password-stdin: arguments are visible to other users)
    #[arg(short, long, conflicts_with = "password_stdin", requires = "username")]
    password: Option<String>,
    /// AWS profile to authenticate with (without -u)
    #[arg(long, conflicts_with = "username")]
    profile: Option<String>,
    /// An AWS credentials file to read besides ~/.aws/credentials, e.g. the
    /// `root-credentials` file `berth serve` writes in its data directory (without -u)
    #[arg(long, value_name = "FILE", conflicts_with = "username")]
    credentials_file: Option<PathBuf>,
    /// The region to request tokens in [default: from the host name, or the one `berth serve`
    /// advertises]
    #[arg(long, conflicts_with = "username")]
    region: Option<String>,
    #[command(flatten)]
    registry_opts: RegistryOpts,
}

/// `berth logout REGISTRY`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry host
    registry: String,
}

/// `berth get-login-password REGISTRY`.
#[derive(Debug, Args)]
#[command(
    after_help = "Prints a registry password (a 12-hour token, user `AWS`) for Amazon ECR or `berth serve`, as `aws ecr get-login-password` does, using the AWS credentials `berth login HOST` chose:\n  berth get-login-password 127.0.0.1:5000 | podman login --tls-verify=false -u AWS --password-stdin 127.0.0.1:5000"
)]
pub struct GetLoginPasswordArgs {
    /// The registry host
    registry: String,
    #[command(flatten)]
    registry_opts: RegistryOpts,
}

/// Stores credentials in docker's config.json, or an AWS-credentials login in berth's file.
pub fn run_login(args: LoginArgs) -> anyhow::Result<()> {
    let Some(username) = args.username else {
        return aws_login(
            &args.registry,
            args.profile,
            args.credentials_file,
            args.region,
            &args.registry_opts.insecure,
        );
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("reading the password from stdin")?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => {
            return Err(
                UsageError("give the password with --password-stdin (or -p)".into()).into(),
            );
        }
    };
    if password.is_empty() {
        return Err(UsageError("the password is empty".into()).into());
    }
    let mut config = DockerConfig::load_default()?;
    config.store(&args.registry, &Credentials::Basic { username, password })?;
    // A password login replaces an AWS-credentials one.
    Logins::load_default()?.remove(&args.registry)?;
    println!("Login Succeeded ({})", config.path().display());
    Ok(())
}

/// `berth login HOST` without a user name (the workflow is [`berth_client::logins::aws_login`]).
fn aws_login(
    host: &str,
    profile: Option<String>,
    credentials_file: Option<PathBuf>,
    region: Option<String>,
    insecure: &[String],
) -> anyhow::Result<()> {
    let credentials_file = match credentials_file {
        Some(f) => Some(std::fs::canonicalize(&f).map_err(|e| {
            UsageError(format!(
                "credentials file {}: {e} (berth serve writes root-credentials in its data directory on first start)",
                f.display()
            ))
        })?),
        None => None,
    };
    let mut how = AwsLogin::default();
    how.profile = profile;
    how.credentials_file = credentials_file;
    how.region = region;
    how.insecure = insecure.to_vec();
    let done = runtime()?
        .block_on(berth_client::logins::aws_login(host, how))
        .map_err(usage_if_not_aws)
        .with_context(|| format!("logging in to {host}"))?;
    let who = match (&done.login.profile, &done.login.credentials_file) {
        (Some(p), Some(f)) => format!("AWS profile {p} of {}", f.display()),
        (Some(p), None) => format!("AWS profile {p}"),
        (None, Some(f)) => format!("the default profile of {}", f.display()),
        (None, None) => "the AWS credential chain".to_owned(),
    };
    let region = done.region.as_deref().unwrap_or("from the AWS config");
    println!(
        "Login Succeeded: {host} with {who}, region {region} (remembered in {})",
        done.file.display()
    );
    Ok(())
}

/// A registry that takes no AWS credentials is a usage error (exit code 2): the command needs
/// `-u`.
fn usage_if_not_aws(e: ClientError) -> anyhow::Error {
    match e {
        e @ ClientError::NoAwsAuth { .. } => UsageError(e.to_string()).into(),
        e => e.into(),
    }
}

/// Removes credentials for a registry.
pub fn run_logout(args: LogoutArgs) -> anyhow::Result<()> {
    let mut config = DockerConfig::load_default()?;
    let docker = config.erase(&args.registry)?;
    let aws = Logins::load_default()?.remove(&args.registry)?;
    if docker || aws {
        println!("Removing login credentials for {}", args.registry);
    } else {
        println!("Not logged in to {}", args.registry);
    }
    Ok(())
}

/// Prints a token password for an ECR-style registry.
pub fn run_get_login_password(args: GetLoginPasswordArgs) -> anyhow::Result<()> {
    let host = &args.registry;
    let password = runtime()?
        .block_on(berth_client::logins::login_password(
            host,
            &args.registry_opts.insecure,
        ))
        .map_err(usage_if_not_aws)
        .with_context(|| format!("getting a token for {host}"))?;
    println!("{password}");
    Ok(())
}
