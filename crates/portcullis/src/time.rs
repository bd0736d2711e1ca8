//! Durations and times as people write them in configuration files and on the command line
//! and the admin API: `90s`, `10m`, `2h`, `7d`; RFC 3339 or a date.

use std::time::Duration;

use chrono::{NaiveDate, SecondsFormat, Utc};

/// Parses `90s`, `10m`, `2h`, `90d` (a bare number is seconds).
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 90s, 10m or 2h"))?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("'{s}' is not a duration like 90s, 10m, 2h or 90d")),
    };
    let secs = n
        .checked_mul(unit)
        .ok_or_else(|| format!("'{s}' is longer than any duration this takes"))?;
    Ok(Duration::from_secs(secs))
}

#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("'{0}' reaches back before any time there is")]
    TooFarBack(String),
    #[error("'{0}' is not a time: give RFC 3339, a date (2026-11-29) or an age (24h, 7d)")]
    NotATime(String),
}

/// A time as the audit store compares them (RFC 3339, UTC, microseconds), from RFC 3339, a
/// date (`2026-11-29`), or an age before now (`90m`, `24h`, `7d`).
pub fn time_arg(s: &str) -> Result<String, TimeError> {
    let t = if let Ok(age) = duration(s) {
        chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .ok_or_else(|| TimeError::TooFarBack(s.to_owned()))?
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    } else {
        return Err(TimeError::NotATime(s.to_owned()));
    };
    Ok(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("90s").unwrap().as_secs(), 90);
        assert_eq!(duration("10m").unwrap().as_secs(), 600);
        assert_eq!(duration("2h").unwrap().as_secs(), 7200);
        assert_eq!(duration("30").unwrap().as_secs(), 30);
        assert!(duration("ten minutes").is_err());
        assert_eq!(duration("5d").unwrap().as_secs(), 5 * 86400);
        assert!(duration("5w").is_err());
        // Too long to count is an error, not an overflow.
        assert!(duration("999999999999999999d").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            time_arg("2026-11-29").unwrap(),
            "2026-11-29T00:00:00.000000Z"
        );
        assert_eq!(
            time_arg("2026-11-29T10:00:00+01:00").unwrap(),
            "2026-11-29T09:00:00.000000Z"
        );
        assert!(time_arg("24h").unwrap() < crate::audit_time());
        assert_eq!(
            time_arg("yesterday").unwrap_err().to_string(),
            "'yesterday' is not a time: give RFC 3339, a date (2026-11-29) or an age (24h, 7d)"
        );
        assert!(matches!(
            time_arg("999999999d"),
            Err(TimeError::TooFarBack(_))
        ));
    }
}
