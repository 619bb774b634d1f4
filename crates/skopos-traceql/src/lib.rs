//! TraceQL for skopos (Tempo semantics), evaluated over the
//! [`TraceQueryable`] read trait, the way `skopos-logql` evaluates LogQL
//! over `LogQueryable`.
//!
//! The design decision to know: the engine never trusts the store to
//! filter. It tells the store the time range and what every matching trace
//! is sure to contain ([`TraceSelect`]'s `equals` and
//! `min_span_duration_ns`, hints a store may answer from an index or
//! ignore; see `pushdown.rs` for when a hint is safe), then evaluates the
//! whole query again on each trace handed back. So any store honouring the
//! trait gives the same answers, and a hint can only make a search faster.
//!
//! Map: `lexer.rs` and `parser.rs` (hand-written; errors carry line and
//! column and say what was expected), [`ast`] (the tree and its canonical
//! `Display`), `eval.rs` (one trace at a time: filters, spanset and
//! structural operators, pipeline stages, Tempo's comparison rules),
//! `pushdown.rs` (hints), `legacy.rs` (Tempo's `tags`/`minDuration`/
//! `maxDuration` parameters as a query). Cases live in `testdata/*.test`,
//! run by `tests/cases.rs` against an in-memory store that honours the
//! hints and one that ignores them.
//!
//! Deliberately absent: `parent.`/`event.`/`link.`/`instrumentation.`
//! scopes, array attribute matching, `quantile_over_time` and the other
//! metrics functions, `coalesce()`, the union structural operators
//! (`&>`, `&>>`). Regexes use Rust's `regex` syntax (Go's RE2 with
//! Unicode-aware `\d`, `\w`, `\s`, `\b`), anchored at both ends as Tempo's.

pub mod ast;
mod eval;
mod legacy;
mod lexer;
mod parser;
mod pushdown;

use std::time::{Duration, Instant};

use skopos_model::{Attribute, SpanId, StorageError, Trace, TraceId, TraceQueryable, TraceSelect};

use ast::{AttrRef, FieldExpr, Intrinsic, Query, Stage};
use eval::{Evaluator, TraceCtx};

pub use ast::Query as TraceQlQuery;
pub use legacy::{jaeger_query, legacy_query, parse_duration, parse_logfmt};
pub use lexer::MAX_QUERY_BYTES;
pub use parser::{parse, ParseError, MAX_NESTING, MAX_OPERATORS};

/// What Tempo shows as the root service of a trace whose root span has
/// not arrived.
pub const ROOT_SPAN_NOT_RECEIVED: &str = "<root span not yet received>";

/// Engine limits.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Wall-clock budget of one search.
    pub timeout: Duration,
    /// Most traces one search inspects; the search stops there and
    /// reports what it found (`SearchResponse::truncated`). 0: no bound.
    pub max_traces_inspected: usize,
    /// `limit` when the caller gives 0 (Tempo's default is 20).
    pub default_limit: usize,
    /// Largest `limit` honoured; 0: no bound.
    pub max_limit: usize,
    /// Spans shown per spanset when the caller gives 0 (Tempo's `spss`
    /// default is 3).
    pub default_spans_per_spanset: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            timeout: Duration::from_secs(30),
            max_traces_inspected: 1_000_000,
            default_limit: 20,
            max_limit: 10_000,
            default_spans_per_spanset: 3,
        }
    }
}

/// The cancellation token all three query engines share.
pub use skopos_model::CancelToken;

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    BadRequest(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("search was canceled")]
    Canceled,
    #[error("search timed out after {0:?}")]
    Timeout(Duration),
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest<'a> {
    /// TraceQL text.
    pub query: &'a str,
    /// Traces with a span starting in `[start_ns, end_ns)`.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Most traces returned; 0 for the engine's default.
    pub limit: usize,
    /// Most spans listed per spanset; 0 for the engine's default.
    pub spans_per_spanset: usize,
}

/// The answer to a search, with what it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchResponse {
    /// Newest first (by start time).
    pub traces: Vec<TraceMatch>,
    pub inspected_traces: u64,
    pub inspected_spans: u64,
    /// The search stopped at `max_traces_inspected`; more may match.
    pub truncated: bool,
}

/// A matching trace, as Tempo's search response shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceMatch {
    pub trace_id: TraceId,
    /// [`ROOT_SPAN_NOT_RECEIVED`] without a root span.
    pub root_service_name: String,
    /// Empty without a root span.
    pub root_span_name: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    /// At least one; spansets split by `by()` come in order of first span.
    pub spansets: Vec<SpansetMatch>,
}

