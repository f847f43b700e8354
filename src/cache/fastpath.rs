//! The sendfile index: copies of memory-tier entries whose bodies live in sealed memfds, so a
//! hit can be sent with `sendfile()` instead of being copied from user memory into the socket
//! (`cache.sendfile_hits`). A plain data structure: which requests may use it and how the
//! response is written are the proxy's business (`proxy.rs`, `sendfile.rs`). Knows nothing of
//! images or sessions.
//!
//! Exactness: a fast entry keeps a weak pointer to the memory-tier entry it was copied from and
//! is served only while the memory tier holds that very entry (`TieredStorage::fast_hit` checks
//! it on every request). Purge, eviction, replacement and meta updates (revalidation) all remove
//! or swap the memory entry, so the copy stops being served at once; its memfd is reclaimed by
//! the next sweep (after purges, on inserts) or by LRU within the budget.

use super::storage::Entry;
use crate::metrics::{Counted, METRICS};
use lru::LruCache;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use pingora_http::ResponseHeader;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

/// Smaller bodies gain nothing from sendfile (one copy of a few KiB is cheaper than the extra
/// system calls): they keep the normal path.
pub const MIN_BODY_BYTES: usize = 16 * 1024;
/// Bookkeeping bytes per entry beyond the body pages and the header.
const ENTRY_OVERHEAD: usize = 512;
const PAGE: usize = 4096;
/// Upper bound on entries (each holds one file descriptor).
const MAX_ENTRIES: usize = 4096;

/// An immutable in-memory file: written once, then sealed against writes and resizing.
pub struct Memfd {
    fd: OwnedFd,
    len: usize,
}

