//! Runs the TraceQL case files in `testdata/*.test` against in-memory
//! [`TraceQueryable`]s. The format (line oriented; `#` starts a comment):
//!
//! ```text
//! clear                         empty the store
//! include <file>                paste a file of this folder (shared traces)
//! trace <id>                    following spans belong to it (hex, short ids padded)
//! <span> <parent|-> <service|-> <name> <kind> <status> <start> <duration> [attrs]
//!     attrs: k=v (span) or @k=v (resource); v is "quoted" (string), an
//!     integer, a float (has a dot), true/false, or a bare word (string)
//!
//! query [start T] [end T] [limit N] [spss N]     a search; the next line is the query
//! query legacy <minDuration|-> <maxDuration|-> [tags...]   search with legacy parameters
//! parse                         parse only; the next line is the query
//! parse legacy <min|-> <max|-> [tags...]        the legacy parameters as TraceQL
//! ```
//!
//! then expectations up to a blank line:
//!
//! ```text
//! <trace>: <span> <span> | <span>    a match, its spansets' listed spans, in result order
//! none                               no match at all
//! matched <trace> <n> [<n>...]       total spans per spanset
//! attrs <trace> <span> [k=v ...]     reported attributes of a listed span, in order
//! setattrs <trace> <i> [k=v ...]     by() attributes of spanset i (0-based)
//! root <trace> <service> <name...>   root service and name of a match
//! hints <f=v ...> [mindur=D] | -     what was pushed into TraceSelect
//! canonical <text>                   (`parse`) the canonical form
//! error <text>                       the exact error text
//! ```
//!
//! Times are durations from the epoch (`0`, `1500ms`). Every search runs
//! against a store that honours the hints (and the time range) and one that
//! ignores both and hands over every trace: the answers must be the same.
//! Every parsed query must also print canonically and parse back to the
//! same tree.

use std::path::Path;
use std::sync::{Arc, Mutex};

use skopos_model::{
    find_attr, parse_hex_id, to_hex, AttrValue, Attribute, Resource, Scope, Span, SpanField,
    SpanKind, StatusCode, StorageError, TagNames, Trace, TraceId, TraceQueryable, TraceSelect,
};
use skopos_traceql::{
    legacy_query, parse, parse_duration, Engine, EngineOptions, SearchRequest, SearchResponse,
};

#[derive(Default)]
struct MemStore {
    traces: Vec<Trace>,
    honour_hints: bool,
    selects: Mutex<Vec<TraceSelect>>,
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

impl TraceQueryable for MemStore {
    fn trace(&self, id: &TraceId) -> Result<Option<Trace>, StorageError> {
        Ok(self.traces.iter().find(|t| &t.trace_id == id).cloned())
    }

    fn select_traces(
        &self,
        sel: &TraceSelect,
        f: &mut dyn FnMut(Trace) -> bool,
    ) -> Result<(), StorageError> {
        self.selects.lock().unwrap().push(sel.clone());
        let mut picked: Vec<(i64, &Trace)> = Vec::new();
        for t in &self.traces {
            let first_in_range = t
                .spans
                .iter()
                .filter(|s| s.start_ns >= sel.start && s.start_ns < sel.end)
                .map(|s| s.start_ns)
                .min();
            if self.honour_hints {
                let Some(first) = first_in_range else {
                    continue;
                };
                let eq_ok = sel.equals.iter().all(|(fld, v)| {
                    t.spans
                        .iter()
                        .any(|s| field_text(s, fld).as_deref() == Some(v.as_str()))
                });
                let dur_ok = sel
                    .min_span_duration_ns
                    .is_none_or(|d| t.spans.iter().any(|s| s.duration_ns() >= d));
                if eq_ok && dur_ok {
                    picked.push((first, t));
                }
            } else {
                picked.push((first_in_range.unwrap_or(i64::MIN), t));
            }
        }
        picked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.trace_id.cmp(&b.1.trace_id)));
        for (_, t) in picked {
            if !f(t.clone()) {
                break;
            }
        }
        Ok(())
    }

    fn tag_names(&self, _start: i64, _end: i64) -> Result<TagNames, StorageError> {
        Ok(TagNames::default())
    }

    fn tag_values(
        &self,
        _field: &SpanField,
        _start: i64,
        _end: i64,
        _limit: usize,
    ) -> Result<Vec<AttrValue>, StorageError> {
        Ok(Vec::new())
    }
}

