//! Upstream selection: pools of `host:port` peers (round robin or Ketama consistent hashing on
//! the cache key, active HTTP health checks, connect retries on another peer) and local
//! directories served through a private Unix socket (`dir.rs`).

pub mod breaker;
pub mod deadline;
pub mod dir;
mod health;

use crate::config::{Config, HealthCheck, LbAlgorithm, PeerPool, UpstreamKind};
use crate::metrics::METRICS;
use breaker::{Breaker, Ticket};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::ServiceWithDependents;
use pingora::upstreams::peer::HttpPeer;
use pingora_load_balancing::health_check::HttpHealthCheck;
use pingora_load_balancing::selection::{Consistent, RoundRobin};
use pingora_load_balancing::{Backend, LoadBalancer};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Most peers a selection looks at before giving up.
const MAX_SELECT_ITER: usize = 256;

enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Consistent(Arc<LoadBalancer<Consistent>>),
}

impl Balancer {
    fn select_with(&self, key: &[u8], accept: impl Fn(&Backend, bool) -> bool) -> Option<Backend> {
        match self {
            Balancer::RoundRobin(lb) => lb.select_with(key, MAX_SELECT_ITER, accept),
            Balancer::Consistent(lb) => lb.select_with(key, MAX_SELECT_ITER, accept),
        }
    }

    fn health(&self) -> Vec<(Backend, bool)> {
        let backends = match self {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Consistent(lb) => lb.backends(),
        };
        backends
            .get_backend()
            .iter()
            .map(|b| (b.clone(), backends.ready(b)))
            .collect()
    }
}

pub struct PeerPoolRt {
    balancer: Balancer,
    cfg: PeerPool,
    /// One per resolved peer address; empty when the breaker is off.
    breakers: HashMap<SocketAddr, &'static Breaker>,
    /// Every peer's circuit is open and requests go through anyway (logged once per episode).
    all_open: AtomicBool,
}

impl PeerPoolRt {
    /// The peer for one attempt and its breaker ticket: healthy peers whose circuit lets them
    /// through first; then peers the health check calls down (the check may be wrong, e.g. a
    /// bad path); then, when every circuit left is open, any peer not yet tried by this request:
    /// a pool never refuses a request only because of its breakers (as nginx with one server, or
    /// Envoy's panic threshold).
    fn choose(
        &self,
        key: &[u8],
        failed: &[SocketAddr],
        pool: &str,
    ) -> Option<(Backend, Option<Ticket>)> {
        let not_failed = |b: &Backend| b.addr.as_inet().is_none_or(|a| !failed.contains(a));
        let breaker = |b: &Backend| b.addr.as_inet().and_then(|a| self.breakers.get(a));
        // The breaker is asked last: admitting may hand out the half-open probe, which must go
        // to the peer actually chosen.
        let ticket: RefCell<Option<Ticket>> = RefCell::new(None);
        let admit = |b: &Backend| match breaker(b).map(|br| br.admit()) {
            None => true,
            Some(Some(t)) => {
                *ticket.borrow_mut() = Some(t);
                true
            }
            Some(None) => false,
        };
        let admitted = self
            .balancer
            .select_with(key, |b, healthy| healthy && not_failed(b) && admit(b))
            .or_else(|| {
                self.balancer
                    .select_with(key, |b, _| not_failed(b) && admit(b))
            });
        if let Some(b) = admitted {
            // Read first: a swap on every request would bounce the cache line between threads.
            if self.all_open.load(Ordering::Relaxed) && self.all_open.swap(false, Ordering::Relaxed)
            {
                log::info!(
                    "circuit breaker: upstream {pool}: a peer is admitted again; open circuits are skipped again"
                );
            }
            return Some((b, ticket.into_inner()));
        }
        let forced = self
            .balancer
            .select_with(key, |b, healthy| healthy && not_failed(b))
            .or_else(|| self.balancer.select_with(key, |b, _| not_failed(b)))?;
        let ticket = breaker(&forced).map(|br| br.force());
        if ticket.as_ref().is_some_and(Ticket::is_forced) {
            METRICS
                .circuit_bypassed
                .with_label_values(&[pool, &forced.addr.to_string()])
                .inc();
            // Only a first attempt says every peer is open (a retry excludes the peers that
            // failed it): the episode's log line must not flap with each retried request.
            if failed.is_empty() && !self.all_open.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "circuit breaker: upstream {pool}: every peer's circuit is open; sending requests to them anyway rather than refusing them (a success closes a peer's circuit)"
                );
            }
        }
        Some((forced, ticket))
    }
}

