//! The LogQL lexer: text to tokens, each with its byte offset so that errors
//! can name a line and column.

use crate::units::{parse_bytes, parse_query_duration};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    /// Nanoseconds.
    Dur(i64),
    Bytes(u64),
    /// `--strict`, `--keep-empty`.
    Flag(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `|=`
    PipeExact,
    /// `|~`
    PipeMatch,
    /// `|>`
    PipePattern,
    /// `!>`
    NotPattern,
    Pipe,
    /// `==`
    CmpEq,
    Gt,
    Ge,
    Lt,
    Le,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eof,
}

impl Tok {
    /// How a syntax error names the token, in the style of Loki's yacc parser.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(_) => "IDENTIFIER".into(),
            Tok::Str(_) => "STRING".into(),
            Tok::Num(_) => "NUMBER".into(),
            Tok::Dur(_) => "DURATION".into(),
            Tok::Bytes(_) => "BYTES".into(),
            Tok::Flag(f) => format!("--{f}"),
            Tok::Eof => "$end".into(),
            other => other.symbol().into(),
        }
    }

    pub fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrack => "[",
            Tok::RBrack => "]",
            Tok::Comma => ",",
            Tok::Eq => "=",
            Tok::Neq => "!=",
            Tok::Re => "=~",
            Tok::Nre => "!~",
            Tok::PipeExact => "|=",
            Tok::PipeMatch => "|~",
            Tok::PipePattern => "|>",
            Tok::NotPattern => "!>",
            Tok::Pipe => "|",
            Tok::CmpEq => "==",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Add => "+",
            Tok::Sub => "-",
            Tok::Mul => "*",
            Tok::Div => "/",
            Tok::Mod => "%",
            Tok::Pow => "^",
            _ => "",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    /// Byte offset in the query.
    pub pos: usize,
}

/// A lexing failure at a byte offset.
#[derive(Debug)]
pub struct LexError {
    pub pos: usize,
    pub msg: String,
}

pub fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            // Comment to the end of the line.
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let two = bytes.get(i + 1).copied();
        let (tok, len) = match c {
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBrack, 1),
            b']' => (Tok::RBrack, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Add, 1),
            b'*' => (Tok::Mul, 1),
            b'/' => (Tok::Div, 1),
            b'%' => (Tok::Mod, 1),
            b'^' => (Tok::Pow, 1),
            b'=' => match two {
                Some(b'~') => (Tok::Re, 2),
                Some(b'=') => (Tok::CmpEq, 2),
                _ => (Tok::Eq, 1),
            },
            b'!' => match two {
                Some(b'=') => (Tok::Neq, 2),
                Some(b'~') => (Tok::Nre, 2),
                Some(b'>') => (Tok::NotPattern, 2),
                _ => {
                    return Err(LexError {
                        pos: start,
                        msg: "syntax error: unexpected character '!'".into(),
                    })
                }
            },
            b'|' => match two {
                Some(b'=') => (Tok::PipeExact, 2),
                Some(b'~') => (Tok::PipeMatch, 2),
                Some(b'>') => (Tok::PipePattern, 2),
                _ => (Tok::Pipe, 1),
            },
            b'>' => match two {
                Some(b'=') => (Tok::Ge, 2),
                _ => (Tok::Gt, 1),
            },
            b'<' => match two {
                Some(b'=') => (Tok::Le, 2),
                _ => (Tok::Lt, 1),
            },
            b'-' => {
                if two == Some(b'-') && bytes.get(i + 2).is_some_and(|b| b.is_ascii_alphabetic()) {
                    let end = scan_while(bytes, i + 2, |b| {
                        b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
                    });
                    (Tok::Flag(src[i + 2..end].to_string()), end - i)
                } else {
                    (Tok::Sub, 1)
                }
            }
            b'"' | b'`' => {
                let (s, len) = lex_string(src, i)?;
                (Tok::Str(s), len)
            }
            b'0'..=b'9' | b'.' if c != b'.' || two.is_some_and(|b| b.is_ascii_digit()) => {
                lex_number(src, i)?
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = scan_while(bytes, i, |b| b.is_ascii_alphanumeric() || b == b'_');
                (Tok::Ident(src[i..end].to_string()), end - i)
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(LexError {
                    pos: start,
                    msg: format!("syntax error: unexpected character {ch:?}"),
                });
            }
        };
        out.push(Token { tok, pos: start });
        i += len;
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

