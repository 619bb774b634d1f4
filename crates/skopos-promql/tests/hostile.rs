//! Malformed and hostile queries get an error, never a panic.

use proptest::prelude::*;
use skopos_model::{Labels, Matcher, Queryable, Sample, SeriesSamples, StorageError};
use skopos_promql::{CancelToken, Engine, EngineOptions};

struct Small;

impl Queryable for Small {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let all = [("a", "x"), ("a", "y"), ("b", "x")].map(|(n, l)| SeriesSamples {
            labels: Labels::from_pairs([("__name__", n), ("l", l)]),
            samples: (0..100)
                .map(|i| Sample::new(i * 10_000, (i % 7) as f64))
                .filter(|s| s.t >= mint && s.t <= maxt)
                .collect(),
        });
        Ok(all
            .into_iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .collect())
    }
    fn series(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<Labels>, StorageError> {
        Ok(Vec::new())
    }
    fn label_names(&self, _: &[Matcher], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn label_values(
        &self,
        _: &str,
        _: &[Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

/// Fragments that glue into mostly-valid PromQL.
fn fragment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "{l=\"x\"}",
        "{l=~\"x|y\"}",
        "[1m]",
        "[30s:10s]",
        "[5m:]",
        " offset 1m",
        " offset -30s",
        " @ 500",
        " @ start()",
        " @ end()",
        "(",
        ")",
        " + ",
        " - ",
        " * ",
        " / ",
        " % ",
        " ^ ",
        " == ",
        " != bool ",
        " > ",
        " and ",
        " or ",
        " unless ",
        " on(l) ",
        " ignoring(l) ",
        " group_left ",
        " group_right(l) ",
        "sum",
        "avg",
        "topk(2, ",
        "quantile(0.5, ",
        "count_values(\"v\", ",
        " by (l) ",
        " without (l) ",
        "rate(",
        "irate(",
        "histogram_quantile(0.9, ",
        "label_replace(",
        ", \"d\", \"$1\", \"l\", \"(.*)\")",
        "abs(",
        "round(",
        "clamp(",
        ", 0, 1)",
        "holt_winters(",
        ", 0.5, 0.5)",
        "absent(",
        "scalar(",
        "vector(",
        "time()",
        "1",
        "0",
        "-1",
        "NaN",
        "Inf",
        "1e308",
        "\"s\"",
        ",",
        "[",
        "]",
        "{",
        "}",
        "timestamp(",
        "sort(",
        "predict_linear(",
        ", 60)",
        "-",
    ])
}

/// Small well-formed queries from a grammar: selectors, range functions,
/// subqueries, aggregations and binary operators, nested.
fn query() -> impl Strategy<Value = String> {
    let selector = prop::sample::select(vec![
        "a",
        "b",
        "a{l=\"x\"}",
        "{__name__=~\"a|b\"}",
        "a offset 1m",
        "b @ 500",
        "a offset -20s",
    ])
    .prop_map(str::to_string);
    let leaf = prop_oneof![
        selector.clone(),
        selector.clone().prop_flat_map(|s| {
            (
                prop::sample::select(vec![
                    "rate",
                    "increase",
                    "delta",
                    "max_over_time",
                    "resets",
                    "deriv",
                    "last_over_time",
                ]),
                prop::sample::select(vec!["[30s]", "[2m]", "[1m:15s]", "[3m:]"]),
            )
                .prop_map(move |(f, r)| {
                    let (name, modifier) = match s.split_once(' ') {
                        Some((n, m)) => (n.to_string(), format!(" {m}")),
                        None => (s.clone(), String::new()),
                    };
                    format!("{f}({name}{r}{modifier})")
                })
        }),
        prop::sample::select(vec!["1", "0.5", "NaN", "-Inf", "time()"]).prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec!["sum", "avg", "max", "count", "stddev", "group"]),
                prop::sample::select(vec!["", " by (l)", " without (l)"]),
                inner.clone()
            )
                .prop_map(|(a, m, e)| format!("{a}{m} ({e})")),
            (
                prop::sample::select(vec![
                    "abs",
                    "ceil",
                    "sgn",
                    "sort",
                    "timestamp",
                    "absent",
                    "vector",
                    "scalar"
                ]),
                inner.clone()
            )
                .prop_map(|(f, e)| format!("{f}({e})")),
            (
                inner.clone(),
                prop::sample::select(vec![
                    " + ",
                    " * ",
                    " / ",
                    " > ",
                    " == bool ",
                    " and ",
                    " or ",
                    " unless ",
                    " - on(l) ",
                    " + ignoring(l) group_left ",
                    " < bool on() group_right ",
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a}){op}({b})")),
            (
                inner.clone(),
                prop::sample::select(vec!["[2m:30s]", "[1m:]"])
            )
                .prop_map(|(e, r)| format!("max_over_time(({e}){r})")),
            (
                prop::sample::select(vec!["topk(1, ", "quantile(0.3, ", "count_values(\"v\", "]),
                inner
            )
                .prop_map(|(a, e)| format!("{a}{e})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn glued_fragments_never_panic(parts in prop::collection::vec(fragment(), 1..12)) {
        let q: String = parts.concat();
        let e = Engine::new(EngineOptions { max_samples: 100_000, ..EngineOptions::default() });
        let c = CancelToken::new();
        let _ = e.instant(&Small, &q, 700_000, &c);
        let _ = e.range(&Small, &q, 0, 900_000, 60_000, &c);
    }

    #[test]
    fn generated_queries_never_panic_and_ranges_match_instants(q in query()) {
        let e = Engine::new(EngineOptions { max_samples: 1_000_000, ..EngineOptions::default() });
        let c = CancelToken::new();
        let range = e.range(&Small, &q, 300_000, 900_000, 60_000, &c);
        if let Ok(skopos_promql::Value::Matrix(m)) = &range {
            // Each step of the range query is the instant query at that time.
            for t in (300_000..=900_000).step_by(60_000) {
                let mut from_range: Vec<(String, u64)> = m
                    .iter()
                    .filter_map(|s| s.samples.iter().find(|p| p.t == t).map(|p| (s.labels.to_string(), p.v.to_bits())))
                    .collect();
                from_range.sort();
                let mut from_instant: Vec<(String, u64)> = match e.instant(&Small, &q, t, &c) {
                    Ok(skopos_promql::Value::Vector(v)) => v.iter().map(|s| (s.labels.to_string(), s.v.to_bits())).collect(),
                    Ok(skopos_promql::Value::Scalar { v, .. }) => vec![("{}".to_string(), v.to_bits())],
                    other => panic!("{q} at {t}: {other:?}"),
                };
                from_instant.sort();
                prop_assert_eq!(from_range, from_instant, "{} at {}", q, t);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(q in "\\PC{0,60}") {
        let e = Engine::default();
        let _ = e.instant(&Small, &q, 700_000, &CancelToken::new());
    }
}

/// Found by fuzzing (FUZZING.md): a range, subquery step or offset written
/// as a number too large for a `Duration` panicked inside `promql-parser`
/// (`Duration::from_secs_f64`); it is a parse error.
#[test]
fn durations_written_as_huge_or_non_finite_numbers_are_parse_errors_not_panics() {
    let engine = Engine::new(EngineOptions::default());
    let cancel = CancelToken::new();
    for q in [
        "a[999999999999999999999990]",
        "rate(a[1e400])",
        "a[Inf]",
        "a[NaN]",
        "a offset 1e30",
        "a offset -1e30",
        "a[5m:1e300]",
        "a[0xffffffffffffffffffff]",
    ] {
        match engine.instant(&Small, q, 1_000_000, &cancel) {
            Err(skopos_promql::QueryError::Parse(m)) => {
                assert!(m.contains("duration out of range"), "{q}: {m}")
            }
            other => panic!("{q}: {other:?}"),
        }
    }
    // Numbers where a duration goes are Prometheus 3's; 2.42 refuses them.
    for (q, want) in [
        ("a[300]", "1:3: parse error: missing unit character in duration"),
        (
            "a offset 60",
            "1:10: parse error: unexpected number \"60\" in offset, expected duration",
        ),
        (
            "a[5m:30]",
            "1:6: parse error: unexpected number \"30\" in subquery selector, expected duration or \"]\"",
        ),
    ] {
        match engine.instant(&Small, q, 1_000_000, &cancel) {
            Err(skopos_promql::QueryError::Syntax(m)) => assert_eq!(m, want, "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    for q in ["a{l=\"[1e400]\"}", "a_1e400"] {
        engine
            .instant(&Small, q, 1_000_000, &cancel)
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}
