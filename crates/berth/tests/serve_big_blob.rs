//! A 1 GiB blob pushed in chunks and pulled back through the real server, whose peak RSS must
//! stay under 100 MiB (memory never grows with blob size).

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use futures::StreamExt;
use sha2::Digest as _;

const SIZE: u64 = 1 << 30;
const CHUNK: u64 = 64 << 20;
const FRAME: usize = 256 << 10;

/// Deterministic pseudo-random bytes [start, start+len), generated frame by frame.
fn frames(start: u64, len: u64) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let n = len.div_ceil(FRAME as u64);
    futures::stream::iter((0..n).map(move |i| {
        let off = start + i * FRAME as u64;
        let take = (start + len - off).min(FRAME as u64) as usize;
        Ok(Bytes::from(pattern(off, take)))
    }))
}

fn pattern(off: u64, len: usize) -> Vec<u8> {
    // xorshift keyed on the 8-byte block index: cheap, position-addressable, incompressible.
    let mut out = Vec::with_capacity(len);
    let mut block = off / 8;
    let skip = (off % 8) as usize;
    while out.len() < len + skip {
        let mut x = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
        block += 1;
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_chunked_push_and_pull_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start(dir.path());
    let c = common::client();

    let mut hasher = sha2::Sha256::new();
    let mut off = 0;
    while off < SIZE {
        let mut s = Box::pin(frames(off, CHUNK.min(SIZE - off)));
        while let Some(f) = s.next().await {
            hasher.update(f.unwrap());
        }
        off += CHUNK;
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));

    let r = c
        .post(server.url("/v2/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut loc = server.url(r.headers()["location"].to_str().unwrap());
    let mut off = 0;
    while off < SIZE {
        let len = CHUNK.min(SIZE - off);
        let r = c
            .patch(&loc)
            .header("Content-Range", format!("{off}-{}", off + len - 1))
            .header("Content-Length", len)
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(frames(off, len)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{:?}", r.text().await);
        assert_eq!(
            r.headers()["range"].to_str().unwrap(),
            format!("0-{}", off + len - 1)
        );
        loc = server.url(r.headers()["location"].to_str().unwrap());
        off += len;
    }
    let r = c
        .put(format!("{loc}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    let r = c
        .get(server.url(&format!("/v2/big/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(SIZE));
    let mut h = sha2::Sha256::new();
    let mut got = 0u64;
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        got += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(got, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), digest);

    let peak = server.peak_rss();
    eprintln!(
        "berth serve peak RSS during 1 GiB push+pull: {} MiB",
        peak >> 20
    );
    assert!(
        peak < 100 << 20,
        "peak RSS {} MiB is not under 100 MiB",
        peak >> 20
    );
    assert!(server.terminate().success());
}
