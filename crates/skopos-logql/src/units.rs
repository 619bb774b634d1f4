//! Durations, byte sizes and numbers as Loki reads them: label values go
//! through Go's `time.ParseDuration`, go-humanize's `ParseBytes` and
//! `strconv.ParseFloat`, and the error texts (which end up in
//! `__error_details__`) are theirs.

const NS: f64 = 1.0;
const US: f64 = 1e3;
const MS: f64 = 1e6;
const SEC: f64 = 1e9;
const MIN: f64 = 60.0 * SEC;
const HOUR: f64 = 60.0 * MIN;
const DAY: f64 = 24.0 * HOUR;

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`.
/// Returns nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    parse_duration_with(s, false)
}

/// A duration literal of the query language: Go's units plus Prometheus'
/// `d`, `w` and `y` (Loki's lexer accepts both).
pub fn parse_query_duration(s: &str) -> Result<i64, String> {
    parse_duration_with(s, true)
}

fn parse_duration_with(orig: &str, long_units: bool) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut num_len = int_len;
        let mut frac_len = 0;
        if s[num_len..].starts_with('.') {
            frac_len = s[num_len + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            num_len += 1 + frac_len;
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let value: f64 = s[..num_len].parse().map_err(|_| invalid())?;
        s = &s[num_len..];
        let unit_len = s
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit = &s[..unit_len];
        let scale = match unit {
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => SEC,
            "m" => MIN,
            "h" => HOUR,
            "d" if long_units => DAY,
            "w" if long_units => 7.0 * DAY,
            "y" if long_units => 365.0 * DAY,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(orig)
                ))
            }
        };
        total += value * scale;
        s = &s[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let ns = total.round() as i64;
    Ok(if neg { -ns } else { ns })
}

/// go-humanize's `ParseBytes`: `42`, `42 MB`, `1.5KiB`, case-insensitive
/// units (SI units are powers of 1000, IEC units powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
        .map_or(s.len(), |(i, _)| i);
    let num: String = s[..digits_end].chars().filter(|&c| c != ',').collect();
    let value: f64 = num.parse().map_err(|_| {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(&num)
        )
    })?;
    let unit = s[digits_end..].trim().to_ascii_lowercase();
    let scale: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return Err(format!("unhandled size name: {unit}")),
    };
    let bytes = value * scale;
    if bytes >= u64::MAX as f64 {
        return Err(format!("too large: {s}"));
    }
    Ok(bytes as u64)
}

/// Go's `strconv.ParseFloat(s, 64)` for the inputs that matter here.
pub fn parse_go_float(s: &str) -> Result<f64, String> {
    let plain = s.strip_prefix('+').unwrap_or(s);
    let ok_chars = !plain.is_empty()
        && plain
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    let special = matches!(
        plain.to_ascii_lowercase().trim_start_matches('-'),
        "inf" | "infinity" | "nan"
    );
    if ok_chars || special {
        if let Ok(v) = plain.parse::<f64>() {
            return Ok(v);
        }
    }
    Err(format!(
        "strconv.ParseFloat: parsing {}: invalid syntax",
        go_quote(s)
    ))
}

/// Formats nanoseconds the way Prometheus prints durations (`1h30m`, `500ms`).
pub fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ns.unsigned_abs();
    if ns < 0 {
        out.push('-');
    }
    if !rest.is_multiple_of(1_000_000) {
        return format!("{out}{rest}ns");
    }
    let ms_total = rest / 1_000_000;
    rest = ms_total;
    for (unit, size) in [
        ("y", 365 * 24 * 3_600_000u64),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Go's `strconv.Quote` for the characters label values and queries contain.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)`, which is
/// how LogQL prints number literals.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-2ms"), Ok(-2_000_000));
        assert_eq!(
            parse_go_duration("10"),
            Err("time: missing unit in duration \"10\"".into())
        );
        assert_eq!(
            parse_go_duration("abc"),
            Err("time: invalid duration \"abc\"".into())
        );
        assert!(parse_go_duration("1d").is_err());
        assert_eq!(parse_query_duration("1d"), Ok(86_400_000_000_000));
    }

    #[test]
    fn humanize_bytes() {
        assert_eq!(parse_bytes("42"), Ok(42));
        assert_eq!(parse_bytes("1KB"), Ok(1000));
        assert_eq!(parse_bytes("1kib"), Ok(1024));
        assert_eq!(parse_bytes("1.5 MB"), Ok(1_500_000));
        assert_eq!(
            parse_bytes("3 furlongs"),
            Err("unhandled size name: furlongs".into())
        );
    }

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(format_duration(90_000_000_000), "1m30s");
        assert_eq!(format_duration(500_000_000), "500ms");
        assert_eq!(format_duration(86_400_000_000_000), "1d");
    }

    #[test]
    fn go_floats() {
        assert_eq!(parse_go_float("1e3"), Ok(1000.0));
        assert!(parse_go_float("12ab").is_err());
        assert!(parse_go_float("").is_err());
    }
}
