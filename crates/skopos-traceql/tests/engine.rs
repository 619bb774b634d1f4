//! The engine's limits and its API edges: cancellation, timeout, the
//! traces-inspected bound, bad ranges, Jaeger's parameters, error
//! positions, and robustness of the parser against mangled input.

use std::sync::Arc;
use std::time::Duration;

use skopos_model::{
    AttrValue, Attribute, Resource, Scope, Span, SpanField, SpanKind, StatusCode, StorageError,
    TagNames, Trace, TraceId, TraceQueryable, TraceSelect,
};
use skopos_traceql::{
    jaeger_query, parse, CancelToken, CompiledQuery, Engine, EngineOptions, QueryError,
    SearchRequest, MAX_NESTING, MAX_OPERATORS, MAX_QUERY_BYTES,
};

/// A store of `n` one-span traces, newest first, that hands over every
/// trace whatever the select says.
struct Many(Vec<Trace>);

fn span(trace: u8, id: u8, start_ns: i64, name: &str) -> Span {
    let mut trace_id = [0u8; 16];
    trace_id[15] = trace;
    let mut span_id = [0u8; 8];
    span_id[7] = id;
    Span {
        trace_id,
        span_id,
        parent_span_id: None,
        trace_state: String::new(),
        flags: 0,
        name: name.into(),
        kind: SpanKind::Server,
        start_ns,
        end_ns: start_ns + 1_000,
        attributes: vec![Attribute::new("n", AttrValue::Int(id as i64))],
        dropped_attributes: 0,
        events: vec![],
        dropped_events: 0,
        links: vec![],
        dropped_links: 0,
        status: StatusCode::Unset,
        status_message: String::new(),
        resource: Arc::new(Resource {
            attributes: vec![Attribute::str("service.name", "svc")],
            dropped_attributes: 0,
        }),
        scope: Arc::new(Scope::default()),
    }
}

fn many(n: u8) -> Many {
    Many(
        (0..n)
            .rev()
            .map(|i| Trace {
                trace_id: span(i, 1, 0, "").trace_id,
                spans: vec![span(i, 1, i as i64 * 1_000, &format!("op{i}"))],
            })
            .collect(),
    )
}

impl TraceQueryable for Many {
    fn trace(&self, id: &TraceId) -> Result<Option<Trace>, StorageError> {
        Ok(self.0.iter().find(|t| &t.trace_id == id).cloned())
    }
    fn select_traces(
        &self,
        _sel: &TraceSelect,
        f: &mut dyn FnMut(Trace) -> bool,
    ) -> Result<(), StorageError> {
        for t in &self.0 {
            if !f(t.clone()) {
                break;
            }
        }
        Ok(())
    }
    fn tag_names(&self, _: i64, _: i64) -> Result<TagNames, StorageError> {
        Ok(TagNames::default())
    }
    fn tag_values(
        &self,
        _: &SpanField,
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<AttrValue>, StorageError> {
        Ok(vec![])
    }
}

struct Broken;

impl TraceQueryable for Broken {
    fn trace(&self, _: &TraceId) -> Result<Option<Trace>, StorageError> {
        Ok(None)
    }
    fn select_traces(
        &self,
        _: &TraceSelect,
        _: &mut dyn FnMut(Trace) -> bool,
    ) -> Result<(), StorageError> {
        Err(StorageError::Other("disk on fire".into()))
    }
    fn tag_names(&self, _: i64, _: i64) -> Result<TagNames, StorageError> {
        Ok(TagNames::default())
    }
    fn tag_values(
        &self,
        _: &SpanField,
        _: i64,
        _: i64,
        _: usize,
    ) -> Result<Vec<AttrValue>, StorageError> {
        Ok(vec![])
    }
}

fn req(query: &str) -> SearchRequest<'_> {
    SearchRequest {
        query,
        start_ns: 0,
        end_ns: i64::MAX,
        limit: 0,
        spans_per_spanset: 0,
    }
}

