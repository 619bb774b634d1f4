//! Jaeger's query API under `/jaeger` (its `/api/traces/<id>` would collide
//! with Tempo's), so Grafana's Jaeger data source and the Jaeger UI work
//! against skopos pointed at `http://host:port/jaeger`.
//!
//! Every answer is Jaeger's envelope `{"data", "total", "limit", "offset",
//! "errors"}`; traces are Jaeger's JSON model (ids in hex, times and
//! durations in microseconds, tags as `{key, type, value}`, span events as
//! `logs`, the resource as the span's process). OTLP fields Jaeger has no
//! place for become tags the way Jaeger's own OTLP translator names them
//! (`span.kind`, `otel.status_code`, `otel.status_description`, `error`,
//! `otel.scope.name`, `otel.scope.version`); links become `FOLLOWS_FROM`
//! references.
//!
//! `/api/traces` search runs the TraceQL engine's one-span filter
//! (`skopos_traceql::jaeger_query`) over whole traces from the store.
//! Operations and dependencies are derived from stored spans in a window
//! (operations: the last 7 days; dependencies: `endTs`/`lookback`), pairing
//! each span with its parent: an edge wherever the two belong to different
//! services. Both scans are bounded by the TraceQL engine's
//! `max_traces_inspected`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skopos_model::{
    to_hex, AttrValue, Attribute, Span, SpanField, SpanKind, StatusCode as SpanStatus, Trace,
};

use crate::state::AppState;
use crate::traces::tempo_api::{blocking, now_ns, params, parse_trace_id, TempoError};

const DAY_NS: i64 = 86_400_000_000_000;
/// How far back `/api/services/<s>/operations` looks.
const OPERATIONS_WINDOW_NS: i64 = 7 * DAY_NS;

/// A Jaeger error answer: `{"data": null, "errors": [{code, msg}]}`.
pub struct JaegerError(StatusCode, String);

impl From<TempoError> for JaegerError {
    fn from(e: TempoError) -> Self {
        JaegerError(e.0, e.1)
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        let body = json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": self.0.as_u16(), "msg": self.1}],
        });
        (
            self.0,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

fn bad(msg: impl Into<String>) -> JaegerError {
    JaegerError(StatusCode::BAD_REQUEST, msg.into())
}

fn envelope(data: Value, total: usize) -> Response {
    let body = json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---- Jaeger JSON model --------------------------------------------------

fn tag(key: &str, v: &AttrValue) -> Value {
    let (t, value) = match v {
        AttrValue::Str(s) => ("string", json!(s)),
        AttrValue::Bool(b) => ("bool", json!(b)),
        AttrValue::Int(i) => ("int64", json!(i)),
        AttrValue::Float(f) => ("float64", json!(f)),
        AttrValue::Bytes(b) => ("binary", json!(to_hex(b))),
        other => ("string", json!(other.to_text())),
    };
    json!({"key": key, "type": t, "value": value})
}

fn tags(attrs: &[Attribute]) -> Vec<Value> {
    attrs.iter().map(|a| tag(&a.key, &a.value)).collect()
}

fn us(ns: i64) -> i64 {
    ns / 1000
}

fn jaeger_span(s: &Span, process_id: &str) -> Value {
    let trace_id = to_hex(&s.trace_id);
    let mut references = Vec::new();
    if let Some(p) = &s.parent_span_id {
        references.push(json!({"refType": "CHILD_OF", "traceID": trace_id, "spanID": to_hex(p)}));
    }
    for l in &s.links {
        references.push(json!({
            "refType": "FOLLOWS_FROM",
            "traceID": to_hex(&l.trace_id),
            "spanID": to_hex(&l.span_id),
        }));
    }
    let mut t = tags(&s.attributes);
    if !matches!(s.kind, SpanKind::Unspecified) {
        t.push(tag("span.kind", &AttrValue::Str(s.kind.name().into())));
    }
    match s.status {
        SpanStatus::Unset => {}
        SpanStatus::Ok => t.push(tag("otel.status_code", &AttrValue::Str("OK".into()))),
        SpanStatus::Error => {
            t.push(tag("otel.status_code", &AttrValue::Str("ERROR".into())));
            t.push(tag("error", &AttrValue::Bool(true)));
        }
    }
    if !s.status_message.is_empty() {
        t.push(tag(
            "otel.status_description",
            &AttrValue::Str(s.status_message.clone()),
        ));
    }
    if !s.scope.name.is_empty() {
        t.push(tag(
            "otel.scope.name",
            &AttrValue::Str(s.scope.name.clone()),
        ));
    }
    if !s.scope.version.is_empty() {
        t.push(tag(
            "otel.scope.version",
            &AttrValue::Str(s.scope.version.clone()),
        ));
    }
    let logs: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![tag("event", &AttrValue::Str(e.name.clone()))];
            fields.extend(tags(&e.attributes));
            json!({"timestamp": us(e.time_ns), "fields": fields})
        })
        .collect();
    json!({
        "traceID": trace_id,
        "spanID": to_hex(&s.span_id),
        "operationName": s.name,
        "references": references,
        "startTime": us(s.start_ns),
        "duration": us(s.duration_ns()),
        "tags": t,
        "logs": logs,
        "processID": process_id,
        "warnings": null,
        "flags": s.flags & 0xff,
    })
}

