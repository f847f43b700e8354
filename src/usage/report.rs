//! `imgedge usage`: reads the usage stream through a consumer group and adds it up.
//!
//! Consumer-group semantics (documented in the README):
//! - the group (default `imgedge-usage`) is created when missing, starting at the `--since`
//!   time, so a first run reports the last `--since` and not the whole stream;
//! - each run first re-reads the entries this consumer was given but never acknowledged (a run
//!   that died), then the entries no consumer of the group has had yet (`>`): several readers
//!   with different `--consumer` names split the stream between them, and a reader resumes
//!   where the group stopped;
//! - entries older than `--since` (by their `ts` field) are acknowledged and skipped;
//! - entries are acknowledged (`XACK`) only after the report is printed, so a run that dies
//!   half way leaves them pending for its next run.

use super::UsageError;
use redis::Value;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Org,
    Route,
    Key,
}

impl GroupBy {
    fn field(self) -> &'static str {
        match self {
            GroupBy::Org => "org",
            GroupBy::Route => "route",
            GroupBy::Key => "key",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub redis_url: String,
    pub stream: String,
    pub group: String,
    pub consumer: String,
    pub since: Duration,
    pub by: Option<GroupBy>,
    /// Entries per XREADGROUP.
    pub count: usize,
    pub timeout: Duration,
}

/// Totals of a set of events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub bytes: u64,
    /// Transforms that ran (cache misses of transformed URLs).
    pub transforms: u64,
    pub transform_ms: f64,
    /// Responses served from the cache (HIT, STALE, UPDATING, REVALIDATED).
    pub hits: u64,
    /// Cacheable requests that went to the origin (MISS, EXPIRED).
    pub misses: u64,
    /// hits / (hits + misses); `None` without cacheable requests.
    pub hit_ratio: Option<f64>,
}

impl Totals {
    fn add(&mut self, e: &BTreeMap<String, String>) {
        let num = |k: &str| e.get(k).and_then(|v| v.parse::<f64>().ok());
        self.requests += 1;
        self.bytes += num("bytes").unwrap_or(0.0) as u64;
        if let Some(ms) = num("transform_ms") {
            self.transforms += 1;
            self.transform_ms += ms;
        }
        match e.get("cache").map(String::as_str) {
            Some("HIT" | "STALE" | "UPDATING" | "REVALIDATED") => self.hits += 1,
            Some("MISS" | "EXPIRED") => self.misses += 1,
            _ => {}
        }
        let looked_up = self.hits + self.misses;
        self.hit_ratio = (looked_up > 0).then(|| self.hits as f64 / looked_up as f64);
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub stream: String,
    pub group: String,
    pub consumer: String,
    /// Entries older than this (Unix ms) were skipped.
    pub since_ms: u64,
    pub by: Option<&'static str>,
    pub total: Totals,
    pub groups: BTreeMap<String, Totals>,
    /// Entries read (counted + skipped).
    pub read: u64,
    /// Entries older than `--since`, acknowledged and not counted.
    pub skipped: u64,
    /// Entries without a readable `ts` (not written by imgedge), acknowledged and not counted.
    pub malformed: u64,
    #[serde(skip)]
    ids: Vec<String>,
}

type Entry = (String, BTreeMap<String, String>);

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Entries of an XREADGROUP reply for one stream (nil or empty: none).
fn entries(reply: Value) -> Vec<Entry> {
    let streams = match reply {
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for s in streams {
        let Value::Array(mut pair) = s else { continue };
        let Some(Value::Array(items)) = pair.pop() else {
            continue;
        };
        for item in items {
            let Value::Array(mut idf) = item else {
                continue;
            };
            if idf.len() != 2 {
                continue;
            }
            let fields = idf.pop();
            let Some(id) = idf.pop().as_ref().and_then(text) else {
                continue;
            };
            let mut map = BTreeMap::new();
            // A pending entry deleted by MAXLEN comes back with nil fields.
            if let Some(Value::Array(kv)) = fields {
                for c in kv.chunks(2) {
                    if let [k, v] = c {
                        if let (Some(k), Some(v)) = (text(k), text(v)) {
                            map.insert(k, v);
                        }
                    }
                }
            }
            out.push((id, map));
        }
    }
    out
}

/// Reads what the group has for this consumer, adds it up; call [`Report::ack`] once printed.
pub fn read(opts: &Options, now_ms: u64) -> Result<(Report, redis::Connection), UsageError> {
    let client = redis::Client::open(opts.redis_url.as_str())?;
    let mut conn = client.get_connection_with_timeout(opts.timeout)?;
    conn.set_read_timeout(Some(opts.timeout))?;
    conn.set_write_timeout(Some(opts.timeout))?;
    let since_ms = now_ms.saturating_sub(opts.since.as_millis() as u64);
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&opts.stream)
        .arg(&opts.group)
        .arg(format!("{since_ms}-0"))
        .arg("MKSTREAM")
        .query(&mut conn);
    match created {
        Ok(()) => {}
        Err(e) if e.code() == Some("BUSYGROUP") => {}
        Err(e) => return Err(e.into()),
    }
    let mut report = Report {
        stream: opts.stream.clone(),
        group: opts.group.clone(),
        consumer: opts.consumer.clone(),
        since_ms,
        by: opts.by.map(GroupBy::field),
        ..Default::default()
    };
    // Pending entries of this consumer first (from a run that did not finish), then new ones.
    let mut cursor = "0".to_string();
    let mut pending = true;
    loop {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&opts.group)
            .arg(&opts.consumer)
            .arg("COUNT")
            .arg(opts.count.max(1))
            .arg("STREAMS")
            .arg(&opts.stream)
            .arg(if pending { cursor.as_str() } else { ">" })
            .query(&mut conn)?;
        let batch = entries(reply);
        if batch.is_empty() {
            if pending {
                pending = false;
                continue;
            }
            break;
        }
        if let Some((last, _)) = batch.last() {
            cursor = last.clone();
        }
        for (id, fields) in batch {
            report.take(&id, &fields, opts.by);
            report.ids.push(id);
        }
    }
    Ok((report, conn))
}

