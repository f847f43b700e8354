//! Reading the files a configuration names (itself, keys, tokens, certificates).
//!
//! Only regular files, and only up to a bound: `-t` must answer at once even when a key points
//! at `/dev/zero`, a FIFO or a directory, and a huge file is a mistake, not a key.

use std::io::Read;

/// Upper bound for the configuration file itself.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Upper bound for key, token and certificate files (a long certificate chain fits).
pub const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Reads `path` if it is a regular file of at most `max` bytes; the error says which rule
/// failed, without the "cannot read PATH" prefix callers add.
pub fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    // Opening a FIFO for reading would block until a writer comes: look before opening.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // take(max + 1) bounds the read even if the file grows after the size check.
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(buf)
}

/// [`read_bounded`] for text files.
pub fn read_bounded_text(path: &std::path::Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_bounded(path, max)?).map_err(|_| "not UTF-8 text".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn device_files_and_directories_are_refused_without_reading() {
        let dev_zero = read_bounded(Path::new("/dev/zero"), 16);
        assert_eq!(dev_zero, Err("not a regular file".into()));
        assert_eq!(
            read_bounded(Path::new("/tmp"), 16),
            Err("not a regular file".into())
        );
    }

    #[test]
    fn size_bound_and_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("k");
        std::fs::write(&f, b"0123456789").expect("write");
        assert_eq!(read_bounded(&f, 10).as_deref(), Ok(&b"0123456789"[..]));
        assert_eq!(read_bounded(&f, 9), Err("larger than 9 bytes".into()));
        assert_eq!(read_bounded_text(&f, 10).as_deref(), Ok("0123456789"));
        std::fs::write(&f, [0xff, 0xfe]).expect("write");
        assert_eq!(read_bounded_text(&f, 10), Err("not UTF-8 text".into()));
        let missing = read_bounded(&dir.path().join("nope"), 10).unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
    }
}
