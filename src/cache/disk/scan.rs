//! The disk tier's start-up scan: rebuilds the index from the entry files, removing stale temp
//! files and files that fail their header checks.

use super::format::{decode_head, decode_info, FormatError, Head, FIXED};
use super::{charged, DiskStore, Indexed};
use crate::cache::storage::EntryInfo;
use pingora_cache::key::HashBinary;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Bound on what the scan reads of key + tags before giving up on a file.
const MAX_KEY_AND_TAGS: usize = 1 << 20;

fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
}

impl DiskStore {
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
