//! `/api/v1/query_exemplars` over the TSDB's exemplar ring.
//!
//! Exemplars come from remote write and from the span metrics and service
//! graph processors (a `trace_id` per series and collect); the TSDB keeps
//! them in a bounded ring, persisted across restarts
//! ([`skopos_tsdb::ExemplarStore`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use promql_parser::parser::Expr;
use serde_json::{json, Value};
use skopos_model::{Labels, Matcher};

use crate::http::api::{ApiError, Params};
use crate::state::AppState;

/// The matchers of every series selector in a PromQL expression.
pub fn query_selectors(expr: &Expr) -> Result<Vec<Vec<Matcher>>, String> {
    fn walk(e: &Expr, out: &mut Vec<Vec<Matcher>>) -> Result<(), String> {
        match e {
            Expr::VectorSelector(vs) => {
                out.extend(crate::http::api::selector_matchers(vs)?);
                Ok(())
            }
            Expr::MatrixSelector(ms) => {
                out.extend(crate::http::api::selector_matchers(&ms.vs)?);
                Ok(())
            }
            Expr::Subquery(sq) => walk(&sq.expr, out),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, out)?;
                }
                walk(&a.expr, out)
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out)?;
                walk(&b.rhs, out)
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    walk(a, out)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
        }
    }
    let mut out = Vec::new();
    walk(expr, &mut out)?;
    Ok(out)
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.clone(), Value::String(x.value.clone())))
            .collect(),
    )
}

/// `GET|POST /api/v1/query_exemplars?query=&start=&end=`: Prometheus'
/// shape, `[{seriesLabels, exemplars: [{labels, value, timestamp}]}]`.
pub async fn query_exemplars(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let query = p.get("query").unwrap_or("");
    let expr = skopos_promql::parse(query).map_err(super::query_api::query_error)?;
    let selectors = query_selectors(&expr)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let mut range = [i64::MIN, i64::MAX];
    for (i, name) in ["start", "end"].into_iter().enumerate() {
        if let Some(v) = p.get(name).filter(|v| !v.is_empty()) {
            range[i] = crate::http::api::parse_time(name, v)?;
        }
    }
    if range[1] < range[0] {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let found = st.db.exemplars().select(&selectors, range[0], range[1]);
    let data: Vec<Value> = found
        .iter()
        .map(|g| {
            json!({
                "seriesLabels": labels_json(&g.series),
                "exemplars": g.exemplars.iter().map(|e| json!({
                    "labels": labels_json(&e.labels),
                    "value": skopos_promql::format_value(e.value),
                    "timestamp": e.ts_ms as f64 / 1000.0,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({"status": "success", "data": data});
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}
