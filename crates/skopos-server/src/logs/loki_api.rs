//! Loki's push and label API: `POST /loki/api/v1/push` (JSON or
//! snappy-compressed protobuf, optionally gzip), `GET /loki/api/v1/labels`
//! and `GET /loki/api/v1/label/<name>/values`.
//!
//! Status codes as Loki gives them: 204 when stored; 400 for a body that
//! cannot be decoded or a line or label limit; 429 when the active-stream
//! limit is reached; 415 for another content type; 413 for an oversized
//! body; 503 when the store cannot take the write.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use skopos_logs::LogsError;
use skopos_model::{LogBatch, LogQueryable};
pub(crate) use skopos_units::now_ns;

use crate::http::api::{parse_selector, ApiError, Params};
use crate::state::AppState;

const PROTO: &str = "loki_push";

fn decode(headers: &HeaderMap, raw: &[u8], limit: usize) -> Result<LogBatch, (StatusCode, String)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let bad = |msg: String| (StatusCode::BAD_REQUEST, format!("{msg}\n"));
    if ct.starts_with("application/json") {
        skopos_ingest::loki::decode_json(raw).map_err(|e| bad(e.to_string()))
    } else if ct.starts_with("application/x-protobuf") {
        let n =
            snap::raw::decompress_len(raw).map_err(|e| bad(format!("invalid snappy body: {e}")))?;
        if n > limit {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("decompressed body of {n} bytes exceeds the limit of {limit}\n"),
            ));
        }
        let plain = snap::raw::Decoder::new()
            .decompress_vec(raw)
            .map_err(|e| bad(format!("invalid snappy body: {e}")))?;
        skopos_ingest::loki::decode_proto(&plain).map_err(|e| bad(e.to_string()))
    } else {
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {ct:?}: use application/json or application/x-protobuf\n"
            ),
        ))
    }
}

pub async fn push(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let raw = match crate::http::body::read_body(&headers, body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            st.metrics.rejected(PROTO, "body", 1);
            return (e.status, e.message).into_response();
        }
    };
    let batch = match decode(&headers, &raw, st.max_body_bytes) {
        Ok(b) => b,
        Err(resp) => {
            st.metrics.rejected(PROTO, "malformed", 1);
            return resp.into_response();
        }
    };
    store(&st, PROTO, batch).await
}

