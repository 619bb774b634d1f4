//! Prometheus' TSDB admin API, behind `--web.enable-admin-api` as in
//! Prometheus: `snapshot`, `delete_series` and `clean_tombstones` under
//! `/api/v1/admin/tsdb/`, POST or PUT. Disabled, each answers 503
//! `unavailable` "admin APIs disabled", as Prometheus does.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::series_api::{selectors, time_range};
use crate::http::api::{success, ApiError, Params};
use crate::state::AppState;

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "admin APIs disabled".into(),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, skopos_tsdb::TsdbError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::http::panic::blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `POST /api/v1/admin/tsdb/delete_series?match[]=...&start=&end=`: 204.
pub async fn delete_series(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    if !st.admin_api {
        return Err(disabled());
    }
    let p = Params::collect(&method, &headers, q, body).await?;
    let sels = selectors(&p)?;
    if sels.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&p)?;
    let db = st.db.clone();
    let report = blocking(move || {
        let mut all = skopos_tsdb::DeleteReport::default();
        for m in &sels {
            let r = db.delete_series(m, start, end)?;
            all.head_series += r.head_series;
            all.head_samples += r.head_samples;
            all.blocks += r.blocks;
            all.block_series += r.block_series;
        }
        Ok(all)
    })
    .await?;
    tracing::info!(?report, start, end, "series deleted through the admin API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/admin/tsdb/clean_tombstones`: 204.
pub async fn clean_tombstones(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if !st.admin_api {
        return Err(disabled());
    }
    let db = st.db.clone();
    let n = blocking(move || db.clean_tombstones()).await?;
    tracing::info!(blocks_rewritten = n, "tombstones cleaned");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/admin/tsdb/snapshot?skip_head=false`: writes
/// `<data-dir>/metrics/snapshots/<name>` and answers
/// `{"name": "20240102T030405Z-0123456789abcdef"}`.
pub async fn snapshot(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    if !st.admin_api {
        return Err(disabled());
    }
    let p = Params::collect(&method, &headers, q, body).await?;
    let skip_head = match p.get("skip_head").unwrap_or("") {
        "" => false,
        v => parse_bool(v).ok_or_else(|| {
            ApiError::bad_data(format!(
                "unable to parse boolean 'skip_head' argument: strconv.ParseBool: parsing {v:?}: invalid syntax"
            ))
        })?,
    };
    let name = snapshot_name(std::time::SystemTime::now());
    let dir = st.db.dir().join("snapshots").join(&name);
    let db = st.db.clone();
    let report = blocking(move || db.snapshot(&dir, !skip_head)).await?;
    tracing::info!(name, blocks = report.blocks, "snapshot written");
    Ok(success(json!({ "name": name })))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Prometheus' snapshot name: the UTC time as `20060102T150405Z`, a dash
/// and 16 random hex digits.
fn snapshot_name(now: std::time::SystemTime) -> String {
    let d = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let c = skopos_units::civil_from_unix(d.as_secs() as i64);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(d.as_nanos());
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:016x}",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        h.finish() & 0x7fff_ffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_look_like_prometheus_ones() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_512_940_344);
        let n = snapshot_name(t);
        assert_eq!(&n[..17], "20171210T211224Z-");
        assert_eq!(n.len(), 33);
        assert!(n[17..].bytes().all(|b| b.is_ascii_hexdigit()), "{n}");
        assert_ne!(snapshot_name(t), n, "random part");
    }
}
