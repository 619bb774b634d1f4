//! The evaluator: plans the storage reads, preloads every selector once, then
//! evaluates the tree step by step.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Expr, LabelModifier, MatrixSelector, Offset,
    VectorSelector,
};
use skopos_model::{
    is_stale_nan, Labels, MatchOp, Matcher, Queryable, Sample, SeriesSamples, METRIC_NAME,
};

use crate::aggregate::aggregate;
use crate::batch::{self, Batched, Stop};
use crate::binary::{is_comparison, scalar_binop, vector_scalar, vector_vector};
use crate::functions;
use crate::fxhash::FxHashMap;
use crate::{
    CancelToken, EngineOptions, QueryError, RangeSeries, Value, VectorSample,
    DEFAULT_SUBQUERY_STEP_MS,
};

pub(crate) type Result<T> = std::result::Result<T, QueryError>;

/// One element of an instant vector during evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub labels: Rc<Labels>,
    pub v: f64,
}

/// One series of a range vector during evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Rc<Labels>,
    pub samples: Vec<Sample>,
}

/// An evaluated value at one step.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(Vec<Series>),
}

/// A subquery's inner expression evaluated on the contiguous step grid
/// `from..=to`, kept as series between evaluation steps.
#[derive(Default)]
pub(crate) struct SubqueryRun {
    valid: bool,
    from: i64,
    to: i64,
    index: FxHashMap<Rc<Labels>, usize>,
    series: Vec<Series>,
}

impl SubqueryRun {
    fn push(&mut self, labels: Rc<Labels>, s: Sample) {
        let i = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.series.push(Series {
                    labels: labels.clone(),
                    samples: Vec::new(),
                });
                self.index.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        self.series[i].samples.push(s);
    }

    /// Forgets series with no samples left.
    fn compact(&mut self) {
        self.series.retain(|s| !s.samples.is_empty());
        self.index = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.labels.clone(), i))
            .collect();
    }
}

/// A series read from storage for one selector, with cursors remembering
/// where the previous step's window started and ended.
struct Loaded {
    labels: Rc<Labels>,
    samples: Vec<Sample>,
    lo: Cell<usize>,
    hi: Cell<usize>,
}

/// `samples.partition_point(|s| before(s.t))`, starting from the cursor:
/// evaluation steps move forward, so the answer is usually a few samples
/// on, and a sequential walk avoids the cache misses of a binary search.
fn seek(samples: &[Sample], cursor: &Cell<usize>, before: impl Fn(i64) -> bool) -> usize {
    let mut i = cursor.get().min(samples.len());
    if i > 0 && !before(samples[i - 1].t) {
        // Time went backwards (subqueries, `@`): search afresh.
        i = samples.partition_point(|s| before(s.t));
    } else {
        let mut walked = 0;
        while i < samples.len() && before(samples[i].t) {
            i += 1;
            walked += 1;
            if walked == 16 {
                i += samples[i..].partition_point(|s| before(s.t));
                break;
            }
        }
    }
    cursor.set(i);
    i
}

/// The series of a range query's result as they accumulate step by step.
#[derive(Default)]
struct Accumulated {
    series: Vec<(Rc<Labels>, Vec<Sample>)>,
    index: FxHashMap<Rc<Labels>, usize>,
    /// Slot by label-set identity: the same `Rc` comes back every step, and
    /// this spares hashing its labels. Holds the `Rc` so that its address
    /// cannot be reused by another label set.
    by_ptr: FxHashMap<usize, (Rc<Labels>, usize)>,
}

impl Accumulated {
    fn slot(&mut self, labels: Rc<Labels>) -> usize {
        let ptr = Rc::as_ptr(&labels) as usize;
        if let Some((_, i)) = self.by_ptr.get(&ptr) {
            return *i;
        }
        let i = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.series.push((labels.clone(), Vec::new()));
                self.index.insert(labels.clone(), self.series.len() - 1);
                self.series.len() - 1
            }
        };
        if self.by_ptr.len() >= 1 << 20 {
            self.by_ptr.clear();
        }
        self.by_ptr.insert(ptr, (labels, i));
        i
    }
}

