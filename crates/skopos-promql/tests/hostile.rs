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
    fn arbitrary_text_never_panics(q in "\\PC{0,60}") {
        let e = Engine::default();
        let _ = e.instant(&Small, &q, 700_000, &CancelToken::new());
    }
}
