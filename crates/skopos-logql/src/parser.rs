//! Recursive-descent LogQL parser over the tokens of `lexer.rs`. Errors
//! carry the line and column of the offending token, in Loki's words:
//! `parse error at line 1, col 5: syntax error: unexpected IDENTIFIER`.

use regex::Regex;
use skopos_model::{MatchOp, Matcher};

use crate::ast::*;
use crate::lexer::{lex, line_col, Tok, Token};
use crate::parsers::{parse_json_path, Pattern};
use crate::template::Template;
use crate::QueryError;

/// Deepest nesting of parentheses, aggregations and operator operands
/// accepted: the parser and the evaluator recurse, and a debug build's
/// frames are large (measured: 250 levels overflow a 2 MiB thread stack).
const MAX_DEPTH: usize = 100;

/// Most binary operators in one query: a chain `a + b + c …` nests to the
/// left without nesting in the text, and evaluation recurses through it.
const MAX_BINARY_OPS: usize = 256;

pub fn parse(src: &str) -> Result<Expr, QueryError> {
    let toks = lex(src).map_err(|e| err_at(src, e.pos, &e.msg))?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        depth: 0,
        binary_ops: 0,
    };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err(p.unexpected(""));
    }
    Ok(e)
}

fn err_at(src: &str, pos: usize, msg: &str) -> QueryError {
    let (line, col) = line_col(src, pos);
    QueryError::Parse(format!("parse error at line {line}, col {col}: {msg}"))
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    binary_ops: usize,
}

