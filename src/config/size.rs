//! Human-friendly sizes ("256MiB") and durations ("500ms", "10s") used in the YAML file.

use serde::Deserialize;
use std::time::Duration;

/// A size or duration as written in YAML: a bare integer or a string with a unit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Quantity {
    Int(u64),
    Text(String),
}

/// Parses `1024`, `"64KiB"`, `"256MiB"`, `"2GiB"`, `"10MB"` (SI) into bytes.
pub fn parse_size(q: &Quantity) -> Result<u64, String> {
    let s = match q {
        Quantity::Int(n) => return Ok(*n),
        Quantity::Text(s) => s.trim(),
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use an integer or e.g. \"256MiB\")"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{s:?} has an unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `30` (seconds), `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"` into a duration.
pub fn parse_duration(q: &Quantity) -> Result<Duration, String> {
    let s = match q {
        Quantity::Int(n) => return Ok(Duration::from_secs(*n)),
        Quantity::Text(s) => s.trim(),
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration (use seconds or e.g. \"500ms\", \"10s\", \"5m\")")
    })?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        other => {
            return Err(format!(
                "{s:?} has an unknown unit {other:?} (use ms, s, m, h, d)"
            ))
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Quantity {
        Quantity::Text(s.to_string())
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&Quantity::Int(42)), Ok(42));
        assert_eq!(parse_size(&t("256MiB")), Ok(256 << 20));
        assert_eq!(parse_size(&t("64KiB")), Ok(64 << 10));
        assert_eq!(parse_size(&t("2GiB")), Ok(2 << 30));
        assert_eq!(parse_size(&t("10MB")), Ok(10_000_000));
        assert!(parse_size(&t("lots")).is_err());
        assert!(parse_size(&t("5XB")).is_err());
        assert!(parse_size(&t("99999999999TiB")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration(&Quantity::Int(3)),
            Ok(Duration::from_secs(3))
        );
        assert_eq!(parse_duration(&t("250ms")), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(&t("5m")), Ok(Duration::from_secs(300)));
        assert!(parse_duration(&t("soon")).is_err());
        assert!(parse_duration(&t("5y")).is_err());
    }
}
