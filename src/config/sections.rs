//! Reading one section of the file into its typed form (`raw.rs`), reporting every unknown key
//! and wrong type in it at once, in plain words, with "did you mean" for near misses.
//!
//! The known keys are the typed structs' own (serde's `deny_unknown_fields` names them in its
//! error), so there is no second table to keep in step: each problem serde reports is recorded,
//! the offending key taken out of a copy of the section, and the section read again, until it
//! reads or nothing more can be taken out. A section with any problem is then treated as absent
//! (its defaults, or a placeholder), so its problems cause no follow-on errors elsewhere.

use super::check::Errors;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

/// Bound on the problems read from one section (each costs a deserialization).
const MAX_PROBLEMS: usize = 50;

/// Deserializes one section, reporting its problems with their full paths; its defaults when
/// it has any.
pub(super) fn section<T: DeserializeOwned + Default>(
    v: Option<&Value>,
    path: &str,
    errs: &mut Errors,
) -> T {
    try_section(v, path, errs).unwrap_or_default()
}

/// Like [`section`], `None` when the section has a problem (already reported).
pub(super) fn try_section<T: DeserializeOwned + Default>(
    v: Option<&Value>,
    path: &str,
    errs: &mut Errors,
) -> Option<T> {
    let v = match v {
        None | Some(Value::Null) => return Some(T::default()),
        Some(v) => v,
    };
    let mut copy = v.clone();
    let mut problems = 0;
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(copy.clone()) {
            Ok(t) if problems == 0 => return Some(t),
            Ok(_) => return None,
            Err(e) => e,
        };
        problems += 1;
        let inner = e.path().to_string();
        let full = if inner == "." || inner.is_empty() {
            path.to_string()
        } else if inner.starts_with('[') {
            format!("{path}{inner}")
        } else {
            format!("{path}.{inner}")
        };
        errs.add(full, plain(&e.inner().to_string()));
        let segments: Vec<Segment> = e.path().iter().cloned().collect();
        if problems >= MAX_PROBLEMS || !remove_key(&mut copy, &segments) {
            return None;
        }
    }
}

/// Takes out of `v` the map entry nearest above the end of `path` (the key reported, or the
/// list holding a bad element); `false` when there is none to take out.
fn remove_key(v: &mut Value, path: &[Segment]) -> bool {
    let Some(last_key) = path.iter().rposition(|s| matches!(s, Segment::Map { .. })) else {
        return false;
    };
    let mut at = v;
    for s in &path[..last_key] {
        let next = match (s, at) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    match (&path[last_key], at) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// The closest of `known` to `name` when it is a near miss: the same name in another case, or
/// within Damerau-Levenshtein distance 2 (1 for names under 4 letters).
pub(super) fn did_you_mean<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::osa_distance(&lower, k), *k))
        .filter(|(d, k)| *d <= if k.len() >= 4 { 2 } else { 1 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The message for an unknown key, given the keys allowed where it stands.
pub(super) fn unknown_key(name: &str, known: &[&str]) -> String {
    match did_you_mean(name, known) {
        Some(k) => format!("unknown key (did you mean {k:?}?)"),
        None if known.is_empty() => "unknown key (this mapping takes no keys)".to_string(),
        None => format!("unknown key (expected one of {})", known.join(", ")),
    }
}

/// A serde message in plain words: unknown fields with "did you mean", wrong types as
/// "expected X, got Y" with X and Y as a YAML writer knows them.
fn plain(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (name, rest) = rest.split_once('`').unwrap_or((rest, ""));
        // "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`", "there are no fields"
        let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        return unknown_key(name, &known);
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, want)) = msg
            .strip_prefix(prefix)
            .and_then(|r| r.rsplit_once(", expected "))
        {
            return format!("expected {}, got {}", expected(want), got_value(got));
        }
    }
    if let Some(name) = msg.strip_prefix("data did not match any variant of untagged enum ") {
        return match name {
            "Quantity" => "expected a size or a duration (e.g. 256MiB, 10s)".to_string(),
            "RawTlsSetting" => "expected true, false or a mapping (sni, verify)".to_string(),
            _ => msg.to_string(),
        };
    }
    msg.to_string()
}

/// What serde's `expecting` text means in YAML terms.
fn expected(want: &str) -> String {
    match want {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" | "u64" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        "a map" => "a mapping (key: value)",
        w if w.starts_with("struct ") => "a mapping (key: value)",
        w if w.starts_with("a borrowed string") => "a string",
        w => w,
    }
    .to_string()
}

/// What serde's `Unexpected` text means in YAML terms.
fn got_value(got: &str) -> String {
    let tick = |s: &str| s.trim_matches('`').to_string();
    if let Some(s) = got.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for p in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = got.strip_prefix(p) {
            return tick(v);
        }
    }
    match got {
        "sequence" => "a list".to_string(),
        "map" => "a mapping".to_string(),
        "unit value" => "nothing (null)".to_string(),
        g => g.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words() {
        assert_eq!(
            plain("unknown field `memory_byte`, expected one of `memory_bytes`, `disk`"),
            r#"unknown key (did you mean "memory_bytes"?)"#
        );
        assert_eq!(
            plain("unknown field `size`, expected `path` or `bytes`"),
            "unknown key (expected one of path, bytes)"
        );
        assert_eq!(
            plain("invalid type: string \"many\", expected usize"),
            r#"expected a whole number (0 or more), got the string "many""#
        );
        assert_eq!(
            plain("invalid type: string \"a:1\", expected a sequence"),
            r#"expected a list, got the string "a:1""#
        );
        assert_eq!(
            plain("invalid value: integer `300`, expected u8"),
            "expected a whole number from 0 to 255, got 300"
        );
        assert_eq!(
            did_you_mean("upstream", &["listen", "upstreams"]),
            Some("upstreams")
        );
        assert_eq!(did_you_mean("CACHE", &["cache"]), Some("cache"));
        assert_eq!(did_you_mean("size", &["path", "bytes"]), None);
    }
}
