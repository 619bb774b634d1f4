use super::*;

fn ms(s: &str) -> u128 {
    parse_duration(s).unwrap().as_millis()
}

#[test]
fn durations_take_prometheus_grammar() {
    assert_eq!(ms("15d"), 15 * 86_400_000);
    assert_eq!(ms("1h30m"), 5_400_000);
    assert_eq!(ms("500ms"), 500);
    assert_eq!(ms("1m500ms"), 60_500);
    assert_eq!(ms("1y"), 365 * 86_400_000);
    assert_eq!(ms("1w"), 7 * 86_400_000);
    assert_eq!(
        ms("1y2w3d4h5m6s7ms"),
        31_536_000_000 + 1_209_600_000 + 259_200_000 + 14_400_000 + 306_007
    );
    assert_eq!(ms("0"), 0);
    assert_eq!(ms(" 5m "), 300_000);
    assert_eq!(ms("0s"), 0);
    assert_eq!(ms("90s"), 90_000);
}

#[test]
fn durations_prometheus_rejects_are_rejected() {
    for bad in [
        "", "10", "m", "1x", "30m1h", "1m1m", "-5m", "1.5h", "1min", "2months", "1ms1s", "1 m",
        "5é", "é", "1h é",
    ] {
        let e = parse_duration(bad).unwrap_err();
        assert!(e.to_string().contains("duration"), "{bad}: {e}");
    }
    assert!(matches!(
        parse_duration("99999999999999999999y"),
        Err(UnitError::DurationRange(_))
    ));
    assert!(matches!(
        parse_duration("300000000y"),
        Err(UnitError::DurationRange(_))
    ));
}

#[test]
fn duration_params_take_seconds_too() {
    assert_eq!(parse_duration_param("15").unwrap(), 15_000);
    assert_eq!(parse_duration_param("0.5").unwrap(), 500);
    assert_eq!(parse_duration_param("-1").unwrap(), -1000);
    assert_eq!(parse_duration_param("1m").unwrap(), 60_000);
    assert!(parse_duration_param("inf").is_err());
    assert!(parse_duration_param("NaN").is_err());
    assert!(parse_duration_param("1e300").is_err());
    assert!(parse_duration_param("1min").is_err());
}

#[test]
fn durations_format_as_prometheus_prints_them() {
    for (ms, text) in [
        (0, "0s"),
        (500, "500ms"),
        (15_000, "15s"),
        (5_400_000, "1h30m"),
        (86_400_000, "1d"),
        (90 * 86_400_000, "90d"),
        (14 * 86_400_000, "2w"),
        (365 * 86_400_000, "1y"),
        (61_001, "1m1s1ms"),
    ] {
        let d = Duration::from_millis(ms);
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text).unwrap(), d, "{text} reads back");
    }
}

#[test]
fn sizes_are_base_2_and_case_sensitive() {
    assert_eq!(parse_size("512MB").unwrap(), 512 << 20);
    assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
    assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
    assert_eq!(parse_size("100KB").unwrap(), 100 << 10);
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("7B").unwrap(), 7);
    assert_eq!(parse_size("1EiB").unwrap(), 1 << 60);
    for bad in [
        "", "MB", "ten", "5XB", "512mb", "1.5GB", "-1KB", "1 GB", "5é",
    ] {
        assert!(matches!(parse_size(bad), Err(UnitError::Size(_))), "{bad}");
    }
    assert!(matches!(parse_size("16EiB"), Err(UnitError::SizeRange(_))));
    assert!(matches!(
        parse_size("99999999999999999999"),
        Err(UnitError::SizeRange(_))
    ));
}

#[test]
fn sizes_format_and_read_back() {
    for (n, text) in [
        (512 << 20, "512MiB"),
        (1 << 30, "1GiB"),
        (1000, "1000B"),
        (0, "0B"),
        (3 << 10, "3KiB"),
    ] {
        assert_eq!(format_size(n), text);
        assert_eq!(parse_size(text).unwrap(), n);
    }
}

