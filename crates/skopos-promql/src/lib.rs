//! PromQL evaluation for skopos, over the [`Queryable`] storage trait.
//!
//! Queries are checked as Prometheus 2.42 checks them (`syntax.rs`, which
//! also words the errors as Prometheus does, with positions), then parsed
//! by the `promql-parser` crate; this crate evaluates the
//! parsed tree with Prometheus 2.x semantics (lookback, staleness, `@`,
//! offsets, subqueries, vector matching, aggregations and functions).
//!
//! The design decisions to know. The common shapes — selectors, range
//! functions over a matrix selector, element-wise maps and the aggregations
//! `sum avg count group min max stddev stdvar` over them — are evaluated
//! series-major (`batch.rs`): series stream out of storage one at a time and
//! each is folded into its group at every step at once, so a wide dashboard
//! query holds one series' samples plus the result, and finds each series'
//! group once. Everything else is evaluated step by step, the way
//! Prometheus' evaluator works per step: its selectors are fetched from
//! storage up front, each once for the span of evaluation times it can reach
//! (offsets, `@`, ranges, subqueries and the lookback computed as Prometheus
//! does), and a long range query is cut into slices of steps, each with its
//! own reads, so that what is read stays under the sample limit (samples
//! read count against [`EngineOptions::max_samples`] like samples held by
//! the evaluation). Series-major subtrees inside a step-evaluated query are
//! computed per slice and read by the step evaluator. Both paths share the
//! arithmetic, so they give the same bits. Nothing here knows how samples
//! are stored.
//!
//! Map: `eval.rs` (planning, reads, selectors, subqueries, the step loop),
//! `batch.rs` (series-major evaluation),
//! `binary.rs` (operators and vector matching), `aggregate.rs`,
//! `functions.rs`, `format.rs` (Prometheus' float formatting), `syntax.rs`
//! (Prometheus' lexer, grammar errors and type checks). Semantics are
//! pinned by Prometheus test scripts in `testdata/*.test`, run by
//! `tests/scripts.rs` against an in-memory store and against `skopos-tsdb`;
//! the same file's peer tests check those expectations, and thousands of
//! generated queries, against the real Prometheus 2.42 (`promtool`).
//! Deliberately absent: native histograms (the model has none), functions
//! and modifiers newer than Prometheus 2.x (refused as unknown).

mod aggregate;
mod batch;
mod binary;
mod eval;
mod format;
mod functions;
pub mod syntax;
use skopos_model::fxhash;

use std::time::Duration;

use skopos_model::{Labels, Queryable, Sample};

pub use eval::matcher_sets;
pub use format::{format_value, write_value};

/// Engine limits. `Default` gives Prometheus' defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold in memory at once (`--query.max-samples`):
    /// samples read from storage for a slice of steps, and separately the
    /// samples of the evaluation (range vectors of a step plus the result).
    pub max_samples: usize,
    /// Wall-clock budget of one query (`--query.timeout`).
    pub timeout: Duration,
    /// Evaluate the parts of a query that allow it series-major, streaming
    /// series from storage (see `batch.rs`). Off, everything is evaluated
    /// step by step; the answers are the same, which the tests check.
    pub series_major: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 300_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            series_major: true,
        }
    }
}

/// Step of a subquery written without one (`x[1h:]`): Prometheus' default
/// global evaluation interval.
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The cancellation token all three query engines share.
pub use skopos_model::CancelToken;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector (matrix).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// The result of a query, in the four PromQL value types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// Prometheus' `resultType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Why a query failed. [`QueryError::error_type`] gives Prometheus' API `errorType`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Parse(String),
    /// The query text does not parse: Prometheus' `LINE:COL: parse error: ...`.
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in query execution")]
    Timeout,
    #[error("query was canceled in query execution")]
    Canceled,
    /// Carries the limit that was exceeded.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples(usize),
    #[error("{0}")]
    Storage(String),
}

impl QueryError {
    /// The `errorType` string of Prometheus' HTTP API.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse(_) | QueryError::Syntax(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples(_) => "execution",
            QueryError::Timeout => "timeout",
            QueryError::Canceled => "canceled",
            QueryError::Storage(_) => "internal",
        }
    }
}

/// The PromQL engine: stateless apart from its options, shareable across threads.
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

    /// Evaluates `expr` at one instant (`/api/v1/query`).
    pub fn instant(
        &self,
        q: &dyn Queryable,
        expr: &str,
        time_ms: i64,
        cancel: &CancelToken,
    ) -> Result<Value, QueryError> {
        let ast = parse(expr)?;
        eval::run(&self.opts, q, &ast, time_ms, time_ms, 0, false, cancel)
    }

    /// Evaluates `expr` at every step of `[start, end]` (`/api/v1/query_range`).
    /// The result is always a matrix.
    pub fn range(
        &self,
        q: &dyn Queryable,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        cancel: &CancelToken,
    ) -> Result<Value, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::Parse(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::Parse(
                "end timestamp must not be before start time".into(),
            ));
        }
        let ast = parse(expr)?;
        eval::run(&self.opts, q, &ast, start_ms, end_ms, step_ms, true, cancel)
    }
}

/// Deepest expression tree accepted. The parser, the evaluator and dropping
/// the tree all recurse; this keeps a hostile query from overflowing a 2 MiB
/// thread stack (measured: 5000 levels still fit in a debug build).
pub const MAX_NESTING: usize = 2000;

