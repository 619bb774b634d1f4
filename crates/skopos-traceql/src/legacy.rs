//! Tempo's pre-TraceQL search parameters (`tags`, `minDuration`,
//! `maxDuration`), which `/api/search` still takes, turned into a TraceQL
//! query so there is one search path.
//!
//! `tags` is logfmt: `service.name=api http.status_code=500
//! db.statement="select 1"`. Each tag must hold somewhere in the trace
//! (one spanset per tag, joined with `&&`), as Tempo's tag search matched
//! traces. The well-known keys map to intrinsics: `service.name` to
//! `resource.service.name`, `name` to the span name, `status.code` and
//! `error=true` to `status`. Other keys are unscoped attributes; a value
//! that reads as a number or boolean also matches that type
//! (`(.k = 500 || .k = "500")`), because the text form does not say which
//! type the instrumentation used. `minDuration`/`maxDuration` bound the
//! trace's duration (`traceDuration`), as Grafana's search form describes
//! them.

use crate::ast::{AttrRef, AttrScope, BinOp, FieldExpr, Intrinsic, Query, SpansetOp, Static};
use crate::lexer::{lex, Tok};
use crate::QueryError;
use skopos_model::StatusCode;

/// The TraceQL query equivalent to Tempo's legacy search parameters
/// (`{ }` when all are empty), in canonical form.
pub fn legacy_query(
    tags: Option<&str>,
    min_duration: Option<&str>,
    max_duration: Option<&str>,
) -> Result<String, QueryError> {
    let mut conds: Vec<FieldExpr> = Vec::new();
    if let Some(tags) = tags {
        for (k, v) in parse_logfmt(tags)? {
            conds.push(tag_condition(&k, v.as_deref())?);
        }
    }
    // Trace-duration bounds hold for every span of a trace alike: joined
    // into each tag's filter they keep the matched spans those of the tags.
    let mut bounds: Option<FieldExpr> = None;
    for (param, value, op) in [
        ("minDuration", min_duration, BinOp::Gte),
        ("maxDuration", max_duration, BinOp::Lte),
    ] {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        let ns = parse_duration(value)
            .map_err(|e| QueryError::BadRequest(format!("invalid {param} {value:?}: {e}")))?;
        let c = bin(
            op,
            FieldExpr::Intrinsic(Intrinsic::TraceDuration),
            FieldExpr::Static(Static::Duration(ns)),
        );
        bounds = Some(match bounds {
            None => c,
            Some(b) => bin(BinOp::And, b, c),
        });
    }
    if let Some(b) = bounds {
        if conds.is_empty() {
            conds.push(b);
        } else {
            conds = conds
                .into_iter()
                .map(|c| bin(BinOp::And, c, b.clone()))
                .collect();
        }
    }
    let mut q: Option<Query> = None;
    for c in conds {
        let f = Query::Filter(Some(c));
        q = Some(match q {
            None => f,
            Some(prev) => Query::Binary {
                op: SpansetOp::And,
                lhs: Box::new(prev),
                rhs: Box::new(f),
            },
        });
    }
    parses(q.unwrap_or(Query::Filter(None)).to_string())
}

/// The built query, if the parser takes it: enough tags make more
/// operators than [`crate::MAX_OPERATORS`], and the client should hear that
/// about its parameters, not about a query it never wrote (found by
/// fuzzing).
fn parses(text: String) -> Result<String, QueryError> {
    match crate::parse(&text) {
        Ok(_) => Ok(text),
        Err(e) => Err(QueryError::BadRequest(format!(
            "the search parameters make a query too large to run ({}); send fewer tags",
            e.to_string()
                .rsplit(": ")
                .next()
                .unwrap_or("refused by the parser")
        ))),
    }
}

