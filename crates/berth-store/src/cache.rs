//! A byte-bounded cache of content-addressed values (manifests): content never changes under
//! its digest, so an entry is never stale.

use std::collections::{HashMap, VecDeque};

use berth_oci::Digest;

/// Values by digest, at most `capacity` bytes of them; the oldest insertion goes first (a value
/// read again and again is inserted again on its next miss).
#[derive(Debug)]
pub struct DigestCache<V> {
    capacity: usize,
    order: VecDeque<Digest>,
    map: HashMap<Digest, (V, usize)>,
    bytes: usize,
}

impl<V: Clone> DigestCache<V> {
    /// An empty cache holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        DigestCache {
            capacity,
            order: VecDeque::new(),
            map: HashMap::new(),
            bytes: 0,
        }
    }

    /// The value under `digest`, if cached.
    pub fn get(&self, digest: &Digest) -> Option<V> {
        self.map.get(digest).map(|(v, _)| v.clone())
    }

    /// Caches `value` (`len` bytes) under `digest`, then drops the oldest entries until the
    /// cache is within its capacity again. A digest cached already is left as it is.
    pub fn insert(&mut self, digest: &Digest, value: V, len: usize) {
        if self.map.contains_key(digest) {
            return;
        }
        self.bytes += len;
        self.order.push_back(digest.clone());
        self.map.insert(digest.clone(), (value, len));
        while self.bytes > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            if let Some((_, n)) = self.map.remove(&old) {
                self.bytes -= n;
            }
        }
    }

    /// Forgets `digest`.
    pub fn remove(&mut self, digest: &Digest) {
        if let Some((_, n)) = self.map.remove(digest) {
            self.bytes -= n;
            self.order.retain(|d| d != digest);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