fn scan_while(bytes: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while i < bytes.len() && f(bytes[i]) {
        i += 1;
    }
    i
}

/// A number, or a number with a unit (a duration such as `1m30s`, or a
/// byte size such as `5KiB`); a duration wins over bytes (`5m` is minutes).
fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), LexError> {
    let bytes = src.as_bytes();
    let mut i = scan_while(bytes, start, |b| b.is_ascii_digit());
    if i < bytes.len() && bytes[i] == b'.' {
        i = scan_while(bytes, i + 1, |b| b.is_ascii_digit());
    }
    if i < bytes.len()
        && (bytes[i] == b'e' || bytes[i] == b'E')
        && bytes.get(i + 1).is_some_and(|b| {
            b.is_ascii_digit()
                || ((*b == b'+' || *b == b'-') && bytes.get(i + 2).is_some_and(u8::is_ascii_digit))
        })
    {
        i = scan_while(bytes, i + 2, |b| b.is_ascii_digit());
    }
    if i < bytes.len() && (bytes[i].is_ascii_alphabetic() || bytes[i] >= 0x80) {
        // A unit follows: take every alphanumeric run (`1h30m`, `1.5KiB`).
        let end = scan_while(bytes, i, |b| {
            b.is_ascii_alphanumeric() || b == b'.' || b >= 0x80
        });
        let text = &src[start..end];
        if let Ok(ns) = parse_query_duration(text) {
            return Ok((Tok::Dur(ns), end - start));
        }
        if let Ok(b) = parse_bytes(text) {
            return Ok((Tok::Bytes(b), end - start));
        }
        return Err(LexError {
            pos: start,
            msg: format!("syntax error: invalid number, duration or size {text:?}"),
        });
    }
    let text = &src[start..i];
    let v: f64 = text.parse().map_err(|_| LexError {
        pos: start,
        msg: format!("syntax error: invalid number {text:?}"),
    })?;
    // Go's ParseFloat refuses what overflows (and the canonical form of
    // infinity, `+Inf`, would not parse back: found by fuzzing).
    if !v.is_finite() {
        return Err(LexError {
            pos: start,
            msg: format!("syntax error: number out of range {text:?}"),
        });
    }
    Ok((Tok::Num(v), i - start))
}

/// A double-quoted string with Go escapes, or a raw backquoted string.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), LexError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    let unterminated = || LexError {
        pos: start,
        msg: "literal not terminated".into(),
    };
    while let Some((off, c)) = chars.next() {
        if c == quote {
            return Ok((out, off + 2));
        }
        if c == '\\' && quote == '"' {
            let (_, e) = chars.next().ok_or_else(unterminated)?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut code = 0u32;
                    for _ in 0..n {
                        let (_, h) = chars.next().ok_or_else(unterminated)?;
                        code = code * 16
                            + h.to_digit(16).ok_or_else(|| LexError {
                                pos: start,
                                msg: "invalid syntax: bad escape in string".into(),
                            })?;
                    }
                    out.push(char::from_u32(code).ok_or_else(|| LexError {
                        pos: start,
                        msg: "invalid syntax: bad escape in string".into(),
                    })?);
                }
                _ => {
                    return Err(LexError {
                        pos: start,
                        msg: "invalid syntax: unknown escape sequence in string".into(),
                    })
                }
            }
            continue;
        }
        if c == '\n' && quote == '"' {
            return Err(unterminated());
        }
        out.push(c);
    }
    Err(unterminated())
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn units_after_numbers() {
        assert_eq!(toks("5m")[0], Tok::Dur(300_000_000_000));
        assert_eq!(toks("1KB")[0], Tok::Bytes(1000));
        assert_eq!(toks("0.99")[0], Tok::Num(0.99));
        assert_eq!(toks("1e3")[0], Tok::Num(1000.0));
    }

    #[test]
    fn operators_and_flags() {
        assert_eq!(
            toks("|= != |~ !~ | == >= --strict"),
            vec![
                Tok::PipeExact,
                Tok::Neq,
                Tok::PipeMatch,
                Tok::Nre,
                Tok::Pipe,
                Tok::CmpEq,
                Tok::Ge,
                Tok::Flag("strict".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings_unescape() {
        assert_eq!(toks(r#""a\"b\\n""#)[0], Tok::Str("a\"b\\n".into()));
        assert_eq!(toks(r"`a\d`")[0], Tok::Str("a\\d".into()));
        assert!(lex("\"abc").is_err());
    }
}
