//! The text formats the pipeline's parser stages read: a small JSON reader
//! (keeps each value's source span, so an extraction of an object or array
//! yields its JSON text, and numbers keep their spelling), the logfmt
//! scanner, the `pattern` expression, and the paths of `| json a="x.y[0]"`.

use crate::ast::PathPart;

// ------------------------------------------------------------------ JSON

#[derive(Debug, Clone)]
pub enum JKind {
    Obj(Vec<(String, JVal)>),
    Arr(Vec<JVal>),
    Str(String),
    /// As written.
    Num(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone)]
pub struct JVal {
    pub kind: JKind,
    pub start: usize,
    pub end: usize,
}

const ERR_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
const ERR_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
const ERR_STRING: &str = "Value is string, but can't find closing '\"' symbol";
const ERR_VALUE: &str = "Unknown value type";
/// The input ends where a value should start (jsonparser's MalformedJsonError).
const ERR_MALFORMED: &str = "Malformed JSON error";

/// A parse that may have stopped at an error: what was read before the
/// error (objects and arrays hold their complete members), and the error.
pub struct PartialJson {
    pub value: Option<JVal>,
    pub err: Option<String>,
}

/// Parses a JSON object at the start of `s` (after blanks), keeping what
/// was read before an error, as Loki's streaming reader keeps the keys it
/// saw; what follows the object is ignored.
pub fn parse_json_object_partial(s: &str) -> PartialJson {
    let mut p = JsonReader::new(s);
    p.ws();
    if p.peek() != Some(b'{') {
        return PartialJson {
            value: None,
            err: Some(ERR_OBJECT.into()),
        };
    }
    let value = p.value();
    PartialJson { value, err: p.err }
}

/// Parses any JSON value at the start of `s`, keeping what was read before an error.
pub fn parse_json_value_partial(s: &str) -> PartialJson {
    let mut p = JsonReader::new(s);
    p.ws();
    let value = p.value();
    PartialJson { value, err: p.err }
}

/// Parses a JSON object at the start of `s`; any error fails the whole parse.
pub fn parse_json_object(s: &str) -> Result<JVal, String> {
    let p = parse_json_object_partial(s);
    match (p.value, p.err) {
        (Some(v), None) => Ok(v),
        (_, err) => Err(err.unwrap_or_else(|| ERR_OBJECT.into())),
    }
}

struct JsonReader<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    depth: usize,
    /// The first error; once set, every level returns what it has.
    err: Option<String>,
}

impl<'a> JsonReader<'a> {
    fn new(s: &'a str) -> Self {
        JsonReader {
            b: s.as_bytes(),
            s,
            i: 0,
            depth: 0,
            err: None,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn fail(&mut self, msg: &str) {
        if self.err.is_none() {
            self.err = Some(msg.to_string());
        }
    }
    /// A value; `None` when an error came before any of it was complete.
    /// A container cut short by an error is returned with its complete members.
    fn value(&mut self) -> Option<JVal> {
        self.depth += 1;
        if self.depth > 512 {
            self.fail("Too deeply nested JSON");
            return None;
        }
        let start = self.i;
        let kind = match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if self.peek() != Some(b'"') {
                            self.fail(ERR_OBJECT);
                            break;
                        }
                        let key = match self.string() {
                            Ok(k) => k,
                            Err(e) => {
                                self.fail(&e);
                                break;
                            }
                        };
                        self.ws();
                        if self.peek() != Some(b':') {
                            self.fail(ERR_OBJECT);
                            break;
                        }
                        self.i += 1;
                        self.ws();
                        let v = self.value();
                        if let Some(v) = v {
                            fields.push((key, v));
                        }
                        if self.err.is_some() {
                            break;
                        }
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => {
                                self.fail(ERR_OBJECT);
                                break;
                            }
                        }
                    }
                }
                JKind::Obj(fields)
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if let Some(v) = self.value() {
                            items.push(v);
                        }
                        if self.err.is_some() {
                            break;
                        }
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => {
                                self.fail(ERR_ARRAY);
                                break;
                            }
                        }
                    }
                }
                JKind::Arr(items)
            }
            Some(b'"') => match self.string() {
                Ok(s) => JKind::Str(s),
                Err(e) => {
                    self.fail(&e);
                    return None;
                }
            },
            Some(b't') if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                JKind::Bool(true)
            }
            Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                JKind::Bool(false)
            }
            Some(b'n') if self.b[self.i..].starts_with(b"null") => {
                self.i += 4;
                JKind::Null
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                while matches!(self.peek(), Some(c) if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    self.i += 1;
                }
                let text = &self.s[start..self.i];
                if text.parse::<f64>().is_err() {
                    self.fail(ERR_VALUE);
                    return None;
                }
                JKind::Num(text.to_string())
            }
            None => {
                self.fail(ERR_MALFORMED);
                return None;
            }
            _ => {
                self.fail(ERR_VALUE);
                return None;
            }
        };
        self.depth -= 1;
        Some(JVal {
            kind,
            start,
            end: self.i,
        })
    }
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.i..];
            let stop = rest.find(['"', '\\']).ok_or(ERR_STRING)?;
            out.push_str(&rest[..stop]);
            self.i += stop;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Ok(out);
            }
            let e = *self.b.get(self.i + 1).ok_or(ERR_STRING)?;
            self.i += 2;
            match e {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\x08'),
                b'f' => out.push('\x0c'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hex = |r: &mut Self| -> Result<u32, String> {
                        let h = r.s.get(r.i..r.i + 4).ok_or(ERR_STRING)?;
                        r.i += 4;
                        u32::from_str_radix(h, 16).map_err(|_| ERR_STRING.to_string())
                    };
                    let mut code = hex(self)?;
                    if (0xd800..0xdc00).contains(&code) && self.s[self.i..].starts_with("\\u") {
                        self.i += 2;
                        let low = hex(self)?;
                        code =
                            0x10000 + ((code - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff);
                    }
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                _ => return Err(ERR_STRING.into()),
            }
        }
    }
}

