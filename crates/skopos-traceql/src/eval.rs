//! Evaluation of a parsed query over one trace.
//!
//! A query turns a trace into spansets (sets of span indices). Filters keep
//! the spans whose condition is true; spanset operators combine the two
//! sides' spans; stages filter, split or annotate spansets. A trace matches
//! when at least one non-empty spanset is left.
//!
//! Comparison semantics follow Tempo: a missing attribute compares false,
//! even with `!=` and `!~`, except with the `nil` literal (`= nil` is
//! "absent", `!= nil` "present"); values of
//! different types compare false (a string is never equal to a number);
//! integers, floats and durations compare numerically; regexes are fully
//! anchored.

use std::borrow::Cow;
use std::collections::HashMap;

use regex::Regex;
use skopos_model::{find_attr, to_hex, AttrValue, Span, SpanKind, StatusCode, Trace};

use crate::ast::{
    Aggregate, AttrRef, AttrScope, BinOp, FieldExpr, Intrinsic, Query, SpansetOp, Stage, Static,
};

/// TraceQL regexes match the whole value, as Tempo's do.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// A value of a field on one span.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Nil,
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Duration(i64),
    Bool(bool),
    Status(StatusCode),
    Kind(SpanKind),
    /// Bytes, arrays, maps: present, but equal to no literal.
    Other,
}

impl Value<'_> {
    fn number(&self) -> Option<f64> {
        match self {
            Value::Int(i) | Value::Duration(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn integer(&self) -> Option<i64> {
        match self {
            Value::Int(i) | Value::Duration(i) => Some(*i),
            _ => None,
        }
    }

    fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    /// The value as an attribute in a search response, if it has one.
    pub(crate) fn to_attr(&self) -> Option<AttrValue> {
        Some(match self {
            Value::Nil | Value::Other => return None,
            Value::Str(s) => AttrValue::Str(s.to_string()),
            Value::Int(i) => AttrValue::Int(*i),
            Value::Float(f) => AttrValue::Float(*f),
            Value::Duration(d) => AttrValue::Int(*d),
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Status(s) => AttrValue::Str(s.name().into()),
            Value::Kind(k) => AttrValue::Str(k.name().into()),
        })
    }

    /// The value as a spanset attribute (`by()` and aggregate results), as
    /// Tempo writes them: durations as Go prints them (`136.456827ms`).
    /// A `by()` group of spans without the field is `nil`.
    fn spanset_attr(&self) -> Option<AttrValue> {
        match self {
            Value::Duration(d) => Some(AttrValue::Str(go_duration(*d))),
            Value::Nil => Some(AttrValue::Str("nil".into())),
            other => other.to_attr(),
        }
    }

    /// A key to group `by()` on.
    fn group_key(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Other => "other".into(),
            Value::Str(s) => format!("s{s}"),
            Value::Int(i) => format!("n{i}"),
            Value::Float(f) => format!("n{f}"),
            Value::Duration(d) => format!("d{d}"),
            Value::Bool(b) => format!("b{b}"),
            Value::Status(s) => format!("t{}", s.name()),
            Value::Kind(k) => format!("k{}", k.name()),
        }
    }
}

/// Nanoseconds as Go's `time.Duration.String` prints them: `177.476µs`,
/// `2.326100714s`, `1m30s`, `1h0m0s`.
pub(crate) fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, size: u64| -> String {
        let (whole, rest) = (v / size, v % size);
        if rest == 0 {
            return whole.to_string();
        }
        let digits = size.ilog10() as usize;
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let secs = u % 60_000_000_000;
    let mins = u / 60_000_000_000;
    let s = format!("{}s", frac(secs, 1_000_000_000));
    match (mins / 60, mins % 60) {
        (0, 0) => format!("{sign}{s}"),
        (0, m) => format!("{sign}{m}m{s}"),
        (h, m) => format!("{sign}{h}h{m}m{s}"),
    }
}

fn attr_value(v: &AttrValue) -> Value<'_> {
    match v {
        AttrValue::Str(s) => Value::Str(Cow::Borrowed(s)),
        AttrValue::Int(i) => Value::Int(*i),
        AttrValue::Float(f) => Value::Float(*f),
        AttrValue::Bool(b) => Value::Bool(*b),
        _ => Value::Other,
    }
}