/// Appends off the runtime; answers 204, or the status the error calls for.
async fn store(st: &AppState, proto: &'static str, batch: LogBatch) -> Response {
    match st.append_logs(batch).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(LogsError::Limit(msg))) => {
            st.metrics.rejected(proto, "limit", 1);
            (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
        }
        Ok(Err(LogsError::Streams(msg))) => {
            st.metrics.rejected(proto, "streams", 1);
            (StatusCode::TOO_MANY_REQUESTS, format!("{msg}\n")).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "log append failed");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A time parameter in Unix ns: ns, or seconds when the number is short or
/// has a fraction, or RFC 3339.
pub(crate) fn parse_ns(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(if v.len() <= 10 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    if let Ok(f) = v.parse::<f64>() {
        return Ok((f * 1e9) as i64);
    }
    skopos_units::parse_rfc3339(v).map_err(|_| {
        ApiError::bad_data(format!(
            "invalid {name} {v:?}: want Unix ns, seconds or RFC 3339"
        ))
    })
}

/// `[start, end)` in ns from Loki's `start`/`end`/`since` parameters
/// (default: the last hour).
pub(crate) fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    let end = match p.get("end") {
        Some(v) if !v.is_empty() => parse_ns("end", v)?,
        _ => now_ns(),
    };
    let start = match (p.get("start"), p.get("since")) {
        (Some(v), _) if !v.is_empty() => parse_ns("start", v)?,
        (_, Some(s)) if !s.is_empty() => {
            let d = crate::metrics::query_api::parse_duration_param("since", s)?;
            end.saturating_sub(d.saturating_mul(1_000_000))
        }
        _ => end.saturating_sub(3_600_000_000_000),
    };
    if end < start {
        return Err(ApiError::bad_data("end must not be before start"));
    }
    Ok((start, end))
}

pub async fn labels(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let names = st
        .logs
        .log_label_names(start, end)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(axum::Json(json!({"status": "success", "data": names})).into_response())
}

pub async fn label_values(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let matchers = match p.get("query") {
        Some(s) if !s.is_empty() => parse_selector(s).map_err(ApiError::bad_data)?,
        _ => Vec::new(),
    };
    let values = st
        .logs
        .log_label_values(&name, &matchers, start, end)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(axum::Json(json!({"status": "success", "data": values})).into_response())
}

/// `POST /api/v1/logs/ndjson?app=web&env=prod`: a file of JSON lines, the
/// stream's labels in the query string.
pub async fn ndjson(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    const PROTO: &str = "ndjson";
    let p = match Params::collect(&Method::GET, &HeaderMap::new(), q, Body::empty()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut labels = skopos_model::LabelsBuilder::new();
    for (k, v) in p.pairs() {
        if !skopos_model::is_valid_label_name(k) {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid label name {k:?} in the query string\n"),
            )
                .into_response();
        }
        labels.set(k.clone(), v.clone());
    }
    let raw = match crate::http::body::read_body(&headers, body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            st.metrics.rejected(PROTO, "body", 1);
            return (e.status, e.message).into_response();
        }
    };
    let batch = match skopos_ingest::ndjson::decode(&raw, &labels.build(), now_ns()) {
        Ok(b) => b,
        Err(e) => {
            st.metrics.rejected(PROTO, "malformed", 1);
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    store(&st, PROTO, batch).await
}

/// `[start, end)` and the step of a Loki query request.
struct QueryWindow {
    start: i64,
    end: i64,
    step: i64,
}

pub(crate) fn step_ns(p: &Params, start: i64, end: i64) -> Result<i64, ApiError> {
    match p.get("step") {
        Some(s) if !s.is_empty() => {
            if let Ok(f) = s.parse::<f64>() {
                return Ok((f * 1e9) as i64);
            }
            crate::metrics::query_api::parse_duration_param("step", s)
                .map(|ms| ms.saturating_mul(1_000_000))
        }
        // Loki's default: a 250th of the range, at least a second.
        _ => Ok(((end - start) / 250 / 1_000_000_000).max(1) * 1_000_000_000),
    }
}

fn window(p: &Params) -> Result<QueryWindow, ApiError> {
    let (start, end) = range(p)?;
    let step = step_ns(p, start, end)?;
    Ok(QueryWindow { start, end, step })
}

pub(crate) fn limit_and_direction(
    p: &Params,
) -> Result<(usize, skopos_model::Direction), ApiError> {
    let limit = match p.get("limit") {
        Some(s) if !s.is_empty() => s.parse::<usize>().map_err(|_| {
            ApiError::bad_data(format!("invalid limit {s:?}: want a positive integer"))
        })?,
        _ => 100,
    };
    let direction = match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("backward") => skopos_model::Direction::Backward,
        Some("forward") => skopos_model::Direction::Forward,
        Some(d) => {
            return Err(ApiError::bad_data(format!(
                "invalid direction {d:?}: want forward or backward"
            )))
        }
    };
    Ok((limit, direction))
}

pub(crate) fn logql_error(e: skopos_logql::QueryError) -> ApiError {
    crate::metrics::query_api::engine_error(e.error_type(), e.to_string())
}

/// Cancels the query when dropped: the client went away or the handler ended.
struct CancelOnDrop(skopos_logql::CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The LogQL engine with the server's query limits.
pub(crate) fn engine(st: &AppState) -> skopos_logql::Engine {
    skopos_logql::Engine::new(skopos_logql::EngineOptions {
        timeout: st.query.opts.timeout,
        max_samples: st.query.opts.max_samples,
        ..skopos_logql::EngineOptions::default()
    })
}

async fn run_logql(
    st: &Arc<AppState>,
    run: impl FnOnce(
            &skopos_logql::Engine,
            &dyn LogQueryable,
            &skopos_logql::CancelToken,
        ) -> Result<skopos_logql::Value, skopos_logql::QueryError>
        + Send
        + 'static,
) -> Result<Response, ApiError> {
    let queued = std::time::Instant::now();
    let _permit = st.query.slots.clone().acquire_owned().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down".into(),
        )
    })?;
    let queue_secs = queued.elapsed().as_secs_f64();
    let token = skopos_logql::CancelToken::new();
    let guard = CancelOnDrop(token.clone());
    let engine = engine(st);
    let logs = st.logs.clone();
    let began = std::time::Instant::now();
    let (value, read) = crate::http::panic::blocking(move || {
        let counted = CountingLogs::new(logs.as_ref());
        let v = run(&engine, &counted, &token);
        v.map(|v| (v, counted.read()))
    })
    .await
    .map_err(logql_error)?;
    drop(guard);
    let stats = QueryStats {
        exec_secs: began.elapsed().as_secs_f64(),
        queue_secs,
        lines: read.0,
        bytes: read.1,
    };
    let body = crate::http::panic::blocking(move || loki_body(&value, &stats)).await;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// What a query read and how long it took, for the `stats` of a response.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryStats {
    pub exec_secs: f64,
    /// Waiting for a query slot.
    pub queue_secs: f64,
    /// Log lines read from the store, and their bytes (line and
    /// structured metadata).
    pub lines: u64,
    pub bytes: u64,
}

