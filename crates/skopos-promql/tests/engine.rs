//! The engine's API contract: result types, limits, cancellation, errors.

use std::time::Duration;

use skopos_model::{Labels, Matcher, Queryable, Sample, SeriesSamples, StorageError};
use skopos_promql::{format_value, CancelToken, Engine, EngineOptions, QueryError, Value};

/// `n` series `m{i="k"}`, one sample a second with value = seconds, for `secs` seconds.
struct Grid {
    series: Vec<SeriesSamples>,
    fail: bool,
}

impl Grid {
    fn new(n: usize, secs: i64) -> Self {
        let series = (0..n)
            .map(|k| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m".to_string()), ("i", k.to_string())]),
                samples: (0..secs).map(|s| Sample::new(s * 1000, s as f64)).collect(),
            })
            .collect();
        Grid {
            series,
            fail: false,
        }
    }
}

impl Queryable for Grid {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        if self.fail {
            return Err(StorageError::Other("disk on fire".into()));
        }
        Ok(self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| SeriesSamples {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .collect(),
            })
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

fn engine() -> Engine {
    Engine::new(EngineOptions::default())
}

#[test]
fn defaults_are_prometheus_defaults() {
    let o = EngineOptions::default();
    assert_eq!(o.lookback_delta_ms, 300_000);
    assert_eq!(o.max_samples, 50_000_000);
    assert_eq!(o.timeout, Duration::from_secs(120));
}

#[test]
fn instant_result_types() {
    let g = Grid::new(2, 100);
    let c = CancelToken::new();
    let e = engine();
    assert_eq!(
        e.instant(&g, "1 + 1", 5000, &c).unwrap(),
        Value::Scalar { t: 5000, v: 2.0 }
    );
    assert_eq!(
        e.instant(&g, "\"hello\"", 5000, &c).unwrap(),
        Value::String {
            t: 5000,
            s: "hello".into()
        }
    );
    let Value::Vector(v) = e.instant(&g, "m", 50_500, &c).unwrap() else {
        panic!("expected a vector")
    };
    assert_eq!(v.len(), 2);
    // Vector samples carry the evaluation time, not the sample time.
    assert!(v.iter().all(|s| s.t == 50_500 && s.v == 50.0));
    let Value::Matrix(m) = e.instant(&g, "m{i=\"1\"}[3s]", 50_000, &c).unwrap() else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 1);
    let ts: Vec<i64> = m[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![47_000, 48_000, 49_000, 50_000]);
}

#[test]
fn range_result_is_a_sorted_matrix() {
    let g = Grid::new(3, 100);
    let c = CancelToken::new();
    let Value::Matrix(m) = engine()
        .range(&g, "m * 2", 10_000, 20_000, 5_000, &c)
        .unwrap()
    else {
        panic!("expected a matrix")
    };
    let names: Vec<String> = m.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(names, vec!["{i=\"0\"}", "{i=\"1\"}", "{i=\"2\"}"]);
    let pts: Vec<(i64, f64)> = m[0].samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(pts, vec![(10_000, 20.0), (15_000, 30.0), (20_000, 40.0)]);
    // A scalar expression gives one series without labels.
    let Value::Matrix(m) = engine().range(&g, "time()", 0, 2_000, 1_000, &c).unwrap() else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    assert_eq!(m[0].samples.len(), 3);
}

#[test]
fn range_query_rejects_range_vectors_and_bad_steps() {
    let g = Grid::new(1, 10);
    let c = CancelToken::new();
    let e = engine().range(&g, "m[1m]", 0, 10, 1, &c).unwrap_err();
    assert_eq!(e.error_type(), "bad_data");
    assert!(e.to_string().contains("range vector"), "{e}");
    let e = engine().range(&g, "m", 0, 10, 0, &c).unwrap_err();
    assert_eq!(e.error_type(), "bad_data");
    let e = engine().range(&g, "m", 10, 0, 1, &c).unwrap_err();
    assert_eq!(e.error_type(), "bad_data");
}

#[test]
fn parse_errors_are_bad_data() {
    let g = Grid::new(1, 10);
    let e = engine()
        .instant(&g, "sum(", 0, &CancelToken::new())
        .unwrap_err();
    assert_eq!(
        e,
        QueryError::Syntax("1:5: parse error: unclosed left parenthesis".into())
    );
    assert_eq!(e.error_type(), "bad_data");
}

