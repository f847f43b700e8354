//! Start and stop as a person at a terminal sees them: one line per listener saying where to
//! go, an address in use ends the start at once with the address and the reason, a second
//! Ctrl-C cuts the shutdown's grace period short.

mod common;
use common::*;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits for the process to exit, at most `secs`; its status, or `None` if still running.
fn exit_within(child: &mut Child, secs: f64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn config(dir: &std::path::Path, port: u16, admin: u16, grace: u64) -> std::path::PathBuf {
    let path = dir.join("edge.yaml");
    std::fs::write(
        &path,
        format!(
            "server:\n  threads: 1\n  pid_file: {d}/imgedge.pid\n  upgrade_sock: {d}/upgrade.sock\n  grace_period_seconds: {grace}\n  graceful_shutdown_timeout_seconds: 1\nlisten: 127.0.0.1:{port}\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\nupstreams:\n  origin: {{peers: [\"127.0.0.1:9\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

fn spawn(path: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(bin())
        .arg("-c")
        .arg(path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn an_address_in_use_ends_the_start_at_once() {
    for clash in ["proxy", "admin"] {
        let dir = tempfile::tempdir().unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let (port, admin) = match clash {
            "proxy" => (taken_port, free_port()),
            _ => (free_port(), taken_port),
        };
        let log = dir.path().join("stderr");
        let mut child = spawn(&config(dir.path(), port, admin, 0), &log);
        let status = exit_within(&mut child, 2.0);
        let _ = child.kill();
        let text = std::fs::read_to_string(&log).unwrap();
        let status = status.unwrap_or_else(|| panic!("{clash}: still running after 2 s:\n{text}"));
        assert!(!status.success(), "{clash}: {text}");
        let want = format!("cannot listen on 127.0.0.1:{taken_port}");
        assert!(text.contains(&want), "{clash}: {text}");
        assert!(text.contains("in use"), "{clash}: the reason: {text}");
        assert!(!text.contains("will try again"), "{text}");
    }
}

#[test]
fn start_up_says_where_to_go_and_no_dictionary_warning() {
    let origin = Origin::start();
    origin.route(
        "/a.jpg",
        Reply::ok("image/jpeg", fixture("seeding_640x360.jpg")),
    );
    let edge = Edge::start(&format!(
        "upstreams:\n  origin: {{peers: [\"{}\"]}}\nroutes:\n  - {{prefix: /, upstream: origin}}\n",
        origin.peer()
    ));
    let log = edge.log();
    for line in [
        format!("imgedge: proxy on http://127.0.0.1:{}\n", edge.port),
        format!(
            "imgedge: admin and try-it page on http://127.0.0.1:{}/\n",
            edge.admin_port
        ),
    ] {
        assert_eq!(log.matches(&line).count(), 1, "{line:?} in:\n{log}");
    }
    // The first cache write: nothing about a compression dictionary nobody can act on.
    assert_eq!(get(&edge.url("/a.jpg")).cache(), "MISS");
    assert_eq!(get(&edge.url("/a.jpg")).cache(), "HIT");
    let log = edge.log();
    assert!(!log.contains("dictionary"), "{log}");
}

#[test]
fn a_second_interrupt_cuts_the_grace_period_short() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let log = dir.path().join("stderr");
    let mut child = spawn(&config(dir.path(), port, admin, 30), &log);
    eventually(20, "imgedge listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let pid = child.id() as libc::pid_t;
    // SAFETY: signals to the child this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    eventually(5, "the grace period started", || {
        let text = std::fs::read_to_string(&log).unwrap();
        text.contains("grace period 30s starts").then_some(())
    });
    let sent = Instant::now();
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = exit_within(&mut child, 2.0);
    let _ = child.kill();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 2 s after the second signal:\n{}",
            std::fs::read_to_string(&log).unwrap()
        )
    });
    assert_eq!(status.code(), Some(130));
    assert!(sent.elapsed() < Duration::from_secs(2));
}
