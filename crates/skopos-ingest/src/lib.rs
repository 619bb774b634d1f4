//! Decoders from the wire formats skopos accepts into `skopos-model` types,
//! plus the Prometheus-compatible scraper.
//!
//! | module | input | output |
//! |---|---|---|
//! | [`remote_write`] | Prometheus remote write 1.0 (snappy + protobuf) | [`WriteBatch`](skopos_model::WriteBatch) |
//! | [`exposition`] | Prometheus text 0.0.4 / OpenMetrics 1.0 text | labelled samples |
//! | [`otlp`] | OTLP metrics (protobuf or JSON) | [`WriteBatch`](skopos_model::WriteBatch) |
//! | [`otlp_traces`] | OTLP traces (protobuf or JSON) | [`SpanBatch`](skopos_model::SpanBatch) |
//! | [`zipkin`] | Zipkin v2 JSON span lists | [`SpanBatch`](skopos_model::SpanBatch) |
//! | [`relabel`] | Prometheus `relabel_configs` | rewritten label sets |
//! | [`scrape`] | `scrape_configs` | samples pushed into a [`SampleSink`](skopos_model::SampleSink) |
//!
//! The one design decision to know: everything except [`scrape`] is sans-I/O.
//! Decoders take bytes and return model values or a [`DecodeError`] whose
//! message names the problem, so the HTTP layer (in `skopos-server`) only maps
//! errors to status codes. Limits on label counts and lengths are *not*
//! checked here; storage checks them with [`skopos_model::Limits`]. The
//! scraper is the one component with I/O: it owns tokio tasks and an HTTP
//! client, and writes through the narrow `SampleSink` trait.
//!
//! Tests: unit tests sit next to the code (`*/tests.rs`), exposition parser
//! cases are data in `testdata/exposition.txt`, and `tests/` holds the
//! real-peer tests: `real_prometheus.rs` (a real Prometheus scrapes the same
//! targets with the same config and remote-writes what it stored; remote
//! write in both directions) and `real_otel_sdk.rs` (the OpenTelemetry
//! Python SDK exports OTLP to a loopback server). They fail when the peer is
//! missing; `scripts/test.sh` installs both.

pub mod exposition;
pub mod loki;
pub mod ndjson;
pub mod otlp;
pub mod otlp_logs;
pub mod otlp_traces;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
pub mod zipkin;

mod floatfmt;

pub use floatfmt::format_float;

/// Why a request body could not be decoded. Nothing of such a body is stored.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is not valid snappy block-format data.
    #[error("body is not valid snappy block-format data (remote write 1.0 requires snappy block, not framed, compression): {0}")]
    Snappy(String),
    /// The decompressed (or declared decompressed) size is over the limit.
    #[error("decompressed body would be {size} bytes, over the limit of {limit} bytes; send smaller batches")]
    TooLarge { size: usize, limit: usize },
    /// The protobuf message could not be decoded.
    #[error("body is not a valid protobuf {message}: {error}")]
    Protobuf {
        message: &'static str,
        error: String,
    },
    /// The JSON body could not be decoded.
    #[error("body is not valid OTLP/JSON {message}: {error}")]
    Json {
        message: &'static str,
        error: String,
    },
    /// The body is not a Zipkin v2 JSON span list.
    #[error("body is not a valid Zipkin v2 JSON span list: {0}")]
    Zipkin(String),
    /// A series carries the same label name twice.
    #[error("series {index} has duplicate label name {name:?}")]
    DuplicateLabel { index: usize, name: String },
    /// A series is structurally invalid (no labels, empty label name, ...).
    #[error("series {index} is invalid: {reason}")]
    InvalidSeries { index: usize, reason: String },
    /// Pushed exposition text could not be parsed.
    #[error("invalid exposition text: {0}")]
    Exposition(#[from] exposition::ParseError),
}

/// Metadata of one metric family, as remote write and the exposition formats
/// carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricMetadata {
    pub metric_family_name: String,
    /// Lower-case type name: `counter`, `gauge`, `histogram`,
    /// `gaugehistogram`, `summary`, `info`, `stateset` or `unknown`.
    pub type_: String,
    pub help: String,
    pub unit: String,
}
