//! The blob-store contract, one suite run against every backend: the filesystem store and the
//! S3 store on a real SeaweedFS (`weed mini`, which `scripts/test.sh` installs).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Algorithm, Digest, Hasher};
use berth_store::{BlobStore, FsBlobStore, S3BlobStore, S3Options, StoreError, UploadId};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use common::seaweed::Seaweed;

const MIB: usize = 1024 * 1024;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// A body of `frames` frames cut from `bytes`, optionally failing after them.
fn body(bytes: &[u8], frame: usize, fail: bool) -> berth_store::ByteStream {
    let mut frames: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(frame.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    if fail {
        frames.push(Err(std::io::Error::other("client went away")));
    }
    stream::iter(frames).boxed()
}

async fn read_all(store: &dyn BlobStore, d: &Digest, offset: u64, len: u64) -> Vec<u8> {
    let s = store.read(d, offset, len).await.unwrap();
    let parts: Vec<Bytes> = s.try_collect().await.unwrap();
    parts.concat()
}

/// Appends `bytes` with a hash checkpoint that covers `hasher` (fed what is appended).
async fn append(
    store: &dyn BlobStore,
    id: &UploadId,
    offset: u64,
    bytes: &[u8],
    hasher: &mut Hasher,
) -> u64 {
    hasher.update(bytes);
    let h = hasher.clone();
    let total = offset + bytes.len() as u64;
    let checkpoint = move || Some((total, h.save()));
    store
        .upload_append(id, offset, body(bytes, 64 * 1024, false), Some(&checkpoint))
        .await
        .unwrap()
}

/// Whether the store creates nothing for an upload before its first byte (an object store):
/// then an upload it has no trace of is empty rather than unknown.
async fn unknown_or_empty(store: &dyn BlobStore, id: &UploadId, lazy: bool) {
    let size = store.upload_size(id).await;
    if lazy {
        assert_eq!(size.unwrap(), 0);
    } else {
        assert!(
            matches!(size, Err(StoreError::UploadUnknown(_))),
            "{size:?}"
        );
    }
}

/// Whole blobs streamed to their digest (`put_stream`): verified ones appear, refused or broken
/// ones leave nothing, and one stored already is only checked.
async fn put_streams(store: &dyn BlobStore) {
    if !store.puts_streams() {
        let d = Digest::sha256(b"x");
        let r = store
            .put_stream(&d, 1, body(b"x", 1, false), &|_| true)
            .await;
        assert!(matches!(r, Err(StoreError::Unsupported(_))), "{r:?}");
        return;
    }
    for (len, seed) in [(3 * MIB, 20), (13 * MIB + 7, 21)] {
        let bytes = data(len, seed);
        let d = Digest::sha256(&bytes);
        let asked = std::sync::Mutex::new(Vec::new());
        let no = |n: u64| {
            asked.lock().unwrap().push(n);
            false
        };
        let refused = store.put_stream(&d, len as u64, body(&bytes, 300_000, false), &no);
        assert!(!refused.await.unwrap());
        assert_eq!(*asked.lock().unwrap(), vec![len as u64]);
        assert_eq!(
            store.stat(&d).await.unwrap(),
            None,
            "a refused blob is not stored"
        );
        let broken = store
            .put_stream(
                &d,
                len as u64,
                body(&bytes[..len / 2], 300_000, true),
                &|_| true,
            )
            .await;
        assert!(matches!(broken, Err(StoreError::Stream(_))), "{broken:?}");
        assert_eq!(
            store.stat(&d).await.unwrap(),
            None,
            "a broken stream stores nothing"
        );
        let yes = |n: u64| n == len as u64;
        let stored = store.put_stream(&d, len as u64, body(&bytes, 300_000, false), &yes);
        assert!(stored.await.unwrap());
        assert_eq!(store.stat(&d).await.unwrap(), Some(len as u64));
        assert!(read_all(store, &d, 0, len as u64).await == bytes);
        // Again: checked, nothing rewritten.
        let again = store.put_stream(&d, len as u64, body(&bytes, MIB, false), &yes);
        assert!(again.await.unwrap());
        store.delete(&d).await.unwrap();
    }
}

async fn contract(store: Arc<dyn BlobStore>, keeps_hash: bool) {
    let lazy = keeps_hash;
    put_streams(&*store).await;
    store.ready().await.unwrap();

    // Small blobs: put, stat, get, ranged reads, idempotent put, delete.
    let small = data(10_000, 1);
    let d = Digest::sha256(&small);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(matches!(
        store.get(&d).await,
        Err(StoreError::BlobNotFound(_))
    ));
    store.put(&d, Bytes::from(small.clone())).await.unwrap();
    store.put(&d, Bytes::from(small.clone())).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(10_000));
    assert_eq!(store.get(&d).await.unwrap(), small);
    assert_eq!(read_all(&*store, &d, 0, 10_000).await, small);
    assert_eq!(read_all(&*store, &d, 1_000, 24).await, &small[1_000..1_024]);
    assert!(store.list().await.unwrap().iter().any(|(x, _)| *x == d));

    // A chunked upload that crosses several 5 MiB part boundaries, in chunks of odd sizes.
    let big = data(13 * MIB + 12_345, 2);
    let id = UploadId::random();
    store.upload_start(&id).await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), 0);
    assert_eq!(store.upload_list().await.unwrap().contains(&id), !lazy);
    let mut hasher = Algorithm::Sha256.hasher();
    let cuts = [0, 700_000, 6 * MIB + 3, 6 * MIB + 4, 11 * MIB, big.len()];
    let mut size = 0;
    for w in cuts.windows(2) {
        size = append(&*store, &id, size, &big[w[0]..w[1]], &mut hasher).await;
        assert_eq!(size, w[1] as u64);
        assert_eq!(store.upload_size(&id).await.unwrap(), size);
        let saved = store.upload_hash_state(&id).await.unwrap();
        if keeps_hash {
            // The saved state continues the hash exactly where the staged bytes end.
            let (n, state) = saved.expect("a hash state is kept");
            assert_eq!(n, size);
            let mut resumed = Hasher::restore(&state).unwrap();
            let mut reference = Algorithm::Sha256.hasher();
            reference.update(&big[..w[1]]);
            resumed.update(b"x");
            reference.update(b"x");
            assert_eq!(resumed.finish(), reference.finish());
        } else {
            assert!(saved.is_none());
        }
    }
    // An append at the wrong offset is refused and changes nothing.
    assert!(matches!(
        store
            .upload_append(&id, 5, body(b"nope", 4, false), None)
            .await,
        Err(StoreError::OffsetMismatch { expected: 5, .. })
    ));
    // A body that breaks off: what arrived is staged, and cutting back restores the upload.
    let extra = data(6 * MIB, 3);
    let failed = store
        .upload_append(&id, size, body(&extra, MIB, true), None)
        .await;
    assert!(matches!(failed, Err(StoreError::Stream(_))), "{failed:?}");
    assert_eq!(
        store.upload_size(&id).await.unwrap(),
        size + extra.len() as u64
    );
    store.upload_truncate(&id, size).await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), size);
    if keeps_hash {
        assert_eq!(store.upload_hash_state(&id).await.unwrap().unwrap().0, size);
    }
    assert!(store.upload_modified(&id).await.unwrap() > 0);
    let digest = hasher.finish();
    assert_eq!(digest, Digest::sha256(&big));
    assert_eq!(
        store.upload_commit(&id, &digest).await.unwrap(),
        big.len() as u64
    );
    assert!(!store.upload_list().await.unwrap().contains(&id));
    unknown_or_empty(&*store, &id, lazy).await;
    assert_eq!(store.stat(&digest).await.unwrap(), Some(big.len() as u64));
    let back = read_all(&*store, &digest, 0, big.len() as u64).await;
    assert!(
        back == big,
        "the committed blob differs from what was appended"
    );
    let tail = read_all(&*store, &digest, 9 * MIB as u64, 5).await;
    assert_eq!(tail, &big[9 * MIB..9 * MIB + 5]);

    // A small upload (no full part) reads back, commits, and an empty blob commits too.
    let id2 = UploadId::random();
    store.upload_start(&id2).await.unwrap();
    let few = data(3_000, 4);
    store
        .upload_append(&id2, 0, body(&few, 1_000, false), None)
        .await
        .unwrap();
    let staged: Vec<Bytes> = store
        .upload_read(&id2)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(staged.concat(), few);
    let d2 = Digest::sha256(&few);
    assert_eq!(store.upload_commit(&id2, &d2).await.unwrap(), 3_000);
    assert_eq!(store.get(&d2).await.unwrap(), few);
    let id3 = UploadId::random();
    store.upload_start(&id3).await.unwrap();
    let empty = Digest::sha256(b"");
    assert_eq!(store.upload_commit(&id3, &empty).await.unwrap(), 0);
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0));

    // Aborting forgets an upload with parts; aborting twice is fine.
    let id4 = UploadId::random();
    store.upload_start(&id4).await.unwrap();
    store
        .upload_append(&id4, 0, body(&extra, MIB, false), None)
        .await
        .unwrap();
    store.upload_abort(&id4).await.unwrap();
    store.upload_abort(&id4).await.unwrap();
    assert!(!store.upload_list().await.unwrap().contains(&id4));
    unknown_or_empty(&*store, &id4, lazy).await;
    // An upload that never received a byte aborts cleanly.
    let id5 = UploadId::random();
    store.upload_start(&id5).await.unwrap();
    store.upload_abort(&id5).await.unwrap();
    assert!(!store.upload_list().await.unwrap().contains(&id5));

    // Deleting: one, many, absent.
    store.delete(&d2).await.unwrap();
    store.delete(&d2).await.unwrap();
    assert_eq!(store.stat(&d2).await.unwrap(), None);
    store
        .delete_many(&[d.clone(), digest.clone(), d2.clone()])
        .await
        .unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    let left: Vec<Digest> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(left, vec![empty]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filesystem_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    contract(Arc::new(store), false).await;
}

