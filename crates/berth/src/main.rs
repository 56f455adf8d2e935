//! The `berth` command line. Exit codes are decided in one place, [`main`].

mod config;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// berth — container images, end to end: a registry you can run (OCI Distribution v1.1).
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry (OCI Distribution v1.1 API on /v2/, health on /healthz).
    Serve(serve::ServeArgs),
}

/// A usage or configuration error (exit code 2), as opposed to a runtime failure (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
