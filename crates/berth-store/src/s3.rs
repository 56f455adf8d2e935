//! The blob store on S3 or any S3-compatible object store (SeaweedFS, MinIO, Ceph RGW), over
//! the `object_store` crate.
//!
//! Layout under the configured prefix:
//!
//! - `blobs/<algorithm>/<first two hex>/<hex>`: a blob, written once (`If-None-Match: *`).
//! - `uploads/<id>/state.json`: an upload's state — the S3 multipart upload its full parts went
//!   to, their ETags and sizes, the generation of its tail object, the saved hash of the staged
//!   bytes, and the same for the state before the last append. Created by the first append that
//!   brings bytes (an upload with no state is empty: starting one costs no request); every
//!   change is one conditional write (`If-None-Match` to create, `If-Match` on the state's ETag
//!   after): two replicas appending to one upload at once cannot both win.
//! - `uploads/<id>/tail-<generation>`: staged bytes after the last full part (less than a part;
//!   S3 refuses parts under 5 MiB except the last).
//! - `data/<id>`: the multipart upload of upload `id`'s full parts, completed at commit; the
//!   blob's bytes stay there, and its content address holds an **alias**: an empty object whose
//!   metadata (`x-amz-meta-berth-data`, `x-amz-meta-berth-size`) names this key and the size.
//!   No copy, whatever the size; a read of an alias costs one lookup (then cached). An upload
//!   with no full part (under `part_size`) is copied to its content address as before (a copy of
//!   at most a part). Uploads started before aliases existed (`uploads/<id>/data`) still
//!   complete and copy as they did.
//!
//! An append streams: bytes are cut into parts of `part_size` and uploaded (two in flight) while
//! the body still arrives, so memory stays at a few parts per upload whatever the blob's size.
//!
//! A whole blob sent in one request with its digest known ([`BlobStore::put_stream`]) skips
//! staging: up to a part it is one `PUT` at its content address; beyond, a multipart upload
//! at the content address, completed only once the caller has verified the bytes (until then
//! S3 shows nothing; a failure aborts it). No state, no tail, no copy.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials;
use berth_oci::{Algorithm, Digest};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, CredentialProvider, GetOptions, GetRange, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::{Deserialize, Serialize};

use crate::blob::{BlobStore, ByteStream, HashCheckpoint, UploadId, Verify};
use crate::{DigestCache, StoreError, now_millis};

/// S3 refuses multipart parts smaller than this, except the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploaded at once by one append.
const PARTS_IN_FLIGHT: usize = 2;

/// Where and how to reach the bucket.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// The key prefix everything goes under (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// The endpoint URL of an S3-compatible store (`None`: AWS, from the region).
    pub endpoint: Option<String>,
    /// The region requests are signed for (`None`: from the AWS configuration, else us-east-1).
    pub region: Option<String>,
    /// Address the bucket in the path (`http://host/bucket/key`) instead of the host name.
    pub path_style: bool,
    /// Bytes per multipart part (at least [`MIN_PART_SIZE`]).
    pub part_size: usize,
    /// An access key id and secret to use instead of the AWS credential chain.
    pub credentials: Option<(String, String)>,
}

impl S3Options {
    /// Options for `s3://BUCKET/PREFIX`; `None` if `url` is not of that form.
    pub fn from_url(url: &str) -> Option<S3Options> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix.split('/').all(|seg| {
            prefix.is_empty()
                || (!seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'))
        });
        (bucket_ok && prefix_ok).then(|| S3Options {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            region: None,
            path_style: false,
            part_size: 8 * 1024 * 1024,
            credentials: None,
        })
    }
}

/// Bytes of small blobs (manifests) kept in memory by [`BlobStore::get`].
const SMALL_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Blobs larger than this are never cached.
const SMALL_CACHE_MAX_BLOB: usize = 256 * 1024;

/// The blob store on an S3 bucket.
pub struct S3BlobStore {
    s3: Arc<AmazonS3>,
    options: S3Options,
    /// Recently read or written small blobs (`get`/`put`: manifests). Content-addressed bytes
    /// never change, so an entry is never stale; the registry reads a manifest only after its
    /// metadata says it exists, so a deleted blob still cached is never served.
    small: std::sync::Mutex<DigestCache<Bytes>>,
    /// Aliases looked up or written: where a blob's bytes are (never stale while the blob
    /// exists; a read that finds the target gone looks again).
    aliases: std::sync::Mutex<DigestCache<(Path, u64)>>,
}

/// Bytes of alias entries kept (about 200 bytes each).
const ALIAS_CACHE_BYTES: usize = 4 * 1024 * 1024;

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| (id, "…")),
            )
            .finish()
    }
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.options.bucket)
            .field("prefix", &self.options.prefix)
            .field("endpoint", &self.options.endpoint)
            .finish()
    }
}

/// Credentials from the AWS SDK's default chain (environment, shared config and credentials
/// files with profiles, SSO, web identity, ECS and EC2 instance roles), cached until shortly
/// before they expire.
#[derive(Debug)]
struct AwsChain {
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

#[async_trait]
impl CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((c, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|t| {
                t.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > Duration::from_secs(300))
            });
            if fresh {
                return Ok(Arc::clone(c));
            }
        }
        let creds = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        })?;
        let c = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_owned(),
            secret_key: creds.secret_access_key().to_owned(),
            token: creds.session_token().map(str::to_owned),
        });
        *cached = Some((Arc::clone(&c), creds.expiry()));
        Ok(c)
    }
}

/// One uploaded multipart part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    etag: String,
    size: u64,
}

