//! A PostgreSQL server for the store tests, and a fresh database on it per test.
//!
//! With `BERTH_TEST_POSTGRES` set (`postgres://postgres@127.0.0.1:5432/postgres`: a role that
//! may `CREATE DATABASE`), that server is used. Otherwise the first test of a process that needs
//! one starts a throwaway PostgreSQL 15 cluster (`/usr/lib/postgresql/15/bin`, Debian's
//! `postgresql` package; `BERTH_TEST_PG_BIN` overrides the directory): `initdb` into a fresh
//! directory under `/tmp` and `pg_ctl start` on a free loopback port, with `fsync=off`. As root
//! both run as the `postgres` user (`runuser`; initdb refuses root) on a directory chowned to
//! it.
//!
//! Stopping it: Rust tests have no reliable process-exit hook (statics are never dropped), so
//! before `initdb` a detached watchdog is started (`setsid sh -c …`, as the same user as the
//! server): it polls once a second whether this test process is still alive (`/proc/PID`, which
//! an unprivileged user can test for a root process, unlike `kill -0`), and once it is gone —
//! however it ended, a panic or SIGKILL included — stops the server (`pg_ctl -m immediate`) and
//! removes the directory. So nothing outlives a test run by more than about a second.
//!
//! Every test gets its own database (`t_<random hex>`), dropped when its [`Database`] is, so
//! tests never see each other's rows.
//!
//! A throwaway cluster also speaks TLS (`ssl=on`; plain connections stay allowed): its
//! certificate, made with `openssl` at start, is for the name `localhost` only (not for the
//! address `127.0.0.1`), signed by a CA of its own ([`tls_ca`]) — so the TLS tests can tell a
//! checked chain from a checked host name.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The server: the URL of its `postgres` database, as a superuser; and, for a cluster of its
/// own, how to stop and start it.
struct Server {
    admin_url: String,
    own: Option<Own>,
}

/// A throwaway cluster: its binaries, its directory, whether it runs as the postgres user.
struct Own {
    bin: PathBuf,
    dir: PathBuf,
    root: bool,
}

