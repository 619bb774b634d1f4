//! Prometheus-style durations (`15d`, `1h30m`, `500ms`) and byte sizes
//! (`512MB`, `10GB`, base 1024), as the flags and config file take them.

use std::time::Duration;

/// Parses `[0-9]+(y|w|d|h|m|s|ms)` repeated, largest unit first.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let err = || format!("invalid duration {s:?}: expected e.g. 15d, 1h30m, 500ms");
    let mut total_ms: u128 = 0;
    let mut rest = s;
    let mut last_rank: Option<usize> = None;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let units: [(&str, u128); 7] = [
            ("ms", 1),
            ("y", 365 * 86_400_000),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ];
        let (rank, (unit, mult)) = units
            .iter()
            .enumerate()
            .find(|(_, (u, _))| rest.starts_with(u))
            .ok_or_else(err)?;
        // Rank order largest→smallest, with ms last.
        let order = if *unit == "ms" { 7 } else { rank };
        if last_rank.is_some_and(|last| order <= last) {
            return Err(err());
        }
        last_rank = Some(order);
        total_ms += n * mult;
        rest = &rest[unit.len()..];
    }
    Ok(Duration::from_millis(total_ms.min(u64::MAX as u128) as u64))
}

/// Parses a size like `512MB` or `10GB` (base 1024; `B` alone is bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
    let err = || format!("invalid size {s:?}: expected e.g. 512MB, 10GB");
    if digits == 0 {
        return Err(err());
    }
    let n: u64 = t[..digits].parse().map_err(|_| err())?;
    let mult: u64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" | "KIB" => 1 << 10,
        "MB" | "M" | "MIB" => 1 << 20,
        "GB" | "G" | "GIB" => 1 << 30,
        "TB" | "T" | "TIB" => 1 << 40,
        "PB" | "P" | "PIB" => 1 << 50,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("15d").unwrap(),
            Duration::from_secs(15 * 86400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("1m500ms").unwrap(),
            Duration::from_millis(60_500)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "m", "1x", "30m1h", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
    }
}
