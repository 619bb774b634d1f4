//! Logs: Loki push, OTLP logs (HTTP and gRPC), NDJSON, the Loki query API
//! (LogQL), the tail WebSocket and deletion, over the log store.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub mod explore;
pub mod grpc;
pub mod loki_api;
pub mod otlp;
pub mod patterns;
pub mod tail;

/// The log routes of the main HTTP port.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/loki/api/v1/push", post(loki_api::push))
        .route("/api/v1/logs/ndjson", post(loki_api::ndjson))
        .route("/v1/logs", post(otlp::logs))
        .route("/otlp/v1/logs", post(otlp::logs))
        .route("/loki/api/v1/tail", get(tail::tail))
        .route(
            "/loki/api/v1/delete",
            post(loki_api::delete).get(loki_api::delete_requests),
        )
        .route(
            "/loki/api/v1/query_range",
            get(loki_api::query_range).post(loki_api::query_range),
        )
        .route(
            "/loki/api/v1/query",
            get(loki_api::query).post(loki_api::query),
        )
        .route(
            "/loki/api/v1/series",
            get(loki_api::series).post(loki_api::series),
        )
        .route(
            "/loki/api/v1/index/stats",
            get(loki_api::index_stats).post(loki_api::index_stats),
        )
        .route(
            "/loki/api/v1/labels",
            get(loki_api::labels).post(loki_api::labels),
        )
        .route(
            "/loki/api/v1/label/{name}/values",
            get(loki_api::label_values).post(loki_api::label_values),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(explore::volume).post(explore::volume),
        )
        .route(
            "/loki/api/v1/index/volume_range",
            get(explore::volume_range).post(explore::volume_range),
        )
        .route(
            "/loki/api/v1/detected_labels",
            get(explore::detected_labels),
        )
        .route(
            "/loki/api/v1/detected_fields",
            get(explore::detected_fields),
        )
        .route(
            "/loki/api/v1/patterns",
            get(patterns::patterns).post(patterns::patterns),
        )
        .route(
            "/loki/api/v1/format_query",
            get(explore::format_query).post(explore::format_query),
        )
        .route("/loki/api/v1/status/buildinfo", get(explore::buildinfo))
        .route("/ready", get(|| async { "ready\n" }))
}
