//! Everything a build can fail with.

use std::path::PathBuf;

use berth_client::ClientError;

/// A failed build, or a store that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A file of the store, the context or a rootfs could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Dockerfile does not parse.
    #[error("{file}: {source}")]
    Parse {
        /// The Dockerfile's name as given.
        file: String,
        /// The parser's error (it shows the line with a caret).
        #[source]
        source: berth_dockerfile::ParseError,
    },
    /// The stages cannot be planned (unknown target, a stage used before it is defined, …).
    #[error(transparent)]
    Stage(#[from] berth_dockerfile::StageError),
    /// `.dockerignore` does not parse.
    #[error(".dockerignore: {0}")]
    Ignore(#[from] berth_dockerfile::ignore::IgnoreError),
    /// An instruction cannot be carried out as written (a bad flag value, an expansion error).
    #[error("line {line}: {instruction}: {reason}")]
    Instruction {
        /// The line of the instruction.
        line: u32,
        /// The instruction as written (first 80 characters).
        instruction: String,
        /// What is wrong.
        reason: String,
    },
    /// A COPY/ADD source that is not in the build context (or stage, or image).
    #[error("line {line}: {instruction}: {path}: {reason}")]
    Source {
        /// The line of the instruction.
        line: u32,
        /// The instruction as written.
        instruction: String,
        /// The source as written.
        path: String,
        /// "no such file or directory", "outside the build context", …
        reason: String,
    },
    /// A base image or `--from` image could not be fetched.
    #[error("{reference}: {source}")]
    Image {
        /// The reference as written.
        reference: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// A registry or layout operation of an output failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store is in use by a build (pruning needs it to itself).
    #[error("{path}: the build store is in use by a running build; try again when it is done")]
    StoreBusy {
        /// The store's directory.
        path: PathBuf,
    },
    /// A secret a RUN step mounts cannot be read (its value is never part of the message).
    #[error("secret {id:?}: {reason}")]
    Secret {
        /// The secret's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// An `ADD <url>` download failed or did not match its `--checksum`.
    #[error("ADD {url}: {reason}")]
    Fetch {
        /// The URL (its user-info removed).
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A RUN step exited with a non-zero code.
    #[error("step {step} ({platform}) `{instruction}` failed with exit code {code}{}", tail_text(.tail))]
    RunFailed {
        /// `[stage N/M]`-style step label.
        step: String,
        /// The platform being built.
        platform: String,
        /// The instruction as written (first 80 characters).
        instruction: String,
        /// The process's exit code (128 + signal when killed).
        code: i32,
        /// The last lines of its output.
        tail: Vec<String>,
    },
    /// No OCI runtime could be started.
    #[error(
        "no working OCI runtime: {reason} (install runc: apt-get install runc; or pass --runtime)"
    )]
    NoRuntime {
        /// What was tried and why it failed.
        reason: String,
    },
    /// A foreign-architecture RUN without qemu-user binfmt emulation.
    #[error(
        "RUN for {platform} needs emulation of {arch} binaries, and binfmt_misc has no \
         qemu-{qemu} entry with the F flag: install qemu-user-static and binfmt-support \
         (apt-get install qemu-user-static binfmt-support)"
    )]
    NoEmulation {
        /// The platform being built.
        platform: String,
        /// Its architecture.
        arch: String,
        /// The qemu name of the architecture (`aarch64`, `x86_64`, …).
        qemu: String,
    },
    /// A mount or another privileged operation failed.
    #[error("{operation}: {source}{}", if .source.kind() == std::io::ErrorKind::PermissionDenied { " (berth build needs root, or runs rootless when a non-root user with /etc/subuid and /etc/subgid ranges starts it)" } else { "" })]
    Privileged {
        /// What was attempted.
        operation: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A rootless build cannot start: what is missing, each with how to provide it.
    #[error("berth build runs as user {user} without root, in a user namespace, and that needs:{}", missing.iter().map(|m| format!("\n  - {m}")).collect::<String>())]
    Rootless {
        /// The user.
        user: String,
        /// Each missing prerequisite.
        missing: Vec<String>,
    },
    /// The store holds data that is not what it should be.
    #[error("build store {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A platform string that is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
    Platform(String),
    /// A build option that cannot be honoured.
    #[error("{0}")]
    Options(String),
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        let mut s = String::from(":\n");
        for l in tail {
            s.push_str("  | ");
            s.push_str(l);
            s.push('\n');
        }
        s.pop();
        s
    }
}

/// Wraps an I/O error with its path.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.into();
    move |source| BuildError::Io { path, source }
}

/// Wraps a rustix errno with its path.
pub(crate) fn errno(path: impl Into<PathBuf>) -> impl FnOnce(rustix::io::Errno) -> BuildError {
    let path = path.into();
    move |e| BuildError::Io {
        path,
        source: e.into(),
    }
}
