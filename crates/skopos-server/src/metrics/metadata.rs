//! `/api/v1/metadata` and `/api/v1/status/tsdb`.
//!
//! Metric metadata (type, help, unit) arrives with remote write and OTLP and
//! is kept in memory, bounded, the way Prometheus keeps what it scraped; it
//! is not persisted. Exemplars live in `exemplars.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use serde_json::{json, Value};
use skopos_ingest::MetricMetadata;

use crate::http::api::{ApiError, Params};
use crate::state::AppState;

/// Most metric names whose metadata is remembered.
const MAX_METRICS: usize = 100_000;
/// Most distinct metadata entries per metric name.
const MAX_PER_METRIC: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    type_: String,
    help: String,
    unit: String,
}

#[derive(Default)]
pub struct MetadataStore {
    by_metric: RwLock<BTreeMap<String, Vec<Entry>>>,
}

impl Entry {
    fn of(md: &MetricMetadata) -> Entry {
        Entry {
            type_: md.type_.clone(),
            help: md.help.clone(),
            unit: md.unit.clone(),
        }
    }
}

/// `/api/v1/targets/metadata`: per target, the metadata of its last
/// scrape; `match_target` (a label selector over the target's labels),
/// `metric` and `limit` narrow it, as in Prometheus.
pub async fn targets_metadata(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let limit = int_param(&p, "limit")?;
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let matchers = match p.get("match_target").filter(|m| !m.is_empty()) {
        Some(sel) => crate::http::api::parse_selector(sel).map_err(ApiError::bad_data)?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    'targets: for t in st.scraper.targets() {
        if !matchers.iter().all(|m| m.matches_labels(&t.labels)) {
            continue;
        }
        let target: serde_json::Map<String, Value> = t
            .labels
            .iter()
            .map(|l| (l.name.to_string(), Value::String(l.value.to_string())))
            .collect();
        for md in t.metadata.iter() {
            if metric.is_some_and(|m| m != md.metric_family_name) {
                continue;
            }
            if limit.is_some_and(|l| out.len() >= l) {
                break 'targets;
            }
            out.push(json!({
                "target": target,
                "metric": md.metric_family_name,
                "type": md.type_,
                "help": md.help,
                "unit": md.unit,
            }));
        }
    }
    Ok(ok(Value::Array(out)))
}

impl MetadataStore {
    pub fn record(&self, metadata: &[MetricMetadata]) {
        if metadata.is_empty() {
            return;
        }
        let mut m = self.by_metric.write();
        for md in metadata {
            let entry = Entry {
                type_: md.type_.clone(),
                help: md.help.clone(),
                unit: md.unit.clone(),
            };
            if !m.contains_key(&md.metric_family_name) && m.len() >= MAX_METRICS {
                continue;
            }
            let list = m.entry(md.metric_family_name.clone()).or_default();
            if !list.contains(&entry) {
                if list.len() >= MAX_PER_METRIC {
                    list.remove(0);
                }
                list.push(entry);
            }
        }
    }
}

fn ok(data: Value) -> Response {
    let body = json!({"status": "success", "data": data});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn int_param(p: &Params, name: &str) -> Result<Option<usize>, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(|n| (n > 0).then_some(n as usize))
            .map_err(|_| {
                ApiError::bad_data(format!(
                    "invalid parameter {name:?}: {v:?} is not an integer"
                ))
            }),
    }
}

pub async fn metadata(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let limit = int_param(&p, "limit")?;
    let per_metric = int_param(&p, "limit_per_metric")?;
    let only = p.get("metric").filter(|m| !m.is_empty());
    // Remote-write metadata, then what the scrapes (and the self-scrape)
    // last saw, as Prometheus keeps it per target.
    let mut m = st.metadata.by_metric.read().clone();
    for t in st.scraper.targets() {
        for md in t.metadata.iter() {
            let e = Entry::of(md);
            let list = m.entry(md.metric_family_name.clone()).or_default();
            if !list.contains(&e) {
                list.push(e);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (name, entries) in m.iter() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let take = per_metric.unwrap_or(usize::MAX);
        let list: Vec<Value> = entries
            .iter()
            .take(take)
            .map(|e| json!({"type": e.type_, "help": e.help, "unit": e.unit}))
            .collect();
        out.insert(name.clone(), Value::Array(list));
    }
    Ok(ok(Value::Object(out)))
}

pub async fn status_tsdb(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::collect(&Method::GET, &HeaderMap::new(), q, Body::empty()).await?;
    let limit = int_param(&p, "limit")?.unwrap_or(10);
    let db = st.db.clone();
    let c = crate::http::panic::blocking(move || db.head_cardinality(limit)).await;
    let list = |v: &[(String, u64)]| -> Value {
        Value::Array(
            v.iter()
                .map(|(n, c)| json!({"name": n, "value": c}))
                .collect(),
        )
    };
    Ok(ok(json!({
        "headStats": {
            "numSeries": c.num_series,
            "numLabelPairs": c.num_label_pairs,
            "chunkCount": c.chunk_count,
            "minTime": c.min_time.unwrap_or(i64::MAX),
            "maxTime": c.max_time.unwrap_or(i64::MIN),
        },
        "seriesCountByMetricName": list(&c.series_count_by_metric_name),
        "labelValueCountByLabelName": list(&c.label_value_count_by_label_name),
        "memoryInBytesByLabelName": list(&c.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": list(&c.series_count_by_label_value_pair),
    })))
}
