//! The pingora-cache `Storage` imgedge uses: the memory tier (`storage.rs`) in front of an
//! optional disk tier (`disk.rs`). Knows nothing of images.
//!
//! - lookup: memory; on a memory miss the disk (read on the blocking pool), and a disk hit is
//!   promoted to memory.
//! - miss: the body is buffered in memory and published only by `finish()` (to memory at once,
//!   to disk asynchronously). A miss that fails or is abandoned (dropped without `finish`)
//!   leaves nothing behind; a body over `max_object` is not stored; a body that arrived chunked
//!   is stored with its `Content-Length`.
//! - every entry keeps its cache key string and tags (the origin's `Cache-Tag` and
//!   `Surrogate-Key`) for purging by URL, prefix or tag from both tiers.
//! - purge epoch: a purge bumps it before sweeping the tiers; a write that began before a purge
//!   is not published after it (it might hold what was just purged).
//!
//! Hits are served by `hit.rs`, misses buffered and published by `miss.rs`, sendfile copies of
//! memory entries kept by `fast.rs`.

mod fast;
mod hit;
mod miss;

use super::disk::DiskStore;
use super::fastpath::FastIndex;
use super::storage::{Entry, EpochGuard, Matcher, MemoryStorage};
use async_trait::async_trait;
use hit::Hit;
use miss::Miss;
use pingora_cache::key::{CacheHashKey, CacheKey, HashBinary};
use pingora_cache::storage::{
    HitHandler, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheMeta;
use pingora_error::Result;
use std::any::Any;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct TieredStorage {
    pub memory: MemoryStorage,
    pub disk: Option<DiskStore>,
    max_object: usize,
    epoch: AtomicU64,
    /// Copies of memory entries for `sendfile()` hits (`cache.sendfile_hits`).
    pub fast: Option<FastIndex>,
}

impl TieredStorage {
    pub fn new(memory: MemoryStorage, disk: Option<DiskStore>) -> TieredStorage {
        let max_object = memory
            .max_object()
            .max(disk.as_ref().map_or(0, |d| d.max_object() as usize));
        TieredStorage {
            memory,
            disk,
            max_object,
            epoch: AtomicU64::new(0),
            fast: None,
        }
    }

    /// Keeps sendfile copies of memory entries (see `fastpath.rs`).
    pub fn with_fast(mut self, fast: FastIndex) -> TieredStorage {
        self.fast = Some(fast);
        self
    }

    /// Largest body stored (in either tier).
    pub fn max_object(&self) -> usize {
        self.max_object
    }

    fn guard(&self) -> EpochGuard<'_> {
        EpochGuard {
            epoch: &self.epoch,
            seen: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// Removes every entry `matcher` accepts from both tiers; returns how many distinct
    /// entries were removed.
    pub async fn purge_where(&'static self, matcher: Arc<Matcher>) -> usize {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut keys: HashSet<HashBinary> =
            self.memory.remove_matching(&*matcher).into_iter().collect();
        if let Some(disk) = self.disk.as_ref() {
            match tokio::task::spawn_blocking(move || disk.remove_matching_blocking(matcher)).await
            {
                Ok(k) => keys.extend(k),
                Err(e) => log::error!("disk cache: purge task failed: {e}"),
            }
        }
        if let Some(fast) = &self.fast {
            // The copies stopped being served with their entries; this gives the memory back.
            fast.sweep();
        }
        keys.len()
    }

    /// The start-up scan of the disk tier (blocking; a no-op without one).
    pub fn scan_disk(&self) {
        if let Some(d) = &self.disk {
            d.scan();
        }
    }
}

#[async_trait]
impl Storage for TieredStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let k = key.combined_bin();
        if let Some(entry) = self.memory.get(&k) {
            if let Some(d) = &self.disk {
                d.touch(&k);
            }
            let meta = CacheMeta::deserialize(&entry.meta.0, &entry.meta.1)?;
            return Ok(Some((meta, Hit::handler(entry.body.clone()))));
        }
        let Some(disk) = self.disk.as_ref() else {
            return Ok(None);
        };
        // Taken before the read: a purge racing with it keeps the entry out of memory.
        let guard = self.guard();
        let Some(loaded) = disk.lookup(k).await else {
            return Ok(None);
        };
        let meta = match CacheMeta::deserialize(&loaded.meta.0, &loaded.meta.1) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("disk cache: unreadable meta for {}: {e}", hex::encode(k));
                return Ok(None);
            }
        };
        let body = loaded.body.clone();
        self.memory.insert(
            k,
            Entry::new(loaded.meta, loaded.body, loaded.info),
            Some(guard),
        );
        Ok(Some((meta, Hit::handler(body))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Miss::handler(self, key, meta)
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let k = target.key().combined_bin();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut found = self.memory.remove(&k);
        if let Some(fast) = &self.fast {
            fast.sweep();
        }
        if let Some(disk) = self.disk.as_ref() {
            found |= tokio::task::spawn_blocking(move || disk.remove_blocking(&k))
                .await
                .unwrap_or(false);
        }
        Ok(if found {
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
        let k = key.combined_bin();
        let serialized = meta.serialize()?;
        let mut updated = self.memory.update_meta(&k, serialized.clone());
        if let Some(disk) = self.disk.as_ref() {
            // Awaited, so a restart right after a revalidation finds the new meta.
            updated |=
                tokio::task::spawn_blocking(move || disk.rewrite_meta_blocking(&k, serialized))
                    .await
                    .unwrap_or(false);
        }
        Ok(updated)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::storage::EntryInfo;
    use bytes::Bytes;
    use pingora_http::ResponseHeader;
    use std::time::{Duration, SystemTime};

    fn leak(s: TieredStorage) -> &'static TieredStorage {
        Box::leak(Box::new(s))
    }

    fn memory_only(cap: u64, max: u64) -> &'static TieredStorage {
        leak(TieredStorage::new(MemoryStorage::new(cap, max), None))
    }

    fn with_disk(dir: &std::path::Path, mem: u64) -> &'static TieredStorage {
        let d = DiskStore::new(dir, 8 << 20, 1 << 20);
        d.scan();
        leak(TieredStorage::new(MemoryStorage::new(mem, mem), Some(d)))
    }

    pub(super) fn meta(tags: &[(&str, &str)]) -> CacheMeta {
        let mut h = ResponseHeader::build(200, None).unwrap();
        for (k, v) in tags {
            h.append_header(k.to_string(), *v).unwrap();
        }
        let now = SystemTime::now();
        CacheMeta::new(now + Duration::from_secs(60), now, 0, 0, h)
    }

    fn span() -> SpanHandle {
        pingora_cache::trace::Span::inactive().handle()
    }

    async fn put_tagged(s: &'static TieredStorage, key: &str, body: &[u8], tags: &[(&str, &str)]) {
        let k = CacheKey::new(key, "");
        let mut m = s.get_miss_handler(&k, &meta(tags), &span()).await.unwrap();
        m.write_body(Bytes::copy_from_slice(body), true)
            .await
            .unwrap();
        m.finish().await.unwrap();
    }

    async fn put(s: &'static TieredStorage, key: &str, body: &[u8]) {
        put_tagged(s, key, body, &[]).await
    }

    async fn get(s: &'static TieredStorage, key: &str) -> Option<Bytes> {
        let k = CacheKey::new(key, "");
        let (_, mut h) = s.lookup(&k, &span()).await.unwrap()?;
        h.read_body().await.unwrap()
    }

    async fn disk_settled(s: &'static TieredStorage, items: usize) {
        let d = s.disk.as_ref().unwrap();
        for _ in 0..200 {
            if d.items() == items {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("disk has {} items, want {items}", d.items());
    }

    #[tokio::test]
    async fn write_then_read() {
        let s = memory_only(1 << 20, 1 << 20);
        put(s, "a", b"hello").await;
        assert_eq!(get(s, "a").await.unwrap(), Bytes::from_static(b"hello"));
        assert!(get(s, "b").await.is_none());
    }

    #[tokio::test]
    async fn abandoned_write_leaves_nothing() {
        let s = memory_only(1 << 20, 1 << 20);
        let k = CacheKey::new("x", "");
        let mut m = s.get_miss_handler(&k, &meta(&[]), &span()).await.unwrap();
        m.write_body(Bytes::from_static(b"half"), false)
            .await
            .unwrap();
        drop(m);
        assert!(get(s, "x").await.is_none());
    }

    #[tokio::test]
    async fn too_big_is_not_cached() {
        let s = memory_only(1 << 20, 1000);
        let k = CacheKey::new("big", "");
        let mut m = s.get_miss_handler(&k, &meta(&[]), &span()).await.unwrap();
        m.write_body(Bytes::from(vec![0u8; 2000]), true)
            .await
            .unwrap();
        assert!(m.finish().await.is_err());
        assert!(get(s, "big").await.is_none());
    }

    #[tokio::test]
    async fn hits_carry_the_stored_length() {
        let s = memory_only(1 << 20, 1 << 20);
        put(s, "cl", b"12345").await;
        let k = CacheKey::new("cl", "");
        let (meta, _) = s.lookup(&k, &span()).await.unwrap().unwrap();
        let cl = meta.headers().get(http::header::CONTENT_LENGTH).unwrap();
        assert_eq!(cl.to_str().unwrap(), "5");
    }

    #[tokio::test]
    async fn purge_removes() {
        let s = memory_only(1 << 20, 1 << 20);
        put(s, "p", b"x").await;
        let ck = CacheKey::new("p", "").to_compact();
        let out = s
            .purge(PurgeTarget::Active(&ck), PurgeType::Invalidation, &span())
            .await
            .unwrap();
        assert_eq!(out, PurgeOutcome::Purged(None));
        assert!(get(s, "p").await.is_none());
        assert_eq!(s.memory.used_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn disk_hits_are_promoted_and_survive_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_disk(dir.path(), 1 << 20);
        put_tagged(s, "k1", b"one", &[("Cache-Tag", "t1")]).await;
        disk_settled(s, 1).await;
        assert!(s.memory.remove(&CacheKey::new("k1", "").combined_bin()));
        assert_eq!(get(s, "k1").await.unwrap(), Bytes::from_static(b"one"));
        assert_eq!(s.memory.items(), 1, "promoted");

        // "Restart": a new storage on the same directory.
        let s2 = with_disk(dir.path(), 1 << 20);
        let k = CacheKey::new("k1", "");
        let (meta, mut h) = s2.lookup(&k, &span()).await.unwrap().unwrap();
        assert_eq!(h.read_body().await.unwrap().unwrap(), &b"one"[..]);
        assert_eq!(meta.headers().get("content-length").unwrap(), "3");
        // Tags survived too: a tag purge finds the entry in both tiers.
        let n = s2
            .purge_where(Arc::new(|i: &EntryInfo| i.tags.iter().any(|t| t == "t1")))
            .await;
        assert_eq!(n, 1);
        assert!(get(s2, "k1").await.is_none());
        assert_eq!(s2.disk.as_ref().unwrap().items(), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn update_meta_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_disk(dir.path(), 1 << 20);
        put(s, "u", b"body").await;
        disk_settled(s, 1).await;
        let mut m = meta(&[("X-Rev", "2")]);
        m.response_header_mut()
            .insert_header("Content-Length", "4")
            .unwrap();
        assert!(s
            .update_meta(&CacheKey::new("u", ""), &m, &span())
            .await
            .unwrap());
        let s2 = with_disk(dir.path(), 1 << 20);
        let (meta, mut h) = s2
            .lookup(&CacheKey::new("u", ""), &span())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(meta.headers().get("x-rev").unwrap(), "2");
        assert_eq!(h.read_body().await.unwrap().unwrap(), &b"body"[..]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_purge_during_a_miss_keeps_it_out_of_both_tiers() {
        let dir = tempfile::tempdir().unwrap();
        let s = with_disk(dir.path(), 1 << 20);
        let k = CacheKey::new("race", "");
        let mut m = s.get_miss_handler(&k, &meta(&[]), &span()).await.unwrap();
        m.write_body(Bytes::from_static(b"old"), true)
            .await
            .unwrap();
        s.purge_where(Arc::new(|i: &EntryInfo| i.key == "race"))
            .await;
        m.finish().await.unwrap();
        assert!(get(s, "race").await.is_none());
        assert_eq!(s.disk.as_ref().unwrap().items(), 0);
    }
}