impl Memfd {
    pub fn with_contents(data: &[u8]) -> io::Result<Memfd> {
        // SAFETY: a valid NUL-terminated name; the returned fd is owned below.
        let raw = unsafe {
            libc::memfd_create(
                c"imgedge-hit".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut off = 0;
        while off < data.len() {
            let rest = &data[off..];
            // SAFETY: writes from a live slice of `rest.len()` bytes.
            let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "memfd write"));
            }
            off += n as usize;
        }
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Memfd {
            fd,
            len: data.len(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One servable copy of a memory-tier entry.
pub struct FastEntry {
    pub body: Memfd,
    /// The stored response header (private headers removed); per-request headers (Age, Date,
    /// X-Cache-Status, ...) are added when it is sent.
    pub header: ResponseHeader,
    /// Reference point of the `Age` header (the entry's admission or revalidation).
    pub epoch: SystemTime,
    /// Served only before this instant; later the normal path revalidates.
    pub fresh_until: SystemTime,
    source: Weak<Entry>,
    size: usize,
}

impl FastEntry {
    pub fn new(
        body: Memfd,
        header: ResponseHeader,
        epoch: SystemTime,
        fresh_until: SystemTime,
        source: &Arc<Entry>,
    ) -> FastEntry {
        let header_bytes: usize = header
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        let size = body.len().div_ceil(PAGE) * PAGE + header_bytes + ENTRY_OVERHEAD;
        FastEntry {
            body,
            header,
            epoch,
            fresh_until,
            source: Arc::downgrade(source),
            size,
        }
    }

    /// Was this copy made from `entry` (the very allocation, not an equal one)?
    pub fn is_copy_of(&self, entry: &Arc<Entry>) -> bool {
        std::ptr::eq(self.source.as_ptr(), Arc::as_ptr(entry))
    }

    /// The memory entry this is a copy of (for pointer comparison only).
    pub fn source_ptr(&self) -> *const Entry {
        self.source.as_ptr()
    }

    /// The source entry is gone (purged, evicted, replaced, re-metaed) for good.
    fn is_dead(&self) -> bool {
        self.source.strong_count() == 0
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

struct Inner {
    map: LruCache<HashBinary, Arc<FastEntry>>,
    bytes: usize,
}

/// The index's counts; each also feeds its metric (`crate::metrics`) as it happens.
pub struct FastStats {
    /// Hits answered from the index.
    pub served: Counted,
    /// Copies made.
    pub recorded: Counted,
}

impl Default for FastStats {
    fn default() -> FastStats {
        FastStats {
            served: Counted::new(METRICS.cache_sendfile_hits.clone()),
            recorded: Counted::new(METRICS.cache_sendfile_copies.clone()),
        }
    }
}

/// The index: LRU within its own byte budget and entry cap.
pub struct FastIndex {
    inner: Mutex<Inner>,
    budget: usize,
    max_entries: usize,
    pub stats: FastStats,
}

impl FastIndex {
    /// `budget`: bytes for all copies (body pages + headers + overhead).
    pub fn new(budget: usize) -> FastIndex {
        FastIndex {
            inner: Mutex::new(Inner {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
            max_entries: max_entries(),
            stats: FastStats::default(),
        }
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn used_bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    pub fn items(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// The copy stored under `key` (marked recently used). The caller checks it is still a copy
    /// of the current memory entry.
    pub fn get(&self, key: &HashBinary) -> Option<Arc<FastEntry>> {
        self.inner.lock().map.get(key).cloned()
    }

    /// Is there a copy of `entry` under `key` already?
    pub fn has_copy_of(&self, key: &HashBinary, entry: &Arc<Entry>) -> bool {
        self.inner
            .lock()
            .map
            .peek(key)
            .is_some_and(|e| e.is_copy_of(entry))
    }

    /// Drops the copy under `key` when it is `stale` (compared by pointer: a newer copy stored
    /// meanwhile stays).
    pub fn remove_if(&self, key: &HashBinary, stale: &Arc<FastEntry>) {
        let mut inner = self.inner.lock();
        if inner.map.peek(key).is_some_and(|e| Arc::ptr_eq(e, stale)) {
            if let Some(old) = inner.map.pop(key) {
                inner.bytes -= old.size;
            }
        }
    }

    /// Stores a copy (replacing any older one), evicting least recently used copies to stay
    /// within budget and the entry cap. Dead copies are swept first. `false`: too big.
    pub fn insert(&self, key: HashBinary, entry: FastEntry) -> bool {
        if entry.size > self.budget / 4 {
            return false;
        }
        let mut inner = self.inner.lock();
        sweep(&mut inner);
        if let Some(old) = inner.map.pop(&key) {
            inner.bytes -= old.size;
        }
        while inner.bytes + entry.size > self.budget || inner.map.len() >= self.max_entries {
            match inner.map.pop_lru() {
                Some((_, old)) => inner.bytes -= old.size,
                None => break,
            }
        }
        inner.bytes += entry.size;
        inner.map.put(key, Arc::new(entry));
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Drops every copy whose memory entry is gone (after a purge, to give the memory back).
    pub fn sweep(&self) {
        sweep(&mut self.inner.lock());
    }
}

fn sweep(inner: &mut Inner) {
    let dead: Vec<HashBinary> = inner
        .map
        .iter()
        .filter(|(_, e)| e.is_dead())
        .map(|(k, _)| *k)
        .collect();
    for k in dead {
        if let Some(old) = inner.map.pop(&k) {
            inner.bytes -= old.size;
        }
    }
}

/// A quarter of the open-file limit (each copy holds a descriptor; clients need the rest),
/// at most `MAX_ENTRIES`.
fn max_entries() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur as usize
    } else {
        1024
    };
    (soft / 4).clamp(16, MAX_ENTRIES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::storage::EntryInfo;
    use bytes::Bytes;

    fn source(body: &[u8]) -> Arc<Entry> {
        Arc::new(Entry::new(
            (vec![], vec![]),
            Bytes::copy_from_slice(body),
            Arc::new(EntryInfo::default()),
        ))
    }

    fn copy(src: &Arc<Entry>) -> FastEntry {
        let now = SystemTime::now();
        FastEntry::new(
            Memfd::with_contents(&src.body).unwrap(),
            ResponseHeader::build(200, None).unwrap(),
            now,
            now,
            src,
        )
    }

    #[test]
    fn memfd_holds_the_bytes_and_is_sealed() {
        let m = Memfd::with_contents(b"hello").unwrap();
        assert_eq!(m.len(), 5);
        let mut buf = [0u8; 8];
        let n = unsafe { libc::pread(m.raw_fd(), buf.as_mut_ptr().cast(), 8, 0) };
        assert_eq!(&buf[..n as usize], b"hello");
        let w = unsafe { libc::pwrite(m.raw_fd(), b"x".as_ptr().cast(), 1, 0) };
        assert!(w < 0, "sealed against writes");
    }

    #[test]
    fn copies_follow_their_source() {
        let idx = FastIndex::new(64 << 20);
        let a = source(&[1; 20_000]);
        idx.insert([1; 16], copy(&a));
        assert!(idx.has_copy_of(&[1; 16], &a));
        let b = source(&[1; 20_000]);
        assert!(
            !idx.has_copy_of(&[1; 16], &b),
            "an equal entry is not the same"
        );
        drop(a);
        idx.sweep();
        assert_eq!(idx.items(), 0);
        assert_eq!(idx.used_bytes(), 0);
    }

    #[test]
    fn stays_within_budget() {
        let idx = FastIndex::new(1 << 20);
        let sources: Vec<_> = (0..40).map(|_| source(&[7; 40_000])).collect();
        for (i, s) in sources.iter().enumerate() {
            assert!(idx.insert([i as u8; 16], copy(s)));
            assert!(idx.used_bytes() <= 1 << 20);
        }
        assert!(idx.items() < 40);
        assert!(idx.get(&[39; 16]).is_some(), "the newest stays");
    }
}
