//! Usage events: one per request that reached the proxy, published to a Redis Stream for
//! reports and billing (`usage:` section), and read back by `imgedge usage` (`report`).
//!
//! The request side only does a non-blocking `try_send` into a bounded channel; a background
//! service batches the events into pipelined `XADD ... MAXLEN ~ N` transactions. While Redis is
//! slow or down the writer keeps retrying its current batch (with backoff) and stops draining
//! the channel, so at most `buffer_size + batch_size` events wait in memory; beyond that new
//! events are dropped and counted (`imgedge_usage_events_dropped_total`). Requests never wait.
//!
//! Knows nothing of the proxy, the limits or the cache: the proxy hands it plain values.

pub mod report;

use crate::config::UsageSettings;
use crate::metrics::METRICS;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::aio::MultiplexedConnection;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Invalid(String),
}

/// What one request did. Absent values are written as `-`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// End of the request, Unix milliseconds.
    pub time_ms: u64,
    /// The client's organization (API key or token claim), when known.
    pub org: Option<String>,
    /// Who was billed: the API key id (`ak:...`), token subject (`jwt:...`) or the client IP.
    pub key: String,
    /// Client IP.
    pub client: String,
    /// Route prefix (`none` when no route matched).
    pub route: String,
    pub method: String,
    /// Request path, without the query.
    pub path: String,
    /// Canonical transform (`w=400,f=webp,...`), when the URL asked for one.
    pub transform: Option<String>,
    /// Status sent (0: the client went away before one was sent).
    pub status: u16,
    /// X-Cache-Status sent (HIT, MISS, BYPASS, ...; `-` when none).
    pub cache: String,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Time the transform of this response took, when one ran (misses only).
    pub transform_ms: Option<f64>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().filter(|s| !s.is_empty()).unwrap_or("-")
}

impl Event {
    /// The stream entry's field/value pairs (the names `imgedge usage` reads).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ts", self.time_ms.to_string()),
            ("org", or_dash(&self.org).to_string()),
            ("key", self.key.clone()),
            ("client", self.client.clone()),
            ("route", self.route.clone()),
            ("method", self.method.clone()),
            ("path", self.path.clone()),
            ("transform", or_dash(&self.transform).to_string()),
            ("status", self.status.to_string()),
            ("cache", self.cache.clone()),
            ("bytes", self.bytes.to_string()),
            (
                "transform_ms",
                self.transform_ms
                    .map_or_else(|| "-".to_string(), |ms| format!("{ms:.2}")),
            ),
        ]
    }
}

/// The request side: hands events to the writer without ever waiting.
pub struct Publisher {
    tx: mpsc::Sender<Event>,
    capacity: usize,
}

impl Publisher {
    /// The publisher and the background service that writes to Redis (add it to the server).
    pub fn new(settings: &UsageSettings) -> Result<(Publisher, Writer), UsageError> {
        let client = redis::Client::open(settings.redis_url.as_str())?;
        let (tx, rx) = mpsc::channel(settings.buffer_size.max(1));
        once_cell::sync::Lazy::force(&METRICS);
        Ok((
            Publisher {
                tx,
                capacity: settings.buffer_size.max(1),
            },
            Writer {
                rx: Mutex::new(Some(rx)),
                client,
                settings: settings.clone(),
            },
        ))
    }

    /// Queues the event; when the buffer is full it is dropped and counted.
    pub fn emit(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            METRICS.usage_dropped.inc();
        }
        METRICS
            .usage_buffered
            .set((self.capacity - self.tx.capacity()) as i64);
    }
}