fn static_value(s: &Static) -> Value<'_> {
    match s {
        Static::Str(s) => Value::Str(Cow::Borrowed(s)),
        Static::Int(i) => Value::Int(*i),
        Static::Float(f) => Value::Float(*f),
        Static::Duration(d) => Value::Duration(*d),
        Static::Bool(b) => Value::Bool(*b),
        Static::Status(s) => Value::Status(*s),
        Static::Kind(k) => Value::Kind(*k),
        Static::Nil => Value::Nil,
    }
}

/// The value of an attribute reference on a span.
pub(crate) fn lookup_attr<'a>(span: &'a Span, a: &AttrRef) -> Value<'a> {
    let found = match a.scope {
        AttrScope::Span => find_attr(&span.attributes, &a.name),
        AttrScope::Resource => find_attr(&span.resource.attributes, &a.name),
        AttrScope::Unscoped => find_attr(&span.attributes, &a.name)
            .or_else(|| find_attr(&span.resource.attributes, &a.name)),
    };
    found.map_or(Value::Nil, attr_value)
}

/// What the evaluator knows about a trace besides its spans.
pub(crate) struct TraceCtx<'t> {
    pub trace: &'t Trace,
    root: Option<&'t Span>,
    duration_ns: i64,
    /// The index of each span's parent within the trace, if present.
    parent: std::cell::OnceCell<Vec<Option<usize>>>,
}

impl<'t> TraceCtx<'t> {
    pub(crate) fn new(trace: &'t Trace) -> Self {
        let (start, end) = trace.bounds();
        TraceCtx {
            trace,
            root: trace.root(),
            duration_ns: end.saturating_sub(start).max(0),
            parent: std::cell::OnceCell::new(),
        }
    }

    /// Parent indices, built on first use (only structural operators
    /// need them).
    fn parents(&self) -> &[Option<usize>] {
        self.parent.get_or_init(|| {
            let by_id: HashMap<[u8; 8], usize> = self
                .trace
                .spans
                .iter()
                .enumerate()
                .map(|(i, s)| (s.span_id, i))
                .collect();
            self.trace
                .spans
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.parent_span_id
                        .and_then(|p| by_id.get(&p).copied())
                        .filter(|&p| p != i)
                })
                .collect()
        })
    }

    fn len(&self) -> usize {
        self.trace.spans.len()
    }

    /// For every span, whether one of its ancestors is flagged in `l`;
    /// linear in the spans however deep the tree (each answer is kept).
    fn under_left(&self, l: &[bool]) -> Vec<bool> {
        let n = self.len();
        let parent = self.parents();
        let mut memo: Vec<Option<bool>> = vec![None; n];
        let mut path = Vec::new();
        for start in 0..n {
            // Walk up to a known answer, a flagged parent or the root.
            let mut cur = start;
            let answer = loop {
                if let Some(a) = memo[cur] {
                    // `cur` answers for its own ancestors; its children
                    // on the path also count `cur` itself.
                    break if cur == start { a } else { a || l[cur] };
                }
                path.push(cur);
                match parent[cur] {
                    None => break false,
                    Some(p) if l[p] => break true,
                    // A cycle of parent ids: nothing above it is flagged.
                    Some(_) if path.len() > n => break false,
                    Some(p) => cur = p,
                }
            };
            // Everything on the path shares the answer, except that a
            // flagged span passes `true` to its children, not to itself.
            let mut a = answer;
            for &i in path.iter().rev() {
                memo[i] = Some(a);
                a = a || l[i];
            }
            path.clear();
        }
        memo.into_iter().map(|m| m.unwrap_or(false)).collect()
    }

    /// The ancestors of span `i`, nearest first (cycle-safe).
    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let parent = self.parents();
        let mut cur = parent[i];
        let mut steps = 0;
        std::iter::from_fn(move || {
            let p = cur?;
            steps += 1;
            if steps > parent.len() {
                return None;
            }
            cur = parent[p];
            Some(p)
        })
    }
}

