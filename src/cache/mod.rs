//! Caching policy on top of pingora-cache: which responses are stored and for how long, the
//! cache key, the cache-status label, and the process-wide storage/lock. The purge language:
//! `purge.rs`. Storage itself: `storage.rs` (memory tier), `disk/` (disk tier), `tiered/` (both,
//! as a pingora `Storage`).

pub mod disk;
pub mod fastpath;
pub mod fields;
pub mod freshness;
pub mod invalidate;
pub mod purge;
pub mod shards;
pub mod storage;
pub mod tiered;
pub mod vary;

use crate::config::CacheSettings;
use freshness::{Exchange, Policy};
use invalidate::Invalidations;
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::{CacheKey, CachePhase, HttpCache, RespCacheable};
use pingora_http::{RequestHeader, ResponseHeader};
use purge::Purge;
pub use storage::{EntryInfo, MemoryStorage};
pub use tiered::TieredStorage;
use vary::VariantBound;

/// The cache parts shared by every request (pingora wants `&'static`).
pub struct Cache {
    pub storage: &'static TieredStorage,
    lock: &'static CacheKeyLockImpl,
    policy: Policy,
    /// How many `Vary` variants one URL may hold (`cache.max_variants`).
    pub variants: VariantBound,
    /// URLs invalidated by unsafe methods.
    pub invalidations: Invalidations,
}

impl Cache {
    pub fn new(s: &CacheSettings) -> Cache {
        let memory = MemoryStorage::new(s.memory_bytes, s.max_object_bytes);
        let disk = s
            .disk
            .as_ref()
            .map(|d| disk::DiskStore::new(&d.path, d.bytes, s.max_object_bytes));
        let mut tiered = TieredStorage::new(memory, disk);
        if s.sendfile_hits {
            // Its own budget, on top of memory_bytes: copies of the hottest large entries.
            let budget = (s.memory_bytes / 4).min(usize::MAX as u64) as usize;
            tiered = tiered.with_fast(fastpath::FastIndex::new(budget));
        }
        let storage: &'static TieredStorage = Box::leak(Box::new(tiered));
        let lock: &'static CacheKeyLockImpl = Box::leak(CacheLock::new_boxed(s.lock_timeout));
        Cache {
            storage,
            lock,
            policy: Policy {
                default_ttl: s.default_ttl,
                negative_ttl: s.negative_ttl,
                stale_while_revalidate: s.stale_while_revalidate,
                stale_if_error: s.stale_if_error,
            },
            variants: VariantBound::new(s.max_variants),
            invalidations: Invalidations::default(),
        }
    }

    /// Turns caching on for this request (with the cache lock collapsing concurrent misses).
    pub fn enable(&'static self, cache: &mut HttpCache) {
        cache.enable(self.storage, None, None, Some(self.lock), None);
        cache.set_max_file_size_bytes(self.storage.max_object());
    }

    /// Whether the response is stored, and its metadata (see `freshness`).
    pub fn cacheability(&self, resp: &ResponseHeader, at: Exchange) -> RespCacheable {
        freshness::cacheability(resp, at, &self.policy)
    }

    /// Removes what `p` names from memory and disk; returns the number of entries removed.
    pub async fn purge(&'static self, p: &Purge) -> usize {
        let n = self.storage.purge_where(p.matcher()).await;
        crate::metrics::METRICS
            .cache_purges
            .with_label_values(&[p.label()])
            .inc();
        crate::metrics::METRICS
            .cache_purged_entries
            .with_label_values(&[p.label()])
            .inc_by(n as u64);
        log::info!("cache purge {p}: {n} entries removed");
        n
    }
}

/// The cache key: `host \n path \n normalized query` (the host lower-cased without its
/// port, the query's `&`-separated pairs sorted, empty pairs dropped). `extra` carries anything
/// else the response depends on (the canonical transform, once negotiated).
pub fn key(host: &str, path: &str, query: Option<&str>, extra: &str) -> CacheKey {
    let mut primary = String::with_capacity(host.len() + path.len() + 64);
    primary.push_str(&normalize_host(host));
    primary.push('\n');
    primary.push_str(path);
    primary.push('\n');
    primary.push_str(&normalize_query(query));
    primary.push('\n');
    primary.push_str(extra);
    CacheKey::new(primary, "")
}

/// The one form of a host for the key, the origin's `Host`, routes and purges: lower-cased,
/// without its port (`[v6]:port` keeps the brackets).
pub fn normalize_host(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    if h.starts_with('[') {
        return match h.find(']') {
            Some(i) => h[..=i].to_string(),
            None => h,
        };
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => h,
    }
}

/// The one form of a path used for the key, the origin and purges: runs of `/` collapsed and
/// `.` segments removed (`//img/./x.jpg` is `/img/x.jpg`). `..` never gets here (refused first).
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    let clean = !path.contains("//") && !path.contains("/./") && !path.ends_with("/.");
    if clean {
        return std::borrow::Cow::Borrowed(path);
    }
    let trailing = path.ends_with('/') || path.ends_with("/.");
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

pub fn normalize_query(query: Option<&str>) -> String {
    let Some(q) = query else {
        return String::new();
    };
    let mut parts: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    parts.join("&")
}

