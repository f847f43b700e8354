//! The production memory storage behind pingora-cache: sharded, bounded by bytes, LRU eviction,
//! honest size accounting (body + serialized meta + per-entry overhead). Knows nothing of images.
//!
//! Writes are buffered by the miss handler and published only by `finish()`: a miss that fails or
//! is abandoned half way (dropped without `finish`) leaves nothing behind, so a corrupt or
//! truncated body is never served as a hit.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use lru::LruCache;
use parking_lot::Mutex;
use pingora_cache::key::{CacheHashKey, CacheKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheMeta;
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bookkeeping bytes per entry beyond body and meta (map slot, LRU links, Arc, key).
const ENTRY_OVERHEAD: usize = 160;
/// Shards are at least this big, so a shard can hold a typical large image.
const MIN_SHARD_BYTES: u64 = 4 << 20;
const MAX_SHARDS: u64 = 32;

struct Entry {
    meta: (Vec<u8>, Vec<u8>),
    body: Bytes,
    /// Bytes charged against the budget.
    size: usize,
}

struct Shard {
    map: LruCache<HashBinary, Arc<Entry>>,
    bytes: usize,
}

/// Counters read by the metrics module at scrape time.
#[derive(Default)]
pub struct StorageStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub insertions: AtomicU64,
    pub evictions: AtomicU64,
    pub rejected_too_big: AtomicU64,
}

pub struct MemoryStorage {
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
    max_object: usize,
    pub stats: StorageStats,
}