/// A set of spans of one trace, with the `by()` values that made it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spanset {
    /// Span indices, ascending, unique.
    pub spans: Vec<usize>,
    pub by: Vec<(String, AttrValue)>,
}

/// A query with its regexes compiled.
pub(crate) struct Evaluator {
    regexes: HashMap<String, Regex>,
}

impl Evaluator {
    pub(crate) fn new(q: &Query) -> Result<Evaluator, regex::Error> {
        let mut regexes = HashMap::new();
        let mut patterns = Vec::new();
        crate::walk_fields(q, &mut |e| {
            if let FieldExpr::Binary {
                op: BinOp::Re | BinOp::NotRe,
                rhs,
                ..
            } = e
            {
                if let FieldExpr::Static(Static::Str(p)) = rhs.as_ref() {
                    patterns.push(p.clone());
                }
            }
        });
        for p in patterns {
            if let std::collections::hash_map::Entry::Vacant(v) = regexes.entry(p) {
                let re = compile_regex(v.key())?;
                v.insert(re);
            }
        }
        Ok(Evaluator { regexes })
    }

    /// The spansets `q` selects from the trace.
    pub(crate) fn query(&self, q: &Query, cx: &TraceCtx) -> Vec<Spanset> {
        match q {
            Query::Filter(e) => {
                let spans = self.filter(e.as_ref(), cx, 0..cx.len());
                one(spans)
            }
            Query::Binary { op, lhs, rhs } => {
                let l = self.query(lhs, cx);
                // `&&` needs both sides; skip the right when the left is empty.
                if *op == SpansetOp::And && l.is_empty() {
                    return Vec::new();
                }
                let r = self.query(rhs, cx);
                let (l, r) = (union(&l, cx.len()), union(&r, cx.len()));
                one(self.combine(*op, &l, &r, cx))
            }
            Query::Pipe { input, stage } => {
                let sets = self.query(input, cx);
                self.stage(stage, sets, cx)
            }
        }
    }

    fn combine(&self, op: SpansetOp, l: &[bool], r: &[bool], cx: &TraceCtx) -> Vec<usize> {
        let n = cx.len();
        let rs = (0..n).filter(|&i| r[i]);
        match op {
            SpansetOp::And => {
                if l.iter().any(|&b| b) && r.iter().any(|&b| b) {
                    (0..n).filter(|&i| l[i] || r[i]).collect()
                } else {
                    Vec::new()
                }
            }
            SpansetOp::Or => (0..n).filter(|&i| l[i] || r[i]).collect(),
            SpansetOp::Child | SpansetOp::NotChild => {
                let want = op == SpansetOp::Child;
                rs.filter(|&i| cx.parents()[i].is_some_and(|p| l[p]) == want)
                    .collect()
            }
            SpansetOp::Descendant | SpansetOp::NotDescendant => {
                let under = cx.under_left(l);
                let want = op == SpansetOp::Descendant;
                rs.filter(|&i| under[i] == want).collect()
            }
            SpansetOp::Parent | SpansetOp::NotParent => {
                let mut is_parent = vec![false; n];
                for i in (0..n).filter(|&i| l[i]) {
                    if let Some(p) = cx.parents()[i] {
                        is_parent[p] = true;
                    }
                }
                let want = op == SpansetOp::Parent;
                rs.filter(|&i| is_parent[i] == want).collect()
            }
            SpansetOp::Ancestor | SpansetOp::NotAncestor => {
                let mut is_ancestor = vec![false; n];
                for i in (0..n).filter(|&i| l[i]) {
                    for a in cx.ancestors(i) {
                        if is_ancestor[a] {
                            break;
                        }
                        is_ancestor[a] = true;
                    }
                }
                let want = op == SpansetOp::Ancestor;
                rs.filter(|&i| is_ancestor[i] == want).collect()
            }
            SpansetOp::Sibling | SpansetOp::NotSibling => {
                // Per parent: how many left-hand spans sit under it.
                let mut left_children: HashMap<usize, Vec<usize>> = HashMap::new();
                for i in (0..n).filter(|&i| l[i]) {
                    if let Some(p) = cx.parents()[i] {
                        left_children.entry(p).or_default().push(i);
                    }
                }
                let want = op == SpansetOp::Sibling;
                rs.filter(|&i| {
                    let has = cx.parents()[i].is_some_and(|p| {
                        left_children
                            .get(&p)
                            .is_some_and(|kids| kids.iter().any(|&k| k != i))
                    });
                    has == want
                })
                .collect()
            }
        }
    }

