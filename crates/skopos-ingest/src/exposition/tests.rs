//! Data-driven parser cases live in `testdata/exposition.txt`:
//!
//! ```text
//! === <case name> (text|openmetrics)
//! <exposition>
//! --- output
//! <series as encode_text writes them, default timestamp 1000>
//! # META <family> <type> <help as a Rust debug string> <unit debug string>
//! or: error: line N: message
//! ```
//!
//! Run with `UPDATE_EXPECT=1` to rewrite the expected outputs (then review the diff).

use super::*;

const CASES: &str = "testdata/exposition.txt";

fn render(input: &str, format: Format) -> String {
    match parse(input, format, 1000) {
        Ok(p) => {
            let mut out = encode_text(&p.series);
            for m in &p.metadata {
                out.push_str(&format!(
                    "# META {} {} {:?} {:?}\n",
                    m.metric_family_name, m.type_, m.help, m.unit
                ));
            }
            out
        }
        Err(e) => format!("error: {e}\n"),
    }
}

#[test]
fn exposition_cases() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CASES);
    let text = std::fs::read_to_string(&path).unwrap();
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    let mut count = 0;
    for case in text.split("=== ").skip(1) {
        count += 1;
        let (header, body) = case.split_once('\n').unwrap();
        let (input, expected) = body
            .split_once("--- output\n")
            .unwrap_or_else(|| panic!("case {header:?} has no '--- output'"));
        let format = if header.ends_with("(openmetrics)") {
            Format::OpenMetrics
        } else {
            assert!(
                header.ends_with("(text)"),
                "case {header:?} must end with (text) or (openmetrics)"
            );
            Format::PrometheusText
        };
        // The separator's newline is not part of the input.
        let got = render(input, format);
        if got.trim_end() != expected.trim_end() {
            failures.push(format!(
                "case {header}\n--- expected\n{expected}--- got\n{got}"
            ));
        }
        rewritten.push_str(&format!("=== {header}\n{input}--- output\n{got}\n"));
    }
    if update {
        std::fs::write(&path, rewritten).unwrap();
        return;
    }
    assert!(count > 20, "only {count} cases found");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn parse_errors_convert_to_decode_errors() {
    let e: crate::DecodeError = parse("m{", Format::PrometheusText, 0).unwrap_err().into();
    assert!(
        e.to_string()
            .starts_with("invalid exposition text: line 1: "),
        "{e}"
    );
}

#[test]
fn crlf_line_endings_are_accepted() {
    let p = parse(
        "# TYPE a gauge\r\na 1\r\nb 2 5\r\n",
        Format::PrometheusText,
        7,
    )
    .unwrap();
    assert_eq!(p.series.len(), 2);
    assert_eq!(p.series[1].1, Sample::new(5, 2.0));
    assert_eq!(p.metadata[0].type_, "gauge");
}

#[test]
fn parse_each_reuses_labels_of_repeated_series() {
    let text = "# TYPE h histogram\nh_bucket{le=\"1\"} 1 1000\nh_bucket{le=\"1\"} 2 2000\nx{a=\"}\\\"\"} 3\nx{a=\"}\\\"\"} 4\n";
    let mut got: Vec<(Labels, Sample)> = Vec::new();
    let mut ptrs = Vec::new();
    let md = parse_each(text, Format::PrometheusText, 7, |l, s| {
        ptrs.push(l.as_slice().as_ptr());
        got.push((l.clone(), s));
    })
    .unwrap();
    assert_eq!(md.len(), 1);
    assert_eq!(got.len(), 4);
    // Same series text: the very same cached labels, normalised once.
    assert_eq!(ptrs[0], ptrs[1]);
    assert_eq!(ptrs[2], ptrs[3]);
    assert_eq!(got[1].0.get("le"), Some("1.0"));
    assert_eq!(got[3].0.get("a"), Some("}\""));
    assert_eq!(got[3].1, Sample::new(7, 4.0));
    // And the same result as parse().
    assert_eq!(parse(text, Format::PrometheusText, 7).unwrap().series, got);
}

#[test]
fn a_late_type_line_does_not_leave_stale_cached_labels() {
    // foo_bucket is untyped until "# TYPE foo histogram" appears.
    let text = "foo_bucket{le=\"1\"} 1\n# TYPE foo histogram\nfoo_bucket{le=\"1\"} 2\n";
    let p = parse(text, Format::PrometheusText, 0).unwrap();
    assert_eq!(p.series[0].0.get("le"), Some("1"));
    assert_eq!(p.series[1].0.get("le"), Some("1.0"));
}

#[test]
fn content_type_selects_format() {
    assert_eq!(
        format_from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    assert_eq!(
        format_from_content_type("text/plain; version=0.0.4"),
        Format::PrometheusText
    );
    assert_eq!(format_from_content_type(""), Format::PrometheusText);
}

#[test]
fn writer_output_parses_back_to_the_same_series() {
    let series = vec![
        (
            Labels::from_pairs([("__name__", "m"), ("path", "a\"b\\c\nd"), ("x", "ü")]),
            Sample::new(123, 0.5),
        ),
        (
            Labels::from_pairs([("__name__", "n")]),
            Sample::new(-5, f64::NEG_INFINITY),
        ),
        (
            Labels::from_pairs([("__name__", "big")]),
            Sample::new(0, 1.5e300),
        ),
    ];
    let text = encode_text(&series);
    let back = parse(&text, Format::PrometheusText, 0).unwrap();
    assert_eq!(back.series, series);
    let no_ts = encode_text_without_timestamps(&series);
    assert!(
        no_ts.starts_with("m{path=\"a\\\"b\\\\c\\nd\",x=\"ü\"} 0.5\n"),
        "{no_ts}"
    );
}

#[test]
fn stale_nan_is_not_produced_by_parsing_nan() {
    let p = parse("m NaN\n", Format::PrometheusText, 1).unwrap();
    assert!(p.series[0].1.v.is_nan());
    assert!(!skopos_model::is_stale_nan(p.series[0].1.v));
}

fn arb_series() -> impl proptest::strategy::Strategy<Value = Vec<(Labels, Sample)>> {
    use proptest::prelude::*;
    let labels = (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{0,12}", 0..5),
    )
        .prop_map(|(name, rest)| {
            let mut b = skopos_model::LabelsBuilder::new();
            for (k, v) in rest {
                if !k.starts_with("__") {
                    b.set(k, v);
                }
            }
            b.set("__name__", name);
            b.build()
        });
    let value = prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ];
    proptest::collection::vec((labels, value, any::<i64>()), 0..8).prop_map(|v| {
        v.into_iter()
            .map(|(l, v, t)| (l, Sample::new(t, v)))
            .collect()
    })
}

proptest::proptest! {
    #[test]
    fn written_text_parses_back_identically(series in arb_series()) {
        let text = encode_text(&series);
        let back = parse(&text, Format::PrometheusText, 0).unwrap();
        proptest::prop_assert_eq!(back.series, series);
    }

    #[test]
    fn parser_never_panics(s in "[a-z_{}=\",# \\\\\n0-9.+-]{0,80}") {
        let _ = parse(&s, Format::PrometheusText, 0);
        let _ = parse(&s, Format::OpenMetrics, 0);
    }
}
