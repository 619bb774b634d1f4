//! Recursive-descent parser from tokens to [`crate::ast::Query`], with the
//! static checks Tempo makes (operand types, regex syntax).
//!
//! Precedence, loosest first. Between spansets: `|` stages and any spanset
//! operator after one apply to everything to their left; then `||`, `&&`,
//! then the structural operators (`>`, `>>`, `<`, `<<`, `~` and their `!`
//! forms), all left-associative. Inside a filter: `||`, `&&`, comparisons
//! (not chainable), `+ -`, `* / %`, prefix `!` and `-`.

use std::fmt;

use skopos_model::{SpanKind, StatusCode};

use crate::ast::{
    Aggregate, BinOp, FieldExpr, Intrinsic, Query, SpansetOp, Stage, Static, ValueType,
};
use crate::lexer::{lex, Tok, Token};

/// A malformed query: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the query.
    pub offset: usize,
    /// 1-based line and column (in characters).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(src: &str, offset: usize, message: String) -> ParseError {
        let offset = offset.min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = src[line_start..offset].chars().count() + 1;
        ParseError {
            offset,
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parse error at line {}, col {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses a TraceQL query.
pub fn parse(src: &str) -> Result<Query, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        ops: 0,
        depth: 0,
    };
    if p.peek() == &Tok::Eof {
        return Err(p.err_here("empty query: expected a spanset such as `{ }`"));
    }
    let q = p.query()?;
    if p.peek() != &Tok::Eof {
        return Err(p.expected("a spanset operator, `|` or the end of the query"));
    }
    Ok(q)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    /// Operators so far and open parentheses: both bounded, so that no
    /// query can make the recursive parser, printer or evaluator overflow
    /// the stack.
    ops: usize,
    depth: usize,
}

/// Most operators (binary, unary, stages) in one query.
pub const MAX_OPERATORS: usize = 256;
/// Deepest nesting of parentheses and prefix operators.
pub const MAX_NESTING: usize = 64;

fn spanset_op(t: &Tok) -> Option<(SpansetOp, u8)> {
    Some(match t {
        Tok::OrOr => (SpansetOp::Or, 1),
        Tok::AndAnd => (SpansetOp::And, 2),
        Tok::Gt => (SpansetOp::Child, 3),
        Tok::Desc => (SpansetOp::Descendant, 3),
        Tok::Lt => (SpansetOp::Parent, 3),
        Tok::Anc => (SpansetOp::Ancestor, 3),
        Tok::Tilde => (SpansetOp::Sibling, 3),
        Tok::NotChild => (SpansetOp::NotChild, 3),
        Tok::NotDesc => (SpansetOp::NotDescendant, 3),
        Tok::NotParent => (SpansetOp::NotParent, 3),
        Tok::NotAnc => (SpansetOp::NotAncestor, 3),
        Tok::NotRe => (SpansetOp::NotSibling, 3),
        _ => return None,
    })
}

