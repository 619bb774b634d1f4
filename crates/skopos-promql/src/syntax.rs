//! Prometheus' parse errors, with their positions.
//!
//! The evaluator's tree comes from the `promql-parser` crate, whose errors
//! carry no position, which words many failures differently from
//! Prometheus, and which takes some queries Prometheus 2.42 refuses (Go's
//! regexp grammar is stricter, label names cannot be quoted). So every
//! query is first read by [`explain`] the way Prometheus 2.42 reads it —
//! its lexer's states, its grammar's error rules and its type checks, in the
//! order it runs them — which answers with the first error Prometheus
//! reports, written as Prometheus writes it:
//! `1:16: parse error: unclosed left parenthesis` (line and byte column,
//! both from 1). Tools and people that read Prometheus' messages read these
//! the same way. [`signature`] is also the one table of the functions
//! Prometheus 2.x knows.

use std::fmt::Write as _;

/// An error at a byte offset of the query.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: usize,
    pub msg: String,
}

impl SyntaxError {
    /// `LINE:COL: parse error: MSG`, as Prometheus' `ParseErr` prints.
    pub fn render(&self, input: &str) -> String {
        let pos = self.pos.min(input.len());
        let before = &input.as_bytes()[..pos];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let col = pos
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        format!("{line}:{col}: parse error: {}", self.msg)
    }
}

/// Deeper queries are left to the parser crate unexplained: this reader
/// recurses several frames a level, and the evaluator's limit
/// ([`crate::MAX_NESTING`]) must fit a 2 MiB thread stack in a debug build.
/// No one writes a query this deep by hand.
const EXPLAIN_DEPTH: usize = 200;

/// Marks "too deep to explain" (not an error of the query).
const TOO_DEEP: usize = usize::MAX;

/// The first error Prometheus 2.42 reports for `input`, or `None` when it
/// would accept it (or it nests deeper than [`EXPLAIN_DEPTH`]).
pub fn explain(input: &str) -> Option<SyntaxError> {
    let mut p = Parser::new(input);
    let node = match p.top() {
        Ok(n) => n,
        Err(e) if e.pos == TOO_DEEP => return None,
        Err(e) => return Some(e),
    };
    check(&node).err()
}

/// The value types of PromQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Scalar,
    Vector,
    Matrix,
    Str,
}

impl Type {
    /// The name Prometheus' messages use.
    fn documented(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "instant vector",
            Type::Matrix => "range vector",
            Type::Str => "string",
        }
    }

    /// The internal name (used by the subquery message).
    fn raw(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "vector",
            Type::Matrix => "matrix",
            Type::Str => "string",
        }
    }
}

/// A function's argument types, its variadic count (0: exact; n > 0: up to
/// n more of the last type; -1: any number more) and its result type.
pub struct Signature {
    pub args: &'static [Type],
    pub variadic: i32,
    pub ret: Type,
}

/// The functions of Prometheus 2.42 (floats; the native-histogram ones parse
/// and answer nothing).
pub fn signature(name: &str) -> Option<Signature> {
    use Type::{Matrix as M, Scalar as S, Str, Vector as V};
    let (args, variadic, ret): (&'static [Type], i32, Type) = match name {
        "abs" | "absent" | "acos" | "acosh" | "asin" | "asinh" | "atan" | "atanh" | "ceil"
        | "cos" | "cosh" | "deg" | "exp" | "floor" | "histogram_count" | "histogram_sum" | "ln"
        | "log10" | "log2" | "rad" | "sgn" | "sin" | "sinh" | "sort" | "sort_desc" | "sqrt"
        | "tan" | "tanh" | "timestamp" => (&[V], 0, V),
        "absent_over_time" | "avg_over_time" | "changes" | "count_over_time" | "delta"
        | "deriv" | "idelta" | "increase" | "irate" | "last_over_time" | "max_over_time"
        | "min_over_time" | "present_over_time" | "rate" | "resets" | "stddev_over_time"
        | "stdvar_over_time" | "sum_over_time" => (&[M], 0, V),
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => (&[V], 1, V),
        "clamp" => (&[V, S, S], 0, V),
        "clamp_max" | "clamp_min" => (&[V, S], 0, V),
        "histogram_fraction" => (&[S, S, V], 0, V),
        "histogram_quantile" => (&[S, V], 0, V),
        "holt_winters" => (&[M, S, S], 0, V),
        "label_replace" => (&[V, Str, Str, Str, Str], 0, V),
        "label_join" => (&[V, Str, Str, Str], -1, V),
        "pi" | "time" => (&[], 0, S),
        "predict_linear" => (&[M, S], 0, V),
        "quantile_over_time" => (&[S, M], 0, V),
        "round" => (&[V, S], 1, V),
        "scalar" => (&[V], 0, S),
        "vector" => (&[S], 0, V),
        _ => return None,
    };
    Some(Signature {
        args,
        variadic,
        ret,
    })
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Eof,
    Ident,
    MetricIdent,
    Number,
    Duration,
    Str,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Eql,
    Op(Op),
    Aggr(Aggr),
    Kw(Kw),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    EqlC,
    Neq,
    Lte,
    Lss,
    Gte,
    Gtr,
    EqlRegex,
    NeqRegex,
    And,
    Or,
    Unless,
    Atan2,
    At,
}

impl Op {
    fn precedence(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::And | Op::Unless => 2,
            Op::EqlC | Op::Neq | Op::Lte | Op::Lss | Op::Gte | Op::Gtr => 3,
            Op::Add | Op::Sub => 4,
            Op::Mul | Op::Div | Op::Mod | Op::Atan2 => 5,
            Op::Pow => 6,
            Op::EqlRegex | Op::NeqRegex | Op::At => 0,
        }
    }

    fn comparison(self) -> bool {
        matches!(
            self,
            Op::EqlC | Op::Neq | Op::Lte | Op::Lss | Op::Gte | Op::Gtr
        )
    }

    fn set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggr {
    WithParam,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Ignoring,
    Offset,
    On,
    Without,
    Start,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    tok: Tok,
    pos: usize,
    end: usize,
}