/// Follows a path from a parsed value.
pub fn json_path<'a>(mut v: &'a JVal, path: &[PathPart]) -> Option<&'a JVal> {
    for part in path {
        v = match (&v.kind, part) {
            (JKind::Obj(fields), PathPart::Key(k)) => {
                // The last of duplicate keys wins, as for a map.
                &fields.iter().rev().find(|(name, _)| name == k)?.1
            }
            (JKind::Arr(items), PathPart::Index(i)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Parses a JSON extraction expression: `a.b`, `a[0]`, `["a b"].c`.
pub fn parse_json_path(expr: &str) -> Result<Vec<PathPart>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |m: &str| format!("cannot parse expression [{expr}]: {m}");
    let field = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && !matches!(chars[*i], '.' | '[' | ']') {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    if chars.is_empty() {
        return Err(err("empty expression"));
    }
    let mut expect_field = true;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                if expect_field {
                    return Err(err("unexpected '.'"));
                }
                i += 1;
                let f = field(&mut i);
                if f.is_empty() {
                    return Err(err("expected a field after '.'"));
                }
                out.push(PathPart::Key(f));
                expect_field = false;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'"') {
                    i += 1;
                    let start = i;
                    while i < chars.len() && chars[i] != '"' {
                        i += 1;
                    }
                    if i >= chars.len() {
                        return Err(err("unterminated string"));
                    }
                    out.push(PathPart::Key(chars[start..i].iter().collect()));
                    i += 1;
                } else {
                    let start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    let n: String = chars[start..i].iter().collect();
                    out.push(PathPart::Index(
                        n.parse().map_err(|_| err("expected an index"))?,
                    ));
                }
                if chars.get(i) != Some(&']') {
                    return Err(err("expected ']'"));
                }
                i += 1;
                expect_field = false;
            }
            _ if expect_field => {
                let f = field(&mut i);
                out.push(PathPart::Key(f));
                expect_field = false;
            }
            c => return Err(err(&format!("unexpected {c:?}"))),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- logfmt

/// Scans `key=value` pairs. A bare key has an empty value. Outside strict
/// mode a malformed pair is skipped (up to the next blank); in strict mode
/// scanning stops with the decoder's error text (`logfmt syntax error at
/// pos 7 : unexpected '='`, 1-based byte position).
pub fn scan_logfmt(
    line: &str,
    strict: bool,
    mut f: impl FnMut(&str, String),
) -> Result<(), String> {
    let b = line.as_bytes();
    let mut i = 0;
    let skip_garbage = |i: &mut usize| {
        while *i < b.len() && b[*i] > b' ' {
            *i += 1;
        }
    };
    while i < b.len() {
        if b[i] <= b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        if i == start || (i < b.len() && b[i] == b'"') {
            let c = b[i] as char;
            if strict {
                return Err(format!(
                    "logfmt syntax error at pos {} : unexpected {c:?}",
                    i + 1
                ));
            }
            skip_garbage(&mut i);
            continue;
        }
        let key = &line[start..i];
        if i >= b.len() || b[i] != b'=' {
            f(key, String::new());
            continue;
        }
        i += 1;
        if i < b.len() && b[i] == b'"' {
            let mut value = String::new();
            let mut j = i + 1;
            let mut closed = false;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        closed = true;
                        j += 1;
                        break;
                    }
                    b'\\' if j + 1 < b.len() => {
                        // The escaped character may be more than one byte
                        // (`\é`): take it whole, never half of it.
                        let e = line[j + 1..].chars().next().unwrap_or('\\');
                        value.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        j += 1 + e.len_utf8();
                    }
                    _ => {
                        let ch = line[j..].chars().next().unwrap_or(' ');
                        value.push(ch);
                        j += ch.len_utf8();
                    }
                }
            }
            if !closed {
                if strict {
                    return Err(format!(
                        "logfmt syntax error at pos {} : unterminated quoted value",
                        b.len() + 1
                    ));
                }
                break;
            }
            i = j;
            f(key, value);
        } else {
            let vstart = i;
            while i < b.len() && b[i] > b' ' && b[i] != b'"' && b[i] != b'=' {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'=') {
                if strict {
                    return Err(format!(
                        "logfmt syntax error at pos {} : unexpected {:?}",
                        i + 1,
                        b[i] as char
                    ));
                }
                skip_garbage(&mut i);
                continue;
            }
            f(key, line[vstart..i].to_string());
        }
    }
    Ok(())
}