#[test]
fn too_many_samples_is_prometheus_error() {
    let g = Grid::new(10, 1000);
    let e = Engine::new(EngineOptions {
        max_samples: 100,
        ..EngineOptions::default()
    });
    let c = CancelToken::new();
    // One series' window alone holds 301 samples. (Prometheus, like the
    // series-major evaluator, holds one series' window at a time: 10 series
    // × 61 samples in `m[1m]` would fit.)
    let err = e.instant(&g, "sum(rate(m[5m]))", 500_000, &c).unwrap_err();
    assert_eq!(err, QueryError::TooManySamples(100));
    assert_eq!(err.error_type(), "execution");
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    // A range query accumulates its result: 10 series × 11 steps > 100.
    let err = e.range(&g, "m", 0, 10_000, 1_000, &c).unwrap_err();
    assert_eq!(err, QueryError::TooManySamples(100));
    // Under the limit it works (the lookback window before 5s holds 6 samples a series).
    assert!(e.instant(&g, "sum(m)", 5_000, &c).is_ok());
    assert!(e.range(&g, "sum(m)", 0, 5_000, 1_000, &c).is_ok());
    // What is read from storage counts too: 5 minutes of lookback × 10 series.
    let err = e.instant(&g, "m", 500_000, &c).unwrap_err();
    assert_eq!(err, QueryError::TooManySamples(100));

    // Groups of a series-major aggregation hold a slot per step: 10 groups
    // × 1000 steps passes 5000 even though each series is small, and the
    // step evaluator, which accumulates the same result, agrees.
    for series_major in [true, false] {
        let e = Engine::new(EngineOptions {
            max_samples: 5_000,
            series_major,
            ..EngineOptions::default()
        });
        let err = e
            .range(&g, "sum by (i) (m)", 0, 999_000, 1_000, &c)
            .unwrap_err();
        assert_eq!(err, QueryError::TooManySamples(5_000), "{series_major}");
        assert!(e.range(&g, "sum(m)", 0, 999_000, 1_000, &c).is_ok());
    }
}

#[test]
fn long_range_queries_read_storage_in_slices() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counting(Grid, AtomicUsize);
    impl Queryable for Counting {
        fn select(
            &self,
            m: &[Matcher],
            a: i64,
            b: i64,
        ) -> Result<Vec<SeriesSamples>, StorageError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.select(m, a, b)
        }
        fn series(&self, m: &[Matcher], a: i64, b: i64) -> Result<Vec<Labels>, StorageError> {
            self.0.series(m, a, b)
        }
        fn label_names(&self, m: &[Matcher], a: i64, b: i64) -> Result<Vec<String>, StorageError> {
            self.0.label_names(m, a, b)
        }
        fn label_values(
            &self,
            n: &str,
            m: &[Matcher],
            a: i64,
            b: i64,
        ) -> Result<Vec<String>, StorageError> {
            self.0.label_values(n, m, a, b)
        }
    }
    // 10 series × 1000 samples: more than the limit in one read, but each
    // step needs only ~11 samples a series.
    let q = Counting(Grid::new(10, 1000), AtomicUsize::new(0));
    let e = Engine::new(EngineOptions {
        max_samples: 2000,
        lookback_delta_ms: 10_000,
        ..EngineOptions::default()
    });
    // `topk` is evaluated step by step (its input `m` is read per slice).
    let Value::Matrix(m) = e
        .range(&q, "topk(1, m)", 0, 999_000, 1_000, &CancelToken::new())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m[0].samples.len(), 1000);
    assert_eq!(m[0].samples[999].v, 999.0);
    assert!(q.1.load(Ordering::Relaxed) > 2);
    // The same answer as with a generous limit.
    let Value::Matrix(m2) = engine()
        .range(&q.0, "topk(1, m)", 0, 999_000, 1_000, &CancelToken::new())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m, m2);

    // `sum(m)` is evaluated series-major: one pass over storage, each
    // series' samples held while it is folded in, so the same limit holds.
    q.1.store(0, Ordering::Relaxed);
    let Value::Matrix(m) = e
        .range(&q, "sum(m)", 0, 999_000, 1_000, &CancelToken::new())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(q.1.load(Ordering::Relaxed), 1);
    assert_eq!(m[0].samples.len(), 1000);
    assert_eq!(m[0].samples[999].v, 9990.0);
    let step_by_step = Engine::new(EngineOptions {
        series_major: false,
        ..EngineOptions::default()
    });
    let Value::Matrix(m2) = step_by_step
        .range(&q.0, "sum(m)", 0, 999_000, 1_000, &CancelToken::new())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(m, m2);
}