#[test]
fn default_limit_and_newest_first() {
    let store = many(30);
    let got = Engine::default()
        .search(&store, "{ }", 0, i64::MAX, 0, 0)
        .unwrap();
    assert_eq!(got.len(), 20, "Tempo's default limit");
    assert_eq!(got[0].root_span_name, "op29");
    assert!(got.windows(2).all(|w| w[0].start_ns >= w[1].start_ns));
    let got = Engine::default()
        .search(&store, "{ span.n = 1 }", 0, i64::MAX, 5, 1)
        .unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].spansets[0].spans[0].attributes[0].key, "n");
}

#[test]
fn traces_inspected_bound_stops_with_partial_results() {
    let store = many(10);
    let engine = Engine::new(EngineOptions {
        max_traces_inspected: 4,
        ..EngineOptions::default()
    });
    let resp = engine
        .search_with(&store, &req("{ }"), &CancelToken::new())
        .unwrap();
    assert!(resp.truncated);
    assert_eq!(resp.inspected_traces, 4);
    assert_eq!(resp.inspected_spans, 4);
    assert_eq!(resp.traces.len(), 4);
    // Under the bound: complete, not truncated.
    let resp = Engine::default()
        .search_with(&store, &req("{ name = \"op3\" }"), &CancelToken::new())
        .unwrap();
    assert!(!resp.truncated);
    assert_eq!(resp.inspected_traces, 10);
    assert_eq!(resp.traces.len(), 1);
}

#[test]
fn cancel_and_timeout_fail_the_search() {
    let store = many(3);
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = Engine::default()
        .search_with(&store, &req("{ }"), &cancel)
        .unwrap_err();
    assert!(matches!(err, QueryError::Canceled), "{err}");
    let engine = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let err = engine
        .search_with(&store, &req("{ }"), &CancelToken::new())
        .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
}

#[test]
fn bad_requests_and_storage_errors_are_reported() {
    let store = many(1);
    let err = Engine::default()
        .search(&store, "{ }", 10, 10, 0, 0)
        .unwrap_err();
    assert_eq!(err.to_string(), "end (10) must be after start (10)");
    let err = Engine::default()
        .search(&store, "{ name = }", 0, 10, 0, 0)
        .unwrap_err();
    assert!(matches!(err, QueryError::Parse(_)));
    let err = Engine::default()
        .search(&Broken, "{ }", 0, 10, 0, 0)
        .unwrap_err();
    assert_eq!(err.to_string(), "storage: disk on fire");
}

#[test]
fn compiled_query_evaluates_a_trace_directly() {
    let t = Trace {
        trace_id: [1; 16],
        spans: vec![span(1, 1, 0, "root"), {
            let mut s = span(1, 2, 10, "child");
            s.parent_span_id = Some(span(1, 1, 0, "").span_id);
            s
        }],
    };
    let q = CompiledQuery::new("{ name = \"root\" } > { }").unwrap();
    let m = q.evaluate(&t, 3).unwrap();
    assert_eq!(m.root_span_name, "root");
    assert_eq!(m.root_service_name, "svc");
    assert_eq!(m.spansets[0].spans[0].name, "child");
    assert!(CompiledQuery::new("{ name = \"child\" } > { }")
        .unwrap()
        .evaluate(&t, 3)
        .is_none());
    let sel = CompiledQuery::new("{ name = \"x\" && duration > 2s }")
        .unwrap()
        .select(5, 6);
    assert_eq!((sel.start, sel.end), (5, 6));
    assert_eq!(sel.equals, vec![(SpanField::Name, "x".to_string())]);
    assert_eq!(sel.min_span_duration_ns, Some(2_000_000_000));
}

