//! PromQL functions, with Prometheus 2.x semantics.

use std::rc::Rc;
use std::sync::Once;

use promql_parser::parser::function::{register_extra_functions, Function};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr};
use skopos_model::{is_valid_label_name, Labels, LabelsBuilder, Sample, METRIC_NAME};

use crate::aggregate::quantile;
use crate::eval::{check_dups, drop_name, exec_err, Elem, Evaluator, Result, Val};

/// Registers `holt_winters` with the parser (it knows only the 3.x name).
pub(crate) fn register_extra() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

/// Refuses what the parser knows but Prometheus 2.x does not: newer
/// functions, `limitk`/`limit_ratio`, `fill` modifiers.
pub(crate) fn check_supported(e: &Expr) -> std::result::Result<(), String> {
    use promql_parser::parser::token::{T_LIMITK, T_LIMIT_RATIO};
    match e {
        Expr::Call(c) => {
            if crate::syntax::signature(c.func.name).is_none() {
                return Err(format!("unknown function with name {:?}", c.func.name));
            }
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Aggregate(a) => {
            if matches!(a.op.id(), T_LIMITK | T_LIMIT_RATIO) {
                return Err(format!("unknown aggregation {}", a.op));
            }
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err("fill modifiers are not supported".into());
                }
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::Extension(_) => Err("extension expressions are not supported".into()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
    }
}

/// `{a="1" or a="2"}` is newer than Prometheus 2.x, which refuses it.
fn check_selector(vs: &promql_parser::parser::VectorSelector) -> std::result::Result<(), String> {
    if vs.matchers.or_matchers.is_empty() {
        Ok(())
    } else {
        Err("unexpected identifier \"or\" in label matching, expected \",\" or \"}\"".into())
    }
}

/// What a range function sees besides the samples.
pub(crate) struct Window {
    /// Evaluation time.
    pub ts: i64,
    /// End of the window (evaluation time minus offset, or the `@` time).
    pub end: i64,
    pub range_ms: i64,
    /// Scalar arguments, in order, without the range argument.
    pub scalars: Vec<f64>,
}

pub(crate) type RangeFn = fn(&[Sample], &Window) -> Result<Option<f64>>;

pub(crate) fn range_fn(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |s, w| Ok(extrapolated_rate(s, w, true, true)),
        "increase" => |s, w| Ok(extrapolated_rate(s, w, true, false)),
        "delta" => |s, w| Ok(extrapolated_rate(s, w, false, false)),
        "irate" => |s, _| Ok(instant_value(s, true)),
        "idelta" => |s, _| Ok(instant_value(s, false)),
        "deriv" => |s, _| Ok((s.len() >= 2).then(|| linear_regression(s, s[0].t).0)),
        "predict_linear" => |s, w| {
            if s.len() < 2 {
                return Ok(None);
            }
            let (slope, intercept) = linear_regression(s, w.ts);
            Ok(Some(slope * w.scalars[0] + intercept))
        },
        "changes" => |s, _| {
            let mut n = 0.0;
            for p in s.windows(2) {
                let (prev, cur) = (p[0].v, p[1].v);
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    n += 1.0;
                }
            }
            Ok(Some(n))
        },
        "resets" => |s, _| Ok(Some(s.windows(2).filter(|p| p[1].v < p[0].v).count() as f64)),
        "holt_winters" => holt_winters,
        "avg_over_time" => |s, _| {
            let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
            for p in s {
                count += 1.0;
                if mean.is_infinite() {
                    if p.v.is_infinite() && (mean > 0.0) == (p.v > 0.0) {
                        continue;
                    }
                    if !p.v.is_infinite() && !p.v.is_nan() {
                        continue;
                    }
                }
                (mean, c) = kahan_inc(p.v / count - mean / count, mean, c);
            }
            Ok(Some(if mean.is_infinite() { mean } else { mean + c }))
        },
        "count_over_time" => |s, _| Ok(Some(s.len() as f64)),
        "sum_over_time" => |s, _| {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in s {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            Ok(Some(if sum.is_infinite() { sum } else { sum + c }))
        },
        "max_over_time" => |s, _| {
            let mut m = s[0].v;
            for p in s {
                if p.v > m || m.is_nan() {
                    m = p.v;
                }
            }
            Ok(Some(m))
        },
        "min_over_time" => |s, _| {
            let mut m = s[0].v;
            for p in s {
                if p.v < m || m.is_nan() {
                    m = p.v;
                }
            }
            Ok(Some(m))
        },
        "last_over_time" => |s, _| Ok(Some(s[s.len() - 1].v)),
        "present_over_time" => |_, _| Ok(Some(1.0)),
        "quantile_over_time" => |s, w| {
            let mut vals: Vec<f64> = s.iter().map(|p| p.v).collect();
            Ok(Some(quantile(w.scalars[0], &mut vals)))
        },
        "stddev_over_time" => |s, _| Ok(Some(variance(s).sqrt())),
        "stdvar_over_time" => |s, _| Ok(Some(variance(s))),
        _ => return None,
    })
}

