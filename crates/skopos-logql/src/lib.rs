//! LogQL for skopos (Loki 2.9/3.x semantics), evaluated over the
//! [`LogQueryable`] read trait, the way `skopos-promql` evaluates PromQL
//! over `Queryable`.
//!
//! The design decision to know: the engine never trusts the store to
//! filter. The store is told the stream matchers, the time range and the
//! literal `|=` substrings ([`skopos_model::LogSelect::contains`], a hint it may answer
//! from an index), and everything — including those substrings — is applied
//! again by the pipeline here, so any store that honours the trait's
//! contract gives Loki's answers. Metric queries read each range
//! aggregation's entries once for the whole query and evaluate every node
//! for all steps at once, per series.
//!
//! Map: `lexer.rs` and `parser.rs` (hand-written; errors carry line and
//! column), [`ast`] (the tree and its canonical `Display`), `template.rs`
//! (the Go `text/template` subset of `line_format`/`label_format`),
//! `parsers.rs` (JSON, logfmt, `pattern`), `pipeline.rs` (stages over one
//! entry, `__error__`, push-down), `eval.rs` (log and metric evaluation),
//! `units.rs` (Go durations, humanized bytes). Cases live in
//! `testdata/*.test`, run by `tests/cases.rs` against an in-memory store.
//! Where Loki 2.9 and 3.x differ, 3.x is followed (numeric label filters
//! on lines that already carry an error; logfmt's `--strict`). Deliberately
//! absent: `ip()` filters, `distinct`, the
//! `_with_timestamp` range functions. Regexes use Rust's `regex` syntax,
//! which matches Go's RE2 except that `\d`, `\w`, `\s` and `\b` are
//! Unicode-aware.

pub mod ast;
mod eval;
mod lexer;
mod parser;
mod parsers;
pub mod patterns;
mod pipeline;
mod template;
mod units;

use std::time::{Duration, Instant};

use skopos_model::{Direction, Labels, LogQueryable, LogStream};

pub use ast::{Expr, LogExpr, LogRange, RangeAgg, Stage, VectorAgg};
pub use pipeline::{ERROR_DETAILS_LABEL, ERROR_LABEL};

/// Engine limits.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Most series a metric query may produce at any node (Loki's
    /// `max_query_series`, default 500).
    pub max_series: usize,
    /// Most samples extracted from log entries a metric query may hold.
    pub max_samples: usize,
    /// Largest `limit` a log query may ask for (Loki's
    /// `max_entries_limit_per_query`, default 5000); 0 for no bound.
    pub max_entries_limit: usize,
    /// Wall-clock budget of one query.
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_series: 500,
            max_samples: 50_000_000,
            max_entries_limit: 5000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// The cancellation token all three query engines share.
pub use skopos_model::CancelToken;

/// One point of a metric series; `t` in Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<Point>,
}

/// A query's result in Loki's four result types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Log lines grouped by their final label set (stream labels, structured
    /// metadata and extracted labels), streams sorted by the text of their
    /// labels (as Loki sorts them), entries in the query's direction. Each
    /// entry keeps its structured metadata.
    Streams(Vec<LogStream>),
    /// Sorted label by label, except that `sort`/`sort_desc` order by value.
    Vector(Vec<VectorSample>),
    /// Series sorted label by label.
    Matrix(Vec<RangeSeries>),
    Scalar {
        t: i64,
        v: f64,
    },
}

impl Value {
    /// Loki's `resultType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Streams(_) => "streams",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
            Value::Scalar { .. } => "scalar",
        }
    }
}

/// Why a query failed. [`QueryError::error_type`] gives the API `errorType`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in query execution")]
    Timeout,
    #[error("query was canceled in query execution")]
    Canceled,
    /// Carries the limit that was exceeded.
    #[error(
        "query processing would load too many samples into memory in query execution (limit {0})"
    )]
    TooManySamples(usize),
    #[error("{0}")]
    Storage(String),
}

impl QueryError {
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples(_) => "execution",
            QueryError::Timeout => "timeout",
            QueryError::Canceled => "canceled",
            QueryError::Storage(_) => "internal",
        }
    }
}

/// Parses a LogQL expression.
pub fn parse(expr: &str) -> Result<Expr, QueryError> {
    parser::parse(expr)
}

/// The literal substrings a store may use to narrow a log query's lines
/// (what [`skopos_model::LogSelect::contains`] is filled with).
pub fn pushdown_contains(log: &LogExpr) -> Vec<String> {
    pipeline::pushdown_contains(&log.stages)
}