impl QueryStats {
    /// Only the execution time (for answers not read through the engine).
    pub fn exec(secs: f64) -> Self {
        QueryStats {
            exec_secs: secs,
            ..Default::default()
        }
    }
}

/// The store as the engine sees it, counting the lines and bytes it hands
/// over: Loki's "lines/bytes processed".
struct CountingLogs<'a> {
    inner: &'a dyn LogQueryable,
    lines: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl<'a> CountingLogs<'a> {
    fn new(inner: &'a dyn LogQueryable) -> Self {
        CountingLogs {
            inner,
            lines: Default::default(),
            bytes: Default::default(),
        }
    }

    fn read(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.lines.load(Relaxed), self.bytes.load(Relaxed))
    }
}

impl LogQueryable for CountingLogs<'_> {
    fn select_logs(
        &self,
        sel: &skopos_model::LogSelect,
        f: &mut dyn FnMut(skopos_model::LogStream) -> bool,
    ) -> Result<(), skopos_model::StorageError> {
        use std::sync::atomic::Ordering::Relaxed;
        self.inner.select_logs(sel, &mut |stream| {
            let bytes: usize = stream
                .entries
                .iter()
                .map(|e| {
                    e.line.len()
                        + e.metadata
                            .iter()
                            .map(|l| l.name.len() + l.value.len())
                            .sum::<usize>()
                })
                .sum();
            self.lines.fetch_add(stream.entries.len() as u64, Relaxed);
            self.bytes.fetch_add(bytes as u64, Relaxed);
            f(stream)
        })
    }

    fn log_label_names(
        &self,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, skopos_model::StorageError> {
        self.inner.log_label_names(start, end)
    }

    fn log_label_values(
        &self,
        name: &str,
        matchers: &[skopos_model::Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, skopos_model::StorageError> {
        self.inner.log_label_values(name, matchers, start, end)
    }
}

/// A Loki query response: `streams` with `[ns, line]` values, or the
/// Prometheus-shaped `vector`/`matrix`/`scalar` with times in seconds, and
/// `stats.summary` as Loki fills it from what was read.
pub fn loki_body(v: &skopos_logql::Value, stats: &QueryStats) -> String {
    use serde_json::Value as J;
    let secs = |t: i64| {
        let s = t as f64 / 1e9;
        J::from(s)
    };
    let labels = |l: &skopos_model::Labels| {
        J::Object(
            l.iter()
                .map(|x| (x.name.clone(), J::String(x.value.clone())))
                .collect(),
        )
    };
    let (kind, result) = match v {
        skopos_logql::Value::Streams(streams) => (
            "streams",
            J::Array(
                streams
                    .iter()
                    .map(|s| {
                        json!({
                            "stream": labels(&s.labels),
                            "values": s.entries.iter().map(|e| json!([e.ts.to_string(), e.line])).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ),
        ),
        skopos_logql::Value::Vector(samples) => (
            "vector",
            J::Array(
                samples
                    .iter()
                    .map(|s| json!({"metric": labels(&s.labels), "value": [secs(s.t), skopos_promql::format_value(s.v)]}))
                    .collect(),
            ),
        ),
        skopos_logql::Value::Matrix(series) => (
            "matrix",
            J::Array(
                series
                    .iter()
                    .map(|s| {
                        json!({
                            "metric": labels(&s.labels),
                            "values": s.points.iter().map(|p| json!([secs(p.t), skopos_promql::format_value(p.v)])).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ),
        ),
        skopos_logql::Value::Scalar { t, v } => {
            ("scalar", json!([secs(*t), skopos_promql::format_value(*v)]))
        }
    };
    // Loki's resultLength: lines of streams, samples of a vector, points
    // of a matrix.
    let returned = match v {
        skopos_logql::Value::Streams(s) => s.iter().map(|s| s.entries.len()).sum::<usize>(),
        skopos_logql::Value::Vector(s) => s.len(),
        skopos_logql::Value::Matrix(s) => s.iter().map(|s| s.points.len()).sum(),
        skopos_logql::Value::Scalar { .. } => 1,
    };
    let per_sec = |n: u64| {
        if stats.exec_secs > 0.0 {
            (n as f64 / stats.exec_secs) as u64
        } else {
            0
        }
    };
    json!({
        "status": "success",
        "data": {
            "resultType": kind,
            "result": result,
            "stats": {"summary": {
                "bytesProcessedPerSecond": per_sec(stats.bytes),
                "linesProcessedPerSecond": per_sec(stats.lines),
                "totalBytesProcessed": stats.bytes,
                "totalLinesProcessed": stats.lines,
                "execTime": stats.exec_secs,
                "queueTime": stats.queue_secs,
                "subqueries": 0,
                "totalEntriesReturned": returned,
                "splits": 0,
                "shards": 0,
            }},
        }
    })
    .to_string()
}

/// The non-empty `query` parameter.
pub(crate) fn required_query(p: &Params) -> Result<String, ApiError> {
    p.get("query")
        .filter(|q| !q.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_data("missing parameter \"query\""))
}

/// `GET|POST /loki/api/v1/query_range`.
pub async fn query_range(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let expr = required_query(&p)?;
    let w = window(&p)?;
    let (limit, direction) = limit_and_direction(&p)?;
    run_logql(&st, move |e, q, c| {
        e.query_range(q, &expr, w.start, w.end, w.step, limit, direction, c)
    })
    .await
}

/// `GET|POST /loki/api/v1/query`: a metric query at `time` (default now).
pub async fn query(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let expr = required_query(&p)?;
    let time = match p.get("time") {
        Some(t) if !t.is_empty() => parse_ns("time", t)?,
        _ => now_ns(),
    };
    run_logql(&st, move |e, q, c| e.query_instant(q, &expr, time, c)).await
}

/// `GET|POST /loki/api/v1/series?match[]=...`: the streams matching any selector.
pub async fn series(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let selectors: Vec<&str> = p
        .pairs()
        .filter(|(k, _)| k.as_str() == "match[]" || k.as_str() == "match")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut out = std::collections::BTreeSet::new();
    let sets: Vec<Vec<skopos_model::Matcher>> = if selectors.is_empty() {
        vec![Vec::new()]
    } else {
        selectors
            .iter()
            .map(|s| parse_selector(s).map_err(ApiError::bad_data))
            .collect::<Result<_, _>>()?
    };
    for m in &sets {
        out.extend(st.logs.streams(m, start, end));
    }
    let data: Vec<serde_json::Value> = out
        .iter()
        .map(|l| {
            serde_json::Value::Object(
                l.iter()
                    .map(|x| (x.name.clone(), serde_json::Value::String(x.value.clone())))
                    .collect(),
            )
        })
        .collect();
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}

/// `GET /loki/api/v1/index/stats?query={...}`: streams, chunks, entries and
/// bytes the selector covers in the range.
pub async fn index_stats(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let matchers = match p.get("query") {
        Some(s) if !s.is_empty() => parse_selector(s).map_err(ApiError::bad_data)?,
        _ => return Err(ApiError::bad_data("missing parameter \"query\"")),
    };
    let s = st.logs.index_stats(&matchers, start, end);
    Ok(axum::Json(json!({
        "streams": s.streams,
        "chunks": s.chunks,
        "entries": s.entries,
        "bytes": s.bytes,
    }))
    .into_response())
}

/// `POST /loki/api/v1/delete?query=...&start=...&end=...`: deletes for good
/// the lines a selector (with optional line filters) picks in `[start,
/// end]`. Loki queues such requests for its compactor; here the delete is
/// done before the answer (204), and recorded for `GET`. With
/// `dry_run=true` (not Loki's) it answers `{"lines": N}`, the count it
/// would delete, and deletes nothing.
pub async fn delete(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let expr = required_query(&p)?;
    let log = match skopos_logql::parse(&expr).map_err(logql_error)? {
        skopos_logql::Expr::Log(log) => log,
        _ => return Err(ApiError::bad_data(
            "a delete query is a stream selector with optional line filters, not a metric query",
        )),
    };
    if !log
        .stages
        .iter()
        .all(|s| matches!(s, skopos_logql::Stage::LineFilter(_)))
    {
        return Err(ApiError::bad_data(
            "a delete query may hold only line filters (|=, !=, |~, !~) after its selector",
        ));
    }
    let start = match p.get("start") {
        Some(v) if !v.is_empty() => parse_ns("start", v)?,
        _ => return Err(ApiError::bad_data("missing parameter \"start\"")),
    };
    let end = match p.get("end") {
        Some(v) if !v.is_empty() => parse_ns("end", v)?,
        _ => now_ns(),
    };
    if end < start {
        return Err(ApiError::bad_data("end must not be before start"));
    }
    let matchers = log.matchers.clone();
    let logs = st.logs.clone();
    let created = now_ns();
    let doomed = move |e: &skopos_model::LogEntry| {
        log.stages.iter().all(|s| match s {
            skopos_logql::Stage::LineFilter(f) => f.matches(&e.line),
            _ => true,
        })
    };
    if p.get("dry_run") == Some("true") {
        // Counts what a delete would remove, removing nothing.
        let sel = skopos_model::LogSelect {
            matchers,
            start,
            end: end.saturating_add(1),
            contains: Vec::new(),
            matches: Vec::new(),
        };
        let lines = crate::http::panic::blocking(move || {
            let mut n = 0u64;
            logs.select(&sel, &mut |s| {
                n += s.entries.iter().filter(|e| doomed(e)).count() as u64;
                true
            })
            .map(|()| n)
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        return Ok(axum::Json(json!({ "lines": lines })).into_response());
    }
    let request = crate::http::panic::blocking(move || {
        // `end` is inclusive in Loki's delete API.
        logs.delete_request(
            &expr,
            &matchers,
            start,
            end.saturating_add(1),
            &doomed,
            created,
        )
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let report = request.processed.map(|(_, d)| d).unwrap_or_default();
    tracing::info!(
        lines = report.entries,
        segments_rewritten = report.segments_rewritten,
        segments_removed = report.segments_removed,
        bytes_freed = report.bytes_freed,
        "log lines deleted"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Moves the delete history an older skopos kept in
/// `delete_requests.jsonl` (one JSON object a line, times in seconds, `end`
/// inclusive) into the store's own history, then removes the old file.
/// Lines that do not parse (a torn last line) are skipped.
pub(crate) fn import_legacy_delete_log(logs: &skopos_logs::Store) -> Result<usize, LogsError> {
    let path = logs.dir().join("delete_requests.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(LogsError::io(&path, e)),
    };
    let ns = |v: &serde_json::Value| (v.as_f64().unwrap_or(0.0) * 1e9) as i64;
    let reqs: Vec<skopos_logs::DeleteRequest> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let created = ns(&v["created_at"]);
            skopos_logs::DeleteRequest {
                id: u64::from_str_radix(v["request_id"].as_str().unwrap_or(""), 16)
                    .unwrap_or(created.max(0) as u64),
                query: v["query"].as_str().unwrap_or("").to_owned(),
                start: ns(&v["start_time"]),
                end: ns(&v["end_time"]).saturating_add(1),
                created,
                processed: Some((
                    created,
                    skopos_logs::Deleted {
                        entries: v["deleted_lines"].as_u64().unwrap_or(0),
                        bytes_freed: v["bytes_freed"].as_i64().unwrap_or(0),
                        ..Default::default()
                    },
                )),
            }
        })
        .collect();
    // Idempotent: a crash before the old file is gone imports it again,
    // and the requests already there are left out.
    logs.import_delete_requests(&reqs)?;
    std::fs::remove_file(&path).map_err(|e| LogsError::io(&path, e))?;
    std::fs::File::open(logs.dir())
        .and_then(|d| d.sync_all())
        .map_err(|e| LogsError::io(logs.dir(), e))?;
    Ok(reqs.len())
}

/// `GET /loki/api/v1/delete`: the delete requests made so far, in Loki's
/// shape (times in seconds, `end_time` inclusive as the request gave it),
/// with what each removed.
pub async fn delete_requests(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let logs = st.logs.clone();
    let requests = crate::http::panic::blocking(move || logs.delete_requests())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let secs = |ns: i64| ns as f64 / 1e9;
    let listed: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            let mut v = json!({
                "request_id": format!("{:x}", r.id),
                "query": r.query,
                "start_time": secs(r.start),
                "end_time": secs(r.end.saturating_sub(1)),
                "created_at": secs(r.created),
                "status": r.status(),
            });
            if let Some((at, d)) = &r.processed {
                v["processed_at"] = json!(secs(*at));
                v["deleted_lines"] = json!(d.entries);
                v["bytes_freed"] = json!(d.bytes_freed);
            }
            v
        })
        .collect();
    Ok(axum::Json(listed).into_response())
}
