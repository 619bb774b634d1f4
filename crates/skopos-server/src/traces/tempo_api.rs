//! Tempo's query API at the root of the main port, so Grafana's Tempo data
//! source works against skopos: trace by id (`/api/traces/<id>`,
//! `/api/v2/traces/<id>`), search (`/api/search`, TraceQL or the legacy
//! `tags`/`minDuration`/`maxDuration` parameters), tag names and values
//! (v1 and v2), `/api/echo`; and skopos' own `/api/traces/<id>/logs`, the
//! log lines that carry the trace id.
//!
//! A trace is answered in OTLP's shape: JSON with hex ids (OTLP/JSON), or
//! protobuf when the client sends `Accept: application/protobuf` (what
//! Grafana's Tempo data source asks for): v1 as Tempo's `Trace` message
//! (`batches`, field 1 — the wire form of OTLP's `TracesData`), v2 as
//! `TraceByIDResponse` (`trace`, field 1). Errors are plain text, as Tempo
//! answers them. `start`/`end` are Unix seconds; without them a search
//! and the tag endpoints look at the last [`DEFAULT_RANGE_SECS`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use serde_json::{json, Value};
use skopos_model::{
    parse_hex_id, to_hex, AttrValue, Attribute, LogSelect, SpanField, Trace, TraceId,
    TraceQueryable,
};
pub(crate) use skopos_units::now_ns;

use crate::http::api::Params;
use crate::state::AppState;

/// The window a search or tag lookup covers when the caller gives none.
pub const DEFAULT_RANGE_SECS: i64 = 24 * 3600;
/// Tag values returned when the caller gives no `limit`.
const DEFAULT_TAG_VALUES: usize = 1000;
const MAX_TAG_VALUES: usize = 100_000;

/// A Tempo API error: a status and a plain-text message.
pub struct TempoError(pub StatusCode, pub String);

impl TempoError {
    pub fn bad(msg: impl Into<String>) -> Self {
        TempoError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        TempoError(StatusCode::INTERNAL_SERVER_ERROR, msg.into())
    }
}

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

impl From<crate::http::api::ApiError> for TempoError {
    fn from(e: crate::http::api::ApiError) -> Self {
        let r = e.into_response();
        TempoError(r.status(), "invalid request parameters".into())
    }
}

fn query_error(e: skopos_traceql::QueryError) -> TempoError {
    use skopos_traceql::QueryError as Q;
    match e {
        Q::Parse(_) | Q::BadRequest(_) => TempoError::bad(format!("invalid TraceQL query: {e}")),
        Q::Timeout(_) => TempoError(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Q::Canceled => TempoError(
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            e.to_string(),
        ),
        Q::Storage(_) => TempoError::internal(e.to_string()),
    }
}

/// Query parameters of a GET.
pub(crate) async fn params(q: Option<String>) -> Result<Params, TempoError> {
    Params::collect(&Method::GET, &HeaderMap::new(), q, Body::empty())
        .await
        .map_err(TempoError::from)
}

fn unix_secs(p: &Params, name: &str) -> Result<Option<i64>, TempoError> {
    match p.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(|s| Some(s.saturating_mul(1_000_000_000)))
            .map_err(|_| TempoError::bad(format!("invalid {name} {v:?}: want Unix seconds"))),
    }
}

/// `[start, end)` in ns from Tempo's `start`/`end` (Unix seconds); `end`
/// is inclusive of its whole second.
fn time_range(p: &Params) -> Result<(i64, i64), TempoError> {
    let end = unix_secs(p, "end")?
        .map(|e| e.saturating_add(1_000_000_000))
        .unwrap_or_else(|| now_ns().saturating_add(300_000_000_000));
    let start = unix_secs(p, "start")?
        .unwrap_or_else(|| now_ns().saturating_sub(DEFAULT_RANGE_SECS * 1_000_000_000));
    if end <= start {
        return Err(TempoError::bad(
            "invalid start and end: end must be after start",
        ));
    }
    Ok((start, end))
}

fn usize_param(p: &Params, name: &str) -> Result<usize, TempoError> {
    match p.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse::<usize>().map_err(|_| {
            TempoError::bad(format!("invalid {name} {v:?}: want a non-negative integer"))
        }),
    }
}

pub(crate) fn parse_trace_id(id: &str) -> Result<TraceId, TempoError> {
    parse_hex_id::<16>(id).map_err(|e| TempoError::bad(format!("invalid trace id: {e}")))
}

