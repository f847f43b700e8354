//! The disk tier: one file per entry under `<cache.disk.path>/v1/<2 hex>/<32 hex>`, named by the
//! entry's hash, and its in-memory index. Knows nothing of images (nor of HTTP beyond the opaque
//! serialized meta). The file format is in `format.rs`, the start-up scan in `scan.rs`, the
//! write queue in `write.rs`.
//!
//! The start-up scan reads only the fixed header, key and tags (and checks the file length); the
//! payload checksum is verified on every read. A file that fails any check is deleted, logged and
//! counted (`imgedge_cache_disk_corrupt_entries_total`).
//!
//! Crash safety: an entry is written to `.<hash>.<pid>.<seq>.tmp` in the same directory and
//! renamed over the final name only once complete, so a kill -9 leaves at most a temp file
//! (removed at the next start) and never a truncated entry under a real name. fsync policy:
//! none. A process crash loses nothing that was renamed (the page cache survives); a power loss
//! may lose recent entries or leave files whose checksum fails, which are dropped. For a cache
//! that is cheaper than an fsync per entry.
//!
//! Blocking I/O runs on tokio's blocking pool (`spawn_blocking`), never on the async workers.
//! Writes are asynchronous after the miss finished, bounded (`MAX_WRITES_IN_FLIGHT`,
//! `MAX_PENDING_BYTES`; beyond: skipped and counted). A failed write (full disk, read-only
//! directory) marks the tier down for `RETRY_AFTER`: writes are skipped, reads go on, requests
//! never fail because of the disk.
//!
//! The index (key string, tags, size, LRU order) is in memory, sharded; it is rebuilt at start-up
//! by a background scan (`scan`). Until the scan has finished, a lookup that is not in the index
//! yet reads the entry's file directly, so hits survive a restart from the first request.

pub mod format;
mod scan;
mod write;

use super::shards::{self, Shard, Shards};
use super::storage::{EntryInfo, Matcher};
use crate::metrics::{Counted, METRICS};
use bytes::Bytes;
use format::{decode, FormatError, Loaded};
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Space accounting: files take whole blocks.
const BLOCK: u64 = 4096;
/// Shards are at least this big (each shard evicts on its own).
const MIN_SHARD_BYTES: u64 = 64 << 20;
const MAX_SHARDS: u64 = 64;

/// Space an entry takes on disk (whole blocks).
fn charged(file_len: u64) -> u64 {
    file_len.div_ceil(BLOCK) * BLOCK
}

struct Indexed {
    size: u64,
    info: Arc<EntryInfo>,
}

/// The tier's counts; each also feeds its metric (`crate::metrics`) as it happens.
pub struct DiskStats {
    pub hits: Counted,
    pub misses: Counted,
    pub writes: Counted,
    pub writes_skipped: Counted,
    pub evictions: Counted,
    pub corrupt: Counted,
    pub errors_open: Counted,
    pub errors_read: Counted,
    pub errors_write: Counted,
    pub errors_delete: Counted,
    pub errors_scan: Counted,
    /// Milliseconds the start-up scan took (0 while it runs).
    pub scan_millis: AtomicU64,
}

impl Default for DiskStats {
    fn default() -> DiskStats {
        let m = &*METRICS;
        let error = |op: &str| Counted::new(m.disk_errors.with_label_values(&[op]));
        DiskStats {
            hits: Counted::new(m.disk_lookups.with_label_values(&["hit"])),
            misses: Counted::new(m.disk_lookups.with_label_values(&["miss"])),
            writes: Counted::new(m.disk_writes.with_label_values(&["ok"])),
            writes_skipped: Counted::new(m.disk_writes.with_label_values(&["skipped"])),
            evictions: Counted::new(m.disk_evictions.clone()),
            corrupt: Counted::new(m.disk_corrupt.clone()),
            errors_open: error("open"),
            errors_read: error("read"),
            errors_write: error("write"),
            errors_delete: error("delete"),
            errors_scan: error("scan"),
            scan_millis: AtomicU64::new(0),
        }
    }
}

pub struct DiskStore {
    /// `<path>/v1`
    root: PathBuf,
    shards: Shards<Indexed, u64>,
    shard_budget: u64,
    max_object: u64,
    /// True until the start-up scan has indexed every file.
    scanning: AtomicBool,
    /// Purges issued while scanning, applied to files the scan finds later.
    scan_purges: Mutex<Vec<Arc<Matcher>>>,
    /// Writes are skipped until then (after a failure).
    down_until: Mutex<Option<Instant>>,
    up: AtomicBool,
    writes_in_flight: AtomicUsize,
    pending_bytes: AtomicU64,
    tmp_seq: AtomicU64,
    pub stats: DiskStats,
}