/// Stored with a transformed entry: the origin's `ETag` for the source it was made from, sent
/// back to the origin when the entry is revalidated. Never sent to clients.
pub const SOURCE_ETAG: &str = "x-imgedge-source-etag";
/// Stored with an entry whose `ETag` the storage made from the body (the origin gave none): the
/// origin does not know that tag, so it is not sent upstream. Never sent to clients.
pub const GENERATED_ETAG: &str = "x-imgedge-generated-etag";

/// The entity tag of a variant (a transform) of a source identified by its validator: weak,
/// since the same source and transform give the same image, not necessarily the same bytes
/// across versions of the encoders.
pub fn variant_etag(source_validator: &str, variant: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(source_validator.as_bytes());
    h.update(b"\n");
    h.update(variant.as_bytes());
    format!("W/\"{}\"", hex::encode(&h.finalize()[..12]))
}

/// A strong entity tag for a stored body (for entries whose origin sent no validator).
pub fn body_etag(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..12]))
}

/// Fixes the conditional headers pingora put on a revalidation request from a stale entry's
/// `stored` headers: the origin is asked about the source's tag, never about ours.
pub fn revalidation_validators(stored: &http::HeaderMap, upstream_request: &mut RequestHeader) {
    if let Some(source) = stored.get(SOURCE_ETAG) {
        let _ = upstream_request.insert_header(http::header::IF_NONE_MATCH, source);
    } else if stored.contains_key(GENERATED_ETAG) || !stored.contains_key(http::header::ETAG) {
        upstream_request.remove_header(&http::header::IF_NONE_MATCH);
    }
}

/// Removes the headers kept for the cache's own use before a response goes to the client.
pub fn strip_private_headers(resp: &mut ResponseHeader) {
    resp.remove_header(SOURCE_ETAG);
    resp.remove_header(GENERATED_ETAG);
}

/// `X-Cache-Status` value for a finished cache phase.
pub fn status_label(phase: CachePhase) -> &'static str {
    match phase {
        CachePhase::Hit => "HIT",
        CachePhase::Miss => "MISS",
        CachePhase::Stale => "STALE",
        CachePhase::StaleUpdating => "UPDATING",
        CachePhase::Expired => "EXPIRED",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
        CachePhase::Disabled(_) | CachePhase::Bypass => "BYPASS",
        CachePhase::Uninit | CachePhase::CacheKey => "MISS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_normalization() {
        assert_eq!(normalize_query(Some("b=2&a=1&&c")), "a=1&b=2&c");
        assert_eq!(normalize_query(None), "");
        assert_eq!(normalize_query(Some("")), "");
    }

    #[test]
    fn variant_tags_follow_source_and_transform() {
        let a = variant_etag("\"v1\"", "w=100");
        assert!(a.starts_with("W/\"") && a.ends_with('"'));
        assert_eq!(a, variant_etag("\"v1\"", "w=100"));
        assert_ne!(a, variant_etag("\"v2\"", "w=100"));
        assert_ne!(a, variant_etag("\"v1\"", "w=200"));
        assert_ne!(body_etag(b"a"), body_etag(b"b"));
    }

    #[test]
    fn revalidation_asks_the_origin_about_its_own_tag() {
        let mut stored = http::HeaderMap::new();
        stored.insert(http::header::ETAG, "W/\"ours\"".parse().unwrap());
        stored.insert(SOURCE_ETAG, "\"origin\"".parse().unwrap());
        let mut req = RequestHeader::build("GET", b"/a.jpg", None).unwrap();
        req.insert_header("if-none-match", "W/\"ours\"").unwrap();
        revalidation_validators(&stored, &mut req);
        assert_eq!(req.headers["if-none-match"], "\"origin\"");

        stored.remove(SOURCE_ETAG);
        stored.insert(GENERATED_ETAG, "1".parse().unwrap());
        revalidation_validators(&stored, &mut req);
        assert!(!req.headers.contains_key("if-none-match"));
    }

    #[test]
    fn path_normalization() {
        for (raw, want) in [
            ("/img/x.jpg", "/img/x.jpg"),
            ("//img/x.jpg", "/img/x.jpg"),
            ("/img//x.jpg", "/img/x.jpg"),
            ("/img/./x.jpg", "/img/x.jpg"),
            ("/./img/x.jpg", "/img/x.jpg"),
            ("/img/", "/img/"),
            ("/img//", "/img/"),
            ("/img/.", "/img/"),
            ("/", "/"),
            ("//", "/"),
            ("/a.b/.c", "/a.b/.c"),
        ] {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Example.COM:80"), "example.com");
        assert_eq!(normalize_host("example.com:8080"), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
    }

    #[test]
    fn keys_ignore_query_order() {
        use pingora_cache::key::CacheHashKey;
        let a = key("h", "/p", Some("x=1&y=2"), "");
        let b = key("H:80", "/p", Some("y=2&x=1"), "");
        assert_eq!(a.combined_bin(), b.combined_bin());
        let c = key("h", "/p", Some("x=1"), "");
        assert_ne!(a.combined_bin(), c.combined_bin());
    }
}
