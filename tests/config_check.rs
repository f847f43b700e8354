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
