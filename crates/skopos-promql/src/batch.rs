//! Series-major evaluation. The parts of a query that allow it — instant
//! selectors, range functions over a matrix selector, element-wise maps and
//! the aggregations that need no heap — are evaluated one series at a time
//! over every step, as the series stream out of storage, instead of step by
//! step over preloaded series. An aggregation then finds a series' group
//! once instead of at every step, and only one series' samples are held at
//! a time.
//!
//! The arithmetic is the step evaluator's own (the range functions,
//! [`Acc`]), applied to the same values in the same order, so the answers
//! are identical to the bit. What this cannot reproduce exactly — two series
//! whose label sets collide once the metric name is dropped, where the step
//! evaluator's answer depends on which steps both have values — stops with
//! [`Stop::Fallback`] and the query is evaluated step by step instead.

use std::cell::Cell;
use std::rc::Rc;

use promql_parser::parser::token::{T_LAND, T_LOR, T_LUNLESS};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier, MatrixSelector, VectorSelector};
use skopos_model::{is_stale_nan, Labels, Matcher, Sample};

use crate::aggregate::{group_key, group_labels, is_accumulating, Acc};
use crate::binary::{drops_name, vector_scalar_value};
use crate::eval::{drop_name, exec_err, matcher_sets, unwrap_parens, Elem, Evaluator};
use crate::functions::{range_fn, simple_fn, RangeFn, Window};
use crate::fxhash::{FxHashMap, FxHashSet};
use crate::{QueryError, RangeSeries, VectorSample};

/// Why series-major evaluation stopped.
pub(crate) enum Stop {
    /// The query fails, whichever way it is evaluated.
    Query(QueryError),
    /// Evaluate step by step instead.
    Fallback,
}

impl From<QueryError> for Stop {
    fn from(e: QueryError) -> Self {
        Stop::Query(e)
    }
}

type BResult<T> = std::result::Result<T, Stop>;

/// A subtree that can be evaluated series-major.
pub(crate) enum Node<'e> {
    Instant(&'e VectorSelector),
    Range {
        f: RangeFn,
        ms: &'e MatrixSelector,
        scalars: Vec<f64>,
        keep_name: bool,
    },
    Map {
        input: Box<Node<'e>>,
        op: MapOp,
    },
    Aggregate {
        op: u16,
        grouping: Vec<String>,
        without: bool,
        input: Box<Node<'e>>,
    },
}

/// An element-wise operation.
#[derive(Clone, Copy)]
pub(crate) enum MapOp {
    Func(fn(f64) -> f64),
    Neg,
    Scalar {
        op: u16,
        s: f64,
        swap: bool,
        return_bool: bool,
    },
}

impl MapOp {
    fn drops_name(self) -> bool {
        match self {
            MapOp::Func(_) | MapOp::Neg => true,
            MapOp::Scalar {
                op, return_bool, ..
            } => return_bool || drops_name(op),
        }
    }

    fn apply(self, v: f64) -> Option<f64> {
        match self {
            MapOp::Func(f) => Some(f(v)),
            MapOp::Neg => Some(-v),
            MapOp::Scalar {
                op,
                s,
                swap,
                return_bool,
            } => vector_scalar_value(op, v, s, swap, return_bool),
        }
    }
}

fn literal(e: &Expr) -> Option<f64> {
    match unwrap_parens(e) {
        Expr::NumberLiteral(n) => Some(n.val),
        _ => None,
    }
}