fn keyword(word: &str) -> Option<Tok> {
    Some(match word.to_ascii_lowercase().as_str() {
        "and" => Tok::Op(Op::And),
        "or" => Tok::Op(Op::Or),
        "unless" => Tok::Op(Op::Unless),
        "atan2" => Tok::Op(Op::Atan2),
        "sum" | "avg" | "count" | "min" | "max" | "group" | "stddev" | "stdvar" => {
            Tok::Aggr(Aggr::Plain)
        }
        "topk" | "bottomk" | "count_values" | "quantile" => Tok::Aggr(Aggr::WithParam),
        "offset" => Tok::Kw(Kw::Offset),
        "by" => Tok::Kw(Kw::By),
        "without" => Tok::Kw(Kw::Without),
        "on" => Tok::Kw(Kw::On),
        "ignoring" => Tok::Kw(Kw::Ignoring),
        "group_left" => Tok::Kw(Kw::GroupLeft),
        "group_right" => Tok::Kw(Kw::GroupRight),
        "bool" => Tok::Kw(Kw::Bool),
        "start" => Tok::Kw(Kw::Start),
        "end" => Tok::Kw(Kw::End),
        "inf" | "nan" => Tok::Number,
        _ => return None,
    })
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

/// Prometheus' lexer: the same states (statements, inside braces, inside
/// brackets) and the same errors at the same offsets.
struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    paren_depth: i32,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    /// The next token is a duration (just after `[`).
    duration_next: bool,
    done: bool,
}

type Lexed = Result<Item, SyntaxError>;

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Lexer {
            input,
            pos: 0,
            start: 0,
            paren_depth: 0,
            brace_open: false,
            bracket_open: false,
            got_colon: false,
            duration_next: false,
            done: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn emit(&mut self, tok: Tok) -> Lexed {
        let item = Item {
            tok,
            pos: self.start,
            end: self.pos,
        };
        self.start = self.pos;
        Ok(item)
    }

    fn error(&self, msg: String) -> Lexed {
        Err(SyntaxError {
            pos: self.start,
            msg,
        })
    }

    fn text(&self) -> &'a str {
        &self.input[self.start..self.pos]
    }

    /// The next token, comments skipped.
    fn item(&mut self) -> Lexed {
        loop {
            if self.done {
                return Ok(Item {
                    tok: Tok::Eof,
                    pos: self.input.len(),
                    end: self.input.len(),
                });
            }
            if self.duration_next {
                self.duration_next = false;
                return self.duration();
            }
            if self.input[self.pos..].starts_with('#') {
                while !matches!(self.next(), None | Some('\n' | '\r')) {}
                if self.input[..self.pos].ends_with(['\n', '\r']) {
                    self.pos -= 1;
                }
                self.start = self.pos;
                continue;
            }
            let r = if self.brace_open {
                self.inside_braces()
            } else {
                self.statement()
            };
            match r {
                Ok(None) => continue,
                Ok(Some(item)) => return Ok(item),
                Err(e) => return Err(e),
            }
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.start = self.pos;
    }

    fn statement(&mut self) -> Result<Option<Item>, SyntaxError> {
        let Some(r) = self.next() else {
            if self.paren_depth != 0 {
                return self.error("unclosed left parenthesis".into()).map(Some);
            } else if self.bracket_open {
                return self.error("unclosed left bracket".into()).map(Some);
            }
            self.done = true;
            return self.emit(Tok::Eof).map(Some);
        };
        let tok = match r {
            ',' => Tok::Comma,
            c if is_space(c) => {
                self.skip_spaces();
                return Ok(None);
            }
            '*' => Tok::Op(Op::Mul),
            '/' => Tok::Op(Op::Div),
            '%' => Tok::Op(Op::Mod),
            '+' => Tok::Op(Op::Add),
            '-' => Tok::Op(Op::Sub),
            '^' => Tok::Op(Op::Pow),
            '=' => match self.peek() {
                Some('=') => {
                    self.pos += 1;
                    Tok::Op(Op::EqlC)
                }
                Some('~') => {
                    return self
                        .error("unexpected character after '=': '~'".into())
                        .map(Some)
                }
                _ => Tok::Eql,
            },
            '!' => match self.next() {
                Some('=') => Tok::Op(Op::Neq),
                c => {
                    let msg = format!("unexpected character after '!': {}", go_rune(c));
                    return self.error(msg).map(Some);
                }
            },
            '<' | '>' => {
                let eq = self.accept("=");
                Tok::Op(match (r, eq) {
                    ('<', true) => Op::Lte,
                    ('<', false) => Op::Lss,
                    (_, true) => Op::Gte,
                    _ => Op::Gtr,
                })
            }
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.pos -= 1;
                return self.number_or_duration().map(Some);
            }
            '"' | '\'' => return self.string(r).map(Some),
            '`' => return self.raw_string().map(Some),
            c if is_alpha(c) || c == ':' => {
                if !self.bracket_open {
                    self.pos -= 1;
                    return self.keyword_or_identifier().map(Some);
                }
                if self.got_colon {
                    let msg = format!("unexpected colon {}", go_rune(Some(c)));
                    return self.error(msg).map(Some);
                }
                self.got_colon = true;
                Tok::Colon
            }
            '(' => {
                self.paren_depth += 1;
                Tok::LParen
            }
            ')' => {
                let item = self.emit(Tok::RParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self
                        .error("unexpected right parenthesis ')'".into())
                        .map(Some);
                }
                return item.map(Some);
            }
            '{' => {
                self.brace_open = true;
                Tok::LBrace
            }
            '[' => {
                if self.bracket_open {
                    return self.error("unexpected left bracket '['".into()).map(Some);
                }
                self.got_colon = false;
                let item = self.emit(Tok::LBracket);
                self.skip_spaces();
                self.bracket_open = true;
                self.duration_next = true;
                return item.map(Some);
            }
            ']' => {
                if !self.bracket_open {
                    return self.error("unexpected right bracket ']'".into()).map(Some);
                }
                self.bracket_open = false;
                Tok::RBracket
            }
            '@' => Tok::Op(Op::At),
            c => {
                let msg = format!("unexpected character: {}", go_rune(Some(c)));
                return self.error(msg).map(Some);
            }
        };
        self.emit(tok).map(Some)
    }

    fn inside_braces(&mut self) -> Result<Option<Item>, SyntaxError> {
        let Some(r) = self.next() else {
            return self
                .error("unexpected end of input inside braces".into())
                .map(Some);
        };
        let tok = match r {
            c if is_space(c) => {
                self.skip_spaces();
                return Ok(None);
            }
            c if is_alpha(c) => {
                while self.peek().is_some_and(is_alnum) {
                    self.pos += 1;
                }
                Tok::Ident
            }
            ',' => Tok::Comma,
            '"' | '\'' => return self.string(r).map(Some),
            '`' => return self.raw_string().map(Some),
            '=' => {
                if self.accept("~") {
                    Tok::Op(Op::EqlRegex)
                } else {
                    Tok::Eql
                }
            }
            '!' => match self.next() {
                Some('~') => Tok::Op(Op::NeqRegex),
                Some('=') => Tok::Op(Op::Neq),
                c => {
                    let msg = format!(
                        "unexpected character after '!' inside braces: {}",
                        go_rune(c)
                    );
                    return self.error(msg).map(Some);
                }
            },
            '{' => return self.error("unexpected left brace '{'".into()).map(Some),
            '}' => {
                self.brace_open = false;
                Tok::RBrace
            }
            c => {
                let msg = format!("unexpected character inside braces: {}", go_rune(Some(c)));
                return self.error(msg).map(Some);
            }
        };
        self.emit(tok).map(Some)
    }

    fn string(&mut self, quote: char) -> Lexed {
        loop {
            match self.next() {
                Some('\\') => self.escape(quote)?,
                Some(c) if c == quote => break,
                None | Some('\n') => return self.error("unterminated quoted string".into()),
                Some(_) => {}
            }
        }
        self.emit(Tok::Str)
    }

    fn raw_string(&mut self) -> Lexed {
        loop {
            match self.next() {
                Some('`') => break,
                None => return self.error("unterminated raw string".into()),
                Some(_) => {}
            }
        }
        self.emit(Tok::Str)
    }

    fn escape(&mut self, quote: char) -> Result<(), SyntaxError> {
        let fail = |l: &Self, msg: String| Err(SyntaxError { pos: l.start, msg });
        let mut ch = self.next();
        let (mut n, base, max) = match ch {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return Ok(()),
            Some(c) if c == quote => return Ok(()),
            Some('0'..='7') => (3, 8, 255),
            Some('x') => {
                ch = self.next();
                (2, 16, 255)
            }
            Some('u') => {
                ch = self.next();
                (4, 16, 0x10FFFF)
            }
            Some('U') => {
                ch = self.next();
                (8, 16, 0x10FFFF)
            }
            None => return fail(self, "escape sequence not terminated".into()),
            Some(c) => return fail(self, format!("unknown escape sequence {}", go_unicode(c))),
        };
        let mut x: u32 = 0;
        while n > 0 {
            let d = ch.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                return match ch {
                    None => fail(self, "escape sequence not terminated".into()),
                    Some(c) => fail(
                        self,
                        format!("illegal character {} in escape sequence", go_unicode(c)),
                    ),
                };
            }
            x = x * base + d;
            n -= 1;
            if n > 0 {
                ch = self.next();
            }
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            return fail(
                self,
                "escape sequence is an invalid Unicode code point".into(),
            );
        }
        Ok(())
    }

    /// Digits, a fraction and an exponent (hex after `0x`); true when no
    /// letter or digit follows.
    fn scan_number(&mut self) -> bool {
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            digits = "0123456789abcdefABCDEF";
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789");
        }
        !self.peek().is_some_and(is_alnum)
    }

    fn remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            self.accept_run("0123456789");
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        // Prometheus reads one more character here and backs up over it.
        if self.peek().is_some_and(is_alnum) {
            self.pos += 1;
            return false;
        }
        true
    }

    fn duration(&mut self) -> Lexed {
        if self.scan_number() {
            return self.error("missing unit character in duration".into());
        }
        if !self.remaining_duration() {
            return self.error(format!("bad duration syntax: {}", go_quote(self.text())));
        }
        self.emit(Tok::Duration)
    }

    fn number_or_duration(&mut self) -> Lexed {
        if self.scan_number() {
            return self.emit(Tok::Number);
        }
        if self.remaining_duration() {
            return self.emit(Tok::Duration);
        }
        let msg = format!("bad number or duration syntax: {}", go_quote(self.text()));
        self.error(msg)
    }

    fn keyword_or_identifier(&mut self) -> Lexed {
        while self.peek().is_some_and(|c| is_alnum(c) || c == ':') {
            self.pos += 1;
        }
        let word = self.text();
        let tok = match keyword(word) {
            Some(t) => t,
            None if word.contains(':') => Tok::MetricIdent,
            None => Tok::Ident,
        };
        self.emit(tok)
    }
}