/// An entry to write, with the purge epoch seen when its miss began.
pub struct Pending {
    pub hash: HashBinary,
    pub info: Arc<EntryInfo>,
    pub meta: (Vec<u8>, Vec<u8>),
    pub body: Bytes,
    pub epoch: &'static AtomicU64,
    pub seen: u64,
}

fn hex(hash: &HashBinary) -> String {
    hex::encode(hash)
}

impl DiskStore {
    /// Touches nothing on disk: [`DiskStore::scan`], run once the process runs (after
    /// daemonizing and dropping privileges, so the directory gets the right owner), creates
    /// the directory and indexes it.
    pub fn new(path: &Path, bytes: u64, max_object: u64) -> DiskStore {
        let n = shards::count(bytes, MIN_SHARD_BYTES, MAX_SHARDS);
        let shard_budget = bytes / n;
        DiskStore {
            root: path.join("v1"),
            shards: Shards::new(n),
            shard_budget,
            max_object: max_object.min(shard_budget),
            scanning: AtomicBool::new(true),
            scan_purges: Mutex::new(Vec::new()),
            down_until: Mutex::new(None),
            up: AtomicBool::new(true),
            writes_in_flight: AtomicUsize::new(0),
            pending_bytes: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
            stats: DiskStats::default(),
        }
    }

    fn path_of(&self, hash: &HashBinary) -> PathBuf {
        let h = hex(hash);
        self.root.join(&h[..2]).join(h)
    }

    pub fn used_bytes(&self) -> u64 {
        self.shards.bytes()
    }

    pub fn items(&self) -> usize {
        self.shards.items()
    }

    pub fn capacity(&self) -> u64 {
        self.shard_budget * self.shards.len() as u64
    }

    pub fn max_object(&self) -> u64 {
        self.max_object
    }

