//! `berth login / logout / get-login-password`: a user name and password in docker's
//! config.json, or — with no user name — AWS credentials for Amazon ECR and `berth serve`,
//! remembered in berth's own login file (see [`berth_client::logins`]).

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use berth_client::auth::{Credentials, DockerConfig};
use berth_client::ecr::{EcrTarget, advertised_region};
use berth_client::logins::{Login, Logins};
use berth_client::registry::base_url;
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

/// The region the registry at `base` advertises for AWS credentials; an error naming the
/// password login when it advertises none (it is not berth serve).
fn advertised(rt: &tokio::runtime::Runtime, host: &str, base: &str) -> anyhow::Result<String> {
    let region = rt
        .block_on(advertised_region(base))
        .with_context(|| format!("reaching {base}"))?;
    Ok(region.ok_or_else(|| {
        UsageError(format!(
            "{host} does not take AWS credentials (it is neither Amazon ECR nor berth serve): log in with `berth login {host} -u USER --password-stdin`"
        ))
    })?)
}

/// `berth login HOST` without a user name: check that AWS credentials get a token the
/// registry accepts, then remember how.
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
    let base = base_url(host, insecure);
    let rt = runtime()?;
    let amazon = berth_oci::EcrRegistry::from_host(host).is_some();
    let region = match region {
        Some(r) => Some(r),
        None if amazon => None,
        None => Some(advertised(&rt, host, &base)?),
    };
    let login = Login {
        region,
        endpoint: (!amazon).then(|| base.clone()),
        profile,
        credentials_file,
    };
    let target = EcrTarget::resolve(host, None, Some(&login))
        .context("internal: a login record always resolves")?;
    let creds = rt
        .block_on(berth_client::ecr::credentials(&target, None))
        .with_context(|| format!("logging in to {host}"))?;
    rt.block_on(berth_client::ecr::check_login(&base, &creds))?;
    let mut logins = Logins::load_default()?;
    logins.set(host, login.clone())?;
    let who = match (&login.profile, &login.credentials_file) {
        (Some(p), Some(f)) => format!("AWS profile {p} of {}", f.display()),
        (Some(p), None) => format!("AWS profile {p}"),
        (None, Some(f)) => format!("the default profile of {}", f.display()),
        (None, None) => "the AWS credential chain".to_owned(),
    };
    let region = target
        .aws
        .region
        .as_deref()
        .unwrap_or("from the AWS config");
    println!(
        "Login Succeeded: {host} with {who}, region {region} (remembered in {})",
        logins.path().display()
    );
    Ok(())
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
    let config = DockerConfig::load_default()?;
    let rt = runtime()?;
    let target = match EcrTarget::for_host(host, Some(&config)) {
        Some(t) => t,
        None => {
            let base = base_url(host, &args.registry_opts.insecure);
            let mut t = EcrTarget::with_region(host, Some(advertised(&rt, host, &base)?));
            t.aws.endpoint = Some(base);
            t
        }
    };
    let creds = rt
        .block_on(berth_client::ecr::credentials(&target, None))
        .with_context(|| format!("getting a token for {host}"))?;
    let Credentials::Basic { password, .. } = creds else {
        anyhow::bail!("{host}: GetAuthorizationToken gave no password");
    };
    println!("{password}");
    Ok(())
}