/// An input label set and the label set derived from it.
type LabelsPair = (Rc<Labels>, Rc<Labels>);

pub(crate) fn exec_err(msg: impl Into<String>) -> QueryError {
    QueryError::Execution(msg.into())
}

pub(crate) struct Evaluator<'a> {
    pub(crate) opts: &'a EngineOptions,
    /// Query start and end, for `@ start()` / `@ end()`.
    start: i64,
    end: i64,
    cancel: &'a CancelToken,
    deadline: Instant,
    /// Preloaded series per selector node (keyed by the node's address).
    data: HashMap<usize, Vec<Loaded>>,
    /// Subtrees evaluated series-major for the current slice of steps, by
    /// the node's address; the step evaluator reads their values.
    batched: HashMap<usize, Batched>,
    /// Whether series-major evaluation is still tried (off after a fallback).
    batch_on: bool,
    /// Samples held by the finished part of the result.
    pub(crate) held: Cell<usize>,
    /// Samples held by the step being evaluated.
    step_samples: Cell<usize>,
    ticks: Cell<u32>,
    /// Samples fetched from storage for the current slice of steps.
    fetched: usize,
    /// Results of subquery inner steps, per subquery node and step time:
    /// consecutive evaluation steps share most of their subquery window.
    subquery_cache: RefCell<HashMap<usize, SubqueryRun>>,
    /// `drop_name` results by input label set (identity); the input is kept
    /// alive so that its address cannot be reused by another label set.
    dropped: RefCell<FxHashMap<usize, LabelsPair>>,
    /// Compiled `label_replace` regexes, by source.
    regexes: RefCell<HashMap<String, regex::Regex>>,
}