pub enum PoolKind {
    Peers(Box<PeerPoolRt>),
    Dir { socket: PathBuf },
}

pub struct Pool {
    pub name: String,
    pub kind: PoolKind,
}

/// Why no peer could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no peer of upstream {0:?} is left to try")]
    NoPeer(String),
}

/// The peer chosen for one attempt.
pub struct Selected {
    pub peer: HttpPeer,
    /// `ip:port` (or `dir`), for logs and metrics.
    pub label: String,
    /// The circuit breaker's admission, to report the outcome on; `None` when off.
    pub ticket: Option<Ticket>,
}

impl Pool {
    /// Retries allowed after a failed connect.
    pub fn retries(&self) -> usize {
        match &self.kind {
            PoolKind::Peers(p) => p.cfg.retries,
            PoolKind::Dir { .. } => 0,
        }
    }

    /// `Host` header override for requests to this pool.
    pub fn host_override(&self) -> Option<&str> {
        match &self.kind {
            PoolKind::Peers(p) => p.cfg.host.as_deref(),
            PoolKind::Dir { .. } => None,
        }
    }

    /// Picks a peer, skipping peers that already failed for this request and peers whose
    /// circuit breaker is open, and, while any is healthy, unhealthy ones. `key` feeds
    /// consistent hashing.
    pub fn select(&self, key: &[u8], failed: &[SocketAddr]) -> Result<Selected, SelectError> {
        match &self.kind {
            PoolKind::Dir { socket } => {
                let path = socket.to_string_lossy();
                let mut peer = HttpPeer::new_uds(&path, false, String::new())
                    .map_err(|_| SelectError::NoPeer(self.name.clone()))?;
                deny_upgrades(&mut peer);
                Ok(Selected {
                    peer,
                    label: "dir".to_string(),
                    ticket: None,
                })
            }
            PoolKind::Peers(p) => {
                let (backend, ticket) = p
                    .choose(key, failed, &self.name)
                    .ok_or_else(|| SelectError::NoPeer(self.name.clone()))?;
                let addr = *backend
                    .addr
                    .as_inet()
                    .ok_or_else(|| SelectError::NoPeer(self.name.clone()))?;
                let (tls, sni) = match &p.cfg.tls {
                    Some(t) => (true, t.sni.clone()),
                    None => (false, String::new()),
                };
                let mut peer = HttpPeer::new(addr, tls, sni);
                deny_upgrades(&mut peer);
                let o = &mut peer.options;
                let t = &p.cfg.timeouts;
                o.connection_timeout = Some(t.connect);
                o.total_connection_timeout = Some(t.total_connect);
                o.read_timeout = Some(t.read);
                o.write_timeout = Some(t.write);
                o.idle_timeout = Some(t.idle);
                if let Some(tls) = &p.cfg.tls {
                    o.verify_cert = tls.verify;
                    o.verify_hostname = tls.verify;
                }
                Ok(Selected {
                    peer,
                    label: addr.to_string(),
                    ticket,
                })
            }
        }
    }

    /// Whether a peer that has not failed this request is left (a retry has somewhere to go).
    pub fn has_untried(&self, failed: &[SocketAddr]) -> bool {
        match &self.kind {
            PoolKind::Dir { .. } => false,
            PoolKind::Peers(p) => p
                .balancer
                .health()
                .iter()
                .any(|(b, _)| b.addr.as_inet().is_none_or(|a| !failed.contains(a))),
        }
    }

    /// First-byte and total deadlines of a response from this pool (`None` for `dir`).
    pub fn response_deadlines(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        match &self.kind {
            PoolKind::Peers(p) => Some((p.cfg.timeouts.first_byte, p.cfg.timeouts.total)),
            PoolKind::Dir { .. } => None,
        }
    }

