//! The disk tier: one file per entry under `<cache.disk.path>/v1/<2 hex>/<32 hex>`, named by the
//! entry's hash. Knows nothing of images (nor of HTTP beyond the opaque serialized meta).
//!
//! File format (little endian), version 1:
//! ```text
//! magic "IEDK" | version u16 | reserved u16 | hash [16] | key_len u32 | tags_len u32
//! | meta0_len u32 | meta1_len u32 | body_len u64 | header_crc u32 | payload_crc u32
//! | key | tags ('\n'-joined) | meta0 | meta1 | body
//! ```
//! `header_crc` (crc32) covers the 48 bytes before it, `payload_crc` everything after the fixed
//! header. The start-up scan reads only the fixed header, key and tags (and checks the file
//! length); the payload checksum is verified on every read. A file that fails any check is
//! deleted, logged and counted (`imgedge_cache_disk_corrupt_entries_total`).
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

use super::shards::{self, Shard, Shards};
use super::storage::{EntryInfo, EpochGuard, Matcher};
use bytes::Bytes;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const MAGIC: &[u8; 4] = b"IEDK";
const VERSION: u16 = 1;
/// Fixed header: the 48 bytes covered by `header_crc`, then the two checksums.
const FIXED: usize = 56;
const CRC_COVERED: usize = 48;
/// Space accounting: files take whole blocks.
const BLOCK: u64 = 4096;
/// Shards are at least this big (each shard evicts on its own).
const MIN_SHARD_BYTES: u64 = 64 << 20;
const MAX_SHARDS: u64 = 64;
/// Back-pressure on the asynchronous writes: beyond either bound, a write is skipped.
const MAX_WRITES_IN_FLIGHT: usize = 64;
const MAX_PENDING_BYTES: u64 = 256 << 20;
/// After a failed write, writes are skipped this long (the disk is full or read-only).
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Bound on what the scan reads of key + tags before giving up on a file.
const MAX_KEY_AND_TAGS: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an imgedge cache file (bad magic)")]
    BadMagic,
    #[error("unsupported cache file version {0}")]
    Version(u16),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("length mismatch: header says {expected} bytes, file has {actual}")]
    Length { expected: u64, actual: u64 },
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("file holds another key")]
    WrongKey,
    #[error("key or tags are not UTF-8")]
    Utf8,
}

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    hash: HashBinary,
    key_len: u32,
    tags_len: u32,
    meta0_len: u32,
    meta1_len: u32,
    body_len: u64,
    payload_crc: u32,
}

impl Head {
    fn total(&self) -> u64 {
        FIXED as u64
            + self.key_len as u64
            + self.tags_len as u64
            + self.meta0_len as u64
            + self.meta1_len as u64
            + self.body_len
    }
}

/// An entry read back from disk.
#[derive(Debug)]
pub struct Loaded {
    pub meta: (Vec<u8>, Vec<u8>),
    pub body: Bytes,
    pub info: Arc<EntryInfo>,
}

