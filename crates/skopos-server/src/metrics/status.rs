//! Prometheus' status and federation endpoints: `/api/v1/status/config`,
//! `/status/flags`, `/status/runtimeinfo`, `/status/walreplay`,
//! `/api/v1/targets`, `/api/v1/scrape_pools`, and `/federate` (the newest
//! sample of every selected series in the text format, with the
//! configuration's `global.external_labels` added as Prometheus adds them).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use skopos_model::{Labels, STALE_NAN};

use crate::http::api::{success, ApiError, Params};
use crate::server::ServerConfig;
use crate::state::AppState;

/// What the status endpoints report, fixed at start except the reload record.
pub struct StatusInfo {
    config_yaml: String,
    flags: Value,
    started: SystemTime,
    retention: String,
    wal_segments_at_open: u64,
    /// Success of the last configuration (re)load, and when it was.
    last_reload: parking_lot::Mutex<(bool, SystemTime)>,
}

impl StatusInfo {
    pub fn new(config: &ServerConfig, wal_segments_at_open: u64) -> Self {
        let now = SystemTime::now();
        let retention = match (config.tsdb.retention_time, config.tsdb.retention_size) {
            (Some(t), Some(s)) => format!(
                "{} or {}",
                skopos_units::format_duration(t),
                skopos_units::format_size(s)
            ),
            (Some(t), None) => skopos_units::format_duration(t),
            (None, Some(s)) => skopos_units::format_size(s),
            (None, None) => "unlimited".into(),
        };
        StatusInfo {
            config_yaml: config.config_yaml.clone(),
            flags: Value::Object(
                config
                    .flags
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
            started: now,
            retention,
            wal_segments_at_open,
            last_reload: parking_lot::Mutex::new((true, now)),
        }
    }

    pub fn reloaded(&self, ok: bool) {
        *self.last_reload.lock() = (ok, SystemTime::now());
    }
}

fn rfc3339(t: SystemTime) -> String {
    let ns = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64);
    skopos_units::format_rfc3339(ns, skopos_units::Precision::Nanos)
}

pub async fn config(State(st): State<Arc<AppState>>) -> Response {
    success(json!({ "yaml": st.status.config_yaml }))
}

pub async fn flags(State(st): State<Arc<AppState>>) -> Response {
    success(st.status.flags.clone())
}

pub async fn runtimeinfo(State(st): State<Arc<AppState>>) -> Response {
    let (ok, when) = *st.status.last_reload.lock();
    let stats = st.db.stats();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    success(json!({
        "startTime": rfc3339(st.status.started),
        "CWD": cwd,
        "reloadConfigSuccess": ok,
        "lastConfigTime": rfc3339(when),
        "corruptionCount": stats.wal_corruptions_repaired,
        "goroutineCount": 0,
        "GOMAXPROCS": cores,
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": st.status.retention,
    }))
}

/// The WAL is replayed before the server answers, so replay is always done:
/// `current` is `max`.
pub async fn walreplay(State(st): State<Arc<AppState>>) -> Response {
    let max = st.status.wal_segments_at_open.saturating_sub(1);
    success(json!({ "min": 0, "max": max, "current": max }))
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.to_string(), Value::String(x.value.to_string())))
            .collect::<Map<_, _>>(),
    )
}

pub async fn targets(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let want = p.get("state").unwrap_or("any");
    if !matches!(want, "active" | "dropped" | "any") {
        return Err(ApiError::bad_data(format!(
            "invalid parameter \"state\": {want:?} is not one of active, dropped, any"
        )));
    }
    let pool = p.get("scrapePool").filter(|s| !s.is_empty());
    let active: Vec<Value> = if want == "dropped" {
        Vec::new()
    } else {
        st.scraper
            .targets()
            .into_iter()
            .filter(|t| pool.is_none_or(|p| p == t.job))
            .map(|t| {
                json!({
                    "discoveredLabels": labels_json(&t.discovered_labels),
                    "labels": labels_json(&t.labels),
                    "scrapePool": t.job,
                    "scrapeUrl": t.scrape_url,
                    "globalUrl": t.scrape_url,
                    "lastError": t.last_error,
                    "lastScrape": t.last_scrape.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
                    "lastScrapeDuration": t.last_scrape_duration.as_secs_f64(),
                    "health": t.health.as_str(),
                    "scrapeInterval": skopos_units::format_duration(t.scrape_interval),
                    "scrapeTimeout": skopos_units::format_duration(t.scrape_timeout),
                })
            })
            .collect()
    };
    // Targets dropped by relabelling are not kept by the scraper.
    Ok(success(
        json!({ "activeTargets": active, "droppedTargets": [] }),
    ))
}

