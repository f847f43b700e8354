//! Tokens a node took from Redis ahead of use (the Redis backend's lease).
//!
//! When a client is far below its limits, one Redis decision may admit a few
//! requests at once (see `redis.rs`); the node keeps the spare ones here,
//! keyed by the request's exact set of buckets, and admits that client's next
//! requests without a round trip. Every request admitted this way was counted
//! in Redis before it arrived, so nodes together never admit more than the
//! shared limit; spare tokens expire after [`LEASE_TTL_NS`] (their requests
//! then count in Redis without being served, a small, bounded under-use) so
//! tokens are never spent long after they were taken. Bounded by entry count.

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;

use super::gcra::Verdict;

/// How long spare tokens stay usable.
pub const LEASE_TTL_NS: u64 = 200_000_000;
/// A lease covers at most this much of a bucket's sustained rate.
pub const LEASE_WINDOW_NS: u64 = 50_000_000;
const SHARDS: usize = 16;

struct Lease {
    tokens: u64,
    expires_ns: u64,
    /// The buckets' state when the tokens were taken (for RateLimit headers).
    verdicts: Vec<Verdict>,
}

pub struct LeaseStore {
    shards: Vec<Mutex<HashMap<String, Lease>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
}

impl LeaseStore {
    pub fn new(max_entries: usize) -> LeaseStore {
        LeaseStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Lease>> {
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// Spends one leased token for `key`, returning the verdicts to report.
    pub fn take(&self, key: &str, now_ns: u64) -> Option<Vec<Verdict>> {
        let mut m = self.shard(key).lock();
        let lease = m.get_mut(key)?;
        if lease.expires_ns <= now_ns || lease.tokens == 0 {
            m.remove(key);
            return None;
        }
        lease.tokens -= 1;
        let v = lease.verdicts.clone();
        if lease.tokens == 0 {
            m.remove(key);
        }
        Some(v)
    }

    /// Keeps `tokens` spare admissions for `key` until `now + LEASE_TTL_NS`
    /// (added to any still-valid ones). Dropped when the store is full even
    /// after removing expired leases: that only costs the tokens.
    pub fn put(&self, key: String, tokens: u64, verdicts: Vec<Verdict>, now_ns: u64) {
        if tokens == 0 {
            return;
        }
        let expires_ns = now_ns.saturating_add(LEASE_TTL_NS);
        let mut m = self.shard(&key).lock();
        if let Some(l) = m.get_mut(&key) {
            l.tokens = if l.expires_ns > now_ns { l.tokens } else { 0 } + tokens;
            l.expires_ns = expires_ns;
            l.verdicts = verdicts;
            return;
        }
        if m.len() >= self.per_shard {
            m.retain(|_, l| l.expires_ns > now_ns);
            if m.len() >= self.per_shard {
                return;
            }
        }
        m.insert(
            key,
            Lease {
                tokens,
                expires_ns,
                verdicts,
            },
        );
    }
}

/// How many admissions to ask Redis for at once for buckets whose emission
/// intervals are `emission_ns`: at most `LEASE_WINDOW_NS` of the slowest
/// bucket's rate, at most `max`, at least 1.
pub fn want(emission_ns: impl IntoIterator<Item = u64>, max: u64) -> u64 {
    emission_ns
        .into_iter()
        .map(|em| LEASE_WINDOW_NS / em.max(1))
        .min()
        .unwrap_or(1)
        .clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(remaining: u64) -> Vec<Verdict> {
        vec![Verdict {
            allowed: true,
            remaining,
            reset_ns: 0,
            retry_ns: 0,
        }]
    }

    #[test]
    fn tokens_are_spent_once_and_expire() {
        let s = LeaseStore::new(100);
        assert!(s.take("a", 0).is_none());
        s.put("a".into(), 2, v(7), 0);
        assert_eq!(s.take("a", 1).unwrap()[0].remaining, 7);
        assert!(s.take("a", 2).is_some());
        assert!(s.take("a", 3).is_none(), "only two tokens were leased");
        s.put("b".into(), 5, v(1), 0);
        assert!(s.take("b", LEASE_TTL_NS).is_none(), "expired");
    }

    #[test]
    fn valid_tokens_add_up_and_expired_ones_do_not() {
        let s = LeaseStore::new(100);
        s.put("a".into(), 1, v(1), 0);
        s.put("a".into(), 1, v(1), 10);
        assert!(s.take("a", 20).is_some() && s.take("a", 20).is_some());
        assert!(s.take("a", 20).is_none());
        s.put("b".into(), 3, v(1), 0);
        s.put("b".into(), 1, v(1), LEASE_TTL_NS + 1);
        assert!(s.take("b", LEASE_TTL_NS + 2).is_some());
        assert!(s.take("b", LEASE_TTL_NS + 2).is_none());
    }

    #[test]
    fn bounded_by_entries() {
        let s = LeaseStore::new(SHARDS); // one entry per shard
        for i in 0..1000 {
            s.put(format!("k{i}"), 1, v(1), 0);
        }
        let held: usize = s.shards.iter().map(|m| m.lock().len()).sum();
        assert!(held <= SHARDS);
        // expired entries make room again
        s.put("late".into(), 1, v(1), LEASE_TTL_NS + 1);
        assert!(s.take("late", LEASE_TTL_NS + 2).is_some());
    }

    #[test]
    fn want_follows_the_slowest_rate() {
        // 50/s -> 20 ms per request -> 2 in 50 ms; 1e6/s capped at max
        assert_eq!(want([20_000_000], 64), 2);
        assert_eq!(want([1_000, 20_000_000], 64), 2);
        assert_eq!(want([1_000], 64), 64);
        assert_eq!(want([1_000_000_000], 64), 1);
        assert_eq!(want([1_000], 1), 1);
    }
}
