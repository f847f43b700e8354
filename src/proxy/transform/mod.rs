//! Image transforms applied to origin responses before they are cached: what the URL asks for
//! (`plan`), whether an origin response can be transformed (`inspect`), the bounded CPU pool
//! and memory budget (`reserve`, `run`), and a short memory of failures, so repeats are
//! answered up front: per source what is the source's fault, per variant what only that
//! variant hits (see [`Scope`]). The pixel work itself lives in `crate::image`
//! (`image::pipeline`), which knows nothing of the proxy. `response` makes a variant from an
//! origin response on a miss.

mod failure;
pub mod onerror;
pub mod path_form;
pub mod response;
mod sign;
pub mod svg;

pub use failure::{Failure, Scope};
pub use sign::{sign_url, sign_url_with, SignOptions};

use crate::config::TransformSettings;
use crate::image::animation;
use crate::image::decoded::DecodedCache;
use crate::image::error::{ParamError, PoolError, TransformError};
use crate::image::format::{
    negotiate, negotiate_allowed, source_format_from_content_type, FormatChoice, Negotiated,
    OutputFormat, SourceFormat,
};
use crate::image::hints::ClientHints;
use crate::image::params::{parse_query_hinted, Presets};
use crate::image::pipeline::{self, Output};
use crate::image::pool::{MemoryBudget, Permit, TransformPool};
use crate::image::spec::{Limits, TransformSpec};
use crate::image::svg::SvgMode;
use crate::metrics::METRICS;
use crate::signing::{SignatureError, Signed, Signer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most failures remembered at once (expired ones dropped first, then all).
const MAX_FAILURES: usize = 10_000;
/// Transform times remembered for cached variants (least recently used dropped first).
const MAX_DURATIONS: usize = 16_384;

/// Marks the cache key of a `width=auto` variant apart from the same width asked by number,
/// followed by the set of hint fields read: each set has its own `Vary`, so its own entry.
const AUTO_WIDTH: &str = ",w=auto:";

/// What one request asks for.
#[derive(Debug, Clone)]
pub struct Planned {
    pub spec: TransformSpec,
    pub negotiated: Negotiated,
    /// Canonical transform for the cache key (fixed order, aliases resolved, presets expanded,
    /// defaults dropped, the negotiated format only).
    pub canonical: String,
    /// Query forwarded to the origin: the non-transform parameters.
    pub forward_query: Option<String>,
    /// `format=auto`: the answer depends on `Accept`.
    pub vary_accept: bool,
    /// `sig=` from the URL.
    pub signature: Option<String>,
    /// What `format=auto` gives an animated source (`image::animation::auto_format`).
    pub anim_auto: OutputFormat,
}

impl Planned {
    /// The canonical transform naming the bytes produced, without the negotiation marker:
    /// `format=auto` that chose WebP makes the same image as `format=webp`.
    pub fn produced(&self) -> &str {
        let c = self
            .canonical
            .strip_suffix(",auto")
            .unwrap_or(&self.canonical);
        match c.rfind(AUTO_WIDTH) {
            Some(i) if self.spec.auto_width.is_some() => &c[..i],
            _ => c,
        }
    }
}

/// What to do with an origin response to a transform request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Transform into `out` (decided here, once); `declared` is the source format the
    /// `Content-Type` named, for [`Transformer::run`] to compare with what the bytes are.
    Transform {
        out: OutputFormat,
        declared: SourceFormat,
    },
    /// Not something we transform (non-2xx, not an image type we decode): pass it untouched.
    PassThrough,
    /// Refused from the header alone (declared too large): answer 422 with this reason.
    Refuse(String),
    /// An SVG served as a document: sanitized at the end of its body (`svg`).
    Sanitize,
}

/// Where a request's failures are remembered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureKeys {
    /// The origin resource: host, path, forwarded query.
    pub source: String,
    /// The source and the canonical transform made of it.
    pub variant: String,
}

impl FailureKeys {
    pub fn new(source_key: &str, planned: &Planned) -> FailureKeys {
        FailureKeys {
            source: format!("s\n{source_key}"),
            variant: format!("v\n{source_key}\n{}", planned.produced()),
        }
    }
}

