//! Float formatting shared by the writers and label normalisation.

/// Formats a float the way Prometheus prints sample values and normalised
/// `le`/`quantile` label values: `+Inf`, `-Inf`, `NaN`, otherwise the
/// shortest representation that round-trips, in Go's `%g` style (exponent
/// form below 1e-4 and from 1e6 up, e.g. `1e+06`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let a = v.abs();
    if (1e-4..1e6).contains(&a) {
        // Rust's Display is the shortest round-trip decimal without exponent.
        format!("{v}")
    } else {
        // `{:e}` gives e.g. `1.5e-7`; Go writes `1.5e-07`.
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').expect("exponent form");
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let digits = if digits.len() < 2 {
            format!("0{digits}")
        } else {
            digits.to_string()
        };
        format!("{mant}e{sign}{digits}")
    }
}

/// Like [`format_float`] but integral values get a `.0`, as Prometheus 3
/// normalises `le` and `quantile` label values (`le="1"` becomes `le="1.0"`).
pub(crate) fn format_label_float(v: f64) -> String {
    let s = format_float(v);
    if v.is_finite() && !s.contains(['.', 'e']) {
        format!("{s}.0")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(1e-7), "1e-07");
        assert_eq!(format_float(1.5e300), "1.5e+300");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(123456.0), "123456");
        assert_eq!(format_float(1e6), "1e+06");
        assert_eq!(format_float(1234567.0), "1.234567e+06");
        assert_eq!(format_label_float(1.0), "1.0");
        assert_eq!(format_label_float(0.5), "0.5");
        assert_eq!(format_label_float(f64::INFINITY), "+Inf");
    }
}