/// The series-major form of `e`, when it has one.
pub(crate) fn compile(e: &Expr) -> Option<Node<'_>> {
    match unwrap_parens(e) {
        Expr::VectorSelector(vs) if vs.matchers.or_matchers.is_empty() => Some(Node::Instant(vs)),
        Expr::Call(c) => {
            let name = c.func.name;
            let args: Vec<&Expr> = c.args.args.iter().map(|a| unwrap_parens(a)).collect();
            if let Some(f) = range_fn(name) {
                let idx = usize::from(name == "quantile_over_time");
                let Some(Expr::MatrixSelector(ms)) = args.get(idx) else {
                    return None;
                };
                if !ms.vs.matchers.or_matchers.is_empty() {
                    return None;
                }
                let mut scalars = Vec::new();
                for (i, a) in args.iter().enumerate() {
                    if i != idx {
                        scalars.push(literal(a)?);
                    }
                }
                return Some(Node::Range {
                    f,
                    ms,
                    scalars,
                    keep_name: name == "last_over_time",
                });
            }
            let f = simple_fn(name)?;
            if args.len() != 1 {
                return None;
            }
            Some(Node::Map {
                input: Box::new(compile(args[0])?),
                op: MapOp::Func(f),
            })
        }
        Expr::Unary(u) => Some(Node::Map {
            input: Box::new(compile(&u.expr)?),
            op: MapOp::Neg,
        }),
        Expr::Binary(b) => {
            let op = b.op.id();
            if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
                return None;
            }
            let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
            let (vector, s, swap) = if let Some(s) = literal(&b.rhs) {
                (&b.lhs, s, false)
            } else {
                (&b.rhs, literal(&b.lhs)?, true)
            };
            Some(Node::Map {
                input: Box::new(compile(vector)?),
                op: MapOp::Scalar {
                    op,
                    s,
                    swap,
                    return_bool,
                },
            })
        }
        Expr::Aggregate(a) => compile_aggregate(a),
        _ => None,
    }
}

fn compile_aggregate(a: &AggregateExpr) -> Option<Node<'_>> {
    let op = a.op.id();
    if !is_accumulating(op) || a.param.is_some() {
        return None;
    }
    let input = compile(&a.expr)?;
    // An aggregation's output order differs from step to step; an outer
    // aggregation over it is left to the step evaluator, which adds in
    // exactly that order.
    if input.has_aggregate() {
        return None;
    }
    let (grouping, without) = match &a.modifier {
        None => (Vec::new(), false),
        Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
        Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
    };
    Some(Node::Aggregate {
        op,
        grouping,
        without,
        input: Box::new(input),
    })
}

impl Node<'_> {
    fn has_aggregate(&self) -> bool {
        match self {
            Node::Instant(_) | Node::Range { .. } => false,
            Node::Map { input, .. } => input.has_aggregate(),
            Node::Aggregate { .. } => true,
        }
    }
}

/// Receives the series of a node: labels, the value at each step and
/// whether there is one, and for an aggregation's groups the order of the
/// group at each step (the step evaluator's output order).
type Sink<'s> = dyn FnMut(&Rc<Labels>, &[f64], &[bool], Option<&[u32]>) -> BResult<()> + 's;

/// Where series-major evaluation runs: the steps, and the samples held.
pub(crate) struct Cx<'c> {
    ev: &'c Evaluator<'c>,
    q: &'c dyn skopos_model::Queryable,
    steps: &'c [i64],
    /// Values held by finished results and aggregation state.
    held: Cell<usize>,
}

impl<'c> Cx<'c> {
    pub(crate) fn new(
        ev: &'c Evaluator<'c>,
        q: &'c dyn skopos_model::Queryable,
        steps: &'c [i64],
    ) -> Self {
        Cx {
            ev,
            q,
            steps,
            held: Cell::new(0),
        }
    }

    /// Fails when what is held, plus `transient` samples, passes the limit.
    fn charge(&self, transient: usize) -> BResult<()> {
        let max = self.ev.opts.max_samples;
        if self.ev.held.get() + self.held.get() + transient > max {
            return Err(QueryError::TooManySamples(max).into());
        }
        Ok(())
    }

    fn hold(&self, n: usize) -> BResult<()> {
        self.held.set(self.held.get() + n);
        self.charge(0)
    }

