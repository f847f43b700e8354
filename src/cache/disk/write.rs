//! The disk tier's writes: queued on the blocking pool after a miss finished, bounded, written to
//! a temp file and renamed into place; a failed write marks the tier down for a while.

use super::format::{encode_head, FIXED};
use super::{charged, hex, DiskStore, Indexed, Pending};
use crate::cache::storage::EpochGuard;
use pingora_cache::key::HashBinary;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Back-pressure on the asynchronous writes: beyond either bound, a write is skipped.
const MAX_WRITES_IN_FLIGHT: usize = 64;
const MAX_PENDING_BYTES: u64 = 256 << 20;
/// After a failed write, writes are skipped this long (the disk is full or read-only).
const RETRY_AFTER: Duration = Duration::from_secs(10);

impl DiskStore {
    pub(super) fn mark_down(&self) {
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
    pub(super) fn write_blocking(&self, p: &Pending) {
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
}