/// Stops the test server (`pg_ctl stop -m fast`: sessions are cut), waits `downtime`, and
/// starts it again with the same settings; for fault tests. Panics on an external server
/// (`BERTH_TEST_POSTGRES`), which a test must not restart.
pub fn restart(downtime: std::time::Duration) {
    let server = match SERVER.get_or_init(server) {
        Ok(s) => s,
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    };
    let own = server
        .own
        .as_ref()
        .unwrap_or_else(|| panic!("BERTH_TEST_POSTGRES names a server this test cannot restart"));
    let pg_ctl = own.bin.join("pg_ctl");
    let data = own.dir.join("data");
    run(as_server_user(own.root, &pg_ctl)
        .arg("-D")
        .arg(&data)
        .args(["-m", "fast", "-w", "stop"]))
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(downtime);
    // `postmaster.opts` keeps the options of the first start; -o repeats the socket directory.
    let opts = std::fs::read_to_string(data.join("postmaster.opts")).unwrap_or_default();
    let port = opts
        .split_whitespace()
        .skip_while(|w| *w != "\"-p\"")
        .nth(1)
        .map(|p| p.trim_matches('"').to_owned())
        .unwrap_or_default();
    run(as_server_user(own.root, &pg_ctl)
        .arg("-D")
        .arg(&data)
        .arg("-o")
        .arg(start_options(&port, &own.dir))
        .arg("-l")
        .arg(own.dir.join("log"))
        .args(["-w", "-t", "60", "start"]))
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The server options of a throwaway cluster in `dir` on `port`.
fn start_options(port: &str, dir: &Path) -> String {
    let tls = dir.join("tls");
    format!(
        "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c full_page_writes=off -c max_connections=300 -c ssl=on \
         -c ssl_cert_file={cert} -c ssl_key_file={key}",
        dir = dir.display(),
        cert = tls.join("server.crt").display(),
        key = tls.join("server.key").display(),
    )
}

/// The CA certificate (PEM) the throwaway cluster's TLS certificate is signed by; `None` for a
/// server named by `BERTH_TEST_POSTGRES`.
pub fn tls_ca() -> Option<PathBuf> {
    let server = match SERVER.get_or_init(server) {
        Ok(s) => s,
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    };
    server.own.as_ref().map(|o| o.dir.join("tls/ca.crt"))
}

/// The superuser URL of the `postgres` database on the test server.
pub fn admin_url() -> String {
    match SERVER.get_or_init(server) {
        Ok(s) => s.admin_url.clone(),
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    }
}

/// Makes the cluster's TLS material in `dir/tls` (as the server user, who must own the key):
/// a CA, and a certificate for `localhost` it signs.
fn make_tls(dir: &Path, root: bool) -> Result<(), String> {
    let script = "set -e; mkdir -p tls; cd tls; \
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
          -subj /CN=berth-test-ca -keyout ca.key -out ca.crt 2>/dev/null; \
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
          -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null; \
        printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext; \
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
          -extfile ext -out server.crt 2>/dev/null; \
        chmod 600 server.key ca.key";
    run(as_server_user(root, Path::new("sh"))
        .args(["-c", script])
        .current_dir(dir))
    .map_err(|e| format!("making TLS certificates (apt-get install openssl): {e}"))
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// A database of its own for one test; dropped (with its connections) when this is.
#[derive(Debug)]
pub struct Database {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        // Best effort: a throwaway cluster goes anyway; a shared server should not fill up.
        let _ = run_sql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A new, empty database on the test server (starting the server first if needed).
pub fn database() -> Database {
    let server = match SERVER.get_or_init(server) {
        Ok(s) => s,
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    };
    let name = format!("t_{:016x}", rand::random::<u64>());
    run_sql(&server.admin_url, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    Database {
        url: with_dbname(&server.admin_url, &name),
        admin_url: server.admin_url.clone(),
        name,
    }
}

/// Runs SQL with a synchronous client on a thread of its own (the synchronous client must not
/// run on an async worker thread, where tests call this from).
fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut client =
                postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
            client.batch_execute(sql).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the SQL thread panicked".to_owned())?
    })
}

/// `url` with its database name replaced by `name` (`scheme://authority/name?query`).
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("BERTH_TEST_POSTGRES") {
        return Ok(Server {
            admin_url: url,
            own: None,
        });
    }
    let bin = PathBuf::from(std::env::var("BERTH_TEST_PG_BIN").unwrap_or(DEFAULT_BIN.into()));
    if !bin.join("initdb").exists() {
        return Err(format!(
            "{}/initdb not found: install PostgreSQL 15 (apt-get install postgresql) or set \
             BERTH_TEST_POSTGRES to a server's URL",
            bin.display()
        ));
    }
    let root = std::fs::metadata("/proc/self")
        .map_err(|e| e.to_string())?
        .uid()
        == 0;
    let dir = PathBuf::from(format!(
        "/tmp/berth-test-pg-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if root {
        run(Command::new("chown").arg("postgres:").arg(&dir))?;
    }
    watchdog(&bin, &dir, root)?;
    let data = dir.join("data");
    run(as_server_user(root, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ]))?;
    make_tls(&dir, root)?;
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let started = run(as_server_user(root, &bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(start_options(&port.to_string(), &dir))
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "start"]));
        match started {
            Ok(()) => {
                return Ok(Server {
                    admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    own: Some(Own {
                        bin: bin.clone(),
                        dir: dir.clone(),
                        root,
                    }),
                });
            }
            // Most likely the port was taken meanwhile: try another.
            Err(e) => {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                last = format!("{e}\n{log}");
            }
        }
    }
    Err(format!("pg_ctl start failed: {last}"))
}

/// Stops the server and removes `dir` once this process is gone (see the module docs).
fn watchdog(bin: &Path, dir: &Path, root: bool) -> Result<(), String> {
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; \
         '{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = bin.join("pg_ctl").display(),
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    let mut cmd = as_server_user(root, Path::new("setsid"));
    cmd.args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn()
        .map(drop)
        .map_err(|e| format!("starting the watchdog: {e}"))
}

fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
