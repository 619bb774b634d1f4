//! One grammar per unit: durations, byte sizes and times as every flag,
//! config field and API parameter of skopos takes them.
//!
//! - Durations follow Prometheus' `model.ParseDuration`: one or more
//!   `<integer><unit>` terms, units `y w d h m s ms` each at most once and
//!   largest first (`1h30m`, `5m`, `1d`, `1w`, `1y`, `500ms`), or `0`.
//!   `1min`, `2months`, `1.5h` and `-5m` are errors, as in Prometheus.
//!   [`parse_duration_param`] adds what Prometheus' HTTP API also takes there:
//!   a number of (fractional) seconds.
//! - Sizes follow Prometheus' `units.Base2Bytes` (what `retention.size`
//!   takes): an integer and a unit among `B KB MB GB TB PB EB` or
//!   `KiB MiB GiB TiB PiB EiB`, all powers of 1024, or a bare number of
//!   bytes. Units are case-sensitive as in Prometheus: `512mb` is an error
//!   that names the accepted units.
//! - Times are RFC 3339 through `jiff`, to the nanosecond. Civil dates of
//!   arbitrary 64-bit Unix seconds (PromQL's `day_of_month()` and friends,
//!   which Go computes over the whole `int64` range, far past the years 1 to
//!   9999 that `jiff` covers) come from [`civil_from_unix`].
//!
//! Deliberately absent: the query languages' own literals (LogQL label
//! values are Go `time.ParseDuration` and go-humanize sizes; they live with
//! the language in `skopos-logql`).

use std::fmt;
use std::time::Duration;

/// What was wrong with a duration, size or time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "not a valid duration string: {0:?} (expected e.g. 15s, 5m, 1h30m, 1d, 1w, 1y, 500ms or 0)"
    )]
    Duration(String),
    #[error("duration {0:?} is out of range")]
    DurationRange(String),
    #[error("invalid size {0:?} (expected a number of bytes or e.g. 512KB, 64MiB, 10GB; units are powers of 1024 and case-sensitive: B, KB, MB, GB, TB, PB, EB, KiB … EiB)")]
    Size(String),
    #[error("size {0:?} is out of range")]
    SizeRange(String),
    #[error("invalid RFC 3339 time {input:?}: {reason}")]
    Time { input: String, reason: String },
}

const MS_PER: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus duration (`1h30m`, `5m`, `1d`, `1w`, `1y`, `500ms`,
/// `0`). Surrounding blanks are ignored.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let bad = || UnitError::Duration(s.to_string());
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t.as_bytes();
    let mut next_unit = 0; // index into MS_PER of the smallest unit still allowed
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        // ASCII digits only, so the slice is valid UTF-8 and parses unless it overflows.
        let n: u64 = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| UnitError::DurationRange(s.to_string()))?;
        rest = &rest[digits..];
        // `ms` before `m`: the longer unit wins where both match.
        let unit = MS_PER
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u.as_bytes()))
            .max_by_key(|(_, (u, _))| u.len())
            .ok_or_else(bad)?;
        let (idx, (name, mult)) = unit;
        next_unit = idx + 1;
        rest = &rest[name.len()..];
        total = n
            .checked_mul(*mult)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= i64::MAX as u64)
            .ok_or_else(|| UnitError::DurationRange(s.to_string()))?;
    }
    Ok(Duration::from_millis(total))
}

/// A duration API parameter as Prometheus' HTTP API reads one (`step`,
/// `timeout`, `lookback_delta`): (fractional) seconds or a duration string.
/// Returns milliseconds; negative seconds stay negative so the caller can
/// refuse them with its own message.
pub fn parse_duration_param(s: &str) -> Result<i64, UnitError> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() >= i64::MAX as f64 {
            return Err(UnitError::DurationRange(s.to_string()));
        }
        return Ok(ms as i64);
    }
    parse_duration(s).map(|d| d.as_millis() as i64)
}

/// Formats milliseconds as Prometheus' `model.Duration` prints itself:
/// `0s`, `500ms`, `15s`, `1h30m`, `1d`, `2w`, `1y` (years and weeks only
/// when they divide exactly, so 90 days is `90d`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis().min(u64::MAX as u128) as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (i, (unit, mult)) in MS_PER.iter().enumerate() {
        let exact_only = i < 2;
        if exact_only && !ms.is_multiple_of(*mult) {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&v.to_string());
            out.push_str(unit);
            ms -= v * mult;
        }
    }
    out
}

