//! Targets for the query languages and the parameters beside them. Each
//! query is parsed, printed and parsed again, then evaluated over a small
//! in-memory store twice in ways that must agree (PromQL series-major and
//! step by step; LogQL over a store that honours the `contains` hints and
//! one that ignores them; TraceQL matches against the hints it gives).

use std::sync::Arc;
use std::time::Duration;

use skopos_model::{
    find_attr, AttrValue, Attribute, Direction, Labels, LogEntry, LogQueryable, LogSelect,
    LogStream, Matcher, Queryable, Resource, Sample, Scope, SeriesSamples, Span, SpanEvent,
    SpanField, SpanKind, SpanLink, StatusCode, StorageError, Trace, STALE_NAN,
};

use crate::check_message;

// ---------------------------------------------------------------------------
// PromQL

struct Metrics(Vec<SeriesSamples>);

impl Queryable for Metrics {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(self
            .0
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .map(|s| SeriesSamples {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }
    fn series(&self, m: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(m, mint, maxt)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
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

fn metrics() -> Metrics {
    let mut out = Vec::new();
    let step = 15_000;
    let n = 80; // 20 minutes
    for (inst, code, rate) in [("a", "200", 3.0), ("b", "500", 0.5)] {
        let labels = Labels::from_pairs([
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("instance", inst),
            ("code", code),
        ]);
        let samples = (0..n)
            .map(|i| {
                // A counter reset half way.
                let v = if i < 40 { i as f64 } else { (i - 40) as f64 } * rate;
                Sample::new(i * step, v)
            })
            .collect();
        out.push(SeriesSamples { labels, samples });
    }
    let temp = (0..n)
        .map(|i| {
            let v = match i {
                10 => f64::NAN,
                20 => STALE_NAN,
                30 => f64::INFINITY,
                _ => 20.0 + (i % 7) as f64 * 0.5 - 1.0,
            };
            Sample::new(i * step, v)
        })
        .collect();
    out.push(SeriesSamples {
        labels: Labels::from_pairs([("__name__", "node_temp"), ("instance", "a")]),
        samples: temp,
    });
    for (le, f) in [("0.1", 0.2), ("1", 0.7), ("+Inf", 1.0)] {
        out.push(SeriesSamples {
            labels: Labels::from_pairs([
                ("__name__", "req_duration_seconds_bucket"),
                ("job", "api"),
                ("le", le),
            ]),
            samples: (0..n)
                .map(|i| Sample::new(i * step, i as f64 * f))
                .collect(),
        });
    }
    Metrics(out)
}

/// Results in a comparable form: sorted by labels (result order is not
/// specified for vectors), floats by their text.
fn promql_canonical(v: &skopos_promql::Value) -> String {
    use skopos_promql::Value as V;
    match v {
        V::Vector(s) => {
            let mut s: Vec<String> = s.iter().map(|x| format!("{x:?}")).collect();
            s.sort();
            s.join("\n")
        }
        V::Matrix(s) => {
            let mut s: Vec<String> = s.iter().map(|x| format!("{x:?}")).collect();
            s.sort();
            s.join("\n")
        }
        other => format!("{other:?}"),
    }
}

/// PromQL: parse, print and parse again; then evaluate at an instant and
/// over a range, series-major and step by step, which must agree.
pub fn promql(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let ast = match skopos_promql::parse(q) {
        Ok(a) => a,
        Err(e) => return check_message(&e),
    };
    let printed = ast.to_string();
    if let Ok(again) = skopos_promql::parse(&printed) {
        assert_eq!(
            again.to_string(),
            printed,
            "the printed form of {q:?} is not stable"
        );
    }
    let store = metrics();
    let cancel = skopos_promql::CancelToken::new();
    let opts = |series_major| skopos_promql::EngineOptions {
        max_samples: 200_000,
        timeout: Duration::from_secs(2),
        series_major,
        ..Default::default()
    };
    let (a, b) = (
        skopos_promql::Engine::new(opts(true)),
        skopos_promql::Engine::new(opts(false)),
    );
    let runs: [&dyn Fn(&skopos_promql::Engine) -> _; 2] =
        [&|e| e.instant(&store, q, 600_000, &cancel), &|e| {
            e.range(&store, q, 0, 1_200_000, 60_000, &cancel)
        }];
    for run in runs {
        match (run(&a), run(&b)) {
            (Ok(x), Ok(y)) => assert_eq!(
                promql_canonical(&x),
                promql_canonical(&y),
                "series-major and step-by-step evaluation of {q:?} differ"
            ),
            (Err(e), _) | (_, Err(e)) => check_message(&e),
        }
    }
}

// ---------------------------------------------------------------------------
// LogQL

#[derive(Default)]
struct Logs {
    streams: Vec<LogStream>,
    honour_contains: bool,
}

impl LogQueryable for Logs {
    fn select_logs(
        &self,
        sel: &LogSelect,
        f: &mut dyn FnMut(LogStream) -> bool,
    ) -> Result<(), StorageError> {
        let mut streams: Vec<&LogStream> = self
            .streams
            .iter()
            .filter(|s| sel.matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .collect();
        streams.sort_by(|a, b| a.labels.cmp(&b.labels));
        for s in streams {
            let entries: Vec<LogEntry> = s
                .entries
                .iter()
                .filter(|e| e.ts >= sel.start && e.ts < sel.end)
                .filter(|e| {
                    !self.honour_contains || sel.contains.iter().all(|c| e.line.contains(c))
                })
                .cloned()
                .collect();
            // Handed over in parts, as the trait allows.
            for part in entries.chunks(3) {
                if !f(LogStream {
                    labels: s.labels.clone(),
                    entries: part.to_vec(),
                }) {
                    return Ok(());
                }
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

const SEC: i64 = 1_000_000_000;

fn log_streams() -> Vec<LogStream> {
    let lines_api = [
        r#"level=info msg="request done" method=GET path=/users status=200 duration=15ms size=2KB trace_id=4bf92f3577b34da6a3ce929d0e0e4736"#,
        r#"level=error msg="upstream timeout" method=POST path=/orders status=504 duration=1.5s size=312B"#,
        r#"level=warn msg="slow query" duration=350ms rows=12 query="select * from t where a=\"x\"""#,
        r#"{"level":"info","msg":"ok","status":200,"latency":"20ms","req":{"method":"GET","path":"/a"},"tags":["x","y"]}"#,
        r#"{"level":"error","msg":"boom","status":500,"latency":"2s","err":{"code":17,"detail":null}}"#,
        r#"10.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326"#,
        "plain text line with ünïcödé and a tab\tand k=\"\\é\" x=1",
        "",
    ];
    let mut api = Vec::new();
    for (i, l) in lines_api.iter().cycle().take(24).enumerate() {
        let mut e = LogEntry::new(i as i64 * 20 * SEC, *l);
        if i % 5 == 0 {
            e.metadata = Labels::from_pairs([("trace_id", "abc123"), ("user", "u1")]);
        }
        api.push(e);
    }
    let web = (0..12)
        .map(|i| {
            LogEntry::new(
                i * 45 * SEC + 7,
                format!(
                    r#"{{"level":"{}","n":{i},"msg":"web {i}","bytes":{}}}"#,
                    if i % 3 == 0 { "error" } else { "info" },
                    i * 1000
                ),
            )
        })
        .collect();
    vec![
        LogStream {
            labels: Labels::from_pairs([("app", "api"), ("env", "prod")]),
            entries: api,
        },
        LogStream {
            labels: Labels::from_pairs([("app", "web"), ("env", "dev")]),
            entries: web,
        },
    ]
}

fn logql_engine() -> skopos_logql::Engine {
    skopos_logql::Engine::new(skopos_logql::EngineOptions {
        max_series: 200,
        max_samples: 200_000,
        max_entries_limit: 1000,
        timeout: Duration::from_secs(2),
    })
}

/// Parses a LogQL query; when it parses, its canonical text parses to the
/// same canonical text.
fn logql_parse_round_trip(q: &str) -> Option<skopos_logql::Expr> {
    match skopos_logql::parse(q) {
        Ok(e) => {
            let canon = e.to_string();
            let again = skopos_logql::parse(&canon).unwrap_or_else(|err| {
                panic!("the canonical form {canon:?} of {q:?} does not parse: {err}")
            });
            assert_eq!(
                again.to_string(),
                canon,
                "the canonical form of {q:?} is not stable"
            );
            Some(e)
        }
        Err(e) => {
            check_message(&e);
            None
        }
    }
}

/// LogQL: parse and round trip, then evaluate (log queries both ways,
/// metric queries over a range and at an instant) over a store that
/// honours the `contains` hints and one that ignores them.
pub fn logql(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let Some(expr) = logql_parse_round_trip(q) else {
        return;
    };
    let engine = logql_engine();
    let cancel = skopos_logql::CancelToken::new();
    let stores = [true, false].map(|honour_contains| Logs {
        streams: log_streams(),
        honour_contains,
    });
    let run = |s: &Logs, i: usize| match (expr.is_log(), i) {
        (true, 0) => engine.query_range(s, q, 0, 600 * SEC, 0, 50, Direction::Forward, &cancel),
        (true, _) => engine.query_range(s, q, 0, 600 * SEC, 0, 7, Direction::Backward, &cancel),
        (false, 0) => engine.query_range(
            s,
            q,
            0,
            600 * SEC,
            30 * SEC,
            0,
            Direction::Backward,
            &cancel,
        ),
        (false, _) => engine.query_instant(s, q, 300 * SEC, &cancel),
    };
    for i in 0..2 {
        match (run(&stores[0], i), run(&stores[1], i)) {
            (Ok(a), Ok(b)) => assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "{q:?} answers differently when the store honours the contains hints"
            ),
            (Err(e), _) | (_, Err(e)) => check_message(&e),
        }
    }
}

/// The LogQL parser stages and templates over one log line. The input is
/// `<stages>\n<line>`: the query `{app="x"} | <stages>` runs over the line
/// through `process_entry` (as live tailing does) and through the engine
/// over a one-line store; both must give the same labels and line.
pub fn logql_parsers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (stages, line) = text.split_once('\n').unwrap_or((text, ""));
    let q = format!("{{app=\"x\"}} | {stages}");
    let Some(skopos_logql::Expr::Log(log)) = logql_parse_round_trip(&q) else {
        return;
    };
    let labels = Labels::from_pairs([("app", "x")]);
    let mut entry = LogEntry::new(5 * SEC, line);
    entry.metadata = Labels::from_pairs([("trace_id", "abc")]);
    let direct = skopos_logql::process_entry(&log, &labels, &entry);
    let store = Logs {
        streams: vec![LogStream {
            labels: labels.clone(),
            entries: vec![entry],
        }],
        honour_contains: true,
    };
    let cancel = skopos_logql::CancelToken::new();
    let got =
        logql_engine().query_range(&store, &q, 0, 10 * SEC, 0, 10, Direction::Forward, &cancel);
    match got {
        Ok(skopos_logql::Value::Streams(streams)) => {
            let via_engine: Vec<(Labels, String)> = streams
                .into_iter()
                .flat_map(|s| {
                    let l = s.labels;
                    s.entries.into_iter().map(move |e| (l.clone(), e.line))
                })
                .collect();
            assert_eq!(
                via_engine,
                direct.into_iter().collect::<Vec<_>>(),
                "process_entry and the engine disagree on {q:?} over {line:?}"
            );
        }
        Ok(other) => panic!("a log query answered {other:?}"),
        Err(e) => check_message(&e),
    }
}

// ---------------------------------------------------------------------------
// TraceQL

#[allow(clippy::too_many_arguments)] // a fixture, read as a table
fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    kind: SpanKind,
    status: StatusCode,
    start_ms: i64,
    dur_ms: i64,
    attrs: Vec<Attribute>,
) -> Span {
    let mut trace_id = [0u8; 16];
    trace_id[15] = trace;
    let sid = |i: u8| {
        let mut s = [0u8; 8];
        s[0] = trace;
        s[7] = i;
        s
    };
    Span {
        trace_id,
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        trace_state: String::new(),
        flags: 1,
        name: name.into(),
        kind,
        start_ns: start_ms * 1_000_000,
        end_ns: (start_ms + dur_ms) * 1_000_000,
        attributes: attrs,
        dropped_attributes: 0,
        events: vec![SpanEvent {
            time_ns: start_ms * 1_000_000 + 1,
            name: "event".into(),
            attributes: vec![Attribute::str("exception.message", "boom")],
            dropped_attributes: 0,
        }],
        dropped_events: 0,
        links: vec![SpanLink {
            trace_id,
            span_id: sid(1),
            trace_state: String::new(),
            attributes: vec![],
            dropped_attributes: 0,
        }],
        dropped_links: 0,
        status,
        status_message: if status == StatusCode::Error {
            "failed".into()
        } else {
            String::new()
        },
        resource: Arc::new(Resource {
            attributes: vec![
                Attribute::str("service.name", service),
                Attribute::str("deployment", "prod"),
                Attribute::new("pid", AttrValue::Int(42)),
            ],
            dropped_attributes: 0,
        }),
        scope: Arc::new(Scope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: vec![],
        }),
    }
}

fn traces() -> Vec<Trace> {
    use SpanKind::*;
    use StatusCode as S;
    let a = |k: &str, v: AttrValue| Attribute::new(k, v);
    let t1 = vec![
        span(
            1,
            1,
            None,
            "api",
            "GET /users",
            Server,
            S::Unset,
            0,
            100,
            vec![
                Attribute::str("http.method", "GET"),
                a("http.status_code", AttrValue::Int(200)),
            ],
        ),
        span(
            1,
            2,
            Some(1),
            "api",
            "SELECT users",
            Client,
            S::Ok,
            10,
            50,
            vec![
                Attribute::str("db.system", "postgres"),
                a("cache.hit", AttrValue::Bool(true)),
            ],
        ),
        span(
            1,
            3,
            Some(2),
            "db",
            "query",
            Server,
            S::Ok,
            15,
            40,
            vec![
                a("rows", AttrValue::Float(12.5)),
                a("raw", AttrValue::Bytes(vec![0, 159, 255])),
            ],
        ),
    ];
    let t2 = vec![
        span(
            2,
            1,
            None,
            "web",
            "GET /",
            Server,
            S::Error,
            1000,
            2000,
            vec![a("http.status_code", AttrValue::Int(500))],
        ),
        span(
            2,
            2,
            Some(1),
            "api",
            "POST /orders",
            Server,
            S::Error,
            1100,
            1500,
            vec![
                Attribute::str("error.type", "timeout"),
                a(
                    "list",
                    AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("x".into())]),
                ),
            ],
        ),
        span(
            2,
            3,
            Some(2),
            "queue",
            "consume",
            Consumer,
            S::Ok,
            1300,
            300,
            vec![],
        ),
    ];
    // Root span missing.
    let t3 = vec![span(
        3,
        2,
        Some(1),
        "cart",
        "checkout",
        Server,
        S::Ok,
        2000,
        250,
        vec![
            a("amount", AttrValue::Float(19.99)),
            Attribute::str("user id", "42"),
        ],
    )];
    [t1, t2, t3]
        .into_iter()
        .map(|spans| Trace {
            trace_id: spans[0].trace_id,
            spans,
        })
        .collect()
}

fn field_text(span: &Span, f: &SpanField) -> Option<String> {
    match f {
        SpanField::Name => Some(span.name.clone()),
        SpanField::ServiceName => {
            find_attr(&span.resource.attributes, "service.name").map(AttrValue::to_text)
        }
        SpanField::Status => Some(span.status.name().to_string()),
        SpanField::Kind => Some(span.kind.name().to_string()),
        SpanField::SpanAttr(k) => find_attr(&span.attributes, k).map(AttrValue::to_text),
        SpanField::ResourceAttr(k) => {
            find_attr(&span.resource.attributes, k).map(AttrValue::to_text)
        }
        SpanField::AnyAttr(k) => find_attr(&span.attributes, k)
            .or_else(|| find_attr(&span.resource.attributes, k))
            .map(AttrValue::to_text),
    }
}

/// TraceQL: parse, print and parse back to the same tree; evaluate over a
/// few traces; every trace that matches satisfies the hints the query gives
/// the store (so a store honouring them never loses a match).
pub fn traceql(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let query = match skopos_traceql::parse(q) {
        Ok(x) => x,
        Err(e) => return check_message(&e),
    };
    let canon = query.to_string();
    let again = skopos_traceql::parse(&canon)
        .unwrap_or_else(|e| panic!("the canonical form {canon:?} of {q:?} does not parse: {e}"));
    assert_eq!(
        again, query,
        "the canonical form {canon:?} of {q:?} parses differently"
    );
    assert_eq!(
        again.to_string(),
        canon,
        "the canonical form of {q:?} is not stable"
    );
    let compiled = match skopos_traceql::CompiledQuery::from_query(query) {
        Ok(c) => c,
        Err(e) => return check_message(&e),
    };
    let sel = compiled.select(0, i64::MAX);
    for t in traces() {
        if compiled.evaluate(&t, 3).is_none() {
            continue;
        }
        for (f, v) in &sel.equals {
            assert!(
                t.spans
                    .iter()
                    .any(|s| field_text(s, f).as_deref() == Some(v.as_str())),
                "{q:?} matches a trace that fails its own hint {f:?}={v:?}"
            );
        }
        if let Some(d) = sel.min_span_duration_ns {
            assert!(
                t.spans.iter().any(|s| s.duration_ns() >= d),
                "{q:?} matches a trace with no span as long as its hint {d}ns"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Parameters

/// Times, durations, sizes, ids and the legacy search parameters, one per
/// line: each line goes to every parser of such a parameter (`skopos-units`
/// is what the server's `time`, `start`, `step`, `timeout` parameters and
/// the flags go through).
/// Queries built from the Tempo and Jaeger search parameters must parse.
pub fn units(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    if let Some(secs) = data.get(..8) {
        let secs = i64::from_le_bytes(secs.try_into().expect("8 bytes"));
        let c = skopos_units::civil_from_unix(secs);
        assert!((1..=12).contains(&c.month), "{secs}: {c:?}");
    }
    for l in &lines {
        // The one grammar of each unit (flags, config, API parameters):
        // what parses prints in a form that parses back to the same value.
        match skopos_units::parse_rfc3339(l) {
            Ok(ns) => {
                let printed = skopos_units::format_rfc3339(ns, skopos_units::Precision::Nanos);
                assert_eq!(
                    skopos_units::parse_rfc3339(&printed),
                    Ok(ns),
                    "{l:?} -> {printed:?}"
                );
            }
            Err(e) => check_message(&e),
        }
        if let Err(e) = skopos_units::parse_rfc3339_millis(l) {
            check_message(&e);
        }
        match skopos_units::parse_duration(l) {
            Ok(d) => {
                let printed = skopos_units::format_duration(d);
                assert_eq!(
                    skopos_units::parse_duration(&printed),
                    Ok(d),
                    "{l:?} -> {printed:?}"
                );
            }
            Err(e) => check_message(&e),
        }
        if let Err(e) = skopos_units::parse_duration_param(l) {
            check_message(&e);
        }
        match skopos_units::parse_size(l) {
            Ok(b) => {
                let printed = skopos_units::format_size(b);
                assert_eq!(
                    skopos_units::parse_size(&printed),
                    Ok(b),
                    "{l:?} -> {printed:?}"
                );
            }
            Err(e) => check_message(&e),
        }
        if let Err(e) = skopos_traceql::parse_duration(l) {
            check_message(&e);
        }
        if let Err(e) = skopos_ingest::scrape::parse_duration(l) {
            check_message(&e);
        }
        if let Err(e) = skopos_ingest::scrape::parse_size(l) {
            check_message(&e);
        }
        if let Ok(id) = skopos_model::parse_hex_id::<16>(l) {
            assert_eq!(
                skopos_model::parse_hex_id::<16>(&skopos_model::to_hex(&id)),
                Ok(id)
            );
        }
        let _ = skopos_model::parse_hex_id::<8>(l);
        if let Err(e) = skopos_traceql::parse_logfmt(l) {
            check_message(&e);
        }
    }
    let at = |i: usize| lines.get(i).copied().filter(|s| !s.is_empty());
    for built in [
        skopos_traceql::legacy_query(at(0), at(1), at(2)),
        skopos_traceql::jaeger_query(
            at(0),
            at(1),
            &[(at(2).unwrap_or("k").into(), at(3).unwrap_or("v").into())],
            at(4),
            at(5),
        ),
    ] {
        match built {
            Ok(q) => {
                if let Err(e) = skopos_traceql::parse(&q) {
                    panic!(
                        "the search parameters {lines:?} built {q:?}, which does not parse: {e}"
                    );
                }
            }
            Err(e) => check_message(&e),
        }
    }
}
