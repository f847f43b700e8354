//! Builds the Pingora server from the validated config: proxy listeners, admin listener,
//! upstream services (health checks, dir origins), and the background services that follow
//! the process's life (disk index scan, draining on upgrade, daemon readiness).

pub mod downstream;

use crate::admin::Admin;
use crate::cache::Cache;
use crate::config::Config;
use crate::proxy::routes::Router;
use crate::proxy::transform::Transformer;
use crate::proxy::{ImgEdge, State};
use crate::upstream;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::server::ShutdownWatch;
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora_core::listeners::tls::TlsSettings;

/// Rebuilds the disk tier's index in the background; until it is done, lookups read entry
/// files directly (see `cache::disk`).
struct DiskScan(&'static crate::cache::TieredStorage);

#[async_trait::async_trait]
impl BackgroundService for DiskScan {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let storage = self.0;
        if let Err(e) = tokio::task::spawn_blocking(move || storage.scan_disk()).await {
            log::error!("disk cache: index scan failed: {e}");
        }
    }
}

/// Follows the server's execution phase and marks the proxy as draining (`State::draining`)
/// once this process has been told to hand its listeners over (SIGQUIT) or to stop (SIGTERM).
struct DrainWatch {
    state: &'static State,
    phases: parking_lot::Mutex<
        Option<tokio::sync::broadcast::Receiver<pingora_core::server::ExecutionPhase>>,
    >,
}

#[async_trait::async_trait]
impl BackgroundService for DrainWatch {
    async fn start(&self, _shutdown: ShutdownWatch) {
        use pingora_core::server::ExecutionPhase as P;
        use tokio::sync::broadcast::error::RecvError;
        let Some(mut rx) = self.phases.lock().take() else {
            return;
        };
        loop {
            match rx.recv().await {
                Ok(
                    P::GracefulUpgradeTransferringFds | P::GracefulTerminate | P::ShutdownStarted,
                ) => {
                    if self.state.start_draining() {
                        log::info!("draining: responses now close their connections");
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// With -d, holds the bootstrap back until the launching process (which waits for the
/// daemon's SIGUSR1, Pingora's `daemon_wait_for_ready`) has installed its SIGUSR1 handler.
/// Pingora 0.9.1 installs it only after the fork, so on a busy machine the daemon could signal
/// first, and the default action of SIGUSR1 killed the launcher (exit 138: a failed start or
/// reload although the daemon was fine).
struct LauncherReady {
    launcher: u32,
}

/// SIGUSR1 (10) in the `SigCgt` mask of /proc/PID/status.
const SIGUSR1_MASK: u64 = 1 << (10 - 1);

impl LauncherReady {
    /// `Some(true)`: the handler is installed; `None`: the launcher is gone.
    fn handler_installed(&self) -> Option<bool> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.launcher)).ok()?;
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())?;
        Some(mask & SIGUSR1_MASK != 0)
    }
}

#[async_trait::async_trait]
impl BackgroundService for LauncherReady {
    async fn start_with_ready_notifier(
        &self,
        _shutdown: ShutdownWatch,
        ready: pingora_core::services::ServiceReadyNotifier,
    ) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match self.handler_installed() {
                Some(false) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                _ => break,
            }
        }
        ready.notify_ready();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] upstream::BuildError),
    #[error("tls listener: {0}")]
    Tls(#[from] Box<pingora_error::Error>),
    #[error("usage events: {0}")]
    Usage(#[from] crate::usage::UsageError),
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        addr: String,
        what: &'static str,
        reason: std::io::Error,
    },
}

/// Every address this process listens on: what it serves, the address, the URL scheme.
fn listeners(config: &Config) -> Vec<(&'static str, &str, &'static str)> {
    let mut out: Vec<_> = config
        .listen
        .iter()
        .map(|a| ("proxy", a.as_str(), "http"))
        .collect();
    if let Some(tls) = &config.tls {
        out.extend(tls.listen.iter().map(|a| ("proxy", a.as_str(), "https")));
    }
    let admin = if config.admin.playground {
        "admin and try-it page"
    } else {
        "admin"
    };
    out.push((admin, config.admin.listen.as_str(), "http"));
    out
}

