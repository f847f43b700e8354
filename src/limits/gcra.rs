//! GCRA (generic cell rate algorithm) math and an exact, keyed, bounded local
//! store. One state word per key: the theoretical arrival time (TAT).
//!
//! With emission interval `T = 1/rate` and tolerance `burst * T`, a request at
//! `now` is admitted iff `max(tat, now) + T - now <= burst * T`; admitting sets
//! `tat = max(tat, now) + T`. So a fresh key admits exactly `burst` requests at
//! once, then one more every `T`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::limits::Limit;

/// Monotonic nanoseconds; injectable so tests need no sleeps.
pub trait Clock: Send + Sync + 'static {
    fn now_ns(&self) -> u64;
}

pub struct MonotonicClock(Instant);

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to (tests, simulations).
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ns: u64) -> Self {
        ManualClock(AtomicU64::new(start_ns))
    }
    pub fn advance_ns(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// GCRA parameters in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// `T`: interval between requests at the sustained rate.
    pub emission_ns: u64,
    /// `burst * T`: how far ahead of `now` the TAT may run.
    pub tolerance_ns: u64,
    pub burst: u64,
}

/// Outcome of evaluating one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests that would still pass right now after this decision.
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again (after this decision).
    pub reset_ns: u64,
    /// When refused: nanoseconds until one request would pass.
    pub retry_ns: u64,
}

impl Gcra {
    pub fn new(limit: Limit) -> Gcra {
        let emission_ns = limit.rate.emission_ns();
        let burst = limit.burst.max(1);
        Gcra {
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(burst),
            burst,
        }
    }

    /// `limit` divided among `nodes` (rate/nodes, burst/nodes, burst >= 1):
    /// what each node enforces alone when the shared backend is down.
    pub fn divided(limit: Limit, nodes: u32) -> Gcra {
        let n = u64::from(nodes.max(1));
        let emission_ns = limit.rate.emission_ns().saturating_mul(n);
        let burst = (limit.burst / n).max(1);
        Gcra {
            emission_ns,
            tolerance_ns: emission_ns.saturating_mul(burst),
            burst,
        }
    }

    /// Evaluates a request against `tat` (0 = unknown key). Returns the new
    /// TAT to store if admitted, and the verdict.
    pub fn evaluate(&self, tat: u64, now: u64) -> (Option<u64>, Verdict) {
        let base = tat.max(now);
        let new_tat = base.saturating_add(self.emission_ns);
        let ahead = new_tat - now;
        if ahead > self.tolerance_ns {
            let v = self.verdict_at(base, now);
            return (
                None,
                Verdict {
                    allowed: false,
                    retry_ns: ahead - self.tolerance_ns,
                    ..v
                },
            );
        }
        (Some(new_tat), self.verdict_at(new_tat, now))
    }

    /// What a bucket whose TAT is `tat` looks like at `now` (read-only).
    pub fn verdict_at(&self, tat: u64, now: u64) -> Verdict {
        let ahead = tat.saturating_sub(now);
        let room = self.tolerance_ns.saturating_sub(ahead);
        Verdict {
            allowed: true,
            remaining: (room / self.emission_ns).min(self.burst),
            reset_ns: ahead,
            retry_ns: 0,
        }
    }
}

/// Identifies one bucket: a policy (or tier) name and the key within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub name: Arc<str>,
    pub key: String,
}

const SHARDS: usize = 64;

/// Sharded map key -> TAT with bounded memory: entries whose TAT is in the
/// past are equivalent to absent ones, so they are swept when a shard fills;
/// if a shard is still full of live entries the soonest-to-expire are dropped
/// (those keys get a slightly early reset: under-counting, never over).
pub struct LocalStore {
    shards: Vec<Mutex<HashMap<BucketKey, u64>>>,
    cap_per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    clock: Arc<dyn Clock>,
}