/// A trace in Jaeger's JSON: spans, and processes `p1`, `p2`, ... (one per
/// distinct resource, in order of first span).
pub fn jaeger_trace(t: &Trace) -> Value {
    let mut processes: Vec<&skopos_model::Resource> = Vec::new();
    let mut spans = Vec::with_capacity(t.spans.len());
    for s in &t.spans {
        let i = match processes
            .iter()
            .position(|r| std::ptr::eq(*r, s.resource.as_ref()) || **r == *s.resource)
        {
            Some(i) => i,
            None => {
                processes.push(s.resource.as_ref());
                processes.len() - 1
            }
        };
        spans.push(jaeger_span(s, &format!("p{}", i + 1)));
    }
    let procs: serde_json::Map<String, Value> = processes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rest: Vec<Attribute> = r
                .attributes
                .iter()
                .filter(|a| a.key != "service.name")
                .cloned()
                .collect();
            (
                format!("p{}", i + 1),
                json!({"serviceName": r.service_name(), "tags": tags(&rest)}),
            )
        })
        .collect();
    json!({
        "traceID": to_hex(&t.trace_id),
        "spans": spans,
        "processes": procs,
        "warnings": null,
    })
}

// ---- handlers ----------------------------------------------------------

/// `GET /jaeger/api/services`.
pub async fn services(State(st): State<Arc<AppState>>) -> Result<Response, JaegerError> {
    let values = blocking(&st, |s| {
        s.tag_values(&SpanField::ServiceName, 0, i64::MAX, 100_000)
            .map_err(|e| TempoError::internal(e.to_string()))
    })
    .await?;
    let mut names: Vec<String> = values.iter().map(AttrValue::to_text).collect();
    names.sort();
    names.dedup();
    let n = names.len();
    Ok(envelope(json!(names), n))
}

/// Distinct (span name, kind) of a service's spans over the last 7 days.
async fn service_ops(
    st: &Arc<AppState>,
    service: String,
    kind: Option<String>,
) -> Result<Vec<(String, SpanKind)>, JaegerError> {
    let max_traces = st.traceql.max_traces_inspected;
    let deadline = Instant::now() + st.traceql.timeout;
    let ops = blocking(st, move |s| {
        let end = now_ns().saturating_add(300_000_000_000);
        let sel = skopos_model::TraceSelect {
            start: end.saturating_sub(OPERATIONS_WINDOW_NS),
            end,
            equals: vec![(SpanField::ServiceName, service.clone())],
            min_span_duration_ns: None,
        };
        let mut ops: BTreeSet<(String, SpanKind)> = BTreeSet::new();
        let mut seen = 0usize;
        s.select_traces(&sel, &mut |t| {
            for sp in t.spans.iter().filter(|sp| sp.service_name() == service) {
                if kind.as_deref().is_none_or(|k| k == sp.kind.name()) {
                    ops.insert((sp.name.clone(), sp.kind));
                }
            }
            seen += 1;
            (max_traces == 0 || seen < max_traces) && Instant::now() < deadline
        })
        .map_err(|e| TempoError::internal(e.to_string()))?;
        Ok(ops.into_iter().collect::<Vec<_>>())
    })
    .await?;
    Ok(ops)
}

/// `GET /jaeger/api/services/<service>/operations`: the names.
pub async fn service_operations(
    State(st): State<Arc<AppState>>,
    Path(service): Path<String>,
) -> Result<Response, JaegerError> {
    let ops = service_ops(&st, service, None).await?;
    let names: BTreeSet<String> = ops.into_iter().map(|(n, _)| n).collect();
    let n = names.len();
    Ok(envelope(json!(names), n))
}