    /// Streams the series matching `matchers` in `[mint, maxt]`.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> BResult<()>,
    ) -> BResult<()> {
        let mut err = None;
        self.q
            .select_each(matchers, mint, maxt, &mut |labels, samples| match self
                .ev
                .check()
                .map_err(Stop::from)
                .and_then(|()| f(labels, samples))
            {
                Ok(()) => true,
                Err(e) => {
                    err = Some(e);
                    false
                }
            })
            .map_err(|e| Stop::Query(QueryError::Storage(e.to_string())))?;
        err.map_or(Ok(()), Err)
    }

    /// Reference times of a selector at each step.
    fn ref_times(&self, vs: &VectorSelector) -> Vec<i64> {
        self.steps
            .iter()
            .map(|&t| self.ev.ref_time(&vs.at, &vs.offset, t))
            .collect()
    }

    fn stream(&self, node: &Node, sink: &mut Sink) -> BResult<()> {
        match node {
            Node::Instant(vs) => self.stream_instant(vs, sink),
            Node::Range {
                f,
                ms,
                scalars,
                keep_name,
            } => self.stream_range(*f, ms, scalars, *keep_name, sink),
            Node::Map { input, op } => self.stream_map(input, *op, sink),
            Node::Aggregate {
                op,
                grouping,
                without,
                input,
            } => self.stream_aggregate(*op, grouping, *without, input, sink),
        }
    }

    fn stream_instant(&self, vs: &VectorSelector, sink: &mut Sink) -> BResult<()> {
        let rts = self.ref_times(vs);
        let (Some(&first), Some(&last)) = (rts.first(), rts.last()) else {
            return Ok(());
        };
        let lookback = self.ev.opts.lookback_delta_ms;
        let sets = matcher_sets(vs)?;
        let n = rts.len();
        let (mut v, mut ok) = (vec![0.0; n], vec![false; n]);
        self.select(
            &sets[0],
            first.saturating_sub(lookback),
            last,
            &mut |labels, samples| {
                self.charge(samples.len())?;
                let mut j = 0;
                let mut any = false;
                for (i, &rt) in rts.iter().enumerate() {
                    while j < samples.len() && samples[j].t <= rt {
                        j += 1;
                    }
                    ok[i] = false;
                    if j > 0 {
                        let x = samples[j - 1];
                        if x.t >= rt.saturating_sub(lookback) && !is_stale_nan(x.v) {
                            v[i] = x.v;
                            ok[i] = true;
                            any = true;
                        }
                    }
                }
                if any {
                    sink(&Rc::new(labels), &v, &ok, None)?;
                }
                Ok(())
            },
        )
    }

    fn stream_range(
        &self,
        f: RangeFn,
        ms: &MatrixSelector,
        scalars: &[f64],
        keep_name: bool,
        sink: &mut Sink,
    ) -> BResult<()> {
        let rts = self.ref_times(&ms.vs);
        let (Some(&first), Some(&last)) = (rts.first(), rts.last()) else {
            return Ok(());
        };
        let range = ms.range.as_millis() as i64;
        let sets = matcher_sets(&ms.vs)?;
        let n = rts.len();
        let (mut v, mut ok) = (vec![0.0; n], vec![false; n]);
        let mut w = Window {
            ts: 0,
            end: 0,
            range_ms: range,
            scalars: scalars.to_vec(),
        };
        let mut seen: FxHashSet<Rc<Labels>> = FxHashSet::default();
        self.select(
            &sets[0],
            first.saturating_sub(range),
            last,
            &mut |labels, mut samples| {
                samples.retain(|x| !is_stale_nan(x.v));
                self.charge(samples.len())?;
                let (mut lo, mut hi) = (0, 0);
                let mut any = false;
                for (i, &rt) in rts.iter().enumerate() {
                    let start = rt.saturating_sub(range);
                    while lo < samples.len() && samples[lo].t < start {
                        lo += 1;
                    }
                    while hi < samples.len() && samples[hi].t <= rt {
                        hi += 1;
                    }
                    ok[i] = false;
                    if lo < hi {
                        w.ts = self.steps[i];
                        w.end = rt;
                        if let Some(x) = f(&samples[lo..hi], &w)? {
                            v[i] = x;
                            ok[i] = true;
                            any = true;
                        }
                    }
                }
                if !any {
                    return Ok(());
                }
                let labels = Rc::new(labels);
                let out = if keep_name {
                    labels
                } else {
                    let out = drop_name(&labels);
                    if !seen.insert(out.clone()) {
                        return Err(Stop::Fallback);
                    }
                    out
                };
                sink(&out, &v, &ok, None)
            },
        )
    }

    fn stream_map(&self, input: &Node, op: MapOp, sink: &mut Sink) -> BResult<()> {
        let n = self.steps.len();
        let (mut v, mut ok) = (vec![0.0; n], vec![false; n]);
        let drops = op.drops_name();
        let mut seen: FxHashSet<Rc<Labels>> = FxHashSet::default();
        self.stream(input, &mut |labels, iv, iok, order| {
            let mut any = false;
            for i in 0..n {
                ok[i] = false;
                if iok[i] {
                    if let Some(x) = op.apply(iv[i]) {
                        v[i] = x;
                        ok[i] = true;
                        any = true;
                    }
                }
            }
            if !any {
                return Ok(());
            }
            if drops {
                let out = drop_name(labels);
                if !seen.insert(out.clone()) {
                    return Err(Stop::Fallback);
                }
                sink(&out, &v, &ok, order)
            } else {
                sink(labels, &v, &ok, order)
            }
        })
    }

    fn stream_aggregate(
        &self,
        op: u16,
        grouping: &[String],
        without: bool,
        input: &Node,
        sink: &mut Sink,
    ) -> BResult<()> {
        let n = self.steps.len();
        let layout = Layout::of(op);
        let mut index: FxHashMap<String, usize> = FxHashMap::default();
        let mut groups: Vec<Group> = Vec::new();
        let mut key = String::new();
        let mut row: u32 = 0;
        self.stream(input, &mut |labels, v, ok, _| {
            group_key(&mut key, labels, grouping, without);
            let gi = match index.get(key.as_str()) {
                Some(&gi) => gi,
                None => {
                    // A group holds a slot per step, filled or not.
                    self.hold(n)?;
                    groups.push(Group::new(
                        Rc::new(group_labels(labels, grouping, without)),
                        n,
                        layout,
                    ));
                    index.insert(key.clone(), groups.len() - 1);
                    groups.len() - 1
                }
            };
            let g = &mut groups[gi];
            for i in 0..n {
                if !ok[i] {
                    continue;
                }
                if g.first[i] == u32::MAX {
                    g.first[i] = row;
                    g.store(i, Acc::first(op, v[i]));
                } else {
                    let mut a = g.load(i);
                    a.add(op, v[i]);
                    g.store(i, a);
                }
            }
            row = row.saturating_add(1);
            Ok(())
        })?;
        let (mut v, mut ok) = (vec![0.0; n], vec![false; n]);
        for g in &groups {
            for i in 0..n {
                ok[i] = g.first[i] != u32::MAX;
                if ok[i] {
                    v[i] = g.load(i).result(op);
                }
            }
            sink(&g.labels, &v, &ok, Some(&g.first))?;
        }
        Ok(())
    }
}

