//! LRU maps split into shards by cache-key hash, each with its own lock and byte count, so
//! lookups of different keys rarely contend and each shard evicts on its own. Shared by the
//! memory tier and the disk tier's index; what an entry weighs and when to evict stay theirs.

use lru::LruCache;
use parking_lot::Mutex;
use pingora_cache::key::HashBinary;
use std::iter::Sum;

/// One shard: its entries in LRU order and the bytes its owner has charged for them.
pub struct Shard<V, N> {
    pub map: LruCache<HashBinary, V>,
    pub bytes: N,
}

pub struct Shards<V, N> {
    shards: Box<[Mutex<Shard<V, N>>]>,
}

/// How many shards `total` bytes get: a power of two, each shard at least `min_shard` bytes
/// (so it can hold a large entry), at most `max_shards` (a power of two).
pub fn count(total: u64, min_shard: u64, max_shards: u64) -> u64 {
    let n = (total / min_shard.max(1))
        .clamp(1, max_shards)
        .next_power_of_two();
    if n > max_shards {
        n / 2
    } else {
        n
    }
}

impl<V, N: Copy + Default + Sum<N>> Shards<V, N> {
    /// `n` empty shards; `n` must be a power of two (see [`count`]).
    pub fn new(n: u64) -> Self {
        debug_assert!(n.is_power_of_two());
        Shards {
            shards: (0..n.max(1))
                .map(|_| {
                    Mutex::new(Shard {
                        map: LruCache::unbounded(),
                        bytes: N::default(),
                    })
                })
                .collect(),
        }
    }

    /// The shard holding `key`.
    pub fn of(&self, key: &HashBinary) -> &Mutex<Shard<V, N>> {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[..8]);
        let idx = (u64::from_le_bytes(b) as usize) & (self.shards.len() - 1);
        &self.shards[idx]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Mutex<Shard<V, N>>> {
        self.shards.iter()
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Bytes charged over all shards.
    pub fn bytes(&self) -> N {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }

    /// Entries over all shards.
    pub fn items(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_counts_are_powers_of_two_within_bounds() {
        assert_eq!(count(0, 4 << 20, 32), 1);
        assert_eq!(count(3 << 20, 4 << 20, 32), 1);
        assert_eq!(count(64 << 20, 4 << 20, 32), 16);
        assert_eq!(count(80 << 20, 4 << 20, 32), 32);
        assert_eq!(count(1 << 40, 4 << 20, 32), 32);
        assert_eq!(count(200 << 20, 64 << 20, 64), 4);
    }

    #[test]
    fn keys_spread_over_shards_and_bytes_add_up() {
        let s: Shards<u32, u64> = Shards::new(8);
        for i in 0..64u8 {
            let mut key = [0u8; 16];
            key[0] = i;
            let mut shard = s.of(&key).lock();
            shard.map.put(key, 1);
            shard.bytes += 10;
        }
        assert_eq!(s.items(), 64);
        assert_eq!(s.bytes(), 640);
        assert!(s.iter().all(|sh| sh.lock().map.len() == 8));
    }
}