/// `GET /jaeger/api/operations?service=&spanKind=`: `[{name, spanKind}]`.
pub async fn operations(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, JaegerError> {
    let p = params(q).await?;
    let service = p
        .get("service")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("parameter 'service' is required"))?
        .to_string();
    let kind = p
        .get("spanKind")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let ops = service_ops(&st, service, kind).await?;
    let list: Vec<Value> = ops
        .iter()
        .map(|(n, k)| {
            let k = if matches!(k, SpanKind::Unspecified) {
                ""
            } else {
                k.name()
            };
            json!({"name": n, "spanKind": k})
        })
        .collect();
    let n = list.len();
    Ok(envelope(Value::Array(list), n))
}

fn micros(p: &crate::http::api::Params, name: &str) -> Result<Option<i64>, JaegerError> {
    match p.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(|n| Some(n.saturating_mul(1000)))
            .map_err(|_| {
                bad(format!(
                    "unable to parse param '{name}': {v:?} is not microseconds since the epoch"
                ))
            }),
    }
}

/// `tags` (a JSON object) and repeated `tag=key:value` parameters.
fn jaeger_tags(p: &crate::http::api::Params) -> Result<Vec<(String, String)>, JaegerError> {
    let mut out = Vec::new();
    if let Some(t) = p.get("tags").map(str::trim).filter(|t| !t.is_empty()) {
        let m: BTreeMap<String, Value> = serde_json::from_str(t).map_err(|e| {
            bad(format!(
                "malformed 'tags' parameter: want a JSON object of strings: {e}"
            ))
        })?;
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.push((k, v));
        }
    }
    for t in p.all("tag") {
        let (k, v) = t
            .split_once(':')
            .ok_or_else(|| bad(format!("malformed 'tag' parameter {t:?}: want key:value")))?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `GET /jaeger/api/traces?service=&operation=&tags=&start=&end=&minDuration=&maxDuration=&limit=`.
pub async fn find_traces(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, JaegerError> {
    let p = params(q).await?;
    // Jaeger also takes explicit ids: traceID=a&traceID=b.
    let ids = p.all("traceID");
    if !ids.is_empty() {
        let ids = ids
            .into_iter()
            .map(|i| parse_trace_id(i).map_err(JaegerError::from))
            .collect::<Result<Vec<_>, _>>()?;
        let traces = blocking(&st, move |s| {
            let mut out = Vec::new();
            for id in &ids {
                if let Some(t) = s
                    .trace(id)
                    .map_err(|e| TempoError::internal(e.to_string()))?
                {
                    out.push(jaeger_trace(&t));
                }
            }
            Ok(out)
        })
        .await?;
        let n = traces.len();
        return Ok(envelope(Value::Array(traces), n));
    }
    let service = p.get("service").filter(|s| !s.is_empty());
    if service.is_none() {
        return Err(bad("parameter 'service' is required"));
    }
    let tags = jaeger_tags(&p)?;
    let query = skopos_traceql::jaeger_query(
        service,
        p.get("operation"),
        &tags,
        p.get("minDuration"),
        p.get("maxDuration"),
    )
    .map_err(|e| bad(e.to_string()))?;
    let end = micros(&p, "end")?.unwrap_or_else(|| now_ns().saturating_add(300_000_000_000));
    let start = match micros(&p, "start")? {
        Some(s) => s,
        None => {
            let lookback = p
                .get("lookback")
                .filter(|l| !l.is_empty() && *l != "custom")
                .map(|l| {
                    skopos_traceql::parse_duration(l)
                        .map_err(|e| bad(format!("invalid lookback {l:?}: {e}")))
                })
                .transpose()?
                .unwrap_or(DAY_NS);
            end.saturating_sub(lookback)
        }
    };
    if end <= start {
        return Err(bad("'end' must be after 'start'"));
    }
    let limit = match p.get("limit").map(str::trim).filter(|l| !l.is_empty()) {
        None => 20,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| bad(format!("unable to parse param 'limit': {l:?}")))?
            .max(1),
    };
    let limit = match st.traceql.max_limit {
        0 => limit,
        max => limit.min(max),
    };
    let compiled = skopos_traceql::CompiledQuery::new(&query).map_err(|e| bad(e.to_string()))?;
    let max_traces = st.traceql.max_traces_inspected;
    let timeout = st.traceql.timeout;
    let traces = blocking(&st, move |s| {
        let deadline = Instant::now() + timeout;
        let sel = compiled.select(start, end);
        let mut out: Vec<Trace> = Vec::new();
        let mut seen = 0usize;
        let mut timed_out = false;
        s.select_traces(&sel, &mut |t| {
            seen += 1;
            let in_range = t
                .spans
                .iter()
                .any(|sp| sp.start_ns >= start && sp.start_ns < end);
            if in_range
                && !out.iter().any(|o| o.trace_id == t.trace_id)
                && compiled.evaluate(&t, 1).is_some()
            {
                out.push(t);
            }
            if Instant::now() >= deadline {
                timed_out = true;
                return false;
            }
            out.len() < limit && (max_traces == 0 || seen < max_traces)
        })
        .map_err(|e| TempoError::internal(e.to_string()))?;
        if timed_out && out.is_empty() {
            return Err(TempoError(
                StatusCode::GATEWAY_TIMEOUT,
                format!("search timed out after {timeout:?}"),
            ));
        }
        Ok(out.iter().map(jaeger_trace).collect::<Vec<_>>())
    })
    .await?;
    let n = traces.len();
    Ok(envelope(Value::Array(traces), n))
}

/// `GET /jaeger/api/traces/<id>`.
pub async fn trace(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, JaegerError> {
    let tid = parse_trace_id(&id)?;
    let found = blocking(&st, move |s| {
        s.trace(&tid)
            .map_err(|e| TempoError::internal(e.to_string()))
    })
    .await?;
    match found {
        Some(t) => Ok(envelope(json!([jaeger_trace(&t)]), 1)),
        None => Err(JaegerError(
            StatusCode::NOT_FOUND,
            format!(
                "trace not found: no span of trace {} is stored",
                to_hex(&tid)
            ),
        )),
    }
}

/// Caller → callee service edges of a trace: each span whose parent is in
/// the trace and belongs to another service is one call.
pub fn trace_edges(t: &Trace, edges: &mut HashMap<(String, String), u64>) {
    let by_id: HashMap<_, _> = t.spans.iter().map(|s| (s.span_id, s)).collect();
    for s in &t.spans {
        let Some(parent) = s.parent_span_id.and_then(|p| by_id.get(&p)) else {
            continue;
        };
        let (a, b) = (parent.service_name(), s.service_name());
        if a != b {
            *edges.entry((a.to_string(), b.to_string())).or_default() += 1;
        }
    }
}

/// `GET /jaeger/api/dependencies?endTs=&lookback=` (milliseconds):
/// `[{parent, child, callCount}]` from the traces in the window.
pub async fn dependencies(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, JaegerError> {
    let p = params(q).await?;
    let ms = |name: &str| -> Result<Option<i64>, JaegerError> {
        match p.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(|n| Some(n.saturating_mul(1_000_000)))
                .map_err(|_| {
                    bad(format!(
                        "unable to parse param '{name}': {v:?} is not milliseconds"
                    ))
                }),
        }
    };
    let end = ms("endTs")?.unwrap_or_else(now_ns);
    let lookback = ms("lookback")?.unwrap_or(DAY_NS);
    if lookback <= 0 {
        return Err(bad("'lookback' must be positive"));
    }
    let start = end.saturating_sub(lookback);
    let max_traces = st.traceql.max_traces_inspected;
    let deadline = Instant::now() + st.traceql.timeout;
    let edges = blocking(&st, move |s| {
        let sel = skopos_model::TraceSelect {
            start,
            end: end.saturating_add(1),
            equals: Vec::new(),
            min_span_duration_ns: None,
        };
        let mut edges = HashMap::new();
        let mut seen = 0usize;
        let mut done = std::collections::HashSet::new();
        s.select_traces(&sel, &mut |t| {
            if done.insert(t.trace_id) {
                trace_edges(&t, &mut edges);
            }
            seen += 1;
            (max_traces == 0 || seen < max_traces) && Instant::now() < deadline
        })
        .map_err(|e| TempoError::internal(e.to_string()))?;
        Ok(edges)
    })
    .await?;
    let mut list: Vec<_> = edges.into_iter().collect();
    list.sort();
    let data: Vec<Value> = list
        .into_iter()
        .map(|((a, b), n)| json!({"parent": a, "child": b, "callCount": n}))
        .collect();
    let n = data.len();
    Ok(envelope(Value::Array(data), n))
}