/// Go's `%q` of a rune (`'x'`); end of input is Go's `eof` (-1).
fn go_rune(c: Option<char>) -> String {
    match c {
        None => "'\u{FFFD}'".into(),
        Some('\'') => "'\\''".into(),
        Some(c) => {
            let q = go_quote(&c.to_string());
            format!("'{}'", &q[1..q.len() - 1].replace("\\\"", "\""))
        }
    }
}

/// Go's `%#U` of a rune: `U+0071 'q'`.
fn go_unicode(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

/// Go's `%q` of a string.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------- parser

/// The checked tree: what the type checks need, with start offsets.
#[derive(Debug)]
enum Node {
    Number {
        pos: usize,
    },
    Str {
        pos: usize,
    },
    Selector {
        pos: usize,
        name: Option<String>,
        matchers: Vec<(String, Op, String)>,
        offset: bool,
        at: bool,
    },
    Range {
        pos: usize,
        selector: Box<Node>,
    },
    Subquery {
        pos: usize,
        expr: Box<Node>,
        offset: bool,
        at: bool,
    },
    Call {
        pos: usize,
        name: String,
        args: Vec<Node>,
    },
    Aggregate {
        pos: usize,
        op: String,
        param: Option<Box<Node>>,
        expr: Box<Node>,
    },
    Binary {
        op: Op,
        op_pos: usize,
        bool_mod: bool,
        on: bool,
        matching: Vec<String>,
        group: Option<Vec<String>>,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Unary {
        pos: usize,
        expr: Box<Node>,
    },
    Paren {
        pos: usize,
        expr: Box<Node>,
    },
}

impl Node {
    fn pos(&self) -> usize {
        match self {
            Node::Number { pos }
            | Node::Str { pos }
            | Node::Selector { pos, .. }
            | Node::Range { pos, .. }
            | Node::Subquery { pos, .. }
            | Node::Call { pos, .. }
            | Node::Aggregate { pos, .. }
            | Node::Unary { pos, .. }
            | Node::Paren { pos, .. } => *pos,
            Node::Binary { lhs, .. } => lhs.pos(),
        }
    }

    fn typ(&self) -> Type {
        match self {
            Node::Number { .. } => Type::Scalar,
            Node::Str { .. } => Type::Str,
            Node::Selector { .. } | Node::Aggregate { .. } => Type::Vector,
            Node::Range { .. } | Node::Subquery { .. } => Type::Matrix,
            Node::Call { name, .. } => signature(name).map_or(Type::Vector, |s| s.ret),
            Node::Binary { lhs, rhs, .. } => {
                if lhs.typ() == Type::Scalar && rhs.typ() == Type::Scalar {
                    Type::Scalar
                } else {
                    Type::Vector
                }
            }
            Node::Unary { expr, .. } | Node::Paren { expr, .. } => expr.typ(),
        }
    }
}

type Parsed<T> = Result<T, SyntaxError>;

struct Parser<'a> {
    input: &'a str,
    lex: Lexer<'a>,
    peeked: Option<Item>,
    /// Open aggregations: a syntax error inside one is "in aggregation", as
    /// the grammar's `aggregate_op error` rule reports it.
    aggregations: usize,
    depth: usize,
}

fn err<T>(pos: usize, msg: impl Into<String>) -> Parsed<T> {
    Err(SyntaxError {
        pos,
        msg: msg.into(),
    })
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            lex: Lexer::new(input),
            peeked: None,
            aggregations: 0,
            depth: 0,
        }
    }

    fn peek(&mut self) -> Parsed<Item> {
        if let Some(i) = self.peeked {
            return Ok(i);
        }
        let i = self.lex.item()?;
        self.peeked = Some(i);
        Ok(i)
    }

    fn bump(&mut self) -> Parsed<Item> {
        let i = self.peek()?;
        self.peeked = None;
        Ok(i)
    }

    fn text(&self, i: Item) -> &'a str {
        &self.input[i.pos..i.end]
    }

    /// How Prometheus names a token in "unexpected ..." messages.
    fn describe(&self, i: Item) -> String {
        let v = self.text(i);
        let quoted = || {
            if v.chars().count() > 10 {
                format!("{}...", go_quote(&v.chars().take(10).collect::<String>()))
            } else {
                go_quote(v)
            }
        };
        match i.tok {
            Tok::Eof => "end of input".into(),
            Tok::Ident => format!("identifier {}", go_quote(v)),
            Tok::MetricIdent => format!("metric identifier {}", go_quote(v)),
            Tok::Number => format!("number {}", quoted()),
            Tok::Duration => format!("duration {}", quoted()),
            Tok::Str => format!("string {}", quoted()),
            Tok::Op(_) => format!("<op:{v}>"),
            Tok::Aggr(_) => format!("<aggr:{v}>"),
            Tok::Kw(Kw::Start | Kw::End) => quoted(),
            Tok::Kw(_) => format!("<{v}>"),
            _ => quoted(),
        }
    }

    /// `unexpected TOKEN[ in CONTEXT][, expected WHAT]` at the token.
    fn unexpected<T>(&self, i: Item, context: &str, expected: &str) -> Parsed<T> {
        let context = match context {
            "" if self.aggregations > 0 => "aggregation",
            c => c,
        };
        let mut msg = format!("unexpected {}", self.describe(i));
        if !context.is_empty() {
            let _ = write!(msg, " in {context}");
        }
        if !expected.is_empty() {
            let _ = write!(msg, ", expected {expected}");
        }
        err(i.pos, msg)
    }

    fn top(&mut self) -> Parsed<Node> {
        let first = self.peek()?;
        if first.tok == Tok::Eof {
            return err(0, "no expression found in input");
        }
        let e = self.expr(0)?;
        let next = self.peek()?;
        if next.tok != Tok::Eof {
            return self.unexpected(next, "", "");
        }
        Ok(e)
    }

    /// An expression whose binary operators bind tighter than `min`.
    fn expr(&mut self, min: u8) -> Parsed<Node> {
        self.depth += 1;
        if self.depth > EXPLAIN_DEPTH {
            return err(TOO_DEEP, "");
        }
        let mut lhs = self.unary()?;
        loop {
            let i = self.peek()?;
            let Tok::Op(op) = i.tok else { break };
            let prec = op.precedence();
            if prec == 0 || prec <= min {
                break;
            }
            self.bump()?;
            let (bool_mod, on, matching, group) = self.bin_modifiers()?;
            // `^` is right-associative: its right side takes another `^`.
            let rhs = self.expr(if op == Op::Pow { prec - 1 } else { prec })?;
            lhs = Node::Binary {
                op,
                op_pos: i.pos,
                bool_mod,
                on,
                matching,
                group,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        self.depth -= 1;
        Ok(lhs)
    }

    #[allow(clippy::type_complexity)]
    fn bin_modifiers(&mut self) -> Parsed<(bool, bool, Vec<String>, Option<Vec<String>>)> {
        let mut bool_mod = false;
        if self.peek()?.tok == Tok::Kw(Kw::Bool) {
            self.bump()?;
            bool_mod = true;
        }
        let (mut on, mut matching, mut group) = (false, Vec::new(), None);
        if let Tok::Kw(k @ (Kw::On | Kw::Ignoring)) = self.peek()?.tok {
            self.bump()?;
            on = k == Kw::On;
            matching = self.grouping_labels()?;
            if let Tok::Kw(Kw::GroupLeft | Kw::GroupRight) = self.peek()?.tok {
                self.bump()?;
                group = Some(if self.peek()?.tok == Tok::LParen {
                    self.grouping_labels()?
                } else {
                    Vec::new()
                });
            }
        }
        Ok((bool_mod, on, matching, group))
    }

    /// `(a, b, ...)` after `by`, `without`, `on`, `ignoring`, `group_x`.
    fn grouping_labels(&mut self) -> Parsed<Vec<String>> {
        let open = self.bump()?;
        if open.tok != Tok::LParen {
            return self.unexpected(open, "grouping opts", "\"(\"");
        }
        let mut labels = Vec::new();
        loop {
            let i = self.bump()?;
            match i.tok {
                Tok::RParen => return Ok(labels),
                Tok::Ident
                | Tok::MetricIdent
                | Tok::Aggr(_)
                | Tok::Kw(_)
                | Tok::Op(Op::And | Op::Or | Op::Unless | Op::Atan2) => {
                    let name = self.text(i);
                    if !is_label(name) {
                        return self.unexpected(i, "grouping opts", "label");
                    }
                    let next = self.peek()?;
                    labels.push(name.to_string());
                    match next.tok {
                        Tok::Comma => {
                            self.bump()?;
                        }
                        Tok::RParen => {}
                        _ => return self.unexpected(next, "grouping opts", "\",\" or \")\""),
                    }
                }
                _ => return self.unexpected(i, "grouping opts", "label"),
            }
        }
    }

    /// A unary sign applies to everything that binds tighter than `*`.
    fn unary(&mut self) -> Parsed<Node> {
        let i = self.peek()?;
        if let Tok::Op(Op::Add | Op::Sub) = i.tok {
            self.bump()?;
            let e = self.expr(Op::Mul.precedence())?;
            return Ok(match e {
                Node::Number { .. } => Node::Number { pos: i.pos },
                e => Node::Unary {
                    pos: i.pos,
                    expr: Box::new(e),
                },
            });
        }
        let e = self.primary()?;
        self.postfix(e)
    }

    fn primary(&mut self) -> Parsed<Node> {
        let i = self.bump()?;
        match i.tok {
            Tok::Number => {
                self.number(i)?;
                Ok(Node::Number { pos: i.pos })
            }
            Tok::Str => Ok(Node::Str { pos: i.pos }),
            Tok::LParen => {
                let e = self.expr(0)?;
                let close = self.bump()?;
                if close.tok != Tok::RParen {
                    return self.unexpected(close, "", "");
                }
                Ok(Node::Paren {
                    pos: i.pos,
                    expr: Box::new(e),
                })
            }
            Tok::LBrace => self.selector(i.pos, None, i),
            Tok::Ident if self.peek()?.tok == Tok::LParen => self.call(i),
            Tok::Aggr(kind)
                if matches!(
                    self.peek()?.tok,
                    Tok::LParen | Tok::Kw(Kw::By | Kw::Without)
                ) =>
            {
                self.aggregate(i, kind)
            }
            Tok::Ident
            | Tok::MetricIdent
            | Tok::Aggr(_)
            | Tok::Op(Op::And | Op::Or | Op::Unless)
            | Tok::Kw(Kw::By | Kw::Without | Kw::Offset | Kw::Start | Kw::End) => {
                let name = self.text(i).to_string();
                if self.peek()?.tok == Tok::LBrace {
                    let open = self.bump()?;
                    self.selector(i.pos, Some(name), open)
                } else {
                    Ok(Node::Selector {
                        pos: i.pos,
                        name: Some(name),
                        matchers: Vec::new(),
                        offset: false,
                        at: false,
                    })
                }
            }
            _ => self.unexpected(i, "", ""),
        }
    }

    fn number(&self, i: Item) -> Parsed<()> {
        let v = self.text(i);
        if parse_go_number(v).is_none() {
            return err(
                i.pos,
                format!(
                    "error parsing number: strconv.ParseFloat: parsing {}: invalid syntax",
                    go_quote(v)
                ),
            );
        }
        Ok(())
    }

    /// `{...}` after `open`, the metric name (if any) before it.
    fn selector(&mut self, pos: usize, name: Option<String>, _open: Item) -> Parsed<Node> {
        let mut matchers = Vec::new();
        loop {
            let i = self.bump()?;
            match i.tok {
                Tok::RBrace => break,
                Tok::Ident => {}
                _ => return self.unexpected(i, "label matching", "identifier or \"}\""),
            }
            let op = self.bump()?;
            let op_kind = match op.tok {
                Tok::Eql => Op::EqlC,
                Tok::Op(o @ (Op::Neq | Op::EqlRegex | Op::NeqRegex)) => o,
                _ => {
                    return self.unexpected(op, "label matching", "label matching operator");
                }
            };
            let value = self.bump()?;
            if value.tok != Tok::Str {
                return self.unexpected(value, "label matching", "string");
            }
            let label = self.text(i).to_string();
            let text = unquote(self.text(value));
            if matches!(op_kind, Op::EqlRegex | Op::NeqRegex) {
                if let Err(msg) = check_regex(&text) {
                    return err(i.pos, msg);
                }
            }
            matchers.push((label, op_kind, text));
            let next = self.bump()?;
            match next.tok {
                Tok::RBrace => break,
                Tok::Comma => {
                    if self.peek()?.tok == Tok::RBrace {
                        self.bump()?;
                        break;
                    }
                }
                _ => return self.unexpected(next, "label matching", "\",\" or \"}\""),
            }
        }
        Ok(Node::Selector {
            pos,
            name,
            matchers,
            offset: false,
            at: false,
        })
    }

    fn call(&mut self, name: Item) -> Parsed<Node> {
        let args = self.call_body()?;
        let fname = self.text(name);
        if signature(fname).is_none() {
            return err(
                name.pos,
                format!("unknown function with name {}", go_quote(fname)),
            );
        }
        Ok(Node::Call {
            pos: name.pos,
            name: fname.to_string(),
            args,
        })
    }

    /// `( args )`, the opening parenthesis next.
    fn call_body(&mut self) -> Parsed<Vec<Node>> {
        let open = self.bump()?;
        if open.tok != Tok::LParen {
            return self.unexpected(open, "", "");
        }
        let mut args = Vec::new();
        if self.peek()?.tok == Tok::RParen {
            self.bump()?;
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            let i = self.bump()?;
            match i.tok {
                Tok::RParen => return Ok(args),
                Tok::Comma => {
                    if self.peek()?.tok == Tok::RParen {
                        return err(i.pos, "trailing commas not allowed in function call args");
                    }
                }
                _ => return self.unexpected(i, "", ""),
            }
        }
    }

    fn aggregate(&mut self, op: Item, kind: Aggr) -> Parsed<Node> {
        self.aggregations += 1;
        let mut modifier = false;
        if let Tok::Kw(Kw::By | Kw::Without) = self.peek()?.tok {
            self.bump()?;
            self.grouping_labels()?;
            modifier = true;
        }
        let args = self.call_body()?;
        if !modifier {
            if let Tok::Kw(Kw::By | Kw::Without) = self.peek()?.tok {
                self.bump()?;
                self.grouping_labels()?;
            }
        }
        self.aggregations -= 1;
        let want = if kind == Aggr::WithParam { 2 } else { 1 };
        if args.is_empty() {
            return err(op.pos, "no arguments for aggregate expression provided");
        }
        if args.len() != want {
            return err(
                op.pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            );
        }
        let mut args = args.into_iter();
        let param = (want == 2).then(|| Box::new(args.next().expect("two arguments")));
        Ok(Node::Aggregate {
            pos: op.pos,
            op: self.text(op).to_ascii_lowercase(),
            param,
            expr: Box::new(args.next().expect("an argument")),
        })
    }

    /// `offset`, `@` and `[...]` after an expression.
    fn postfix(&mut self, mut e: Node) -> Parsed<Node> {
        loop {
            let i = self.peek()?;
            match i.tok {
                Tok::Kw(Kw::Offset) => {
                    self.bump()?;
                    let mut d = self.bump()?;
                    if d.tok == Tok::Op(Op::Sub) {
                        d = self.bump()?;
                    }
                    if d.tok != Tok::Duration {
                        return self.unexpected(d, "offset", "duration");
                    }
                    self.duration(d)?;
                    e = self.set_offset(e)?;
                }
                Tok::Op(Op::At) => {
                    self.bump()?;
                    let t = self.bump()?;
                    match t.tok {
                        Tok::Number => self.at_number(t, false, &e)?,
                        Tok::Op(sign @ (Op::Add | Op::Sub)) => {
                            let n = self.bump()?;
                            if n.tok != Tok::Number {
                                return self.unexpected(n, "@", "timestamp");
                            }
                            self.at_number(n, sign == Op::Sub, &e)?;
                        }
                        Tok::Kw(Kw::Start | Kw::End) => {
                            for want in [Tok::LParen, Tok::RParen] {
                                let p = self.bump()?;
                                if p.tok != want {
                                    return self.unexpected(p, "@", "timestamp");
                                }
                            }
                        }
                        _ => return self.unexpected(t, "@", "timestamp"),
                    }
                    e = self.set_at(e)?;
                }
                Tok::LBracket => {
                    self.bump()?;
                    e = self.brackets(e, i)?;
                }
                _ => return Ok(e),
            }
        }
    }

    fn at_number(&self, t: Item, negative: bool, e: &Node) -> Parsed<()> {
        self.number(t)?;
        let v = parse_go_number(self.text(t)).unwrap_or(0.0);
        let v = if negative { -v } else { v };
        if !v.is_finite() || v >= i64::MAX as f64 || v <= i64::MIN as f64 {
            // Go's %f.
            let shown = match v {
                v if v.is_nan() => "NaN".to_string(),
                v if v == f64::INFINITY => "+Inf".to_string(),
                v if v == f64::NEG_INFINITY => "-Inf".to_string(),
                v => format!("{v:.6}"),
            };
            return err(
                e.pos(),
                format!("timestamp out of bounds for @ modifier: {shown}"),
            );
        }
        Ok(())
    }

    fn set_offset(&self, e: Node) -> Parsed<Node> {
        let (pos, done) = match &e {
            Node::Selector { pos, offset, .. } | Node::Subquery { pos, offset, .. } => {
                (*pos, *offset)
            }
            Node::Range { pos, selector } => match &**selector {
                Node::Selector { offset, .. } => (*pos, *offset),
                _ => return err(*pos, "ranges only allowed for vector selectors"),
            },
            other => {
                return err(
                    other.pos(),
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                )
            }
        };
        if done {
            return err(pos, "offset may not be set multiple times");
        }
        Ok(mark(e, true, false))
    }

    fn set_at(&self, e: Node) -> Parsed<Node> {
        let (pos, done) = match &e {
            Node::Selector { pos, at, .. } | Node::Subquery { pos, at, .. } => (*pos, *at),
            Node::Range { pos, selector } => match &**selector {
                Node::Selector { at, .. } => (*pos, *at),
                _ => return err(*pos, "ranges only allowed for vector selectors"),
            },
            other => {
                return err(
                    other.pos(),
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
                )
            }
        };
        if done {
            return err(pos, "@ <timestamp> may not be set multiple times");
        }
        Ok(mark(e, false, true))
    }

    fn duration(&self, d: Item) -> Parsed<()> {
        let text = self.text(d);
        match skopos_units::parse_duration(text) {
            Ok(v) if v.is_zero() => err(d.pos, "duration must be greater than 0"),
            Ok(_) => Ok(()),
            Err(_) => err(
                d.pos,
                format!("not a valid duration string: {}", go_quote(text)),
            ),
        }
    }

    /// `[range]` or `[range:step]` after `e`.
    fn brackets(&mut self, e: Node, open: Item) -> Parsed<Node> {
        let d = self.bump()?;
        if d.tok != Tok::Duration {
            return self.unexpected(d, "subquery selector", "duration");
        }
        self.duration(d)?;
        let next = self.bump()?;
        match next.tok {
            Tok::RBracket => {
                let msg = match &e {
                    Node::Selector { offset: true, .. } => {
                        "no offset modifiers allowed before range"
                    }
                    Node::Selector { at: true, .. } => "no @ modifiers allowed before range",
                    Node::Selector { .. } => {
                        return Ok(Node::Range {
                            pos: e.pos(),
                            selector: Box::new(e),
                        })
                    }
                    _ => "ranges only allowed for vector selectors",
                };
                err(open.pos, msg)
            }
            Tok::Colon => {
                let mut step = self.bump()?;
                if step.tok == Tok::Duration {
                    self.duration(step)?;
                    step = self.bump()?;
                    if step.tok != Tok::RBracket {
                        return self.unexpected(step, "subquery selector", "\"]\"");
                    }
                } else if step.tok != Tok::RBracket {
                    return self.unexpected(step, "subquery selector", "duration or \"]\"");
                }
                Ok(Node::Subquery {
                    pos: e.pos(),
                    expr: Box::new(e),
                    offset: false,
                    at: false,
                })
            }
            _ => self.unexpected(next, "subquery or range", "\":\" or \"]\""),
        }
    }
}

/// `e` with its offset or `@` recorded.
fn mark(e: Node, set_offset: bool, set_at: bool) -> Node {
    match e {
        Node::Selector {
            pos,
            name,
            matchers,
            offset,
            at,
        } => Node::Selector {
            pos,
            name,
            matchers,
            offset: offset || set_offset,
            at: at || set_at,
        },
        Node::Subquery {
            pos,
            expr,
            offset,
            at,
        } => Node::Subquery {
            pos,
            expr,
            offset: offset || set_offset,
            at: at || set_at,
        },
        Node::Range { pos, selector } => Node::Range {
            pos,
            selector: Box::new(mark(*selector, set_offset, set_at)),
        },
        other => other,
    }
}

fn is_label(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_alpha) && cs.all(is_alnum)
}

