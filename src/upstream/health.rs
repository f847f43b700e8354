//! Active health checks (`upstreams.X.health_check`): Pingora's HTTP check, with its changes
//! told in imgedge's words, once per change: which peer, why (`GET /health -> 404`), and what
//! imgedge does about it, notably when every peer fails and requests keep going to them (a
//! pool never refuses traffic only because of its checks, see `PeerPoolRt::choose`).

use parking_lot::Mutex;
use pingora_error::{ErrorType, Result};
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use pingora_load_balancing::Backend;
use std::collections::HashMap;

pub(super) struct Checked {
    inner: Box<HttpHealthCheck>,
    pool: String,
    path: String,
    /// Resolved peers of the pool (what the checks run on).
    peers: usize,
    /// Per peer: whether it is down, and the last failure in words.
    state: Mutex<HashMap<String, (bool, String)>>,
}

impl Checked {
    pub(super) fn new(inner: Box<HttpHealthCheck>, pool: &str, path: &str, peers: usize) -> Self {
        Checked {
            inner,
            pool: pool.to_string(),
            path: path.to_string(),
            peers,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// A failed check in words: the status the origin answered, or why there was none.
    fn failure(&self, e: &pingora_error::Error) -> String {
        match e.etype() {
            ErrorType::CustomCode(_, status) => format!("GET {} -> {status}", self.path),
            ErrorType::ConnectRefused => format!("GET {}: connection refused", self.path),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout => {
                format!("GET {}: timed out", self.path)
            }
            other => format!("GET {}: {}", self.path, other.as_str()),
        }
    }
}

#[async_trait::async_trait]
impl HealthCheck for Checked {
    async fn check(&self, target: &Backend) -> Result<()> {
        let r = self.inner.check(target).await;
        if let Err(e) = &r {
            let why = self.failure(e);
            let mut state = self.state.lock();
            state
                .entry(target.addr.to_string())
                .or_insert((false, String::new()))
                .1 = why;
        }
        r
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let (pool, peer) = (&self.pool, target.addr.to_string());
        let mut state = self.state.lock();
        let was_all_down = state.values().filter(|(down, _)| *down).count() >= self.peers;
        let entry = state.entry(peer.clone()).or_insert((false, String::new()));
        entry.0 = !healthy;
        let why = entry.1.clone();
        let all_down = state.values().filter(|(down, _)| *down).count() >= self.peers;
        match (healthy, all_down, was_all_down) {
            (false, true, _) if self.peers == 1 => log::warn!(
                "upstream {pool:?}: its peer {peer} fails its health check ({why}); imgedge keeps sending requests to it rather than refusing all traffic"
            ),
            (false, true, _) => log::warn!(
                "upstream {pool:?}: every peer fails its health check ({why}, the last: {peer}); imgedge keeps sending requests to them rather than refusing all traffic"
            ),
            (false, false, _) => log::warn!(
                "upstream {pool:?}: peer {peer} fails its health check ({why}); requests go to the other peers until it passes again"
            ),
            (true, _, true) => log::info!(
                "upstream {pool:?}: peer {peer} passes its health check again; requests go to the peers that pass"
            ),
            (true, _, false) => log::info!(
                "upstream {pool:?}: peer {peer} passes its health check again"
            ),
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}
