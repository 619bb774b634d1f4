//! Evaluation. Log queries stream entries through the pipeline and keep the
//! `limit` entries nearest the start (forward) or the end (backward). Metric
//! queries read each range aggregation's entries once for the whole query,
//! turn them into samples per output series, and evaluate every node for
//! all steps at once (`Steps`: per series, one optional value per step), so
//! label matching and grouping are done once per series, not per step.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::Instant;

use skopos_model::Labels;
use skopos_model::{
    Direction, LabelsBuilder, LogEntry, LogQueryable, LogSelect, LogStream, MatchOp,
};

use crate::ast::*;
use crate::pipeline::{
    label_filter, pushdown_contains, pushdown_matches, run_stages, unwrap_value, EntryLabels,
    ERROR_LABEL,
};
use crate::{CancelToken, EngineOptions, QueryError};

pub struct Ctx<'a> {
    pub q: &'a dyn LogQueryable,
    pub opts: &'a EngineOptions,
    pub cancel: &'a CancelToken,
    pub deadline: Instant,
    pub samples: usize,
}

impl Ctx<'_> {
    pub fn check(&self) -> Result<(), QueryError> {
        if self.cancel.is_cancelled() {
            return Err(QueryError::Canceled);
        }
        if Instant::now() >= self.deadline {
            return Err(QueryError::Timeout);
        }
        Ok(())
    }

    /// Reads `sel`, handing each entry in `[sel.start, sel.end)` of a
    /// stream that the matchers select to `f` with its stream's labels (the
    /// store's answer is checked, not trusted); checks cancellation as it goes.
    fn each_entry(
        &mut self,
        sel: &LogSelect,
        mut f: impl FnMut(&Labels, &LogEntry) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let mut failure = None;
        let mut seen = 0usize;
        let cancel = self.cancel;
        let deadline = self.deadline;
        self.q
            .select_logs(sel, &mut |stream: LogStream| {
                if !sel
                    .matchers
                    .iter()
                    .all(|m| m.matches_labels(&stream.labels))
                {
                    return true;
                }
                for e in &stream.entries {
                    if e.ts < sel.start || e.ts >= sel.end {
                        continue;
                    }
                    seen += 1;
                    if seen.is_multiple_of(1024) {
                        if cancel.is_cancelled() {
                            failure = Some(QueryError::Canceled);
                            return false;
                        }
                        if Instant::now() >= deadline {
                            failure = Some(QueryError::Timeout);
                            return false;
                        }
                    }
                    if let Err(err) = f(&stream.labels, e) {
                        failure = Some(err);
                        return false;
                    }
                }
                true
            })
            .map_err(|e| QueryError::Storage(e.to_string()))?;
        match failure {
            Some(e) => Err(e),
            None => self.check(),
        }
    }
}

// ------------------------------------------------------------ log queries

struct Hit {
    ts: i64,
    seq: u64,
    stream: usize,
    line: String,
    metadata: Labels,
}

