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

use super::disk::{DiskStore, Pending};
use super::fastpath::{FastEntry, FastIndex, Memfd, MIN_BODY_BYTES};
use super::storage::{Entry, EntryInfo, EpochGuard, Inserted, Matcher, MemoryStorage};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::{CacheHashKey, CacheKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType, Storage,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheMeta;
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Origin response headers whose values tag an entry (comma or space separated).
const TAG_HEADERS: [&str; 2] = ["cache-tag", "surrogate-key"];
/// Bounds on what one entry may carry in tags (index memory).
const MAX_TAGS: usize = 64;
const MAX_TAG_LEN: usize = 256;

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

    /// The sendfile copy for `key`, when there is one of the entry the memory tier holds now
    /// and it is fresh. Counts as a memory hit (and keeps the entry warm in both tiers, like a
    /// normal hit). A copy that is no longer current is dropped.
    pub fn fast_hit(&self, k: &HashBinary) -> Option<Arc<FastEntry>> {
        let fast = self.fast.as_ref()?;
        let copy = fast.get(k)?;
        if !self.memory.hit_if_current(k, copy_source(&copy)) {
            fast.remove_if(k, &copy);
            return None;
        }
        if std::time::SystemTime::now() >= copy.fresh_until {
            // Stale: the normal path revalidates (and a new copy is made from its result).
            return None;
        }
        if let Some(d) = &self.disk {
            d.touch(k);
        }
        fast.stats.served.fetch_add(1, Ordering::Relaxed);
        Some(copy)
    }

    /// Makes a sendfile copy of the memory entry under `k` when it has none yet and qualifies:
    /// a fresh 200 with `Content-Length` equal to its body, no `Vary`, a body of at least
    /// `MIN_BODY_BYTES`. Called after a normal hit was served.
    pub fn fast_record(&self, k: &HashBinary) {
        let Some(fast) = self.fast.as_ref() else {
            return;
        };
        let Some(entry) = self.memory.peek(k) else {
            return;
        };
        if entry.body.len() < MIN_BODY_BYTES || fast.has_copy_of(k, &entry) {
            return;
        }
        let meta = match CacheMeta::deserialize(&entry.meta.0, &entry.meta.1) {
            Ok(m) => m,
            Err(_) => return,
        };
        let now = std::time::SystemTime::now();
        let h = meta.headers();
        let length_ok = h
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            == Some(entry.body.len());
        if meta.response_header().status != http::StatusCode::OK
            || !length_ok
            || h.contains_key(http::header::VARY)
            || h.contains_key(http::header::TRANSFER_ENCODING)
            || meta.variance().is_some()
            || !meta.is_fresh(now)
        {
            return;
        }
        let body = match Memfd::with_contents(&entry.body) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("sendfile hits: cannot copy a body to a memfd: {e}");
                return;
            }
        };
        let mut header = meta.response_header_copy();
        super::strip_private_headers(&mut header);
        let copy = FastEntry::new(body, header, meta.epoch(), meta.fresh_until(), &entry);
        fast.insert(*k, copy);
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

fn copy_source(copy: &FastEntry) -> *const Entry {
    copy.source_ptr()
}

/// Tags from `Cache-Tag` / `Surrogate-Key`: split on commas and white space, de-duplicated, at
/// most `MAX_TAGS` of at most `MAX_TAG_LEN` bytes each.
pub fn tags_of(meta: &CacheMeta) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for name in TAG_HEADERS {
        for v in meta.headers().get_all(name) {
            let Ok(v) = v.to_str() else { continue };
            for t in v.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
                if t.is_empty() || t.len() > MAX_TAG_LEN || tags.iter().any(|x| x == t) {
                    continue;
                }
                if tags.len() == MAX_TAGS {
                    return tags;
                }
                tags.push(t.to_string());
            }
        }
    }
    tags
}

struct Hit {
    body: Bytes,
    done: bool,
    start: usize,
    end: usize,
}

impl Hit {
    fn handler(body: Bytes) -> HitHandler {
        let end = body.len();
        Box::new(Hit {
            body,
            done: false,
            start: 0,
            end,
        })
    }
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
    storage: &'static TieredStorage,
    key: HashBinary,
    info: Arc<EntryInfo>,
    meta: (Vec<u8>, Vec<u8>),
    body: BytesMut,
    too_big: bool,
    /// Purge epoch when the miss began.
    seen: u64,
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
        let s = self.storage;
        if self.too_big {
            s.memory
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
        let guard = EpochGuard {
            epoch: &s.epoch,
            seen: self.seen,
        };
        let entry = Entry::new(meta.clone(), body.clone(), self.info.clone());
        let size = entry.size();
        let inserted = s.memory.insert(self.key, entry, Some(guard));
        match (&s.disk, inserted) {
            (_, Inserted::Purged) => {}
            (Some(disk), _) => disk.store(Pending {
                hash: self.key,
                info: self.info,
                meta,
                body,
                epoch: &s.epoch,
                seen: self.seen,
            }),
            (None, Inserted::TooBig) => {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "object larger than a memory cache shard, not cached",
                );
            }
            (None, Inserted::Yes) => {}
        }
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
        let info = EntryInfo {
            key: String::from_utf8_lossy(key.primary_key()).into_owned(),
            tags: tags_of(meta),
        };
        Ok(Box::new(Miss {
            storage: self,
            key: key.combined_bin(),
            info: Arc::new(info),
            meta: meta.serialize()?,
            body: BytesMut::new(),
            too_big: false,
            seen: self.epoch.load(Ordering::SeqCst),
        }))
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

    fn meta(tags: &[(&str, &str)]) -> CacheMeta {
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

    #[test]
    fn tags_from_both_headers() {
        let m = meta(&[
            ("Cache-Tag", "a, b"),
            ("Cache-Tag", "c"),
            ("Surrogate-Key", "b  d\te"),
        ]);
        assert_eq!(tags_of(&m), vec!["a", "b", "c", "d", "e"]);
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