fn key_of(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Runs a query: instant when `!is_range` (start == end), else over all steps.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    opts: &EngineOptions,
    q: &dyn Queryable,
    ast: &Expr,
    start: i64,
    end: i64,
    step: i64,
    is_range: bool,
    cancel: &CancelToken,
) -> Result<Value> {
    let mut ev = Evaluator {
        opts,
        start,
        end,
        cancel,
        deadline: Instant::now() + opts.timeout,
        data: HashMap::new(),
        batched: HashMap::new(),
        batch_on: opts.series_major,
        held: Cell::new(0),
        step_samples: Cell::new(0),
        ticks: Cell::new(0),
        fetched: 0,
        subquery_cache: RefCell::new(HashMap::new()),
        regexes: RefCell::new(HashMap::new()),
        dropped: RefCell::new(FxHashMap::default()),
    };
    if is_range {
        match ast.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            t => {
                return Err(QueryError::Parse(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_name(t)
            )))
            }
        }
    }
    // The whole query series-major, when it allows it.
    if ast.value_type() == ValueType::Vector {
        if let Some(node) = batch::compile(ast) {
            let n = if is_range {
                (end - start) / step + 1
            } else {
                1
            };
            if n <= MAX_SERIES_MAJOR_STEPS {
                let steps: Vec<i64> = (0..n).map(|i| start + i * step).collect();
                let cx = batch::Cx::new(&ev, q, &steps);
                let got = if is_range {
                    batch::range_result(&cx, &node).map(Value::Matrix)
                } else {
                    batch::instant_result(&cx, &node).map(Value::Vector)
                };
                match got {
                    Ok(v) => return Ok(v),
                    Err(Stop::Query(e)) => return Err(e),
                    Err(Stop::Fallback) => ev.batch_on = false,
                }
            }
        }
    }
    if !is_range {
        ev.prepare(q, ast, &[start])?;
        ev.plan(q, ast, start, end)?;
        let val = ev.eval(ast, start)?;
        return Ok(match val {
            Val::Scalar(v) => Value::Scalar { t: start, v },
            Val::Str(s) => Value::String { t: start, s },
            Val::Vector(v) => Value::Vector(
                v.into_iter()
                    .map(|e| VectorSample {
                        labels: unrc(e.labels),
                        t: start,
                        v: e.v,
                    })
                    .collect(),
            ),
            Val::Matrix(m) => Value::Matrix(
                m.into_iter()
                    .map(|s| RangeSeries {
                        labels: unrc(s.labels),
                        samples: s.samples,
                    })
                    .collect(),
            ),
        });
    }
    let mut out = Accumulated::default();
    // Steps are evaluated in slices, each with its own storage reads, so
    // that what is held from storage stays under the sample limit however
    // long the range. The first slice is one step; its reads size the next
    // slices to about a quarter of the limit (assuming, pessimistically,
    // that every further step reads as much as the first).
    let mut slice: i64 = 1;
    let mut t = start;
    while t <= end {
        let k = (end.saturating_sub(t) / step).min(slice - 1);
        let last = t + k * step;
        ev.data.clear();
        ev.fetched = 0;
        let steps: Vec<i64> = (0..=k).map(|i| t + i * step).collect();
        match ev.prepare(q, ast, &steps) {
            Err(QueryError::TooManySamples(_)) if k > 0 => {
                slice = (slice / 2).max(1);
                continue;
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        match ev.plan(q, ast, t, last) {
            Err(QueryError::TooManySamples(_)) if k > 0 => {
                slice = (slice / 2).max(1);
                continue;
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let per_step = (ev.fetched / (k as usize + 1)).max(1);
        let fits = (opts.max_samples / 4 / per_step).max(1) as i64;
        if fits > slice {
            slice = fits.min(slice.saturating_mul(1 << 20));
        } else if ev.fetched.saturating_mul(2) > opts.max_samples {
            slice = (slice / 2).max(1);
        }
        let mut t_step = t;
        loop {
            ev.eval_step(ast, t_step, &mut out)?;
            if t_step >= last {
                break;
            }
            t_step += step;
        }
        match last.checked_add(step) {
            Some(n) => t = n,
            None => break,
        }
    }
    drop(out.by_ptr);
    drop(out.index);
    let mut series: Vec<RangeSeries> = out
        .series
        .into_iter()
        .map(|(labels, samples)| RangeSeries {
            labels: unrc(labels),
            samples,
        })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Matrix(series))
}

/// Most steps evaluated series-major in one pass (each series holds a value
/// per step while it is processed); longer queries go slice by slice.
const MAX_SERIES_MAJOR_STEPS: i64 = 100_000;

impl<'a> Evaluator<'a> {
    /// Evaluates the largest series-major subtrees of `ast` at `steps`, for
    /// the step evaluator to read. After a fallback, prepares nothing.
    fn prepare(&mut self, q: &dyn Queryable, ast: &Expr, steps: &[i64]) -> Result<()> {
        self.batched.clear();
        if !self.batch_on {
            return Ok(());
        }
        let mut nodes = Vec::new();
        batch::subtrees(ast, &mut nodes);
        let mut done = Vec::with_capacity(nodes.len());
        let mut outcome = Ok(());
        {
            let cx = batch::Cx::new(self, q, steps);
            for (key, node) in &nodes {
                match batch::materialize(&cx, node) {
                    Ok(b) => done.push((*key, b)),
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
        match outcome {
            Ok(()) => {
                for (key, b) in done {
                    self.fetched = self.fetched.saturating_add(b.len());
                    self.batched.insert(key, b);
                }
                Ok(())
            }
            Err(Stop::Query(e)) => Err(e),
            Err(Stop::Fallback) => {
                self.batch_on = false;
                Ok(())
            }
        }
    }

    /// Evaluates one step of a range query into the accumulated result.
    fn eval_step(&self, ast: &Expr, t: i64, out: &mut Accumulated) -> Result<()> {
        self.check()?;
        self.step_samples.set(0);
        let added = match self.eval(ast, t)? {
            Val::Scalar(v) => {
                let i = out.slot(Rc::new(Labels::empty()));
                out.series[i].1.push(Sample::new(t, v));
                1
            }
            Val::Vector(vec) => {
                let n = vec.len();
                for e in vec {
                    let i = out.slot(e.labels);
                    out.series[i].1.push(Sample::new(t, e.v));
                }
                n
            }
            _ => return Err(exec_err("range query must evaluate to a vector or scalar")),
        };
        self.step_samples.set(0);
        self.held.set(self.held.get() + added);
        self.charge(0)
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

/// Converts the parser's matchers into the model's, one set per `or` branch.
pub fn matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    let conv = |m: &promql_parser::label::Matcher| -> Result<Matcher> {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        Matcher::new(op, m.name.clone(), m.value.clone())
            .map_err(|e| QueryError::Parse(e.to_string()))
    };
    let mut groups: Vec<Vec<&promql_parser::label::Matcher>> = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        groups.push(vs.matchers.matchers.iter().collect());
    } else {
        for g in &vs.matchers.or_matchers {
            groups.push(g.iter().collect());
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let mut ms = Vec::with_capacity(g.len() + 1);
            if let Some(name) = &vs.name {
                ms.push(Matcher::equal(METRIC_NAME, name.clone()));
            }
            for m in g {
                ms.push(conv(m)?);
            }
            Ok(ms)
        })
        .collect()
}

impl<'a> Evaluator<'a> {
    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        at.as_ref().map(|a| match a {
            AtModifier::Start => self.start,
            AtModifier::End => self.end,
            AtModifier::At(t) => system_time_ms(t),
        })
    }

    /// The reference time of a selector or subquery evaluated at `ts`.
    pub(crate) fn ref_time(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
        ts: i64,
    ) -> i64 {
        self.at_ms(at)
            .unwrap_or(ts)
            .saturating_sub(offset_ms(offset))
    }

    /// Walks the tree with the interval of evaluation times each node can see
    /// and fetches every selector once for the whole interval.
    fn plan(&mut self, q: &dyn Queryable, e: &Expr, lo: i64, hi: i64) -> Result<()> {
        if self.batched.contains_key(&(e as *const Expr as usize)) {
            return Ok(());
        }
        let span = |ev: &Self, at: &Option<AtModifier>, off: &Option<Offset>| match ev.at_ms(at) {
            Some(t) => (
                t.saturating_sub(offset_ms(off)),
                t.saturating_sub(offset_ms(off)),
            ),
            None => (
                lo.saturating_sub(offset_ms(off)),
                hi.saturating_sub(offset_ms(off)),
            ),
        };
        match e {
            Expr::VectorSelector(vs) => {
                let (l, h) = span(self, &vs.at, &vs.offset);
                self.fetch(
                    q,
                    vs,
                    l.saturating_sub(self.opts.lookback_delta_ms),
                    h,
                    false,
                )
            }
            Expr::MatrixSelector(ms) => {
                let (l, h) = span(self, &ms.vs.at, &ms.vs.offset);
                let range = ms.range.as_millis() as i64;
                self.fetch(q, &ms.vs, l.saturating_sub(range), h, true)
            }
            Expr::Subquery(sq) => {
                let (l, h) = span(self, &sq.at, &sq.offset);
                self.plan(
                    q,
                    &sq.expr,
                    l.saturating_sub(sq.range.as_millis() as i64),
                    h,
                )
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.plan(q, p, lo, hi)?;
                }
                self.plan(q, &a.expr, lo, hi)
            }
            Expr::Unary(u) => self.plan(q, &u.expr, lo, hi),
            Expr::Binary(b) => {
                self.plan(q, &b.lhs, lo, hi)?;
                self.plan(q, &b.rhs, lo, hi)
            }
            Expr::Paren(p) => self.plan(q, &p.expr, lo, hi),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(q, a, lo, hi)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
            Expr::Extension(_) => Err(exec_err("extension expressions are not supported")),
        }
    }

    fn fetch(
        &mut self,
        q: &dyn Queryable,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        drop_stale: bool,
    ) -> Result<()> {
        self.check()?;
        let sets = matcher_sets(vs)?;
        let mut all: Vec<SeriesSamples> = Vec::new();
        for ms in &sets {
            let got = q
                .select(ms, mint, maxt)
                .map_err(|e| QueryError::Storage(e.to_string()))?;
            all.extend(got);
        }
        if sets.len() > 1 {
            all.sort_by(|a, b| a.labels.cmp(&b.labels));
            all.dedup_by(|a, b| a.labels == b.labels);
        }
        for s in &mut all {
            s.samples.retain(|x| x.t >= mint && x.t <= maxt);
            if drop_stale {
                s.samples.retain(|x| !is_stale_nan(x.v));
            }
            self.fetched = self.fetched.saturating_add(s.samples.len());
        }
        // What is read from storage is held in memory too: it counts
        // against the same limit as the samples of the evaluation.
        if self.fetched > self.opts.max_samples {
            return Err(QueryError::TooManySamples(self.opts.max_samples));
        }
        let loaded = all
            .into_iter()
            .map(|s| Loaded {
                labels: Rc::new(s.labels),
                samples: s.samples,
                lo: Cell::new(0),
                hi: Cell::new(0),
            })
            .collect();
        self.data.insert(key_of(vs), loaded);
        Ok(())
    }

    /// [`drop_name`], remembered per input label set: the same series
    /// comes through every step.
    pub(crate) fn drop_name_cached(&self, l: &Rc<Labels>) -> Rc<Labels> {
        if l.get(METRIC_NAME).is_none() {
            return l.clone();
        }
        let key = Rc::as_ptr(l) as usize;
        if let Some((_, d)) = self.dropped.borrow().get(&key) {
            return d.clone();
        }
        let d = drop_name(l);
        let mut memo = self.dropped.borrow_mut();
        if memo.len() >= 100_000 {
            memo.clear();
        }
        memo.insert(key, (l.clone(), d.clone()));
        d
    }

    /// The fully anchored regex for `src`, compiled once per query.
    pub(crate) fn regex(&self, src: &str) -> std::result::Result<regex::Regex, regex::Error> {
        if let Some(r) = self.regexes.borrow().get(src) {
            return Ok(r.clone());
        }
        let r = regex::Regex::new(&format!("^(?:{src})$"))?;
        self.regexes.borrow_mut().insert(src.to_string(), r.clone());
        Ok(r)
    }

    /// Fails if the query was cancelled or ran out of time.
    pub(crate) fn check(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(QueryError::Canceled);
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout);
        }
        Ok(())
    }

    /// Accounts `n` samples held by the current step against the limit.
    pub(crate) fn charge(&self, n: usize) -> Result<()> {
        let s = self.step_samples.get() + n;
        self.step_samples.set(s);
        if self.held.get() + s > self.opts.max_samples {
            return Err(QueryError::TooManySamples(self.opts.max_samples));
        }
        let t = self.ticks.get().wrapping_add(1);
        self.ticks.set(t);
        if t.is_multiple_of(64) {
            self.check()?;
        }
        Ok(())
    }

    pub(crate) fn eval(&self, e: &Expr, ts: i64) -> Result<Val> {
        if !self.batched.is_empty() {
            if let Some(b) = self.batched.get(&(e as *const Expr as usize)) {
                let v = b.vector_at(ts)?;
                self.charge(v.len())?;
                return Ok(Val::Vector(v));
            }
        }
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut vec) => {
                    for el in &mut vec {
                        el.v = -el.v;
                        el.labels = drop_name(&el.labels);
                    }
                    check_dups(&vec)?;
                    Ok(Val::Vector(vec))
                }
                _ => Err(exec_err(
                    "unary expression only allowed on scalars and vectors",
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(
                self.select_instant(vs, ts)?
                    .into_iter()
                    .map(|(labels, _, v)| Elem { labels, v })
                    .collect(),
            )),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                Ok(Val::Matrix(self.eval_range(e, ts)?.0))
            }
            Expr::Binary(b) => self.eval_binary(b, ts),
            Expr::Aggregate(a) => self.eval_aggregate(a, ts),
            Expr::Call(c) => functions::call(self, c, ts),
            Expr::Extension(_) => Err(exec_err("extension expressions are not supported")),
        }
    }

    pub(crate) fn eval_scalar(&self, e: &Expr, ts: i64) -> Result<f64> {
        match self.eval(e, ts)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(exec_err("expected a scalar")),
        }
    }

    pub(crate) fn eval_vector(&self, e: &Expr, ts: i64) -> Result<Vec<Elem>> {
        match self.eval(e, ts)? {
            Val::Vector(v) => Ok(v),
            _ => Err(exec_err("expected an instant vector")),
        }
    }

    /// Instant selection: the latest sample within the lookback window of the
    /// reference time, unless that latest sample is a staleness marker.
    /// Returns (labels, sample time, value).
    pub(crate) fn select_instant(
        &self,
        vs: &VectorSelector,
        ts: i64,
    ) -> Result<Vec<(Rc<Labels>, i64, f64)>> {
        self.check()?;
        let rt = self.ref_time(&vs.at, &vs.offset, ts);
        let series = self
            .data
            .get(&key_of(vs))
            .ok_or_else(|| exec_err("selector was not planned"))?;
        let mut out = Vec::new();
        for s in series {
            let i = seek(&s.samples, &s.hi, |t| t <= rt);
            if i == 0 {
                continue;
            }
            let x = s.samples[i - 1];
            if x.t < rt.saturating_sub(self.opts.lookback_delta_ms) || is_stale_nan(x.v) {
                continue;
            }
            out.push((s.labels.clone(), x.t, x.v));
        }
        self.charge(out.len())?;
        Ok(out)
    }

    /// End and length of a matrix selector's window at `ts`.
    pub(crate) fn window_bounds(&self, ms: &MatrixSelector, ts: i64) -> (i64, i64) {
        (
            self.ref_time(&ms.vs.at, &ms.vs.offset, ts),
            ms.range.as_millis() as i64,
        )
    }

    /// Visits the window of each series of a matrix selector at `ts`, in
    /// place; returns the window's end and length.
    pub(crate) fn each_window(
        &self,
        ms: &MatrixSelector,
        ts: i64,
        mut visit: impl FnMut(&Rc<Labels>, &[Sample]) -> Result<()>,
    ) -> Result<(i64, i64)> {
        self.check()?;
        let rt = self.ref_time(&ms.vs.at, &ms.vs.offset, ts);
        let range = ms.range.as_millis() as i64;
        let series = self
            .data
            .get(&key_of(&ms.vs))
            .ok_or_else(|| exec_err("selector was not planned"))?;
        let start = rt.saturating_sub(range);
        for s in series {
            let lo = seek(&s.samples, &s.lo, |t| t < start);
            let hi = seek(&s.samples, &s.hi, |t| t <= rt);
            if lo < hi {
                self.charge(hi - lo)?;
                visit(&s.labels, &s.samples[lo..hi])?;
            }
        }
        Ok((rt, range))
    }

    /// Evaluates a matrix selector or subquery at `ts`. Returns the series
    /// (only those with samples in the window), the reference (end) time of
    /// the window and its length in milliseconds.
    pub(crate) fn eval_range(&self, e: &Expr, ts: i64) -> Result<(Vec<Series>, i64, i64)> {
        match unwrap_parens(e) {
            Expr::MatrixSelector(ms) => {
                let mut out = Vec::new();
                let (rt, range) = self.each_window(ms, ts, |labels, samples| {
                    out.push(Series {
                        labels: labels.clone(),
                        samples: samples.to_vec(),
                    });
                    Ok(())
                })?;
                Ok((out, rt, range))
            }
            Expr::Subquery(sq) => {
                let rt = self.ref_time(&sq.at, &sq.offset, ts);
                let range = sq.range.as_millis() as i64;
                let step = sq
                    .step
                    .map(|d| d.as_millis() as i64)
                    .filter(|s| *s > 0)
                    .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
                // The first step-aligned time at or after the window start
                // (Go's truncating division, as Prometheus computes it).
                let lo = rt.saturating_sub(range);
                let mut t = step * (lo / step);
                if t < lo {
                    t = t.saturating_add(step);
                }
                let key = sq as *const promql_parser::parser::SubqueryExpr as usize;
                if t > rt {
                    return Ok((Vec::new(), rt, range));
                }
                let first = t;
                let last = t + (rt - t) / step * step;
                // Inner steps already evaluated for an earlier evaluation step
                // are reused: windows of consecutive steps mostly overlap.
                let mut run = self
                    .subquery_cache
                    .borrow_mut()
                    .remove(&key)
                    .unwrap_or_default();
                if !run.valid || first < run.from || first > run.to.saturating_add(step) {
                    run = SubqueryRun::default();
                }
                let mut next = if run.valid { run.to + step } else { first };
                while next <= last {
                    match self.eval(&sq.expr, next)? {
                        Val::Vector(v) => {
                            for el in v {
                                run.push(el.labels, Sample::new(next, el.v));
                            }
                        }
                        Val::Scalar(v) => run.push(Rc::new(Labels::empty()), Sample::new(next, v)),
                        _ => return Err(exec_err("subquery must be over an instant vector")),
                    }
                    if !run.valid {
                        run.valid = true;
                        run.from = next;
                    }
                    run.to = next;
                    match next.checked_add(step) {
                        Some(n) => next = n,
                        None => break,
                    }
                }
                run.from = run.from.max(first);
                let mut out = Vec::new();
                let mut emptied = false;
                for s in &mut run.series {
                    let cut = s.samples.partition_point(|x| x.t < first);
                    s.samples.drain(..cut);
                    emptied |= s.samples.is_empty();
                    let hi = s.samples.partition_point(|x| x.t <= last);
                    if hi > 0 {
                        self.charge(hi)?;
                        out.push(Series {
                            labels: s.labels.clone(),
                            samples: s.samples[..hi].to_vec(),
                        });
                    }
                }
                if emptied {
                    run.compact();
                }
                self.subquery_cache.borrow_mut().insert(key, run);
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok((out, rt, range))
            }
            _ => Err(exec_err("expected a range vector")),
        }
    }

    fn eval_binary(&self, b: &BinaryExpr, ts: i64) -> Result<Val> {
        let op = b.op.id();
        let lhs = self.eval(&b.lhs, ts)?;
        let rhs = self.eval(&b.rhs, ts)?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let is_cmp = is_comparison(op);
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => {
                let (v, keep) = scalar_binop(op, l, r);
                if is_cmp {
                    Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
                } else {
                    Ok(Val::Scalar(v))
                }
            }
            (Val::Vector(v), Val::Scalar(s)) => {
                let out = vector_scalar(op, v, s, false, return_bool);
                check_dups(&out)?;
                Ok(Val::Vector(out))
            }
            (Val::Scalar(s), Val::Vector(v)) => {
                let out = vector_scalar(op, v, s, true, return_bool);
                check_dups(&out)?;
                Ok(Val::Vector(out))
            }
            (Val::Vector(l), Val::Vector(r)) => {
                let out = vector_vector(op, b, l, r, return_bool)?;
                check_dups(&out)?;
                Ok(Val::Vector(out))
            }
            _ => Err(exec_err("invalid operands of binary expression")),
        }
    }

    fn eval_aggregate(&self, a: &AggregateExpr, ts: i64) -> Result<Val> {
        let op = a.op.id();
        let input = self.eval_vector(&a.expr, ts)?;
        let (grouping, without): (Vec<String>, bool) = match &a.modifier {
            None => (Vec::new(), false),
            Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
            Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
        };
        let mut param_f = 0.0;
        let mut param_s = String::new();
        if let Some(p) = &a.param {
            match self.eval(p, ts)? {
                Val::Scalar(v) => param_f = v,
                Val::Str(s) => param_s = s,
                _ => return Err(exec_err("invalid aggregation parameter")),
            }
        }
        let out = aggregate(op, &grouping, without, param_f, &param_s, input)?;
        self.charge(out.len())?;
        Ok(Val::Vector(out))
    }
}

/// The labels, without copying them if this was the last reference.
fn unrc(l: Rc<Labels>) -> Labels {
    Rc::try_unwrap(l).unwrap_or_else(|l| (*l).clone())
}

pub(crate) fn drop_name(l: &Rc<Labels>) -> Rc<Labels> {
    if l.get(METRIC_NAME).is_none() {
        return l.clone();
    }
    let mut b = l.builder();
    b.delete(METRIC_NAME);
    Rc::new(b.build())
}

pub(crate) fn check_dups(v: &[Elem]) -> Result<()> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = crate::fxhash::FxHashSet::<&Labels>::default();
    seen.reserve(v.len());
    for e in v {
        if !seen.insert(&e.labels) {
            return Err(exec_err(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}
