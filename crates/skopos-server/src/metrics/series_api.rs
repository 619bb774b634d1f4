//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`:
//! the metadata reads of Prometheus' API over the TSDB index. GET with a
//! query string and POST with a form body are both accepted, and `match[]`
//! may repeat.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde_json::{json, Value};
use skopos_model::{Matcher, METRIC_NAME};

use crate::http::api::{parse_selector, parse_time, success, ApiError, Params, MAX_TIME, MIN_TIME};
use crate::state::AppState;

pub(crate) fn time_range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p
        .get("start")
        .map(|v| parse_time("start", v))
        .transpose()?
        .unwrap_or(MIN_TIME);
    let end = p
        .get("end")
        .map(|v| parse_time("end", v))
        .transpose()?
        .unwrap_or(MAX_TIME);
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

pub(crate) fn selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    p.all("match[]")
        .into_iter()
        .map(|s| {
            parse_selector(s)
                .map_err(|m| ApiError::bad_data(format!("invalid parameter \"match[]\": {m}")))
        })
        .collect()
}

fn limit(p: &Params) -> Result<Option<usize>, ApiError> {
    match p.get("limit") {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v.parse::<usize>().map(Some).map_err(|_| {
            ApiError::bad_data(format!(
                "invalid parameter \"limit\": {v:?} is not a positive integer"
            ))
        }),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, skopos_tsdb::TsdbError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::http::panic::blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Runs `lookup` once per `match[]` selector (or once with no matchers
/// when there is none and `all_when_empty`), then sorts, de-duplicates and
/// applies `limit`, as the Prometheus metadata endpoints do.
async fn union_over_selectors<T: Ord + Send + 'static>(
    p: &Params,
    lookup: impl Fn(&[Matcher], i64, i64) -> Result<Vec<T>, skopos_tsdb::TsdbError> + Send + 'static,
) -> Result<Vec<T>, ApiError> {
    let mut sels = selectors(p)?;
    let (start, end) = time_range(p)?;
    let lim = limit(p)?;
    if sels.is_empty() {
        sels.push(Vec::new());
    }
    let mut all = blocking(move || {
        let mut out = Vec::new();
        for m in &sels {
            out.extend(lookup(m, start, end)?);
        }
        Ok(out)
    })
    .await?;
    all.sort();
    all.dedup();
    if let Some(l) = lim {
        all.truncate(l);
    }
    Ok(all)
}

pub async fn series(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    if p.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let db = st.db.clone();
    let all = union_over_selectors(&p, move |m, s, e| db.series(m, s, e)).await?;
    let data: Vec<Value> = all
        .iter()
        .map(|ls| {
            Value::Object(
                ls.iter()
                    .map(|l| (l.name.clone(), Value::String(l.value.clone())))
                    .collect(),
            )
        })
        .collect();
    Ok(success(Value::Array(data)))
}

pub async fn labels(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let db = st.db.clone();
    let names = union_over_selectors(&p, move |m, s, e| db.label_names(m, s, e)).await?;
    Ok(success(json!(names)))
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
    if !skopos_model::is_valid_label_name(&name) && name != METRIC_NAME {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let db = st.db.clone();
    let values = union_over_selectors(&p, move |m, s, e| db.label_values(&name, m, s, e)).await?;
    Ok(success(json!(values)))
}