/// Parses a byte size (`512MB`, `64MiB`, `1GB`, `100KB`, `4096`); see the
/// crate doc for the rules.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(UnitError::Size(s.to_string()));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| UnitError::SizeRange(s.to_string()))?;
    let shift = match &t[digits..] {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        "PB" | "PiB" => 50,
        "EB" | "EiB" => 60,
        _ => return Err(UnitError::Size(s.to_string())),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| UnitError::SizeRange(s.to_string()))
}

/// Formats a byte count in the largest unit that divides it (`512MiB`,
/// `1GiB`, `1000B`), which [`parse_size`] reads back to the same number.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["EiB", "PiB", "TiB", "GiB", "MiB", "KiB"];
    for (i, unit) in UNITS.iter().enumerate() {
        let shift = 60 - 10 * i as u32;
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// The wall clock as Unix nanoseconds (0 before 1970, `i64::MAX` after
/// 2262).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// The wall clock as Unix milliseconds.
pub fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

/// Parses an RFC 3339 time (`2024-01-02T03:04:05.678Z`,
/// `2024-01-02T03:04:05+01:00`; `t`/`z` in lower case too) to Unix
/// nanoseconds. A time zone offset is required.
pub fn parse_rfc3339(s: &str) -> Result<i64, UnitError> {
    let ts = timestamp(s)?;
    i64::try_from(ts.as_nanosecond()).map_err(|_| UnitError::Time {
        input: s.to_string(),
        reason: "outside the years 1678 to 2262 that nanoseconds reach".into(),
    })
}

/// Parses an RFC 3339 time to Unix milliseconds (the years 1 to 9999).
pub fn parse_rfc3339_millis(s: &str) -> Result<i64, UnitError> {
    timestamp(s).map(|ts| ts.as_millisecond())
}

/// A time as log lines carry one: RFC 3339, or the same without an offset
/// (taken as UTC), with `T` or a space between date and time. Unix
/// nanoseconds.
pub fn parse_log_time(s: &str) -> Result<i64, UnitError> {
    parse_rfc3339(s).or_else(|first| {
        let dt: jiff::civil::DateTime = s.trim().parse().map_err(|_| first.clone())?;
        let ts = dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|_| first.clone())?
            .timestamp();
        i64::try_from(ts.as_nanosecond()).map_err(|_| first)
    })
}

fn timestamp(s: &str) -> Result<jiff::Timestamp, UnitError> {
    s.trim().parse().map_err(|e: jiff::Error| UnitError::Time {
        input: s.to_string(),
        reason: e.to_string(),
    })
}

/// How many fractional digits [`format_rfc3339`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
    /// Go's `RFC3339Nano`: up to nine digits, trailing zeros removed.
    Nanos,
}

/// Formats Unix nanoseconds as RFC 3339 in UTC (`2024-01-02T03:04:05Z`).
pub fn format_rfc3339(nanos: i64, precision: Precision) -> String {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .expect("every i64 of nanoseconds is within jiff's range");
    RfcDisplay { ts, precision }.to_string()
}

struct RfcDisplay {
    ts: jiff::Timestamp,
    precision: Precision,
}

impl fmt::Display for RfcDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
        let ns = dt.subsec_nanosecond();
        match self.precision {
            Precision::Seconds => {}
            Precision::Millis => write!(f, ".{:03}", ns / 1_000_000)?,
            Precision::Nanos if ns != 0 => {
                let digits = format!("{ns:09}");
                write!(f, ".{}", digits.trim_end_matches('0'))?;
            }
            Precision::Nanos => {}
        }
        f.write_str("Z")
    }
}

/// The civil date and time (UTC) of a Unix time in seconds, for any `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    /// 1 to 366.
    pub day_of_year: u32,
    pub days_in_month: u32,
}

/// Proleptic Gregorian calendar over the whole `i64` range of seconds (Go's
/// `time.Unix(secs, 0).UTC()`); `jiff` stops at the year 9999.
pub fn civil_from_unix(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Days since 0000-03-01 in 400-year eras (Hinnant's algorithm), in i128
    // so the far ends of the i64 range do not overflow.
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_march + 2) / 153;
    let day = (doy_march - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i128::from(month <= 2)) as i64;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let day_of_year = cumulative[month as usize - 1] + day + u32::from(leap && month > 2);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    Civil {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: (sod / 60 % 60) as u32,
        second: (sod % 60) as u32,
        weekday: (i128::from(days) + 4).rem_euclid(7) as u32,
        day_of_year,
        days_in_month,
    }
}

#[cfg(test)]
mod tests;