// --------------------------------------------------------------- pattern

#[derive(Debug, Clone, PartialEq)]
enum PNode {
    Literal(String),
    /// `None` for `<_>`.
    Capture(Option<String>),
}

/// A `pattern` expression: literals and `<name>` captures.
#[derive(Debug, Clone)]
pub struct Pattern {
    nodes: Vec<PNode>,
    names: Vec<String>,
}

impl Pattern {
    /// A pattern for the `pattern` parser: at least one named capture.
    pub fn parse(src: &str) -> Result<Pattern, String> {
        let p = Pattern::parse_filter(src)?;
        if p.names.is_empty() {
            return Err("at least one capture is required".into());
        }
        Ok(p)
    }

    /// A pattern for a `|>` line filter, where captures may all be `<_>`.
    pub fn parse_filter(src: &str) -> Result<Pattern, String> {
        let mut nodes: Vec<PNode> = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while !rest.is_empty() {
            if rest.starts_with('<') {
                if let Some(close) = rest.find('>') {
                    let name = &rest[1..close];
                    let valid = !name.is_empty()
                        && name
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if valid {
                        if !lit.is_empty() {
                            nodes.push(PNode::Literal(std::mem::take(&mut lit)));
                        }
                        if matches!(nodes.last(), Some(PNode::Capture(_))) {
                            return Err("found consecutive capture: invalid expression".into());
                        }
                        nodes.push(PNode::Capture((name != "_").then(|| name.to_string())));
                        rest = &rest[close + 1..];
                        continue;
                    }
                }
            }
            let c = rest.chars().next().unwrap_or(' ');
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            nodes.push(PNode::Literal(lit));
        }
        let mut names: Vec<String> = Vec::new();
        for n in &nodes {
            if let PNode::Capture(Some(name)) = n {
                if names.contains(name) {
                    return Err(format!(
                        "duplicate capture name ({name}): invalid expression"
                    ));
                }
                names.push(name.clone());
            }
        }
        Ok(Pattern { nodes, names })
    }