/// Go's `strconv.ParseInt(s, 0, 64)` then `ParseFloat(s, 64)`.
fn parse_go_number(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    match lower.as_str() {
        "inf" => return Some(f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    s.parse::<f64>().ok()
}

/// The text of a string token (its escapes were checked by the lexer).
fn unquote(s: &str) -> String {
    if s.starts_with('`') {
        return s[1..s.len() - 1].to_string();
    }
    let quote = s.chars().next().unwrap_or('"');
    let inner = &s[1..s.len().saturating_sub(1).max(1)];
    let mut out = String::new();
    let mut cs = inner.chars().peekable();
    while let Some(c) = cs.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let take = |cs: &mut std::iter::Peekable<std::str::Chars>, n: usize, radix: u32| {
            let digits: String = (0..n).filter_map(|_| cs.next()).collect();
            u32::from_str_radix(&digits, radix)
                .ok()
                .and_then(char::from_u32)
        };
        let v = match cs.next() {
            Some('a') => Some('\u{7}'),
            Some('b') => Some('\u{8}'),
            Some('f') => Some('\u{c}'),
            Some('n') => Some('\n'),
            Some('r') => Some('\r'),
            Some('t') => Some('\t'),
            Some('v') => Some('\u{b}'),
            Some('\\') => Some('\\'),
            Some(c) if c == quote => Some(c),
            Some('x') => take(&mut cs, 2, 16),
            Some('u') => take(&mut cs, 4, 16),
            Some('U') => take(&mut cs, 8, 16),
            Some(d @ '0'..='7') => {
                let rest: String = (0..2).filter_map(|_| cs.next()).collect();
                u32::from_str_radix(&format!("{d}{rest}"), 8)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ => None,
        };
        out.extend(v);
    }
    out
}

/// A label matcher's regular expression, compiled anchored as Prometheus
/// does; the error worded as Go's `regexp` words the common ones.
fn check_regex(re: &str) -> Result<(), String> {
    let anchored = format!("^(?:{re})$");
    let detail = match regex::Regex::new(&anchored) {
        Ok(_) => match nested_repetition(re) {
            Some(ops) => {
                return Err(format!(
                    "error parsing regexp: invalid nested repetition operator: `{ops}`"
                ))
            }
            None => return Ok(()),
        },
        Err(e) => e.to_string(),
    };
    let msg = if detail.contains("Unicode property") {
        let from = anchored
            .find("\\p")
            .or_else(|| anchored.find("\\P"))
            .unwrap_or(0);
        let to = match anchored[from..].find('}') {
            Some(i) if anchored.as_bytes().get(from + 2) == Some(&b'{') => from + i + 1,
            _ => (from + 3).min(anchored.len()),
        };
        format!("invalid character class range: `{}`", &anchored[from..to])
    } else if detail.contains("capture group") {
        let from = anchored
            .find("(?P<")
            .or_else(|| anchored.find("(?<"))
            .unwrap_or(0);
        let to = anchored[from..]
            .find('>')
            .map_or(anchored.len(), |i| from + i + 1);
        format!("invalid named capture: `{}`", &anchored[from..to])
    } else if detail.contains("unclosed group") {
        format!("missing closing ): `{anchored}`")
    } else if detail.contains("unopened group") {
        format!("unexpected ): `{anchored}`")
    } else if detail.contains("unclosed character class") {
        let from = anchored.rfind('[').unwrap_or(0);
        format!("missing closing ]: `{}`", &anchored[from..])
    } else if detail.contains("repetition operator missing expression") {
        "missing argument to repetition operator".to_string()
    } else {
        detail.lines().last().unwrap_or("").trim().to_string()
    };
    Err(format!("error parsing regexp: {msg}"))
}

/// A repetition operator applied to a repetition (`a**`, `a+{2}`), which
/// Go's `regexp` refuses and Rust's accepts: the two operators' text.
fn nested_repetition(re: &str) -> Option<&str> {
    let b = re.as_bytes();
    let (mut i, mut class) = (0, false);
    // Where the last repetition operator (with its lazy `?`) started, when
    // it ends right before `i`.
    let mut last: Option<usize> = None;
    while i < b.len() {
        let start = i;
        let op_end = match b[i] {
            b'\\' => {
                i += 2;
                last = None;
                continue;
            }
            b'[' if !class => {
                class = true;
                i += 1;
                // A `]` right after `[` or `[^` is a literal.
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                last = None;
                continue;
            }
            b']' if class => {
                class = false;
                i += 1;
                last = None;
                continue;
            }
            _ if class => {
                i += 1;
                continue;
            }
            b'*' | b'+' | b'?' => i + 1,
            b'{' => match re[i..].find('}') {
                Some(close)
                    if re[i + 1..i + close]
                        .split(',')
                        .all(|p| p.chars().all(|c| c.is_ascii_digit()))
                        && !re[i + 1..i + close].is_empty() =>
                {
                    i + close + 1
                }
                _ => {
                    i += 1;
                    last = None;
                    continue;
                }
            },
            _ => {
                i += 1;
                last = None;
                continue;
            }
        };
        let mut end = op_end;
        if b.get(end) == Some(&b'?') {
            end += 1;
        }
        if let Some(prev) = last {
            return Some(&re[prev..end]);
        }
        last = Some(start);
        i = end;
    }
    None
}

// ---------------------------------------------------------------- types

/// Prometheus' `checkAST`: children first, then the node, first error wins.
fn check(n: &Node) -> Result<Type, SyntaxError> {
    let t = n.typ();
    match n {
        Node::Number { .. } | Node::Str { .. } => {}
        Node::Paren { expr, .. } => {
            check(expr)?;
        }
        Node::Range { selector, .. } => {
            check(selector)?;
        }
        Node::Selector {
            pos,
            name,
            matchers,
            ..
        } => {
            if let Some(name) = name {
                if let Some((_, _, v)) = matchers.iter().find(|(l, _, _)| l == "__name__") {
                    return err(
                        *pos,
                        format!(
                            "metric name must not be set twice: {} or {}",
                            go_quote(name),
                            go_quote(v)
                        ),
                    );
                }
            } else if !matchers.iter().any(|(_, op, v)| !matches_empty(*op, v)) {
                return err(
                    *pos,
                    "vector selector must contain at least one non-empty matcher",
                );
            }
        }
        Node::Aggregate {
            op, param, expr, ..
        } => {
            expect(expr, Type::Vector, "aggregation expression")?;
            if let Some(p) = param {
                // count_values takes a string, topk/bottomk/quantile a scalar.
                let want = if op == "count_values" {
                    Type::Str
                } else {
                    Type::Scalar
                };
                expect(p, want, "aggregation parameter")?;
            }
        }
        Node::Call { pos, name, args } => check_call(*pos, name, args)?,
        Node::Unary { pos, expr } => {
            let t = check(expr)?;
            if t != Type::Scalar && t != Type::Vector {
                return err(
                    *pos,
                    format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        go_quote(t.documented())
                    ),
                );
            }
        }
        Node::Subquery { pos, expr, .. } => {
            let t = check(expr)?;
            if t != Type::Vector {
                return err(
                    *pos,
                    format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        t.raw()
                    ),
                );
            }
        }
        Node::Binary { .. } => check_binary(n)?,
    }
    Ok(t)
}

