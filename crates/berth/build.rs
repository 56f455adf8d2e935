//! Records the commit `berth --version` prints (`BERTH_COMMIT`, else `git rev-parse`, else
//! "unknown": a source tarball has no repository).

use std::process::Command;

fn main() {
    let commit = std::env::var("BERTH_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    });
    let commit = commit.unwrap_or_else(|| "unknown".into());
    println!(
        "cargo:rustc-env=BERTH_VERSION_LONG={} (commit {commit})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    // A new commit or checkout changes HEAD or the ref it names.
    if let Ok(git_dir) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        && let Ok(dir) = String::from_utf8(git_dir.stdout)
    {
        let dir = std::path::Path::new(dir.trim());
        let mut watched = vec![dir.join("HEAD"), dir.join("packed-refs")];
        if let Ok(head) = std::fs::read_to_string(dir.join("HEAD"))
            && let Some(r) = head.trim().strip_prefix("ref: ")
        {
            watched.push(dir.join(r));
        }
        // A path that does not exist would rerun this script on every build.
        for p in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}
