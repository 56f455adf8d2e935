//! `--ssh ID=KEYFILE[,KEYFILE…]`: an `ssh-agent` (OpenSSH's) that berth starts for the build on
//! a private socket, loaded with the keys by `ssh-add`, and stops when the build is done — so
//! `RUN --mount=type=ssh` works from key files as BuildKit's does, with no agent of the user's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{OpsError, Result};

/// A running agent; killed (and its socket directory removed) on drop. It also dies with berth:
/// a small shell keeps it, reading berth's end of a pipe, and kills it when that pipe closes —
/// so a killed build never leaves an agent holding the keys behind.
#[derive(Debug)]
pub struct SshAgent {
    child: Child,
    /// berth's end of the pipe the keeper reads; dropping it stops the agent.
    lifeline: Option<std::process::ChildStdin>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts `ssh-agent -D -a SOCKET` and waits for its stdin (berth's pipe) to close, then kills it.
const KEEPER: &str = r#"ssh-agent -D -a "$1" </dev/null >/dev/null 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null' EXIT
read -r _ || true
"#;

impl SshAgent {
    /// Starts an agent holding `keys`. A key with a passphrase cannot be loaded without a
    /// prompt: that is an error naming the key (load it into your own agent instead).
    pub fn start(spec: &str, keys: &[PathBuf]) -> Result<SshAgent> {
        let dir = tempfile::Builder::new()
            .prefix("berth-ssh-")
            .tempdir()
            .map_err(|source| OpsError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let socket = dir.path().join("agent.sock");
        if Command::new("ssh-agent")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(OpsError::usage(format!(
                "--ssh {spec}: ssh-agent is not installed (install OpenSSH's client: openssh-client)"
            )));
        }
        let mut child = Command::new("sh")
            .args(["-c", KEEPER, "sh"])
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| OpsError::usage(format!("--ssh {spec}: starting ssh-agent: {e}")))?;
        let lifeline = child.stdin.take();
        let mut agent = SshAgent {
            child,
            lifeline,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            if Instant::now() > deadline || matches!(agent.child.try_wait(), Ok(Some(_))) {
                return Err(OpsError::usage(format!(
                    "--ssh {spec}: ssh-agent did not start"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for key in keys {
            agent.add(spec, key)?;
        }
        Ok(agent)
    }

    fn add(&self, spec: &str, key: &Path) -> Result<()> {
        let out = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env_remove("SSH_ASKPASS")
            .env("SSH_ASKPASS_REQUIRE", "never")
            .env("DISPLAY", "")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| OpsError::usage(format!("--ssh {spec}: running ssh-add: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        Err(OpsError::usage(format!(
            "--ssh {spec}: {} could not be loaded (a key with a passphrase needs your own agent: \
             ssh-add it, then --ssh {}): {}",
            key.display(),
            spec.split('=').next().unwrap_or(spec),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        // Closing the pipe makes the keeper kill the agent and exit.
        drop(self.lifeline.take());
        let _ = self.child.wait();
    }
}
