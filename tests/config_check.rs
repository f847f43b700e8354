//! `imgedge -t -c FILE`: every shipped config passes; every malformed file lists all of its
//! expected problems (one `PATH: message` per line, from the `.expect` file beside it).

mod common;
use std::path::Path;
use std::process::Command;

fn check(path: &Path) -> (bool, String) {
    let out = Command::new(common::bin())
        .arg("-t")
        .arg("-c")
        .arg(path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_shipped_config_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let (ok, text) = check(&p);
            assert!(ok, "{} fails -t:\n{text}", p.display());
            n += 1;
        }
    }
    assert!(n >= 2, "expected the default and the reference config");
}

#[test]
fn every_malformed_config_reports_each_problem() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let expect = std::fs::read_to_string(p.with_extension("expect")).unwrap();
        let (ok, text) = check(&p);
        assert!(!ok, "{} should fail -t", p.display());
        for line in expect.lines().filter(|l| !l.is_empty()) {
            assert!(
                text.contains(line),
                "{}: missing {line:?} in:\n{text}",
                p.display()
            );
        }
        n += 1;
    }
    assert!(n >= 4);
}

#[test]
fn embedded_default_checks_without_a_file() {
    let out = Command::new(common::bin())
        .arg("-t")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_may_come_from_a_pipe_but_not_without_end() {
    use std::io::Write;
    use std::process::Stdio;
    let conf =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/imgedge.yaml")).unwrap();
    let mut child = Command::new(common::bin())
        .args(["-t", "-c", "/dev/stdin"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&conf).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An endless file is refused once the bound is passed, not read forever.
    let (ok, text) = check(Path::new("/dev/zero"));
    assert!(!ok);
    assert!(text.contains("larger than 4194304 bytes"), "{text}");
}

/// `-t` on YAML text written to a temporary file.
fn check_text(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.yaml");
    std::fs::write(&path, yaml).unwrap();
    check(&path)
}

#[test]
fn every_unknown_key_in_one_run_with_did_you_mean_and_no_follow_on() {
    let (ok, text) = check_text(
        "listen: 127.0.0.1:8081\nupstream:\n  origin: {peers: [\"127.0.0.1:9000\"]}\nroutes:\n  - {prefix: /, upstream: origin}\ncache:\n  memory_byte: 256MiB\n  disk: {path: /tmp/imgedge-cache, size: 10GiB}\n",
    );
    assert!(!ok);
    for want in [
        r#"upstream: unknown key (did you mean "upstreams"?)"#,
        r#"cache.memory_byte: unknown key (did you mean "memory_bytes"?)"#,
        "cache.disk.size: unknown key (expected one of path, bytes)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Nothing that follows from those: the routes' upstream is not "unknown".
    assert!(!text.contains("no upstream named"), "{text}");
    assert!(text.contains(": 3 problems:\n"), "{text}");
}

#[test]
fn listen_takes_one_address_or_a_list_and_wrong_types_say_what_was_expected() {
    let base = "upstreams:\n  origin: {peers: [\"127.0.0.1:9000\"]}\nroutes:\n  - {prefix: /, upstream: origin}\n";
    for listen in [
        "listen: 127.0.0.1:8081\n",
        "listen: [\"127.0.0.1:8081\", \"127.0.0.1:8082\"]\n",
    ] {
        let (ok, text) = check_text(&format!("{listen}{base}"));
        assert!(ok, "{listen}: {text}");
    }
    let (ok, text) = check_text(&format!(
        "listen: 8081\nserver: {{threads: many, daemon: maybe}}\n{base}"
    ));
    assert!(!ok);
    for want in [
        "listen: expected an address or a list of addresses, got 8081",
        "server.threads: expected a whole number (0 or more), got the string \"many\"",
        "server.daemon: expected true or false, got the string \"maybe\"",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("invalid type"), "{text}");
}