/// Online variance (Welford), Kahan-compensated as Prometheus' stddev/stdvar_over_time.
fn variance(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// One step of Kahan-Neumaier summation, as Prometheus 2.x `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// rate, increase and delta: the change over the window, extrapolated to the
/// window boundaries as Prometheus does (but never past a counter's zero point).
fn extrapolated_rate(s: &[Sample], w: &Window, is_counter: bool, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let range_start = w.end.saturating_sub(w.range_ms);
    let range_end = w.end;
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = first.v;
        for p in &s[1..] {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    let mut duration_to_start = first.t.saturating_sub(range_start) as f64 / 1000.0;
    let duration_to_end = range_end.saturating_sub(last.t) as f64 / 1000.0;
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_between = sampled_interval / (s.len() - 1) as f64;
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let duration_to_zero = sampled_interval * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    if duration_to_start < threshold {
        extrapolate_to += duration_to_start;
    } else {
        extrapolate_to += average_between / 2.0;
    }
    if duration_to_end < threshold {
        extrapolate_to += duration_to_end;
    } else {
        extrapolate_to += average_between / 2.0;
    }
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= w.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// irate and idelta: from the last two samples.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let last = s[s.len() - 1];
    let prev = s[s.len() - 2];
    let mut result = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares fit; x is seconds relative to `intercept_time`.
fn linear_regression(s: &[Sample], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = p.t.saturating_sub(intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(p.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * p.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn holt_winters(s: &[Sample], w: &Window) -> Result<Option<f64>> {
    let (sf, tf) = (w.scalars[0], w.scalars[1]);
    if sf <= 0.0 || sf >= 1.0 {
        return Err(exec_err(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(exec_err(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    if s.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

/// Labels of `absent()`'s output: the equality matchers of a plain selector
/// (a label matched twice is left out).
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unwrap(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = LabelsBuilder::new();
    let mut has = std::collections::HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            b.set(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            b.delete(&m.name);
        }
    }
    b.build()
}

fn unwrap(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn string_arg(e: &Expr) -> Result<String> {
    match unwrap(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(exec_err("expected a string literal argument")),
    }
}

/// Go's `math.Max`.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            b
        } else {
            a
        }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            a
        } else {
            b
        }
    } else if a < b {
        a
    } else {
        b
    }
}

fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || x.is_nan() || x.is_infinite() {
        return (x, 0);
    }
    let (mut x, mut e) = (x, 0i32);
    if x.abs() < f64::MIN_POSITIVE {
        x *= (1u64 << 52) as f64;
        e = -52;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i32 - 1022;
    let bits = (bits & !(0x7ffu64 << 52)) | (1022u64 << 52);
    (f64::from_bits(bits), e)
}

/// Go's `math.Log2`: exact for powers of two.
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    frac.ln() * std::f64::consts::LOG2_E + exp as f64
}

/// Go's `math.Log10`.
fn go_log10(x: f64) -> f64 {
    go_log2(x) * std::f64::consts::LOG10_2
}

pub(crate) fn simple_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => go_log2,
        "log10" => go_log10,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

fn date_fn(name: &str, v: f64) -> f64 {
    // -2^63 <= v < 2^63: the floats Go converts to int64 faithfully.
    if !(v >= i64::MIN as f64 && v < -(i64::MIN as f64)) {
        // Go's int64(v) of NaN or an out-of-range float is the "integer
        // indefinite" MinInt64 on amd64, and time.Unix of that lands on this
        // date (year 292277026596, December 4th, a Sunday, 15:30 UTC).
        return match name {
            "day_of_month" => 4.0,
            "day_of_week" => 0.0,
            "day_of_year" => 339.0,
            "days_in_month" => 31.0,
            "hour" => 15.0,
            "minute" => 30.0,
            "month" => 12.0,
            "year" => 292_277_026_596.0,
            _ => f64::NAN,
        };
    }
    let c = skopos_units::civil_from_unix(v as i64);
    match name {
        "day_of_month" => f64::from(c.day),
        "day_of_week" => f64::from(c.weekday),
        "day_of_year" => f64::from(c.day_of_year),
        "days_in_month" => f64::from(c.days_in_month),
        "hour" => f64::from(c.hour),
        "minute" => f64::from(c.minute),
        "month" => f64::from(c.month),
        "year" => c.year as f64,
        _ => f64::NAN,
    }
}

fn map_drop(ev: &Evaluator, v: Vec<Elem>, f: impl Fn(f64) -> f64) -> Result<Val> {
    let out: Vec<Elem> = v
        .into_iter()
        .map(|e| Elem {
            labels: ev.drop_name_cached(&e.labels),
            v: f(e.v),
        })
        .collect();
    check_dups(&out)?;
    Ok(Val::Vector(out))
}

pub(crate) fn call(ev: &Evaluator, c: &Call, ts: i64) -> Result<Val> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| unwrap(a)).collect();
    if let Some(f) = range_fn(name) {
        return over_time(ev, name, f, &args, ts);
    }
    if let Some(f) = simple_fn(name) {
        return map_drop(ev, ev.eval_vector(args[0], ts)?, f);
    }
    match name {
        "absent_over_time" => {
            let (series, _, _) = ev.eval_range(args[0], ts)?;
            Ok(absent(series.is_empty(), args[0]))
        }
        "absent" => Ok(absent(ev.eval_vector(args[0], ts)?.is_empty(), args[0])),
        "round" | "clamp" | "clamp_max" | "clamp_min" => clamp_or_round(ev, name, &args, ts),
        "timestamp" => timestamp(ev, args[0], ts),
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let v = match args.first() {
                Some(a) => ev.eval_vector(a, ts)?,
                None => vec![Elem {
                    labels: Rc::new(Labels::empty()),
                    v: ts as f64 / 1000.0,
                }],
            };
            map_drop(ev, v, |x| date_fn(name, x))
        }
        "time" => Ok(Val::Scalar(ts as f64 / 1000.0)),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "vector" => Ok(Val::Vector(vec![Elem {
            labels: Rc::new(Labels::empty()),
            v: ev.eval_scalar(args[0], ts)?,
        }])),
        "scalar" => {
            let v = ev.eval_vector(args[0], ts)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "sort" | "sort_desc" => Ok(Val::Vector(sorted(
            ev.eval_vector(args[0], ts)?,
            name == "sort_desc",
        ))),
        // Native-histogram functions of Prometheus 2.40+: float samples are
        // ignored, and the model holds no native histograms.
        "histogram_count" | "histogram_sum" | "histogram_fraction" => {
            for a in &args {
                ev.eval(a, ts)?;
            }
            Ok(Val::Vector(Vec::new()))
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(args[0], ts)?;
            let v = ev.eval_vector(args[1], ts)?;
            histogram_quantile(q, v)
        }
        "label_replace" => label_replace(ev, &args, ts),
        "label_join" => label_join(ev, &args, ts),
        other => Err(exec_err(format!("function {other}() is not supported"))),
    }
}

/// The `*_over_time` family, `rate` and the other functions of a range:
/// `f` applied to each series' window.
fn over_time(ev: &Evaluator, name: &str, f: RangeFn, args: &[&Expr], ts: i64) -> Result<Val> {
    let idx = if name == "quantile_over_time" { 1 } else { 0 };
    let mut scalars = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != idx {
            scalars.push(ev.eval_scalar(a, ts)?);
        }
    }
    let keep_name = name == "last_over_time";
    let mut out = Vec::new();
    let mut apply = |labels: &Rc<Labels>, samples: &[Sample], w: &Window| -> Result<()> {
        if let Some(v) = f(samples, w)? {
            let labels = if keep_name {
                labels.clone()
            } else {
                ev.drop_name_cached(labels)
            };
            out.push(Elem { labels, v });
        }
        Ok(())
    };
    let mut w = Window {
        ts,
        end: 0,
        range_ms: 0,
        scalars,
    };
    if let Expr::MatrixSelector(ms) = args[idx] {
        // The common case: windows straight out of the loaded series.
        (w.end, w.range_ms) = ev.window_bounds(ms, ts);
        ev.each_window(ms, ts, |labels, samples| apply(labels, samples, &w))?;
    } else {
        let (series, end, range_ms) = ev.eval_range(args[idx], ts)?;
        (w.end, w.range_ms) = (end, range_ms);
        for s in &series {
            apply(&s.labels, &s.samples, &w)?;
        }
    }
    check_dups(&out)?;
    Ok(Val::Vector(out))
}

/// `absent` and `absent_over_time`: one sample, labelled from the
/// selector's equality matchers, when the argument had nothing.
fn absent(empty: bool, arg: &Expr) -> Val {
    Val::Vector(if empty {
        vec![Elem {
            labels: Rc::new(absent_labels(arg)),
            v: 1.0,
        }]
    } else {
        Vec::new()
    })
}

fn clamp_or_round(ev: &Evaluator, name: &str, args: &[&Expr], ts: i64) -> Result<Val> {
    let v = ev.eval_vector(args[0], ts)?;
    match name {
        "round" => {
            let to = match args.get(1) {
                Some(a) => ev.eval_scalar(a, ts)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            map_drop(ev, v, |x| (x * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let min = ev.eval_scalar(args[1], ts)?;
            let max = ev.eval_scalar(args[2], ts)?;
            if max < min {
                return Ok(Val::Vector(Vec::new()));
            }
            map_drop(ev, v, |x| go_max(min, go_min(max, x)))
        }
        "clamp_max" => {
            let max = ev.eval_scalar(args[1], ts)?;
            map_drop(ev, v, |x| go_min(max, x))
        }
        _ => {
            let min = ev.eval_scalar(args[1], ts)?;
            map_drop(ev, v, |x| go_max(min, x))
        }
    }
}

/// `timestamp(v)`: the samples' own times for a plain selector, the
/// evaluation time otherwise.
fn timestamp(ev: &Evaluator, arg: &Expr, ts: i64) -> Result<Val> {
    if let Expr::VectorSelector(vs) = arg {
        let out: Vec<Elem> = ev
            .select_instant(vs, ts)?
            .into_iter()
            .map(|(labels, t, _)| Elem {
                labels: drop_name(&labels),
                v: t as f64 / 1000.0,
            })
            .collect();
        check_dups(&out)?;
        return Ok(Val::Vector(out));
    }
    let t = ts as f64 / 1000.0;
    map_drop(ev, ev.eval_vector(arg, ts)?, |_| t)
}

/// `sort` / `sort_desc`; NaN sorts last either way.
fn sorted(mut v: Vec<Elem>, desc: bool) -> Vec<Elem> {
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if desc => b.v.partial_cmp(&a.v).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal),
    });
    v
}

fn label_replace(ev: &Evaluator, args: &[&Expr], ts: i64) -> Result<Val> {
    let v = ev.eval_vector(args[0], ts)?;
    let dst = string_arg(args[1])?;
    let repl = string_arg(args[2])?;
    let src = string_arg(args[3])?;
    let re_str = string_arg(args[4])?;
    let re = ev.regex(&re_str).map_err(|_| {
        exec_err(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(exec_err(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let src_val = e.labels.get(&src).unwrap_or("");
        let labels = match re.captures(src_val) {
            None => e.labels,
            Some(caps) => {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                let mut b = e.labels.builder();
                b.set(dst.clone(), res);
                Rc::new(b.build())
            }
        };
        out.push(Elem { labels, v: e.v });
    }
    check_dups(&out)?;
    Ok(Val::Vector(out))
}

fn label_join(ev: &Evaluator, args: &[&Expr], ts: i64) -> Result<Val> {
    let v = ev.eval_vector(args[0], ts)?;
    let dst = string_arg(args[1])?;
    let sep = string_arg(args[2])?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        let s = string_arg(a)?;
        if !is_valid_label_name(&s) {
            return Err(exec_err(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !is_valid_label_name(&dst) {
        return Err(exec_err(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let joined = srcs
            .iter()
            .map(|s| e.labels.get(s).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        let mut b = e.labels.builder();
        b.set(dst.clone(), joined);
        out.push(Elem {
            labels: Rc::new(b.build()),
            v: e.v,
        });
    }
    check_dups(&out)?;
    Ok(Val::Vector(out))
}

/// Per histogram: the output labels and the (upper bound, count) buckets.
type Histograms = std::collections::HashMap<Labels, (Rc<Labels>, Vec<(f64, f64)>)>;

fn histogram_quantile(q: f64, v: Vec<Elem>) -> Result<Val> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups = Histograms::new();
    for e in v {
        let Some(le) = e.labels.get("le") else {
            continue;
        };
        let Ok(upper) = parse_go_float(le) else {
            continue;
        };
        let mut b = e.labels.builder();
        b.delete("le");
        let sig = b.build();
        let entry = groups.entry(sig.clone()).or_insert_with(|| {
            order.push(sig.clone());
            (drop_name(&Rc::new(sig.clone())), Vec::new())
        });
        entry.1.push((upper, e.v));
    }
    let mut out = Vec::new();
    for sig in order {
        let (labels, buckets) = groups.remove(&sig).expect("group");
        out.push(Elem {
            labels,
            v: bucket_quantile(q, buckets),
        });
    }
    check_dups(&out)?;
    Ok(Val::Vector(out))
}

fn parse_go_float(s: &str) -> std::result::Result<f64, ()> {
    let t = s.trim_start_matches('+');
    match t.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => {
            return Ok(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "-inf" | "-infinity" => return Ok(f64::NEG_INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    t.parse::<f64>().map_err(|_| ())
}

/// Quantile from cumulative buckets (upper bound, count), with linear
/// interpolation inside the bucket, as Prometheus' `bucketQuantile`.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets[buckets.len() - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    // Coalesce buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    // Force monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = merged[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut bucket_start = 0.0;
    let bucket_end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        bucket_start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}
