//! The Prometheus HTTP query API: `/api/v1/query`, `/api/v1/query_range`,
//! `/api/v1/format_query`, `/api/v1/status/buildinfo`. Answers are shaped and
//! formatted exactly as Prometheus shapes them (timestamps as float seconds,
//! values as strings with `+Inf`/`NaN`), and errors carry Prometheus'
//! `errorType` with its status code, so Grafana's Prometheus data source works
//! unchanged.
//!
//! Evaluation runs off the async runtime under a semaphore (bounded
//! concurrency); the request's cancel token fires when the client goes away,
//! because the handler future — and the guard it holds — is dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use skopos_promql::{format_value, CancelToken, QueryError, Value};

use crate::api::{parse_time, ApiError, Params};
use crate::server::AppState;

/// Prometheus refuses range queries with more points than this per series.
const MAX_POINTS: i64 = 11_000;

/// Cancels the query when dropped: the client went away or the handler ended.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// Parses a step or timeout: a Prometheus duration (`15s`, `1m`) or float seconds.
pub fn parse_duration_param(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    promql_parser::util::parse_duration(v)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| {
            ApiError::bad_data(format!(
                "invalid parameter {name:?}: cannot parse {v:?} to a valid duration"
            ))
        })
}

/// A timestamp as Prometheus writes it: Unix seconds, with up to three
/// decimals and none when they are zero (`1700000000`, `1700000000.5`).
fn secs(t_ms: i64) -> Json {
    if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    }
}

fn labels_json(l: &skopos_model::Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|l| (l.name.clone(), Json::String(l.value.clone())))
            .collect(),
    )
}

/// A query result as Prometheus serialises it.
pub fn result_json(v: &Value) -> Json {
    match v {
        Value::Scalar { t, v } => {
            json!({"resultType": "scalar", "result": [secs(*t), format_value(*v)]})
        }
        Value::String { t, s } => json!({"resultType": "string", "result": [secs(*t), s]}),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({
                "metric": labels_json(&s.labels),
                "value": [secs(s.t), format_value(s.v)],
            })).collect::<Vec<_>>(),
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({
                "metric": labels_json(&s.labels),
                "values": s.samples.iter().map(|p| json!([secs(p.t), format_value(p.v)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    }
}

fn query_error(e: QueryError) -> ApiError {
    let status = match e.error_type() {
        "bad_data" => StatusCode::BAD_REQUEST,
        "execution" => StatusCode::UNPROCESSABLE_ENTITY,
        "timeout" => StatusCode::SERVICE_UNAVAILABLE,
        "canceled" => StatusCode::from_u16(499).expect("valid status"),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.error_type(), e.to_string())
}

fn timeout(p: &Params, default: Duration) -> Result<Duration, ApiError> {
    match p.get("timeout") {
        None | Some("") => Ok(default),
        Some(v) => {
            let ms = parse_duration_param("timeout", v)?;
            Ok(Duration::from_millis(ms.max(1) as u64).min(default))
        }
    }
}

async fn evaluate(
    st: &Arc<AppState>,
    p: &Params,
    run: impl FnOnce(
            &skopos_promql::Engine,
            &dyn skopos_model::Queryable,
            &CancelToken,
        ) -> Result<Value, QueryError>
        + Send
        + 'static,
) -> Result<Response, ApiError> {
    let limit = timeout(p, st.query.opts.timeout)?;
    let _permit = st.query.slots.clone().acquire_owned().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down".into(),
        )
    })?;
    let token = CancelToken::new();
    let guard = CancelOnDrop(token.clone());
    let engine = skopos_promql::Engine::new(skopos_promql::EngineOptions {
        timeout: limit,
        ..st.query.opts.clone()
    });
    let db = st.db.clone();
    let task = tokio::task::spawn_blocking(move || run(&engine, db.as_ref(), &token));
    let value = task
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(query_error)?;
    drop(guard);
    let body = json!({"status": "success", "data": result_json(&value)});
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

pub async fn query(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let expr = p.get("query").unwrap_or("").to_string();
    let t = match p.get("time") {
        Some(v) if !v.is_empty() => parse_time("time", v)?,
        _ => now_ms(),
    };
    evaluate(&st, &p, move |e, db, c| e.instant(db, &expr, t, c)).await
}

pub async fn query_range(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let expr = p.get("query").unwrap_or("").to_string();
    let start = parse_time("start", p.get("start").unwrap_or(""))?;
    let end = parse_time("end", p.get("end").unwrap_or(""))?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = parse_duration_param("step", p.get("step").unwrap_or(""))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    evaluate(&st, &p, move |e, db, c| {
        e.range(db, &expr, start, end, step, c)
    })
    .await
}

pub async fn format_query(
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let expr = promql_parser::parser::parse(p.get("query").unwrap_or(""))
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let body = json!({"status": "success", "data": expr.prettify()});
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

pub async fn buildinfo() -> Response {
    let body = json!({"status": "success", "data": {
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("SKOPOS_GIT_REV").unwrap_or("unknown"),
        "branch": "main",
        "buildUser": "skopos",
        "buildDate": "unknown",
        "goVersion": "n/a (skopos is written in Rust)",
    }});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