/// Binds each listener address once, to fail the start at once with the address and the
/// reason: Pingora, given an address in use, logs "will try again" every second forever. Not
/// on a graceful upgrade (-u), whose listeners come from the old process that still holds
/// them. (Binding and closing leaves nothing behind: no connection, no TIME_WAIT.)
fn check_bind(config: &Config) -> Result<(), StartError> {
    for (what, addr, _) in listeners(config) {
        if let Err(reason) = std::net::TcpListener::bind(addr) {
            let addr = addr.to_string();
            return Err(StartError::Bind { addr, what, reason });
        }
    }
    Ok(())
}

/// Set once this process is told to stop (SIGTERM or SIGINT).
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A SIGINT after a first SIGTERM or SIGINT exits at once (status 130), skipping what is left
/// of the grace period: Ctrl-C twice in a terminal. Registered beside tokio's own handlers
/// (the same registry), which Pingora's shutdown keeps using.
fn second_interrupt_exits() {
    use std::sync::atomic::Ordering;
    // SAFETY: the actions only touch an atomic and call _exit, both async-signal-safe.
    unsafe {
        let term = signal_hook_registry::register(libc::SIGTERM, || {
            STOPPING.store(true, Ordering::SeqCst);
        });
        let int = signal_hook_registry::register(libc::SIGINT, || {
            if STOPPING.swap(true, Ordering::SeqCst) {
                libc::_exit(130);
            }
        });
        if let Err(e) = term.and(int) {
            log::warn!("a second Ctrl-C will not cut the shutdown short: {e}");
        }
    }
}

/// How long `imgedge -d` waits for its daemon to be ready before giving up (exit 1).
const DAEMON_READY_TIMEOUT_SECONDS: u64 = 60;

fn server_conf(c: &Config) -> ServerConf {
    let s = &c.server;
    ServerConf {
        threads: s.threads,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        daemon: s.daemon,
        error_log: s.error_log.clone(),
        user: s.user.clone(),
        group: s.group.clone(),
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        work_stealing: s.work_stealing,
        // With -d the starting process waits until the daemon has written its pid file and is
        // ready to take the listeners over, and fails (exit 1) if it dies before: a reload
        // (`systemctl reload`: -u -d, then SIGQUIT) stops before the old process is told to
        // hand over, and systemd reads the new pid from the pid file when the reload ends.
        daemon_wait_for_ready: true,
        daemon_ready_timeout_seconds: std::num::NonZeroU64::new(DAEMON_READY_TIMEOUT_SECONDS),
        ..ServerConf::default()
    }
}

/// Everything ready to `run_forever`.
/// The private socket of the source cache, when a route uses it (one per process: a graceful
/// upgrade starts a new process beside the old one, each with its own).
fn source_socket(config: &Config) -> Option<std::path::PathBuf> {
    let used = config.routes.iter().any(|r| r.cache && r.source_cache);
    used.then(|| {
        let name = format!("imgedge-{}-sources.sock", std::process::id());
        upstream::socket_dir().join(name)
    })
}

