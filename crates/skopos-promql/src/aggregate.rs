//! Aggregation operators, with Prometheus 2.x's arithmetic (incremental
//! mean, Welford variance, Go's heap for topk/bottomk).

use std::rc::Rc;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use skopos_model::{Labels, METRIC_NAME};

use crate::binary::signature_into;
use crate::eval::{exec_err, Elem, Result};
use crate::fxhash::FxHashMap;

/// Grouping key of an aggregation.
pub(crate) fn group_key(buf: &mut String, l: &Labels, grouping: &[String], without: bool) {
    signature_into(buf, l, !without, grouping);
}

pub(crate) fn group_labels(l: &Labels, grouping: &[String], without: bool) -> Labels {
    let mut b = l.builder();
    if without {
        b.retain(|x| x.name != METRIC_NAME && !grouping.iter().any(|g| g == &x.name));
    } else {
        b.retain(|x| grouping.iter().any(|g| g == &x.name));
    }
    b.build()
}

struct Group {
    labels: Labels,
    acc: Acc,
    heap: Vec<Elem>,
}

/// The running state of one group (at one step) for the aggregations that
/// need no heap, with Prometheus 2.x's arithmetic: shared by the step
/// evaluator and the series-major one, so both give the same bits.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Acc {
    pub value: f64,
    pub mean: f64,
    pub count: f64,
}

/// Aggregations evaluated with [`Acc`] alone.
pub(crate) fn is_accumulating(op: u16) -> bool {
    matches!(
        op,
        T_SUM | T_AVG | T_COUNT | T_GROUP | T_MIN | T_MAX | T_STDDEV | T_STDVAR
    )
}

impl Acc {
    /// The state after the group's first value.
    pub(crate) fn first(op: u16, v: f64) -> Acc {
        let value = match op {
            T_STDVAR | T_STDDEV => 0.0,
            T_GROUP => 1.0,
            _ => v,
        };
        Acc {
            value,
            mean: v,
            count: 1.0,
        }
    }