#[test]
fn jaeger_parameters_become_one_span_filter() {
    let q = jaeger_query(
        Some("api"),
        Some("GET /"),
        &[("http.status_code".into(), "500".into())],
        Some("10ms"),
        Some(""),
    )
    .unwrap();
    assert_eq!(
        q,
        "{ (((resource.service.name = \"api\") && (name = \"GET /\")) && \
         ((.http.status_code = 500) || (.http.status_code = \"500\"))) && (duration >= 10ms) }"
    );
    assert_eq!(jaeger_query(None, None, &[], None, None).unwrap(), "{ }");
    assert!(jaeger_query(None, None, &[], Some("fast"), None).is_err());
}

#[test]
fn errors_on_later_lines_carry_line_and_column() {
    let err = parse("{ name = \"a\" }\n  && { status = }").unwrap_err();
    assert_eq!((err.line, err.column), (2, 17));
    assert_eq!(
        err.to_string(),
        "parse error at line 2, col 17: expected a field, attribute or literal, found `}`"
    );
    let err = parse("{ name = \"é\" } ??").unwrap_err();
    assert_eq!((err.line, err.column, err.offset), (1, 16, 16));
}

#[test]
fn huge_and_deep_queries_are_refused_not_overflowed() {
    let deep = format!("{}{{ }}{}", "(".repeat(10_000), ")".repeat(10_000));
    let err = parse(&deep).unwrap_err();
    assert!(err.message.contains(&MAX_NESTING.to_string()), "{err}");
    let deep = format!("{{ {}true }}", "!".repeat(10_000));
    assert!(parse(&deep).is_err());
    let long = vec!["{ }"; 1000].join(" && ");
    let err = parse(&long).unwrap_err();
    assert!(err.message.contains(&MAX_OPERATORS.to_string()), "{err}");
    let big = format!("{{ name = \"{}\" }}", "x".repeat(MAX_QUERY_BYTES));
    assert!(parse(&big).unwrap_err().message.contains("bytes"));
    // Within the bounds, everything works.
    let ok = format!(
        "{}{{ }}{}",
        "(".repeat(MAX_NESTING - 1),
        ")".repeat(MAX_NESTING - 1)
    );
    parse(&ok).unwrap();
}

/// Every prefix and every one-character deletion of every query in the
/// case files parses or fails cleanly, and what parses prints canonically.
#[test]
fn mangled_queries_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        queries.extend(
            text.lines()
                .filter(|l| l.starts_with('{') || l.starts_with('('))
                .map(str::to_string),
        );
    }
    assert!(queries.len() > 50);
    let store = many(2);
    let engine = Engine::default();
    for q in &queries {
        let chars: Vec<char> = q.chars().collect();
        for i in 0..chars.len() {
            let prefix: String = chars[..i].iter().collect();
            let deleted: String = chars[..i].iter().chain(&chars[i + 1..]).collect();
            for text in [prefix, deleted] {
                if let Ok(parsed) = parse(&text) {
                    let canon = parsed.to_string();
                    assert_eq!(parse(&canon).as_ref(), Ok(&parsed), "{text:?}");
                    engine.search(&store, &text, 0, i64::MAX, 0, 0).unwrap();
                }
            }
        }
    }
}

/// Found by fuzzing (FUZZING.md): enough tags in Tempo's legacy search
/// built a query over the parser's operator limit, and the client was told
/// about column 2875 of a query it never wrote.
#[test]
fn too_many_legacy_search_tags_are_refused_naming_the_parameters() {
    let tags: Vec<String> = (0..200).map(|i| format!("k{i}=v")).collect();
    let err = skopos_traceql::legacy_query(Some(&tags.join(" ")), None, Some("2s")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("send fewer tags"), "{msg}");
    assert!(!msg.contains("col "), "{msg}");
    let ok: Vec<String> = (0..5).map(|i| format!("k{i}=v")).collect();
    parse(&skopos_traceql::legacy_query(Some(&ok.join(" ")), None, None).unwrap()).unwrap();
    let many: Vec<(String, String)> = (0..300).map(|i| (format!("k{i}"), "v".into())).collect();
    assert!(jaeger_query(Some("api"), None, &many, None, None).is_err());
}