/// Which parts of [`Acc`] an aggregation uses.
#[derive(Clone, Copy)]
struct Layout {
    value: bool,
    mean: bool,
    count: bool,
}

impl Layout {
    fn of(op: u16) -> Layout {
        use promql_parser::parser::token::{T_AVG, T_COUNT, T_STDDEV, T_STDVAR};
        match op {
            T_COUNT => Layout {
                value: false,
                mean: false,
                count: true,
            },
            T_AVG => Layout {
                value: false,
                mean: true,
                count: true,
            },
            T_STDDEV | T_STDVAR => Layout {
                value: true,
                mean: true,
                count: true,
            },
            _ => Layout {
                value: true,
                mean: false,
                count: false,
            },
        }
    }
}

/// One group of an aggregation over every step, keeping only the parts of
/// its state that the operation uses.
struct Group {
    labels: Rc<Labels>,
    /// Index of the group's first input series at each step (`u32::MAX`:
    /// no value there).
    first: Vec<u32>,
    value: Vec<f64>,
    mean: Vec<f64>,
    count: Vec<f64>,
}

impl Group {
    fn new(labels: Rc<Labels>, n: usize, layout: Layout) -> Group {
        let part = |used: bool| if used { vec![0.0; n] } else { Vec::new() };
        Group {
            labels,
            first: vec![u32::MAX; n],
            value: part(layout.value),
            mean: part(layout.mean),
            count: part(layout.count),
        }
    }

    fn load(&self, i: usize) -> Acc {
        Acc {
            value: self.value.get(i).copied().unwrap_or(0.0),
            mean: self.mean.get(i).copied().unwrap_or(0.0),
            count: self.count.get(i).copied().unwrap_or(0.0),
        }
    }