#[test]
fn cancelled_query_stops() {
    let g = Grid::new(1, 10);
    let c = CancelToken::new();
    let c2 = c.clone();
    c2.cancel();
    assert!(c.is_cancelled());
    let err = engine().instant(&g, "m", 0, &c).unwrap_err();
    assert_eq!(err, QueryError::Canceled);
    assert_eq!(err.error_type(), "canceled");
}

#[test]
fn timeout_is_reported() {
    let g = Grid::new(1, 10);
    let e = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    std::thread::sleep(Duration::from_millis(2));
    let err = e.instant(&g, "m", 0, &CancelToken::new()).unwrap_err();
    assert_eq!(err, QueryError::Timeout);
    assert_eq!(err.error_type(), "timeout");
}

#[test]
fn storage_errors_are_internal() {
    let mut g = Grid::new(1, 10);
    g.fail = true;
    let err = engine()
        .instant(&g, "m", 0, &CancelToken::new())
        .unwrap_err();
    assert!(matches!(err, QueryError::Storage(_)));
    assert_eq!(err.error_type(), "internal");
}

#[test]
fn execution_errors_are_execution() {
    let g = Grid::new(2, 10);
    let err = engine()
        .instant(&g, "m * on() m", 5000, &CancelToken::new())
        .unwrap_err();
    assert_eq!(err.error_type(), "execution");
}

#[test]
fn each_selector_is_fetched_once_per_slice() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counting(Grid, AtomicUsize);
    impl Queryable for Counting {
        fn select(
            &self,
            m: &[Matcher],
            a: i64,
            b: i64,
        ) -> Result<Vec<SeriesSamples>, StorageError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.select(m, a, b)
        }
        fn series(&self, m: &[Matcher], a: i64, b: i64) -> Result<Vec<Labels>, StorageError> {
            self.0.series(m, a, b)
        }
        fn label_names(&self, m: &[Matcher], a: i64, b: i64) -> Result<Vec<String>, StorageError> {
            self.0.label_names(m, a, b)
        }
        fn label_values(
            &self,
            n: &str,
            m: &[Matcher],
            a: i64,
            b: i64,
        ) -> Result<Vec<String>, StorageError> {
            self.0.label_values(n, m, a, b)
        }
    }
    let q = Counting(Grid::new(2, 100), AtomicUsize::new(0));
    engine()
        .range(
            &q,
            "rate(m[10s]) + max_over_time(m[20s:5s])",
            30_000,
            90_000,
            1_000,
            &CancelToken::new(),
        )
        .unwrap();
    // An instant query reads each selector once; a range query reads the
    // first step alone, then the rest in one slice when it fits.
    assert_eq!(q.1.load(Ordering::Relaxed), 4);
    engine()
        .instant(
            &q,
            "rate(m[10s]) + max_over_time(m[20s:5s])",
            30_000,
            &CancelToken::new(),
        )
        .unwrap();
    assert_eq!(q.1.load(Ordering::Relaxed), 6);
}

#[test]
fn rate_is_bit_exact_with_prometheus_formula() {
    // Samples every second, evaluation off-grid: both ends extrapolated.
    let g = Grid::new(1, 1000);
    let Value::Vector(v) = engine()
        .instant(&g, "rate(m[1m])", 100_500, &CancelToken::new())
        .unwrap()
    else {
        panic!()
    };
    // 60 samples 41..100s: increase 59 over 59s; 0.5s to each end of [40.5s, 100.5s].
    let factor: f64 = (59.0 + 0.5 + 0.5) / 59.0 / 60.0;
    let expect = 59.0 * factor;
    assert_eq!(v[0].v.to_bits(), expect.to_bits());
}

#[test]
fn format_value_matches_prometheus_json() {
    assert_eq!(format_value(0.1), "0.1");
    assert_eq!(format_value(1e21), "1e+21");
    assert_eq!(format_value(f64::INFINITY), "+Inf");
}

#[test]
fn extreme_times_and_offsets_do_not_panic() {
    let g = Grid::new(1, 10);
    let c = CancelToken::new();
    let e = engine();
    for q in [
        "m offset 100000y",
        "m offset -100000y",
        "rate(m[100000y])",
        "max_over_time(m[1000y:100y] offset 1000y)",
        "m @ 100000000000",
    ] {
        let _ = e.instant(&g, q, i64::MAX / 2, &c);
        let _ = e.instant(&g, q, i64::MIN / 2, &c);
    }
    let _ = e.range(&g, "m", i64::MAX - 10, i64::MAX, 3, &c);
}