async fn s3_store(weed: &Seaweed, prefix: &str) -> S3BlobStore {
    let mut o = S3Options::from_url(&format!("s3://{}/{prefix}", weed.bucket)).unwrap();
    o.endpoint = Some(weed.endpoint.clone());
    o.path_style = true;
    o.part_size = 5 * MIB;
    o.credentials = Some((
        common::seaweed::KEY_ID.to_owned(),
        common::seaweed::SECRET.to_owned(),
    ));
    S3BlobStore::open(o).await.unwrap()
}

/// The blob fetched from its presigned URL, without credentials.
async fn presigned(store: &S3BlobStore, d: &Digest) -> Bytes {
    let url = store
        .download_url(d, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let got = common::client().get(&url).send().await.unwrap();
    assert_eq!(got.status(), 200, "{url}");
    got.bytes().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_store_keeps_the_contract() {
    let weed = common::seaweed::start("contract");
    let store = s3_store(&weed, "reg/one").await;
    contract(Arc::new(store), true).await;
    // Presigned downloads fetch the blob without credentials.
    let store = s3_store(&weed, "reg/one").await;
    let bytes = data(100_000, 9);
    let d = Digest::sha256(&bytes);
    store.put(&d, Bytes::from(bytes.clone())).await.unwrap();
    assert_eq!(presigned(&store, &d).await, bytes);

    // A blob committed from full parts stays where its multipart upload completed, with an
    // alias at its content address: every read follows it, on this store and on a fresh one
    // (another replica, nothing cached); the same bytes committed again leave one copy; a
    // delete removes both objects.
    let store = s3_store(&weed, "reg/alias").await;
    let bytes = data(11 * MIB + 17, 11);
    let len = bytes.len() as u64;
    let d = Digest::sha256(&bytes);
    for _ in 0..2 {
        let id = UploadId::random();
        store.upload_start(&id).await.unwrap();
        let mut hasher = Algorithm::Sha256.hasher();
        append(&store, &id, 0, &bytes, &mut hasher).await;
        assert_eq!(store.upload_commit(&id, &d).await.unwrap(), len);
    }
    let objects = || {
        // `aws s3 ls` exits 1 when it lists nothing.
        let out = std::process::Command::new("aws")
            .envs(weed.env())
            .args(["--endpoint-url", &weed.endpoint, "s3", "ls", "--recursive"])
            .arg(format!("s3://{}/reg/alias/", weed.bucket))
            .output()
            .unwrap();
        assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .collect();
        keys.sort();
        keys
    };
    let stored = objects();
    assert_eq!(stored.len(), 2, "one alias and one data object: {stored:?}");
    assert!(
        stored[0].starts_with("reg/alias/blobs/sha256/"),
        "{stored:?}"
    );
    assert!(stored[1].starts_with("reg/alias/data/"), "{stored:?}");
    let fresh = s3_store(&weed, "reg/alias").await;
    for s in [&store, &fresh] {
        assert_eq!(s.stat(&d).await.unwrap(), Some(len));
        assert!(read_all(s, &d, 0, len).await == bytes);
        assert_eq!(
            read_all(s, &d, 9 * MIB as u64, 7).await,
            &bytes[9 * MIB..9 * MIB + 7]
        );
    }
    assert!(fresh.get(&d).await.unwrap() == bytes);
    assert!(presigned(&fresh, &d).await == bytes);
    store.delete(&d).await.unwrap();
    assert_eq!(objects(), Vec::<String>::new());
    assert_eq!(fresh.stat(&d).await.unwrap(), None);
    assert!(matches!(
        fresh.read(&d, 0, len).await,
        Err(StoreError::BlobNotFound(_))
    ));
}
