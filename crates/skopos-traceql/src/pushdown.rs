//! What a query lets the store narrow: [`TraceSelect`] hints every matching
//! trace is sure to satisfy.
//!
//! A hint is only derived where it is implied: the conditions of a filter
//! joined by `&&` each hold on some span of a matching trace; under `||`
//! only what both sides imply survives; nothing is derived under `!`, from
//! `!=`, regexes, ordering on strings, or numbers compared for equality
//! (whose text forms may differ: `500` and `500.0`). The right-hand side of
//! a negated structural operator (`!>`) is required, its left is not.

use skopos_model::{SpanField, TraceSelect, UNKNOWN_SERVICE};

use crate::ast::{AttrScope, BinOp, FieldExpr, Intrinsic, Query, SpansetOp, Stage, Static};

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Hints {
    pub equals: Vec<(SpanField, String)>,
    pub min_span_duration_ns: Option<i64>,
}

impl Hints {
    fn both(mut self, other: Hints) -> Hints {
        for c in other.equals {
            if !self.equals.contains(&c) {
                self.equals.push(c);
            }
        }
        self.min_span_duration_ns = match (self.min_span_duration_ns, other.min_span_duration_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self
    }

    fn either(self, other: Hints) -> Hints {
        Hints {
            equals: self
                .equals
                .into_iter()
                .filter(|c| other.equals.contains(c))
                .collect(),
            min_span_duration_ns: match (self.min_span_duration_ns, other.min_span_duration_ns) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            },
        }
    }
}

/// The select for `q` over `[start, end)`.
pub(crate) fn select_for(q: &Query, start: i64, end: i64) -> TraceSelect {
    let h = query_hints(q);
    TraceSelect {
        start,
        end,
        equals: h.equals,
        min_span_duration_ns: h.min_span_duration_ns,
    }
}

pub(crate) fn query_hints(q: &Query) -> Hints {
    match q {
        Query::Filter(None) => Hints::default(),
        Query::Filter(Some(e)) => field_hints(e),
        Query::Binary { op, lhs, rhs } => match op {
            SpansetOp::Or => query_hints(lhs).either(query_hints(rhs)),
            SpansetOp::And
            | SpansetOp::Child
            | SpansetOp::Descendant
            | SpansetOp::Parent
            | SpansetOp::Ancestor
            | SpansetOp::Sibling => query_hints(lhs).both(query_hints(rhs)),
            SpansetOp::NotChild
            | SpansetOp::NotDescendant
            | SpansetOp::NotParent
            | SpansetOp::NotAncestor
            | SpansetOp::NotSibling => query_hints(rhs),
        },
        Query::Pipe { input, stage } => {
            let h = query_hints(input);
            match stage {
                Stage::Filter(Some(e)) => h.both(field_hints(e)),
                _ => h,
            }
        }
    }
}

fn field_hints(e: &FieldExpr) -> Hints {
    let FieldExpr::Binary { op, lhs, rhs } = e else {
        return Hints::default();
    };
    match op {
        BinOp::And => field_hints(lhs).both(field_hints(rhs)),
        BinOp::Or => field_hints(lhs).either(field_hints(rhs)),
        op if op.is_comparison() => {
            // Put the literal on the right.
            let (op, field, lit) = match (lhs.as_ref(), rhs.as_ref()) {
                (f, FieldExpr::Static(s)) if !matches!(f, FieldExpr::Static(_)) => (*op, f, s),
                (FieldExpr::Static(s), f) if !matches!(f, FieldExpr::Static(_)) => {
                    (op.flipped(), f, s)
                }
                _ => return Hints::default(),
            };
            comparison_hint(op, field, lit)
        }
        _ => Hints::default(),
    }
}

fn comparison_hint(op: BinOp, field: &FieldExpr, lit: &Static) -> Hints {
    let mut h = Hints::default();
    match (op, field, lit) {
        (BinOp::Eq, FieldExpr::Intrinsic(i), Static::Str(v)) => {
            let f = match i {
                Intrinsic::Name | Intrinsic::RootName => SpanField::Name,
                Intrinsic::RootServiceName => SpanField::ServiceName,
                _ => return h,
            };
            push_equal(&mut h, f, v);
        }
        (BinOp::Eq, FieldExpr::Attr(a), Static::Str(v)) => {
            let f = match a.scope {
                AttrScope::Span => SpanField::SpanAttr(a.name.clone()),
                AttrScope::Resource if a.name == "service.name" => SpanField::ServiceName,
                AttrScope::Resource => SpanField::ResourceAttr(a.name.clone()),
                AttrScope::Unscoped => SpanField::AnyAttr(a.name.clone()),
            };
            push_equal(&mut h, f, v);
        }
        (BinOp::Eq, FieldExpr::Intrinsic(Intrinsic::Status), Static::Status(s)) => {
            h.equals.push((SpanField::Status, s.name().to_string()));
        }
        (BinOp::Eq, FieldExpr::Intrinsic(Intrinsic::Kind), Static::Kind(k)) => {
            h.equals.push((SpanField::Kind, k.name().to_string()));
        }
        (BinOp::Gt | BinOp::Gte, FieldExpr::Intrinsic(Intrinsic::Duration), lit) => {
            let ns = match lit {
                Static::Duration(d) | Static::Int(d) => Some(*d),
                Static::Float(f) if f.is_finite() => Some(f.floor() as i64),
                _ => None,
            };
            if let Some(ns) = ns.filter(|&ns| ns > 0) {
                h.min_span_duration_ns = Some(ns);
            }
        }
        _ => {}
    }
    h
}

fn push_equal(h: &mut Hints, f: SpanField, v: &str) {
    // A store may or may not treat a missing `service.name` as the default
    // name, or index empty values: leave those to the re-check.
    if v.is_empty() || (f == SpanField::ServiceName && v == UNKNOWN_SERVICE) {
        return;
    }
    h.equals.push((f, v.to_string()));
}
