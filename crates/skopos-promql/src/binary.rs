//! Binary operators: scalar and vector arithmetic, comparisons, set
//! operators and vector matching (`on`/`ignoring`, `group_left`/`group_right`).

use std::rc::Rc;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use skopos_model::{Labels, METRIC_NAME};

use crate::eval::{drop_name, exec_err, Elem, Result};
use crate::fxhash::{FxHashMap, FxHashSet};

pub(crate) fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

pub(crate) fn drops_name(op: u16) -> bool {
    // Not atan2: Prometheus 2.x keeps the name there.
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW)
}

/// Applies `op` to two floats; for comparisons returns (lhs, whether true).
pub(crate) fn scalar_binop(op: u16, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

pub(crate) fn vector_scalar(
    op: u16,
    v: Vec<Elem>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Vec<Elem> {
    let mut out = Vec::with_capacity(v.len());
    for mut el in v {
        if let Some(value) = vector_scalar_value(op, el.v, s, swap, return_bool) {
            el.v = value;
            if drops_name(op) || return_bool {
                el.labels = drop_name(&el.labels);
            }
            out.push(el);
        }
    }
    out
}

/// `op` between an element's value `v` and the scalar `s` (`s op v` when
/// `swap`): the result, or `None` when a comparison filters the element out.
pub(crate) fn vector_scalar_value(
    op: u16,
    v: f64,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Option<f64> {
    let (lv, rv) = if swap { (s, v) } else { (v, s) };
    let (mut value, mut keep) = scalar_binop(op, lv, rv);
    if is_comparison(op) && swap {
        value = rv;
    }
    if return_bool {
        value = if keep { 1.0 } else { 0.0 };
        keep = true;
    }
    keep.then_some(value)
}

/// The match signature of a series: the `on` labels, or all labels but the
/// `ignoring` ones and the metric name.
pub(crate) fn signature(l: &Labels, on: bool, names: &[String]) -> String {
    let mut s = String::new();
    signature_into(&mut s, l, on, names);
    s
}

/// [`signature`] into a reused buffer.
pub(crate) fn signature_into(s: &mut String, l: &Labels, on: bool, names: &[String]) {
    s.clear();
    for lb in l.iter() {
        let incl = if on {
            names.iter().any(|n| n == &lb.name)
        } else {
            lb.name != METRIC_NAME && !names.iter().any(|n| n == &lb.name)
        };
        if incl {
            s.push_str(&lb.name);
            s.push('\u{ff}');
            s.push_str(&lb.value);
            s.push('\u{ff}');
        }
    }
}

/// Labels as Prometheus prints them in messages: `{__name__="a", b="c"}`.
fn prom_labels_string<'l>(labels: impl IntoIterator<Item = &'l skopos_model::Label>) -> String {
    let parts: Vec<String> = labels
        .into_iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn matched_labels_string(l: &Labels, on: bool, names: &[String]) -> String {
    prom_labels_string(l.iter().filter(|lb| {
        if on {
            names.iter().any(|n| n == &lb.name)
        } else {
            lb.name != METRIC_NAME && !names.iter().any(|n| n == &lb.name)
        }
    }))
}

pub(crate) fn vector_vector(
    op: u16,
    b: &BinaryExpr,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    return_bool: bool,
) -> Result<Vec<Elem>> {
    let (on, names): (bool, Vec<String>) =
        match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
    let card = b
        .modifier
        .as_ref()
        .map(|m| m.card.clone())
        .unwrap_or(VectorMatchCardinality::OneToOne);
    let sig = |l: &Labels| signature(l, on, &names);
    match op {
        T_LAND => {
            if lhs.is_empty() || rhs.is_empty() {
                return Ok(Vec::new());
            }
            let rs: FxHashSet<String> = rhs.iter().map(|e| sig(&e.labels)).collect();
            return Ok(lhs
                .into_iter()
                .filter(|e| rs.contains(&sig(&e.labels)))
                .collect());
        }
        T_LOR => {
            let ls: FxHashSet<String> = lhs.iter().map(|e| sig(&e.labels)).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|e| !ls.contains(&sig(&e.labels))));
            return Ok(out);
        }
        T_LUNLESS => {
            let rs: FxHashSet<String> = rhs.iter().map(|e| sig(&e.labels)).collect();
            return Ok(lhs
                .into_iter()
                .filter(|e| !rs.contains(&sig(&e.labels)))
                .collect());
        }
        _ => {}
    }
    let (include, one_to_many) = match &card {
        VectorMatchCardinality::ManyToOne(l) => (l.labels.clone(), false),
        VectorMatchCardinality::OneToMany(l) => (l.labels.clone(), true),
        _ => (Vec::new(), false),
    };
    let one_to_one = matches!(
        card,
        VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany
    );
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_sigs: FxHashMap<String, usize> = FxHashMap::default();
    for (i, e) in one.iter().enumerate() {
        let s = sig(&e.labels);
        if let Some(&j) = one_sigs.get(&s) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(exec_err(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                matched_labels_string(&e.labels, on, &names),
                side,
                prom_labels_string(e.labels.iter()),
                prom_labels_string(one[j].labels.iter())
            )));
        }
        one_sigs.insert(s, i);
    }
    let mut matched: FxHashMap<String, FxHashSet<Labels>> = FxHashMap::default();
    let mut out = Vec::new();
    for ls in &many {
        let s = sig(&ls.labels);
        let Some(&ri) = one_sigs.get(&s) else {
            continue;
        };
        let rs = &one[ri];
        let (vl, vr) = if one_to_many {
            (rs.v, ls.v)
        } else {
            (ls.v, rs.v)
        };
        let (mut value, keep) = scalar_binop(op, vl, vr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        // Result labels: from the "many" side, reduced for one-to-one matching,
        // plus the group_x labels taken from the "one" side.
        let mut lb = ls.labels.builder();
        if drops_name(op) || return_bool {
            lb.delete(METRIC_NAME);
        }
        if one_to_one {
            if on {
                lb.retain(|l| names.iter().any(|n| n == &l.name));
            } else {
                lb.retain(|l| !names.iter().any(|n| n == &l.name));
            }
        }
        for n in &include {
            match rs.labels.get(n) {
                Some(v) => {
                    lb.set(n.clone(), v.to_string());
                }
                None => {
                    lb.delete(n);
                }
            }
        }
        let metric = lb.build();
        match matched.get_mut(&s) {
            Some(set) => {
                if one_to_one {
                    return Err(exec_err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"));
                }
                if !set.insert(metric.clone()) {
                    return Err(exec_err(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
            }
            None => {
                let mut set = FxHashSet::default();
                set.insert(metric.clone());
                matched.insert(s, set);
            }
        }
        out.push(Elem {
            labels: Rc::new(metric),
            v: value,
        });
    }
    Ok(out)
}