/// One spanset of a matching trace.
#[derive(Debug, Clone, PartialEq)]
pub struct SpansetMatch {
    /// The first `spans_per_spanset` spans by start time.
    pub spans: Vec<MatchedSpan>,
    /// How many spans the spanset has in all.
    pub matched: usize,
    /// As Tempo reports them: the `by()` values that made this spanset
    /// (`by(resource.service.name)`, `nil` for spans without the field) and
    /// the aggregates it passed (`count()`, `avg(duration)` as a Go
    /// duration string).
    pub attributes: Vec<Attribute>,
}

/// A span of a spanset.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSpan {
    pub span_id: SpanId,
    pub name: String,
    pub service_name: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    /// The attributes the query refers to (conditions, `by`, `select`) that
    /// this span has, by bare key (`http.status_code`), plus `status` and
    /// `kind` when the query refers to those.
    pub attributes: Vec<Attribute>,
}

/// A parsed query ready to run on traces: the piece both the search and a
/// caller filtering traces of its own (the Jaeger API) use.
pub struct CompiledQuery {
    query: Query,
    eval: Evaluator,
    reported: Vec<Reported>,
}

enum Reported {
    Attr(AttrRef),
    Intrinsic(Intrinsic),
}

impl CompiledQuery {
    pub fn new(text: &str) -> Result<CompiledQuery, QueryError> {
        CompiledQuery::from_query(parse(text)?)
    }

    pub fn from_query(query: Query) -> Result<CompiledQuery, QueryError> {
        let eval = Evaluator::new(&query)
            .map_err(|e| QueryError::BadRequest(format!("invalid regular expression: {e}")))?;
        let mut reported: Vec<Reported> = Vec::new();
        walk_fields(&query, &mut |e| match e {
            FieldExpr::Attr(a)
                if !reported
                    .iter()
                    .any(|r| matches!(r, Reported::Attr(b) if b.name == a.name)) =>
            {
                reported.push(Reported::Attr(a.clone()));
            }
            FieldExpr::Intrinsic(i @ (Intrinsic::Status | Intrinsic::Kind))
                if !reported
                    .iter()
                    .any(|r| matches!(r, Reported::Intrinsic(j) if j == i)) =>
            {
                reported.push(Reported::Intrinsic(*i));
            }
            _ => {}
        });
        Ok(CompiledQuery {
            query,
            eval,
            reported,
        })
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    /// What to ask the store for over `[start, end)`: the range and the
    /// hints every match satisfies.
    pub fn select(&self, start: i64, end: i64) -> TraceSelect {
        pushdown::select_for(&self.query, start, end)
    }

    /// The trace as a search result if the query matches it.
    pub fn evaluate(&self, trace: &Trace, spans_per_spanset: usize) -> Option<TraceMatch> {
        let cx = TraceCtx::new(trace);
        let sets = self.eval.query(&self.query, &cx);
        let sets: Vec<_> = sets.into_iter().filter(|s| !s.spans.is_empty()).collect();
        if sets.is_empty() {
            return None;
        }
        let (start, end) = trace.bounds();
        let root = trace.root();
        let spansets = sets
            .into_iter()
            .map(|s| {
                let mut idx = s.spans.clone();
                idx.sort_by_key(|&i| (trace.spans[i].start_ns, i));
                let spans = idx
                    .iter()
                    .take(spans_per_spanset)
                    .map(|&i| self.matched_span(&trace.spans[i], &cx))
                    .collect();
                SpansetMatch {
                    spans,
                    matched: s.spans.len(),
                    attributes: s
                        .by
                        .into_iter()
                        .map(|(k, v)| Attribute::new(k, v))
                        .collect(),
                }
            })
            .collect();
        Some(TraceMatch {
            trace_id: trace.trace_id,
            root_service_name: root.map_or(ROOT_SPAN_NOT_RECEIVED.to_string(), |r| {
                r.service_name().to_string()
            }),
            root_span_name: root.map_or(String::new(), |r| r.name.clone()),
            start_ns: start,
            duration_ns: end.saturating_sub(start).max(0),
            spansets,
        })
    }

    fn matched_span(&self, span: &skopos_model::Span, cx: &TraceCtx) -> MatchedSpan {
        let mut attributes: Vec<Attribute> = Vec::new();
        for r in &self.reported {
            let (key, value) = match r {
                Reported::Attr(a) => (a.name.clone(), eval::lookup_attr(span, a).to_attr()),
                Reported::Intrinsic(i) => {
                    let e = FieldExpr::Intrinsic(*i);
                    (
                        i.name().to_string(),
                        self.eval.field(&e, span, cx).to_attr(),
                    )
                }
            };
            if let Some(v) = value {
                if !attributes.iter().any(|a| a.key == key) {
                    attributes.push(Attribute::new(key, v));
                }
            }
        }
        MatchedSpan {
            span_id: span.span_id,
            name: span.name.clone(),
            service_name: span.service_name().to_string(),
            start_ns: span.start_ns,
            duration_ns: span.duration_ns(),
            attributes,
        }
    }
}

/// Calls `f` on every field expression node of the query, outermost
/// first, left to right.
pub(crate) fn walk_fields<'q>(q: &'q Query, f: &mut dyn FnMut(&'q FieldExpr)) {
    fn field<'q>(e: &'q FieldExpr, f: &mut dyn FnMut(&'q FieldExpr)) {
        f(e);
        match e {
            FieldExpr::Binary { lhs, rhs, .. } => {
                field(lhs, f);
                field(rhs, f);
            }
            FieldExpr::Not(inner) | FieldExpr::Neg(inner) => field(inner, f),
            _ => {}
        }
    }
    match q {
        Query::Filter(Some(e)) => field(e, f),
        Query::Filter(None) => {}
        Query::Binary { lhs, rhs, .. } => {
            walk_fields(lhs, f);
            walk_fields(rhs, f);
        }
        Query::Pipe { input, stage } => {
            walk_fields(input, f);
            match stage {
                Stage::Filter(Some(e)) => field(e, f),
                Stage::Filter(None) | Stage::Coalesce => {}
                Stage::Aggregate { agg, .. } => match agg {
                    ast::Aggregate::Count => {}
                    ast::Aggregate::Avg(e)
                    | ast::Aggregate::Min(e)
                    | ast::Aggregate::Max(e)
                    | ast::Aggregate::Sum(e) => field(e, f),
                },
                Stage::By(es) | Stage::Select(es) => {
                    for e in es {
                        field(e, f);
                    }
                }
            }
        }
    }
}

/// Runs TraceQL searches against a [`TraceQueryable`].
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    /// The traces with a span starting in `[start_ns, end_ns)` that `query`
    /// matches, newest first, at most `limit` (0: the default), each with
    /// at most `spans_per_spanset` spans per spanset (0: the default).
    pub fn search(
        &self,
        q: &dyn TraceQueryable,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        limit: usize,
        spans_per_spanset: usize,
    ) -> Result<Vec<TraceMatch>, QueryError> {
        let req = SearchRequest {
            query,
            start_ns,
            end_ns,
            limit,
            spans_per_spanset,
        };
        Ok(self.search_with(q, &req, &CancelToken::new())?.traces)
    }

