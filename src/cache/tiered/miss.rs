//! A miss: the body is buffered in memory and published by `finish()` (to memory at once, to
//! disk asynchronously), with the key string and tags purges match on.

use super::TieredStorage;
use crate::cache::disk::Pending;
use crate::cache::storage::{Entry, EntryInfo, EpochGuard, Inserted};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::{CacheHashKey, CacheKey, HashBinary};
use pingora_cache::storage::{HandleMiss, MissFinishType, MissHandler};
use pingora_cache::CacheMeta;
use pingora_error::{Error, ErrorType, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Origin response headers whose values tag an entry (comma or space separated).
const TAG_HEADERS: [&str; 2] = ["cache-tag", "surrogate-key"];
/// Bounds on what one entry may carry in tags (index memory).
const MAX_TAGS: usize = 64;
const MAX_TAG_LEN: usize = 256;

/// Tags from `Cache-Tag` / `Surrogate-Key`: split on commas and white space, de-duplicated, at
/// most `MAX_TAGS` of at most `MAX_TAG_LEN` bytes each.
pub(super) fn tags_of(meta: &CacheMeta) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for name in TAG_HEADERS {
        for v in meta.headers().get_all(name) {
            let Ok(v) = v.to_str() else { continue };
            for t in v.split(|c: char| c == ',' || c.is_ascii_whitespace()) {
                if t.is_empty() || t.len() > MAX_TAG_LEN || tags.iter().any(|x| x == t) {
                    continue;
                }
                if tags.len() == MAX_TAGS {
                    return tags;
                }
                tags.push(t.to_string());
            }
        }
    }
    tags
}

pub(super) struct Miss {
    storage: &'static TieredStorage,
    key: HashBinary,
    info: Arc<EntryInfo>,
    meta: (Vec<u8>, Vec<u8>),
    body: BytesMut,
    too_big: bool,
    /// Purge epoch when the miss began.
    seen: u64,
}

impl Miss {
    pub(super) fn handler(
        storage: &'static TieredStorage,
        key: &CacheKey,
        meta: &CacheMeta,
    ) -> Result<MissHandler> {
        let info = EntryInfo {
            key: String::from_utf8_lossy(key.primary_key()).into_owned(),
            tags: tags_of(meta),
        };
        Ok(Box::new(Miss {
            storage,
            key: key.combined_bin(),
            info: Arc::new(info),
            meta: meta.serialize()?,
            body: BytesMut::new(),
            too_big: false,
            seen: storage.epoch.load(Ordering::SeqCst),
        }))
    }
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.too_big {
            return Ok(());
        }
        if self.body.len() + data.len() > self.storage.max_object {
            // Stop buffering; finish() will refuse to publish.
            self.too_big = true;
            self.body = BytesMut::new();
            return Ok(());
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let s = self.storage;
        if self.too_big {
            s.memory
                .stats
                .rejected_too_big
                .fetch_add(1, Ordering::Relaxed);
            return Error::e_explain(
                ErrorType::InternalError,
                "object larger than cache.max_object_bytes, not cached",
            );
        }
        let body = self.body.freeze();
        let meta = finished_meta(self.meta, &body)?;
        let guard = EpochGuard {
            epoch: &s.epoch,
            seen: self.seen,
        };
        let entry = Entry::new(meta.clone(), body.clone(), self.info.clone());
        let size = entry.size();
        let inserted = s.memory.insert(self.key, entry, Some(guard));
        match (&s.disk, inserted) {
            (_, Inserted::Purged) => {}
            (Some(disk), _) => disk.store(Pending {
                hash: self.key,
                info: self.info,
                meta,
                body,
                epoch: &s.epoch,
                seen: self.seen,
            }),
            (None, Inserted::TooBig) => {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "object larger than a memory cache shard, not cached",
                );
            }
            (None, Inserted::Yes) => {}
        }
        Ok(MissFinishType::Created(size))
    }
}

/// The meta published with a finished body: a body that arrived chunked (a transformed image)
/// is stored with its length, so hits carry `Content-Length` (and can serve ranges); a response
/// without an `ETag` gets one made from the body, so hits can be answered 304.
fn finished_meta(meta: (Vec<u8>, Vec<u8>), body: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut m = CacheMeta::deserialize(&meta.0, &meta.1)?;
    let h = m.response_header_mut();
    let has_length = h.headers.contains_key(http::header::CONTENT_LENGTH);
    let has_etag = h.headers.contains_key(http::header::ETAG);
    if has_length && has_etag {
        return Ok(meta);
    }
    if !has_length {
        h.remove_header(&http::header::TRANSFER_ENCODING);
        h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    }
    if !has_etag {
        h.insert_header(http::header::ETAG, crate::cache::body_etag(body))?;
        h.insert_header(crate::cache::GENERATED_ETAG, "1")?;
    }
    m.serialize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tiered::tests::meta;

    #[test]
    fn tags_from_both_headers() {
        let m = meta(&[
            ("Cache-Tag", "a, b"),
            ("Cache-Tag", "c"),
            ("Surrogate-Key", "b  d\te"),
        ]);
        assert_eq!(tags_of(&m), vec!["a", "b", "c", "d", "e"]);
    }
}