/// An upper bound of the expression tree's depth, from the text: the deepest
/// parenthesis nesting plus every operator character and operator keyword
/// outside strings and label matchers.
fn nesting_estimate(q: &str) -> usize {
    let (mut depth, mut max_depth, mut ops) = (0usize, 0usize, 0usize);
    let mut braces = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut word = String::new();
    let flush = |word: &mut String, ops: &mut usize| {
        if matches!(word.as_str(), "and" | "or" | "unless" | "atan2") {
            *ops += 1;
        }
        word.clear();
    };
    for c in q.chars() {
        if let Some(qc) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && qc != '`' {
                escaped = true;
            } else if c == qc {
                quote = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut ops);
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            _ if braces > 0 => {}
            '(' | '[' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' => ops += 1,
            _ => {}
        }
    }
    flush(&mut word, &mut ops);
    max_depth + ops
}

/// The first duration written as a plain number (`x[300]`, `x[5m:30]`,
/// `x offset 60`) that is not finite or does not fit in `i64` milliseconds.
/// `promql-parser` turns such a number into a `Duration` with
/// `Duration::from_secs_f64`, which panics on infinity, NaN and anything
/// past `u64::MAX` seconds (found by the `promql` fuzz target:
/// `x[999999999999999999999990]`).
fn number_duration_out_of_range(q: &str) -> Option<String> {
    #[derive(PartialEq)]
    enum Prev {
        DurationPlace,
        Other,
    }
    const MAX_SECONDS: f64 = (i64::MAX / 1000) as f64;
    let b = q.as_bytes();
    let (mut i, mut prev, mut braces) = (0, Prev::Other, 0usize);
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
                }
                i += 1;
                prev = Prev::Other;
                continue;
            }
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            _ if braces > 0 => {}
            b'[' | b':' => prev = Prev::DurationPlace,
            b'-' | b'+' if prev == Prev::DurationPlace => {}
            _ if c.is_ascii_whitespace() => {}
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &q[start..i];
                let nonfinite =
                    word.eq_ignore_ascii_case("inf") || word.eq_ignore_ascii_case("nan");
                if prev == Prev::DurationPlace && nonfinite {
                    return Some(word.to_string());
                }
                prev = if word.eq_ignore_ascii_case("offset") {
                    Prev::DurationPlace
                } else {
                    Prev::Other
                };
                continue;
            }
            _ if c.is_ascii_digit() || c == b'.' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || b[i] == b'_'
                        || ((b[i] == b'+' || b[i] == b'-')
                            && matches!(b[i - 1], b'e' | b'E')
                            && !q[start..i].starts_with("0x")))
                {
                    i += 1;
                }
                let tok = &q[start..i];
                if prev == Prev::DurationPlace {
                    let v = match tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
                        Some(hex) => {
                            u64::from_str_radix(hex, 16).map_or(f64::INFINITY, |v| v as f64)
                        }
                        None => tok.parse::<f64>().unwrap_or(0.0),
                    };
                    if !(v.is_finite() && v <= MAX_SECONDS) {
                        return Some(tok.to_string());
                    }
                }
                prev = Prev::Other;
                continue;
            }
            _ => prev = Prev::Other,
        }
        i += 1;
    }
    None
}

/// Parses a PromQL expression (with `holt_winters`, which Prometheus 2.x has
/// and the parser knows under its 3.x name only).
/// Functions, aggregations and modifiers newer than Prometheus 2.x are
/// refused as Prometheus 2.x refuses them, as unknown.
pub fn parse(expr: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    if nesting_estimate(expr) > MAX_NESTING {
        return Err(QueryError::Parse(format!(
            "query is nested too deeply (more than {MAX_NESTING} levels of operators and parentheses)"
        )));
    }
    if let Some(bad) = number_duration_out_of_range(expr) {
        return Err(QueryError::Parse(format!(
            "duration out of range: {bad:?} (a range, subquery step or offset must be a finite number of seconds that fits in milliseconds)"
        )));
    }
    functions::register_extra();
    // Prometheus' own reading first: it refuses some queries the parser
    // crate takes (Go's regexp grammar, quoted label names, a sign on a
    // string), and its errors carry positions.
    if let Some(e) = syntax::explain(expr) {
        return Err(QueryError::Syntax(e.render(expr)));
    }
    let refused = |why: String| QueryError::Syntax(format!("parse error: {why}"));
    let ast = promql_parser::parser::parse(expr).map_err(refused)?;
    functions::check_supported(&ast).map_err(refused)?;
    Ok(ast)
}

/// Parses one series selector (`match[]` of the series, labels and
/// federation APIs, `--match` of the CLI: `up`, `{job="a"}`,
/// `up{job=~"a|b"}`) into storage matchers, the metric name first.
pub fn parse_selector(s: &str) -> Result<Vec<skopos_model::Matcher>, String> {
    let expr = parse(s).map_err(|e| e.to_string())?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!("{s:?} is not a series selector"));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!(
            "{s:?}: `or` inside a selector is not supported here"
        ));
    }
    let out = matcher_sets(&vs)
        .map_err(|e| e.to_string())?
        .pop()
        .unwrap_or_default();
    if out.iter().all(|m| m.matches_empty()) {
        return Err(format!(
            "{s:?}: vector selector must contain at least one non-empty matcher"
        ));
    }
    Ok(out)
}