pub fn eval_log(
    ctx: &mut Ctx<'_>,
    log: &LogExpr,
    start: i64,
    end: i64,
    limit: usize,
    dir: Direction,
) -> Result<Vec<LogStream>, QueryError> {
    let sel = LogSelect {
        matchers: log.matchers.clone(),
        start,
        end,
        contains: pushdown_contains(&log.stages),
        matches: pushdown_matches(&log.stages),
    };
    let mut label_ids: HashMap<Labels, usize> = HashMap::new();
    let mut label_sets: Vec<Labels> = Vec::new();
    let mut hits: Vec<Hit> = Vec::new();
    let mut seq = 0u64;
    let sort_hits = |hits: &mut Vec<Hit>| match dir {
        Direction::Forward => hits.sort_by_key(|h| (h.ts, h.seq)),
        Direction::Backward => hits.sort_by_key(|h| (Reverse(h.ts), Reverse(h.seq))),
    };
    // Line filters alone leave an entry without metadata with its stream's
    // labels: the common case skips the label builder and the lookup.
    let only_line_filters = log.stages.iter().all(|s| matches!(s, Stage::LineFilter(_)));
    let mut last_stream: Option<(Labels, usize)> = None;
    ctx.each_entry(&sel, |stream, e| {
        if only_line_filters && e.metadata.is_empty() {
            if !log.stages.iter().all(|s| match s {
                Stage::LineFilter(f) => f.matches(&e.line),
                _ => true,
            }) {
                return Ok(());
            }
            if let Some((labels, id)) = &last_stream {
                if labels == stream {
                    seq += 1;
                    hits.push(Hit {
                        ts: e.ts,
                        seq,
                        stream: *id,
                        line: e.line.clone(),
                        metadata: Labels::empty(),
                    });
                    if hits.len() >= 2 * limit + 1024 {
                        sort_hits(&mut hits);
                        hits.truncate(limit);
                    }
                    return Ok(());
                }
            }
        }
        let mut lbs = EntryLabels::new(stream, &e.metadata);
        let Some(line) = run_stages(&log.stages, e.ts, &e.line, &mut lbs) else {
            return Ok(());
        };
        let labels = lbs.result();
        let id = match label_ids.get(&labels) {
            Some(id) => *id,
            None => {
                label_sets.push(labels.clone());
                label_ids.insert(labels, label_sets.len() - 1);
                label_sets.len() - 1
            }
        };
        if only_line_filters && e.metadata.is_empty() {
            last_stream = Some((stream.clone(), id));
        }
        seq += 1;
        hits.push(Hit {
            ts: e.ts,
            seq,
            stream: id,
            line,
            metadata: e.metadata.clone(),
        });
        if hits.len() >= 2 * limit + 1024 {
            sort_hits(&mut hits);
            hits.truncate(limit);
        }
        Ok(())
    })?;
    sort_hits(&mut hits);
    hits.truncate(limit);
    let mut streams: HashMap<usize, Vec<LogEntry>> = HashMap::new();
    for h in hits {
        streams.entry(h.stream).or_default().push(LogEntry {
            ts: h.ts,
            line: h.line,
            metadata: h.metadata,
        });
    }
    let mut out: Vec<LogStream> = streams
        .into_iter()
        .map(|(id, entries)| LogStream {
            labels: label_sets[id].clone(),
            entries,
        })
        .collect();
    out.sort_by_cached_key(|s| s.labels.to_string());
    Ok(out)
}

// --------------------------------------------------------- metric queries

/// Values of one node at every step.
pub enum Steps {
    Scalar(f64),
    Vector(Vec<StepSeries>),
}

pub struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// Evaluates a metric query and applies `max_series` to what it returns,
/// as Loki applies `max_query_series`: an aggregation may reduce any number
/// of inner series (bounded by `max_samples`) to a few.
pub fn eval_metric(ctx: &mut Ctx<'_>, e: &Expr, steps: &[i64]) -> Result<Steps, QueryError> {
    let out = eval_node(ctx, e, steps)?;
    if let Steps::Vector(series) = &out {
        let live = series
            .iter()
            .filter(|s| s.values.iter().any(Option::is_some))
            .count();
        if live > ctx.opts.max_series {
            return Err(QueryError::Execution(format!(
                "maximum of series ({}) reached for a single query",
                ctx.opts.max_series
            )));
        }
    }
    Ok(out)
}

fn eval_node(ctx: &mut Ctx<'_>, e: &Expr, steps: &[i64]) -> Result<Steps, QueryError> {
    ctx.check()?;
    let out = match e {
        Expr::Log(_) => {
            return Err(QueryError::Execution(
                "a log query cannot be evaluated as a metric query".into(),
            ))
        }
        Expr::Literal(v) => Steps::Scalar(*v),
        Expr::Vector(v) => Steps::Vector(vec![StepSeries {
            labels: Labels::empty(),
            values: vec![Some(*v); steps.len()],
        }]),
        Expr::RangeAgg(r) => Steps::Vector(range_agg(ctx, r, steps, false)?),
        Expr::VectorAgg(v) => {
            // As Loki's parser hints: grouping `by (__error__)` right over a
            // range aggregation asks for the errors, so they are no failure.
            let inner = match &*v.expr {
                Expr::RangeAgg(r) => {
                    Steps::Vector(range_agg(ctx, r, steps, groups_by_error(&v.grouping))?)
                }
                e => eval_node(ctx, e, steps)?,
            };
            let Steps::Vector(series) = inner else {
                return Err(QueryError::Execution(format!(
                    "{} expects a vector, got a scalar",
                    v.op.name()
                )));
            };
            Steps::Vector(vector_agg(v, series, steps.len()))
        }
        Expr::LabelReplace(l) => {
            let Steps::Vector(series) = eval_node(ctx, &l.expr, steps)? else {
                return Err(QueryError::Execution(
                    "label_replace expects a vector, got a scalar".into(),
                ));
            };
            Steps::Vector(series.into_iter().map(|s| label_replace(l, s)).collect())
        }
        Expr::Binary(b) => {
            let lhs = eval_node(ctx, &b.lhs, steps)?;
            let rhs = eval_node(ctx, &b.rhs, steps)?;
            binary(b, lhs, rhs, steps.len())?
        }
    };
    Ok(out)
}

