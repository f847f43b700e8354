//! The README's "in front of your origin" config, copied out of the README as a reader would,
//! pointed at a test origin: `imgedge -t` accepts it, imgedge runs on it, and an image is a
//! MISS then a HIT.

mod common;
use common::*;
use std::process::{Command, Stdio};

const MARKER: &str = "<!-- quickstart-config -->";

/// The fenced ```yaml block that follows the marker line, and the marker's line number (1-based).
fn quickstart_block(readme: &str) -> (String, usize) {
    let lines: Vec<&str> = readme.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == MARKER)
        .unwrap_or_else(|| panic!("README.md has no line {MARKER}"));
    let rest = &lines[at + 1..];
    let open = rest
        .iter()
        .position(|l| l.trim() == "```yaml")
        .expect("a ```yaml block after the marker");
    assert!(
        rest[..open]
            .iter()
            .all(|l| !l.trim_start().starts_with("```")),
        "the first fenced block after the marker is the ```yaml one"
    );
    let body: Vec<&str> = rest[open + 1..]
        .iter()
        .take_while(|l| l.trim() != "```")
        .copied()
        .collect();
    (body.join("\n") + "\n", at + 1)
}

#[test]
fn the_readme_quickstart_config_runs_in_front_of_an_origin() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let (block, line) = quickstart_block(&readme);
    assert!(
        line <= 80,
        "the quick-start config is at line {line}, not in the first 80"
    );
    for needle in ["127.0.0.1:9000", "127.0.0.1:8080", "./imgedge-cache"] {
        assert!(
            block.contains(needle),
            "the block uses {needle:?}:\n{block}"
        );
    }

    let origin = Origin::start();
    let jpeg = fixture("seeding_640x360.jpg");
    origin.route(
        "/photo.jpg",
        Reply::ok("image/jpeg", jpeg.clone()).header("Cache-Control", "max-age=3600"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("imgedge-cache");
    let (port, admin) = (free_port(), free_port());
    let mut conf = block
        .replace("127.0.0.1:9000", &origin.peer())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("./imgedge-cache", &cache_dir.display().to_string());
    // Only what a test needs beyond the reader's file: its own admin port, pid file and socket.
    assert!(
        !conf.contains("\nadmin:") && !conf.contains("\nserver:"),
        "{conf}"
    );
    conf.push_str(&format!(
        "admin: {{listen: \"127.0.0.1:{admin}\"}}\nserver: {{pid_file: {d}/imgedge.pid, upgrade_sock: {d}/upgrade.sock, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1}}\n",
        d = dir.path().display()
    ));
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, &conf).unwrap();

    let out = Command::new(bin())
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "-t refuses the README's config:\n{conf}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = dir.path().join("stderr");
    let mut child = Command::new(bin())
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/photo.jpg");
    let first = eventually(20, "imgedge serving", || try_get_with(&url, &[]).ok());
    let second = get(&url);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!((first.status, first.cache()), (200, "MISS"), "{text}");
    assert_eq!((second.status, second.cache()), (200, "HIT"), "{text}");
    assert!(second.body == jpeg);
    assert_eq!(origin.hits("/photo.jpg"), 1);
    assert!(
        cache_dir.is_dir(),
        "the disk tier is in the configured directory"
    );
}