    /// 1 when writes are attempted, 0 while degraded to memory only.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn is_scanning(&self) -> bool {
        self.scanning.load(Ordering::SeqCst)
    }

    /// Marks an entry recently used (a memory hit), so hot entries are not the first evicted
    /// from disk.
    pub fn touch(&self, hash: &HashBinary) {
        self.shards.of(hash).lock().map.get(hash);
    }

    fn delete_file(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("disk cache: cannot delete {}: {e}", path.display());
                self.stats.errors_delete.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops a file that failed its checks.
    fn drop_corrupt(&self, hash: &HashBinary, path: &Path, why: &FormatError) {
        log::warn!(
            "disk cache: dropping corrupt entry {}: {why}",
            path.display()
        );
        self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
        let mut shard = self.shards.of(hash).lock();
        if let Some(old) = shard.map.pop(hash) {
            shard.bytes -= old.size;
        }
        self.delete_file(path);
    }

    fn read_file(&self, hash: &HashBinary) -> Option<Loaded> {
        let path = self.path_of(hash);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("disk cache: cannot read {}: {e}", path.display());
                    self.stats.errors_read.fetch_add(1, Ordering::Relaxed);
                }
                let mut shard = self.shards.of(hash).lock();
                if let Some(old) = shard.map.pop(hash) {
                    shard.bytes -= old.size;
                }
                return None;
            }
        };
        let len = data.len() as u64;
        match decode(Bytes::from(data), hash) {
            Ok(l) => {
                let mut shard = self.shards.of(hash).lock();
                if shard.map.get(hash).is_none() {
                    if !self.is_scanning() {
                        // Evicted or purged while we read it.
                        return None;
                    }
                    // Found before the scan reached it.
                    let purged = self.scan_purges.lock().iter().any(|m| m(&l.info));
                    if purged {
                        drop(shard);
                        self.delete_file(&path);
                        return None;
                    }
                    shard.bytes += charged(len);
                    shard.map.put(
                        *hash,
                        Indexed {
                            size: charged(len),
                            info: l.info.clone(),
                        },
                    );
                }
                Some(l)
            }
            Err(e) => {
                self.drop_corrupt(hash, &path, &e);
                None
            }
        }
    }

    /// Reads an entry (on the blocking pool). `None`: not on disk, unreadable or corrupt.
    pub async fn lookup(&'static self, hash: HashBinary) -> Option<Loaded> {
        let indexed = self.shards.of(&hash).lock().map.contains(&hash);
        if !indexed && !self.is_scanning() {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let found = tokio::task::spawn_blocking(move || self.read_file(&hash))
            .await
            .unwrap_or_else(|e| {
                log::error!("disk cache: read task failed: {e}");
                None
            });
        let counter = match found {
            Some(_) => &self.stats.hits,
            None => &self.stats.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Deletes least recently used entries while the shard is over budget (called with the
    /// shard lock held, so a concurrent write of the same key cannot lose its new file).
    fn evict_over_budget(&self, shard: &mut Shard<Indexed, u64>) {
        while shard.bytes > self.shard_budget {
            let Some((hash, old)) = shard.map.pop_lru() else {
                break;
            };
            shard.bytes -= old.size;
            self.delete_file(&self.path_of(&hash));
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes one entry (index and file).
    pub fn remove_blocking(&self, hash: &HashBinary) -> bool {
        let mut shard = self.shards.of(hash).lock();
        let found = match shard.map.pop(hash) {
            Some(old) => {
                shard.bytes -= old.size;
                true
            }
            None => false,
        };
        // Not indexed yet (scan running) may still be on disk.
        let path = self.path_of(hash);
        let existed = path.exists();
        self.delete_file(&path);
        found || existed
    }

    /// Removes every entry `matcher` accepts (index and files); returns their keys. Blocking.
    pub fn remove_matching_blocking(&self, matcher: Arc<Matcher>) -> Vec<HashBinary> {
        if self.is_scanning() {
            // Pushed before the sweep: see the ordering argument in `index_scanned`.
            self.scan_purges.lock().push(matcher.clone());
        }
        let mut removed = Vec::new();
        for s in self.shards.iter() {
            let mut shard = s.lock();
            let keys: Vec<HashBinary> = shard
                .map
                .iter()
                .filter(|(_, e)| matcher(&e.info))
                .map(|(k, _)| *k)
                .collect();
            let first = removed.len();
            for k in keys {
                if let Some(old) = shard.map.pop(&k) {
                    shard.bytes -= old.size;
                    removed.push(k);
                }
            }
            // Unlinked after the lock is released: lookups and memory hits (which touch the
            // index) never wait for a large purge's file deletions. A write of the same key
            // that lands in between loses its file: a later miss, never a stale hit.
            drop(shard);
            for k in &removed[first..] {
                self.delete_file(&self.path_of(k));
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: &str, tags: &[&str]) -> Arc<EntryInfo> {
        Arc::new(EntryInfo {
            key: key.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        })
    }

    static EPOCH: AtomicU64 = AtomicU64::new(0);

    fn pending(hash: HashBinary, key: &str, tags: &[&str], body: &[u8]) -> Pending {
        Pending {
            hash,
            info: info(key, tags),
            meta: (b"m0".to_vec(), b"m1".to_vec()),
            body: Bytes::copy_from_slice(body),
            epoch: &EPOCH,
            seen: EPOCH.load(Ordering::SeqCst),
        }
    }

    fn leak(s: DiskStore) -> &'static DiskStore {
        Box::leak(Box::new(s))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn write_read_and_find_again_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        s.scan();
        s.write_blocking(&pending([1; 16], "k1", &["t"], b"body one"));
        assert_eq!(s.items(), 1);
        let l = s.lookup([1; 16]).await.unwrap();
        assert_eq!(&l.body[..], b"body one");
        assert!(s.lookup([2; 16]).await.is_none());

        // A second store on the same directory, before and after its scan.
        let s2 = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        assert!(s2.is_scanning());
        assert_eq!(&s2.lookup([1; 16]).await.unwrap().body[..], b"body one");
        let s3 = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        s3.scan();
        assert_eq!(s3.items(), 1);
        assert_eq!(s3.lookup([1; 16]).await.unwrap().info.tags, vec!["t"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn corrupt_files_and_stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        s.scan();
        s.write_blocking(&pending([1; 16], "k1", &[], &[9; 5000]));
        s.write_blocking(&pending([2; 16], "k2", &[], &[9; 5000]));
        // Truncate one, flip a body byte of the other, leave a temp file of a dead writer.
        let p1 = s.path_of(&[1; 16]);
        let data = fs::read(&p1).unwrap();
        fs::write(&p1, &data[..data.len() / 2]).unwrap();
        let p2 = s.path_of(&[2; 16]);
        let mut data = fs::read(&p2).unwrap();
        let n = data.len();
        data[n - 10] ^= 0xff;
        fs::write(&p2, data).unwrap();
        let tmp = p2.with_file_name(".0202.999999999.1.tmp");
        fs::write(&tmp, b"half").unwrap();

        let s2 = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        s2.scan();
        assert!(!p1.exists(), "truncated entry deleted by the scan");
        assert!(!tmp.exists(), "stale temp file deleted");
        assert_eq!(s2.stats.corrupt.load(Ordering::Relaxed), 1);
        // The flipped byte is only seen when the payload is read.
        assert!(s2.lookup([2; 16]).await.is_none());
        assert!(!p2.exists());
        assert_eq!(s2.stats.corrupt.load(Ordering::Relaxed), 2);
        assert_eq!(s2.items(), 0);
        assert_eq!(s2.used_bytes(), 0);
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 1 << 20;
        let s = leak(DiskStore::new(dir.path(), cap, cap));
        s.scan();
        let body = vec![5u8; 40_000];
        s.write_blocking(&pending([0; 16], "first", &[], &body));
        for i in 1..60u8 {
            s.write_blocking(&pending([i; 16], "k", &[], &body));
            s.touch(&[0; 16]);
            assert!(s.used_bytes() <= cap);
        }
        assert!(s.path_of(&[0; 16]).exists(), "hot entry kept");
        assert!(!s.path_of(&[1; 16]).exists(), "coldest entry evicted");
        assert!(s.stats.evictions.load(Ordering::Relaxed) > 0);
        let files = fs::read_dir(s.root.join("01")).map_or(0, |d| d.count());
        assert_eq!(files, 0);
    }

    #[test]
    fn purge_matching_removes_files_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        s.scan();
        s.write_blocking(&pending([1; 16], "h\n/a\n\n", &["red"], b"1"));
        s.write_blocking(&pending([2; 16], "h\n/b\n\n", &["blue"], b"2"));
        let m: Arc<Matcher> = Arc::new(|i: &EntryInfo| i.tags.iter().any(|t| t == "red"));
        assert_eq!(s.remove_matching_blocking(m), vec![[1; 16]]);
        assert!(!s.path_of(&[1; 16]).exists());
        assert!(s.path_of(&[2; 16]).exists());
    }

    #[test]
    fn a_purge_during_the_scan_reaches_files_not_indexed_yet() {
        let dir = tempfile::tempdir().unwrap();
        let s = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        s.scan();
        s.write_blocking(&pending([1; 16], "h\n/a\n\n", &["red"], b"1"));
        let s2 = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        let m: Arc<Matcher> = Arc::new(|i: &EntryInfo| i.tags.iter().any(|t| t == "red"));
        assert!(s2.remove_matching_blocking(m).is_empty());
        s2.scan();
        assert_eq!(s2.items(), 0);
        assert!(!s2.path_of(&[1; 16]).exists());
    }

    #[test]
    fn a_purge_during_the_write_discards_it() {
        static E: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::tempdir().unwrap();
        let s = leak(DiskStore::new(dir.path(), 1 << 20, 1 << 20));
        s.scan();
        let mut p = pending([1; 16], "k", &[], b"x");
        p.epoch = &E;
        p.seen = 0;
        E.fetch_add(1, Ordering::SeqCst);
        s.write_blocking(&p);
        assert_eq!(s.items(), 0);
        assert!(!s.path_of(&[1; 16]).exists());
        let leftovers = fs::read_dir(s.root.join("01")).map_or(0, |d| d.count());
        assert_eq!(leftovers, 0, "temp file removed");
    }

    #[test]
    fn an_unwritable_directory_marks_the_tier_down() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"not a directory").unwrap();
        let s = leak(DiskStore::new(&blocker, 1 << 20, 1 << 20));
        s.scan();
        assert!(!s.is_up());
        assert!(!s.is_scanning());
        assert_eq!(s.stats.errors_open.load(Ordering::Relaxed), 1);
        // Writes are skipped while down, not attempted.
        s.store(pending([1; 16], "k", &[], b"x"));
        assert_eq!(s.stats.writes_skipped.load(Ordering::Relaxed), 1);
    }
}