/// What is staged: full parts, then a tail object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Staged {
    size: u64,
    parts: Vec<Part>,
    /// Generation of the tail object and its size (bytes after the parts).
    tail: Option<(u64, u64)>,
    /// Saved hash of the first `.0` bytes (hex of `Hasher::save`).
    hash: Option<(u64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UploadState {
    created: i64,
    modified: i64,
    /// The multipart upload full parts go to, once the first was cut.
    multipart: Option<String>,
    /// The last tail generation written.
    generation: u64,
    now: Staged,
    /// The staged state before the last append (what `upload_truncate` returns to).
    before: Option<Staged>,
    /// The key the multipart upload completes at (`data/<id>`), where the blob's bytes then
    /// stay. `None` before the first part, and in states written before aliases existed (their
    /// multipart upload is at `uploads/<id>/data`, copied at commit).
    #[serde(default)]
    data: Option<String>,
    /// The digest the upload is committed as, saved before its multipart upload is completed:
    /// after that, `data` is the blob's unless an alias to it is missing (see `upload_abort`).
    #[serde(default)]
    committing: Option<String>,
}

/// How long after a commit began an abort leaves its completed object alone (completing a
/// multipart upload of many GiB can take minutes on S3).
const COMMIT_WINDOW_MS: i64 = 3_600_000;

/// The metadata keys of an alias: the key holding the blob's bytes, and their size.
const ALIAS_KEY: &str = "berth-data";
const ALIAS_SIZE: &str = "berth-size";

/// The target of an alias object (its key and size), `None` for an object that is a blob.
fn alias_of(attributes: &object_store::Attributes) -> Option<(Path, u64)> {
    let key = attributes.get(&Attribute::Metadata(ALIAS_KEY.into()))?;
    let size = attributes
        .get(&Attribute::Metadata(ALIAS_SIZE.into()))?
        .parse()
        .ok()?;
    Some((Path::from(key.as_ref()), size))
}

/// Where a stored blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// At its content address, this many bytes.
    Direct(u64),
    /// Under `key` (an alias at its content address), `size` bytes.
    Alias { key: Path, size: u64 },
}

