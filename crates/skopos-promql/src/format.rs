/// Formats a sample value as Prometheus' JSON API does: `+Inf`, `-Inf`,
/// `NaN`, otherwise the shortest representation that round-trips, in plain
/// decimal notation unless the magnitude is below 1e-6 or at least 1e21, where
/// Go's exponent form (`1e+21`, `1.5e-07`) is used.
pub fn format_value(v: f64) -> String {
    let mut s = String::new();
    write_value(&mut s, v);
    s
}

/// [`format_value`], appended to `out`.
pub fn write_value(out: &mut String, v: f64) {
    use std::fmt::Write;
    let abs = v.abs();
    if v.is_finite() && (abs == 0.0 || (1e-6..1e21).contains(&abs)) {
        let _ = write!(out, "{v}");
        return;
    }
    out.push_str(&format_special(v));
}

fn format_special(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust gives `1.5e-7`; Go writes the exponent signed, at least two digits.
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').expect("exponent form");
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return if digits.len() < 2 {
            format!("{mant}e{sign}0{digits}")
        } else {
            format!("{mant}e{sign}{digits}")
        };
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn matches_go_formatting() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-0.5), "-0.5");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_value(0.000001), "0.000001");
        assert_eq!(format_value(1.234e300), "1.234e+300");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-0.0), "-0");
    }
}