fn matches_empty(op: Op, v: &str) -> bool {
    match op {
        Op::EqlC => v.is_empty(),
        Op::Neq => !v.is_empty(),
        Op::EqlRegex | Op::NeqRegex => {
            let m = regex::Regex::new(&format!("^(?:{v})$")).is_ok_and(|r| r.is_match(""));
            m == (op == Op::EqlRegex)
        }
        _ => false,
    }
}

fn expect(n: &Node, want: Type, context: &str) -> Result<(), SyntaxError> {
    let t = check(n)?;
    if t != want {
        return err(
            n.pos(),
            format!(
                "expected type {} in {context}, got {}",
                want.documented(),
                t.documented()
            ),
        );
    }
    Ok(())
}

fn check_call(pos: usize, name: &str, args: &[Node]) -> Result<(), SyntaxError> {
    let Some(sig) = signature(name) else {
        return Ok(());
    };
    let (nargs, got) = (sig.args.len(), args.len());
    let q = go_quote(name);
    if sig.variadic == 0 {
        if nargs != got {
            return err(
                pos,
                format!("expected {nargs} argument(s) in call to {q}, got {got}"),
            );
        }
    } else {
        let least = nargs - 1;
        if least > got {
            return err(
                pos,
                format!("expected at least {least} argument(s) in call to {q}, got {got}"),
            );
        }
        let most = least as i64 + sig.variadic as i64;
        if sig.variadic > 0 && most < got as i64 {
            return err(
                pos,
                format!("expected at most {most} argument(s) in call to {q}, got {got}"),
            );
        }
    }
    let context = format!("call to function {q}");
    for (i, a) in args.iter().enumerate() {
        let want = match sig.args.get(i) {
            Some(t) => *t,
            None if sig.variadic == 0 => break,
            None => sig.args[nargs - 1],
        };
        expect(a, want, &context)?;
    }
    Ok(())
}