fn os_err(e: object_store::Error) -> StoreError {
    StoreError::ObjectStore(Box::new(e))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn io_err(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(e)
}

impl S3BlobStore {
    /// Connects to the bucket (no request is made: see [`BlobStore::ready`]). Credentials come
    /// from the AWS SDK's default chain.
    pub async fn open(options: S3Options) -> Result<S3BlobStore, StoreError> {
        if options.part_size < MIN_PART_SIZE {
            return Err(StoreError::Unsupported(format!(
                "an S3 part size of {} bytes is below S3's minimum of {MIN_PART_SIZE}",
                options.part_size
            )));
        }
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let region = options
            .region
            .clone()
            .or_else(|| sdk.region().map(ToString::to_string))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(region)
            .with_virtual_hosted_style_request(!options.path_style)
            // A few quick retries (throttling, a dropped connection), then a clear 5xx: a
            // client retries a push; minutes of silent retrying help nobody.
            .with_retry(object_store::RetryConfig {
                max_retries: 4,
                retry_timeout: Duration::from_secs(20),
                ..object_store::RetryConfig::default()
            });
        if let Some((id, secret)) = &options.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        } else if let Some(provider) = sdk.credentials_provider() {
            builder = builder.with_credentials(Arc::new(AwsChain {
                provider,
                cached: tokio::sync::Mutex::new(None),
            }));
        }
        if let Some(ep) = &options.endpoint {
            builder = builder
                .with_endpoint(ep)
                .with_allow_http(ep.starts_with("http://"));
        }
        let s3 = builder.build().map_err(os_err)?;
        Ok(S3BlobStore {
            s3: Arc::new(s3),
            options,
            small: std::sync::Mutex::new(DigestCache::new(SMALL_CACHE_BYTES)),
            aliases: std::sync::Mutex::new(DigestCache::new(ALIAS_CACHE_BYTES)),
        })
    }

    /// Keeps a small blob (a manifest) in memory for `get`.
    fn cache_small(&self, digest: &Digest, bytes: &Bytes) {
        if bytes.len() <= SMALL_CACHE_MAX_BLOB
            && let Ok(mut c) = self.small.lock()
        {
            c.insert(digest, bytes.clone(), bytes.len());
        }
    }

    fn key(&self, rest: &str) -> Path {
        if self.options.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.options.prefix))
        }
    }

    fn blob_key(&self, d: &Digest) -> Path {
        let hex = d.hex();
        self.key(&format!(
            "blobs/{}/{}/{hex}",
            d.algorithm().as_str(),
            &hex[..2]
        ))
    }

    fn upload_key(&self, id: &UploadId, name: &str) -> Path {
        self.key(&format!("uploads/{id}/{name}"))
    }

    fn tail_key(&self, id: &UploadId, generation: u64) -> Path {
        self.upload_key(id, &format!("tail-{generation}"))
    }

    async fn load(&self, id: &UploadId) -> Result<(UploadState, UpdateVersion), StoreError> {
        let got = match self.s3.get(&self.upload_key(id, "state.json")).await {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Err(StoreError::UploadUnknown(id.to_string())),
            Err(e) => return Err(os_err(e)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(os_err)?;
        let state = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("upload {id} state: {e}")))?;
        Ok((state, version))
    }

    /// The state, or a fresh one (and no version) for an upload nothing was appended to yet.
    async fn load_or_empty(
        &self,
        id: &UploadId,
    ) -> Result<(UploadState, Option<UpdateVersion>), StoreError> {
        match self.load(id).await {
            Ok((s, v)) => Ok((s, Some(v))),
            Err(StoreError::UploadUnknown(_)) => {
                let now = now_millis();
                Ok((
                    UploadState {
                        created: now,
                        modified: now,
                        multipart: None,
                        generation: 0,
                        now: Staged::default(),
                        before: None,
                        data: None,
                        committing: None,
                    },
                    None,
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the state: created when `version` is `None`, else only over that version
    /// (`None` back: someone else changed it first).
    async fn save(
        &self,
        id: &UploadId,
        state: &UploadState,
        version: Option<UpdateVersion>,
    ) -> Result<Option<()>, StoreError> {
        let json = serde_json::to_vec(state)
            .map_err(|e| StoreError::Corrupt(format!("upload {id} state: {e}")))?;
        let mode = match version {
            Some(v) => PutMode::Update(v),
            None => PutMode::Create,
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .s3
            .put_opts(&self.upload_key(id, "state.json"), json.into(), opts)
            .await
        {
            Ok(_) => Ok(Some(())),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Ok(None),
            Err(e) => Err(os_err(e)),
        }
    }

    /// The conflict answer when another writer changed an upload first.
    async fn conflict(&self, id: &UploadId, expected: u64) -> StoreError {
        match self.load_or_empty(id).await {
            Ok((st, _)) => StoreError::OffsetMismatch {
                expected,
                actual: st.now.size,
            },
            Err(e) => e,
        }
    }

    async fn read_tail(&self, id: &UploadId, staged: &Staged) -> Result<Bytes, StoreError> {
        match staged.tail {
            None => Ok(Bytes::new()),
            Some((generation, size)) => {
                let b = self
                    .s3
                    .get(&self.tail_key(id, generation))
                    .await
                    .map_err(os_err)?
                    .bytes()
                    .await
                    .map_err(os_err)?;
                if b.len() as u64 != size {
                    return Err(StoreError::Corrupt(format!(
                        "upload {id}: tail {generation} has {} bytes, its state says {size}",
                        b.len()
                    )));
                }
                Ok(b)
            }
        }
    }

    /// Deletes tail objects of `generations`, best effort (leftovers go with the upload).
    async fn drop_tails(&self, id: &UploadId, generations: impl IntoIterator<Item = u64>) {
        for g in generations {
            if let Err(e) = self.s3.delete(&self.tail_key(id, g)).await {
                tracing::debug!(upload = %id, generation = g, error = %e, "tail not deleted");
            }
        }
    }

    /// Deletes everything under an upload's key prefix.
    async fn remove_upload_objects(&self, id: &UploadId) -> Result<(), StoreError> {
        let prefix = self.key(&format!("uploads/{id}"));
        let keys: Vec<Path> = self
            .s3
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(os_err)?;
        // The state last: while it exists the upload is still known. The rest in one request.
        let state = self.upload_key(id, "state.json");
        self.delete_keys(keys.into_iter().filter(|k| *k != state).collect())
            .await?;
        self.delete_key(&state).await
    }

    /// Deletes `keys` (absent ones are fine), a thousand per `DeleteObjects` request.
    async fn delete_keys(&self, keys: Vec<Path>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut results = self.s3.delete_stream(keys);
        while let Some(r) = results.next().await {
            match r {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(os_err(e)),
            }
        }
        Ok(())
    }

    /// Aborts the multipart upload `multipart` at `key`; one completed or aborted already is
    /// fine.
    async fn abort_multipart(&self, key: &Path, multipart: &str) -> Result<(), StoreError> {
        match self.s3.abort_multipart(key, &multipart.to_owned()).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }

    fn alias_cached(&self, digest: &Digest) -> Option<(Path, u64)> {
        self.aliases.lock().ok().and_then(|c| c.get(digest))
    }

    fn remember_alias(&self, digest: &Digest, key: &Path, size: u64) {
        if let Ok(mut c) = self.aliases.lock() {
            c.insert(digest, (key.clone(), size), 200);
        }
    }

    fn forget_alias(&self, digest: &Digest) {
        if let Ok(mut c) = self.aliases.lock() {
            c.remove(digest);
        }
    }

    /// Where a blob's bytes are, `None` if it is not stored: one `HEAD`, never the cache (a
    /// blob another replica deleted must not look stored). Reads use the cache, and look
    /// again when its target is gone.
    async fn locate(&self, digest: &Digest) -> Result<Option<Location>, StoreError> {
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.s3.get_opts(&self.blob_key(digest), opts).await {
            Ok(r) => Ok(Some(match alias_of(&r.attributes) {
                Some((key, size)) => {
                    self.remember_alias(digest, &key, size);
                    Location::Alias { key, size }
                }
                None => {
                    self.forget_alias(digest);
                    Location::Direct(r.meta.size)
                }
            })),
            Err(e) if is_not_found(&e) => {
                self.forget_alias(digest);
                Ok(None)
            }
            Err(e) => Err(os_err(e)),
        }
    }

    /// The key an upload's multipart upload completes at: `data/<id>`, or where a state from
    /// before aliases put it.
    fn data_key(&self, id: &UploadId, state: &UploadState) -> Path {
        match (&state.data, &state.multipart) {
            (Some(key), _) => Path::from(key.as_str()),
            (None, Some(_)) => self.upload_key(id, "data"),
            (None, None) => self.key(&format!("data/{id}")),
        }
    }

    /// The size of the object at `key`, `None` if there is none.
    async fn object_size(&self, key: &Path) -> Result<Option<u64>, StoreError> {
        match self.s3.head(key).await {
            Ok(m) => Ok(Some(m.size)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(os_err(e)),
        }
    }

    /// Whether the blob `digest` is an alias to `key` (so the object there is that blob's).
    async fn aliased_to(&self, digest: &Digest, key: &Path) -> Result<bool, StoreError> {
        Ok(matches!(self.locate(digest).await?, Some(Location::Alias { key: k, .. }) if k == *key))
    }

    /// Deletes `key`; absent is fine.
    async fn delete_key(&self, key: &Path) -> Result<(), StoreError> {
        match self.s3.delete(key).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }

    /// Makes the completed object at `data` (`size` bytes) the blob `digest`: an alias at the
    /// content address (`If-None-Match`). If the blob is there already — stored by another
    /// upload, or aliased by an earlier attempt of this commit — `data` goes, or stays if it is
    /// the alias's own target.
    async fn write_alias(&self, digest: &Digest, data: &Path, size: u64) -> Result<(), StoreError> {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(ALIAS_KEY.into()),
            data.to_string().into(),
        );
        attributes.insert(
            Attribute::Metadata(ALIAS_SIZE.into()),
            size.to_string().into(),
        );
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..PutOptions::default()
        };
        match self
            .s3
            .put_opts(&self.blob_key(digest), PutPayload::new(), opts)
            .await
        {
            Ok(_) => {
                self.remember_alias(digest, data, size);
                Ok(())
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => match self.locate(digest).await? {
                Some(Location::Alias { key, .. }) if key == *data => Ok(()),
                Some(_) => self.delete_key(data).await,
                None => Err(StoreError::Io(std::io::Error::other(format!(
                    "blob {digest} vanished while its alias was written; try again"
                )))),
            },
            Err(e) => Err(os_err(e)),
        }
    }

    /// GETs `range` of the object at `key`.
    async fn get_range(
        &self,
        key: &Path,
        range: std::ops::Range<u64>,
    ) -> object_store::Result<object_store::GetResult> {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        self.s3.get_opts(key, opts).await
    }

    /// Deletes a committed upload's objects, known from its state, in one request (no
    /// listing). A tail a best-effort delete left behind earlier is still under the upload's
    /// prefix: `upload_list` names it, and the collector of abandoned uploads removes it.
    async fn remove_committed(&self, id: &UploadId, state: &UploadState) -> Result<(), StoreError> {
        let mut keys: Vec<Path> = [state.now.tail, state.before.as_ref().and_then(|b| b.tail)]
            .into_iter()
            .flatten()
            .map(|(g, _)| self.tail_key(id, g))
            .collect();
        if state.multipart.is_some() && state.data.is_none() {
            // Before aliases: the multipart object was copied to the content address.
            keys.push(self.upload_key(id, "data"));
        }
        keys.push(self.upload_key(id, "state.json"));
        self.delete_keys(keys).await
    }

    /// Copies a completed object to its content address unless the blob is there already.
    async fn publish(&self, from: &Path, digest: &Digest) -> Result<(), StoreError> {
        let to = self.blob_key(digest);
        match self.s3.copy_if_not_exists(from, &to).await {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            // Stores without conditional copy: a plain copy of verified, content-addressed
            // bytes is just as right (a concurrent writer writes the same bytes).
            Err(
                object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. },
            ) => self.s3.copy(from, &to).await.map_err(os_err),
            Err(e) => Err(os_err(e)),
        }
    }
}

impl S3BlobStore {
    /// Puts an upload's staged bytes at `digest`: the tail copied when there are no parts,
    /// else the multipart upload completed (the tail as its last part) and aliased (copied, for
    /// a state from before aliases).
    /// `resumed`: an earlier attempt of this commit got as far as saving its digest, so it may
    /// have completed the multipart upload already.
    async fn publish_staged(
        &self,
        id: &UploadId,
        state: &UploadState,
        digest: &Digest,
        resumed: bool,
    ) -> Result<(), StoreError> {
        let size = state.now.size;
        match (&state.multipart, state.now.parts.is_empty()) {
            (_, true) => match state.now.tail {
                Some((generation, _)) => {
                    self.publish(&self.tail_key(id, generation), digest).await?
                }
                None => self.put(digest, Bytes::new()).await?,
            },
            (Some(_), false)
                if resumed
                    && state.data.is_some()
                    && self.object_size(&self.data_key(id, state)).await? == Some(size) =>
            {
                // Completed by an earlier attempt of this commit (its tail was the last part, so
                // the multipart upload is gone): only the alias may be missing.
                self.write_alias(digest, &self.data_key(id, state), size)
                    .await?;
            }
            (Some(multipart), false) => {
                let data_key = self.data_key(id, state);
                let mut parts: Vec<PartId> = state
                    .now
                    .parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.etag.clone(),
                    })
                    .collect();
                if state.now.tail.is_some() {
                    let tail = self.read_tail(id, &state.now).await?;
                    let last = put_part(
                        Arc::clone(&self.s3),
                        data_key.clone(),
                        multipart.clone(),
                        parts.len(),
                        tail.into(),
                        0,
                    )
                    .await?;
                    parts.push(PartId {
                        content_id: last.etag,
                    });
                }
                match self
                    .s3
                    .complete_multipart(&data_key, multipart, parts)
                    .await
                {
                    Ok(_) => {}
                    // Completed by an attempt that stopped before the alias (or the copy).
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(os_err(e)),
                }
                match self.s3.head(&data_key).await {
                    Ok(m) if m.size == size => {}
                    Ok(m) => {
                        return Err(StoreError::Corrupt(format!(
                            "upload {id} completed as {} bytes, {size} were staged",
                            m.size
                        )));
                    }
                    Err(e) => return Err(os_err(e)),
                }
                if state.data.is_some() {
                    self.write_alias(digest, &data_key, size).await?;
                } else {
                    self.publish(&data_key, digest).await?;
                }
            }
            (None, false) => {
                return Err(StoreError::Corrupt(format!(
                    "upload {id} has parts but no multipart upload"
                )));
            }
        }
        Ok(())
    }
}

/// Uploads a part; the future the append keeps in flight.
async fn put_part(
    s3: Arc<AmazonS3>,
    key: Path,
    multipart: String,
    index: usize,
    data: PutPayload,
    size: u64,
) -> Result<Part, StoreError> {
    let PartId { content_id } = s3
        .put_part(&key, &multipart, index, data)
        .await
        .map_err(os_err)?;
    Ok(Part {
        etag: content_id,
        size,
    })
}

/// Cuts bytes into the parts of one multipart upload as they arrive: a part goes out whenever a
/// part's worth is buffered, [`PARTS_IN_FLIGHT`] at most at once, so memory stays at a few
/// parts. The multipart upload is created at the first full part unless given.
struct PartCutter {
    s3: Arc<AmazonS3>,
    key: Path,
    part_size: usize,
    multipart: Option<String>,
    /// The index of the first part this cutter sends (parts staged before it come first).
    first: usize,
    /// Bytes not yet sent (less than a part once `feed` returns).
    buf: BytesMut,
    /// Parts sent and acknowledged, in order.
    parts: Vec<Part>,
    in_flight: FuturesOrdered<BoxFuture<'static, Result<Part, StoreError>>>,
}

impl PartCutter {
    fn new(
        s3: Arc<AmazonS3>,
        key: Path,
        part_size: usize,
        multipart: Option<String>,
        first: usize,
        buf: BytesMut,
    ) -> PartCutter {
        PartCutter {
            s3,
            key,
            part_size,
            multipart,
            first,
            buf,
            parts: Vec::new(),
            in_flight: FuturesOrdered::new(),
        }
    }

    /// Adds bytes, sending a part (and waiting for room) when a part's worth is buffered. After
    /// an error, [`PartCutter::settle`] before giving up.
    async fn feed(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() < self.part_size {
            return Ok(());
        }
        let multipart = match &self.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self.s3.create_multipart(&self.key).await.map_err(os_err)?;
                self.multipart = Some(m.clone());
                m
            }
        };
        let part = self.buf.split().freeze();
        let size = part.len() as u64;
        let index = self.first + self.parts.len() + self.in_flight.len();
        self.in_flight.push_back(
            put_part(
                Arc::clone(&self.s3),
                self.key.clone(),
                multipart,
                index,
                PutPayload::from(part),
                size,
            )
            .boxed(),
        );
        if self.in_flight.len() >= PARTS_IN_FLIGHT
            && let Some(done) = self.in_flight.next().await
        {
            self.parts.push(done?);
        }
        Ok(())
    }

    /// Waits for every part in flight; the first failure, if any.
    async fn settle(&mut self) -> Result<(), StoreError> {
        let mut failed = None;
        while let Some(done) = self.in_flight.next().await {
            match done {
                Ok(p) if failed.is_none() => self.parts.push(p),
                Ok(_) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Aborts a multipart upload when dropped armed (a failed or abandoned whole-blob upload): S3
/// then frees its parts. Disarmed once the upload is completed.
struct AbortOnDrop {
    s3: Arc<AmazonS3>,
    key: Path,
    multipart: Option<String>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let (Some(multipart), Ok(rt)) =
            (self.multipart.take(), tokio::runtime::Handle::try_current())
        {
            let (s3, key) = (Arc::clone(&self.s3), self.key.clone());
            rt.spawn(async move {
                if let Err(e) = s3.abort_multipart(&key, &multipart).await {
                    tracing::debug!(%key, error = %e, "multipart upload not aborted");
                }
            });
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.locate(digest).await?.map(|l| match l {
            Location::Direct(size) | Location::Alias { size, .. } => size,
        }))
    }

    async fn read(&self, digest: &Digest, offset: u64, len: u64) -> Result<ByteStream, StoreError> {
        if len == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| StoreError::Io(std::io::Error::other("read range overflows")))?;
        let stream = |r: object_store::GetResult| r.into_stream().map_err(io_err).boxed();
        let not_found = || StoreError::BlobNotFound(digest.clone());
        if let Some((key, _)) = self.alias_cached(digest) {
            match self.get_range(&key, offset..end).await {
                Ok(r) => return Ok(stream(r)),
                // Deleted (and perhaps stored again since): look again.
                Err(e) if is_not_found(&e) => self.forget_alias(digest),
                Err(e) => return Err(os_err(e)),
            }
        }
        let failed = match self.get_range(&self.blob_key(digest), offset..end).await {
            Ok(r) if alias_of(&r.attributes).is_none() => return Ok(stream(r)),
            Ok(_) => None,
            Err(e) if is_not_found(&e) => return Err(not_found()),
            // An alias is empty, so a range of its blob is not satisfiable there.
            Err(e) => Some(e),
        };
        match self.locate(digest).await? {
            Some(Location::Alias { key, .. }) => match self.get_range(&key, offset..end).await {
                Ok(r) => Ok(stream(r)),
                Err(e) if is_not_found(&e) => Err(not_found()),
                Err(e) => Err(os_err(e)),
            },
            Some(Location::Direct(_)) => Err(failed.map_or_else(not_found, os_err)),
            None => Err(not_found()),
        }
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        if let Some(b) = self.small.lock().ok().and_then(|c| c.get(digest)) {
            return Ok(b);
        }
        if let Some((key, _)) = self.alias_cached(digest) {
            match self.s3.get(&key).await {
                Ok(r) => {
                    let b = r.bytes().await.map_err(os_err)?;
                    self.cache_small(digest, &b);
                    return Ok(b);
                }
                // Deleted (and perhaps stored again since): look again.
                Err(e) if is_not_found(&e) => self.forget_alias(digest),
                Err(e) => return Err(os_err(e)),
            }
        }
        let r = match self.s3.get(&self.blob_key(digest)).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Err(StoreError::BlobNotFound(digest.clone())),
            Err(e) => return Err(os_err(e)),
        };
        let r = match alias_of(&r.attributes) {
            Some((key, size)) => {
                self.remember_alias(digest, &key, size);
                match self.s3.get(&key).await {
                    Ok(r) => r,
                    Err(e) if is_not_found(&e) => {
                        return Err(StoreError::BlobNotFound(digest.clone()));
                    }
                    Err(e) => return Err(os_err(e)),
                }
            }
            None => r,
        };
        let b = r.bytes().await.map_err(os_err)?;
        self.cache_small(digest, &b);
        Ok(b)
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<(), StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .s3
            .put_opts(&self.blob_key(digest), bytes.clone().into(), opts)
            .await
        {
            // Content-addressed: what is there is these very bytes.
            Ok(_)
            | Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                self.cache_small(digest, &bytes);
                Ok(())
            }
            Err(e) => Err(os_err(e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        self.delete_many(std::slice::from_ref(digest)).await
    }

    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StoreError> {
        if let Ok(mut c) = self.small.lock() {
            for d in digests {
                c.remove(d);
            }
        }
        // An alias's bytes go first, then the alias: a failure in between leaves an alias a
        // later delete still follows.
        let mut located: Vec<Option<Location>> = Vec::with_capacity(digests.len());
        for chunk in digests.chunks(16) {
            located
                .extend(futures::future::try_join_all(chunk.iter().map(|d| self.locate(d))).await?);
        }
        let targets = located
            .into_iter()
            .filter_map(|l| match l {
                Some(Location::Alias { key, .. }) => Some(key),
                _ => None,
            })
            .collect();
        self.delete_keys(targets).await?;
        self.delete_keys(digests.iter().map(|d| self.blob_key(d)).collect())
            .await?;
        for d in digests {
            self.forget_alias(d);
        }
        Ok(())
    }

    fn puts_streams(&self) -> bool {
        true
    }

    async fn put_stream(
        &self,
        digest: &Digest,
        len: u64,
        mut data: ByteStream,
        verify: Verify<'_>,
    ) -> Result<bool, StoreError> {
        let part_size = self.options.part_size;
        if len <= part_size as u64 {
            // One part's worth: buffered, then one conditional PUT.
            let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
            while let Some(chunk) = data.next().await {
                buf.extend_from_slice(&chunk.map_err(StoreError::Stream)?);
                if buf.len() > part_size {
                    break;
                }
            }
            if !verify(buf.len() as u64) {
                return Ok(false);
            }
            self.put(digest, buf.freeze()).await?;
            return Ok(true);
        }
        if self.stat(digest).await? == Some(len) {
            // Stored already: the bytes are still received and checked, and nothing is written.
            let mut received = 0u64;
            while let Some(chunk) = data.next().await {
                received += chunk.map_err(StoreError::Stream)?.len() as u64;
            }
            return Ok(verify(received));
        }
        let key = self.blob_key(digest);
        let multipart = self.s3.create_multipart(&key).await.map_err(os_err)?;
        let mut guard = AbortOnDrop {
            s3: Arc::clone(&self.s3),
            key: key.clone(),
            multipart: Some(multipart.clone()),
        };
        let mut cutter = PartCutter::new(
            Arc::clone(&self.s3),
            key.clone(),
            part_size,
            Some(multipart.clone()),
            0,
            BytesMut::new(),
        );
        let mut received = 0u64;
        while let Some(chunk) = data.next().await {
            let fed = match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    cutter.feed(&chunk).await
                }
                Err(e) => Err(StoreError::Stream(e)),
            };
            if let Err(e) = fed {
                let _ = cutter.settle().await;
                return Err(e);
            }
        }
        cutter.settle().await?;
        if !verify(received) {
            return Ok(false);
        }
        let mut parts = std::mem::take(&mut cutter.parts);
        if !cutter.buf.is_empty() {
            let last = cutter.buf.split().freeze();
            let size = last.len() as u64;
            parts.push(
                put_part(
                    Arc::clone(&self.s3),
                    key.clone(),
                    multipart.clone(),
                    parts.len(),
                    last.into(),
                    size,
                )
                .await?,
            );
        }
        if self.stat(digest).await? == Some(len) {
            // Stored meanwhile (another replica, perhaps as an alias, which completing here would
            // overwrite and orphan its object): this upload goes.
            drop(guard);
            return Ok(true);
        }
        let ids = parts
            .into_iter()
            .map(|p| PartId { content_id: p.etag })
            .collect();
        self.s3
            .complete_multipart(&key, &multipart, ids)
            .await
            .map_err(os_err)?;
        guard.multipart = None;
        Ok(true)
    }

    async fn upload_start(&self, id: &UploadId) -> Result<(), StoreError> {
        // Nothing to create: the first append that brings bytes writes the state.
        let _ = id;
        Ok(())
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64, StoreError> {
        Ok(self.load_or_empty(id).await?.0.now.size)
    }

    async fn upload_append(
        &self,
        id: &UploadId,
        offset: u64,
        mut data: ByteStream,
        checkpoint: Option<HashCheckpoint<'_>>,
    ) -> Result<u64, StoreError> {
        let (mut state, version) = self.load_or_empty(id).await?;
        if state.now.size != offset {
            return Err(StoreError::OffsetMismatch {
                expected: offset,
                actual: state.now.size,
            });
        }
        let before = state.now.clone();
        let mut next = before.clone();
        next.tail = None;
        next.hash = None;
        // Started (the tail read) when the first bytes arrive: an empty body (the final PUT of
        // most clients) changes nothing and writes nothing.
        let mut cutter: Option<PartCutter> = None;
        let mut received = 0u64;
        let mut stream_error = None;
        loop {
            let chunk = match data.next().await {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    stream_error = Some(e);
                    break;
                }
                None => break,
            };
            if chunk.is_empty() {
                continue;
            }
            let c = match &mut cutter {
                Some(c) => c,
                None => cutter.insert(PartCutter::new(
                    Arc::clone(&self.s3),
                    self.data_key(id, &state),
                    self.options.part_size,
                    state.multipart.clone(),
                    before.parts.len(),
                    BytesMut::from(self.read_tail(id, &before).await?),
                )),
            };
            received += chunk.len() as u64;
            if let Err(e) = c.feed(&chunk).await {
                // Nothing of this append is recorded: the upload is as it was before it.
                let _ = c.settle().await;
                return Err(e);
            }
        }
        let Some(mut cutter) = cutter else {
            // Nothing arrived: the upload is as it was.
            return match stream_error {
                Some(e) => Err(StoreError::Stream(e)),
                None => Ok(offset),
            };
        };
        cutter.settle().await?;
        if state.multipart.is_none() && cutter.multipart.is_some() {
            state.data = Some(cutter.key.to_string());
        }
        state.multipart = cutter.multipart.take();
        next.parts.append(&mut cutter.parts);
        let buf = cutter.buf;
        next.size = offset + received;
        if !buf.is_empty() {
            let generation = state.generation + 1;
            let len = buf.len() as u64;
            self.s3
                .put(&self.tail_key(id, generation), buf.freeze().into())
                .await
                .map_err(os_err)?;
            state.generation = generation;
            next.tail = Some((generation, len));
        }
        next.hash = checkpoint
            .and_then(|c| c())
            .filter(|(n, _)| *n == next.size)
            .map(|(n, saved)| (n, hex::encode(saved)));
        // Tails no state will refer to once this one is saved.
        let unreferenced: Vec<u64> = state
            .before
            .iter()
            .filter_map(|b| b.tail)
            .map(|(g, _)| g)
            .filter(|g| Some(*g) != before.tail.map(|t| t.0) && Some(*g) != next.tail.map(|t| t.0))
            .collect();
        state.before = Some(before);
        state.now = next;
        state.modified = now_millis();
        if self.save(id, &state, version).await?.is_none() {
            return Err(self.conflict(id, offset).await);
        }
        self.drop_tails(id, unreferenced).await;
        match stream_error {
            Some(e) => Err(StoreError::Stream(e)),
            None => Ok(state.now.size),
        }
    }

    async fn upload_hash_state(&self, id: &UploadId) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let (state, _) = self.load_or_empty(id).await?;
        Ok(state
            .now
            .hash
            .and_then(|(n, h)| hex::decode(h).ok().map(|bytes| (n, bytes))))
    }

    async fn upload_truncate(&self, id: &UploadId, len: u64) -> Result<(), StoreError> {
        let (mut state, version) = self.load_or_empty(id).await?;
        if state.now.size == len {
            return Ok(());
        }
        let Some(before) = state.before.take().filter(|b| b.size == len) else {
            return Err(StoreError::Unsupported(format!(
                "upload {id} in the object store can be cut back only to where its last append \
                 started, not to {len} bytes"
            )));
        };
        let dropped = state.now.tail.map(|t| t.0);
        state.now = before;
        state.modified = now_millis();
        if self.save(id, &state, version).await?.is_none() {
            return Err(self.conflict(id, len).await);
        }
        self.drop_tails(id, dropped).await;
        Ok(())
    }

    async fn upload_modified(&self, id: &UploadId) -> Result<i64, StoreError> {
        match self.load(id).await {
            Ok((s, _)) => Ok(s.modified),
            // Objects without a state (an append cut off before its first state write, or a
            // cleanup cut off): their newest write, so the collector of abandoned uploads
            // removes them in time.
            Err(StoreError::UploadUnknown(u)) => {
                let prefix = self.key(&format!("uploads/{id}"));
                let mut newest = None;
                let mut listing = self.s3.list(Some(&prefix));
                while let Some(m) = listing.next().await {
                    let t = m.map_err(os_err)?.last_modified.timestamp_millis();
                    newest = Some(newest.map_or(t, |n: i64| n.max(t)));
                }
                newest.ok_or(StoreError::UploadUnknown(u))
            }
            Err(e) => Err(e),
        }
    }

    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream, StoreError> {
        let (state, _) = self.load_or_empty(id).await?;
        if !state.now.parts.is_empty() {
            return Err(StoreError::Unsupported(format!(
                "the parts of upload {id} are in an unfinished S3 multipart upload, which \
                 cannot be read back; its hash state was lost"
            )));
        }
        let tail = self.read_tail(id, &state.now).await?;
        Ok(futures::stream::iter([Ok(tail)]).boxed())
    }

    async fn upload_commit(&self, id: &UploadId, digest: &Digest) -> Result<u64, StoreError> {
        let (mut state, version) = self.load_or_empty(id).await?;
        if version.is_none() && *digest != Digest::of(digest.algorithm(), b"") {
            // No state: nothing staged, so only the empty blob can be committed. (The caller
            // verified the digest against the staged bytes; this guards a misuse.)
            return Err(StoreError::UploadUnknown(id.to_string()));
        }
        let size = state.now.size;
        let name = digest.to_string();
        let resumed = state.committing.as_deref() == Some(name.as_str());
        if state.data.is_some() && !state.now.parts.is_empty() && !resumed {
            // Saved before the multipart upload completes: an abort after that must know
            // whether `data/<id>` became this blob (see `upload_abort`).
            state.committing = Some(name);
            state.modified = now_millis();
            if self.save(id, &state, version.clone()).await?.is_none() {
                return Err(self.conflict(id, size).await);
            }
        }
        if let Err(e) = self.publish_staged(id, &state, digest, resumed).await {
            // Committed already by an attempt that stopped before cleaning up (its staged
            // objects may be gone), or by another upload: the blob is there, verified when it
            // was committed.
            if self.stat(digest).await? != Some(size) {
                return Err(e);
            }
            if state.data.is_some() && state.committing.is_some() {
                // This upload's completed object, unless it is the blob's: nothing else would
                // ever find it once the state is gone.
                let data_key = self.data_key(id, &state);
                if !self.aliased_to(digest, &data_key).await? {
                    if let Some(multipart) = &state.multipart {
                        self.abort_multipart(&data_key, multipart).await?;
                    }
                    self.delete_key(&data_key).await?;
                }
            }
        }
        if version.is_some() {
            self.remove_committed(id, &state).await?;
        }
        Ok(size)
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<(), StoreError> {
        // One listing finds whatever the upload wrote; an upload that never received a byte
        // (most that end in a whole-blob `PUT`) wrote nothing, and that is the only request.
        let prefix = self.key(&format!("uploads/{id}"));
        let any = self
            .s3
            .list(Some(&prefix))
            .next()
            .await
            .transpose()
            .map_err(os_err)?;
        if any.is_none() {
            return Ok(());
        }
        let state = match self.load(id).await {
            Ok((s, _)) => Some(s),
            // Tails without a state (an append cut off before its first state write), or a
            // corrupt state: its objects must not stay forever.
            Err(StoreError::UploadUnknown(_) | StoreError::Corrupt(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(state) = state
            && let Some(multipart) = &state.multipart
        {
            let data_key = self.data_key(id, &state);
            self.abort_multipart(&data_key, multipart).await?;
            if state.data.is_some() {
                // Completed as a blob whose alias was written: the bytes are that blob's now.
                let aliased = match state.committing.as_deref().map(Digest::parse) {
                    Some(Ok(d)) => self.aliased_to(&d, &data_key).await?,
                    _ => false,
                };
                if !aliased
                    && state.committing.is_some()
                    && now_millis() - state.modified < COMMIT_WINDOW_MS
                {
                    // A commit began within the hour and has not written its alias: it may be
                    // running on another replica. Its object is not ours to delete yet.
                    return Err(StoreError::Io(std::io::Error::other(format!(
                        "upload {id} is being committed; try again later"
                    ))));
                }
                if !aliased {
                    self.delete_key(&data_key).await?;
                }
            }
        }
        self.remove_upload_objects(id).await
    }

    async fn upload_list(&self) -> Result<Vec<UploadId>, StoreError> {
        // Uploads with any object (a full listing: some stores keep empty "directories"
        // around, so a delimiter listing's common prefixes would name uploads long gone).
        let mut ids = std::collections::BTreeSet::new();
        let mut listing = self.s3.list(Some(&self.key("uploads")));
        while let Some(m) = listing.next().await {
            let m = m.map_err(os_err)?;
            let mut parts: Vec<_> = m.location.parts().collect();
            parts.pop();
            if let Some(id) = parts.last().and_then(|p| UploadId::parse(p.as_ref())) {
                ids.insert(id.as_str().to_owned());
            }
        }
        Ok(ids.iter().filter_map(|i| UploadId::parse(i)).collect())
    }

    async fn list(&self) -> Result<Vec<(Digest, i64)>, StoreError> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let prefix = self.key(&format!("blobs/{}", alg.as_str()));
            let mut listing = self.s3.list(Some(&prefix));
            while let Some(m) = listing.next().await {
                let m = m.map_err(os_err)?;
                let Some(hex) = m.location.filename() else {
                    continue;
                };
                if let Ok(d) = Digest::parse(&format!("{}:{hex}", alg.as_str())) {
                    out.push((d, m.last_modified.timestamp_millis()));
                }
            }
        }
        Ok(out)
    }

    async fn download_url(
        &self,
        digest: &Digest,
        expires: Duration,
    ) -> Result<Option<String>, StoreError> {
        let key = match self.locate(digest).await? {
            Some(Location::Alias { key, .. }) => key,
            _ => self.blob_key(digest),
        };
        let url = self
            .s3
            .signed_url(http::Method::GET, &key, expires)
            .await
            .map_err(os_err)?;
        Ok(Some(url.to_string()))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        // One request that needs the bucket and the credentials: a HEAD of a key never written.
        match self.s3.head(&self.key("uploads/.ready")).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_storage_urls() {
        let o = S3Options::from_url("s3://my-bucket/team/registry/").expect("valid");
        assert_eq!(
            (o.bucket.as_str(), o.prefix.as_str()),
            ("my-bucket", "team/registry")
        );
        let o = S3Options::from_url("s3://my-bucket").expect("valid");
        assert_eq!(o.prefix, "");
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Upper/x",
            "s3://b_u/x",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "file:///tmp",
        ] {
            assert!(
                S3Options::from_url(bad).is_none(),
                "{bad:?} must be refused"
            );
        }
    }
}