    /// Each peer with its health (a `dir` pool is one always-healthy peer).
    pub fn health(&self) -> Vec<(String, bool)> {
        match &self.kind {
            PoolKind::Dir { .. } => vec![("dir".to_string(), true)],
            PoolKind::Peers(p) => p
                .balancer
                .health()
                .into_iter()
                .map(|(b, h)| (b.addr.to_string(), h))
                .collect(),
        }
    }
}

/// The pools plus the services they need (health checkers, directory servers), which the caller
/// adds to the Pingora server.
pub struct Built {
    pub pools: Vec<Pool>,
    pub services: Vec<Box<dyn ServiceWithDependents>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstreams.{pool}.peers: cannot resolve: {err}")]
    Resolve { pool: String, err: std::io::Error },
    #[error("upstreams.{pool}.dir: {err}")]
    Dir { pool: String, err: std::io::Error },
}

fn health_check(pool: &PeerPool, hc: &HealthCheck) -> Box<HttpHealthCheck> {
    let host = pool
        .host
        .clone()
        .or_else(|| {
            pool.peers
                .first()
                .and_then(|p| p.rsplit_once(':'))
                .map(|(h, _)| h.to_string())
        })
        .unwrap_or_default();
    let mut check = HttpHealthCheck::new(&host, pool.tls.is_some());
    if let Some(tls) = &pool.tls {
        check.peer_template.sni = tls.sni.clone();
        check.peer_template.options.verify_cert = tls.verify;
        check.peer_template.options.verify_hostname = tls.verify;
    }
    check.peer_template.options.connection_timeout = Some(hc.timeout);
    check.peer_template.options.read_timeout = Some(hc.timeout);
    check.consecutive_success = hc.healthy_threshold;
    check.consecutive_failure = hc.unhealthy_threshold;
    check.reuse_connection = true;
    if let Ok(uri) = hc.path.parse() {
        check.req.set_uri(uri);
    }
    Box::new(check)
}

fn balancer<S>(
    name: &str,
    pool: &PeerPool,
    services: &mut Vec<Box<dyn ServiceWithDependents>>,
) -> Result<Arc<LoadBalancer<S>>, BuildError>
where
    S: pingora_load_balancing::selection::BackendSelection + Send + Sync + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
    LoadBalancer<S>: BackgroundService,
{
    let mut lb =
        LoadBalancer::<S>::try_from_iter(pool.peers.iter().map(String::as_str)).map_err(|err| {
            BuildError::Resolve {
                pool: name.to_string(),
                err,
            }
        })?;
    match &pool.health_check {
        None => Ok(Arc::new(lb)),
        Some(hc) => {
            let peers = lb.backends().get_backend().len();
            let check = health::Checked::new(health_check(pool, hc), name, &hc.path, peers);
            lb.set_health_check(Box::new(check));
            lb.health_check_frequency = Some(hc.interval);
            lb.parallel_health_check = true;
            let svc = background_service(&format!("health check {name}"), lb);
            let lb = svc.task();
            services.push(Box::new(svc));
            Ok(lb)
        }
    }
}

/// Hop-by-hop request fields are stripped (Pingora's standard policy) and no protocol upgrade
/// (WebSocket, h2c) is forwarded: an image origin has no use for one, and a tunnel would carry
/// whatever the client wants to the origin.
fn deny_upgrades(peer: &mut HttpPeer) {
    peer.options.http_upstream_request_policy =
        pingora::upstreams::peer::HttpUpstreamRequestPolicy::deny_upgrades();
}

/// A peer for this process's own proxy on its private socket (`source_socket`).
pub fn self_peer(socket: &std::path::Path) -> Option<HttpPeer> {
    let mut peer = HttpPeer::new_uds(&socket.to_string_lossy(), false, String::new()).ok()?;
    deny_upgrades(&mut peer);
    Some(peer)
}