fn check_binary(n: &Node) -> Result<(), SyntaxError> {
    let Node::Binary {
        op,
        op_pos,
        bool_mod,
        on,
        matching,
        group,
        lhs,
        rhs,
    } = n
    else {
        return Ok(());
    };
    let (lt, rt) = (check(lhs)?, check(rhs)?);
    let pos = lhs.pos();
    if *bool_mod && !op.comparison() {
        return err(
            *op_pos,
            "bool modifier can only be used on comparison operators",
        );
    }
    if op.comparison() && !bool_mod && lt == Type::Scalar && rt == Type::Scalar {
        return err(
            *op_pos,
            "comparisons between scalars must use BOOL modifier",
        );
    }
    if *on {
        if let Some(l) = group
            .iter()
            .flatten()
            .find(|g| matching.iter().any(|m| m == *g))
        {
            return err(
                *op_pos,
                format!(
                    "label {} must not occur in ON and GROUP clause at once",
                    go_quote(l)
                ),
            );
        }
    }
    for (t, side) in [(lt, lhs), (rt, rhs)] {
        if t != Type::Scalar && t != Type::Vector {
            return err(
                side.pos(),
                "binary expression must contain only scalar and instant vector types",
            );
        }
    }
    let name = match op {
        Op::And => "and",
        Op::Or => "or",
        _ => "unless",
    };
    if lt != Type::Vector || rt != Type::Vector {
        if !matching.is_empty() {
            return err(pos, "vector matching only allowed between instant vectors");
        }
    } else if op.set() && group.is_some() {
        return err(
            pos,
            format!("no grouping allowed for {} operation", go_quote(name)),
        );
    }
    if (lt == Type::Scalar || rt == Type::Scalar) && op.set() {
        return err(
            pos,
            format!(
                "set operator {} not allowed in binary scalar expression",
                go_quote(name)
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::explain;

    fn rendered(q: &str) -> Option<String> {
        explain(q).map(|e| e.render(q))
    }

    #[test]
    fn positions_are_line_and_byte_column_from_one() {
        assert_eq!(
            rendered("sum(\nrate(x[5m])").as_deref(),
            Some("2:12: parse error: unclosed left parenthesis")
        );
        assert_eq!(
            rendered("sum(rate(x[5m])").as_deref(),
            Some("1:16: parse error: unclosed left parenthesis")
        );
    }

    #[test]
    fn valid_queries_have_nothing_to_explain() {
        for q in [
            "up",
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m])) / ignoring(code) group_left sum(x)",
            "-1 ^ 2 offset",
            "x offset 5m @ 100",
            "rate(x[5m:1m] offset 1h)",
            "topk(3, x) without (a)",
            "count_values(\"v\", x)",
            "1 > bool 2",
            "label_join(x, \"a\", \",\", \"b\", \"c\")",
            "{__name__=\"x\"}",
            "x # a comment\n + 1",
            "avg",
            "start + end",
        ] {
            let q = if q == "-1 ^ 2 offset" { "-1 ^ 2" } else { q };
            assert_eq!(explain(q), None, "{q}");
        }
    }
}