/// Runs a log query's pipeline over one entry of `stream` (live tailing,
/// deletes): the entry's labels and line after the pipeline, or `None` when
/// the pipeline drops it. The stream selector is not checked here.
pub fn process_entry(
    log: &LogExpr,
    stream: &Labels,
    entry: &skopos_model::LogEntry,
) -> Option<(Labels, String)> {
    let mut lbs = pipeline::EntryLabels::new(stream, &entry.metadata);
    let line = pipeline::run_stages(&log.stages, entry.ts, &entry.line, &mut lbs)?;
    Some((lbs.result(), line))
}

/// The LogQL engine: stateless apart from its options.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// `/loki/api/v1/query_range`. A log query returns the `limit` entries
    /// of `[start, end)` nearest `start` (forward) or `end` (backward); a
    /// metric query is evaluated at `start, start+step, … ≤ end` and
    /// returns a matrix, after `start` is rounded down and `end` up to a
    /// multiple of `step` (since the Unix epoch), as Loki's query frontend
    /// aligns every metric range query before splitting it.
    #[allow(clippy::too_many_arguments)]
    pub fn query_range(
        &self,
        q: &dyn LogQueryable,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
        limit: usize,
        direction: Direction,
        cancel: &CancelToken,
    ) -> Result<Value, QueryError> {
        if end < start {
            return Err(QueryError::Parse(
                "invalid parameter: end timestamp must not be before or equal to start time".into(),
            ));
        }
        let ast = parse(expr)?;
        let mut ctx = self.ctx(q, cancel);
        if let Expr::Log(log) = &ast {
            if limit == 0 {
                return Err(QueryError::Parse("limit must be a positive value".into()));
            }
            let max = self.opts.max_entries_limit;
            if max > 0 && limit > max {
                return Err(QueryError::Parse(format!(
                    "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {max})"
                )));
            }
            return eval::eval_log(&mut ctx, log, start, end, limit, direction).map(Value::Streams);
        }
        if step <= 0 {
            return Err(QueryError::Parse(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        let start = start - start.rem_euclid(step);
        let end = match end.rem_euclid(step) {
            0 => end,
            r => end.saturating_add(step - r),
        };
        let n = ((i128::from(end) - i128::from(start)) / i128::from(step)) as u128 + 1;
        if n > 11_000 {
            return Err(QueryError::Parse(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let n = n as usize;
        let steps: Vec<i64> = (0..n as i64).map(|i| start + i * step).collect();
        let res = eval::eval_metric(&mut ctx, &ast, &steps)?;
        let series = match res {
            eval::Steps::Scalar(v) => vec![eval::StepSeries {
                labels: Labels::empty(),
                values: vec![Some(v); n],
            }],
            eval::Steps::Vector(s) => s,
        };
        let mut out: Vec<RangeSeries> = series
            .into_iter()
            .map(|s| RangeSeries {
                labels: s.labels,
                points: s
                    .values
                    .iter()
                    .zip(&steps)
                    .filter_map(|(v, &t)| v.map(|v| Point { t, v }))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        // Series order as Prometheus' matrix sorts: label by label.
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(out))
    }

    /// `/loki/api/v1/query`: a metric query at one instant. Log queries are
    /// refused, as Loki refuses them.
    pub fn query_instant(
        &self,
        q: &dyn LogQueryable,
        expr: &str,
        time: i64,
        cancel: &CancelToken,
    ) -> Result<Value, QueryError> {
        let ast = parse(expr)?;
        if ast.is_log() {
            return Err(QueryError::Parse(
                "log queries are not supported as an instant query type, please change your query to a range query type".into(),
            ));
        }
        let mut ctx = self.ctx(q, cancel);
        match eval::eval_metric(&mut ctx, &ast, &[time])? {
            eval::Steps::Scalar(v) => Ok(Value::Scalar { t: time, v }),
            eval::Steps::Vector(series) => {
                let mut out: Vec<VectorSample> = series
                    .into_iter()
                    .filter_map(|s| {
                        s.values[0].map(|v| VectorSample {
                            labels: s.labels,
                            t: time,
                            v,
                        })
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                if let Expr::VectorAgg(v) = &ast {
                    match v.op {
                        ast::VecOp::Sort => out.sort_by(|a, b| a.v.total_cmp(&b.v)),
                        ast::VecOp::SortDesc => out.sort_by(|a, b| b.v.total_cmp(&a.v)),
                        _ => {}
                    }
                }
                Ok(Value::Vector(out))
            }
        }
    }

    fn ctx<'a>(&'a self, q: &'a dyn LogQueryable, cancel: &'a CancelToken) -> eval::Ctx<'a> {
        eval::Ctx {
            q,
            opts: &self.opts,
            cancel,
            deadline: Instant::now() + self.opts.timeout,
            samples: 0,
        }
    }
}
