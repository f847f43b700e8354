//! The disk tier's file format: the layout of an entry file, its encoding and decoding, and
//! the checks (magic, version, checksums, lengths) a file must pass.
//!
//! File format (little endian), version 1:
//! ```text
//! magic "IEDK" | version u16 | reserved u16 | hash [16] | key_len u32 | tags_len u32
//! | meta0_len u32 | meta1_len u32 | body_len u64 | header_crc u32 | payload_crc u32
//! | key | tags ('\n'-joined) | meta0 | meta1 | body
//! ```
//! `header_crc` (crc32) covers the 48 bytes before it, `payload_crc` everything after the fixed
//! header.

use crate::cache::storage::EntryInfo;
use bytes::Bytes;
use pingora_cache::key::HashBinary;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"IEDK";
const VERSION: u16 = 1;
/// Fixed header: the 48 bytes covered by `header_crc`, then the two checksums.
pub(super) const FIXED: usize = 56;
const CRC_COVERED: usize = 48;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an imgedge cache file (bad magic)")]
    BadMagic,
    #[error("unsupported cache file version {0}")]
    Version(u16),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("length mismatch: header says {expected} bytes, file has {actual}")]
    Length { expected: u64, actual: u64 },
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("file holds another key")]
    WrongKey,
    #[error("key or tags are not UTF-8")]
    Utf8,
}

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) hash: HashBinary,
    pub(super) key_len: u32,
    pub(super) tags_len: u32,
    meta0_len: u32,
    meta1_len: u32,
    body_len: u64,
    payload_crc: u32,
}

impl Head {
    pub(super) fn total(&self) -> u64 {
        FIXED as u64
            + self.key_len as u64
            + self.tags_len as u64
            + self.meta0_len as u64
            + self.meta1_len as u64
            + self.body_len
    }
}

/// An entry read back from disk.
#[derive(Debug)]
pub struct Loaded {
    pub meta: (Vec<u8>, Vec<u8>),
    pub body: Bytes,
    pub info: Arc<EntryInfo>,
}

/// Everything before the body (fixed header, key, tags, meta), ready to be written.
pub fn encode_head(
    hash: &HashBinary,
    info: &EntryInfo,
    meta: &(Vec<u8>, Vec<u8>),
    body: &[u8],
) -> Vec<u8> {
    let tags = info.tags.join("\n");
    let mut crc = crc32fast::Hasher::new();
    for part in [info.key.as_bytes(), tags.as_bytes(), &meta.0, &meta.1, body] {
        crc.update(part);
    }
    let mut out = Vec::with_capacity(FIXED + info.key.len() + tags.len() + meta.0.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&(info.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    out.extend_from_slice(&(meta.0.len() as u32).to_le_bytes());
    out.extend_from_slice(&(meta.1.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let header_crc = crc32fast::hash(&out[..CRC_COVERED]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(info.key.as_bytes());
    out.extend_from_slice(tags.as_bytes());
    out.extend_from_slice(&meta.0);
    out.extend_from_slice(&meta.1);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

pub(super) fn decode_head(b: &[u8], file_len: u64) -> Result<Head, FormatError> {
    if b.len() < FIXED || &b[..4] != MAGIC {
        return Err(if b.len() < FIXED {
            FormatError::Length {
                expected: FIXED as u64,
                actual: file_len,
            }
        } else {
            FormatError::BadMagic
        });
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    if crc32fast::hash(&b[..CRC_COVERED]) != u32_at(b, CRC_COVERED) {
        return Err(FormatError::HeaderChecksum);
    }
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&b[8..24]);
    let mut body_len = [0u8; 8];
    body_len.copy_from_slice(&b[40..48]);
    let head = Head {
        hash,
        key_len: u32_at(b, 24),
        tags_len: u32_at(b, 28),
        meta0_len: u32_at(b, 32),
        meta1_len: u32_at(b, 36),
        body_len: u64::from_le_bytes(body_len),
        payload_crc: u32_at(b, 52),
    };
    if head.total() != file_len {
        return Err(FormatError::Length {
            expected: head.total(),
            actual: file_len,
        });
    }
    Ok(head)
}

pub(super) fn decode_info(key: &[u8], tags: &[u8]) -> Result<EntryInfo, FormatError> {
    let key = std::str::from_utf8(key).map_err(|_| FormatError::Utf8)?;
    let tags = std::str::from_utf8(tags).map_err(|_| FormatError::Utf8)?;
    Ok(EntryInfo {
        key: key.to_string(),
        tags: tags
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Decodes and verifies a whole file (`hash`: the key it must hold).
pub fn decode(file: Bytes, hash: &HashBinary) -> Result<Loaded, FormatError> {
    let head = decode_head(&file, file.len() as u64)?;
    if &head.hash != hash {
        return Err(FormatError::WrongKey);
    }
    if crc32fast::hash(&file[FIXED..]) != head.payload_crc {
        return Err(FormatError::PayloadChecksum);
    }
    let mut at = FIXED;
    let mut take = |n: usize| {
        let r = at..at + n;
        at += n;
        r
    };
    let key = take(head.key_len as usize);
    let tags = take(head.tags_len as usize);
    let meta0 = take(head.meta0_len as usize);
    let meta1 = take(head.meta1_len as usize);
    let body = take(head.body_len as usize);
    let info = decode_info(&file[key], &file[tags])?;
    Ok(Loaded {
        meta: (file[meta0].to_vec(), file[meta1].to_vec()),
        body: file.slice(body),
        info: Arc::new(info),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: &str, tags: &[&str]) -> Arc<EntryInfo> {
        Arc::new(EntryInfo {
            key: key.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        })
    }

    fn file(hash: &HashBinary, i: &EntryInfo, body: &[u8]) -> Vec<u8> {
        let meta = (b"meta-zero".to_vec(), b"meta-one".to_vec());
        let mut f = encode_head(hash, i, &meta, body);
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn format_round_trip() {
        let h = [3u8; 16];
        let i = info("host\n/p\n\nw=1", &["a", "b"]);
        let f = file(&h, &i, b"the body");
        let l = decode(Bytes::from(f), &h).unwrap();
        assert_eq!(&l.body[..], b"the body");
        assert_eq!(l.meta, (b"meta-zero".to_vec(), b"meta-one".to_vec()));
        assert_eq!(*l.info, *i);
    }

    #[test]
    fn checksum_and_length_failures_are_detected() {
        let h = [3u8; 16];
        let f = file(&h, &info("k", &[]), b"0123456789");
        let mut flipped = f.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            decode(Bytes::from(flipped), &h).unwrap_err(),
            FormatError::PayloadChecksum
        );
        let mut header = f.clone();
        header[30] ^= 1;
        assert_eq!(
            decode(Bytes::from(header), &h).unwrap_err(),
            FormatError::HeaderChecksum
        );
        let truncated = f[..f.len() - 3].to_vec();
        assert!(matches!(
            decode(Bytes::from(truncated), &h).unwrap_err(),
            FormatError::Length { .. }
        ));
        assert_eq!(
            decode(Bytes::from(f), &[4u8; 16]).unwrap_err(),
            FormatError::WrongKey
        );
        assert_eq!(
            decode(Bytes::from(vec![0u8; 80]), &h).unwrap_err(),
            FormatError::BadMagic
        );
    }
}
