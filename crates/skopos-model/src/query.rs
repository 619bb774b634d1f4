use crate::{Labels, Matcher, Sample, SeriesSamples};

/// A storage failure seen by a query engine: what failed, so an engine or
/// an edge can tell damaged data from a store that is not there.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading `path` failed.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path` holds data that fails its checks.
    #[error("{path}: corrupt: {detail}")]
    Corrupt {
        path: std::path::PathBuf,
        detail: String,
    },
    /// The store is closed, locked by another process, or stopped after a
    /// failure; a retry later (or a restart) may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Any other failure a backend reports (a remote store, a test double).
    #[error("{0}")]
    Other(String),
}

/// What a query engine reads: the seam between storage (`skopos-tsdb`, or a
/// remote backend later) and the evaluators (PromQL). Time bounds are
/// inclusive milliseconds.
/// Cancels a running query of any engine from another thread (e.g. when the
/// client goes away): PromQL, LogQL and TraceQL share this one token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` that have samples in `[mint, maxt]`,
    /// sorted by labels, each with its samples in that range in time order.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError>;

    /// What [`select`](Self::select) returns, handed to `f` one series at a
    /// time in the same order, so that a caller that folds series as they
    /// come (an aggregation) holds one series' samples, not all of them.
    /// Stops early when `f` returns `false`.
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<(), StorageError> {
        for s in self.select(matchers, mint, maxt)? {
            if !f(s.labels, s.samples) {
                break;
            }
        }
        Ok(())
    }

    /// Label sets of the matching series, sorted, without samples.
    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError>;

    /// Label names of the matching series (all series when `matchers` is empty).
    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Values of label `name` on the matching series.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;
}