/// Runs blocking store work off the runtime under the query gate.
pub(crate) async fn blocking<T: Send + 'static>(
    st: &Arc<AppState>,
    f: impl FnOnce(&dyn TraceQueryable) -> Result<T, TempoError> + Send + 'static,
) -> Result<T, TempoError> {
    let _permit = st
        .query
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| TempoError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()))?;
    let store = st.traces.clone();
    crate::http::panic::blocking(move || f(store.as_ref())).await
}

// ---- OTLP shape -------------------------------------------------------

pub(crate) fn any_value(v: &AttrValue) -> AnyValue {
    let value = match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttrValue::Bytes(b) => any_value::Value::BytesValue(b.clone()),
        AttrValue::Array(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a.iter().map(any_value).collect(),
        }),
        AttrValue::Map(m) => any_value::Value::KvlistValue(KeyValueList {
            values: key_values(m),
        }),
    };
    AnyValue { value: Some(value) }
}

pub(crate) fn key_values(attrs: &[Attribute]) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|a| KeyValue {
            key: a.key.clone(),
            value: Some(any_value(&a.value)),
            ..Default::default()
        })
        .collect()
}

fn otlp_span(s: &skopos_model::Span) -> otlp::Span {
    otlp::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: s.flags,
        name: s.name.clone(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_ns.max(0) as u64,
        end_time_unix_nano: s.end_ns.max(0) as u64,
        attributes: key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes,
        events: s
            .events
            .iter()
            .map(|e| otlp::span::Event {
                time_unix_nano: e.time_ns.max(0) as u64,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: e.dropped_attributes,
            })
            .collect(),
        dropped_events_count: s.dropped_events,
        links: s
            .links
            .iter()
            .map(|l| otlp::span::Link {
                trace_id: l.trace_id.to_vec(),
                span_id: l.span_id.to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: key_values(&l.attributes),
                dropped_attributes_count: l.dropped_attributes,
                flags: 0,
            })
            .collect(),
        dropped_links_count: s.dropped_links,
        status: Some(otlp::Status {
            message: s.status_message.clone(),
            code: s.status as i32,
        }),
    }
}

/// Spans of one scope.
type ScopeGroup<'a> = (&'a skopos_model::Scope, Vec<otlp::Span>);
/// Scopes of one resource.
type ResourceGroup<'a> = (&'a skopos_model::Resource, Vec<ScopeGroup<'a>>);