/// The TraceQL query for a Jaeger `/api/traces` search: one span of
/// `service` named `operation` carrying every tag (span or resource
/// attribute, compared as [`legacy_query`] compares tags) and lasting
/// between `min_duration` and `max_duration` — Jaeger matches all of them
/// on the same span.
pub fn jaeger_query(
    service: Option<&str>,
    operation: Option<&str>,
    tags: &[(String, String)],
    min_duration: Option<&str>,
    max_duration: Option<&str>,
) -> Result<String, QueryError> {
    let mut conds: Vec<FieldExpr> = Vec::new();
    if let Some(s) = nonempty(service) {
        conds.push(bin(
            BinOp::Eq,
            FieldExpr::Attr(AttrRef {
                scope: AttrScope::Resource,
                name: "service.name".into(),
            }),
            FieldExpr::Static(Static::Str(s.to_string())),
        ));
    }
    if let Some(op) = nonempty(operation) {
        conds.push(bin(
            BinOp::Eq,
            FieldExpr::Intrinsic(Intrinsic::Name),
            FieldExpr::Static(Static::Str(op.to_string())),
        ));
    }
    for (k, v) in tags {
        conds.push(tag_condition(k, Some(v))?);
    }
    for (param, value, op) in [
        ("minDuration", min_duration, BinOp::Gte),
        ("maxDuration", max_duration, BinOp::Lte),
    ] {
        let Some(value) = nonempty(value) else {
            continue;
        };
        let ns = parse_duration(value)
            .map_err(|e| QueryError::BadRequest(format!("invalid {param} {value:?}: {e}")))?;
        conds.push(bin(
            op,
            FieldExpr::Intrinsic(Intrinsic::Duration),
            FieldExpr::Static(Static::Duration(ns)),
        ));
    }
    let e = conds.into_iter().reduce(|a, b| bin(BinOp::And, a, b));
    parses(Query::Filter(e).to_string())
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// A Go duration (`100ms`, `1.5s`, `1h30m`; `0` alone is allowed).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let toks = lex(s.trim()).map_err(|e| e.message)?;
    match toks.as_slice() {
        [t, end] if end.tok == Tok::Eof => match t.tok {
            Tok::Duration(d) => Ok(d),
            Tok::Int(0) => Ok(0),
            Tok::Int(_) | Tok::Float(_) => Err("missing unit (ns, us, ms, s, m or h)".into()),
            _ => Err("expected a duration such as 100ms or 1.5s".into()),
        },
        _ => Err("expected a duration such as 100ms or 1.5s".into()),
    }
}

fn bin(op: BinOp, lhs: FieldExpr, rhs: FieldExpr) -> FieldExpr {
    FieldExpr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    }
}

fn unscoped(k: &str) -> FieldExpr {
    FieldExpr::Attr(AttrRef {
        scope: AttrScope::Unscoped,
        name: k.to_string(),
    })
}

fn tag_condition(k: &str, v: Option<&str>) -> Result<FieldExpr, QueryError> {
    let Some(v) = v else {
        // A bare key: the attribute is present.
        return Ok(bin(BinOp::Neq, unscoped(k), FieldExpr::Static(Static::Nil)));
    };
    let string = |e: FieldExpr| bin(BinOp::Eq, e, FieldExpr::Static(Static::Str(v.to_string())));
    Ok(match k {
        "service.name" => string(FieldExpr::Attr(AttrRef {
            scope: AttrScope::Resource,
            name: k.to_string(),
        })),
        "name" => string(FieldExpr::Intrinsic(Intrinsic::Name)),
        "status.code" | "status" => {
            let code = match v.to_ascii_lowercase().as_str() {
                "error" | "2" | "status_code_error" => StatusCode::Error,
                "ok" | "1" | "status_code_ok" => StatusCode::Ok,
                "unset" | "0" | "status_code_unset" => StatusCode::Unset,
                _ => {
                    return Err(QueryError::BadRequest(format!(
                        "invalid tag {k}={v:?}: expected error, ok or unset"
                    )))
                }
            };
            bin(
                BinOp::Eq,
                FieldExpr::Intrinsic(Intrinsic::Status),
                FieldExpr::Static(Static::Status(code)),
            )
        }
        "error" if v == "true" => bin(
            BinOp::Eq,
            FieldExpr::Intrinsic(Intrinsic::Status),
            FieldExpr::Static(Static::Status(StatusCode::Error)),
        ),
        _ => {
            let typed = if let Ok(i) = v.parse::<i64>() {
                Some(Static::Int(i))
            } else if let Some(f) = v.parse::<f64>().ok().filter(|f| f.is_finite()) {
                Some(Static::Float(f))
            } else if v == "true" || v == "false" {
                Some(Static::Bool(v == "true"))
            } else {
                None
            };
            let as_string = string(unscoped(k));
            match typed {
                Some(t) => bin(
                    BinOp::Or,
                    bin(BinOp::Eq, unscoped(k), FieldExpr::Static(t)),
                    as_string,
                ),
                None => as_string,
            }
        }
    })
}

/// `key=value` pairs of logfmt; values may be double-quoted with `\`
/// escapes; a key without `=` has no value.
pub fn parse_logfmt(s: &str) -> Result<Vec<(String, Option<String>)>, QueryError> {
    let bad = |msg: String| QueryError::BadRequest(format!("invalid tags {s:?}: {msg}"));
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            if c == '"' {
                return Err(bad(format!("unexpected quote in key {key:?}")));
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            out.push((key, None));
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(bad(format!("unterminated quoted value of {key}"))),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(c) => value.push(c),
                        None => return Err(bad(format!("unterminated quoted value of {key}"))),
                    },
                    Some(c) => value.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(bad(format!("expected a space after the value of {key}")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if key.is_empty() {
            return Err(bad("a tag has an empty key".into()));
        }
        out.push((key, Some(value)));
    }
}
