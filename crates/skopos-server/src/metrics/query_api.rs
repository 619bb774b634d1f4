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
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use skopos_promql::{CancelToken, QueryError, Value};
use skopos_units::now_ms;

use crate::http::api::{parse_time, ApiError, Params};
use crate::state::AppState;

/// Prometheus refuses range queries with more points than this per series.
const MAX_POINTS: i64 = 11_000;

/// Cancels the query when dropped: the client went away or the handler ended.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Parses a step or timeout: a Prometheus duration (`15s`, `1m`) or float seconds.
pub fn parse_duration_param(name: &str, v: &str) -> Result<i64, ApiError> {
    skopos_units::parse_duration_param(v).map_err(|_| {
        ApiError::bad_data(format!(
            "invalid parameter {name:?}: cannot parse {v:?} to a valid duration"
        ))
    })
}

/// A timestamp as Prometheus writes it: Unix seconds, with up to three
/// decimals and none when they are zero (`1700000000`, `1700000000.5`).
fn write_secs(out: &mut String, t_ms: i64) {
    use std::fmt::Write;
    let sign = if t_ms < 0 { "-" } else { "" };
    let abs = t_ms.unsigned_abs();
    let (whole, frac) = (abs / 1000, abs % 1000);
    let _ = if frac == 0 {
        write!(out, "{sign}{whole}")
    } else if frac % 100 == 0 {
        write!(out, "{sign}{whole}.{}", frac / 100)
    } else if frac % 10 == 0 {
        write!(out, "{sign}{whole}.{:02}", frac / 10)
    } else {
        write!(out, "{sign}{whole}.{frac:03}")
    };
}

/// `s` as a JSON string.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            use std::fmt::Write;
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_labels(out: &mut String, l: &skopos_model::Labels) {
    out.push('{');
    for (i, l) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

/// `[<seconds>,"<value>"]`
fn write_point(out: &mut String, t_ms: i64, v: f64) {
    out.push('[');
    write_secs(out, t_ms);
    out.push_str(",\"");
    skopos_promql::write_value(out, v);
    out.push_str("\"]");
}

/// A successful query response as Prometheus serialises it, written
/// straight into the body: a range query over thousands of series makes
/// millions of points, too many to build as a JSON tree first.
pub fn success_body(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":");
    match v {
        Value::Scalar { t, v } => {
            out.push_str("\"scalar\",\"result\":");
            write_point(&mut out, *t, *v);
        }
        Value::String { t, s } => {
            out.push_str("\"string\",\"result\":[");
            write_secs(&mut out, *t);
            out.push(',');
            write_str(&mut out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                write_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, p.t, p.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push_str("}}");
    out
}

/// A failed query as `/api/v1/query` (and the other endpoints that take an
/// expression) answers: a parse error names the parameter.
pub(crate) fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Syntax(m) => ApiError::bad_data(format!("invalid parameter \"query\": {m}")),
        e => range_query_error(e),
    }
}

/// A failed query as `/api/v1/query_range` answers: Prometheus gives its
/// parse errors bare there.
fn range_query_error(e: QueryError) -> ApiError {
    engine_error(e.error_type(), e.to_string())
}

/// A query engine's failure (PromQL or LogQL) with the status code its
/// Prometheus-style `errorType` calls for.
pub fn engine_error(error_type: &'static str, message: String) -> ApiError {
    let status = match error_type {
        "bad_data" => StatusCode::BAD_REQUEST,
        "execution" => StatusCode::UNPROCESSABLE_ENTITY,
        "timeout" => StatusCode::SERVICE_UNAVAILABLE,
        "canceled" => StatusCode::from_u16(499).expect("valid status"),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, error_type, message)
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
    errors: fn(QueryError) -> ApiError,
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
    let value = crate::http::panic::blocking(move || run(&engine, db.as_ref(), &token))
        .await
        .map_err(errors)?;
    drop(guard);
    let body = crate::http::panic::blocking(move || success_body(&value)).await;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
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
    evaluate(&st, &p, query_error, move |e, db, c| {
        e.instant(db, &expr, t, c)
    })
    .await
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
    evaluate(&st, &p, range_query_error, move |e, db, c| {
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
    let expr = skopos_promql::parse(p.get("query").unwrap_or("")).map_err(query_error)?;
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

#[cfg(test)]
mod tests {
    use super::success_body;
    use skopos_model::{Labels, Sample};
    use skopos_promql::{RangeSeries, Value, VectorSample};

    fn parse(v: &Value) -> serde_json::Value {
        let body = success_body(v);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    #[test]
    fn bodies_are_prometheus_json() {
        let labels = Labels::from_pairs([("a", "x\"y\\z\n\u{1}é"), ("__name__", "m")]);
        let m = parse(&Value::Matrix(vec![RangeSeries {
            labels: labels.clone(),
            samples: vec![
                Sample::new(1_700_000_000_000, 1.5),
                Sample::new(1_700_000_000_500, f64::NAN),
                Sample::new(1_700_000_000_020, f64::INFINITY),
                Sample::new(-1_234, 1e21),
            ],
        }]));
        assert_eq!(m["status"], "success");
        assert_eq!(m["data"]["resultType"], "matrix");
        let s = &m["data"]["result"][0];
        assert_eq!(s["metric"]["a"], "x\"y\\z\n\u{1}é");
        assert_eq!(s["metric"]["__name__"], "m");
        assert_eq!(
            s["values"],
            serde_json::json!([
                [1_700_000_000u64, "1.5"],
                [1_700_000_000.5, "NaN"],
                [1_700_000_000.02, "+Inf"],
                [-1.234, "1e+21"]
            ])
        );
        // Timestamps keep their integer form when whole.
        assert!(success_body(&Value::Scalar { t: 3_000, v: -0.25 }).contains("[3,\"-0.25\"]"));

        let v = parse(&Value::Vector(vec![VectorSample {
            labels,
            t: 2_001,
            v: 7.0,
        }]));
        assert_eq!(v["data"]["resultType"], "vector");
        assert_eq!(
            v["data"]["result"][0]["value"],
            serde_json::json!([2.001, "7"])
        );
        let e = parse(&Value::Vector(Vec::new()));
        assert_eq!(e["data"]["result"], serde_json::json!([]));
        let s = parse(&Value::String {
            t: 0,
            s: "a\tb".into(),
        });
        assert_eq!(s["data"]["result"], serde_json::json!([0, "a\tb"]));
    }
}
