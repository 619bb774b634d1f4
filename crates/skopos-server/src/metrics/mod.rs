//! Metrics: Prometheus remote write, OTLP metrics (HTTP and gRPC), the
//! Prometheus query and metadata API over the TSDB, exemplars, and skopos's
//! own `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub mod admin;
pub mod exemplars;
pub mod grpc;
pub mod metadata;
pub mod otlp;
pub mod query_api;
pub mod remote_write;
pub mod selfmon;
pub mod series_api;
pub mod status;

/// The metrics routes of the main HTTP port.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/write", post(remote_write::write))
        .route("/v1/metrics", post(otlp::metrics))
        .route(
            "/api/v1/series",
            get(series_api::series).post(series_api::series),
        )
        .route(
            "/api/v1/labels",
            get(series_api::labels).post(series_api::labels),
        )
        .route("/api/v1/label/{name}/values", get(series_api::label_values))
        .route(
            "/api/v1/query",
            get(query_api::query).post(query_api::query),
        )
        .route(
            "/api/v1/query_range",
            get(query_api::query_range).post(query_api::query_range),
        )
        .route(
            "/api/v1/format_query",
            get(query_api::format_query).post(query_api::format_query),
        )
        .route("/api/v1/status/buildinfo", get(query_api::buildinfo))
        .route("/api/v1/status/tsdb", get(metadata::status_tsdb))
        .route("/api/v1/metadata", get(metadata::metadata))
        .route("/api/v1/targets/metadata", get(metadata::targets_metadata))
        .route(
            "/api/v1/query_exemplars",
            get(exemplars::query_exemplars).post(exemplars::query_exemplars),
        )
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/walreplay", get(status::walreplay))
        .route("/api/v1/targets", get(status::targets))
        .route("/api/v1/scrape_pools", get(status::scrape_pools))
        .route("/federate", get(status::federate))
        .route("/-/reload", post(status::reload).put(status::reload))
        .route("/-/quit", post(status::quit).put(status::quit))
        .route(
            "/api/v1/admin/tsdb/snapshot",
            post(admin::snapshot).put(admin::snapshot),
        )
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(admin::clean_tombstones).put(admin::clean_tombstones),
        )
        .route("/metrics", get(self_metrics))
}

async fn self_metrics(State(st): State<Arc<AppState>>) -> Response {
    let text = st.metrics.render(&st.db);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