struct Remembered {
    status: u16,
    reason: String,
    until: Instant,
}

pub struct Transformer {
    limits: Arc<Limits>,
    presets: Presets,
    pool: TransformPool,
    /// `transform.max_memory_bytes`: each job reserves its estimated peak before decoding.
    memory: MemoryBudget,
    /// `transform.decoded_cache_bytes`: decoded sources other variants may use.
    decoded: Arc<DecodedCache>,
    /// Output formats `format=auto` may choose.
    auto_formats: Vec<OutputFormat>,
    failure_ttl: Duration,
    /// Budget of one transform (`transform.timeout`).
    timeout: Duration,
    failures: Mutex<HashMap<String, Remembered>>,
    signer: Option<Signer>,
    /// Cache key -> milliseconds the transform that made the entry took (for `Server-Timing`).
    durations: Mutex<lru::LruCache<u64, f32>>,
    hasher: ahash::RandomState,
    /// `transform.svg`.
    svg: SvgMode,
}

impl Transformer {
    pub fn new(s: &TransformSettings) -> Self {
        let all = [
            OutputFormat::Avif,
            OutputFormat::Webp,
            OutputFormat::Jpeg,
            OutputFormat::Png,
        ];
        let auto_formats = all
            .into_iter()
            .filter(|f| s.limits.allows(*f) && (s.auto_avif || *f != OutputFormat::Avif))
            .collect();
        Transformer {
            limits: Arc::new(s.limits.clone()),
            presets: s.presets.clone(),
            pool: TransformPool::new(s.workers, s.queue),
            memory: MemoryBudget::new(s.max_memory_bytes),
            decoded: Arc::new(DecodedCache::new(s.decoded_cache_bytes)),
            auto_formats,
            failure_ttl: s.failure_ttl,
            timeout: s.timeout,
            failures: Mutex::new(HashMap::new()),
            signer: s.signing.clone().map(Signer::new),
            durations: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_DURATIONS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            hasher: ahash::RandomState::new(),
            svg: s.svg,
        }
    }

    /// Remembers how long the transform stored under this cache key took.
    pub fn record_duration(&self, cache_key: &[u8], ms: f64) {
        let h = self.hasher.hash_one(cache_key);
        self.durations.lock().put(h, ms as f32);
    }

    /// How long the transform of the entry under this cache key took, when this process made it.
    pub fn recorded_duration(&self, cache_key: &[u8]) -> Option<f64> {
        let h = self.hasher.hash_one(cache_key);
        self.durations.lock().get(&h).map(|ms| *ms as f64)
    }

    /// Parses the query; `Ok(None)` when it has no transform parameter (pass-through).
    pub fn plan(
        &self,
        query: Option<&str>,
        accept: Option<&str>,
    ) -> Result<Option<Planned>, ParamError> {
        self.plan_hinted(query, accept, &ClientHints::default())
    }

