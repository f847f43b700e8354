//! Real `redis-server` processes: one node (`Redis`) or a three-node cluster (`RedisCluster`).

use super::client::eventually;
use super::edge::free_port;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

/// A real `redis-server` on an ephemeral loopback port (installed by .ci/setup).
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/setup)");
        self.child = Some(child);
        let port = self.port;
        eventually(10, "redis-server to answer PING", || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.write_all(b"PING\r\n").ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real three-node Redis Cluster on loopback (no replicas).
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        while ports.len() < 3 {
            // The cluster bus listens on port + 10000: both must be free.
            let p = free_port();
            if p <= 55535
                && !ports.contains(&p)
                && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok()
            {
                ports.push(p);
            }
        }
        let mut children = Vec::new();
        for p in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{p}.conf"),
                ])
                .args([
                    "--cluster-node-timeout",
                    "5000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server");
            children.push(child);
        }
        let cluster = RedisCluster {
            ports,
            children,
            _dir: dir,
        };
        for p in &cluster.ports {
            let p = *p;
            eventually(10, "a cluster node to answer", || {
                TcpStream::connect(("127.0.0.1", p)).ok()
            });
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let first = cluster.ports[0].to_string();
        eventually(20, "cluster_state:ok", || {
            let out = Command::new("redis-cli")
                .args(["-p", &first, "cluster", "info"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("cluster_state:ok")
                .then_some(())
        });
        cluster
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
