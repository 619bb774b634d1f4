//! The Loki endpoints Grafana's log views call besides queries:
//! `/loki/api/v1/index/volume` and `/index/volume_range` (the log-volume
//! histogram), `/loki/api/v1/detected_labels`, `/loki/api/v1/detected_fields`,
//! `/loki/api/v1/format_query`, `/loki/api/v1/status/buildinfo` and `/ready`.
//!
//! Volume is computed by the LogQL engine itself: the bytes of the lines of
//! each group, `sum by (<selector labels>) (bytes_over_time(...))`. Detected
//! fields run the query's own pipeline with a `json` stage, or `logfmt` for
//! lines that are not JSON, and read what they extracted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skopos_logql::{Expr, LogExpr};
use skopos_model::{Direction, LogQueryable, LogSelect};

use super::loki_api::{engine, logql_error, range, required_query};
use crate::http::api::{ApiError, Params};
use crate::state::AppState;

/// Most distinct values kept per field (cardinality is exact up to here).
const MAX_VALUES: usize = 10_000;

fn log_query(q: &str) -> Result<LogExpr, ApiError> {
    match skopos_logql::parse(q).map_err(logql_error)? {
        Expr::Log(l) => Ok(l),
        _ => Err(ApiError::bad_data(format!(
            "{q:?} is a metric query; this endpoint takes a stream selector or log query"
        ))),
    }
}

fn positive(p: &Params, name: &str, default: usize) -> Result<usize, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_data(format!(
                "invalid parameter {name:?}: {v:?} is not a positive integer"
            ))
        }),
    }
}

