//! Log records as the log store and the LogQL engine see them, and the read
//! seam between the two (the logs counterpart of [`crate::Queryable`]).
//!
//! Time is Unix nanoseconds throughout, as in Loki's API. A stream is a set
//! of labels (`{service_name="api", level="error"}`); each entry carries the
//! line and its structured metadata (labels that are not part of the stream,
//! such as `trace_id`).

use crate::{Labels, Matcher, StorageError};

/// One log line of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Unix nanoseconds.
    pub ts: i64,
    pub line: String,
    /// Structured metadata: attributes kept beside the line, not in the stream.
    pub metadata: Labels,
}

impl LogEntry {
    pub fn new(ts: i64, line: impl Into<String>) -> Self {
        LogEntry {
            ts,
            line: line.into(),
            metadata: Labels::empty(),
        }
    }
}

/// A stream's labels and some of its entries, in time order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogStream {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// A batch of streams to append: the unit of acknowledgement of the log store.
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    pub streams: Vec<LogStream>,
}

impl LogBatch {
    /// Entries in the batch.
    pub fn entries(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }

    /// Bytes of line text in the batch.
    pub fn line_bytes(&self) -> usize {
        self.streams
            .iter()
            .flat_map(|s| &s.entries)
            .map(|e| e.line.len())
            .sum()
    }
}

/// The order entries are returned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first (Loki's default).
    #[default]
    Backward,
}

/// What a log query asks the store for.
#[derive(Debug, Clone)]
pub struct LogSelect {
    /// Stream selector (all must match).
    pub matchers: Vec<Matcher>,
    /// Inclusive start, Unix ns.
    pub start: i64,
    /// Exclusive end, Unix ns.
    pub end: i64,
    /// Literal substrings that every wanted line contains (from `|=` line
    /// filters): a hint the store may answer from its full-text index. The
    /// caller still applies its filters; a store may ignore this.
    pub contains: Vec<String>,
    /// Regular expressions (unanchored) that every wanted line matches
    /// (from `|~` line filters): a hint like `contains`.
    pub matches: Vec<String>,
}

/// What the LogQL engine reads: the seam between the log store and the
/// evaluator, so that another store can slot in behind it.
pub trait LogQueryable: Send + Sync {
    /// Hands `f` each stream matching `sel` with its entries in range (in
    /// time order, oldest first), one stream at a time, streams sorted by
    /// labels. A stream may be handed over in several parts, each in time
    /// order and later than the previous part. Stops when `f` returns false.
    fn select_logs(
        &self,
        sel: &LogSelect,
        f: &mut dyn FnMut(LogStream) -> bool,
    ) -> Result<(), StorageError>;

    /// Label names of the streams with entries in `[start, end)`.
    fn log_label_names(&self, start: i64, end: i64) -> Result<Vec<String>, StorageError>;

    /// Values of label `name` on streams matching `matchers` (all streams
    /// when empty) with entries in `[start, end)`.
    fn log_label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, StorageError>;
}