impl LocalStore {
    pub fn new(expected_keys: usize, clock: Arc<dyn Clock>) -> LocalStore {
        // 2x headroom over the expected key count before sweeping
        let cap_per_shard = (expected_keys.saturating_mul(2) / SHARDS).max(16);
        LocalStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            cap_per_shard,
            hasher: std::collections::hash_map::RandomState::new(),
            clock,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    fn shard_of(&self, k: &BucketKey) -> usize {
        (self.hasher.hash_one(k) as usize) % SHARDS
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks all buckets atomically; commits all only if all admit, so a
    /// refused request consumes nothing. Shards are locked in index order
    /// (no deadlock between concurrent multi-bucket requests).
    pub fn check_all(&self, buckets: &[(BucketKey, Gcra)], commit: bool) -> Vec<Verdict> {
        let now = self.clock.now_ns();
        let idx: Vec<usize> = buckets.iter().map(|(k, _)| self.shard_of(k)).collect();
        let mut order: Vec<usize> = idx.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<_> = order.iter().map(|&i| self.shards[i].lock()).collect();
        let pos = |shard: usize| order.binary_search(&shard).unwrap_or(0);

        let mut verdicts = Vec::with_capacity(buckets.len());
        let mut new_tats = Vec::with_capacity(buckets.len());
        for ((k, g), &s) in buckets.iter().zip(&idx) {
            let tat = guards[pos(s)].get(k).copied().unwrap_or(0);
            let (nt, v) = g.evaluate(tat, now);
            new_tats.push(nt);
            verdicts.push(v);
        }
        if commit && verdicts.iter().all(|v| v.allowed) {
            for (((k, _), &s), nt) in buckets.iter().zip(&idx).zip(new_tats) {
                if let Some(nt) = nt {
                    let map = &mut guards[pos(s)];
                    if let Some(slot) = map.get_mut(k) {
                        *slot = nt;
                    } else {
                        if map.len() >= self.cap_per_shard {
                            Self::evict(map, now, self.cap_per_shard);
                        }
                        map.insert(k.clone(), nt);
                    }
                }
            }
        }
        verdicts
    }

    /// Current state of each bucket (no request counted, nothing stored).
    pub fn peek_all(&self, buckets: &[(BucketKey, Gcra)]) -> Vec<Verdict> {
        let now = self.clock.now_ns();
        buckets
            .iter()
            .map(|(k, g)| {
                let tat = self.shards[self.shard_of(k)].lock().get(k).copied();
                g.verdict_at(tat.unwrap_or(0), now)
            })
            .collect()
    }

    /// Records an admission decided elsewhere (Redis) so the local pre-check
    /// tracks this node's own traffic; never refuses.
    pub fn force_admit(&self, buckets: &[(BucketKey, Gcra)]) {
        let now = self.clock.now_ns();
        for (k, g) in buckets {
            let mut map = self.shards[self.shard_of(k)].lock();
            let tat = map.get(k).copied().unwrap_or(0).max(now);
            let nt = tat.saturating_add(g.emission_ns).min(now + g.tolerance_ns);
            if let Some(slot) = map.get_mut(k) {
                *slot = nt;
            } else {
                if map.len() >= self.cap_per_shard {
                    Self::evict(&mut map, now, self.cap_per_shard);
                }
                map.insert(k.clone(), nt);
            }
        }
    }

    fn evict(map: &mut HashMap<BucketKey, u64>, now: u64, cap: usize) {
        map.retain(|_, tat| *tat > now);
        let target = cap - cap / 8;
        if map.len() >= target {
            // still full of live keys: drop those closest to expiry
            let mut tats: Vec<u64> = map.values().copied().collect();
            let nth = (map.len() - target).min(tats.len().saturating_sub(1));
            let (_, cutoff, _) = tats.select_nth_unstable(nth);
            let cutoff = *cutoff;
            map.retain(|_, tat| *tat > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::Rate;

    fn lim(rate: &str, burst: u64) -> Limit {
        Limit {
            rate: Rate::parse(rate).unwrap(),
            burst,
        }
    }

    fn bk(name: &str, key: &str) -> BucketKey {
        BucketKey {
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn exactly_burst_then_retry_after_one_interval() {
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let store = LocalStore::new(100, clock.clone());
        let g = Gcra::new(lim("5/s", 10));
        let b = [(bk("p", "k"), g)];
        for i in 0..10 {
            let v = store.check_all(&b, true)[0];
            assert!(v.allowed, "request {i}");
            assert_eq!(v.remaining, 9 - i);
        }
        let v = store.check_all(&b, true)[0];
        assert!(!v.allowed);
        assert_eq!(v.retry_ns, 200_000_000);
        assert_eq!(v.remaining, 0);
        assert_eq!(v.reset_ns, 2_000_000_000);
        clock.advance_ns(199_999_999);
        assert!(!store.check_all(&b, true)[0].allowed);
        clock.advance_ns(1);
        assert!(store.check_all(&b, true)[0].allowed);
        assert!(!store.check_all(&b, true)[0].allowed);
    }

    #[test]
    fn steady_rate_accuracy_with_injected_clock() {
        // a client hammering every 1 ms for 5 s at 50/s burst 100
        let clock = Arc::new(ManualClock::new(0));
        let store = LocalStore::new(100, clock.clone());
        let b = [(bk("p", "k"), Gcra::new(lim("50/s", 100)))];
        let mut admitted = 0u64;
        for _ in 0..5000 {
            if store.check_all(&b, true)[0].allowed {
                admitted += 1;
            }
            clock.advance_ns(1_000_000);
        }
        let expected = 50 * 5 + 100;
        assert!(
            admitted.abs_diff(expected) <= 1,
            "admitted {admitted}, expected {expected}"
        );
    }

    #[test]
    fn all_must_admit_and_refusal_consumes_nothing() {
        let clock = Arc::new(ManualClock::new(0));
        let store = LocalStore::new(100, clock.clone());
        let wide = (bk("wide", "k"), Gcra::new(lim("100/s", 100)));
        let narrow = (bk("narrow", "k"), Gcra::new(lim("1/s", 2)));
        let both = [wide.clone(), narrow.clone()];
        assert!(store.check_all(&both, true).iter().all(|v| v.allowed));
        assert!(store.check_all(&both, true).iter().all(|v| v.allowed));
        for _ in 0..10 {
            let v = store.check_all(&both, true);
            assert!(v[0].allowed && !v[1].allowed);
        }
        // the refused requests did not consume the wide bucket
        let v = store.check_all(&[wide], false)[0];
        assert_eq!(v.remaining, 97);
    }

    #[test]
    fn divided_limit() {
        let g = Gcra::divided(lim("10/s", 20), 3);
        assert_eq!(g.emission_ns, 300_000_000);
        assert_eq!(g.burst, 6);
        assert_eq!(Gcra::divided(lim("10/s", 2), 3).burst, 1);
    }

    #[test]
    fn memory_is_bounded_and_stale_entries_swept() {
        let clock = Arc::new(ManualClock::new(0));
        let store = LocalStore::new(640, clock.clone());
        let g = Gcra::new(lim("1/s", 5));
        for i in 0..100_000 {
            store.check_all(&[(bk("p", &i.to_string()), g)], true);
        }
        assert!(store.len() <= 64 * store.cap_per_shard, "{}", store.len());
        clock.advance_ns(10_000_000_000);
        store.check_all(&[(bk("p", "fresh"), g)], true);
        // read-only checks never insert
        store.check_all(&[(bk("p", "peek"), g)], false);
        assert!(store.len() <= 64 * store.cap_per_shard);
    }
}
