//! HAProxy (Debian's, which `scripts/test.sh` installs) in round-robin over `berth serve`
//! replicas, on a free loopback port; killed on drop. Shared by the replica tests
//! (`crates/berth/tests/replicas.rs` includes this file) and `berth-bench registry
//! --backend s3+postgres`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    /// `127.0.0.1:PORT`, where clients connect.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Balances over `backends` (`host:port`), health-checking `/v2/` (200 or 401) every
    /// 500 ms; a request that finds a backend dead is sent to another (`redispatch`).
    pub fn start(backends: &[String]) -> std::io::Result<Haproxy> {
        // The port is found by binding and letting go, so another process may take it first;
        // haproxy then exits: try another.
        for _ in 0..5 {
            if let Some(lb) = Self::start_once(backends)? {
                return Ok(lb);
            }
        }
        Err(std::io::Error::other("haproxy did not start in 5 attempts"))
    }

    fn start_once(backends: &[String]) -> std::io::Result<Option<Haproxy>> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("    server r{i} {b} check inter 500ms fall 1 rise 2\n"))
            .collect();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n    maxconn 4096\ndefaults\n    mode http\n    timeout connect 2s\n    \
                 timeout client 120s\n    timeout server 120s\n    option redispatch\n    \
                 retries 3\nfrontend registry\n    bind 127.0.0.1:{port}\n    \
                 default_backend berth\nbackend berth\n    balance roundrobin\n    \
                 option httpchk GET /v2/\n    http-check expect rstatus (200|401)\n{servers}"
            ),
        )?;
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!("haproxy ({e}): scripts/test.sh installs it"))
            })?;
        // Owned first, so a failed start kills it on the way out.
        let mut lb = Haproxy {
            child,
            addr: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        for _ in 0..100 {
            if lb.child.try_wait()?.is_some() {
                return Ok(None);
            }
            if std::net::TcpStream::connect(&lb.addr).is_ok() {
                // Still ours a moment later (not another process that took the port)?
                std::thread::sleep(Duration::from_millis(100));
                if lb.child.try_wait()?.is_some() {
                    return Ok(None);
                }
                return Ok(Some(lb));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!(
            "haproxy did not listen on {}",
            lb.addr
        )))
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