#[test]
fn rfc3339_parses_offsets_and_fractions() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z").unwrap(), 0);
    assert_eq!(
        parse_rfc3339("2024-01-02T03:04:05.678Z").unwrap(),
        1_704_164_645_678_000_000
    );
    assert_eq!(
        parse_rfc3339("2024-01-02T04:04:05.678+01:00").unwrap(),
        1_704_164_645_678_000_000
    );
    assert_eq!(
        parse_rfc3339("2024-01-02t03:04:05.000000001z").unwrap(),
        1_704_164_645_000_000_001
    );
    assert_eq!(
        parse_rfc3339("1969-12-31T23:59:59Z").unwrap(),
        -1_000_000_000
    );
}

#[test]
fn rfc3339_refuses_without_panicking_on_multibyte_text() {
    // The regression that dropped the connection: a multi-byte character
    // where the offset's digits should be.
    for bad in [
        "2024-01-02T03:04:05+0é00",
        "2024-01-02T03:04:05é",
        "2024-é1-02T03:04:05Z",
        "ééééééééééééééééééééé",
        "2024-01-02T03:04:05",
        "2024-13-02T03:04:05Z",
        "",
        "9999-12-31T23:59:59Z",
    ] {
        let e = parse_rfc3339(bad).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{bad}: {e}");
    }
}

#[test]
fn log_times_without_an_offset_are_utc() {
    let want = 1_704_164_645_678_000_000;
    for s in [
        "2024-01-02T03:04:05.678Z",
        "2024-01-02T03:04:05.678",
        "2024-01-02 03:04:05.678",
        "2024-01-02 04:04:05.678+01:00",
    ] {
        assert_eq!(parse_log_time(s).unwrap(), want, "{s}");
    }
    for bad in ["yesterday", "2024-01-02T03:04:0é", "", "03:04:05"] {
        assert!(parse_log_time(bad).is_err(), "{bad}");
    }
}

#[test]
fn rfc3339_formats_at_each_precision() {
    let t = 1_704_164_645_678_900_000;
    assert_eq!(
        format_rfc3339(t, Precision::Seconds),
        "2024-01-02T03:04:05Z"
    );
    assert_eq!(
        format_rfc3339(t, Precision::Millis),
        "2024-01-02T03:04:05.678Z"
    );
    assert_eq!(
        format_rfc3339(t, Precision::Nanos),
        "2024-01-02T03:04:05.6789Z"
    );
    assert_eq!(format_rfc3339(0, Precision::Nanos), "1970-01-01T00:00:00Z");
    assert_eq!(
        format_rfc3339(-1, Precision::Nanos),
        "1969-12-31T23:59:59.999999999Z"
    );
    for t in [i64::MIN, i64::MAX, 0, -1, 1] {
        let text = format_rfc3339(t, Precision::Nanos);
        assert_eq!(parse_rfc3339(&text).unwrap(), t, "{text}");
    }
}

#[test]
fn civil_dates_agree_with_jiff_where_both_reach() {
    // Every day over four centuries, plus the seconds within a few days.
    let start = parse_rfc3339("1900-01-01T00:00:00Z").unwrap() / 1_000_000_000;
    for day in 0..(400 * 366) {
        let secs = start + day * 86_400 + (day * 7919) % 86_400;
        let c = civil_from_unix(secs);
        let z = jiff::Timestamp::from_second(secs)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (
                i64::from(z.year()),
                z.month() as u32,
                z.day() as u32,
                z.hour() as u32,
                z.minute() as u32,
                z.second() as u32
            ),
            "{secs}"
        );
        assert_eq!(c.weekday, z.weekday().to_sunday_zero_offset() as u32);
        assert_eq!(c.day_of_year, z.day_of_year() as u32);
        assert_eq!(c.days_in_month, z.days_in_month() as u32);
    }
}

#[test]
fn civil_dates_cover_the_whole_i64_range() {
    // The proleptic calendar at both ends (Go's time.Unix wraps there; PromQL's
    // date functions special-case what Go does with out-of-range floats).
    let c = civil_from_unix(i64::MIN);
    assert_eq!(
        (c.year, c.month, c.day, c.hour, c.minute, c.second),
        (-292_277_022_657, 1, 27, 8, 29, 52)
    );
    let c = civil_from_unix(i64::MAX);
    assert_eq!(
        (c.year, c.month, c.day, c.hour, c.minute, c.second, c.weekday),
        (292_277_026_596, 12, 4, 15, 30, 7, 0)
    );
}
