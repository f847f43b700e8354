//! Shared GCRA state in Redis: one EVALSHA round trip per decision, checking
//! every bucket of the request atomically and committing only if all admit.
//!
//! Cluster: every key carries the same hash tag, `{imgedge}:<policy>:<key>`, so
//! the multi-key script of a request (its policies, tier and org buckets,
//! which different requests share in different combinations) always runs in
//! one slot and Redis Cluster accepts it (`backend.cluster: true` uses redis-rs'
//! cluster client). The price: one shard holds all limiter keys; a GCRA
//! decision is one small script, so a single shard serves well over 100k
//! decisions/s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use sha2::Digest;
use tokio::sync::watch;

use super::gcra::{Clock, Gcra, Verdict};
use crate::metrics::METRICS;

/// While Redis is degraded, try it again at most this often, so a dead
/// Redis does not add `timeout_ms` to every request.
const REDIS_RETRY_INTERVAL_MS: u64 = 1_000;

/// KEYS[i]: bucket keys. ARGV[1]: "1" to commit, "0" to only look. ARGV[2]: how
/// many requests the caller would like admitted at once (a lease; >= 1).
/// ARGV[2i+1], ARGV[2i+2]: emission interval and tolerance (burst * T) of
/// bucket i, in microseconds. Time comes from the Redis server (`TIME`), so
/// proxy nodes' clocks do not matter.
///
/// The grant is what every bucket can spare: at most a quarter of the requests
/// it would admit right now (so a bucket near its limit grants exactly 1 and
/// behaves as plain GCRA), at least 1 when the request itself is admitted.
/// Returns [all_admitted, granted, then per bucket: admitted, tat_after - now,
/// tat_now - now].
const SCRIPT: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local commit = ARGV[1] == '1'
local grant = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local all = 1
local tats = {}
for i = 1, #KEYS do
  local em = tonumber(ARGV[2 * i + 1])
  local tol = tonumber(ARGV[2 * i + 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '') or now
  if tat < now then tat = now end
  tats[i] = tat
  if tat + em - now > tol then all = 0 end
  local spare = math.floor(math.floor((tol - (tat - now)) / em) / 4)
  if spare < grant then grant = spare end
end
if grant < 1 then grant = 1 end
if all == 0 then grant = 0 end
local out = {all, grant}
for i = 1, #KEYS do
  local em = tonumber(ARGV[2 * i + 1])
  local tol = tonumber(ARGV[2 * i + 2])
  local tat = tats[i]
  local n = grant
  if n < 1 then n = 1 end
  local nt = tat + n * em
  local ok = 1
  if tat + em - now > tol then ok = 0 end
  out[#out + 1] = ok
  out[#out + 1] = nt - now
  out[#out + 1] = tat - now
  if commit and all == 1 then
    -- %d: plain tostring() would round a 16-digit microsecond count
    redis.call('SET', KEYS[i], string.format('%d', nt), 'PX',
      math.floor((nt - now) / 1000) + 1)
  end
end
return out
"#;

/// A bucket as Redis sees it.
pub struct RedisBucket {
    pub key: String,
    pub gcra: Gcra,
}

/// Per-bucket result: the verdict for this request (after every granted
/// token is taken) and the state before it.
#[derive(Debug, Clone, Copy)]
pub struct RedisVerdict {
    pub verdict: Verdict,
    pub current: Verdict,
}

/// One decision: per-bucket verdicts, and how many requests Redis admitted
/// (0 when refused; more than 1 is a lease for the node to spend locally).
pub struct RedisDecision {
    pub buckets: Vec<RedisVerdict>,
    pub granted: u64,
}

/// Redis key for a bucket. User-controlled parts that are long or could
/// break the hash tag are replaced by a hash.
pub fn bucket_key(name: &str, key: &str) -> String {
    let safe = key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if safe {
        format!("{{imgedge}}:{name}:{key}")
    } else {
        let h = sha2::Sha256::digest(key.as_bytes());
        format!("{{imgedge}}:{name}:#{}", hex::encode(&h[..16]))
    }
}

/// A reconnecting connection to one primary, or a cluster connection (which follows slot
/// moves and reconnects to nodes by itself).
#[derive(Clone)]
enum Conn {
    Single(Box<ConnectionManager>),
    Cluster(ClusterConnection),
}

enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Other(&'static str),
}

pub struct RedisBackend {
    client: Arc<Client>,
    script: redis::Script,
    timeout: Duration,
    conn_tx: Arc<watch::Sender<Option<Conn>>>,
    connecting: Arc<AtomicBool>,
    degraded: AtomicBool,
    /// Clock time (ns) of the last attempt while degraded.
    last_try_ns: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl RedisBackend {
    /// Parses the URL only: no I/O until the first call.
    pub fn new(
        url: &str,
        cluster: bool,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisBackend, redis::RedisError> {
        let client = if cluster {
            Client::Cluster(redis::cluster::ClusterClient::new(vec![url])?)
        } else {
            Client::Single(redis::Client::open(url)?)
        };
        Ok(RedisBackend {
            client: Arc::new(client),
            script: redis::Script::new(SCRIPT),
            timeout,
            conn_tx: Arc::new(watch::channel(None).0),
            connecting: Arc::new(AtomicBool::new(false)),
            degraded: AtomicBool::new(false),
            last_try_ns: AtomicU64::new(0),
            clock,
        })
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Connects in a spawned task, so a slow first connect is not cancelled
    /// by a request's short timeout; the ConnectionManager then reconnects
    /// by itself.
    fn ensure_connecting(&self) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.connecting.store(false, Ordering::Release);
            return;
        };
        let client = self.client.clone();
        let tx = self.conn_tx.clone();
        let connecting = self.connecting.clone();
        let cfg = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(200)
            .set_connection_timeout(Duration::from_secs(1));
        rt.spawn(async move {
            let conn = match &*client {
                Client::Single(c) => ConnectionManager::new_with_config(c.clone(), cfg)
                    .await
                    .map(|c| Conn::Single(Box::new(c))),
                Client::Cluster(c) => c.get_async_connection().await.map(Conn::Cluster),
            };
            match conn {
                Ok(conn) => {
                    tx.send_replace(Some(conn));
                }
                Err(e) => {
                    log::debug!("limits: redis connect failed: {e}");
                    // let a later request start another attempt
                    connecting.store(false, Ordering::Release);
                }
            }
        });
    }

    async fn call(
        &self,
        keys: &[RedisBucket],
        commit: bool,
        want: u64,
    ) -> Result<Vec<i64>, CallError> {
        let mut rx = self.conn_tx.subscribe();
        let existing = rx.borrow().clone();
        let mut conn = match existing {
            Some(c) => c,
            None => {
                self.ensure_connecting();
                let c = rx
                    .wait_for(|c| c.is_some())
                    .await
                    .map_err(|_| CallError::Other("connection task gone"))?;
                c.clone().ok_or(CallError::Other("not connected"))?
            }
        };
        let mut inv = self.script.prepare_invoke();
        inv.arg(if commit { "1" } else { "0" }).arg(want.max(1));
        for b in keys {
            let em_us = (b.gcra.emission_ns / 1000).max(1);
            inv.key(&b.key)
                .arg(em_us)
                .arg(em_us.saturating_mul(b.gcra.burst));
        }
        Ok(match &mut conn {
            Conn::Single(c) => inv.invoke_async(c.as_mut()).await?,
            Conn::Cluster(c) => inv.invoke_async(c).await?,
        })
    }

    /// Evaluates `buckets` in Redis, asking for up to `want` admissions at
    /// once. `None` when Redis failed, timed out, or is degraded and not due
    /// for another try: the caller falls back.
    pub async fn eval(
        &self,
        buckets: &[RedisBucket],
        commit: bool,
        want: u64,
    ) -> Option<RedisDecision> {
        if self.degraded.load(Ordering::Acquire) {
            // one probe per interval; everyone else falls back at once
            let now = self.clock.now_ns();
            let last = self.last_try_ns.load(Ordering::Acquire);
            let due = now.saturating_sub(last) >= REDIS_RETRY_INTERVAL_MS * 1_000_000;
            if !due
                || self
                    .last_try_ns
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return None;
            }
        }
        let start = Instant::now();
        let res = match tokio::time::timeout(self.timeout, self.call(buckets, commit, want)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        };
        match res {
            Ok(v) => {
                METRICS
                    .ratelimit_redis_duration
                    .observe(start.elapsed().as_secs_f64());
                let out = decode(buckets, &v);
                if out.is_some() && self.degraded.swap(false, Ordering::AcqRel) {
                    log::info!("limits: redis backend recovered, shared limiting resumed");
                    METRICS.ratelimit_fallback.set(0);
                }
                if out.is_none() {
                    log::debug!("limits: unexpected redis script reply {v:?}");
                }
                out
            }
            Err(e) => {
                let kind = if matches!(e, CallError::Timeout) {
                    "timeout"
                } else {
                    "error"
                };
                METRICS
                    .ratelimit_redis_errors
                    .with_label_values(&[kind])
                    .inc();
                self.last_try_ns
                    .store(self.clock.now_ns(), Ordering::Release);
                if !self.degraded.swap(true, Ordering::AcqRel) {
                    log::warn!("limits: redis backend failed ({e}), using fallback");
                    METRICS.ratelimit_fallback.set(1);
                    METRICS.ratelimit_fallback_switches.inc();
                }
                None
            }
        }
    }
}

fn decode(buckets: &[RedisBucket], v: &[i64]) -> Option<RedisDecision> {
    if v.len() != 2 + 3 * buckets.len() {
        return None;
    }
    let us = |x: i64| u64::try_from(x).unwrap_or(0).saturating_mul(1000);
    let granted = if v[0] == 1 {
        u64::try_from(v[1]).unwrap_or(1).max(1)
    } else {
        0
    };
    let buckets = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (ok, after, before) = (v[2 + 3 * i], v[3 + 3 * i], v[4 + 3 * i]);
            // recompute with the same integer math the local store uses
            let g = scaled(b.gcra);
            let current = g.verdict_at(us(before), 0);
            let verdict = if ok == 1 {
                g.verdict_at(us(after), 0)
            } else {
                Verdict {
                    allowed: false,
                    retry_ns: us(after).saturating_sub(g.tolerance_ns),
                    ..current
                }
            };
            RedisVerdict { verdict, current }
        })
        .collect();
    Some(RedisDecision { buckets, granted })
}

/// The GCRA as Redis runs it (microsecond granularity), in nanoseconds.
fn scaled(g: Gcra) -> Gcra {
    let em = (g.emission_ns / 1000).max(1) * 1000;
    Gcra {
        emission_ns: em,
        tolerance_ns: em.saturating_mul(g.burst),
        burst: g.burst,
    }
}