    /// Whether the whole line matches (the `|>` filter): the literals are
    /// found in order, each capture between them takes at least one byte,
    /// a trailing literal ends the line and a trailing capture takes a
    /// non-empty rest. (A leading literal is searched for, as Loki does.)
    pub fn test(&self, line: &str) -> bool {
        if line.is_empty() || self.nodes.is_empty() {
            return line.is_empty() && self.nodes.is_empty();
        }
        let mut off = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            let PNode::Literal(lit) = node else { continue };
            let Some(j) = line[off..].find(lit.as_str()) else {
                return false;
            };
            if i != 0 && j == 0 {
                return false;
            }
            off += j + lit.len();
        }
        let ends_on_capture = matches!(self.nodes.last(), Some(PNode::Capture(_)));
        ends_on_capture == (off != line.len())
    }

    /// Named captures in order, as far as the line matched: a leading
    /// literal must start the line; each capture runs to the next literal;
    /// a trailing capture, or one whose next literal is missing, takes the
    /// rest of the line (and matching stops there).
    pub fn matches<'l>(&self, line: &'l str) -> Vec<(&str, &'l str)> {
        let mut out = Vec::new();
        let mut nodes = &self.nodes[..];
        let mut rest = line;
        if line.is_empty() {
            return out;
        }
        if let Some(PNode::Literal(l)) = nodes.first() {
            match rest.strip_prefix(l.as_str()) {
                Some(r) => rest = r,
                None => return out,
            }
            nodes = &nodes[1..];
        }
        while let Some(PNode::Capture(name)) = nodes.first() {
            match nodes.get(1) {
                None => {
                    if let Some(n) = name {
                        out.push((n.as_str(), rest));
                    }
                    return out;
                }
                Some(PNode::Literal(l)) => {
                    let Some(at) = rest.find(l.as_str()) else {
                        if let Some(n) = name {
                            out.push((n.as_str(), rest));
                        }
                        return out;
                    };
                    if let Some(n) = name {
                        out.push((n.as_str(), &rest[..at]));
                    }
                    rest = &rest[at + l.len()..];
                    nodes = &nodes[2..];
                }
                Some(PNode::Capture(_)) => return out,
            }
        }
        out
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_spans_and_number_text() {
        let v = parse_json_object(r#"{"a": {"b": [1, 2.50]}, "s": "x\"y"}"#).unwrap();
        let JKind::Obj(f) = &v.kind else { panic!() };
        assert_eq!(f.len(), 2);
        let b = json_path(&v, &parse_json_path("a.b").unwrap()).unwrap();
        assert_eq!(b.end - b.start, "[1, 2.50]".len());
        let n = json_path(&v, &parse_json_path("a.b[1]").unwrap()).unwrap();
        assert!(matches!(&n.kind, JKind::Num(t) if t == "2.50"));
        assert!(parse_json_object("[1]").is_err());
        assert!(parse_json_object(r#"{"a": "#).is_err());
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            parse_json_path(r#"a["b c"][2].d"#).unwrap(),
            vec![
                PathPart::Key("a".into()),
                PathPart::Key("b c".into()),
                PathPart::Index(2),
                PathPart::Key("d".into())
            ]
        );
        assert!(parse_json_path("a..b").is_err());
    }

    #[test]
    fn logfmt_pairs() {
        let mut got = Vec::new();
        scan_logfmt(r#"a=1 b="x y" c d=\"e"#, false, |k, v| {
            got.push((k.to_string(), v))
        })
        .unwrap();
        // `d=\"e` is malformed: skipped outside strict mode.
        let want: Vec<(String, String)> = vec![
            ("a".into(), "1".into()),
            ("b".into(), "x y".into()),
            ("c".into(), String::new()),
        ];
        assert_eq!(got, want);
        assert!(scan_logfmt("a=\"open", true, |_, _| {}).is_err());
    }

    #[test]
    fn pattern_captures() {
        let p = Pattern::parse("<ip> - <_> \"<method> <path> <_>\" <status>").unwrap();
        let line = "10.0.0.1 - - \"GET /x HTTP/1.1\" 200 512";
        assert_eq!(
            p.matches(line),
            vec![
                ("ip", "10.0.0.1"),
                ("method", "GET"),
                ("path", "/x"),
                ("status", "200 512")
            ]
        );
        assert!(Pattern::parse("<a><b>").is_err());
        assert!(Pattern::parse("no captures").is_err());
        let f = Pattern::parse_filter("<_> error <_>").unwrap();
        assert!(f.test("a error b"));
        assert!(!f.test(" error b"), "an empty capture does not match");
        assert!(!f.test("a error "), "nor does an empty trailing capture");
        let f = Pattern::parse_filter("<_> done").unwrap();
        assert!(f.test("job done"));
        assert!(
            !f.test("job done twice"),
            "a trailing literal ends the line"
        );
        assert!(Pattern::parse("<a> <a>").is_err());
    }
}
