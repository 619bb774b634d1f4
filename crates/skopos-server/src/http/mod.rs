//! What every capability's edge shares: Prometheus' API envelope and
//! parameters, bounded bodies, the bearer token, the catch-panic layer, the
//! OTLP/HTTP framing, and the process-level routes (health, readiness, the
//! index page).

use std::sync::Arc;

use axum::response::Html;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub mod api;
pub mod auth;
pub mod body;
pub mod otlp;
pub mod panic;

/// Health, readiness and the index page.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/-/healthy", get(|| async { "skopos is Healthy.\n" }))
        .route("/-/ready", get(|| async { "skopos is Ready.\n" }))
        .route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