/// Splits on whitespace, keeping `"..."` (with `\"`) together, quotes kept.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if in_q {
            cur.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            } else if c == '"' {
                in_q = false;
            }
        } else if c == '"' {
            in_q = true;
            cur.push(c);
        } else if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

fn value(s: &str) -> AttrValue {
    if let Some(q) = unquote(s) {
        AttrValue::Str(q)
    } else if let Ok(i) = s.parse::<i64>() {
        AttrValue::Int(i)
    } else if s.contains('.') && s.parse::<f64>().is_ok() {
        AttrValue::Float(s.parse().unwrap())
    } else if s == "true" || s == "false" {
        AttrValue::Bool(s == "true")
    } else {
        AttrValue::Str(s.to_string())
    }
}

fn time(s: &str) -> i64 {
    parse_duration(s).unwrap_or_else(|e| panic!("bad time {s:?}: {e}"))
}

fn tid(s: &str) -> TraceId {
    parse_hex_id::<16>(s).unwrap()
}

fn short(id: &[u8]) -> String {
    let h = to_hex(id);
    let t = h.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

fn kind(s: &str) -> SpanKind {
    (0..6)
        .filter_map(SpanKind::from_i32)
        .find(|k| k.name() == s)
        .unwrap_or_else(|| panic!("bad kind {s}"))
}

fn status(s: &str) -> StatusCode {
    (0..3)
        .filter_map(StatusCode::from_i32)
        .find(|k| k.name() == s)
        .unwrap_or_else(|| panic!("bad status {s}"))
}

fn parse_span(trace_id: TraceId, line: &str) -> Span {
    let w = words(line);
    assert!(w.len() >= 8, "span line needs 8 fields: {line}");
    let mut attributes = Vec::new();
    let mut res = Vec::new();
    if w[2] != "-" {
        res.push(Attribute::str("service.name", w[2].clone()));
    }
    for a in &w[8..] {
        let (k, v) = a.split_once('=').unwrap_or_else(|| panic!("bad attr {a}"));
        match k.strip_prefix('@') {
            Some(rk) => res.push(Attribute::new(rk, value(v))),
            None => attributes.push(Attribute::new(
                unquote(k).unwrap_or(k.to_string()),
                value(v),
            )),
        }
    }
    let start = time(&w[6]);
    Span {
        trace_id,
        span_id: parse_hex_id::<8>(&w[0]).unwrap(),
        parent_span_id: (w[1] != "-").then(|| parse_hex_id::<8>(&w[1]).unwrap()),
        trace_state: String::new(),
        flags: 0,
        name: unquote(&w[3]).unwrap_or_else(|| w[3].clone()),
        kind: kind(&w[4]),
        start_ns: start,
        end_ns: start + time(&w[7]),
        attributes,
        dropped_attributes: 0,
        events: Vec::new(),
        dropped_events: 0,
        links: Vec::new(),
        dropped_links: 0,
        status: status(&w[5]),
        status_message: String::new(),
        resource: Arc::new(Resource {
            attributes: res,
            dropped_attributes: 0,
        }),
        scope: Arc::new(Scope::default()),
    }
}

fn legacy_from(words: &[String]) -> Result<String, skopos_traceql::QueryError> {
    let opt = |s: &String| (s != "-").then(|| s.clone());
    let min = opt(&words[0]);
    let max = opt(&words[1]);
    let tags = words[2..].join(" ");
    legacy_query(
        (!tags.is_empty()).then_some(tags.as_str()),
        min.as_deref(),
        max.as_deref(),
    )
}

fn render_hints(sel: &TraceSelect) -> String {
    let mut parts: Vec<String> = sel
        .equals
        .iter()
        .map(|(f, v)| {
            let f = match f {
                SpanField::Name => "name".to_string(),
                SpanField::ServiceName => "service".to_string(),
                SpanField::Status => "status".to_string(),
                SpanField::Kind => "kind".to_string(),
                SpanField::SpanAttr(k) => format!("span.{k}"),
                SpanField::ResourceAttr(k) => format!("resource.{k}"),
                SpanField::AnyAttr(k) => format!("any.{k}"),
            };
            format!("{f}={v}")
        })
        .collect();
    if let Some(d) = sel.min_span_duration_ns {
        parts.push(format!(
            "mindur={}",
            skopos_traceql::ast::format_duration(d)
        ));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// The result as the expectation lines that describe it.
fn render(resp: &SearchResponse, want: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if resp.traces.is_empty() {
        out.push("none".to_string());
    }
    for t in &resp.traces {
        let sets: Vec<String> = t
            .spansets
            .iter()
            .map(|s| {
                s.spans
                    .iter()
                    .map(|sp| short(&sp.span_id))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push(format!("{}: {}", short(&t.trace_id), sets.join(" | ")));
    }
    // Detail lines only where the expectation asks for them.
    for w in want {
        let parts: Vec<&str> = w.split_whitespace().collect();
        let find = |id: &str| resp.traces.iter().find(|t| short(&t.trace_id) == id);
        match parts.first().copied() {
            Some("matched") => {
                if let Some(t) = find(parts[1]) {
                    let ns: Vec<String> =
                        t.spansets.iter().map(|s| s.matched.to_string()).collect();
                    out.push(format!("matched {} {}", parts[1], ns.join(" ")));
                }
            }
            Some("attrs") => {
                if let Some(t) = find(parts[1]) {
                    for s in t.spansets.iter().flat_map(|s| &s.spans) {
                        if short(&s.span_id) == parts[2] {
                            let a: Vec<String> = s
                                .attributes
                                .iter()
                                .map(|a| format!("{}={}", a.key, a.value.to_text()))
                                .collect();
                            out.push(
                                format!("attrs {} {} {}", parts[1], parts[2], a.join(" "))
                                    .trim_end()
                                    .to_string(),
                            );
                            break;
                        }
                    }
                }
            }
            Some("setattrs") => {
                if let Some(t) = find(parts[1]) {
                    let i: usize = parts[2].parse().unwrap();
                    if let Some(s) = t.spansets.get(i) {
                        let a: Vec<String> = s
                            .attributes
                            .iter()
                            .map(|a| format!("{}={}", a.key, a.value.to_text()))
                            .collect();
                        out.push(
                            format!("setattrs {} {} {}", parts[1], i, a.join(" "))
                                .trim_end()
                                .to_string(),
                        );
                    }
                }
            }
            Some("root") => {
                if let Some(t) = find(parts[1]) {
                    out.push(
                        format!(
                            "root {} {} {}",
                            parts[1], t.root_service_name, t.root_span_name
                        )
                        .trim_end()
                        .to_string(),
                    );
                }
            }
            _ => {}
        }
    }
    out
}

fn check_round_trip(text: &str, ctx: &str) {
    let Ok(q) = parse(text) else { return };
    let canon = q.to_string();
    let again = parse(&canon).unwrap_or_else(|e| panic!("{ctx}: canonical {canon:?}: {e}"));
    assert_eq!(
        again, q,
        "{ctx}: canonical form {canon:?} parses differently"
    );
    assert_eq!(
        again.to_string(),
        canon,
        "{ctx}: canonical form is not stable"
    );
}

struct Case {
    ctx: String,
    cmd: Vec<String>,
    query: String,
    want: Vec<String>,
}

fn run_case(traces: &[Trace], case: &Case, failures: &mut Vec<String>) {
    let ctx = &case.ctx;
    let is_legacy = case.cmd.get(1).map(String::as_str) == Some("legacy");
    let query_text = if is_legacy {
        match legacy_from(&case.cmd[2..]) {
            Ok(q) => q,
            Err(e) => {
                let got = vec![format!("error {e}")];
                if got != case.want {
                    failures.push(format!("{ctx}\n  want {:?}\n  got  {got:?}", case.want));
                }
                return;
            }
        }
    } else {
        case.query.clone()
    };
    check_round_trip(&query_text, ctx);
    if case.cmd[0] == "parse" {
        let got = match parse(&query_text) {
            Ok(q) => vec![format!("canonical {q}")],
            Err(e) => vec![format!("error {e}")],
        };
        if got != case.want {
            failures.push(format!("{ctx}\n  want {:?}\n  got  {got:?}", case.want));
        }
        return;
    }
    let mut req = SearchRequest {
        query: &query_text,
        start_ns: 0,
        end_ns: time("1h"),
        limit: 0,
        spans_per_spanset: 0,
    };
    let mut opts = EngineOptions::default();
    let mut i = 1;
    let args = &case.cmd;
    while i < args.len() && !is_legacy {
        let v = &args[i + 1];
        match args[i].as_str() {
            "start" => req.start_ns = time(v),
            "end" => req.end_ns = time(v),
            "limit" => req.limit = v.parse().unwrap(),
            "spss" => req.spans_per_spanset = v.parse().unwrap(),
            "max_inspected" => opts.max_traces_inspected = v.parse().unwrap(),
            other => panic!("{ctx}: unknown option {other}"),
        }
        i += 2;
    }
    let engine = Engine::new(opts);
    let mut answers = Vec::new();
    for honour in [true, false] {
        let store = MemStore {
            traces: traces.to_vec(),
            honour_hints: honour,
            selects: Mutex::new(Vec::new()),
        };
        let got = match engine.search_with(&store, &req, &skopos_traceql::CancelToken::new()) {
            Ok(resp) => {
                let mut lines = render(&resp, &case.want);
                if case.want.iter().any(|w| w.starts_with("hints ")) {
                    let sels = store.selects.lock().unwrap();
                    for s in sels.iter() {
                        lines.push(format!("hints {}", render_hints(s)));
                    }
                }
                lines
            }
            Err(e) => vec![format!("error {e}")],
        };
        answers.push((honour, got));
    }
    for (honour, got) in answers {
        if got != case.want {
            failures.push(format!(
                "{ctx} (store {} hints)\n  query {query_text}\n  want {:#?}\n  got  {got:#?}",
                if honour { "honouring" } else { "ignoring" },
                case.want
            ));
        }
    }
}

fn run_file(path: &Path, failures: &mut Vec<String>) -> usize {
    let raw = std::fs::read_to_string(path).unwrap();
    // `include <file>` pastes a file of the same folder (shared traces).
    let mut text = String::new();
    for line in raw.lines() {
        match line.strip_prefix("include ") {
            Some(f) => {
                let inc = path.parent().unwrap().join(f.trim());
                text.push_str(&std::fs::read_to_string(&inc).unwrap());
                // Keep line numbers of the including file meaningful.
                text.push_str("#end of include\n");
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut traces: Vec<Trace> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut cases = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let lineno = i + 1;
        i += 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let w = words(line);
        match w[0].as_str() {
            "clear" => traces.clear(),
            "trace" => traces.push(Trace {
                trace_id: tid(&w[1]),
                spans: Vec::new(),
            }),
            "query" | "parse" => {
                let is_legacy = w.get(1).map(String::as_str) == Some("legacy");
                let query = if is_legacy {
                    String::new()
                } else {
                    i += 1;
                    lines[i - 1].to_string()
                };
                let mut want = Vec::new();
                while i < lines.len() && !lines[i].trim().is_empty() {
                    if !lines[i].trim_start().starts_with('#') {
                        want.push(lines[i].trim().to_string());
                    }
                    i += 1;
                }
                cases += 1;
                let case = Case {
                    ctx: format!("{name}:{lineno}"),
                    cmd: w,
                    query,
                    want,
                };
                run_case(&traces, &case, failures);
            }
            _ => {
                let t = traces
                    .last_mut()
                    .unwrap_or_else(|| panic!("{name}:{lineno}: span before `trace`"));
                let span = parse_span(t.trace_id, line);
                t.spans.push(span);
                t.spans.sort_by_key(|s| s.start_ns);
            }
        }
    }
    cases
}

#[test]
fn testdata_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut total = 0;
    for f in &files {
        total += run_file(f, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{total} TraceQL cases passed");
}