    fn stage(&self, stage: &Stage, sets: Vec<Spanset>, cx: &TraceCtx) -> Vec<Spanset> {
        match stage {
            Stage::Filter(e) => sets
                .into_iter()
                .filter_map(|s| {
                    let spans = self.filter(e.as_ref(), cx, s.spans.iter().copied());
                    (!spans.is_empty()).then_some(Spanset { spans, by: s.by })
                })
                .collect(),
            Stage::Select(_) => sets,
            // Tempo adds the aggregate's value to the spansets that pass,
            // under the aggregate's text (`count()`, `avg(duration)`).
            Stage::Aggregate { agg, op, value } => sets
                .into_iter()
                .filter_map(|mut s| {
                    let got = self.aggregate(agg, &s.spans, cx);
                    if !compare(*op, &got, &static_value(value), None) {
                        return None;
                    }
                    if let Some(v) = got.spanset_attr() {
                        s.by.push((agg.to_string(), v));
                    }
                    Some(s)
                })
                .collect(),
            // Tempo's `coalesce()`: the spansets of a trace become one.
            Stage::Coalesce => {
                if sets.is_empty() {
                    return sets;
                }
                let mut spans: Vec<usize> =
                    sets.iter().flat_map(|s| s.spans.iter().copied()).collect();
                spans.sort_unstable();
                spans.dedup();
                vec![Spanset {
                    spans,
                    by: Vec::new(),
                }]
            }
            Stage::By(fields) => {
                let mut out = Vec::new();
                for s in sets {
                    let mut groups: Vec<(Vec<String>, Spanset)> = Vec::new();
                    for &i in &s.spans {
                        let span = &cx.trace.spans[i];
                        let values: Vec<Value> =
                            fields.iter().map(|f| self.field(f, span, cx)).collect();
                        let key: Vec<String> = values.iter().map(Value::group_key).collect();
                        match groups.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, g)) => g.spans.push(i),
                            None => {
                                let mut by = s.by.clone();
                                for (f, v) in fields.iter().zip(&values) {
                                    if let Some(av) = v.spanset_attr() {
                                        by.push((format!("by({f})"), av));
                                    }
                                }
                                groups.push((key, Spanset { spans: vec![i], by }));
                            }
                        }
                    }
                    out.extend(groups.into_iter().map(|(_, g)| g));
                }
                out
            }
        }
    }

    fn aggregate<'a>(&self, agg: &Aggregate, spans: &[usize], cx: &'a TraceCtx) -> Value<'a> {
        let field = match agg {
            Aggregate::Count => return Value::Int(spans.len() as i64),
            Aggregate::Avg(f) | Aggregate::Min(f) | Aggregate::Max(f) | Aggregate::Sum(f) => f,
        };
        let values: Vec<Value> = spans
            .iter()
            .map(|&i| self.field(field, &cx.trace.spans[i], cx))
            .filter(|v| v.number().is_some())
            .collect();
        if values.is_empty() {
            return Value::Nil;
        }
        let is_duration = values.iter().any(|v| matches!(v, Value::Duration(_)));
        let all_int = values.iter().all(|v| v.integer().is_some());
        let nums: Vec<f64> = values.iter().filter_map(Value::number).collect();
        let wrap = |x: f64| {
            if is_duration {
                Value::Duration(x.round() as i64)
            } else if all_int && x.fract() == 0.0 {
                Value::Int(x as i64)
            } else {
                Value::Float(x)
            }
        };
        match agg {
            Aggregate::Avg(_) => {
                let avg = nums.iter().sum::<f64>() / nums.len() as f64;
                if is_duration {
                    // Truncated, as Go's time.Duration(float) truncates.
                    Value::Duration(avg.trunc() as i64)
                } else {
                    Value::Float(avg)
                }
            }
            Aggregate::Min(_) => wrap(nums.iter().copied().fold(f64::INFINITY, f64::min)),
            Aggregate::Max(_) => wrap(nums.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            Aggregate::Sum(_) => {
                if all_int {
                    let sum = values
                        .iter()
                        .filter_map(Value::integer)
                        .fold(0i64, i64::saturating_add);
                    if is_duration {
                        Value::Duration(sum)
                    } else {
                        Value::Int(sum)
                    }
                } else {
                    wrap(nums.iter().sum())
                }
            }
            Aggregate::Count => unreachable!(),
        }
    }

    /// Indices among `candidates` whose span satisfies `e`.
    fn filter(
        &self,
        e: Option<&FieldExpr>,
        cx: &TraceCtx,
        candidates: impl Iterator<Item = usize>,
    ) -> Vec<usize> {
        match e {
            None => candidates.collect(),
            Some(e) => candidates
                .filter(|&i| self.field(e, &cx.trace.spans[i], cx).is_true())
                .collect(),
        }
    }

    /// Evaluates a field expression on one span.
    pub(crate) fn field<'a>(
        &self,
        e: &'a FieldExpr,
        span: &'a Span,
        cx: &'a TraceCtx,
    ) -> Value<'a> {
        match e {
            FieldExpr::Static(s) => static_value(s),
            FieldExpr::Attr(a) => lookup_attr(span, a),
            FieldExpr::Intrinsic(i) => intrinsic(*i, span, cx),
            FieldExpr::Not(inner) => match self.field(inner, span, cx) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Bool(false),
            },
            FieldExpr::Neg(inner) => match self.field(inner, span, cx) {
                Value::Int(i) => Value::Int(i.wrapping_neg()),
                Value::Float(f) => Value::Float(-f),
                Value::Duration(d) => Value::Duration(d.wrapping_neg()),
                _ => Value::Nil,
            },
            FieldExpr::Binary { op, lhs, rhs } => match op {
                BinOp::And => Value::Bool(
                    self.field(lhs, span, cx).is_true() && self.field(rhs, span, cx).is_true(),
                ),
                BinOp::Or => Value::Bool(
                    self.field(lhs, span, cx).is_true() || self.field(rhs, span, cx).is_true(),
                ),
                op if op.is_arithmetic() => {
                    arithmetic(*op, &self.field(lhs, span, cx), &self.field(rhs, span, cx))
                }
                BinOp::Eq | BinOp::Neq if is_nil(lhs) || is_nil(rhs) => {
                    // A presence test: `= nil` is absent, `!= nil` present.
                    let other = if is_nil(lhs) { rhs } else { lhs };
                    let absent = matches!(self.field(other, span, cx), Value::Nil);
                    Value::Bool(absent == (*op == BinOp::Eq))
                }
                op => {
                    let l = self.field(lhs, span, cx);
                    let r = self.field(rhs, span, cx);
                    let re = match (op, rhs.as_ref()) {
                        (BinOp::Re | BinOp::NotRe, FieldExpr::Static(Static::Str(p))) => {
                            self.regexes.get(p)
                        }
                        _ => None,
                    };
                    Value::Bool(compare(*op, &l, &r, re))
                }
            },
        }
    }
}