/// The background service that batches events into the stream.
pub struct Writer {
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    client: redis::Client,
    settings: UsageSettings,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a stopping server keeps trying to write what is left.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

impl Writer {
    async fn connect(&self) -> Result<MultiplexedConnection, UsageError> {
        let t = self.settings.timeout;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(t)
            .set_response_timeout(t);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// One atomic pipeline (MULTI/EXEC) of XADDs: all of the batch is written or none of it.
    async fn write(
        &self,
        conn: &mut Option<MultiplexedConnection>,
        batch: &[Event],
    ) -> Result<(), UsageError> {
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let Some(c) = conn.as_mut() else {
            return Err(UsageError::Invalid("no connection".into()));
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for ev in batch {
            let cmd = pipe
                .cmd("XADD")
                .arg(&self.settings.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.settings.maxlen)
                .arg("*");
            for (k, v) in ev.fields() {
                cmd.arg(k).arg(v);
            }
            cmd.ignore();
        }
        let r: Result<(), redis::RedisError> = pipe.query_async(c).await;
        if let Err(e) = r {
            // The connection may be broken: start over with a new one.
            *conn = None;
            return Err(e.into());
        }
        Ok(())
    }

    async fn run(&self, mut rx: mpsc::Receiver<Event>, mut shutdown: ShutdownWatch) {
        let s = &self.settings;
        let mut conn: Option<MultiplexedConnection> = None;
        let mut batch: Vec<Event> = Vec::with_capacity(s.batch_size);
        let mut backoff = BACKOFF_MIN;
        let mut failing_since: Option<Instant> = None;
        loop {
            if batch.is_empty() {
                tokio::select! {
                    n = rx.recv_many(&mut batch, s.batch_size) => if n == 0 { return },
                    _ = shutdown.changed() => break,
                }
                // Fill the batch for at most flush_interval.
                let deadline = tokio::time::Instant::now() + s.flush_interval;
                while batch.len() < s.batch_size {
                    let room = s.batch_size - batch.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            METRICS.usage_buffered.set((rx.len() + batch.len()) as i64);
            match self.write(&mut conn, &batch).await {
                Ok(()) => {
                    METRICS.usage_published.inc_by(batch.len() as u64);
                    METRICS.usage_buffered.set((rx.len()) as i64);
                    if let Some(since) = failing_since.take() {
                        log::info!(
                            "usage: redis {} reachable again after {:.1}s; writing buffered events",
                            s.redis_url,
                            since.elapsed().as_secs_f64()
                        );
                    }
                    batch.clear();
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    METRICS.usage_errors.inc();
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        log::warn!(
                            "usage: cannot write {} events to {} stream {}: {e}; buffering up to {} events, then dropping (counted)",
                            batch.len(),
                            s.redis_url,
                            s.stream,
                            s.buffer_size + s.batch_size
                        );
                    } else {
                        log::debug!("usage: redis still failing: {e}");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        // Stopping: one last attempt at what is buffered, bounded in time.
        rx.close();
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let mut ok = 0usize;
        let flush = async {
            for chunk in batch.chunks(s.batch_size) {
                if self.write(&mut conn, chunk).await.is_err() {
                    break;
                }
                METRICS.usage_published.inc_by(chunk.len() as u64);
                ok += chunk.len();
            }
        };
        let _ = tokio::time::timeout(FINAL_FLUSH, flush).await;
        if ok < n {
            log::warn!("usage: stopping with {} events not written", n - ok);
        }
    }
}

#[async_trait]
impl BackgroundService for Writer {
    async fn start(&self, shutdown: ShutdownWatch) {
        let rx = self.rx.lock().take();
        match rx {
            Some(rx) => self.run(rx, shutdown).await,
            None => log::error!("usage: writer started twice"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_write_absent_values_as_dash() {
        let ev = Event {
            time_ms: 5,
            key: "10.0.0.1".into(),
            client: "10.0.0.1".into(),
            route: "/".into(),
            method: "GET".into(),
            path: "/a.jpg".into(),
            status: 200,
            cache: "HIT".into(),
            bytes: 12,
            ..Default::default()
        };
        let f = ev.fields();
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("org"), Some("-"));
        assert_eq!(get("transform"), Some("-"));
        assert_eq!(get("transform_ms"), Some("-"));
        assert_eq!(get("bytes"), Some("12"));
        assert_eq!(get("ts"), Some("5"));
    }
}
