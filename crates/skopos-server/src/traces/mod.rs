//! Traces: OTLP traces (HTTP and gRPC) and Zipkin into the trace store, the
//! span metrics and service graph derived from them, and the Tempo and
//! Jaeger query APIs.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub mod grpc;
pub mod ingest;
pub mod jaeger_api;
pub mod tempo_api;

/// The trace routes of the main HTTP port.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/traces", post(ingest::otlp_traces))
        .route("/api/v2/spans", post(ingest::zipkin_spans))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/traces/{id}", get(tempo_api::trace_v1))
        .route("/api/v2/traces/{id}", get(tempo_api::trace_v2))
        .route("/api/traces/{id}/logs", get(tempo_api::trace_logs))
        .route("/api/search", get(tempo_api::search))
        .route("/api/search/tags", get(tempo_api::tags_v1))
        .route("/api/v2/search/tags", get(tempo_api::tags_v2))
        .route(
            "/api/search/tag/{tag}/values",
            get(tempo_api::tag_values_v1),
        )
        .route(
            "/api/v2/search/tag/{tag}/values",
            get(tempo_api::tag_values_v2),
        )
        .route("/jaeger/api/services", get(jaeger_api::services))
        .route(
            "/jaeger/api/services/{service}/operations",
            get(jaeger_api::service_operations),
        )
        .route("/jaeger/api/operations", get(jaeger_api::operations))
        .route("/jaeger/api/traces", get(jaeger_api::find_traces))
        .route("/jaeger/api/traces/{id}", get(jaeger_api::trace))
        .route("/jaeger/api/dependencies", get(jaeger_api::dependencies))
}
