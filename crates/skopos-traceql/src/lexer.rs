//! Splits TraceQL text into tokens, each with its byte offset.

use crate::ast::{is_attr_terminator, AttrRef, AttrScope};
use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    AndAnd,
    OrOr,
    Bang,
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Re,
    /// `!~`: regex non-match inside a filter, "not sibling" between spansets.
    NotRe,
    Desc,
    Anc,
    Tilde,
    NotChild,
    NotDesc,
    NotParent,
    NotAnc,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Str(String),
    Int(i64),
    Float(f64),
    Duration(i64),
    Attr(AttrRef),
    /// A bare word: keyword, literal word or intrinsic (`span:name`).
    Ident(String),
    Eof,
}

impl Tok {
    /// How an error message names the token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Int(i) => format!("number {i}"),
            Tok::Float(f) => format!("number {f}"),
            Tok::Duration(d) => format!("duration {}", crate::ast::format_duration(*d)),
            Tok::Attr(a) => format!("attribute `{a}`"),
            Tok::Ident(w) => format!("`{w}`"),
            Tok::Eof => "end of query".into(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Pipe => "|",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Bang => "!",
            Tok::Eq => "=",
            Tok::Neq => "!=",
            Tok::Gt => ">",
            Tok::Gte => ">=",
            Tok::Lt => "<",
            Tok::Lte => "<=",
            Tok::Re => "=~",
            Tok::NotRe => "!~",
            Tok::Desc => ">>",
            Tok::Anc => "<<",
            Tok::Tilde => "~",
            Tok::NotChild => "!>",
            Tok::NotDesc => "!>>",
            Tok::NotParent => "!<",
            Tok::NotAnc => "!<<",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            _ => "?",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Most bytes a query may have.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(ParseError::at(
            src,
            0,
            format!(
                "query is {} bytes, more than the limit of {MAX_QUERY_BYTES}",
                src.len()
            ),
        ));
    }
    let mut lx = Lexer { src, pos: 0 };
    let mut out = Vec::new();
    loop {
        lx.skip_space();
        let pos = lx.pos;
        let Some(c) = lx.peek() else {
            out.push(Token { tok: Tok::Eof, pos });
            return Ok(out);
        };
        let tok = lx.token(c)?;
        out.push(Token { tok, pos });
    }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, pos, msg.into())
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// Consumes `s` if the input continues with it.
    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn token(&mut self, c: char) -> Result<Tok, ParseError> {
        let start = self.pos;
        // Longest operators first.
        for (text, tok) in [
            ("!>>", Tok::NotDesc),
            ("!<<", Tok::NotAnc),
            ("&&", Tok::AndAnd),
            ("||", Tok::OrOr),
            ("!=", Tok::Neq),
            ("!~", Tok::NotRe),
            ("!>", Tok::NotChild),
            ("!<", Tok::NotParent),
            ("=~", Tok::Re),
            (">>", Tok::Desc),
            ("<<", Tok::Anc),
            (">=", Tok::Gte),
            ("<=", Tok::Lte),
        ] {
            if self.eat(text) {
                return Ok(tok);
            }
        }
        let single = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '|' => Some(Tok::Pipe),
            '!' => Some(Tok::Bang),
            '=' => Some(Tok::Eq),
            '>' => Some(Tok::Gt),
            '<' => Some(Tok::Lt),
            '~' => Some(Tok::Tilde),
            '+' => Some(Tok::Plus),
            '-' => Some(Tok::Minus),
            '*' => Some(Tok::Star),
            '/' => Some(Tok::Slash),
            '%' => Some(Tok::Percent),
            _ => None,
        };
        if let Some(t) = single {
            self.bump();
            return Ok(t);
        }
        match c {
            '"' => {
                self.bump();
                Ok(Tok::Str(self.quoted(start)?))
            }
            '`' => {
                self.bump();
                let body_start = self.pos;
                match self.src[self.pos..].find('`') {
                    Some(n) => {
                        let s = self.src[body_start..body_start + n].to_string();
                        self.pos = body_start + n + 1;
                        Ok(Tok::Str(s))
                    }
                    None => Err(self.err(start, "unterminated raw string (missing closing `)")),
                }
            }
            '.' => {
                self.bump();
                let name = self.attr_name(start)?;
                Ok(Tok::Attr(AttrRef {
                    scope: AttrScope::Unscoped,
                    name,
                }))
            }
            c if c.is_ascii_digit() => self.number(start),
            c if c.is_alphabetic() || c == '_' => {
                let word = self.word();
                if self.peek() == Some('.') {
                    let scope = match word.as_str() {
                        "span" => AttrScope::Span,
                        "resource" => AttrScope::Resource,
                        "parent" | "event" | "link" | "instrumentation" => {
                            return Err(self.err(
                                start,
                                format!("the `{word}.` attribute scope is not supported"),
                            ))
                        }
                        _ => {
                            return Err(self.err(
                                start,
                                format!(
                                    "unknown attribute scope `{word}`: expected `span.`, \
                                     `resource.` or `.`"
                                ),
                            ))
                        }
                    };
                    self.bump();
                    let name = self.attr_name(start)?;
                    return Ok(Tok::Attr(AttrRef { scope, name }));
                }
                if self.peek() == Some(':') && self.peek_at(1).is_some_and(|c| c.is_alphabetic()) {
                    self.bump();
                    let rest = self.word();
                    return Ok(Tok::Ident(format!("{word}:{rest}")));
                }
                Ok(Tok::Ident(word))
            }
            other => Err(self.err(start, format!("unexpected character {other:?}"))),
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                self.bump();
            } else {
                break;
            }
        }
        self.src[start..self.pos].to_string()
    }

    /// An attribute name after its scope's dot: quoted, or up to whitespace
    /// or an operator character.
    fn attr_name(&mut self, start: usize) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            let q = self.pos;
            self.bump();
            let name = self.quoted(q)?;
            if name.is_empty() {
                return Err(self.err(start, "empty attribute name"));
            }
            return Ok(name);
        }
        let name_start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || is_attr_terminator(c) {
                break;
            }
            self.bump();
        }
        if self.pos == name_start {
            return Err(self.err(start, "expected an attribute name after `.`"));
        }
        Ok(self.src[name_start..self.pos].to_string())
    }

    /// A double-quoted string body; the opening quote is consumed.
    fn quoted(&mut self, start: usize) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.err(start, "unterminated string (missing closing \")"));
            };
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let esc_pos = self.pos - 1;
                    match self.bump() {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some('\'') => out.push('\''),
                        Some(other) => {
                            return Err(self.err(
                                esc_pos,
                                format!("unknown escape sequence \\{other} in string"),
                            ))
                        }
                        None => {
                            return Err(self.err(start, "unterminated string (missing closing \")"))
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// An integer, a float or a duration (`1.5s`, `1h30m`, `10us`).
    fn number(&mut self, start: usize) -> Result<Tok, ParseError> {
        let num = self.digits_and_dot();
        if self.peek().is_some_and(|c| c.is_alphabetic()) {
            // A duration: number-unit pairs.
            let mut total: i128 = 0;
            let mut num = num;
            loop {
                let unit_start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphabetic()) {
                    self.bump();
                }
                let unit = &self.src[unit_start..self.pos];
                let scale: i128 = match unit {
                    "ns" => 1,
                    "us" | "µs" | "μs" => 1_000,
                    "ms" => 1_000_000,
                    "s" => 1_000_000_000,
                    "m" => 60_000_000_000,
                    "h" => 3_600_000_000_000,
                    _ => {
                        return Err(self.err(
                            unit_start,
                            format!(
                                "unknown duration unit {unit:?}: expected ns, us, ms, s, m or h"
                            ),
                        ))
                    }
                };
                let value: f64 = num
                    .parse()
                    .map_err(|_| self.err(start, format!("bad number {num:?}")))?;
                // Checked before the cast, which saturates: a part past
                // i64 would overflow the sum (found by fuzzing).
                let part = (value * scale as f64).round();
                if !(part.is_finite() && part <= i64::MAX as f64) {
                    return Err(self.err(start, "duration is too large"));
                }
                total += part as i128;
                if total > i64::MAX as i128 {
                    return Err(self.err(start, "duration is too large"));
                }
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    num = self.digits_and_dot();
                    if !self.peek().is_some_and(|c| c.is_alphabetic()) {
                        return Err(self.err(start, "duration part without a unit"));
                    }
                } else {
                    break;
                }
            }
            return Ok(Tok::Duration(total as i64));
        }
        if num.contains('.') {
            return num
                .parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| self.err(start, format!("bad number {num:?}")));
        }
        num.parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| self.err(start, format!("integer {num} is out of range")))
    }

    fn digits_and_dot(&mut self) -> String {
        let start = self.pos;
        let mut seen_dot = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.bump();
            } else if c == '.' && !seen_dot && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) {
                seen_dot = true;
                self.bump();
            } else {
                break;
            }
        }
        self.src[start..self.pos].to_string()
    }
}