    /// [`search`](Self::search) with cancellation and statistics.
    pub fn search_with(
        &self,
        q: &dyn TraceQueryable,
        req: &SearchRequest,
        cancel: &CancelToken,
    ) -> Result<SearchResponse, QueryError> {
        let compiled = CompiledQuery::new(req.query)?;
        self.search_compiled(q, &compiled, req, cancel)
    }

    /// A search with the query already compiled.
    pub fn search_compiled(
        &self,
        q: &dyn TraceQueryable,
        compiled: &CompiledQuery,
        req: &SearchRequest,
        cancel: &CancelToken,
    ) -> Result<SearchResponse, QueryError> {
        if req.end_ns <= req.start_ns {
            return Err(QueryError::BadRequest(format!(
                "end ({}) must be after start ({})",
                req.end_ns, req.start_ns
            )));
        }
        let mut limit = if req.limit == 0 {
            self.opts.default_limit
        } else {
            req.limit
        };
        if self.opts.max_limit > 0 {
            limit = limit.min(self.opts.max_limit);
        }
        let spss = if req.spans_per_spanset == 0 {
            self.opts.default_spans_per_spanset
        } else {
            req.spans_per_spanset
        };
        let deadline = Instant::now() + self.opts.timeout;
        let sel = compiled.select(req.start_ns, req.end_ns);
        let mut out = SearchResponse::default();
        let mut failure: Option<QueryError> = None;
        let mut seen: std::collections::HashSet<TraceId> = std::collections::HashSet::new();
        let max_inspected = self.opts.max_traces_inspected;
        q.select_traces(&sel, &mut |trace: Trace| {
            if cancel.is_cancelled() {
                failure = Some(QueryError::Canceled);
                return false;
            }
            if Instant::now() >= deadline {
                failure = Some(QueryError::Timeout(self.opts.timeout));
                return false;
            }
            if max_inspected > 0 && out.inspected_traces as usize >= max_inspected {
                out.truncated = true;
                return false;
            }
            out.inspected_traces += 1;
            out.inspected_spans += trace.spans.len() as u64;
            // The range is part of the contract, but check it like the rest.
            let in_range = trace
                .spans
                .iter()
                .any(|s| s.start_ns >= req.start_ns && s.start_ns < req.end_ns);
            if in_range {
                // A store may hand a trace over twice (from two partitions).
                if !seen.contains(&trace.trace_id) {
                    if let Some(m) = compiled.evaluate(&trace, spss) {
                        seen.insert(m.trace_id);
                        out.traces.push(m);
                    }
                }
            }
            out.traces.len() < limit
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        out.traces.sort_by(|a, b| {
            b.start_ns
                .cmp(&a.start_ns)
                .then(a.trace_id.cmp(&b.trace_id))
        });
        Ok(out)
    }
}
