//! skopos-server: every network edge of skopos — the HTTP API (axum), the
//! OTLP/gRPC service (tonic), authentication, TLS, and self-monitoring.
//!
//! The one design decision to know: handlers are thin. Each one bounds and
//! decodes its input with `skopos-ingest`, hands a batch to its store (TSDB,
//! log store, trace store), and maps typed errors to the status codes the
//! incumbent protocol defines.
//! Nothing here knows an on-disk format, and nothing outside this crate knows
//! an HTTP type.

mod http;
mod logs;
mod metrics;
mod server;
mod state;
mod traces;

pub use http::api::parse_selector;
pub use metrics::selfmon::SelfMetrics;
pub use server::{start, ServerConfig, ServerHandle, TlsConfig};
pub use state::Lifecycle;