impl MemoryStorage {
    /// `capacity`: total bytes for all entries; `max_object`: largest entry admitted.
    pub fn new(capacity: u64, max_object: u64) -> Self {
        let shards = (capacity / MIN_SHARD_BYTES)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        let shards = if shards > MAX_SHARDS {
            shards / 2
        } else {
            shards
        };
        let shard_budget = (capacity / shards) as usize;
        MemoryStorage {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: LruCache::unbounded(),
                        bytes: 0,
                    })
                })
                .collect(),
            shard_budget,
            max_object: (max_object as usize).min(shard_budget),
            stats: StorageStats::default(),
        }
    }

    fn shard(&self, key: &HashBinary) -> &Mutex<Shard> {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[..8]);
        let idx = (u64::from_le_bytes(b) as usize) & (self.shards.len() - 1);
        &self.shards[idx]
    }

    /// Bytes currently charged (bodies + metas + overhead).
    pub fn used_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }

    pub fn items(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    pub fn capacity(&self) -> usize {
        self.shard_budget * self.shards.len()
    }

    pub fn max_object(&self) -> usize {
        self.max_object
    }

    fn insert(&self, key: HashBinary, entry: Entry) -> bool {
        if entry.size > self.shard_budget {
            self.stats.rejected_too_big.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut shard = self.shard(&key).lock();
        if let Some(old) = shard.map.pop(&key) {
            shard.bytes -= old.size;
        }
        while shard.bytes + entry.size > self.shard_budget {
            match shard.map.pop_lru() {
                Some((_, old)) => {
                    shard.bytes -= old.size;
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        shard.bytes += entry.size;
        shard.map.put(key, Arc::new(entry));
        self.stats.insertions.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn remove(&self, key: &HashBinary) -> bool {
        let mut shard = self.shard(key).lock();
        match shard.map.pop(key) {
            Some(old) => {
                shard.bytes -= old.size;
                true
            }
            None => false,
        }
    }
}

struct Hit {
    body: Bytes,
    done: bool,
    start: usize,
    end: usize,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {}", self.body.len()),
            );
        }
        self.start = start;
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len()));
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

struct Miss {
    storage: &'static MemoryStorage,
    key: HashBinary,
    meta: (Vec<u8>, Vec<u8>),
    body: BytesMut,
    too_big: bool,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.too_big {
            return Ok(());
        }
        if self.body.len() + data.len() > self.storage.max_object {
            // Stop buffering; finish() will refuse to publish.
            self.too_big = true;
            self.body = BytesMut::new();
            return Ok(());
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        if self.too_big {
            self.storage
                .stats
                .rejected_too_big
                .fetch_add(1, Ordering::Relaxed);
            return Error::e_explain(
                ErrorType::InternalError,
                "object larger than cache.max_object_bytes, not cached",
            );
        }
        let body = self.body.freeze();
        let meta = finished_meta(self.meta, &body)?;
        let size = body.len() + meta.0.len() + meta.1.len() + ENTRY_OVERHEAD;
        let entry = Entry { meta, body, size };
        self.storage.insert(self.key, entry);
        Ok(MissFinishType::Created(size))
    }
}

/// The meta published with a finished body: a body that arrived chunked (a transformed image)
/// is stored with its length, so hits carry `Content-Length` (and can serve ranges); a response
/// without an `ETag` gets one made from the body, so hits can be answered 304.
fn finished_meta(meta: (Vec<u8>, Vec<u8>), body: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut m = CacheMeta::deserialize(&meta.0, &meta.1)?;
    let h = m.response_header_mut();
    let has_length = h.headers.contains_key(http::header::CONTENT_LENGTH);
    let has_etag = h.headers.contains_key(http::header::ETAG);
    if has_length && has_etag {
        return Ok(meta);
    }
    if !has_length {
        h.remove_header(&http::header::TRANSFER_ENCODING);
        h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    }
    if !has_etag {
        h.insert_header(http::header::ETAG, super::body_etag(body))?;
        h.insert_header(super::GENERATED_ETAG, "1")?;
    }
    m.serialize()
}

fn key_of(key: &impl CacheHashKey) -> HashBinary {
    key.combined_bin()
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let k = key_of(key);
        let entry = self.shard(&k).lock().map.get(&k).cloned();
        let Some(entry) = entry else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        let meta = CacheMeta::deserialize(&entry.meta.0, &entry.meta.1)?;
        let hit = Hit {
            body: entry.body.clone(),
            done: false,
            start: 0,
            end: entry.body.len(),
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            storage: self,
            key: key_of(key),
            meta: meta.serialize()?,
            body: BytesMut::new(),
            too_big: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let k = key_of(target.key());
        Ok(if self.remove(&k) {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let k = key_of(key);
        let serialized = meta.serialize()?;
        let mut shard = self.shard(&k).lock();
        let Some(old) = shard.map.peek(&k).cloned() else {
            return Ok(false);
        };
        let size = old.body.len() + serialized.0.len() + serialized.1.len() + ENTRY_OVERHEAD;
        let entry = Entry {
            meta: serialized,
            body: old.body.clone(),
            size,
        };
        shard.bytes = shard.bytes - old.size + size;
        shard.map.put(k, Arc::new(entry));
        Ok(true)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::ResponseHeader;
    use std::time::{Duration, SystemTime};

    fn leak(s: MemoryStorage) -> &'static MemoryStorage {
        Box::leak(Box::new(s))
    }

    fn meta() -> CacheMeta {
        let h = ResponseHeader::build(200, None).unwrap();
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, h)
    }

    async fn miss(s: &'static MemoryStorage, key: &str) -> MissHandler {
        let k = CacheKey::new(key, "");
        let span = pingora_cache::trace::Span::inactive().handle();
        s.get_miss_handler(&k, &meta(), &span).await.unwrap()
    }

    async fn put(s: &'static MemoryStorage, key: &str, body: &[u8]) {
        let mut m = miss(s, key).await;
        m.write_body(Bytes::copy_from_slice(body), true)
            .await
            .unwrap();
        m.finish().await.unwrap();
    }

    async fn get(s: &'static MemoryStorage, key: &str) -> Option<Bytes> {
        let k = CacheKey::new(key, "");
        let (_, mut h) = s
            .lookup(&k, &pingora_cache::trace::Span::inactive().handle())
            .await
            .unwrap()?;
        h.read_body().await.unwrap()
    }

    #[tokio::test]
    async fn write_then_read() {
        let s = leak(MemoryStorage::new(1 << 20, 1 << 20));
        put(s, "a", b"hello").await;
        assert_eq!(get(s, "a").await.unwrap(), Bytes::from_static(b"hello"));
        assert!(get(s, "b").await.is_none());
    }

    #[tokio::test]
    async fn abandoned_write_leaves_nothing() {
        let s = leak(MemoryStorage::new(1 << 20, 1 << 20));
        let mut m = miss(s, "x").await;
        m.write_body(Bytes::from_static(b"half"), false)
            .await
            .unwrap();
        drop(m);
        assert!(get(s, "x").await.is_none());
    }

    #[tokio::test]
    async fn stays_under_budget_and_evicts_lru() {
        let cap = 256 * 1024;
        let s = leak(MemoryStorage::new(cap, cap));
        let body = vec![7u8; 10_000];
        put(s, "first", &body).await;
        for i in 0..100 {
            put(s, &format!("k{i}"), &body).await;
            // keep "first" hot
            assert!(get(s, "first").await.is_some());
            assert!(s.used_bytes() <= cap as usize);
        }
        assert!(get(s, "first").await.is_some());
        assert!(get(s, "k0").await.is_none());
        assert!(s.stats.evictions.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn too_big_is_not_cached() {
        let s = leak(MemoryStorage::new(1 << 20, 1000));
        let mut m = miss(s, "big").await;
        m.write_body(Bytes::from(vec![0u8; 2000]), true)
            .await
            .unwrap();
        assert!(m.finish().await.is_err());
        assert!(get(s, "big").await.is_none());
    }

    #[tokio::test]
    async fn hits_carry_the_stored_length() {
        let s = leak(MemoryStorage::new(1 << 20, 1 << 20));
        put(s, "cl", b"12345").await;
        let k = CacheKey::new("cl", "");
        let (meta, _) = s
            .lookup(&k, &pingora_cache::trace::Span::inactive().handle())
            .await
            .unwrap()
            .unwrap();
        let cl = meta.headers().get(http::header::CONTENT_LENGTH).unwrap();
        assert_eq!(cl.to_str().unwrap(), "5");
    }

    #[tokio::test]
    async fn purge_removes() {
        let s = leak(MemoryStorage::new(1 << 20, 1 << 20));
        put(s, "p", b"x").await;
        let ck = CacheKey::new("p", "").to_compact();
        let out = s
            .purge(
                PurgeTarget::Active(&ck),
                PurgeType::Invalidation,
                &pingora_cache::trace::Span::inactive().handle(),
            )
            .await
            .unwrap();
        assert_eq!(out, PurgeOutcome::Purged(None));
        assert!(get(s, "p").await.is_none());
        assert_eq!(s.used_bytes(), 0);
    }
}