fn comparison_op(t: &Tok) -> Option<BinOp> {
    Some(match t {
        Tok::Eq => BinOp::Eq,
        Tok::Neq => BinOp::Neq,
        Tok::Gt => BinOp::Gt,
        Tok::Gte => BinOp::Gte,
        Tok::Lt => BinOp::Lt,
        Tok::Lte => BinOp::Lte,
        Tok::Re => BinOp::Re,
        Tok::NotRe => BinOp::NotRe,
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.i].tok.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn err_here(&self, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, self.pos(), msg.into())
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, pos, msg.into())
    }

    fn expected(&self, what: &str) -> ParseError {
        self.err_here(format!("expected {what}, found {}", self.peek().describe()))
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == &t {
            self.next();
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// Counts one more operator.
    fn op(&mut self) -> Result<(), ParseError> {
        self.ops += 1;
        if self.ops > MAX_OPERATORS {
            return Err(self.err_here(format!("query has more than {MAX_OPERATORS} operators")));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.err_here(format!("query nests more than {MAX_NESTING} levels deep")));
        }
        Ok(())
    }

    // ---- spanset level ----

    fn query(&mut self) -> Result<Query, ParseError> {
        let mut lhs = self.spanset_expr(1)?;
        loop {
            if self.peek() == &Tok::Pipe {
                self.next();
                let stage = self.stage()?;
                self.op()?;
                lhs = Query::Pipe {
                    input: Box::new(lhs),
                    stage,
                };
            } else if let Some((op, prec)) = spanset_op(self.peek()) {
                // Only reached after a stage. As in Tempo's grammar, a
                // spanset operator may follow a filter stage, but not an
                // aggregate, `by()` or `select()` unless the pipeline is
                // in parentheses.
                if let Query::Pipe { stage, .. } = &lhs {
                    if !matches!(stage, Stage::Filter(_)) {
                        return Err(self.expected(
                            "`|` or the end of the query (wrap a pipeline in `( )` to combine it with another spanset)",
                        ));
                    }
                }
                self.next();
                let rhs = self.spanset_expr(prec + 1)?;
                self.op()?;
                self.op()?;
                lhs = Query::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                };
            } else {
                return Ok(lhs);
            }
        }
    }

    fn spanset_expr(&mut self, min_prec: u8) -> Result<Query, ParseError> {
        let mut lhs = self.spanset_primary()?;
        while let Some((op, prec)) = spanset_op(self.peek()) {
            if prec < min_prec {
                break;
            }
            self.next();
            let rhs = self.spanset_expr(prec + 1)?;
            self.op()?;
            lhs = Query::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    fn spanset_primary(&mut self) -> Result<Query, ParseError> {
        match self.peek() {
            Tok::LBrace => Ok(Query::Filter(self.filter()?)),
            Tok::LParen => {
                self.next();
                self.enter()?;
                let q = self.query()?;
                self.depth -= 1;
                self.expect(Tok::RParen, "`)` closing the group")?;
                Ok(q)
            }
            _ => Err(self.expected("a spanset `{ ... }` or `(`")),
        }
    }

    /// `{ }` or `{ expr }`.
    fn filter(&mut self) -> Result<Option<FieldExpr>, ParseError> {
        self.expect(Tok::LBrace, "`{`")?;
        if self.peek() == &Tok::RBrace {
            self.next();
            return Ok(None);
        }
        let start = self.pos();
        let e = self.field_expr()?;
        if self.peek() != &Tok::RBrace {
            return Err(self.expected("`}` closing the spanset filter, or an operator"));
        }
        self.next();
        let t = self.check(&e, start)?;
        if !matches!(t, ValueType::Bool | ValueType::Any) {
            return Err(self.err_at(
                start,
                format!(
                    "a spanset filter must be a condition, not {} value: `{e}`",
                    type_name(t)
                ),
            ));
        }
        Ok(Some(e))
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let start = self.pos();
        match self.peek().clone() {
            Tok::LBrace => Ok(Stage::Filter(self.filter()?)),
            Tok::Ident(w) => {
                self.next();
                match w.as_str() {
                    "count" | "avg" | "min" | "max" | "sum" => {
                        self.expect(Tok::LParen, &format!("`(` after `{w}`"))?;
                        let agg = if w == "count" {
                            Aggregate::Count
                        } else {
                            let fstart = self.pos();
                            let e = self.field_expr()?;
                            let t = self.check(&e, fstart)?;
                            if !(t.is_numeric() || t == ValueType::Any) {
                                return Err(self.err_at(
                                    fstart,
                                    format!(
                                        "{w}() needs a numeric field, not {} value: `{e}`",
                                        type_name(t)
                                    ),
                                ));
                            }
                            match w.as_str() {
                                "avg" => Aggregate::Avg(e),
                                "min" => Aggregate::Min(e),
                                "max" => Aggregate::Max(e),
                                _ => Aggregate::Sum(e),
                            }
                        };
                        self.expect(Tok::RParen, &format!("`)` closing `{w}(`"))?;
                        let op = match comparison_op(self.peek()) {
                            Some(op) if !matches!(op, BinOp::Re | BinOp::NotRe) => op,
                            _ => {
                                return Err(self.expected(&format!(
                                    "a comparison (`>`, `>=`, `<`, `<=`, `=`, `!=`) after `{agg}`"
                                )))
                            }
                        };
                        self.next();
                        let vstart = self.pos();
                        let value = self.static_value()?;
                        if !value.value_type().is_numeric() {
                            return Err(self.err_at(
                                vstart,
                                format!(
                                    "`{agg}` compares with a number or duration, not `{value}`"
                                ),
                            ));
                        }
                        Ok(Stage::Aggregate { agg, op, value })
                    }
                    "by" | "select" => {
                        self.expect(Tok::LParen, &format!("`(` after `{w}`"))?;
                        let mut fields = Vec::new();
                        loop {
                            let fstart = self.pos();
                            let e = self.field_expr()?;
                            self.check(&e, fstart)?;
                            fields.push(e);
                            match self.peek() {
                                Tok::Comma => {
                                    self.next();
                                }
                                Tok::RParen => {
                                    self.next();
                                    break;
                                }
                                _ => return Err(self.expected("`,` or `)`")),
                            }
                        }
                        Ok(if w == "by" {
                            Stage::By(fields)
                        } else {
                            Stage::Select(fields)
                        })
                    }
                    "coalesce" => {
                        self.expect(Tok::LParen, "`(` after `coalesce`")?;
                        self.expect(Tok::RParen, "`)`: coalesce() takes no arguments")?;
                        Ok(Stage::Coalesce)
                    }
                    _ => Err(self.err_at(
                        start,
                        format!(
                            "unknown pipeline stage `{w}`: expected count(), avg(), min(), \
                             max(), sum(), by(), select(), coalesce() or a spanset filter"
                        ),
                    )),
                }
            }
            _ => Err(self.expected(
                "a pipeline stage (`count()`, `avg(...)`, `by(...)`, `select(...)`, `{ ... }`)",
            )),
        }
    }

    /// A literal, possibly negated, for aggregate comparisons.
    fn static_value(&mut self) -> Result<Static, ParseError> {
        let neg = if self.peek() == &Tok::Minus {
            self.next();
            true
        } else {
            false
        };
        let at = self.i;
        let e = self.primary()?;
        match (e, neg) {
            (FieldExpr::Static(s), false) => Ok(s),
            (FieldExpr::Static(Static::Int(i)), true) => Ok(Static::Int(-i)),
            (FieldExpr::Static(Static::Float(f)), true) => Ok(Static::Float(-f)),
            (FieldExpr::Static(Static::Duration(d)), true) => Ok(Static::Duration(-d)),
            _ => {
                self.i = at;
                Err(self.expected("a number or duration"))
            }
        }
    }

    // ---- field level ----

    fn field_expr(&mut self) -> Result<FieldExpr, ParseError> {
        self.or_expr()
    }

    fn or_expr(&mut self) -> Result<FieldExpr, ParseError> {
        let mut lhs = self.and_expr()?;
        while self.peek() == &Tok::OrOr {
            self.next();
            let rhs = self.and_expr()?;
            self.op()?;
            lhs = bin(BinOp::Or, lhs, rhs);
        }
        Ok(lhs)
    }

    fn and_expr(&mut self) -> Result<FieldExpr, ParseError> {
        let mut lhs = self.cmp_expr()?;
        while self.peek() == &Tok::AndAnd {
            self.next();
            let rhs = self.cmp_expr()?;
            self.op()?;
            lhs = bin(BinOp::And, lhs, rhs);
        }
        Ok(lhs)
    }

    fn cmp_expr(&mut self) -> Result<FieldExpr, ParseError> {
        let lhs = self.add_expr()?;
        if let Some(op) = comparison_op(self.peek()) {
            self.next();
            let rhs = self.add_expr()?;
            if comparison_op(self.peek()).is_some() {
                return Err(
                    self.err_here("comparisons cannot be chained; use `&&` and parentheses")
                );
            }
            self.op()?;
            return Ok(bin(op, lhs, rhs));
        }
        Ok(lhs)
    }

    fn add_expr(&mut self) -> Result<FieldExpr, ParseError> {
        let mut lhs = self.mul_expr()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.next();
            let rhs = self.mul_expr()?;
            self.op()?;
            lhs = bin(op, lhs, rhs);
        }
    }

    fn mul_expr(&mut self) -> Result<FieldExpr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Percent => BinOp::Mod,
                _ => return Ok(lhs),
            };
            self.next();
            let rhs = self.unary()?;
            self.op()?;
            lhs = bin(op, lhs, rhs);
        }
    }

    fn unary(&mut self) -> Result<FieldExpr, ParseError> {
        match self.peek() {
            Tok::Bang => {
                self.next();
                self.op()?;
                self.enter()?;
                let e = self.unary()?;
                self.depth -= 1;
                Ok(FieldExpr::Not(Box::new(e)))
            }
            Tok::Minus => {
                self.next();
                self.op()?;
                self.enter()?;
                let e = self.unary()?;
                self.depth -= 1;
                Ok(match e {
                    FieldExpr::Static(Static::Int(i)) => FieldExpr::Static(Static::Int(-i)),
                    FieldExpr::Static(Static::Float(f)) => FieldExpr::Static(Static::Float(-f)),
                    FieldExpr::Static(Static::Duration(d)) => {
                        FieldExpr::Static(Static::Duration(-d))
                    }
                    e => FieldExpr::Neg(Box::new(e)),
                })
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<FieldExpr, ParseError> {
        let start = self.pos();
        if matches!(
            self.peek(),
            Tok::Eof | Tok::RBrace | Tok::RParen | Tok::LBrace | Tok::Comma | Tok::Pipe
        ) || (comparison_op(self.peek()).is_some() || spanset_op(self.peek()).is_some())
        {
            return Err(self.expected("a field, attribute or literal"));
        }
        let e = match self.next() {
            Tok::LParen => {
                self.enter()?;
                let e = self.field_expr()?;
                self.expect(Tok::RParen, "`)`")?;
                self.depth -= 1;
                return Ok(e);
            }
            Tok::Str(s) => FieldExpr::Static(Static::Str(s)),
            Tok::Int(i) => FieldExpr::Static(Static::Int(i)),
            Tok::Float(f) => FieldExpr::Static(Static::Float(f)),
            Tok::Duration(d) => FieldExpr::Static(Static::Duration(d)),
            Tok::Attr(a) => FieldExpr::Attr(a),
            Tok::Ident(w) => match w.as_str() {
                "true" => FieldExpr::Static(Static::Bool(true)),
                "false" => FieldExpr::Static(Static::Bool(false)),
                "nil" => FieldExpr::Static(Static::Nil),
                "ok" => FieldExpr::Static(Static::Status(StatusCode::Ok)),
                "error" => FieldExpr::Static(Static::Status(StatusCode::Error)),
                "unset" => FieldExpr::Static(Static::Status(StatusCode::Unset)),
                "server" => FieldExpr::Static(Static::Kind(SpanKind::Server)),
                "client" => FieldExpr::Static(Static::Kind(SpanKind::Client)),
                "producer" => FieldExpr::Static(Static::Kind(SpanKind::Producer)),
                "consumer" => FieldExpr::Static(Static::Kind(SpanKind::Consumer)),
                "internal" => FieldExpr::Static(Static::Kind(SpanKind::Internal)),
                "unspecified" => FieldExpr::Static(Static::Kind(SpanKind::Unspecified)),
                _ => match Intrinsic::from_word(&w) {
                    Some(i) => FieldExpr::Intrinsic(i),
                    None => {
                        return Err(self.err_at(
                            start,
                            format!(
                                "unknown identifier `{w}`: attributes need a scope \
                                 (`span.{w}`, `resource.{w}` or `.{w}`)"
                            ),
                        ))
                    }
                },
            },
            _ => {
                self.i -= 1;
                return Err(self.expected("a field, attribute or literal"));
            }
        };
        Ok(e)
    }

    // ---- static checks ----

    /// The static type of `e`; an error for operands that can never
    /// compare (Tempo refuses those at parse time too).
    fn check(&self, e: &FieldExpr, pos: usize) -> Result<ValueType, ParseError> {
        Ok(match e {
            FieldExpr::Static(s) => s.value_type(),
            FieldExpr::Attr(_) => ValueType::Any,
            FieldExpr::Intrinsic(i) => i.kind(),
            FieldExpr::Not(inner) => {
                let t = self.check(inner, pos)?;
                if !matches!(t, ValueType::Bool | ValueType::Any) {
                    return Err(self.err_at(
                        pos,
                        format!(
                            "`!` needs a condition, not {} value: `{inner}`",
                            type_name(t)
                        ),
                    ));
                }
                ValueType::Bool
            }
            FieldExpr::Neg(inner) => {
                let t = self.check(inner, pos)?;
                if !(t.is_numeric() || t == ValueType::Any) {
                    return Err(self.err_at(
                        pos,
                        format!("`-` needs a number, not {} value: `{inner}`", type_name(t)),
                    ));
                }
                t
            }
            FieldExpr::Binary { op, lhs, rhs } => {
                let lt = self.check(lhs, pos)?;
                let rt = self.check(rhs, pos)?;
                match op {
                    BinOp::And | BinOp::Or => {
                        for (t, side) in [(lt, lhs), (rt, rhs)] {
                            if !matches!(t, ValueType::Bool | ValueType::Any) {
                                return Err(self.err_at(
                                    pos,
                                    format!(
                                        "`{}` joins conditions, but `{side}` is {} value",
                                        op.symbol(),
                                        type_name(t)
                                    ),
                                ));
                            }
                        }
                        ValueType::Bool
                    }
                    BinOp::Re | BinOp::NotRe => {
                        let FieldExpr::Static(Static::Str(pattern)) = rhs.as_ref() else {
                            return Err(self.err_at(
                                pos,
                                format!(
                                    "the right-hand side of `{}` must be a string, not `{rhs}`",
                                    op.symbol()
                                ),
                            ));
                        };
                        if !matches!(lt, ValueType::Str | ValueType::Any) {
                            return Err(self.err_at(
                                pos,
                                format!(
                                    "`{}` matches strings, but `{lhs}` is {} value",
                                    op.symbol(),
                                    type_name(lt)
                                ),
                            ));
                        }
                        if let Err(e) = regex::Regex::new(pattern)
                            .and_then(|_| crate::eval::compile_regex(pattern))
                        {
                            // The library's message is a drawing over
                            // several lines; its last line names the problem.
                            let text = e.to_string();
                            let why = text
                                .lines()
                                .last()
                                .unwrap_or_default()
                                .trim_start_matches("error: ")
                                .to_string();
                            return Err(self.err_at(
                                pos,
                                format!("invalid regular expression {pattern:?}: {why}"),
                            ));
                        }
                        ValueType::Bool
                    }
                    op if op.is_comparison() => {
                        if !comparable(lt, rt) {
                            return Err(self.err_at(
                                pos,
                                format!(
                                    "cannot compare {} with {}: `{e}`",
                                    type_name(lt),
                                    type_name(rt)
                                ),
                            ));
                        }
                        let ordered = matches!(op, BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte);
                        let unordered = |t| {
                            matches!(
                                t,
                                ValueType::Bool
                                    | ValueType::Status
                                    | ValueType::Kind
                                    | ValueType::Nil
                            )
                        };
                        if ordered && (unordered(lt) || unordered(rt)) {
                            return Err(self.err_at(
                                pos,
                                format!("`{}` cannot order these values: `{e}`", op.symbol()),
                            ));
                        }
                        ValueType::Bool
                    }
                    _ => {
                        for (t, side) in [(lt, lhs), (rt, rhs)] {
                            if !(t.is_numeric() || t == ValueType::Any) {
                                return Err(self.err_at(
                                    pos,
                                    format!(
                                        "`{}` needs numbers, but `{side}` is {} value",
                                        op.symbol(),
                                        type_name(t)
                                    ),
                                ));
                            }
                        }
                        if lt == ValueType::Any || rt == ValueType::Any {
                            ValueType::Any
                        } else if lt == ValueType::Duration || rt == ValueType::Duration {
                            ValueType::Duration
                        } else if lt == ValueType::Float || rt == ValueType::Float {
                            ValueType::Float
                        } else {
                            ValueType::Int
                        }
                    }
                }
            }
        })
    }
}

fn comparable(a: ValueType, b: ValueType) -> bool {
    use ValueType::*;
    match (a, b) {
        (Any, _) | (_, Any) | (Nil, _) | (_, Nil) => true,
        (x, y) if x.is_numeric() && y.is_numeric() => true,
        (x, y) => x == y,
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Str => "a string",
        ValueType::Int => "an integer",
        ValueType::Float => "a float",
        ValueType::Duration => "a duration",
        ValueType::Bool => "a boolean",
        ValueType::Status => "a status",
        ValueType::Kind => "a kind",
        ValueType::Nil => "nil",
        ValueType::Any => "an attribute",
    }
}

fn bin(op: BinOp, lhs: FieldExpr, rhs: FieldExpr) -> FieldExpr {
    FieldExpr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    }
}
