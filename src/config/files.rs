//! Reading the files a configuration names (itself, keys, tokens, certificates).
//!
//! Always up to a bound, so `-t` answers at once even when a path points at `/dev/zero`; and
//! the files the configuration names must be regular files (a FIFO or device there is a
//! mistake, and opening a FIFO blocks until a writer comes). The configuration itself may come
//! from a pipe (`imgedge -t -c <(generate-config)`, `-c /dev/stdin`).

use std::io::Read;
use std::path::Path;

/// Upper bound for the configuration file itself.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Upper bound for key, token and certificate files (a long certificate chain fits).
pub const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Reads at most `max` bytes of `path`, whatever kind of file it is; more is an error. The
/// error says which rule failed, without the "cannot read PATH" prefix callers add.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err("is a directory".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // take(max + 1) bounds the read whatever the file claims or becomes.
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(buf)
}

/// [`read_bounded`] for a file the configuration names: a regular file only (checked before
/// opening it).
pub fn read_named_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    read_bounded(path, max)
}

/// [`read_bounded`] for text.
pub fn read_bounded_text(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_bounded(path, max)?).map_err(|_| "not UTF-8 text".into())
}

/// [`read_named_file`] for text.
pub fn read_named_text(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_named_file(path, max)?).map_err(|_| "not UTF-8 text".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_must_be_regular_files() {
        let dev_zero = read_named_file(Path::new("/dev/zero"), 16);
        assert_eq!(dev_zero, Err("not a regular file".into()));
        assert_eq!(
            read_named_file(Path::new("/tmp"), 16),
            Err("not a regular file".into())
        );
    }

    #[test]
    fn the_config_may_be_a_stream_but_is_bounded() {
        assert_eq!(
            read_bounded(Path::new("/dev/zero"), 1000),
            Err("larger than 1000 bytes".into())
        );
        assert_eq!(
            read_bounded(Path::new("/tmp"), 16),
            Err("is a directory".into())
        );
        assert_eq!(
            read_bounded(Path::new("/dev/null"), 16).as_deref(),
            Ok(&b""[..])
        );
    }

    #[test]
    fn size_bound_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("k");
        std::fs::write(&f, b"0123456789").expect("write");
        assert_eq!(read_named_file(&f, 10).as_deref(), Ok(&b"0123456789"[..]));
        assert_eq!(read_named_file(&f, 9), Err("larger than 9 bytes".into()));
        assert_eq!(read_named_text(&f, 10).as_deref(), Ok("0123456789"));
        assert_eq!(read_bounded_text(&f, 10).as_deref(), Ok("0123456789"));
        std::fs::write(&f, [0xff, 0xfe]).expect("write");
        assert_eq!(read_named_text(&f, 10), Err("not UTF-8 text".into()));
        let missing = read_named_file(&dir.path().join("nope"), 10).unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
    }
}
