use crate::{Labels, LimitError, Sample};

/// Samples for one series, in the order the client sent them.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// What a decoder produces and a storage engine appends in one go: the unit
/// of acknowledgement. When `append` returns, the whole batch is durable (to
/// the degree the storage's fsync policy promises).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub series: Vec<SeriesSamples>,
}

impl WriteBatch {
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    pub fn push(&mut self, labels: Labels, sample: Sample) {
        self.series.push(SeriesSamples {
            labels,
            samples: vec![sample],
        });
    }
}

/// What happened to the samples of an accepted batch. Individual samples may
/// be refused (too old, conflicting duplicate) while the rest are stored, as
/// Prometheus does; `first_rejection` says why, for the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub series_created: usize,
    pub samples_appended: usize,
    /// Exact duplicates (same timestamp, same value): accepted as no-ops.
    pub duplicates: usize,
    /// Older than the out-of-order window allows.
    pub too_old: usize,
    /// Same timestamp as a stored sample but a different value.
    pub conflicts: usize,
    /// Outside the window the store keeps: older than its retention or
    /// too far in the future (refused at the edge, never stored).
    pub out_of_bounds: usize,
    pub first_rejection: Option<String>,
}

impl AppendOutcome {
    pub fn rejected(&self) -> usize {
        self.too_old + self.conflicts + self.out_of_bounds
    }
}

/// Why a whole batch was refused. Nothing of the batch was stored.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A series' labels break the grammar or a per-series limit (client error).
    #[error(transparent)]
    InvalidSeries(#[from] LimitError),
    /// Storing the batch would exceed the active series limit (client error).
    #[error("the batch would create {new} new series but the head holds {current} of max_series={limit}")]
    SeriesLimit {
        new: usize,
        current: usize,
        limit: usize,
    },
    /// The storage is closing or failed to write (retryable, a server error).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl AppendError {
    /// Whether the client caused this and must not retry the same data.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, AppendError::Unavailable(_))
    }
}

/// Anything that stores samples: the TSDB, or a test double.
pub trait SampleSink: Send + Sync {
    fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome, AppendError>;
}

/// An exemplar: a sample of a series annotated with labels pointing at what
/// produced it (usually `trace_id`), as Prometheus' exemplars API returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The exemplar's own labels, e.g. `{trace_id="..."}`.
    pub labels: Labels,
    pub value: f64,
    /// Unix milliseconds.
    pub ts_ms: i64,
}

/// Exemplars of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesExemplars {
    pub series: Labels,
    pub exemplars: Vec<Exemplar>,
}