pub async fn scrape_pools(State(st): State<Arc<AppState>>) -> Response {
    let pools: Vec<String> = st
        .scrape_config
        .read()
        .scrape_configs
        .iter()
        .map(|c| c.job_name.clone())
        .collect();
    success(json!({ "scrapePools": pools }))
}

/// `GET /federate?match[]=...`: for every series a selector picks, its
/// newest sample within the lookback delta (stale series left out), as
/// Prometheus' text format with timestamps, external labels added where the
/// series lacks them.
pub async fn federate(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let selectors = p.all("match[]");
    if selectors.is_empty() {
        return Err(ApiError::bad_data(
            "federation needs at least one match[] selector",
        ));
    }
    let sets = selectors
        .iter()
        .map(|s| crate::http::api::parse_selector(s).map_err(ApiError::bad_data))
        .collect::<Result<Vec<_>, _>>()?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let lookback = st.query.opts.lookback_delta_ms;
    let external = st.scrape_config.read().global.external_labels.clone();
    let db = st.db.clone();
    let text = crate::http::panic::blocking(move || -> Result<String, ApiError> {
        let mut newest: std::collections::BTreeMap<Labels, (i64, f64)> = Default::default();
        for m in &sets {
            let series = db
                .select(m, now - lookback, now)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            for s in series {
                if let Some(last) = s.samples.last() {
                    if last.v.to_bits() != STALE_NAN.to_bits() {
                        newest.insert(s.labels, (last.t, last.v));
                    }
                }
            }
        }
        let mut out = String::new();
        let mut last_name = String::new();
        for (labels, (t, v)) in newest {
            let mut b = labels.builder();
            for (k, val) in &external {
                if labels.get(k).is_none() {
                    b.set(k.clone(), val.clone());
                }
            }
            let labels = b.build();
            let name = labels
                .get(skopos_model::METRIC_NAME)
                .unwrap_or("")
                .to_string();
            if name != last_name {
                out.push_str(&format!("# TYPE {name} untyped\n"));
                last_name = name.clone();
            }
            out.push_str(&name);
            let rest: Vec<String> = labels
                .iter()
                .filter(|l| l.name != skopos_model::METRIC_NAME)
                .map(|l| format!("{}=\"{}\"", l.name, escape(&l.value)))
                .collect();
            if !rest.is_empty() {
                out.push('{');
                out.push_str(&rest.join(","));
                out.push('}');
            }
            out.push_str(&format!(" {} {t}\n", format_value(v)));
        }
        Ok(out)
    })
    .await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// `POST /-/reload` (also PUT): re-reads the configuration through the
/// binary; 200 when it took, 500 with the reason when not.
pub async fn reload(State(st): State<Arc<AppState>>) -> Response {
    let Some(tx) = &st.lifecycle else {
        return lifecycle_disabled();
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if tx.send(crate::state::Lifecycle::Reload(reply)).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down\n",
        )
            .into_response();
    }
    match answer.await {
        Ok(Ok(())) => (StatusCode::OK, "").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the reload was not carried out\n",
        )
            .into_response(),
    }
}

/// `POST /-/quit` (also PUT): a graceful shutdown.
pub async fn quit(State(st): State<Arc<AppState>>) -> Response {
    let Some(tx) = &st.lifecycle else {
        return lifecycle_disabled();
    };
    let _ = tx.send(crate::state::Lifecycle::Quit);
    (StatusCode::OK, "Requesting termination... Goodbye!\n").into_response()
}

fn lifecycle_disabled() -> Response {
    (
        StatusCode::FORBIDDEN,
        "Lifecycle API is not enabled (start the server with --web.enable-lifecycle).\n",
    )
        .into_response()
}