#[test]
fn endless_subquery_is_stopped_by_the_timeout() {
    let g = Grid::new(1, 10);
    let e = Engine::new(EngineOptions {
        timeout: Duration::from_millis(200),
        ..EngineOptions::default()
    });
    let err = e
        .instant(&g, "count_over_time(m[100y:1ms])", 0, &CancelToken::new())
        .unwrap_err();
    assert_eq!(err, QueryError::Timeout);
}

/// Series with resets, gaps and staleness markers, for consistency checks.
fn irregular() -> Grid {
    let mut series = Vec::new();
    for k in 0..6i64 {
        let mut samples = Vec::new();
        let mut v = 0.0;
        for i in 0..400i64 {
            if (i + k) % 37 == 0 {
                continue; // a gap
            }
            let t = i * 15_000 + k * 1_000;
            if i % 97 == 50 {
                samples.push(Sample::new(t, skopos_model::STALE_NAN));
                continue;
            }
            v += (i % 7 + k) as f64;
            if (i + 3 * k) % 61 == 0 {
                v = 0.0; // a counter reset
            }
            samples.push(Sample::new(t, v));
        }
        series.push(SeriesSamples {
            labels: Labels::from_pairs([
                ("__name__", "c".to_string()),
                ("job", format!("j{}", k % 2)),
                ("k", k.to_string()),
            ]),
            samples,
        });
    }
    Grid {
        series,
        fail: false,
    }
}

#[test]
fn range_query_steps_equal_instant_queries() {
    let g = irregular();
    let c = CancelToken::new();
    // A small sample limit forces the range query into many slices.
    let small = Engine::new(EngineOptions {
        max_samples: 3_000,
        ..EngineOptions::default()
    });
    let exprs = [
        "c",
        "rate(c[1m])",
        "sum by (job) (increase(c[2m]))",
        "max_over_time(rate(c[1m])[5m:30s])",
        "sum_over_time(c[3m:1m] offset 1m)",
        "avg_over_time(max by (job) (c)[10m:])",
        "c @ 3000 - c",
        "resets(c[5m]) + changes(c[5m])",
        "topk(2, c) or bottomk(1, c)",
        "deriv(c[3m]) > 0",
        "absent(c{k=\"1\"} offset 90m)",
        "timestamp(c)",
    ];
    for expr in exprs {
        for (start, end, step) in [(0, 6_000_000, 45_000), (1_234_000, 2_345_000, 7_000)] {
            let Value::Matrix(m) = small.range(&g, expr, start, end, step, &c).unwrap() else {
                panic!("{expr}: expected a matrix")
            };
            assert!(!m.is_empty(), "{expr}: empty result");
            let mut t = start;
            while t <= end {
                let Value::Vector(v) = engine().instant(&g, expr, t, &c).unwrap() else {
                    panic!("{expr}: expected a vector")
                };
                let from_range: Vec<(String, u64)> = {
                    let mut x: Vec<(String, u64)> = m
                        .iter()
                        .filter_map(|s| {
                            s.samples
                                .iter()
                                .find(|p| p.t == t)
                                .map(|p| (s.labels.to_string(), p.v.to_bits()))
                        })
                        .collect();
                    x.sort();
                    x
                };
                let mut from_instant: Vec<(String, u64)> = v
                    .iter()
                    .map(|s| (s.labels.to_string(), s.v.to_bits()))
                    .collect();
                from_instant.sort();
                assert_eq!(from_range, from_instant, "{expr} at {t}");
                t += step;
            }
        }
    }
}

#[test]
fn deeply_nested_queries_are_refused_not_a_stack_overflow() {
    let g = Grid::new(1, 10);
    let d = skopos_promql::MAX_NESTING - 1;
    let ok_queries = [
        format!("{}m{}", "(".repeat(d), ")".repeat(d)),
        format!("{}1", "-".repeat(d)),
        vec!["m"; d].join(" or "),
        format!("{}m{}", "sum(".repeat(d), ")".repeat(d)),
    ];
    let deep = 50_000;
    let refused = [
        format!("{}m{}", "(".repeat(deep), ")".repeat(deep)),
        vec!["1"; deep].join(" + "),
    ];
    // A 2 MiB stack, as tokio's blocking threads have.
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let c = CancelToken::new();
            for q in &ok_queries {
                engine().instant(&g, q, 5_000, &c).unwrap();
            }
            for q in &refused {
                let e = engine().instant(&g, q, 5_000, &c).unwrap_err();
                assert_eq!(e.error_type(), "bad_data");
            }
            // Operators inside strings and label matchers do not count.
            let q = format!("m{{i!=\"{}\"}}", "+".repeat(5000));
            engine().instant(&g, &q, 5_000, &c).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}