fn groups_by_error(g: &Option<Grouping>) -> bool {
    g.as_ref()
        .is_some_and(|g| !g.without && g.labels.iter().any(|l| l == ERROR_LABEL))
}

fn range_agg(
    ctx: &mut Ctx<'_>,
    r: &RangeAgg,
    steps: &[i64],
    preserve_error: bool,
) -> Result<Vec<StepSeries>, QueryError> {
    let preserve_error = preserve_error || groups_by_error(&r.grouping);
    let lr = &r.range;
    let first = steps[0].saturating_sub(lr.offset);
    let last = steps[steps.len() - 1].saturating_sub(lr.offset);
    let sel = LogSelect {
        matchers: lr.log.matchers.clone(),
        start: first.saturating_sub(lr.range).saturating_add(1),
        end: last.saturating_add(1),
        contains: pushdown_contains(&lr.log.stages),
        matches: pushdown_matches(&lr.log.stages),
    };
    let (group_names, without) = match (&r.grouping, &lr.unwrap) {
        (Some(g), Some(u)) if g.without => {
            let mut names = g.labels.clone();
            names.push(u.label.clone());
            (names, true)
        }
        (Some(g), _) => (g.labels.clone(), g.without),
        (None, Some(u)) => (vec![u.label.clone()], true),
        (None, None) => (Vec::new(), true),
    };
    let mut series: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
    let max_samples = ctx.opts.max_samples;
    let mut held = ctx.samples;
    // Only line filters and no unwrap: an entry without metadata keeps its
    // stream's labels, so its series is found once per stream, not built
    // per line (the common `count_over_time({...} |= "x" [5m])`).
    let filters_only = lr.unwrap.is_none()
        && r.op != RangeOp::AbsentOverTime
        && lr
            .log
            .stages
            .iter()
            .all(|s| matches!(s, Stage::LineFilter(_)));
    let mut stream_series: Option<(Labels, Labels)> = None;
    ctx.each_entry(&sel, |stream, e| {
        if filters_only && e.metadata.is_empty() {
            let kept = lr.log.stages.iter().all(|s| match s {
                Stage::LineFilter(f) => f.matches(&e.line),
                _ => true,
            });
            if !kept {
                return Ok(());
            }
            let value = match r.op {
                RangeOp::BytesRate | RangeOp::BytesOverTime => e.line.len() as f64,
                _ => 1.0,
            };
            held += 1;
            if held > max_samples {
                return Err(QueryError::TooManySamples(max_samples));
            }
            let labels = match &stream_series {
                Some((s, g)) if s == stream => g,
                _ => {
                    let g = EntryLabels::new(stream, &e.metadata).grouped(&group_names, without);
                    &stream_series.insert((stream.clone(), g)).1
                }
            };
            match series.get_mut(labels) {
                Some(points) => points.push((e.ts, value)),
                None => {
                    series.insert(labels.clone(), vec![(e.ts, value)]);
                }
            }
            return Ok(());
        }
        let mut lbs = EntryLabels::new(stream, &e.metadata);
        let Some(line) = run_stages(&lr.log.stages, e.ts, &e.line, &mut lbs) else {
            return Ok(());
        };
        let value = match (&lr.unwrap, r.op) {
            (Some(u), _) => {
                let Some(v) = unwrap_value(u, &mut lbs) else {
                    return Ok(());
                };
                for f in &u.post_filters {
                    if !label_filter(f, &mut lbs) {
                        return Ok(());
                    }
                }
                v
            }
            (None, RangeOp::BytesRate | RangeOp::BytesOverTime) => line.len() as f64,
            (None, _) => 1.0,
        };
        let labels = if r.op == RangeOp::AbsentOverTime {
            Labels::empty()
        } else {
            lbs.grouped(&group_names, without)
        };
        held += 1;
        if held > max_samples {
            return Err(QueryError::TooManySamples(max_samples));
        }
        series.entry(labels).or_default().push((e.ts, value));
        Ok(())
    })?;
    ctx.samples = held;

    let range_secs = lr.range as f64 / 1e9;
    if r.op == RangeOp::AbsentOverTime {
        let points = series.into_values().next().unwrap_or_default();
        let mut ts: Vec<i64> = points.iter().map(|p| p.0).collect();
        ts.sort_unstable();
        let values = steps
            .iter()
            .map(|&t| {
                let end = t.saturating_sub(lr.offset);
                let lo = ts.partition_point(|&x| x <= end.saturating_sub(lr.range));
                let hi = ts.partition_point(|&x| x <= end);
                (lo == hi).then_some(1.0)
            })
            .collect();
        // As Prometheus' `absent`: the equality matchers' labels, less any
        // name that another matcher (or a second equality) also names.
        let mut b = LabelsBuilder::new();
        let mut ambiguous = Vec::new();
        for m in &lr.log.matchers {
            if m.op == MatchOp::Equal && b.get(&m.name).is_none() {
                b.set(m.name.clone(), m.value.clone());
            } else {
                ambiguous.push(m.name.as_str());
            }
        }
        for name in ambiguous {
            b.delete(name);
        }
        return Ok(vec![StepSeries {
            labels: b.build(),
            values,
        }]);
    }

    let mut out = Vec::with_capacity(series.len());
    // Counting operations need no look at the values, and byte sums are
    // exact integers, so those read prefix sums; the rest fold the window.
    let counts_only = lr.unwrap.is_none() && matches!(r.op, RangeOp::CountOverTime | RangeOp::Rate);
    let byte_sums = matches!(r.op, RangeOp::BytesOverTime | RangeOp::BytesRate);
    for (labels, mut points) in series {
        points.sort_by_key(|p| p.0);
        let (ts, vals): (Vec<i64>, Vec<f64>) = points.into_iter().unzip();
        let prefix: Vec<f64> = if byte_sums {
            std::iter::once(0.0)
                .chain(vals.iter().scan(0.0, |acc, v| {
                    *acc += v;
                    Some(*acc)
                }))
                .collect()
        } else {
            Vec::new()
        };
        let values: Vec<Option<f64>> = steps
            .iter()
            .map(|&t| {
                let end = t.saturating_sub(lr.offset);
                let lo = ts.partition_point(|&x| x <= end.saturating_sub(lr.range));
                let hi = ts.partition_point(|&x| x <= end);
                if lo == hi {
                    return None;
                }
                Some(match r.op {
                    RangeOp::CountOverTime if counts_only => (hi - lo) as f64,
                    RangeOp::Rate if counts_only => (hi - lo) as f64 / range_secs,
                    RangeOp::BytesOverTime => prefix[hi] - prefix[lo],
                    RangeOp::BytesRate => (prefix[hi] - prefix[lo]) / range_secs,
                    RangeOp::RateCounter => rate_counter(&ts[lo..hi], &vals[lo..hi], lr.range),
                    op => range_fn(op, r.param, &vals[lo..hi], range_secs),
                })
            })
            .collect();
        if !preserve_error
            && labels.get(ERROR_LABEL).is_some()
            && values.iter().any(Option::is_some)
        {
            return Err(pipeline_error(&labels));
        }
        out.push(StepSeries { labels, values });
    }
    // A stable order, so that ties (in `topk`, say) resolve the same way every time.
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    ctx.check()?;
    Ok(out)
}