/// The labels the volume is grouped by: `targetLabels`, else the labels
/// the selector names (Loki's default).
fn volume_expr(p: &Params, window_ns: i64) -> Result<String, ApiError> {
    let q = required_query(p)?;
    let log = log_query(&q)?;
    let by: Vec<String> = match p.get("targetLabels").filter(|s| !s.is_empty()) {
        Some(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
        None => log
            .matchers
            .iter()
            .map(|m| m.name.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    if p.get("aggregateBy")
        .is_some_and(|a| a != "series" && a != "labels")
    {
        return Err(ApiError::bad_data(
            "invalid parameter \"aggregateBy\": want series or labels",
        ));
    }
    let secs = (window_ns / 1_000_000_000).max(1);
    Ok(format!(
        "sum by ({}) (bytes_over_time({q} [{secs}s]))",
        by.join(", ")
    ))
}

/// `/loki/api/v1/index/volume`: bytes per group over `[start, end]`, the
/// largest first, at most `limit` (100).
pub async fn volume(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let limit = positive(&p, "limit", 100)?;
    let expr = volume_expr(&p, end - start)?;
    let engine = engine(&st);
    let logs = st.logs.clone();
    let value = crate::http::panic::blocking(move || {
        engine.query_instant(logs.as_ref(), &expr, end, &skopos_logql::CancelToken::new())
    })
    .await
    .map_err(logql_error)?;
    let mut rows: Vec<(f64, Value)> = match value {
        skopos_logql::Value::Vector(v) => v
            .into_iter()
            .map(|s| {
                let metric: serde_json::Map<String, Value> = s
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), Value::String(l.value.to_string())))
                    .collect();
                (
                    s.v,
                    json!({"metric": metric, "value": [end as f64 / 1e9, format!("{}", s.v)]}),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.truncate(limit);
    Ok(axum::Json(json!({"status": "success", "data": {
        "resultType": "vector",
        "result": rows.into_iter().map(|r| r.1).collect::<Vec<_>>(),
    }}))
    .into_response())
}

/// `/loki/api/v1/index/volume_range`: the same per `step` (what Grafana
/// draws as the log-volume histogram).
pub async fn volume_range(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let step = match p.get("step") {
        Some(s) => {
            let ms = skopos_units::parse_duration_param(s)
                .map_err(|e| ApiError::bad_data(e.to_string()))?;
            if ms <= 0 {
                return Err(ApiError::bad_data("step must be positive"));
            }
            ms * 1_000_000
        }
        // Loki's default: about 250 points over the range.
        None => ((end - start) / 250).max(1_000_000_000),
    };
    let expr = volume_expr(&p, step)?;
    let engine = engine(&st);
    let logs = st.logs.clone();
    let value = crate::http::panic::blocking(move || {
        engine.query_range(
            logs.as_ref(),
            &expr,
            start,
            end,
            step,
            1,
            Direction::Backward,
            &skopos_logql::CancelToken::new(),
        )
    })
    .await
    .map_err(logql_error)?;
    let body = super::loki_api::loki_body(&value, &super::loki_api::QueryStats::default());
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `/loki/api/v1/detected_labels`: the stream labels of the selected streams
/// with their cardinality.
pub async fn detected_labels(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let matchers = match p.get("query").filter(|s| !s.is_empty()) {
        Some(q) => log_query(q)?.matchers,
        None => Vec::new(),
    };
    let logs = st.logs.clone();
    let values = crate::http::panic::blocking(move || {
        let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for labels in logs.streams(&matchers, start, end) {
            for l in labels.iter() {
                values
                    .entry(l.name.to_string())
                    .or_default()
                    .insert(l.value.to_string());
            }
        }
        values
    })
    .await;
    let out: Vec<Value> = values
        .into_iter()
        .map(|(k, v)| json!({"label": k, "cardinality": v.len()}))
        .collect();
    Ok(axum::Json(json!({ "detectedLabels": out })).into_response())
}

#[derive(Default)]
struct Field {
    values: BTreeSet<String>,
    types: BTreeSet<&'static str>,
    parsers: BTreeSet<&'static str>,
}

/// Loki's field types: int, float, boolean, duration, bytes, else string.
fn value_type(v: &str) -> &'static str {
    if v.parse::<i64>().is_ok() {
        "int"
    } else if v.parse::<f64>().is_ok_and(f64::is_finite) {
        "float"
    } else if v == "true" || v == "false" {
        "boolean"
    } else if is_duration(v) {
        "duration"
    } else if skopos_units::parse_size(v).is_ok()
        || skopos_units::parse_size(&v.to_ascii_uppercase().replace("IB", "iB")).is_ok()
    {
        "bytes"
    } else {
        "string"
    }
}

/// Go's `time.ParseDuration` grammar: one or more `<number><unit>`.
fn is_duration(v: &str) -> bool {
    let mut rest = v.strip_prefix('-').unwrap_or(v);
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let num = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if num == 0 {
            return false;
        }
        rest = &rest[num..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(**u))
        else {
            return false;
        };
        // `ms` before `m` and `s`.
        let unit = if rest.starts_with("ms") { "ms" } else { unit };
        rest = &rest[unit.len()..];
    }
    true
}

/// `/loki/api/v1/detected_fields`: the fields `json` or `logfmt` finds in
/// the newest `line_limit` (1000) lines the query selects, with type,
/// cardinality and parser.
pub async fn detected_fields(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let (start, end) = range(&p)?;
    let q = required_query(&p)?;
    let line_limit = positive(&p, "line_limit", 1000)?;
    let field_limit = positive(&p, "limit", 1000)?;
    let base = log_query(&q)?;
    let json_expr = log_query(&format!("{q} | json"))?;
    let logfmt_expr = log_query(&format!("{q} | logfmt"))?;
    let logs = st.logs.clone();
    let fields =
        crate::http::panic::blocking(move || -> Result<BTreeMap<String, Field>, ApiError> {
            let sel = LogSelect {
                matchers: base.matchers.clone(),
                start,
                end: end.saturating_add(1),
                contains: skopos_logql::pushdown_contains(&base),
                matches: Vec::new(),
            };
            let mut entries = Vec::new();
            logs.select_logs(&sel, &mut |s| {
                for e in s.entries {
                    entries.push((s.labels.clone(), e));
                }
                true
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
            entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.ts));
            let mut fields: BTreeMap<String, Field> = BTreeMap::new();
            let mut lines = 0;
            for (stream, e) in &entries {
                if lines == line_limit {
                    break;
                }
                if skopos_logql::process_entry(&base, stream, e).is_none() {
                    continue;
                }
                lines += 1;
                let (parser, labels) = match skopos_logql::process_entry(&json_expr, stream, e) {
                    Some((l, _)) if l.get(skopos_logql::ERROR_LABEL).is_none() => ("json", l),
                    _ => match skopos_logql::process_entry(&logfmt_expr, stream, e) {
                        Some((l, _)) => ("logfmt", l),
                        None => continue,
                    },
                };
                for l in labels.iter() {
                    let name = l.name.as_str();
                    if stream.get(name).is_some()
                        || e.metadata.get(name).is_some()
                        || name == skopos_logql::ERROR_LABEL
                        || name == skopos_logql::ERROR_DETAILS_LABEL
                    {
                        continue;
                    }
                    let f = fields.entry(name.to_string()).or_default();
                    if f.values.len() < MAX_VALUES {
                        f.values.insert(l.value.to_string());
                    }
                    f.types.insert(value_type(&l.value));
                    f.parsers.insert(parser);
                }
            }
            Ok(fields)
        })
        .await?;
    let out: Vec<Value> = fields
        .into_iter()
        .take(field_limit)
        .map(|(name, f)| {
            let ty = if f.types.len() == 1 {
                *f.types.first().expect("one")
            } else {
                "string"
            };
            json!({
                "label": name,
                "type": ty,
                "cardinality": f.values.len(),
                "parsers": f.parsers.into_iter().collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "fields": out, "limit": field_limit })).into_response())
}

/// `/loki/api/v1/format_query`: the query in its canonical form.
pub async fn format_query(
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let q = required_query(&p)?;
    let expr = skopos_logql::parse(&q).map_err(logql_error)?;
    Ok(axum::Json(json!({"status": "success", "data": expr.to_string()})).into_response())
}

pub async fn buildinfo() -> Response {
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("SKOPOS_GIT_REV").unwrap_or("unknown"),
        "branch": "main",
        "buildUser": "skopos",
        "buildDate": "unknown",
        "goVersion": "n/a (skopos is written in Rust)",
    }))
    .into_response()
}
