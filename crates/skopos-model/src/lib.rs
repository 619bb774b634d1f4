//! Shared data types of skopos: labels, samples, matchers, write batches,
//! log records, spans and the limits every write path enforces.
//!
//! The one design decision to know: this crate does no I/O. Decoders
//! (`skopos-ingest`) produce these types, storage engines (`skopos-tsdb`)
//! consume them, and the [`SampleSink`] trait is the narrow seam between the
//! two, so a scraper or a protocol handler never needs to know which storage
//! sits behind it.

pub mod codec;
pub mod exposition;
pub mod fxhash;
mod labels;
mod lifecycle;
mod limits;
mod logs;
mod matcher;
mod query;
mod sample;
mod traces;
mod write;

pub use labels::{is_valid_label_name, is_valid_metric_name, Label, Labels, LabelsBuilder};
pub use lifecycle::{Lifecycle, Retained};
pub use limits::{LimitError, Limits};
pub use logs::{Direction, LogBatch, LogEntry, LogQueryable, LogSelect, LogStream};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use query::{CancelToken, Queryable, StorageError};
pub use sample::{is_stale_nan, Sample, STALE_NAN, STALE_NAN_BITS};
pub use traces::{
    find_attr, parse_hex_id, to_hex, AttrValue, Attribute, Resource, Scope, Span, SpanBatch,
    SpanEvent, SpanField, SpanId, SpanKind, SpanLink, StatusCode, TagNames, Trace, TraceId,
    TraceQueryable, TraceSelect, UNKNOWN_SERVICE,
};
pub use write::{
    AppendError, AppendOutcome, Exemplar, SampleSink, SeriesExemplars, SeriesSamples, WriteBatch,
};

/// The label that carries a series' metric name.
pub const METRIC_NAME: &str = "__name__";