/// The trace as OTLP `ResourceSpans`: spans grouped by resource, then by
/// scope, each group in order of its first span (spans in start order).
pub fn resource_spans(trace: &Trace) -> Vec<otlp::ResourceSpans> {
    let mut groups: Vec<ResourceGroup> = Vec::new();
    for s in &trace.spans {
        let gi = match groups
            .iter()
            .position(|(r, _)| std::ptr::eq(*r, s.resource.as_ref()) || **r == *s.resource)
        {
            Some(i) => i,
            None => {
                groups.push((s.resource.as_ref(), Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[gi].1;
        let si = match scopes
            .iter()
            .position(|(sc, _)| std::ptr::eq(*sc, s.scope.as_ref()) || **sc == *s.scope)
        {
            Some(i) => i,
            None => {
                scopes.push((s.scope.as_ref(), Vec::new()));
                scopes.len() - 1
            }
        };
        scopes[si].1.push(otlp_span(s));
    }
    groups
        .into_iter()
        .map(|(r, scopes)| otlp::ResourceSpans {
            resource: Some(OtlpResource {
                attributes: key_values(&r.attributes),
                dropped_attributes_count: r.dropped_attributes,
                ..Default::default()
            }),
            scope_spans: scopes
                .into_iter()
                .map(|(sc, spans)| otlp::ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: sc.name.clone(),
                        version: sc.version.clone(),
                        attributes: key_values(&sc.attributes),
                        dropped_attributes_count: 0,
                    }),
                    spans,
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        })
        .collect()
}

/// Tempo's `tempopb.Trace` (`batches`), wire-compatible with `TracesData`.
#[derive(Clone, PartialEq, prost::Message)]
struct TempoTrace {
    #[prost(message, repeated, tag = "1")]
    batches: Vec<otlp::ResourceSpans>,
}

/// Tempo's `TraceByIDResponse` (the v2 answer).
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TempoTrace>,
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/protobuf") || a.contains("application/x-protobuf"))
}

async fn find_trace(st: &Arc<AppState>, id: &str) -> Result<Trace, TempoError> {
    let tid = parse_trace_id(id)?;
    let found = blocking(st, move |s| {
        s.trace(&tid)
            .map_err(|e| TempoError::internal(e.to_string()))
    })
    .await?;
    found.ok_or_else(|| {
        TempoError(
            StatusCode::NOT_FOUND,
            format!(
                "trace not found: no span of trace {} is stored",
                to_hex(&tid)
            ),
        )
    })
}

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// `GET /api/traces/<id>`: `{"batches": [ResourceSpans...]}`.
pub async fn trace_v1(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let trace = find_trace(&st, &id).await?;
    let batches = resource_spans(&trace);
    if wants_protobuf(&headers) {
        let body = TempoTrace { batches }.encode_to_vec();
        return Ok(([(header::CONTENT_TYPE, "application/protobuf")], body).into_response());
    }
    let v = json!({"batches": serde_json::to_value(&batches).map_err(|e| TempoError::internal(e.to_string()))?});
    Ok(json_response(&v))
}

/// `GET /api/v2/traces/<id>`: `{"trace": {"resourceSpans": [...]}}`.
pub async fn trace_v2(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TempoError> {
    let trace = find_trace(&st, &id).await?;
    let batches = resource_spans(&trace);
    if wants_protobuf(&headers) {
        let body = TraceByIdResponse {
            trace: Some(TempoTrace { batches }),
        }
        .encode_to_vec();
        return Ok(([(header::CONTENT_TYPE, "application/protobuf")], body).into_response());
    }
    let v = json!({"trace": {"resourceSpans": serde_json::to_value(&batches).map_err(|e| TempoError::internal(e.to_string()))?}});
    Ok(json_response(&v))
}

// ---- search -----------------------------------------------------------

fn attr_json(a: &Attribute) -> Value {
    serde_json::to_value(KeyValue {
        key: a.key.clone(),
        value: Some(any_value(&a.value)),
        ..Default::default()
    })
    .unwrap_or(Value::Null)
}

fn spanset_json(s: &skopos_traceql::SpansetMatch) -> Value {
    let mut o = json!({
        "spans": s.spans.iter().map(|m| json!({
            "spanID": to_hex(&m.span_id),
            "name": m.name,
            "startTimeUnixNano": m.start_ns.to_string(),
            "durationNanos": m.duration_ns.to_string(),
            "attributes": m.attributes.iter().map(attr_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "matched": s.matched,
    });
    if !s.attributes.is_empty() {
        o["attributes"] = Value::Array(s.attributes.iter().map(attr_json).collect());
    }
    o
}

/// A search result in Tempo's shape.
pub fn trace_match_json(t: &skopos_traceql::TraceMatch) -> Value {
    let sets: Vec<Value> = t.spansets.iter().map(spanset_json).collect();
    let mut o = json!({
        "traceID": to_hex(&t.trace_id),
        "rootServiceName": t.root_service_name,
        "startTimeUnixNano": t.start_ns.to_string(),
        "durationMs": t.duration_ns / 1_000_000,
    });
    if !t.root_span_name.is_empty() {
        o["rootTraceName"] = Value::String(t.root_span_name.clone());
    }
    if let Some(first) = sets.first() {
        o["spanSet"] = first.clone();
    }
    o["spanSets"] = Value::Array(sets);
    o
}

/// Cancels the search when the handler is dropped (client gone).
struct CancelOnDrop(skopos_traceql::CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// `GET /api/search`.
pub async fn search(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let p = params(q).await?;
    let query = match p.get("q").map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => q.to_string(),
        None => {
            skopos_traceql::legacy_query(p.get("tags"), p.get("minDuration"), p.get("maxDuration"))
                .map_err(query_error)?
        }
    };
    let (start, end) = time_range(&p)?;
    let limit = usize_param(&p, "limit")?;
    let spss = usize_param(&p, "spss")?;
    let engine = skopos_traceql::Engine::new(st.traceql.clone());
    let token = skopos_traceql::CancelToken::new();
    let _guard = CancelOnDrop(token.clone());
    let resp = blocking(&st, move |s| {
        let req = skopos_traceql::SearchRequest {
            query: &query,
            start_ns: start,
            end_ns: end,
            limit,
            spans_per_spanset: spss,
        };
        engine.search_with(s, &req, &token).map_err(query_error)
    })
    .await?;
    let v = json!({
        "traces": resp.traces.iter().map(trace_match_json).collect::<Vec<_>>(),
        "metrics": {
            "inspectedTraces": resp.inspected_traces,
            "inspectedSpans": resp.inspected_spans.to_string(),
            "completedJobs": 1,
            "totalJobs": 1,
        },
    });
    Ok(json_response(&v))
}

// ---- tags -------------------------------------------------------------

/// TraceQL intrinsics listed under the `intrinsic` scope.
const INTRINSICS: [&str; 8] = [
    "duration",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "status",
    "statusMessage",
    "traceDuration",
];

async fn tag_names(st: &Arc<AppState>, p: &Params) -> Result<skopos_model::TagNames, TempoError> {
    let (start, end) = time_range(p)?;
    blocking(st, move |s| {
        s.tag_names(start, end)
            .map_err(|e| TempoError::internal(e.to_string()))
    })
    .await
}

/// `GET /api/search/tags`: `{"tagNames": [...]}` (span and resource keys).
pub async fn tags_v1(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let p = params(q).await?;
    let names = tag_names(&st, &p).await?;
    let mut all: Vec<String> = names.span.into_iter().chain(names.resource).collect();
    all.sort();
    all.dedup();
    Ok(json_response(&json!({ "tagNames": all })))
}

/// `GET /api/v2/search/tags?scope=`: `{"scopes": [{name, tags}]}`.
pub async fn tags_v2(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let p = params(q).await?;
    let scope = p.get("scope").unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(
        scope.as_str(),
        "" | "all" | "none" | "span" | "resource" | "intrinsic"
    ) {
        return Err(TempoError::bad(format!(
            "invalid scope {scope:?}: want span, resource, intrinsic or all"
        )));
    }
    let names = tag_names(&st, &p).await?;
    let want = |s: &str| matches!(scope.as_str(), "" | "all" | "none") || scope == s;
    let mut scopes = Vec::new();
    if want("resource") {
        scopes.push(json!({"name": "resource", "tags": names.resource}));
    }
    if want("span") {
        scopes.push(json!({"name": "span", "tags": names.span}));
    }
    if want("intrinsic") {
        scopes.push(json!({"name": "intrinsic", "tags": INTRINSICS}));
    }
    Ok(json_response(&json!({ "scopes": scopes })))
}

/// A v1 tag name (`service.name`, `http.method`, `name`, `status.code`).
fn v1_field(tag: &str) -> SpanField {
    match tag {
        "service.name" => SpanField::ServiceName,
        "name" => SpanField::Name,
        "status.code" | "status" => SpanField::Status,
        "kind" | "span.kind" => SpanField::Kind,
        other => SpanField::AnyAttr(other.to_string()),
    }
}

/// A v2 tag: a TraceQL attribute (`resource.service.name`, `span.x`, `.x`)
/// or intrinsic (`name`, `status`, `kind`, `rootServiceName`, ...).
fn v2_field(tag: &str) -> Result<SpanField, TempoError> {
    if let Some(k) = tag.strip_prefix("resource.") {
        return Ok(if k == "service.name" {
            SpanField::ServiceName
        } else {
            SpanField::ResourceAttr(k.to_string())
        });
    }
    if let Some(k) = tag.strip_prefix("span.") {
        return Ok(SpanField::SpanAttr(k.to_string()));
    }
    if let Some(k) = tag.strip_prefix('.') {
        return Ok(if k == "service.name" {
            SpanField::ServiceName
        } else {
            SpanField::AnyAttr(k.to_string())
        });
    }
    match tag {
        "name" | "rootName" => Ok(SpanField::Name),
        "status" => Ok(SpanField::Status),
        "kind" => Ok(SpanField::Kind),
        "rootServiceName" => Ok(SpanField::ServiceName),
        _ => Err(TempoError::bad(format!(
            "invalid tag {tag:?}: want a TraceQL attribute (resource.x, span.x, .x) or one of the intrinsics name, status, kind, rootName, rootServiceName"
        ))),
    }
}

async fn tag_values(
    st: &Arc<AppState>,
    p: &Params,
    field: SpanField,
) -> Result<Vec<AttrValue>, TempoError> {
    let (start, end) = time_range(p)?;
    let limit = match usize_param(p, "limit")? {
        0 => DEFAULT_TAG_VALUES,
        n => n.min(MAX_TAG_VALUES),
    };
    blocking(st, move |s| {
        s.tag_values(&field, start, end, limit)
            .map_err(|e| TempoError::internal(e.to_string()))
    })
    .await
}

/// `GET /api/search/tag/<tag>/values`: `{"tagValues": ["a", ...]}`.
pub async fn tag_values_v1(
    State(st): State<Arc<AppState>>,
    Path(tag): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let p = params(q).await?;
    let values = tag_values(&st, &p, v1_field(&tag)).await?;
    let mut texts: Vec<String> = values.iter().map(AttrValue::to_text).collect();
    texts.sort();
    texts.dedup();
    Ok(json_response(&json!({ "tagValues": texts })))
}

/// `GET /api/v2/search/tag/<tag>/values`: typed values,
/// `{"tagValues": [{"type": "string", "value": "a"}, ...]}`.
pub async fn tag_values_v2(
    State(st): State<Arc<AppState>>,
    Path(tag): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let p = params(q).await?;
    let field = v2_field(&tag)?;
    let keyword = matches!(field, SpanField::Status | SpanField::Kind);
    let values = tag_values(&st, &p, field).await?;
    let mut out: Vec<(&'static str, String)> = values
        .iter()
        .map(|v| {
            let t = match v {
                _ if keyword => "keyword",
                AttrValue::Str(_) => "string",
                AttrValue::Int(_) => "int",
                AttrValue::Float(_) => "float",
                AttrValue::Bool(_) => "bool",
                _ => "string",
            };
            (t, v.to_text())
        })
        .collect();
    out.sort();
    out.dedup();
    let list: Vec<Value> = out
        .into_iter()
        .map(|(t, v)| json!({"type": t, "value": v}))
        .collect();
    Ok(json_response(&json!({ "tagValues": list })))
}

// ---- correlation ------------------------------------------------------

/// Most log lines `/api/traces/<id>/logs` returns by default.
const DEFAULT_LOG_LINES: usize = 1000;

/// `GET /api/traces/<id>/logs?start=&end=&limit=`: the log lines whose
/// structured metadata `trace_id` is this trace's id (hex, either case), in
/// Loki's `streams` shape. The window defaults to the trace's own bounds
/// widened by an hour each way, or the last 24 hours when the trace is not
/// stored; `start`/`end` take what Loki takes (ns, seconds, RFC 3339).
pub async fn trace_logs(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, TempoError> {
    let p = params(q).await?;
    let tid = parse_trace_id(&id)?;
    let hex = to_hex(&tid);
    let given = |name: &str| -> Result<Option<i64>, TempoError> {
        match p.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => crate::logs::loki_api::parse_ns(name, v)
                .map(Some)
                .map_err(|_| {
                    TempoError::bad(format!(
                        "invalid {name} {v:?}: want Unix ns, seconds or RFC 3339"
                    ))
                }),
        }
    };
    let (start, end) = match (given("start")?, given("end")?) {
        (Some(s), Some(e)) => (s, e),
        (s, e) => {
            let bounds = blocking(&st, move |s| {
                s.trace(&tid)
                    .map(|t| t.map(|t| t.bounds()))
                    .map_err(|e| TempoError::internal(e.to_string()))
            })
            .await?;
            let hour = 3_600_000_000_000i64;
            let (ds, de) = match bounds {
                Some((a, b)) => (a.saturating_sub(hour), b.saturating_add(hour)),
                None => (
                    now_ns().saturating_sub(24 * hour),
                    now_ns().saturating_add(1),
                ),
            };
            (s.unwrap_or(ds), e.unwrap_or(de))
        }
    };
    if end <= start {
        return Err(TempoError::bad(
            "invalid start and end: end must be after start",
        ));
    }
    let limit = match usize_param(&p, "limit")? {
        0 => DEFAULT_LOG_LINES,
        n => n,
    };
    let logs = st.logs.clone();
    let began = std::time::Instant::now();
    let streams = crate::http::panic::blocking(move || {
        let sel = LogSelect {
            matchers: Vec::new(),
            start,
            end,
            contains: Vec::new(),
            matches: Vec::new(),
        };
        let mut out: Vec<skopos_model::LogStream> = Vec::new();
        let mut count = 0usize;
        use skopos_model::LogQueryable;
        logs.select_logs(&sel, &mut |mut s| {
            s.entries.retain(|e| {
                e.metadata
                    .get("trace_id")
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(&hex))
            });
            if s.entries.is_empty() {
                return true;
            }
            count += s.entries.len();
            match out.iter_mut().find(|o| o.labels == s.labels) {
                Some(o) => o.entries.extend(s.entries),
                None => out.push(s),
            }
            count < limit
        })
        .map(|_| out)
    })
    .await
    .map_err(|e| TempoError::internal(e.to_string()))?;
    let body = crate::logs::loki_api::loki_body(
        &skopos_logql::Value::Streams(streams),
        &crate::logs::loki_api::QueryStats::exec(began.elapsed().as_secs_f64()),
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