    fn store(&mut self, i: usize, a: Acc) {
        if let Some(x) = self.value.get_mut(i) {
            *x = a.value;
        }
        if let Some(x) = self.mean.get_mut(i) {
            *x = a.mean;
        }
        if let Some(x) = self.count.get_mut(i) {
            *x = a.count;
        }
    }
}

/// A subtree's values at every step of a slice, for the step evaluator.
pub(crate) struct Batched {
    steps: Vec<i64>,
    rows: Vec<Row>,
}

struct Row {
    labels: Rc<Labels>,
    v: Vec<f64>,
    ok: Vec<bool>,
    order: Option<Vec<u32>>,
}

impl Batched {
    /// Values held.
    pub(crate) fn len(&self) -> usize {
        self.rows.len() * self.steps.len()
    }

    /// The instant vector at `ts`, in the order the step evaluator gives.
    pub(crate) fn vector_at(&self, ts: i64) -> crate::eval::Result<Vec<Elem>> {
        let i = self
            .steps
            .binary_search(&ts)
            .map_err(|_| exec_err("series-major result read at a time it was not evaluated at"))?;
        let mut out: Vec<(u32, Elem)> = self
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ok[i])
            .map(|(ri, r)| {
                let at = r.order.as_ref().map_or(ri as u32, |o| o[i]);
                let e = Elem {
                    labels: r.labels.clone(),
                    v: r.v[i],
                };
                (at, e)
            })
            .collect();
        if self.rows.iter().any(|r| r.order.is_some()) {
            out.sort_by_key(|(at, _)| *at);
        }
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }
}

/// Evaluates `node` at `steps` and keeps every series for the step evaluator.
pub(crate) fn materialize(cx: &Cx, node: &Node) -> BResult<Batched> {
    let mut rows = Vec::new();
    cx.stream(node, &mut |labels, v, ok, order| {
        cx.hold(v.len())?;
        rows.push(Row {
            labels: labels.clone(),
            v: v.to_vec(),
            ok: ok.to_vec(),
            order: order.map(<[u32]>::to_vec),
        });
        Ok(())
    })?;
    Ok(Batched {
        steps: cx.steps.to_vec(),
        rows,
    })
}

/// Evaluates a whole range query series-major: its result, sorted.
pub(crate) fn range_result(cx: &Cx, node: &Node) -> BResult<Vec<RangeSeries>> {
    let mut out = Vec::new();
    cx.stream(node, &mut |labels, v, ok, _| {
        let samples: Vec<Sample> = (0..v.len())
            .filter(|&i| ok[i])
            .map(|i| Sample::new(cx.steps[i], v[i]))
            .collect();
        cx.hold(samples.len())?;
        out.push(RangeSeries {
            labels: (**labels).clone(),
            samples,
        });
        Ok(())
    })?;
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Evaluates a whole instant query series-major, in the step evaluator's
/// output order.
pub(crate) fn instant_result(cx: &Cx, node: &Node) -> BResult<Vec<VectorSample>> {
    let t = cx.steps[0];
    let b = materialize(cx, node)?;
    Ok(b.vector_at(t)?
        .into_iter()
        .map(|e| VectorSample {
            labels: (*e.labels).clone(),
            t,
            v: e.v,
        })
        .collect())
}

/// The largest subtrees of `e` that are evaluated series-major when the
/// whole query is not: not under a subquery (evaluated at its own steps),
/// and not a selector that its parent reads directly (`timestamp`).
pub(crate) fn subtrees<'e>(e: &'e Expr, out: &mut Vec<(usize, Node<'e>)>) {
    let e = unwrap_parens(e);
    if let Some(node) = compile(e) {
        out.push((e as *const Expr as usize, node));
        return;
    }
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                subtrees(p, out);
            }
            subtrees(&a.expr, out);
        }
        Expr::Binary(b) => {
            subtrees(&b.lhs, out);
            subtrees(&b.rhs, out);
        }
        Expr::Unary(u) => subtrees(&u.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                if c.func.name == "timestamp" && matches!(unwrap_parens(a), Expr::VectorSelector(_))
                {
                    continue;
                }
                subtrees(a, out);
            }
        }
        _ => {}
    }
}