fn intrinsic<'a>(i: Intrinsic, span: &'a Span, cx: &'a TraceCtx) -> Value<'a> {
    match i {
        Intrinsic::Name => Value::Str(Cow::Borrowed(&span.name)),
        Intrinsic::Status => Value::Status(span.status),
        Intrinsic::StatusMessage => Value::Str(Cow::Borrowed(&span.status_message)),
        Intrinsic::Kind => Value::Kind(span.kind),
        Intrinsic::Duration => Value::Duration(span.duration_ns()),
        Intrinsic::RootName => cx
            .root
            .map_or(Value::Nil, |r| Value::Str(Cow::Borrowed(&r.name))),
        Intrinsic::RootServiceName => cx
            .root
            .map_or(Value::Nil, |r| Value::Str(Cow::Borrowed(r.service_name()))),
        Intrinsic::TraceDuration => Value::Duration(cx.duration_ns),
        Intrinsic::SpanId => Value::Str(Cow::Owned(to_hex(&span.span_id))),
        Intrinsic::TraceId => Value::Str(Cow::Owned(to_hex(&span.trace_id))),
        Intrinsic::ParentId => span
            .parent_span_id
            .map_or(Value::Nil, |p| Value::Str(Cow::Owned(to_hex(&p)))),
        Intrinsic::InstrumentationName => Value::Str(Cow::Borrowed(&span.scope.name)),
        Intrinsic::InstrumentationVersion => Value::Str(Cow::Borrowed(&span.scope.version)),
    }
}

