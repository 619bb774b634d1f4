//! The engine's API beyond what the case files check: cancellation, the
//! timeout, storage errors, and `parse`/`pushdown_contains`.

use std::time::Duration;

use skopos_logql::{CancelToken, Engine, EngineOptions, Expr, QueryError, Value};
use skopos_model::{
    Direction, Labels, LogEntry, LogQueryable, LogSelect, LogStream, Matcher, StorageError,
};

/// One stream of `n` entries, one per millisecond; runs `on_read` before
/// handing each part over.
struct Store {
    n: i64,
    on_read: Box<dyn Fn() + Send + Sync>,
    fail: bool,
}

impl LogQueryable for Store {
    fn select_logs(
        &self,
        sel: &LogSelect,
        f: &mut dyn FnMut(LogStream) -> bool,
    ) -> Result<(), StorageError> {
        if self.fail {
            return Err(StorageError::Other("disk on fire".into()));
        }
        let labels = Labels::from_pairs([("app", "a")]);
        if !sel.matchers.iter().all(|m| m.matches_labels(&labels)) {
            return Ok(());
        }
        for chunk in (0..self.n).collect::<Vec<_>>().chunks(500) {
            (self.on_read)();
            let entries = chunk
                .iter()
                .map(|i| LogEntry::new(i * 1_000_000, format!("line {i}")))
                .filter(|e| e.ts >= sel.start && e.ts < sel.end)
                .collect();
            if !f(LogStream {
                labels: labels.clone(),
                entries,
            }) {
                break;
            }
        }
        Ok(())
    }
    fn log_label_names(&self, _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        Ok(vec!["app".into()])
    }
    fn log_label_values(
        &self,
        _: &str,
        _: &[Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(vec!["a".into()])
    }
}

fn store(n: i64) -> Store {
    Store {
        n,
        on_read: Box::new(|| {}),
        fail: false,
    }
}

const SEC: i64 = 1_000_000_000;

#[test]
fn cancelled_token_stops_a_log_query_mid_read() {
    let cancel = CancelToken::new();
    let c = cancel.clone();
    let s = Store {
        on_read: Box::new(move || c.cancel()),
        ..store(10_000)
    };
    let err = Engine::default()
        .query_range(
            &s,
            r#"{app="a"}"#,
            0,
            100 * SEC,
            1,
            100,
            Direction::Backward,
            &cancel,
        )
        .unwrap_err();
    assert_eq!(err, QueryError::Canceled);
    assert_eq!(err.error_type(), "canceled");
}

#[test]
fn cancelled_token_stops_a_metric_query() {
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = Engine::default()
        .query_instant(
            &store(10),
            r#"count_over_time({app="a"}[1m])"#,
            10 * SEC,
            &cancel,
        )
        .unwrap_err();
    assert_eq!(err, QueryError::Canceled);
}

#[test]
fn zero_timeout_times_out() {
    let engine = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let err = engine
        .query_range(
            &store(10),
            r#"rate({app="a"}[1s])"#,
            0,
            10 * SEC,
            SEC,
            100,
            Direction::Forward,
            &CancelToken::new(),
        )
        .unwrap_err();
    assert_eq!(err, QueryError::Timeout);
    assert_eq!(err.error_type(), "timeout");
}

#[test]
fn storage_errors_are_internal() {
    let s = Store {
        fail: true,
        ..store(1)
    };
    let err = Engine::default()
        .query_range(
            &s,
            r#"{app="a"}"#,
            0,
            SEC,
            1,
            10,
            Direction::Forward,
            &CancelToken::new(),
        )
        .unwrap_err();
    assert_eq!(err.error_type(), "internal");
    assert_eq!(err.to_string(), "disk on fire");
}

#[test]
fn limit_applies_across_many_parts() {
    // 10 000 entries in parts of 500; the newest 3 are 9999, 9998, 9997 ms.
    let got = Engine::default()
        .query_range(
            &store(10_000),
            r#"{app="a"} |= "line""#,
            0,
            100 * SEC,
            1,
            3,
            Direction::Backward,
            &CancelToken::new(),
        )
        .unwrap();
    let Value::Streams(streams) = got else {
        panic!("not streams: {got:?}")
    };
    let ts: Vec<i64> = streams[0]
        .entries
        .iter()
        .map(|e| e.ts / 1_000_000)
        .collect();
    assert_eq!(ts, vec![9999, 9998, 9997]);
}

#[test]
fn rate_over_many_entries() {
    // 10 000 entries over 10 s: the window (0, 10s] at 10 s holds 9 999 of them.
    let got = Engine::default()
        .query_instant(
            &store(10_000),
            r#"rate({app="a"}[10s])"#,
            10 * SEC,
            &CancelToken::new(),
        )
        .unwrap();
    let Value::Vector(v) = got else {
        panic!("not a vector: {got:?}")
    };
    assert_eq!(v.len(), 1);
    assert!((v[0].v - 999.9).abs() < 1e-9, "{}", v[0].v);
}

#[test]
fn pushdown_stops_where_the_line_is_rewritten() {
    let Expr::Log(log) = skopos_logql::parse(
        r#"{app="a"} |= "x" |~ "y" | json |= "z" | line_format "{{.a}}" |= "w""#,
    )
    .unwrap() else {
        panic!("not a log query")
    };
    assert_eq!(skopos_logql::pushdown_contains(&log), vec!["x", "z"]);
}

#[test]
fn parse_errors_are_bad_data() {
    let err = skopos_logql::parse("{app=\"a\"}\n| json\n| unknown_thing").unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    assert_eq!(
        err.to_string(),
        "parse error at line 3, col 16: syntax error: unexpected $end, expecting a comparison operator"
    );
}

#[test]
fn long_operator_chains_evaluate() {
    // 250 operators: under the parser's limit, and deep enough that the
    // evaluator's recursion must fit a test thread's stack.
    let q = "sum(count_over_time({app=\"a\"}[1s])) + 1".to_string() + &" + 1".repeat(249);
    let got = Engine::default()
        .query_instant(&store(10), &q, SEC, &CancelToken::new())
        .unwrap();
    let Value::Vector(v) = got else {
        panic!("not a vector: {got:?}")
    };
    // Entries at 0..9 ms; the window (0, 1s] leaves out the one at 0.
    assert_eq!(v[0].v, 9.0 + 250.0);
}

/// A store that ignores every part of the request: all streams, all times.
struct CarelessStore;

impl LogQueryable for CarelessStore {
    fn select_logs(
        &self,
        _sel: &LogSelect,
        f: &mut dyn FnMut(LogStream) -> bool,
    ) -> Result<(), StorageError> {
        for app in ["a", "b"] {
            let go_on = f(LogStream {
                labels: Labels::from_pairs([("app", app)]),
                entries: (0..5)
                    .map(|i| LogEntry::new(i * SEC, format!("{app} {i}")))
                    .collect(),
            });
            if !go_on {
                break;
            }
        }
        Ok(())
    }
    fn log_label_names(&self, _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
    fn log_label_values(
        &self,
        _: &str,
        _: &[Matcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

#[test]
fn engine_checks_what_a_careless_store_hands_over() {
    let got = Engine::default()
        .query_range(
            &CarelessStore,
            r#"{app="b"} |= "3""#,
            SEC,
            4 * SEC,
            1,
            10,
            Direction::Forward,
            &CancelToken::new(),
        )
        .unwrap();
    let Value::Streams(streams) = got else {
        panic!("not streams: {got:?}")
    };
    assert_eq!(streams.len(), 1);
    let lines: Vec<&str> = streams[0].entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, vec!["b 3"]);
}

#[test]
fn extreme_times_do_not_overflow() {
    let e = Engine::default();
    let c = CancelToken::new();
    let q = r#"count_over_time({app="a"}[1h] offset 1h)"#;
    let err = e
        .query_range(
            &store(1),
            q,
            i64::MIN,
            i64::MAX,
            1,
            10,
            Direction::Forward,
            &c,
        )
        .unwrap_err();
    assert_eq!(err.error_type(), "bad_data");
    for t in [i64::MIN, i64::MAX, 0] {
        e.query_instant(&store(1), q, t, &c).unwrap();
        e.query_range(
            &store(1),
            r#"{app="a"}"#,
            t,
            t.saturating_add(SEC),
            1,
            10,
            Direction::Backward,
            &c,
        )
        .unwrap();
    }
}