    /// [`Transformer::plan`] with the request's client hints (`width=auto`).
    pub fn plan_hinted(
        &self,
        query: Option<&str>,
        accept: Option<&str>,
        hints: &ClientHints,
    ) -> Result<Option<Planned>, ParamError> {
        let parsed = parse_query_hinted(query, &self.limits, &self.presets, hints)?;
        let Some(spec) = parsed.transform else {
            return Ok(None);
        };
        // compression=fast: never the slowest encoder (AVIF) for format=auto
        let fast: Vec<OutputFormat>;
        let candidates = if spec.fast {
            fast = self
                .auto_formats
                .iter()
                .copied()
                .filter(|f| *f != OutputFormat::Avif)
                .collect();
            &fast
        } else {
            &self.auto_formats
        };
        let negotiated = negotiate_allowed(spec.format, accept, candidates);
        let webp = Negotiated::Format(OutputFormat::Webp);
        let anim_auto = animation::auto_format(
            self.limits.allows(OutputFormat::Webp)
                && negotiate(FormatChoice::Auto, accept, false) == webp,
        );
        let mut canonical = spec.canonical(negotiated.format());
        if let Some(used) = spec.auto_width {
            canonical.push_str(&format!("{AUTO_WIDTH}{}", used.bits()));
        }
        let avif = Negotiated::Format(OutputFormat::Avif);
        if spec.format == FormatChoice::Auto
            && negotiated == avif
            && anim_auto != OutputFormat::Webp
        {
            // AVIF for a still, GIF (not WebP) for an animation: an entry apart
            canonical.push_str(",a=gif");
        }
        if spec.format == FormatChoice::Auto {
            // Same bytes as the fixed format, but stored with `Vary: Accept`: its own entry.
            canonical.push_str(",auto");
        }
        let forward_query = match self.signer {
            // `exp=` belongs to the signature: neither the origin's nor the cache key's.
            Some(_) => crate::signing::without_expiry(parsed.forward_query),
            None => parsed.forward_query,
        };
        Ok(Some(Planned {
            canonical,
            vary_accept: spec.format == FormatChoice::Auto,
            negotiated,
            spec,
            forward_query,
            signature: parsed.signature,
            anim_auto,
        }))
    }