pub fn build(config: Config, daemon: bool, upgrade: bool) -> Result<Server, StartError> {
    if !upgrade {
        check_bind(&config)?;
    }
    second_interrupt_exits();
    let opt = Opt {
        upgrade,
        daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config));
    // Bootstrap (receiving the listeners of the old process with -u) runs as a service after
    // daemonizing, so the parent can wait for it (daemon_wait_for_ready) and the old process
    // is only asked to hand over once the new one is up. Listening services depend on it.
    let bootstrap = server.bootstrap_as_a_service();
    if daemon {
        let launcher = server.add_service(background_service(
            "daemon launcher ready",
            LauncherReady {
                launcher: std::process::id(),
            },
        ));
        bootstrap.add_dependency(&launcher);
    }
    let phases = server.watch_execution_phase();

    let built = upstream::build(&config)?;
    let (usage, usage_writer) = match &config.usage {
        Some(u) => {
            let (p, w) = crate::usage::Publisher::new(u)?;
            (Some(p), Some(w))
        }
        None => (None, None),
    };
    let playground = config
        .admin
        .playground
        .then(|| crate::admin::Playground::new(&config));
    let state: &'static State = Box::leak(Box::new(State {
        router: Router::new(config.routes.clone()),
        pools: built.pools,
        cache: Cache::new(&config.cache),
        transformer: Transformer::new(&config.transform),
        limiter: crate::limits::Limiter::new(&config.limits),
        access_log: config.log.access,
        unknown_params: config.transform.unknown_params,
        http: config.http,
        usage,
        cors_origins: if config.admin.playground {
            config.admin.playground_origins.clone()
        } else {
            Vec::new()
        },
        purge_token: config.admin.token.clone(),
        trusted_proxies: config.limits.trusted_proxies.clone(),
        draining: std::sync::atomic::AtomicBool::new(false),
        source_socket: source_socket(&config),
        remote_sources: config.transform.remote_sources.clone(),
    }));

    let mut app = pingora_proxy::http_proxy(&server.configuration, ImgEdge { state });
    let mut options = pingora_core::apps::HttpServerOptions::default();
    // HTTP/2 connections are Pingora's own: close them after the same idle time.
    options.h2_idle_timeout = Some(config.client.keepalive);
    app.server_options = Some(options);
    // Header and keep-alive deadlines of HTTP/1 clients (see downstream.rs for why a wrapper).
    let app = downstream::ClientTimeouts::new(app, config.client);
    let mut proxy = Service::new("imgedge proxy".to_string(), app);
    for addr in &config.listen {
        proxy.add_tcp(addr);
    }
    if let Some(socket) = &state.source_socket {
        // Owner-only: what arrives here is trusted as this process's own (no rate limits).
        let _ = std::fs::remove_file(socket);
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        proxy.add_uds(&socket.to_string_lossy(), Some(perms));
    }
    if let Some(tls) = &config.tls {
        // Files are read when the listener starts: a graceful reload picks up renewed ones.
        for addr in &tls.listen {
            let mut settings = TlsSettings::intermediate(&tls.cert_file, &tls.key_file)?;
            if tls.h2 {
                settings.enable_h2();
            }
            proxy.add_tls_with_settings(addr, None, settings);
        }
    }
    let admin_app = HttpServer::new_app(Admin {
        state,
        playground,
        access: crate::admin::Access::new(&config.admin),
        guard: crate::admin::Guard::new(&config.admin),
    });
    // The admin listener's clients get the same header and keep-alive deadlines.
    let admin_app = downstream::ClientTimeouts::new(admin_app, config.client);
    let mut admin = Service::new("imgedge admin".to_string(), admin_app);
    admin.add_tcp(&config.admin.listen);

    server.add_service(proxy).add_dependency(&bootstrap);
    server.add_service(admin).add_dependency(&bootstrap);
    server.add_service(background_service(
        "drain on upgrade",
        DrainWatch {
            state,
            phases: parking_lot::Mutex::new(Some(phases)),
        },
    ));
    if state.cache.storage.disk.is_some() {
        // A service, not a thread started here: threads do not survive daemonizing.
        server.add_service(background_service(
            "disk cache index",
            DiskScan(state.cache.storage),
        ));
    }
    for svc in built.services {
        server.add_boxed_service(svc);
    }
    if let Some(w) = usage_writer {
        server.add_service(pingora::services::background::background_service(
            "usage events",
            w,
        ));
    }
    for (what, addr, scheme) in listeners(&config) {
        let slash = if what == "proxy" { "" } else { "/" };
        log::info!("imgedge: {what} on {scheme}://{addr}{slash}");
    }
    Ok(server)
}
