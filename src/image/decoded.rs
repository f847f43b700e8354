//! Recently decoded sources, kept in memory (`transform.decoded_cache_bytes`, LRU) so that
//! another variant of the same original skips the decode, most of a transform's CPU.
//!
//! Keyed by the source's bytes (a keyed hash and the length), not by its URL: a changed original
//! (new validators, new bytes) can never be served from an old decode, and two URLs of the same
//! bytes share one. An entry holds the pixels at the JPEG scale they were decoded at; a variant
//! uses it whenever it has at least the resolution that variant needs: resizing even a whole
//! 4K decode (7 ms) costs less than decoding the JPEG again at 1/8 scale (11 ms, most of it
//! entropy decoding, which no scale skips), so a larger decode is never replaced by a smaller.
//!
//! Concurrent misses of one source (a srcset's variants arrive together) decode it once: the
//! first registers its decode, and the others that its resolution serves wait for it instead
//! of decoding the same bytes beside it.

use crate::image::pixels::Pixels;
use parking_lot::{Condvar, Mutex};

use std::collections::HashMap;
use std::sync::Arc;

/// Identifies a source by its bytes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct SourceId {
    hash: u64,
    len: usize,
}

struct Entry {
    /// The JPEG DCT scaling denominator it was decoded at (1 for every other format).
    denom: usize,
    pixels: Arc<Pixels>,
}

struct Inner {
    lru: lru::LruCache<SourceId, Entry>,
    bytes: u64,
    /// Decodes running now, by source.
    running: HashMap<SourceId, Arc<Running>>,
}

/// A decode in progress that others may wait for.
struct Running {
    denom: usize,
    /// `None` while running; then the pixels, or `Err` when the decode failed (a waiter then
    /// decodes by itself and reports its own error).
    result: Mutex<Option<Result<Arc<Pixels>, ()>>>,
    done: Condvar,
}

pub struct DecodedCache {
    max_bytes: u64,
    inner: Mutex<Inner>,
    hasher: ahash::RandomState,
}

/// Memory an entry holds.
fn weight(p: &Pixels) -> u64 {
    p.data.capacity() as u64 + std::mem::size_of::<Pixels>() as u64
}

