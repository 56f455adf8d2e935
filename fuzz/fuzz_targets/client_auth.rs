//! What a registry client reads from outside (`berth_client::auth`): `WWW-Authenticate`
//! challenges and docker `config.json` files. Nothing panics.

#![no_main]

use berth_client::auth::{Challenge, DockerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = Challenge::parse(text);
        }
        return;
    }
    let dir = std::env::temp_dir().join(format!("berth-fuzz-config-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("config.json");
    if std::fs::write(&path, rest).is_err() {
        return;
    }
    if let Ok(c) = DockerConfig::load(&path) {
        for registry in ["docker.io", "127.0.0.1:5000", "https://index.docker.io/v1/", "ghcr.io"] {
            let _ = c.helper_for(registry);
            let _ = c.stored(registry);
        }
    }
});