fn arithmetic<'a>(op: BinOp, l: &Value, r: &Value) -> Value<'a> {
    let duration = matches!(l, Value::Duration(_)) || matches!(r, Value::Duration(_));
    if let (Some(a), Some(b)) = (l.integer(), r.integer()) {
        let v = match op {
            BinOp::Add => a.checked_add(b),
            BinOp::Sub => a.checked_sub(b),
            BinOp::Mul => a.checked_mul(b),
            BinOp::Div => a.checked_div(b),
            BinOp::Mod => a.checked_rem(b),
            _ => None,
        };
        return match v {
            Some(v) if duration => Value::Duration(v),
            Some(v) => Value::Int(v),
            None => Value::Nil,
        };
    }
    let (Some(a), Some(b)) = (l.number(), r.number()) else {
        return Value::Nil;
    };
    let v = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Mod => a % b,
        _ => return Value::Nil,
    };
    if !v.is_finite() {
        Value::Nil
    } else if duration {
        Value::Duration(v.round() as i64)
    } else {
        Value::Float(v)
    }
}

/// Tempo's comparison: see the module doc.
pub(crate) fn compare(op: BinOp, l: &Value, r: &Value, re: Option<&Regex>) -> bool {
    use std::cmp::Ordering;
    // Missing values compare false (`nil` literals are handled by the caller).
    if matches!(l, Value::Nil) || matches!(r, Value::Nil) {
        return false;
    }
    let ord: Option<Ordering> = match (l, r) {
        (Value::Str(a), Value::Str(b)) => {
            if matches!(op, BinOp::Re | BinOp::NotRe) {
                let Some(re) = re else { return false };
                let m = re.is_match(a);
                return if op == BinOp::Re { m } else { !m };
            }
            Some(a.cmp(b))
        }
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Status(a), Value::Status(b)) => Some(a.cmp(b)),
        (Value::Kind(a), Value::Kind(b)) => Some(a.cmp(b)),
        _ => match (l.integer(), r.integer()) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => match (l.number(), r.number()) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => None,
            },
        },
    };
    let Some(ord) = ord else { return false };
    match op {
        BinOp::Eq => ord == Ordering::Equal,
        BinOp::Neq => ord != Ordering::Equal,
        BinOp::Gt => ord == Ordering::Greater,
        BinOp::Gte => ord != Ordering::Less,
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Lte => ord != Ordering::Greater,
        _ => false,
    }
}

fn is_nil(e: &FieldExpr) -> bool {
    matches!(e, FieldExpr::Static(Static::Nil))
}

fn one(spans: Vec<usize>) -> Vec<Spanset> {
    if spans.is_empty() {
        Vec::new()
    } else {
        vec![Spanset {
            spans,
            by: Vec::new(),
        }]
    }
}

/// Membership flags of every span in any of the spansets.
fn union(sets: &[Spanset], n: usize) -> Vec<bool> {
    let mut m = vec![false; n];
    for s in sets {
        for &i in &s.spans {
            m[i] = true;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_print_as_go_prints_them() {
        for (ns, want) in [
            (0, "0s"),
            (7, "7ns"),
            (177_476, "177.476µs"),
            (136_456_827, "136.456827ms"),
            (2_326_100_714, "2.326100714s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-1_500_000, "-1.5ms"),
        ] {
            assert_eq!(super::go_duration(ns), want);
        }
    }
}