impl DecodedCache {
    /// `max_bytes` 0: nothing is kept.
    pub fn new(max_bytes: u64) -> DecodedCache {
        DecodedCache {
            max_bytes,
            inner: Mutex::new(Inner {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
                running: HashMap::new(),
            }),
            hasher: ahash::RandomState::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    pub fn id(&self, src: &[u8]) -> SourceId {
        SourceId {
            hash: self.hasher.hash_one(src),
            len: src.len(),
        }
    }

    /// The decoded pixels of `id` when they serve a variant that could be decoded at `denom`
    /// (as much resolution or more).
    pub fn get(&self, id: SourceId, denom: usize) -> Option<(Arc<Pixels>, usize)> {
        let mut inner = self.inner.lock();
        let e = inner.lru.get(&id)?;
        (e.denom <= denom).then(|| (Arc::clone(&e.pixels), e.denom))
    }

    /// The pixels of `id` at `denom` or more resolution: kept ones, or those of a decode of it
    /// running now (waited for), or else `decode()`'s, which are then kept and handed to the
    /// decodes that waited. The flag says whether they came from another decode.
    pub fn get_or_decode<E>(
        &self,
        id: SourceId,
        denom: usize,
        decode: impl FnOnce() -> Result<Pixels, E>,
    ) -> Result<(Arc<Pixels>, bool), E> {
        let mut inner = self.inner.lock();
        if let Some(e) = inner.lru.get(&id).filter(|e| e.denom <= denom) {
            return Ok((Arc::clone(&e.pixels), true));
        }
        let other = inner.running.get(&id).cloned();
        match other {
            Some(r) if r.denom <= denom => {
                drop(inner);
                let mut result = r.result.lock();
                while result.is_none() {
                    r.done.wait(&mut result);
                }
                if let Some(Ok(p)) = result.as_ref() {
                    return Ok((Arc::clone(p), true));
                }
                drop(result);
                // Its decode failed: ours gives the error (or succeeds, if that one failed on
                // something of its own, such as its memory).
                decode().map(|p| (Arc::new(p), false))
            }
            // A decode of less resolution is running: ours runs beside it, unregistered.
            Some(_) => {
                drop(inner);
                let pixels = Arc::new(decode()?);
                self.put(id, denom, Arc::clone(&pixels));
                Ok((pixels, false))
            }
            None => {
                let mine = Arc::new(Running {
                    denom,
                    result: Mutex::new(None),
                    done: Condvar::new(),
                });
                inner.running.insert(id, Arc::clone(&mine));
                drop(inner);
                // Waiters are released however the decode ends (a panic included).
                let mut finish = Finish {
                    cache: self,
                    id,
                    running: &mine,
                    result: Err(()),
                };
                let pixels = Arc::new(decode()?);
                self.put(id, denom, Arc::clone(&pixels));
                finish.result = Ok(Arc::clone(&pixels));
                Ok((pixels, false))
            }
        }
    }

    /// Keeps `pixels` (decoded at `denom`) unless as much resolution of the same source is
    /// kept already, and evicts the least recently used until the total is within
    /// `max_bytes`. A decode larger than a quarter of the budget is not kept: it would flush
    /// everything else.
    pub fn put(&self, id: SourceId, denom: usize, pixels: Arc<Pixels>) {
        let w = weight(&pixels);
        if w > self.max_bytes / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        if inner.lru.peek(&id).is_some_and(|e| e.denom <= denom) {
            return;
        }
        if let Some(old) = inner.lru.put(id, Entry { denom, pixels }) {
            inner.bytes -= weight(&old.pixels);
        }
        inner.bytes += w;
        while inner.bytes > self.max_bytes {
            match inner.lru.pop_lru() {
                Some((_, e)) => inner.bytes -= weight(&e.pixels),
                None => break,
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.inner.lock().lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ends a registered decode when dropped: publishes its result and wakes its waiters.
struct Finish<'a> {
    cache: &'a DecodedCache,
    id: SourceId,
    running: &'a Arc<Running>,
    result: Result<Arc<Pixels>, ()>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.cache.inner.lock().running.remove(&self.id);
        *self.running.result.lock() = Some(std::mem::replace(&mut self.result, Err(())));
        self.running.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(w: u32, h: u32) -> Arc<Pixels> {
        Arc::new(Pixels {
            width: w,
            height: h,
            channels: 3,
            data: vec![0; (w * h * 3) as usize],
        })
    }

    #[test]
    fn serves_as_much_resolution_or_more_and_keeps_the_largest() {
        let c = DecodedCache::new(1 << 20);
        let id = c.id(b"source");
        c.put(id, 2, px(10, 10));
        assert!(c.get(id, 1).is_none(), "less resolution than needed");
        assert_eq!(c.get(id, 2).map(|x| x.1), Some(2));
        assert_eq!(c.get(id, 4).map(|x| x.1), Some(2));
        assert_eq!(c.get(id, 8).map(|x| x.1), Some(2));
        c.put(id, 8, px(3, 3));
        assert_eq!(c.get(id, 8).map(|x| x.1), Some(2), "not replaced by less");
        assert!(c.get(c.id(b"other"), 2).is_none());
        assert!(c.get(c.id(b"sourcf"), 2).is_none());
    }

    #[test]
    fn concurrent_misses_of_one_source_decode_it_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let c = Arc::new(DecodedCache::new(1 << 20));
        let id = c.id(b"source");
        let decodes = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        // The first decode (at 1/2) holds until the waiters are queued behind it.
        let first = {
            let (c, decodes) = (Arc::clone(&c), Arc::clone(&decodes));
            std::thread::spawn(move || {
                c.get_or_decode(id, 2, || {
                    decodes.fetch_add(1, Ordering::SeqCst);
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    Ok::<_, ()>(Arc::unwrap_or_clone(px(20, 20)))
                })
            })
        };
        started_rx.recv().unwrap();
        let waiters: Vec<_> = [2, 4, 8, 8]
            .into_iter()
            .map(|denom| {
                let (c, decodes) = (Arc::clone(&c), Arc::clone(&decodes));
                std::thread::spawn(move || {
                    c.get_or_decode(id, denom, || {
                        decodes.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(Arc::unwrap_or_clone(px(5, 5)))
                    })
                })
            })
            .collect();
        // A decode at more resolution than the running one cannot wait for it.
        let more = c
            .get_or_decode(id, 1, || Ok::<_, ()>(Arc::unwrap_or_clone(px(40, 40))))
            .unwrap();
        assert_eq!((more.0.width, more.1), (40, false));
        go_tx.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap().0.width, 20);
        for w in waiters {
            let (p, shared) = w.join().unwrap().unwrap();
            // The running 1/2 decode's pixels, or the full one kept since.
            assert!(shared && (p.width == 20 || p.width == 40));
        }
        assert_eq!(decodes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_decode_releases_its_waiters_who_decode_themselves() {
        let c = Arc::new(DecodedCache::new(1 << 20));
        let id = c.id(b"bad");
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                c.get_or_decode(id, 1, || {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    Err::<Pixels, _>("truncated")
                })
            })
        };
        started_rx.recv().unwrap();
        let waiter = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.get_or_decode(id, 1, || Err::<Pixels, _>("mine")))
        };
        go_tx.send(()).unwrap();
        assert_eq!(first.join().unwrap().err(), Some("truncated"));
        assert_eq!(waiter.join().unwrap().err(), Some("mine"));
        assert!(c.inner.lock().running.is_empty());
    }

    #[test]
    fn stays_within_its_bytes_evicting_the_least_recently_used() {
        let one = weight(&px(100, 100));
        let c = DecodedCache::new(one * 4);
        let ids: Vec<_> = (0..10u8).map(|i| c.id(&[i; 8])).collect();
        for (i, id) in ids.iter().enumerate() {
            c.put(*id, 1, px(100, 100));
            if i == 2 {
                // Used: kept over the ones put before it.
                assert!(c.get(ids[0], 1).is_some());
            }
            assert!(c.bytes() <= one * 4);
        }
        assert_eq!(c.len(), 4);
        assert!(c.get(ids[9], 1).is_some());
        assert!(c.get(ids[1], 1).is_none());
    }

    #[test]
    fn replacing_an_entry_keeps_the_count_right_and_large_ones_are_not_kept() {
        let c = DecodedCache::new(1 << 20);
        let id = c.id(b"x");
        c.put(id, 4, px(10, 10));
        c.put(id, 2, px(20, 20));
        assert_eq!(c.bytes(), weight(&px(20, 20)));
        let big = c.id(b"big");
        c.put(big, 1, px(512, 512));
        assert!(c.get(big, 1).is_none());
        assert_eq!(c.len(), 1);
        assert!(!DecodedCache::new(0).enabled());
    }
}
