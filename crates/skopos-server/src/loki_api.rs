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

use crate::api::{parse_selector, ApiError, Params};
use crate::server::AppState;

const PROTO: &str = "loki_push";

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

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
    let raw = match crate::body::read_body(&headers, body, st.max_body_bytes).await {
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
    let logs = st.logs.clone();
    match tokio::task::spawn_blocking(move || logs.append(batch)).await {
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

/// `[start, end)` in ns from Loki's `start`/`end`/`since` parameters
/// (default: the last hour).
fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    let parse = |name: &str, v: &str| -> Result<i64, ApiError> {
        if let Ok(n) = v.parse::<i64>() {
            // Loki takes ns, or seconds when the number is short.
            return Ok(if v.len() <= 10 {
                n.saturating_mul(1_000_000_000)
            } else {
                n
            });
        }
        if let Ok(f) = v.parse::<f64>() {
            return Ok((f * 1e9) as i64);
        }
        humantime::parse_rfc3339(v)
            .map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(0)
            })
            .map_err(|_| {
                ApiError::bad_data(format!(
                    "invalid {name} {v:?}: want Unix ns, seconds or RFC 3339"
                ))
            })
    };
    let end = match p.get("end") {
        Some(v) if !v.is_empty() => parse("end", v)?,
        _ => now_ns(),
    };
    let start = match (p.get("start"), p.get("since")) {
        (Some(v), _) if !v.is_empty() => parse("start", v)?,
        (_, Some(s)) if !s.is_empty() => {
            let d = crate::query_api::parse_duration_param("since", s)?;
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
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.0))?;
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
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.0))?;
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
    let raw = match crate::body::read_body(&headers, body, st.max_body_bytes).await {
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
