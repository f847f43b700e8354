//! The `usage` section: usage events published to a Redis Stream.

use super::check::{dur, Errors};
use super::defaults;
use super::raw::RawUsage;
use super::UsageSettings;

/// `usage`: a Redis URL that parses, a stream name, and batching that can work.
pub(super) fn validate_usage(u: RawUsage, errs: &mut Errors) -> UsageSettings {
    let redis_url = match u.redis_url {
        None => {
            errs.add(
                "usage.redis_url",
                "is required (e.g. \"redis://127.0.0.1:6379\")",
            );
            String::new()
        }
        Some(url) => {
            if let Err(e) = redis::Client::open(url.as_str()) {
                errs.add(
                    "usage.redis_url",
                    format!("{url:?} is not a Redis URL: {e}"),
                );
            }
            url
        }
    };
    let stream = u.stream.unwrap_or_else(|| defaults::USAGE_STREAM.into());
    if stream.is_empty() {
        errs.add("usage.stream", "must not be empty");
    }
    let maxlen = u.maxlen.unwrap_or(defaults::USAGE_MAXLEN);
    if maxlen == 0 {
        errs.add("usage.maxlen", "must be at least 1");
    }
    let batch_size = u.batch_size.unwrap_or(defaults::USAGE_BATCH_SIZE);
    if batch_size == 0 || batch_size > 10_000 {
        errs.add("usage.batch_size", "must be between 1 and 10000");
    }
    let buffer_size = u.buffer_size.unwrap_or(defaults::USAGE_BUFFER_SIZE);
    if buffer_size == 0 {
        errs.add("usage.buffer_size", "must be at least 1");
    }
    let flush_interval = dur(
        u.flush_interval,
        defaults::USAGE_FLUSH_INTERVAL,
        "usage.flush_interval".into(),
        errs,
    );
    if flush_interval.is_zero() {
        errs.add("usage.flush_interval", "must be more than 0");
    }
    let timeout = dur(
        u.timeout,
        defaults::USAGE_TIMEOUT,
        "usage.timeout".into(),
        errs,
    );
    if timeout.is_zero() {
        errs.add("usage.timeout", "must be more than 0");
    }
    UsageSettings {
        redis_url,
        stream,
        maxlen,
        batch_size,
        buffer_size,
        flush_interval,
        timeout,
    }
}
