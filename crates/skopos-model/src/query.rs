use crate::{Labels, Matcher, SeriesSamples};

/// A storage failure seen by a query engine.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// What a query engine reads: the seam between storage (`skopos-tsdb`, or a
/// remote backend later) and the evaluators (PromQL). Time bounds are
/// inclusive milliseconds.
pub trait Queryable: Send + Sync {
    /// Series matching all `matchers` that have samples in `[mint, maxt]`,
    /// sorted by labels, each with its samples in that range in time order.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError>;

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
