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
pub mod lenient;
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

#[cfg(test)]
mod tests {
    /// The index page lists every route a capability registers.
    #[test]
    fn index_page_lists_every_route() {
        let page = include_str!("index.html");
        let sources = [
            include_str!("../metrics/mod.rs"),
            include_str!("../logs/mod.rs"),
            include_str!("../traces/mod.rs"),
            include_str!("mod.rs"),
        ];
        let mut routes = 0;
        for src in sources {
            // Spelt in two so that this test's own text does not match.
            for part in src.split(concat!(".rou", "te(")).skip(1) {
                let path = part.trim_start().strip_prefix('"').expect("a quoted path");
                let path = &path[..path.find('"').expect("a quoted path")];
                routes += 1;
                if path == "/" {
                    continue;
                }
                assert!(
                    page.contains(&format!("<code>{path}</code>"))
                        || page.contains(&format!("<code>POST {path}</code>")),
                    "the index page does not list {path}"
                );
            }
        }
        assert!(
            routes > 60,
            "only {routes} routes found: the scan is broken"
        );
    }
}
