//! skopos-server: every network edge of skopos — the HTTP API (axum), the
//! OTLP/gRPC service (tonic), authentication, TLS, and self-monitoring.
//!
//! The one design decision to know: handlers are thin. Each one bounds and
//! decodes its input with `skopos-ingest`, hands a batch to its store (TSDB,
//! log store, trace store), and maps typed errors to the status codes the
//! incumbent protocol defines.
//! Nothing here knows an on-disk format, and nothing outside this crate knows
//! an HTTP type.

mod api;
mod auth;
mod body;
mod exemplars;
mod grpc;
mod jaeger_api;
mod loki_api;
mod metadata;
mod otlp_http;
mod panic;
mod query_api;
mod remote_write;
mod selfmon;
mod server;
mod tail;
mod tempo_api;
mod traces;

pub use api::parse_selector;
pub use selfmon::SelfMetrics;
pub use server::{start, ServerConfig, ServerHandle, TlsConfig};
