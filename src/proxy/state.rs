//! What the proxy needs, built once from the validated config and shared by every request.

use super::routes::Router;
use crate::cache::Cache;
use crate::limits::Limiter;
use crate::proxy::transform::Transformer;
use crate::upstream::Pool;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct State {
    /// Request size limits (`http`).
    pub http: crate::config::HttpLimits,
    pub router: Router,
    pub pools: Vec<Pool>,
    pub cache: Cache,
    pub transformer: Transformer,
    pub limiter: Limiter,
    pub access_log: bool,
    /// `transform.unknown_params`: what a look-alike of a transform parameter gets.
    pub unknown_params: crate::config::UnknownParams,
    /// Usage events (`usage:` section), when configured.
    pub usage: Option<crate::usage::Publisher>,
    /// Browser origins answered with CORS headers (the try-it page's); empty: none.
    pub cors_origins: Vec<String>,
    /// `admin.token`: allows `PURGE` on the proxy listeners.
    pub purge_token: Option<String>,
    /// `limits.trusted_proxies`: peers whose forwarding headers are kept and appended to.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Set by the server once this process hands its listeners over (SIGQUIT) or stops
    /// (SIGTERM): responses then carry `Connection: close`, so keep-alive clients reconnect
    /// after a complete response (reaching the new process) instead of having an idle
    /// connection dropped under a request they are sending.
    pub draining: AtomicBool,
    /// The proxy's own private Unix socket: transform misses fetch their original through it,
    /// so the original is looked up, fetched, revalidated and stored like a plain request.
    pub source_socket: Option<std::path::PathBuf>,
    /// `transform.remote_sources`: the hosts a path-form SOURCE URL may name.
    pub remote_sources: Vec<crate::config::RemoteSource>,
}

impl State {
    /// Whether responses should close their connection (see `draining`).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the process as draining; `true` the first time.
    pub fn start_draining(&self) -> bool {
        !self.draining.swap(true, Ordering::Relaxed)
    }

    /// The pool of the request's route.
    pub fn pool(&self, route: Option<usize>) -> Option<&Pool> {
        self.pools.get(self.router.get(route?).upstream)
    }

    /// The route's prefix as a metric label ("none" before routing).
    pub fn route_label(&self, route: Option<usize>) -> &str {
        match route {
            Some(i) => self.router.get(i).prefix.as_str(),
            None => "none",
        }
    }
}