/// Directory for the private sockets of `dir` upstreams and of the source cache.
pub fn socket_dir() -> PathBuf {
    std::env::var_os("RUNTIME_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

pub fn build(config: &Config) -> Result<Built, BuildError> {
    let mut services: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
    let mut pools = Vec::new();
    for up in &config.upstreams {
        let kind = match &up.kind {
            UpstreamKind::Peers(p) => {
                let balancer = match p.lb {
                    LbAlgorithm::RoundRobin => {
                        Balancer::RoundRobin(balancer::<RoundRobin>(&up.name, p, &mut services)?)
                    }
                    LbAlgorithm::Consistent => {
                        Balancer::Consistent(balancer::<Consistent>(&up.name, p, &mut services)?)
                    }
                };
                let breakers = match p.circuit_breaker {
                    None => HashMap::new(),
                    Some(cb) => balancer
                        .health()
                        .into_iter()
                        .filter_map(|(b, _)| b.addr.as_inet().copied())
                        .map(|addr| {
                            // Built once per process; lives as long as the pools.
                            let br: &'static Breaker =
                                Box::leak(Box::new(Breaker::new(cb, &up.name, &addr.to_string())));
                            (addr, br)
                        })
                        .collect(),
                };
                PoolKind::Peers(Box::new(PeerPoolRt {
                    balancer,
                    cfg: (**p).clone(),
                    breakers,
                    all_open: AtomicBool::new(false),
                }))
            }
            UpstreamKind::Dir(root) => {
                let app = dir::DirOrigin::new(root).map_err(|err| BuildError::Dir {
                    pool: up.name.clone(),
                    err,
                })?;
                // One socket per process: a graceful upgrade starts a new process beside the
                // old one, each with its own.
                let socket = socket_dir().join(format!(
                    "imgedge-{}-dir-{}.sock",
                    std::process::id(),
                    up.name
                ));
                let _ = std::fs::remove_file(&socket);
                let mut svc = Service::new(
                    format!("dir origin {}", up.name),
                    pingora::apps::http_app::HttpServer::new_app(app),
                );
                svc.add_uds(&socket.to_string_lossy(), None);
                services.push(Box::new(svc));
                PoolKind::Dir { socket }
            }
        };
        pools.push(Pool {
            name: up.name.clone(),
            kind,
        });
    }
    Ok(Built { pools, services })
}

/// Removes the private sockets on exit.
pub struct Cleanup(pub Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(peers: &[&str]) -> Pool {
        let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
        let yaml = format!(
            "upstreams:\n  shields: {{peers: [{}], lb: consistent}}\nroutes:\n  - {{prefix: /, upstream: shields}}\n",
            list.join(", ")
        );
        let config = crate::config::parse_str(&yaml).unwrap();
        build(&config).unwrap().pools.remove(0)
    }

    fn owners(pool: &Pool, failed: &[SocketAddr]) -> Vec<String> {
        (0..2000)
            .map(|i| {
                let key = format!("host\n/img/{i}.jpg\n\nw=400");
                pool.select(key.as_bytes(), failed).unwrap().label
            })
            .collect()
    }

    #[test]
    fn consistent_hashing_remaps_only_the_removed_peers_keys() {
        let three = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"];
        let before = owners(&pool(&three), &[]);
        for p in three {
            let share = before.iter().filter(|o| *o == p).count();
            assert!(share > 400, "{p} owns only {share} of 2000 keys");
        }
        // The pool without the third peer (config change), and with it failed (down at runtime).
        let after = owners(&pool(&three[..2]), &[]);
        let failed = [three[2].parse().unwrap()];
        let failover = owners(&pool(&three), &failed);
        for (i, owner) in before.iter().enumerate() {
            if owner != three[2] {
                assert_eq!(&after[i], owner, "key {i} moved though its peer stayed");
                assert_eq!(&failover[i], owner, "key {i} moved on failover");
            } else {
                assert_ne!(&failover[i], owner);
            }
        }
    }

    #[test]
    fn every_edge_picks_the_same_peer_for_a_key() {
        let peers = ["127.0.0.1:7001", "127.0.0.1:7002"];
        assert_eq!(owners(&pool(&peers), &[]), owners(&pool(&peers), &[]));
    }
}