    /// Checks the URL's signature (and expiry) when signing is configured: `host`, `path` and
    /// `query` are the client's, as sent.
    pub fn verify_signature(
        &self,
        host: &str,
        path: &str,
        query: Option<&str>,
        planned: &Planned,
    ) -> Result<(), SignatureError> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        let signed = Signed {
            host,
            path,
            query: query.unwrap_or(""),
            canonical: &planned.spec.signed_form(),
        };
        signer.verify(
            &signed,
            planned.signature.as_deref(),
            crate::signing::unix_now(),
        )
    }

    /// Decides from the origin's response header alone.
    pub fn inspect(
        &self,
        planned: &Planned,
        status: u16,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        content_length: Option<u64>,
    ) -> Verdict {
        let declared = match self.source_of(status, content_type, content_encoding) {
            Ok(d) => d,
            Err(v) => return v,
        };
        if let Some(refused) = self.declared_too_large(content_length) {
            return refused;
        }
        if declared == SourceFormat::Svg && !svg::rasterizes(&planned.spec) {
            return self.svg_document();
        }
        // The one place the output format is decided: "same as source" is the declared type's;
        // a GIF or WebP source may be animated: a format that keeps it so (`image::animation`).
        let still = planned.negotiated.resolve(declared);
        let mut out = animation::output_format(&planned.spec, declared, still, planned.anim_auto);
        if !self.limits.allows(out) {
            // Not allowed: the still's format, else the first allowed one.
            let first = self.limits.allowed_formats.first().copied();
            out = Some(still)
                .filter(|f| self.limits.allows(*f))
                .or(first)
                .unwrap_or(out);
        }
        Verdict::Transform { out, declared }
    }

    /// The source format a response declares, when it is one we handle: else the verdict
    /// (pass it, or refuse a compressed SVG that must be sanitized).
    fn source_of(
        &self,
        status: u16,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<SourceFormat, Verdict> {
        if !(status == 200 || status == 203) {
            return Err(Verdict::PassThrough);
        }
        let declared = content_type.and_then(source_format_from_content_type);
        if content_encoding.is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return Err(match declared {
                Some(SourceFormat::Svg) if self.svg == SvgMode::Sanitize => {
                    Verdict::Refuse(svg::ENCODED.to_string())
                }
                _ => Verdict::PassThrough,
            });
        }
        declared.ok_or(Verdict::PassThrough)
    }

    fn declared_too_large(&self, content_length: Option<u64>) -> Option<Verdict> {
        let len = content_length.filter(|l| *l > self.limits.max_source_bytes)?;
        let e = TransformError::TooLarge {
            bytes: len,
            max: self.limits.max_source_bytes,
        };
        Some(Verdict::Refuse(e.to_string()))
    }

    pub fn max_source_bytes(&self) -> u64 {
        self.limits.max_source_bytes
    }

    /// A pool slot, or `None` when workers and queue are all taken (answer 503).
    pub fn reserve(&self) -> Option<Permit> {
        self.pool.try_reserve()
    }

    /// Runs the transform into `out` on the pool and waits for it, within `transform.timeout`:
    /// the header is read and the limits checked here (nothing decoded), the job's estimated
    /// peak is reserved from the memory budget (waiting for running jobs if need be), then the
    /// job is queued. Called from a synchronous body filter: `block_in_place` lets the runtime
    /// move this worker's other tasks elsewhere meanwhile. `declared` is the source format the
    /// `Content-Type` named (see [`Verdict`]): a source whose bytes are of another format is
    /// transformed all the same, and logged.
    pub fn run(
        &self,
        permit: Permit,
        source: Vec<u8>,
        spec: &TransformSpec,
        out: OutputFormat,
        declared: SourceFormat,
    ) -> Result<Output, Failure> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let output = if multi_thread {
            tokio::task::block_in_place(|| self.run_blocking(permit, source, spec, out))
        } else {
            self.run_blocking(permit, source, spec, out)
        }?;
        if output.source != declared {
            log::info!(
                "transform source declared {} by its Content-Type is {}",
                declared.as_str(),
                output.source.as_str()
            );
        }
        Ok(output)
    }

    /// `format=json`: the document `image::info` makes from the header (the pool slot is
    /// given back at once: nothing is decoded).
    pub fn describe(
        &self,
        permit: Permit,
        source: &[u8],
        spec: &TransformSpec,
    ) -> Result<Vec<u8>, Failure> {
        drop(permit);
        // An SVG is described as it would be served: sanitized (or refused).
        let clean = self.sanitized_if_svg(source)?;
        let source = clean.as_deref().unwrap_or(source);
        Ok(crate::image::info::describe(source, spec, &self.limits)?)
    }

    fn run_blocking(
        &self,
        permit: Permit,
        source: Vec<u8>,
        spec: &TransformSpec,
        out: OutputFormat,
    ) -> Result<Output, Failure> {
        let started = Instant::now();
        let source = self.sanitized_if_svg(&source)?.unwrap_or(source);
        let prepared = pipeline::prepare(&source, spec, out, &self.limits)?;
        let grant = self.memory.reserve(prepared.peak_bytes(), self.timeout)?;
        if grant.waited {
            METRICS.transform_memory_waits.inc();
        }
        let limits = Arc::clone(&self.limits);
        let decoded = Arc::clone(&self.decoded);
        let spec = spec.clone();
        let job = move || {
            // The reservation lasts as long as the job, even past its waiter's timeout.
            let _grant = grant;
            prepared.run_with(&source, &spec, &limits, Some(&decoded))
        };
        let left = self.timeout.saturating_sub(started.elapsed());
        // Errors name the configured timeout, not what was left of it after the memory wait.
        let named = |e| match e {
            PoolError::TimedOut(_) => PoolError::TimedOut(self.timeout),
            PoolError::Expired(_) => PoolError::Expired(self.timeout),
            e => e,
        };
        let output = self
            .pool
            .run_blocking_timeout(permit, job, left)
            .map_err(named)??;
        if self.decoded.enabled() {
            let counter = match output.reused_decode {
                true => &METRICS.decoded_cache_hits,
                false => &METRICS.decoded_cache_misses,
            };
            counter.inc();
        }
        Ok(output)
    }

    /// Bytes the decoded-source cache holds now.
    pub fn decoded_cache_bytes(&self) -> u64 {
        self.decoded.bytes()
    }

    /// Remembers a failure for `failure_ttl`, under the key its scope names.
    pub fn remember(&self, keys: &FailureKeys, failure: &Failure) {
        let key = match failure.scope() {
            Scope::Source => &keys.source,
            Scope::Variant => &keys.variant,
            Scope::None => return,
        };
        self.remember_failure(key, failure.status(), &failure.to_string());
    }

    /// A failure of the source or of this variant seen within `failure_ttl`.
    pub fn recent_failure_of(&self, keys: &FailureKeys) -> Option<(u16, String)> {
        self.recent_failure(&keys.source)
            .or_else(|| self.recent_failure(&keys.variant))
    }

    pub fn remember_failure(&self, key: &str, status: u16, reason: &str) {
        let mut f = self.failures.lock();
        let now = Instant::now();
        if f.len() >= MAX_FAILURES {
            f.retain(|_, r| r.until > now);
            if f.len() >= MAX_FAILURES {
                f.clear();
            }
        }
        f.insert(
            key.to_string(),
            Remembered {
                status,
                reason: reason.to_string(),
                until: now + self.failure_ttl,
            },
        );
    }

    /// A failure remembered under `key` within `failure_ttl`: `(status, reason)`.
    pub fn recent_failure(&self, key: &str) -> Option<(u16, String)> {
        let mut f = self.failures.lock();
        match f.get(key) {
            Some(r) if r.until > Instant::now() => Some((r.status, r.reason.clone())),
            Some(_) => {
                f.remove(key);
                None
            }
            None => None,
        }
    }

    /// Bytes reserved by transforms in flight (`transform.max_memory_bytes`).
    pub fn memory_reserved(&self) -> u64 {
        self.memory.reserved()
    }

    /// Transforms waiting for memory.
    pub fn memory_waiting(&self) -> usize {
        self.memory.waiting()
    }

    pub fn queue_depth(&self) -> usize {
        self.pool.queue_depth()
    }

    pub fn in_flight(&self) -> usize {
        self.pool.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{defaults, TransformSettings};

    fn t() -> Transformer {
        Transformer::new(&TransformSettings {
            limits: Limits {
                max_source_bytes: 1000,
                ..Limits::default()
            },
            presets: Presets::new(),
            workers: 1,
            queue: 1,
            max_memory_bytes: defaults::TRANSFORM_MAX_MEMORY_BYTES,
            decoded_cache_bytes: 0,
            auto_avif: false,
            failure_ttl: defaults::TRANSFORM_FAILURE_TTL,
            timeout: defaults::TRANSFORM_TIMEOUT,
            signing: None,
            unknown_params: crate::config::UnknownParams::Warn,
            remote_sources: Vec::new(),
            svg: defaults::TRANSFORM_SVG,
        })
    }

    #[test]
    fn plan_and_canonical() {
        let t = t();
        assert!(t.plan(Some("a=1"), None).unwrap().is_none());
        let a = t.plan(Some("w=400&a=1"), None).unwrap().unwrap();
        let b = t.plan(Some("a=1&width=400"), None).unwrap().unwrap();
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.forward_query.as_deref(), Some("a=1"));
        assert!(t.plan(Some("width=-3"), None).is_err());
        // auto_avif off: AVIF is never chosen by auto.
        let p = t
            .plan(Some("w=10&format=auto"), Some("image/avif,image/webp"))
            .unwrap()
            .unwrap();
        assert_eq!(p.negotiated, Negotiated::Format(OutputFormat::Webp));
        assert!(p.vary_accept);
    }

    #[test]
    fn inspect_decides_from_the_header() {
        let t = t();
        let p = t.plan(Some("w=10"), None).unwrap().unwrap();
        let jpeg = Some("image/jpeg");
        assert_eq!(
            t.inspect(&p, 200, jpeg, None, Some(10)),
            Verdict::Transform {
                out: OutputFormat::Jpeg,
                declared: SourceFormat::Jpeg
            }
        );
        assert_eq!(t.inspect(&p, 404, jpeg, None, None), Verdict::PassThrough);
        assert_eq!(
            t.inspect(&p, 200, Some("text/html"), None, None),
            Verdict::PassThrough
        );
        assert_eq!(
            t.inspect(&p, 200, jpeg, Some("gzip"), None),
            Verdict::PassThrough
        );
        assert!(matches!(
            t.inspect(&p, 200, jpeg, None, Some(5000)),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn failures_are_remembered_briefly() {
        let t = t();
        assert!(t.recent_failure("k").is_none());
        t.remember_failure("k", 422, "corrupt");
        assert_eq!(t.recent_failure("k"), Some((422, "corrupt".to_string())));
    }
}