/// Sets `dst` from the expansion of the replacement when the (anchored)
/// regex matches `src`'s value; an empty result removes `dst`.
fn label_replace(l: &LabelReplace, mut s: StepSeries) -> StepSeries {
    let src = s.labels.get(&l.src).unwrap_or("");
    if let Some(caps) = l.regex.captures(src) {
        let mut value = String::new();
        caps.expand(&l.replacement, &mut value);
        let mut b = s.labels.builder();
        b.set(l.dst.clone(), value);
        s.labels = b.build();
    }
    s
}

fn pipeline_error(labels: &Labels) -> QueryError {
    let err = labels.get(ERROR_LABEL).unwrap_or("");
    QueryError::Execution(format!(
        "pipeline error: '{err}' for series: '{labels}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{err}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )"
    ))
}

/// Loki's `rate_counter`: Prometheus' extrapolated `rate` over the unwrapped
/// values taken as a counter (resets add the value before them), 0 under
/// two samples. Computed as Loki computes it: its samples carry nanosecond
/// times while the window start subtracts the range in milliseconds and the
/// durations divide by 1000, so the extrapolation adds almost nothing and
/// the result is close to the plain increase over the range in seconds.
fn rate_counter(ts: &[i64], w: &[f64], range_ns: i64) -> f64 {
    if w.len() < 2 {
        return 0.0;
    }
    let (first, last) = (ts[0], ts[ts.len() - 1]);
    let range_start = first - range_ns / 1_000_000;
    let mut result = w[w.len() - 1] - w[0];
    let mut prev = 0.0;
    for &v in w {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let mut to_start = (first - range_start) as f64 / 1000.0;
    let to_end = 0.0;
    let sampled = (last - first) as f64 / 1000.0;
    let avg_gap = sampled / (w.len() - 1) as f64;
    if result > 0.0 && w[0] >= 0.0 {
        let to_zero = sampled * (w[0] / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_gap / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_gap / 2.0
    };
    result * (interval / sampled) / (range_ns as f64 / 1e9)
}

fn range_fn(op: RangeOp, param: Option<f64>, w: &[f64], range_secs: f64) -> f64 {
    let n = w.len() as f64;
    let sum = || w.iter().sum::<f64>();
    let variance = || {
        let (mut count, mut mean, mut m2) = (0f64, 0f64, 0f64);
        for &v in w {
            count += 1.0;
            let delta = v - mean;
            mean += delta / count;
            m2 += delta * (v - mean);
        }
        m2 / count
    };
    match op {
        RangeOp::CountOverTime => n,
        RangeOp::Rate | RangeOp::BytesRate => sum() / range_secs,
        RangeOp::BytesOverTime | RangeOp::SumOverTime => sum(),
        RangeOp::AvgOverTime => {
            let mut mean = 0f64;
            let mut count = 0f64;
            for &v in w {
                count += 1.0;
                if mean.is_infinite() {
                    // Inf - Inf would be NaN: an infinite mean stays unless a
                    // NaN or the opposite infinity comes along.
                    if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if v.is_finite() {
                        continue;
                    }
                }
                mean += v / count - mean / count;
            }
            mean
        }
        RangeOp::MinOverTime => {
            w.iter().copied().fold(
                f64::NAN,
                |acc, v| {
                    if acc.is_nan() || v < acc {
                        v
                    } else {
                        acc
                    }
                },
            )
        }
        RangeOp::MaxOverTime => {
            w.iter().copied().fold(
                f64::NAN,
                |acc, v| {
                    if acc.is_nan() || v > acc {
                        v
                    } else {
                        acc
                    }
                },
            )
        }
        RangeOp::FirstOverTime => w[0],
        RangeOp::LastOverTime => w[w.len() - 1],
        RangeOp::StdvarOverTime => variance(),
        RangeOp::StddevOverTime => variance().sqrt(),
        RangeOp::QuantileOverTime => quantile(param.unwrap_or(0.0), w),
        RangeOp::AbsentOverTime => 1.0,
        RangeOp::RateCounter => f64::NAN, // computed from the times by `rate_counter`
    }
}

/// Prometheus' quantile: linear interpolation between the closest ranks.
fn quantile(q: f64, values: &[f64]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut v = values.to_vec();
    // Ascending, NaN first (as Loki's sort orders them).
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    v[lower as usize] * (1.0 - weight) + v[upper as usize] * weight
}

fn group_key(labels: &Labels, g: &Option<Grouping>) -> Labels {
    match g {
        None => Labels::empty(),
        Some(g) => {
            let mut b = LabelsBuilder::new();
            for l in labels {
                if g.labels.contains(&l.name) != g.without {
                    b.set(l.name.clone(), l.value.clone());
                }
            }
            b.build()
        }
    }
}

fn vector_agg(v: &VectorAgg, series: Vec<StepSeries>, n_steps: usize) -> Vec<StepSeries> {
    match v.op {
        VecOp::Sort | VecOp::SortDesc => return series,
        VecOp::Topk | VecOp::Bottomk => {
            let k = v.param.unwrap_or(1.0) as usize;
            let mut groups: HashMap<Labels, Vec<usize>> = HashMap::new();
            for (i, s) in series.iter().enumerate() {
                groups
                    .entry(group_key(&s.labels, &v.grouping))
                    .or_default()
                    .push(i);
            }
            let mut keep = vec![vec![false; n_steps]; series.len()];
            for members in groups.values() {
                // `keep` is indexed by series, then by step.
                #[allow(clippy::needless_range_loop)]
                for step in 0..n_steps {
                    let mut present: Vec<(f64, usize)> = members
                        .iter()
                        .filter_map(|&i| series[i].values[step].map(|x| (x, i)))
                        .collect();
                    present.sort_by(|a, b| {
                        let ord = if v.op == VecOp::Topk {
                            b.0.total_cmp(&a.0)
                        } else {
                            a.0.total_cmp(&b.0)
                        };
                        ord.then(a.1.cmp(&b.1))
                    });
                    for (_, i) in present.into_iter().take(k) {
                        keep[i][step] = true;
                    }
                }
            }
            return series
                .into_iter()
                .zip(keep)
                .map(|(s, k)| StepSeries {
                    labels: s.labels,
                    values: s
                        .values
                        .into_iter()
                        .zip(k)
                        .map(|(v, k)| v.filter(|_| k))
                        .collect(),
                })
                .filter(|s| s.values.iter().any(Option::is_some))
                .collect();
        }
        _ => {}
    }
    #[derive(Clone, Copy, Default)]
    struct Acc {
        count: f64,
        value: f64,
        mean: f64,
    }
    let mut groups: HashMap<Labels, Vec<Acc>> = HashMap::new();
    for s in &series {
        let accs = groups
            .entry(group_key(&s.labels, &v.grouping))
            .or_insert_with(|| vec![Acc::default(); n_steps]);
        for (acc, x) in accs.iter_mut().zip(&s.values) {
            let Some(x) = *x else { continue };
            acc.count += 1.0;
            match v.op {
                VecOp::Sum => acc.value += x,
                VecOp::Count => acc.value += 1.0,
                VecOp::Avg => acc.mean += x / acc.count - acc.mean / acc.count,
                VecOp::Min if acc.count == 1.0 || x < acc.value || acc.value.is_nan() => {
                    acc.value = x
                }
                VecOp::Max if acc.count == 1.0 || x > acc.value || acc.value.is_nan() => {
                    acc.value = x
                }
                VecOp::Stddev | VecOp::Stdvar => {
                    let delta = x - acc.mean;
                    acc.mean += delta / acc.count;
                    acc.value += delta * (x - acc.mean);
                }
                _ => {}
            }
        }
    }
    let mut groups: Vec<(Labels, Vec<Acc>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
        .into_iter()
        .map(|(labels, accs)| StepSeries {
            labels,
            values: accs
                .into_iter()
                .map(|a| {
                    (a.count > 0.0).then(|| match v.op {
                        VecOp::Avg => a.mean,
                        VecOp::Stdvar => a.value / a.count,
                        VecOp::Stddev => (a.value / a.count).sqrt(),
                        _ => a.value,
                    })
                })
                .collect(),
        })
        .collect()
}

/// `group_left`/`group_right`: every series of the "many" side matches the
/// one series of the other side with its signature; the result keeps the
/// many side's labels plus the `include` labels of the one side. Values
/// keep their written order (`lhs op rhs`); a filtering comparison keeps
/// the left-hand value, as Prometheus does.
fn grouped_binary(
    b: &BinaryExpr,
    group: &GroupModifier,
    ls: Vec<StepSeries>,
    rs: Vec<StepSeries>,
    n_steps: usize,
) -> Result<Vec<StepSeries>, QueryError> {
    let (many, one) = if group.left { (ls, rs) } else { (rs, ls) };
    let side = if group.left { "right" } else { "left" };
    let mut by_sig: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, s) in one.iter().enumerate() {
        by_sig
            .entry(signature(&s.labels, &b.matching))
            .or_default()
            .push(i);
    }
    let mut out: HashMap<Labels, Vec<Option<f64>>> = HashMap::new();
    for m in &many {
        let sig = signature(&m.labels, &b.matching);
        let Some(ids) = by_sig.get(&sig) else {
            continue;
        };
        for step in 0..n_steps {
            let Some(mv) = m.values[step] else { continue };
            let mut matched = ids.iter().filter(|&&i| one[i].values[step].is_some());
            let Some(&oi) = matched.next() else { continue };
            if matched.next().is_some() {
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {sig} on the {side} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side"
                )));
            }
            let ov = one[oi].values[step].unwrap_or(f64::NAN);
            let (lv, rv) = if group.left { (mv, ov) } else { (ov, mv) };
            let Some(v) = combine(b, lv, rv, lv) else {
                continue;
            };
            let mut labels = m.labels.builder();
            for name in &group.include {
                match one[oi].labels.get(name) {
                    Some(value) => labels.set(name.clone(), value.to_string()),
                    None => labels.delete(name),
                };
            }
            let slot = out
                .entry(labels.build())
                .or_insert_with(|| vec![None; n_steps]);
            if slot[step].is_some() {
                return Err(QueryError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
            slot[step] = Some(v);
        }
    }
    Ok(out
        .into_iter()
        .map(|(labels, values)| StepSeries { labels, values })
        .collect())
}

/// Arithmetic as Loki does it: division and modulo by zero give NaN.
fn arith(op: BinOp, l: f64, r: f64) -> f64 {
    match op {
        BinOp::Add => l + r,
        BinOp::Sub => l - r,
        BinOp::Mul => l * r,
        BinOp::Div => {
            if r == 0.0 {
                f64::NAN
            } else {
                l / r
            }
        }
        BinOp::Mod => {
            if r == 0.0 {
                f64::NAN
            } else {
                l % r
            }
        }
        BinOp::Pow => l.powf(r),
        BinOp::Eq => bool_f(l == r),
        BinOp::Ne => bool_f(l != r),
        BinOp::Gt => bool_f(l > r),
        BinOp::Ge => bool_f(l >= r),
        BinOp::Lt => bool_f(l < r),
        BinOp::Le => bool_f(l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => f64::NAN,
    }
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// One element of a binary operation: a comparison without `bool` keeps the
/// vector's value where it holds and drops it elsewhere.
fn combine(b: &BinaryExpr, l: f64, r: f64, keep: f64) -> Option<f64> {
    let v = arith(b.op, l, r);
    if b.op.is_comparison() && !b.return_bool {
        (v == 1.0).then_some(keep)
    } else {
        Some(v)
    }
}

fn signature(labels: &Labels, m: &Option<VectorMatching>) -> Labels {
    match m {
        None => labels.clone(),
        Some(m) => {
            let mut b = LabelsBuilder::new();
            for l in labels {
                if m.labels.contains(&l.name) == m.on {
                    b.set(l.name.clone(), l.value.clone());
                }
            }
            b.build()
        }
    }
}

fn binary(b: &BinaryExpr, lhs: Steps, rhs: Steps, n_steps: usize) -> Result<Steps, QueryError> {
    match (lhs, rhs) {
        (Steps::Scalar(l), Steps::Scalar(r)) => Ok(Steps::Scalar(arith(b.op, l, r))),
        (Steps::Vector(vs), Steps::Scalar(r)) => Ok(Steps::Vector(
            vs.into_iter()
                .map(|s| StepSeries {
                    labels: s.labels,
                    values: s
                        .values
                        .into_iter()
                        .map(|v| v.and_then(|l| combine(b, l, r, l)))
                        .collect(),
                })
                .collect(),
        )),
        (Steps::Scalar(l), Steps::Vector(vs)) => Ok(Steps::Vector(
            vs.into_iter()
                .map(|s| StepSeries {
                    labels: s.labels,
                    values: s
                        .values
                        .into_iter()
                        .map(|v| v.and_then(|r| combine(b, l, r, r)))
                        .collect(),
                })
                .collect(),
        )),
        (Steps::Vector(ls), Steps::Vector(rs)) => {
            vector_binary(b, ls, rs, n_steps).map(Steps::Vector)
        }
    }
}

fn vector_binary(
    b: &BinaryExpr,
    ls: Vec<StepSeries>,
    rs: Vec<StepSeries>,
    n_steps: usize,
) -> Result<Vec<StepSeries>, QueryError> {
    let mut by_sig: HashMap<Labels, Vec<usize>> = HashMap::new();
    for (i, s) in rs.iter().enumerate() {
        by_sig
            .entry(signature(&s.labels, &b.matching))
            .or_default()
            .push(i);
    }
    if b.op.is_set() {
        let present = |sig: &Labels, step: usize| {
            by_sig
                .get(sig)
                .is_some_and(|ids| ids.iter().any(|&i| rs[i].values[step].is_some()))
        };
        let mut out: Vec<StepSeries> = Vec::new();
        let mut lhs_sigs: Vec<(Labels, Vec<bool>)> = Vec::new();
        for s in ls {
            let sig = signature(&s.labels, &b.matching);
            let values: Vec<Option<f64>> = s
                .values
                .iter()
                .enumerate()
                .map(|(step, v)| match b.op {
                    BinOp::And => v.filter(|_| present(&sig, step)),
                    BinOp::Unless => v.filter(|_| !present(&sig, step)),
                    _ => *v,
                })
                .collect();
            lhs_sigs.push((sig, s.values.iter().map(Option::is_some).collect()));
            out.push(StepSeries {
                labels: s.labels,
                values,
            });
        }
        if b.op == BinOp::Or {
            for s in rs.iter() {
                let sig = signature(&s.labels, &b.matching);
                let values = (0..n_steps)
                    .map(|step| {
                        let taken = lhs_sigs.iter().any(|(ls, p)| *ls == sig && p[step]);
                        s.values[step].filter(|_| !taken)
                    })
                    .collect();
                out.push(StepSeries {
                    labels: s.labels.clone(),
                    values,
                });
            }
        }
        return Ok(out);
    }

    if let Some(group) = b.matching.as_ref().and_then(|m| m.group.as_ref()) {
        return grouped_binary(b, group, ls, rs, n_steps);
    }
    let mut out: HashMap<Labels, Vec<Option<f64>>> = HashMap::new();
    let mut lhs_seen: HashMap<Labels, Vec<bool>> = HashMap::new();
    for l in &ls {
        let sig = signature(&l.labels, &b.matching);
        let Some(ids) = by_sig.get(&sig) else {
            continue;
        };
        let result_labels = match &b.matching {
            None => l.labels.clone(),
            Some(_) if b.op.is_comparison() && !b.return_bool => l.labels.clone(),
            Some(_) => sig.clone(),
        };
        let seen = lhs_seen
            .entry(sig.clone())
            .or_insert_with(|| vec![false; n_steps]);
        let slot = out
            .entry(result_labels.clone())
            .or_insert_with(|| vec![None; n_steps]);
        for step in 0..n_steps {
            let Some(lv) = l.values[step] else { continue };
            let mut matched = ids.iter().filter_map(|&i| rs[i].values[step]);
            let Some(rv) = matched.next() else { continue };
            if matched.next().is_some() {
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {sig} on the right hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side"
                )));
            }
            if seen[step] {
                return Err(QueryError::Execution(format!(
                    "multiple matches for labels {sig}: many-to-one matching must be explicit (group_left/group_right)"
                )));
            }
            seen[step] = true;
            if let Some(v) = combine(b, lv, rv, lv) {
                if slot[step].is_some() {
                    return Err(QueryError::Execution(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
                slot[step] = Some(v);
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|(labels, values)| StepSeries { labels, values })
        .collect())
}
