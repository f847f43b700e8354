//! The real imgedge binary, started on ephemeral ports with a generated config.

use super::client::get;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released, so imgedge can bind it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgedge")
}

/// A running imgedge process.
pub struct Edge {
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Edge {
    /// `body` is the config without `listen`, `admin` and `server` (added here).
    pub fn start(body: &str) -> Edge {
        Edge::start_with_admin(body, "")
    }

    /// Like [`Edge::start`]; `admin_extra` adds keys to the `admin` mapping (`k: v, ...`).
    pub fn start_with_admin(body: &str, admin_extra: &str) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin_port = free_port();
        let sep = if admin_extra.is_empty() { "" } else { ", " };
        let conf = format!(
            "server:\n  threads: 2\n  pid_file: {d}/imgedge.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\nlisten: [\"127.0.0.1:{port}\"]\nadmin: {{listen: \"127.0.0.1:{admin_port}\"{sep}{admin_extra}}}\n{body}",
            d = dir.path().display()
        );
        let path = dir.path().join("imgedge.yaml");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("imgedge.log")).unwrap();
        let child = Command::new(bin())
            .arg("-c")
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("RUNTIME_DIRECTORY", dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let edge = Edge {
            port,
            admin_port,
            child,
            dir,
        };
        edge.wait_ready();
        edge
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("imgedge did not start; log:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("imgedge.log")).unwrap_or_default()
    }

    /// Value of a metric line (exact name+labels prefix), summed over matching lines.
    pub fn metric(&self, prefix: &str) -> f64 {
        let text = get(&self.admin_url("/metrics")).text();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