/// Everything before the body (fixed header, key, tags, meta), ready to be written.
pub fn encode_head(
    hash: &HashBinary,
    info: &EntryInfo,
    meta: &(Vec<u8>, Vec<u8>),
    body: &[u8],
) -> Vec<u8> {
    let tags = info.tags.join("\n");
    let mut crc = crc32fast::Hasher::new();
    for part in [info.key.as_bytes(), tags.as_bytes(), &meta.0, &meta.1, body] {
        crc.update(part);
    }
    let mut out = Vec::with_capacity(FIXED + info.key.len() + tags.len() + meta.0.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&(info.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    out.extend_from_slice(&(meta.0.len() as u32).to_le_bytes());
    out.extend_from_slice(&(meta.1.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let header_crc = crc32fast::hash(&out[..CRC_COVERED]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(info.key.as_bytes());
    out.extend_from_slice(tags.as_bytes());
    out.extend_from_slice(&meta.0);
    out.extend_from_slice(&meta.1);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn decode_head(b: &[u8], file_len: u64) -> Result<Head, FormatError> {
    if b.len() < FIXED || &b[..4] != MAGIC {
        return Err(if b.len() < FIXED {
            FormatError::Length {
                expected: FIXED as u64,
                actual: file_len,
            }
        } else {
            FormatError::BadMagic
        });
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    if crc32fast::hash(&b[..CRC_COVERED]) != u32_at(b, CRC_COVERED) {
        return Err(FormatError::HeaderChecksum);
    }
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&b[8..24]);
    let mut body_len = [0u8; 8];
    body_len.copy_from_slice(&b[40..48]);
    let head = Head {
        hash,
        key_len: u32_at(b, 24),
        tags_len: u32_at(b, 28),
        meta0_len: u32_at(b, 32),
        meta1_len: u32_at(b, 36),
        body_len: u64::from_le_bytes(body_len),
        payload_crc: u32_at(b, 52),
    };
    if head.total() != file_len {
        return Err(FormatError::Length {
            expected: head.total(),
            actual: file_len,
        });
    }
    Ok(head)
}

fn decode_info(key: &[u8], tags: &[u8]) -> Result<EntryInfo, FormatError> {
    let key = std::str::from_utf8(key).map_err(|_| FormatError::Utf8)?;
    let tags = std::str::from_utf8(tags).map_err(|_| FormatError::Utf8)?;
    Ok(EntryInfo {
        key: key.to_string(),
        tags: tags
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Decodes and verifies a whole file (`hash`: the key it must hold).
pub fn decode(file: Bytes, hash: &HashBinary) -> Result<Loaded, FormatError> {
    let head = decode_head(&file, file.len() as u64)?;
    if &head.hash != hash {
        return Err(FormatError::WrongKey);
    }
    if crc32fast::hash(&file[FIXED..]) != head.payload_crc {
        return Err(FormatError::PayloadChecksum);
    }
    let mut at = FIXED;
    let mut take = |n: usize| {
        let r = at..at + n;
        at += n;
        r
    };
    let key = take(head.key_len as usize);
    let tags = take(head.tags_len as usize);
    let meta0 = take(head.meta0_len as usize);
    let meta1 = take(head.meta1_len as usize);
    let body = take(head.body_len as usize);
    let info = decode_info(&file[key], &file[tags])?;
    Ok(Loaded {
        meta: (file[meta0].to_vec(), file[meta1].to_vec()),
        body: file.slice(body),
        info: Arc::new(info),
    })
}

/// Space an entry takes on disk (whole blocks).
fn charged(file_len: u64) -> u64 {
    file_len.div_ceil(BLOCK) * BLOCK
}

struct Indexed {
    size: u64,
    info: Arc<EntryInfo>,
}

/// Counters read by the metrics module at scrape time.
#[derive(Default)]
pub struct DiskStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub writes: AtomicU64,
    pub writes_skipped: AtomicU64,
    pub evictions: AtomicU64,
    pub corrupt: AtomicU64,
    pub errors_open: AtomicU64,
    pub errors_read: AtomicU64,
    pub errors_write: AtomicU64,
    pub errors_delete: AtomicU64,
    pub errors_scan: AtomicU64,
    /// Milliseconds the start-up scan took (0 while it runs).
    pub scan_millis: AtomicU64,
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

fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
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

    fn mark_down(&self) {
        self.up.store(false, Ordering::Relaxed);
        *self.down_until.lock() = Some(Instant::now() + RETRY_AFTER);
    }

    fn writes_allowed(&self) -> bool {
        let mut until = self.down_until.lock();
        match *until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                // Try again; `up` turns back on at the first successful write.
                *until = None;
                true
            }
            None => true,
        }
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

    /// Queues a write (publishing happens on the blocking pool). Skipped, and counted, while the
    /// tier is down or too many writes are pending.
    pub fn store(&'static self, p: Pending) {
        let file_len = (FIXED + p.info.key.len() + p.meta.0.len() + p.meta.1.len()) as u64
            + p.body.len() as u64;
        if file_len > self.max_object + 64 * 1024 || !self.writes_allowed() {
            self.stats.writes_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let in_flight = self.writes_in_flight.fetch_add(1, Ordering::SeqCst);
        let pending = self.pending_bytes.fetch_add(file_len, Ordering::SeqCst);
        if in_flight >= MAX_WRITES_IN_FLIGHT || pending + file_len > MAX_PENDING_BYTES {
            self.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
            self.pending_bytes.fetch_sub(file_len, Ordering::SeqCst);
            self.stats.writes_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
            self.pending_bytes.fetch_sub(file_len, Ordering::SeqCst);
            return;
        };
        rt.spawn_blocking(move || {
            self.write_blocking(&p);
            self.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
            self.pending_bytes.fetch_sub(file_len, Ordering::SeqCst);
        });
    }

    fn tmp_path(&self, hash: &HashBinary) -> PathBuf {
        let h = hex(hash);
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(&h[..2])
            .join(format!(".{h}.{}.{seq}.tmp", std::process::id()))
    }

    fn write_tmp(&self, tmp: &Path, head: &[u8], body: &[u8]) -> io::Result<()> {
        let mut f = match File::create(tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = tmp.parent() {
                    fs::create_dir_all(dir)?;
                }
                File::create(tmp)?
            }
            Err(e) => return Err(e),
        };
        f.write_all(head)?;
        f.write_all(body)?;
        Ok(())
    }

    /// Writes to a temp file, then (under the shard lock, if no purge ran meanwhile) renames it
    /// into place and indexes it, evicting least recently used entries to stay in budget.
    fn write_blocking(&self, p: &Pending) {
        let head = encode_head(&p.hash, &p.info, &p.meta, &p.body);
        let tmp = self.tmp_path(&p.hash);
        if let Err(e) = self.write_tmp(&tmp, &head, &p.body) {
            self.write_failed(&tmp, &e);
            return;
        }
        let size = charged((head.len() + p.body.len()) as u64);
        let guard = EpochGuard {
            epoch: p.epoch,
            seen: p.seen,
        };
        let mut shard = self.shards.of(&p.hash).lock();
        if !guard.still_valid() {
            drop(shard);
            self.delete_file(&tmp);
            return;
        }
        if let Err(e) = fs::rename(&tmp, self.path_of(&p.hash)) {
            drop(shard);
            self.write_failed(&tmp, &e);
            return;
        }
        if let Some(old) = shard.map.pop(&p.hash) {
            shard.bytes -= old.size;
        }
        shard.bytes += size;
        shard.map.put(
            p.hash,
            Indexed {
                size,
                info: p.info.clone(),
            },
        );
        self.evict_over_budget(&mut shard);
        drop(shard);
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.up.store(true, Ordering::Relaxed);
    }

    fn write_failed(&self, tmp: &Path, e: &io::Error) {
        let _ = fs::remove_file(tmp);
        self.stats.errors_write.fetch_add(1, Ordering::Relaxed);
        let was_up = self.up.load(Ordering::Relaxed);
        self.mark_down();
        if was_up {
            log::error!(
                "disk cache: cannot write {}: {e}; serving from memory only, retrying in {}s",
                tmp.display(),
                RETRY_AFTER.as_secs()
            );
        } else {
            log::warn!("disk cache: still cannot write {}: {e}", tmp.display());
        }
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

    /// Replaces the meta of a stored entry, keeping its body (revalidation). Blocking: call it
    /// on the blocking pool.
    pub fn rewrite_meta_blocking(&self, hash: &HashBinary, meta: (Vec<u8>, Vec<u8>)) -> bool {
        if !self.shards.of(hash).lock().map.contains(hash) {
            return false;
        }
        let Some(old) = self.read_file(hash) else {
            return false;
        };
        let head = encode_head(hash, &old.info, &meta, &old.body);
        let tmp = self.tmp_path(hash);
        if let Err(e) = self.write_tmp(&tmp, &head, &old.body) {
            self.write_failed(&tmp, &e);
            return false;
        }
        let mut shard = self.shards.of(hash).lock();
        // Purged or evicted meanwhile: do not bring it back.
        if !shard.map.contains(hash) {
            drop(shard);
            self.delete_file(&tmp);
            return false;
        }
        if let Err(e) = fs::rename(&tmp, self.path_of(hash)) {
            drop(shard);
            self.write_failed(&tmp, &e);
            return false;
        }
        let size = charged((head.len() + old.body.len()) as u64);
        if let Some(entry) = shard.map.get_mut(hash) {
            let before = entry.size;
            entry.size = size;
            shard.bytes = shard.bytes - before + size;
        }
        self.evict_over_budget(&mut shard);
        true
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

    /// Rebuilds the index from the files (blocking; run it on its own thread at start-up).
    /// Removes temp files left by a dead process and files that fail their header checks.
    /// A directory that cannot be created leaves the tier down (logged, counted); requests are
    /// served from memory and writes are retried later.
    pub fn scan(&self) {
        let started = Instant::now();
        if let Err(e) = fs::create_dir_all(&self.root) {
            log::error!(
                "disk cache: cannot create {}: {e}; serving from memory only",
                self.root.display()
            );
            self.stats.errors_open.fetch_add(1, Ordering::Relaxed);
            self.mark_down();
            self.finish_scan(started);
            return;
        }
        let mut found: Vec<(HashBinary, u64, SystemTime, EntryInfo)> = Vec::new();
        let (mut tmp_removed, mut corrupt) = (0usize, 0usize);
        let dirs = match fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) => {
                log::error!(
                    "disk cache: cannot list {}: {e}; nothing indexed",
                    self.root.display()
                );
                self.stats.errors_scan.fetch_add(1, Ordering::Relaxed);
                self.finish_scan(started);
                return;
            }
        };
        for dir in dirs.flatten() {
            let name = dir.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !dir.path().is_dir() {
                continue;
            }
            let files = match fs::read_dir(dir.path()) {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("disk cache: cannot list {}: {e}", dir.path().display());
                    self.stats.errors_scan.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            for f in files.flatten() {
                let path = f.path();
                let fname = f.file_name().to_string_lossy().into_owned();
                if let Some(rest) = fname.strip_suffix(".tmp") {
                    // .<hash>.<pid>.<seq>.tmp: remove unless its writer is alive.
                    let pid = rest.split('.').nth(2).and_then(|p| p.parse::<u32>().ok());
                    if !pid.is_some_and(pid_alive) {
                        self.delete_file(&path);
                        tmp_removed += 1;
                    }
                    continue;
                }
                let Some(hash) = hex::decode(&fname)
                    .ok()
                    .and_then(|v| <[u8; 16]>::try_from(v).ok())
                else {
                    continue;
                };
                match read_head(&path) {
                    Ok((head, info, mtime, len)) if head.hash == hash => {
                        found.push((hash, len, mtime, info));
                    }
                    Ok(_) => {
                        self.drop_corrupt(&hash, &path, &FormatError::WrongKey);
                        corrupt += 1;
                    }
                    Err(ScanError::Format(e)) => {
                        self.drop_corrupt(&hash, &path, &e);
                        corrupt += 1;
                    }
                    Err(ScanError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(ScanError::Io(e)) => {
                        log::warn!("disk cache: cannot read {}: {e}", path.display());
                        self.stats.errors_scan.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let n = found.len();
        self.index_scanned(found);
        self.finish_scan(started);
        log::info!(
            "disk cache: indexed {n} entries ({} bytes) from {} in {} ms; removed {tmp_removed} temp files and {corrupt} corrupt entries",
            self.used_bytes(),
            self.root.display(),
            started.elapsed().as_millis()
        );
    }

    /// Adds scanned files to the index, oldest last in LRU order (so they are evicted first),
    /// skipping keys written or read since start-up, and deleting what a purge issued during the
    /// scan matches. Each check runs under the shard lock and a purge registers its matcher
    /// before it sweeps the shards, so no file escapes a purge.
    fn index_scanned(&self, mut found: Vec<(HashBinary, u64, SystemTime, EntryInfo)>) {
        // Newest first: each is demoted to the LRU end, so the oldest ends up evicted first.
        found.sort_by_key(|f| std::cmp::Reverse(f.2));
        for (hash, len, _, info) in found {
            let mut shard = self.shards.of(&hash).lock();
            if shard.map.contains(&hash) {
                continue;
            }
            if self.scan_purges.lock().iter().any(|m| m(&info)) {
                self.delete_file(&self.path_of(&hash));
                continue;
            }
            let size = charged(len);
            shard.bytes += size;
            shard.map.put(
                hash,
                Indexed {
                    size,
                    info: Arc::new(info),
                },
            );
            shard.map.demote(&hash);
            self.evict_over_budget(&mut shard);
        }
    }

    fn finish_scan(&self, started: Instant) {
        let mut purges = self.scan_purges.lock();
        self.scanning.store(false, Ordering::SeqCst);
        purges.clear();
        self.stats.scan_millis.store(
            started.elapsed().as_millis().max(1) as u64,
            Ordering::Relaxed,
        );
    }
}

enum ScanError {
    Io(io::Error),
    Format(FormatError),
}

/// Reads the fixed header, key and tags of an entry file (not the payload).
fn read_head(path: &Path) -> Result<(Head, EntryInfo, SystemTime, u64), ScanError> {
    let mut f = File::open(path).map_err(ScanError::Io)?;
    let md = f.metadata().map_err(ScanError::Io)?;
    let len = md.len();
    let mut fixed = [0u8; FIXED];
    if let Err(e) = f.read_exact(&mut fixed) {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            ScanError::Format(FormatError::Length {
                expected: FIXED as u64,
                actual: len,
            })
        } else {
            ScanError::Io(e)
        });
    }
    let head = decode_head(&fixed, len).map_err(ScanError::Format)?;
    let n = head.key_len as usize + head.tags_len as usize;
    if n > MAX_KEY_AND_TAGS {
        return Err(ScanError::Format(FormatError::Length {
            expected: head.total(),
            actual: len,
        }));
    }
    let mut kt = vec![0u8; n];
    f.read_exact(&mut kt).map_err(ScanError::Io)?;
    let (k, t) = kt.split_at(head.key_len as usize);
    let info = decode_info(k, t).map_err(ScanError::Format)?;
    let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Ok((head, info, mtime, len))
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

    fn file(hash: &HashBinary, i: &EntryInfo, body: &[u8]) -> Vec<u8> {
        let meta = (b"meta-zero".to_vec(), b"meta-one".to_vec());
        let mut f = encode_head(hash, i, &meta, body);
        f.extend_from_slice(body);
        f
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

    #[test]
    fn format_round_trip() {
        let h = [3u8; 16];
        let i = info("host\n/p\n\nw=1", &["a", "b"]);
        let f = file(&h, &i, b"the body");
        let l = decode(Bytes::from(f), &h).unwrap();
        assert_eq!(&l.body[..], b"the body");
        assert_eq!(l.meta, (b"meta-zero".to_vec(), b"meta-one".to_vec()));
        assert_eq!(*l.info, *i);
    }

    #[test]
    fn checksum_and_length_failures_are_detected() {
        let h = [3u8; 16];
        let f = file(&h, &info("k", &[]), b"0123456789");
        let mut flipped = f.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            decode(Bytes::from(flipped), &h).unwrap_err(),
            FormatError::PayloadChecksum
        );
        let mut header = f.clone();
        header[30] ^= 1;
        assert_eq!(
            decode(Bytes::from(header), &h).unwrap_err(),
            FormatError::HeaderChecksum
        );
        let truncated = f[..f.len() - 3].to_vec();
        assert!(matches!(
            decode(Bytes::from(truncated), &h).unwrap_err(),
            FormatError::Length { .. }
        ));
        assert_eq!(
            decode(Bytes::from(f), &[4u8; 16]).unwrap_err(),
            FormatError::WrongKey
        );
        assert_eq!(
            decode(Bytes::from(vec![0u8; 80]), &h).unwrap_err(),
            FormatError::BadMagic
        );
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