impl Report {
    fn take(&mut self, _id: &str, e: &BTreeMap<String, String>, by: Option<GroupBy>) {
        self.read += 1;
        let Some(ts) = e.get("ts").and_then(|t| t.parse::<u64>().ok()) else {
            self.malformed += 1;
            return;
        };
        if ts < self.since_ms {
            self.skipped += 1;
            return;
        }
        self.total.add(e);
        if let Some(by) = by {
            let name = e.get(by.field()).cloned().unwrap_or_else(|| "-".into());
            self.groups.entry(name).or_default().add(e);
        }
    }

    /// Acknowledges every entry read, so the group does not hand them out again.
    pub fn ack(&self, conn: &mut redis::Connection) -> Result<u64, UsageError> {
        let mut acked = 0u64;
        for chunk in self.ids.chunks(1000) {
            let n: u64 = redis::cmd("XACK")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(chunk)
                .query(conn)?;
            acked += n;
        }
        Ok(acked)
    }

    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let since = std::time::UNIX_EPOCH + Duration::from_millis(self.since_ms);
        out.push_str(&format!(
            "usage from stream {} (group {}, consumer {}), events since {}\n",
            self.stream,
            self.group,
            self.consumer,
            httpdate::fmt_http_date(since)
        ));
        let first = self.by.unwrap_or("");
        out.push_str(&format!(
            "{first:<24} {:>10} {:>14} {:>10} {:>9}\n",
            "requests", "bytes", "transforms", "hit_ratio"
        ));
        let line = |name: &str, t: &Totals| {
            let ratio = t
                .hit_ratio
                .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0));
            format!(
                "{name:<24} {:>10} {:>14} {:>10} {ratio:>9}\n",
                t.requests, t.bytes, t.transforms
            )
        };
        for (name, t) in &self.groups {
            out.push_str(&line(name, t));
        }
        out.push_str(&line("total", &self.total));
        out.push_str(&format!(
            "{} entries read, {} older than --since skipped",
            self.read, self.skipped
        ));
        if self.malformed > 0 {
            out.push_str(&format!(", {} without a ts field skipped", self.malformed));
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(org: &str, cache: &str, bytes: u64, tms: &str, ts: u64) -> BTreeMap<String, String> {
        [
            ("org", org.to_string()),
            ("cache", cache.to_string()),
            ("bytes", bytes.to_string()),
            ("transform_ms", tms.to_string()),
            ("ts", ts.to_string()),
            ("route", "/".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn totals_group_and_skip_old_entries() {
        let mut r = Report {
            since_ms: 100,
            by: Some("org"),
            ..Default::default()
        };
        r.take(
            "1-0",
            &ev("acme", "MISS", 10, "5.5", 150),
            Some(GroupBy::Org),
        );
        r.take("2-0", &ev("acme", "HIT", 10, "-", 160), Some(GroupBy::Org));
        r.take("3-0", &ev("-", "BYPASS", 7, "-", 170), Some(GroupBy::Org));
        r.take("4-0", &ev("acme", "HIT", 99, "-", 50), Some(GroupBy::Org));
        r.take("5-0", &BTreeMap::new(), Some(GroupBy::Org));
        assert_eq!(r.read, 5);
        assert_eq!(r.skipped, 1);
        assert_eq!(r.malformed, 1);
        assert_eq!(r.total.requests, 3);
        assert_eq!(r.total.bytes, 27);
        assert_eq!(r.total.transforms, 1);
        assert_eq!(r.total.hit_ratio, Some(0.5));
        let acme = &r.groups["acme"];
        assert_eq!((acme.requests, acme.hits, acme.misses), (2, 1, 1));
        assert_eq!(r.groups["-"].hit_ratio, None);
        assert!(r.render().contains("acme"));
    }
}