    /// Adds a further value of the group.
    pub(crate) fn add(&mut self, op: u16, v: f64) {
        match op {
            T_SUM => self.value += v,
            T_AVG => {
                self.count += 1.0;
                if self.mean.is_infinite() {
                    if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                self.mean += v / self.count - self.mean / self.count;
            }
            T_MAX if self.value < v || self.value.is_nan() => self.value = v,
            T_MIN if self.value > v || self.value.is_nan() => self.value = v,
            T_COUNT | T_COUNT_VALUES => self.count += 1.0,
            T_STDVAR | T_STDDEV => {
                self.count += 1.0;
                let delta = v - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (v - self.mean);
            }
            _ => {}
        }
    }

    /// The group's value.
    pub(crate) fn result(&self, op: u16) -> f64 {
        match op {
            T_AVG => self.mean,
            T_COUNT | T_COUNT_VALUES => self.count,
            T_STDVAR => self.value / self.count,
            T_STDDEV => (self.value / self.count).sqrt(),
            _ => self.value,
        }
    }
}

/// `a < b` for the top-k heap (NaN is the smallest).
fn less_topk(a: f64, b: f64) -> bool {
    a.is_nan() || a < b
}

/// `a < b` for the bottom-k heap (NaN is the largest, popped first).
fn less_bottomk(a: f64, b: f64) -> bool {
    a.is_nan() || a > b
}

fn heap_up(h: &mut [Elem], mut j: usize, less: fn(f64, f64) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(h[j].v, h[i].v) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [Elem], mut i: usize, n: usize, less: fn(f64, f64) -> bool) {
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(h[j2].v, h[j1].v) {
            j = j2;
        }
        if !less(h[j].v, h[i].v) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push(h: &mut Vec<Elem>, e: Elem, less: fn(f64, f64) -> bool) {
    h.push(e);
    let n = h.len() - 1;
    heap_up(h, n, less);
}

fn heap_pop(h: &mut Vec<Elem>, less: fn(f64, f64) -> bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, less);
    h.pop();
}

/// Prometheus' quantile over a set of values (φ-quantile with linear interpolation).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if q.is_nan() {
        return f64::NAN;
    }
    values.sort_by(|a, b| {
        if a.is_nan() && !b.is_nan() {
            std::cmp::Ordering::Less
        } else if b.is_nan() && !a.is_nan() {
            std::cmp::Ordering::Greater
        } else {
            a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
        }
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

pub(crate) fn aggregate(
    op: u16,
    grouping: &[String],
    without: bool,
    param: f64,
    label: &str,
    vec: Vec<Elem>,
) -> Result<Vec<Elem>> {
    let mut k = 0usize;
    if op == T_TOPK || op == T_BOTTOMK {
        if !(param >= i64::MIN as f64 && param <= i64::MAX as f64) {
            return Err(exec_err(format!(
                "Scalar value {} overflows int64",
                crate::format_value(param)
            )));
        }
        let ki = param as i64;
        if ki < 1 {
            return Ok(Vec::new());
        }
        k = ki as usize;
    }
    let mut grouping: Vec<String> = grouping.to_vec();
    if op == T_COUNT_VALUES {
        if !skopos_model::is_valid_label_name(label) {
            return Err(exec_err(format!("invalid label name {label:?}")));
        }
        if !without {
            grouping.push(label.to_string());
        }
    }
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    let mut key = String::new();
    let mut groups: Vec<Group> = Vec::new();
    for s in vec {
        let metric = if op == T_COUNT_VALUES {
            let mut b = s.labels.builder();
            b.set(label.to_string(), format_go_float(s.v));
            Rc::new(b.build())
        } else {
            s.labels.clone()
        };
        group_key(&mut key, &metric, &grouping, without);
        let Some(&gi) = index.get(key.as_str()) else {
            let mut g = Group {
                labels: group_labels(&metric, &grouping, without),
                acc: Acc::first(op, s.v),
                heap: Vec::new(),
            };
            if matches!(op, T_TOPK | T_BOTTOMK | T_QUANTILE) {
                g.heap.push(s);
            }
            index.insert(key.clone(), groups.len());
            groups.push(g);
            continue;
        };
        let g = &mut groups[gi];
        match op {
            _ if is_accumulating(op) || op == T_COUNT_VALUES => g.acc.add(op, s.v),
            T_TOPK => {
                if g.heap.len() < k || less_topk(g.heap[0].v, s.v) || g.heap[0].v.is_nan() {
                    if g.heap.len() == k {
                        if k == 1 {
                            g.heap[0] = s;
                            continue;
                        }
                        heap_pop(&mut g.heap, less_topk);
                    }
                    heap_push(&mut g.heap, s, less_topk);
                }
            }
            T_BOTTOMK => {
                if g.heap.len() < k || less_bottomk(g.heap[0].v, s.v) || g.heap[0].v.is_nan() {
                    if g.heap.len() == k {
                        if k == 1 {
                            g.heap[0] = s;
                            continue;
                        }
                        heap_pop(&mut g.heap, less_bottomk);
                    }
                    heap_push(&mut g.heap, s, less_bottomk);
                }
            }
            T_QUANTILE => g.heap.push(s),
            _ => return Err(exec_err("unknown aggregation")),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for mut g in groups {
        let v = match op {
            T_TOPK | T_BOTTOMK => {
                let less = if op == T_TOPK {
                    less_topk
                } else {
                    less_bottomk
                };
                // Largest first for topk, smallest first for bottomk.
                g.heap.sort_by(|a, b| {
                    if less(b.v, a.v) {
                        std::cmp::Ordering::Less
                    } else if less(a.v, b.v) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
                out.extend(g.heap);
                continue;
            }
            T_QUANTILE => {
                let mut vals: Vec<f64> = g.heap.iter().map(|e| e.v).collect();
                quantile(param, &mut vals)
            }
            _ => g.acc.result(op),
        };
        out.push(Elem {
            labels: Rc::new(g.labels),
            v,
        });
    }
    Ok(out)
}