type PResult<T> = Result<T, QueryError>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].tok
    }
    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.i].tok.clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }
    fn error(&self, pos: usize, msg: &str) -> QueryError {
        err_at(self.src, pos, msg)
    }
    fn unexpected(&self, expecting: &str) -> QueryError {
        let mut msg = format!("syntax error: unexpected {}", self.peek().describe());
        if !expecting.is_empty() {
            msg.push_str(", expecting ");
            msg.push_str(expecting);
        }
        self.error(self.pos(), &msg)
    }
    fn expect(&mut self, t: Tok) -> PResult<()> {
        if *self.peek() == t {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(t.symbol()))
        }
    }
    fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Tok::Ident(s) => {
                let s = s.clone();
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("IDENTIFIER")),
        }
    }
    fn string(&mut self) -> PResult<String> {
        match self.peek() {
            Tok::Str(s) => {
                let s = s.clone();
                self.next();
                Ok(s)
            }
            _ => Err(self.unexpected("STRING")),
        }
    }
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(self.pos(), "query is nested too deeply"));
        }
        Ok(())
    }

    // ------------------------------------------------------- expressions

    fn binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Add => BinOp::Add,
            Tok::Sub => BinOp::Sub,
            Tok::Mul => BinOp::Mul,
            Tok::Div => BinOp::Div,
            Tok::Mod => BinOp::Mod,
            Tok::Pow => BinOp::Pow,
            Tok::CmpEq => BinOp::Eq,
            Tok::Neq => BinOp::Ne,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Ident(w) if w == "and" => BinOp::And,
            Tok::Ident(w) if w == "or" => BinOp::Or,
            Tok::Ident(w) if w == "unless" => BinOp::Unless,
            _ => return None,
        })
    }

    /// Precedence climbing over the binary operators.
    fn expr(&mut self, min_prec: u8) -> PResult<Expr> {
        self.enter()?;
        let mut lhs = self.unary()?;
        while let Some(op) = self.binop() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            let op_pos = self.pos();
            self.binary_ops += 1;
            if self.binary_ops > MAX_BINARY_OPS {
                return Err(self.error(
                    op_pos,
                    &format!("query has more than {MAX_BINARY_OPS} binary operators"),
                ));
            }
            self.next();
            let mut return_bool = false;
            if self.is_word("bool") {
                if !op.is_comparison() {
                    return Err(self.error(
                        self.pos(),
                        "bool modifier can only be used on comparison operators",
                    ));
                }
                self.next();
                return_bool = true;
            }
            let mut matching = None;
            if self.is_word("on") || self.is_word("ignoring") {
                let on = self.is_word("on");
                self.next();
                let labels = self.label_list()?;
                let mut group = None;
                if self.is_word("group_left") || self.is_word("group_right") {
                    let at = self.pos();
                    let left = self.is_word("group_left");
                    self.next();
                    if op.is_set() {
                        return Err(self.error(
                            at,
                            &format!("no grouping allowed for \"{}\" operation", op.symbol()),
                        ));
                    }
                    // A label list follows only when it reads as one.
                    let is_list = *self.peek() == Tok::LParen
                        && (matches!(self.peek_at(1), Tok::RParen)
                            || (matches!(self.peek_at(1), Tok::Ident(_))
                                && matches!(self.peek_at(2), Tok::Comma | Tok::RParen)));
                    let include = if is_list {
                        self.label_list()?
                    } else {
                        Vec::new()
                    };
                    group = Some(GroupModifier { left, include });
                }
                matching = Some(VectorMatching { on, labels, group });
            }
            let next_min = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            if lhs.is_log() || rhs.is_log() {
                return Err(
                    self.error(op_pos, &format!("syntax error: unexpected {}", op.symbol()))
                );
            }
            let scalars = matches!(lhs, Expr::Literal(_)) && matches!(rhs, Expr::Literal(_));
            if op.is_comparison() && scalars && !return_bool {
                return Err(
                    self.error(op_pos, "comparisons between scalars must use BOOL modifier")
                );
            }
            if op.is_set() && (matches!(lhs, Expr::Literal(_)) || matches!(rhs, Expr::Literal(_))) {
                return Err(self.error(
                    op_pos,
                    &format!(
                        "unexpected literal for right-hand side of {} operation",
                        op.symbol()
                    ),
                ));
            }
            lhs = Expr::Binary(Box::new(BinaryExpr {
                op,
                return_bool,
                matching,
                lhs,
                rhs,
            }));
        }
        self.depth -= 1;
        Ok(lhs)
    }

    /// A sign applies to a number only, as in Loki's grammar (`SUB NUMBER`):
    /// `-1` is a literal, `-sum(...)` and `-(1)` are errors.
    fn unary(&mut self) -> PResult<Expr> {
        match self.peek() {
            Tok::Sub | Tok::Add => {
                let neg = *self.peek() == Tok::Sub;
                self.next();
                match *self.peek() {
                    Tok::Num(v) => {
                        self.next();
                        Ok(Expr::Literal(if neg { -v } else { v }))
                    }
                    _ => Err(self.unexpected("NUMBER")),
                }
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        match self.peek().clone() {
            Tok::Num(v) => {
                self.next();
                Ok(Expr::Literal(v))
            }
            Tok::LParen => {
                self.next();
                let e = self.expr(0)?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Tok::LBrace => {
                let log = self.log_expr()?;
                if *self.peek() == Tok::LBrack {
                    return Err(self.unexpected(""));
                }
                Ok(Expr::Log(log))
            }
            Tok::Ident(w) => {
                if let Some(op) = RangeOp::from_name(&w) {
                    self.next();
                    return self.range_agg(op);
                }
                if let Some(op) = VecOp::from_name(&w) {
                    self.next();
                    return self.vector_agg(op);
                }
                if w == "label_replace" {
                    self.next();
                    return self.label_replace();
                }
                if w == "vector" {
                    self.next();
                    self.expect(Tok::LParen)?;
                    let v = self.number()?;
                    self.expect(Tok::RParen)?;
                    return Ok(Expr::Vector(v));
                }
                Err(self.unexpected(""))
            }
            _ => Err(self.unexpected("")),
        }
    }

    fn label_replace(&mut self) -> PResult<Expr> {
        self.expect(Tok::LParen)?;
        let inner_pos = self.pos();
        let expr = self.expr(0)?;
        if expr.is_log() {
            return Err(self.error(
                inner_pos,
                "syntax error: unexpected log query in label_replace, expecting a metric query",
            ));
        }
        let mut args = Vec::new();
        let mut positions = Vec::new();
        for _ in 0..4 {
            self.expect(Tok::Comma)?;
            positions.push(self.pos());
            args.push(self.string()?);
        }
        self.expect(Tok::RParen)?;
        let [dst, replacement, src, regex_src]: [String; 4] =
            args.try_into().expect("four arguments were read");
        if !skopos_model::is_valid_label_name(&dst) {
            return Err(self.error(
                positions[0],
                &format!("invalid destination label name in label_replace(): {dst}"),
            ));
        }
        let regex = Regex::new(&format!("^(?s:{regex_src})$")).map_err(|e| {
            self.error(
                positions[3],
                &format!("invalid regular expression in label_replace(): {regex_src}: {e}"),
            )
        })?;
        Ok(Expr::LabelReplace(Box::new(LabelReplace {
            expr,
            dst,
            replacement,
            src,
            regex_src,
            regex,
        })))
    }

    fn number(&mut self) -> PResult<f64> {
        let neg = if *self.peek() == Tok::Sub {
            self.next();
            true
        } else {
            false
        };
        match self.peek() {
            Tok::Num(v) => {
                let v = *v;
                self.next();
                Ok(if neg { -v } else { v })
            }
            _ => Err(self.unexpected("NUMBER")),
        }
    }

    fn label_list(&mut self) -> PResult<Vec<String>> {
        self.expect(Tok::LParen)?;
        let mut out = Vec::new();
        while *self.peek() != Tok::RParen {
            out.push(self.ident()?);
            if *self.peek() == Tok::Comma {
                self.next();
            } else if *self.peek() != Tok::RParen {
                return Err(self.unexpected(", or )"));
            }
        }
        self.next();
        Ok(out)
    }

    fn grouping(&mut self) -> PResult<Option<Grouping>> {
        if self.is_word("by") || self.is_word("without") {
            let without = self.is_word("without");
            self.next();
            Ok(Some(Grouping {
                without,
                labels: self.label_list()?,
            }))
        } else {
            Ok(None)
        }
    }

    fn range_agg(&mut self, op: RangeOp) -> PResult<Expr> {
        let op_pos = self.toks[self.i - 1].pos;
        self.expect(Tok::LParen)?;
        let mut param = None;
        if op == RangeOp::QuantileOverTime {
            param = Some(self.number()?);
            self.expect(Tok::Comma)?;
        }
        let range = self.log_range()?;
        self.expect(Tok::RParen)?;
        let grouping = self.grouping()?;
        let name = op.name();
        match (&range.unwrap, op.needs_unwrap()) {
            (None, true) => {
                return Err(self.error(
                    op_pos,
                    &format!("invalid aggregation {name} without unwrap"),
                ))
            }
            (Some(_), false) if !matches!(op, RangeOp::Rate | RangeOp::AbsentOverTime) => {
                return Err(self.error(op_pos, &format!("invalid aggregation {name} with unwrap")))
            }
            _ => {}
        }
        if grouping.is_some() && !op.allows_grouping() {
            return Err(self.error(
                op_pos,
                &format!("grouping not allowed for {name} aggregation"),
            ));
        }
        Ok(Expr::RangeAgg(RangeAgg {
            op,
            param,
            range,
            grouping,
        }))
    }

    fn vector_agg(&mut self, op: VecOp) -> PResult<Expr> {
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen)?;
        let mut param = None;
        if matches!(op, VecOp::Topk | VecOp::Bottomk) {
            let at = self.pos();
            let k = self.number()?;
            if k.fract() != 0.0 || k < 1.0 {
                return Err(self.error(
                    at,
                    &format!(
                        "invalid parameter for {}: must be a positive integer",
                        op.name()
                    ),
                ));
            }
            param = Some(k);
            self.expect(Tok::Comma)?;
        }
        let inner_pos = self.pos();
        let expr = self.expr(0)?;
        if expr.is_log() {
            return Err(self.error(
                inner_pos,
                &format!(
                    "syntax error: unexpected log query in {}, expecting a metric query",
                    op.name()
                ),
            ));
        }
        self.expect(Tok::RParen)?;
        if let Some(g) = self.grouping()? {
            if grouping.is_some() {
                return Err(self.unexpected(""));
            }
            grouping = Some(g);
        }
        if matches!(op, VecOp::Sort | VecOp::SortDesc) && grouping.is_some() {
            return Err(self.error(inner_pos, "grouping not allowed for sort and sort_desc"));
        }
        Ok(Expr::VectorAgg(VectorAgg {
            op,
            param,
            grouping,
            expr: Box::new(expr),
        }))
    }

    // ------------------------------------------------------ log queries

    fn selector(&mut self) -> PResult<Vec<Matcher>> {
        let start = self.pos();
        self.expect(Tok::LBrace)?;
        let mut matchers = Vec::new();
        while *self.peek() != Tok::RBrace {
            let name = self.ident()?;
            let op = match self.peek() {
                Tok::Eq => MatchOp::Equal,
                Tok::Neq => MatchOp::NotEqual,
                Tok::Re => MatchOp::RegexMatch,
                Tok::Nre => MatchOp::RegexNoMatch,
                _ => return Err(self.unexpected("=, !=, =~ or !~")),
            };
            self.next();
            let at = self.pos();
            let value = self.string()?;
            matchers
                .push(Matcher::new(op, name, value).map_err(|e| self.error(at, &e.to_string()))?);
            match self.peek() {
                Tok::Comma => {
                    self.next();
                }
                Tok::RBrace => {}
                _ => return Err(self.unexpected(", or }")),
            }
        }
        self.next();
        if !matchers.iter().any(|m| !m.matches_empty()) {
            return Err(self.error(
                start,
                "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will",
            ));
        }
        Ok(matchers)
    }

    fn log_expr(&mut self) -> PResult<LogExpr> {
        let matchers = self.selector()?;
        let (stages, unwrap) = self.stages(false)?;
        debug_assert!(unwrap.is_none());
        Ok(LogExpr { matchers, stages })
    }

    fn log_range(&mut self) -> PResult<LogRange> {
        if *self.peek() != Tok::LBrace {
            return Err(self.unexpected("{"));
        }
        let matchers = self.selector()?;
        let mut range = None;
        if *self.peek() == Tok::LBrack {
            range = Some(self.range()?);
        }
        let (stages, unwrap) = self.stages(true)?;
        let range = match range {
            Some(r) => r,
            None => self.range()?,
        };
        let mut offset = 0;
        if self.is_word("offset") {
            self.next();
            offset = self.duration()?;
        }
        Ok(LogRange {
            log: LogExpr { matchers, stages },
            unwrap,
            range,
            offset,
        })
    }

    fn duration(&mut self) -> PResult<i64> {
        match self.peek() {
            Tok::Dur(ns) => {
                let ns = *ns;
                self.next();
                Ok(ns)
            }
            _ => Err(self.unexpected("DURATION")),
        }
    }

    fn range(&mut self) -> PResult<i64> {
        self.expect(Tok::LBrack)?;
        let at = self.pos();
        let ns = self.duration()?;
        if ns <= 0 {
            return Err(self.error(at, "range must be positive"));
        }
        self.expect(Tok::RBrack)?;
        Ok(ns)
    }

    /// Pipeline stages until something that is not a stage; with
    /// `allow_unwrap`, an `| unwrap` and the label filters after it.
    fn stages(&mut self, allow_unwrap: bool) -> PResult<(Vec<Stage>, Option<Unwrap>)> {
        let mut stages = Vec::new();
        let mut unwrap: Option<Unwrap> = None;
        loop {
            let op = match self.peek() {
                Tok::PipeExact => Some(LineOp::Contains),
                Tok::Neq => Some(LineOp::NotContains),
                Tok::PipeMatch => Some(LineOp::Match),
                Tok::Nre => Some(LineOp::NotMatch),
                Tok::PipePattern => Some(LineOp::Pattern),
                Tok::NotPattern => Some(LineOp::NotPattern),
                Tok::Pipe => None,
                _ => break,
            };
            let stage_pos = self.pos();
            self.next();
            if let Some(op) = op {
                if unwrap.is_some() {
                    return Err(self.error(
                        stage_pos,
                        "syntax error: unexpected line filter after unwrap",
                    ));
                }
                stages.push(Stage::LineFilter(self.line_filter(op)?));
                continue;
            }
            if self.is_word("unwrap") {
                if !allow_unwrap || unwrap.is_some() {
                    return Err(self.unexpected(""));
                }
                self.next();
                unwrap = Some(self.unwrap()?);
                continue;
            }
            let stage = self.stage()?;
            if let Some(u) = &mut unwrap {
                match stage {
                    Stage::LabelFilter(f) => u.post_filters.push(f),
                    _ => {
                        return Err(self.error(
                            stage_pos,
                            "syntax error: only label filters may follow unwrap",
                        ))
                    }
                }
            } else {
                stages.push(stage);
            }
        }
        Ok((stages, unwrap))
    }

    fn line_filter(&mut self, op: LineOp) -> PResult<LineFilter> {
        let mut values = Vec::new();
        let mut regexes = Vec::new();
        let mut patterns = Vec::new();
        loop {
            let at = self.pos();
            let v = self.string()?;
            if matches!(op, LineOp::Match | LineOp::NotMatch) {
                regexes.push(Regex::new(&v).map_err(|e| {
                    self.error(at, &format!("invalid regular expression {v:?}: {e}"))
                })?);
            }
            if matches!(op, LineOp::Pattern | LineOp::NotPattern) {
                patterns.push(Pattern::parse_filter(&v).map_err(|e| self.error(at, &e))?);
            }
            values.push(v);
            if self.is_word("or") && matches!(self.peek_at(1), Tok::Str(_)) {
                self.next();
                continue;
            }
            break;
        }
        Ok(LineFilter {
            op,
            values,
            regexes,
            patterns,
        })
    }

    fn unwrap(&mut self) -> PResult<Unwrap> {
        let first = self.ident()?;
        let conv = match first.as_str() {
            "duration" | "duration_seconds" | "bytes" if *self.peek() == Tok::LParen => {
                match first.as_str() {
                    "duration" => Conversion::Duration,
                    "duration_seconds" => Conversion::DurationSeconds,
                    _ => Conversion::Bytes,
                }
            }
            _ => {
                return Ok(Unwrap {
                    label: first,
                    conv: Conversion::Float,
                    post_filters: Vec::new(),
                })
            }
        };
        self.next();
        let label = self.ident()?;
        self.expect(Tok::RParen)?;
        Ok(Unwrap {
            label,
            conv,
            post_filters: Vec::new(),
        })
    }

    /// One stage after `|` (not a line filter, not unwrap).
    fn stage(&mut self) -> PResult<Stage> {
        let word = match self.peek() {
            Tok::Ident(w) => w.clone(),
            Tok::LParen => return Ok(Stage::LabelFilter(self.label_filter()?)),
            _ => return Err(self.unexpected("a parser, a label filter or a format stage")),
        };
        // A stage keyword followed by a comparison is a label filter on a label of that name.
        let is_filter = matches!(
            self.peek_at(1),
            Tok::Eq
                | Tok::Neq
                | Tok::Re
                | Tok::Nre
                | Tok::CmpEq
                | Tok::Gt
                | Tok::Ge
                | Tok::Lt
                | Tok::Le
        );
        if is_filter {
            return Ok(Stage::LabelFilter(self.label_filter()?));
        }
        self.next();
        match word.as_str() {
            "json" => Ok(Stage::Json(self.extractions(true)?)),
            "logfmt" => {
                let (mut strict, mut keep_empty) = (false, false);
                while let Tok::Flag(f) = self.peek().clone() {
                    match f.as_str() {
                        "strict" => strict = true,
                        "keep-empty" => keep_empty = true,
                        _ => return Err(self.unexpected("--strict or --keep-empty")),
                    }
                    self.next();
                }
                let params = self.extractions(false)?;
                Ok(Stage::Logfmt {
                    strict,
                    keep_empty,
                    params,
                })
            }
            "regexp" => {
                let at = self.pos();
                let src = self.string()?;
                let re = Regex::new(&src).map_err(|e| {
                    self.error(at, &format!("invalid regular expression {src:?}: {e}"))
                })?;
                let mut names = Vec::new();
                for n in re.capture_names().flatten() {
                    if !skopos_model::is_valid_label_name(n) {
                        return Err(self.error(at, &format!("invalid extracted label name '{n}'")));
                    }
                    if names.contains(&n) {
                        return Err(
                            self.error(at, &format!("duplicate extracted label name '{n}'"))
                        );
                    }
                    names.push(n);
                }
                if names.is_empty() {
                    return Err(self.error(at, "at least one named capture must be supplied"));
                }
                Ok(Stage::Regexp { src, re })
            }
            "pattern" => {
                let at = self.pos();
                let src = self.string()?;
                let pattern = Pattern::parse(&src).map_err(|e| self.error(at, &e))?;
                Ok(Stage::Pattern { src, pattern })
            }
            "unpack" => Ok(Stage::Unpack),
            "decolorize" => Ok(Stage::Decolorize),
            "line_format" => {
                let at = self.pos();
                let src = self.string()?;
                let tpl = Template::parse(&src).map_err(|e| self.error(at, &e))?;
                Ok(Stage::LineFormat(tpl))
            }
            "label_format" => {
                let mut items = Vec::new();
                loop {
                    let at = self.pos();
                    let dst = self.ident()?;
                    if !skopos_model::is_valid_label_name(&dst) {
                        return Err(self.error(at, &format!("invalid label name '{dst}'")));
                    }
                    self.expect(Tok::Eq)?;
                    let item = match self.peek().clone() {
                        Tok::Ident(src) => {
                            self.next();
                            LabelFmt::Rename {
                                dst: dst.clone(),
                                src,
                            }
                        }
                        Tok::Str(s) => {
                            let tat = self.pos();
                            self.next();
                            let tpl = Template::parse(&s).map_err(|e| self.error(tat, &e))?;
                            LabelFmt::Template {
                                dst: dst.clone(),
                                tpl,
                            }
                        }
                        _ => return Err(self.unexpected("IDENTIFIER or STRING")),
                    };
                    let dup = items.iter().any(|i: &LabelFmt| match i {
                        LabelFmt::Rename { dst: d, .. } | LabelFmt::Template { dst: d, .. } => {
                            *d == dst
                        }
                    });
                    if dup {
                        return Err(self.error(
                            at,
                            &format!("multiple label name '{dst}' in a single format operation"),
                        ));
                    }
                    items.push(item);
                    if *self.peek() == Tok::Comma {
                        self.next();
                    } else {
                        break;
                    }
                }
                Ok(Stage::LabelFormat(items))
            }
            "drop" | "keep" => {
                let mut sels = Vec::new();
                loop {
                    let name = self.ident()?;
                    let op = match self.peek() {
                        Tok::Eq => Some(MatchOp::Equal),
                        Tok::Neq => Some(MatchOp::NotEqual),
                        Tok::Re => Some(MatchOp::RegexMatch),
                        Tok::Nre => Some(MatchOp::RegexNoMatch),
                        _ => None,
                    };
                    let matcher = match op {
                        Some(op) => {
                            self.next();
                            let vat = self.pos();
                            let v = self.string()?;
                            Some(
                                Matcher::new(op, name.clone(), v)
                                    .map_err(|e| self.error(vat, &e.to_string()))?,
                            )
                        }
                        None => None,
                    };
                    sels.push(LabelSel { name, matcher });
                    if *self.peek() == Tok::Comma {
                        self.next();
                    } else {
                        break;
                    }
                }
                Ok(if word == "drop" {
                    Stage::Drop(sels)
                } else {
                    Stage::Keep(sels)
                })
            }
            _ => {
                // Not a stage keyword: a label filter on a label of that name.
                self.i -= 1;
                Ok(Stage::LabelFilter(self.label_filter()?))
            }
        }
    }

    /// `a="x.y", b` after `json`/`logfmt` (none when the next token is not a name).
    fn extractions(&mut self, json: bool) -> PResult<Vec<Extraction>> {
        let mut out = Vec::new();
        if !matches!(self.peek(), Tok::Ident(_)) || self.binop().is_some() {
            return Ok(out);
        }
        loop {
            let at = self.pos();
            let name = self.ident()?;
            let expr = if *self.peek() == Tok::Eq {
                self.next();
                self.string()?
            } else {
                name.clone()
            };
            let path = if json {
                parse_json_path(&expr).map_err(|e| self.error(at, &e))?
            } else {
                vec![PathPart::Key(expr.clone())]
            };
            out.push(Extraction { name, expr, path });
            if *self.peek() == Tok::Comma {
                self.next();
            } else {
                break;
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------- label filters

    fn label_filter(&mut self) -> PResult<LabelFilter> {
        self.enter()?;
        let mut lhs = self.label_filter_and()?;
        while self.is_word("or") {
            self.next();
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> PResult<LabelFilter> {
        let mut lhs = self.label_filter_atom()?;
        loop {
            let is_and = self.is_word("and")
                || (*self.peek() == Tok::Comma
                    && matches!(self.peek_at(1), Tok::Ident(_) | Tok::LParen));
            if !is_and {
                break;
            }
            self.next();
            let rhs = self.label_filter_atom()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_filter_atom(&mut self) -> PResult<LabelFilter> {
        if *self.peek() == Tok::LParen {
            self.next();
            let f = self.label_filter()?;
            self.expect(Tok::RParen)?;
            return Ok(f);
        }
        let name = self.ident()?;
        let op_tok = self.peek().clone();
        let string_op = match op_tok {
            Tok::Eq => Some(MatchOp::Equal),
            Tok::Neq => Some(MatchOp::NotEqual),
            Tok::Re => Some(MatchOp::RegexMatch),
            Tok::Nre => Some(MatchOp::RegexNoMatch),
            _ => None,
        };
        let cmp = match op_tok {
            Tok::Eq | Tok::CmpEq => Some(CmpOp::Eq),
            Tok::Neq => Some(CmpOp::Ne),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            _ => None,
        };
        if string_op.is_none() && cmp.is_none() {
            return Err(self.unexpected("a comparison operator"));
        }
        self.next();
        let at = self.pos();
        let neg = *self.peek() == Tok::Sub;
        if neg {
            self.next();
        }
        let value = self.peek().clone();
        match (value, string_op, cmp) {
            (Tok::Str(s), Some(op), _) if !neg => {
                self.next();
                let m = Matcher::new(op, name, s).map_err(|e| self.error(at, &e.to_string()))?;
                Ok(LabelFilter::Str(m))
            }
            (Tok::Num(v), _, Some(op)) => {
                self.next();
                Ok(LabelFilter::Num {
                    name,
                    op,
                    value: if neg { -v } else { v },
                })
            }
            (Tok::Dur(ns), _, Some(op)) => {
                self.next();
                Ok(LabelFilter::Duration {
                    name,
                    op,
                    value: if neg { -ns } else { ns },
                })
            }
            (Tok::Bytes(b), _, Some(op)) if !neg => {
                self.next();
                Ok(LabelFilter::Bytes { name, op, value: b })
            }
            _ => Err(self.unexpected(if string_op.is_some() && cmp.is_some() {
                "STRING, NUMBER, DURATION or BYTES"
            } else if string_op.is_some() {
                "STRING"
            } else {
                "NUMBER, DURATION or BYTES"
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_round_trips() {
        for q in [
            r#"{app="foo", env=~"prod|dev"} |= "err" != "debug" | json | level="error""#,
            r#"sum by (app) (rate({app="foo"} |~ "a.+" [5m]))"#,
            r#"quantile_over_time(0.99, {app="foo"} | logfmt | unwrap duration(took) | __error__="" [1m]) by (path)"#,
            r#"topk(3, count_over_time({app="foo"} [1h] offset 5m))"#,
            r#"(count_over_time({a="b"} [1m]) + 1) * 2"#,
            r#"count_over_time({a="b"} [1m]) > bool on (x) count_over_time({a="c"} [1m])"#,
            r#"label_replace(rate({a="b"} [1m]), "dst", "$1-x", "a", "(.*)")"#,
            r#"rate({a="b"} [1m]) * on (x) group_left (y) rate({a="c"} [1m])"#,
            r#"{a="b"} |> "<_> error <_>" or "x <_>" !> "<_> debug""#,
        ] {
            let e = parse(q).unwrap();
            let printed = e.to_string();
            assert_eq!(parse(&printed).unwrap().to_string(), printed, "{q}");
        }
    }

    /// Token soups and deep nesting must give an error or a tree, never a
    /// panic or a stack overflow.
    #[test]
    fn arbitrary_input_never_panics() {
        let pieces = [
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            ",",
            "=",
            "!=",
            "=~",
            "!~",
            "|=",
            "|~",
            "|",
            "==",
            ">",
            "<=",
            "+",
            "-",
            "*",
            "/",
            "^",
            "\"a\"",
            "`b`",
            "1",
            "1.5",
            "5m",
            "1KB",
            "x",
            "json",
            "logfmt",
            "unwrap",
            "by",
            "sum",
            "rate",
            "count_over_time",
            "topk",
            "or",
            "and",
            "offset",
            "bool",
            "on",
            "line_format",
            "label_format",
            "drop",
            "keep",
            "pattern",
            "regexp",
            "--strict",
            "__error__",
            "vector",
            "quantile_over_time",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut q = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 24) as usize;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                q.push_str(pieces[(seed % pieces.len() as u64) as usize]);
                q.push(' ');
            }
            let _ = parse(&q);
        }
        for deep in [
            "-".repeat(100_000) + "1",
            "(".repeat(100_000),
            "sum(".repeat(50_000),
            "1 + ".repeat(300) + "1",
            format!("{{a=\"b\"}} | {}x=\"1\"", "(".repeat(100_000)),
            format!(
                "{{a=\"b\"}} | line_format \"{{{{{}.a}}}}\"",
                "(".repeat(100_000)
            ),
        ] {
            assert!(parse(&deep).is_err());
        }
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse(r#"{app="foo"} | json |"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parse error at line 1, col 21: syntax error: unexpected $end, expecting a parser, a label filter or a format stage"
        );
    }
}
