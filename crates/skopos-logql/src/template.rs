//! The subset of Go's `text/template` that `line_format` and `label_format`
//! use: text, `{{.label}}` field access, pipes into functions, literals,
//! `{{if}}`/`{{else if}}`/`{{else}}`/`{{end}}`, `{{/* comments */}}` and the
//! `{{-`/`-}}` whitespace trims.
//!
//! Functions: `ToUpper ToLower upper lower title trim TrimSpace TrimPrefix
//! TrimSuffix trimPrefix trimSuffix Replace replace default printf contains
//! hasPrefix hasSuffix eq ne lt le gt ge and or not len trunc __line__
//! __timestamp__`. The data is the map of the entry's labels, so a missing
//! label reads as the empty string, as for Go's `map[string]string`.

use crate::units::go_quote;

#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
struct Pipeline(Vec<Command>);

#[derive(Debug, Clone)]
struct Command(Vec<Arg>);

#[derive(Debug, Clone)]
enum Arg {
    /// `.a` (empty name: `.` itself).
    Field(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Func(String),
    Sub(Pipeline),
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Val {
    fn render(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => format!("{f}"),
            Val::Bool(b) => b.to_string(),
        }
    }
    fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Bool(b) => *b,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
}

const FUNCS: &[&str] = &[
    "ToUpper",
    "ToLower",
    "upper",
    "lower",
    "title",
    "trim",
    "TrimSpace",
    "TrimPrefix",
    "TrimSuffix",
    "trimPrefix",
    "trimSuffix",
    "Replace",
    "replace",
    "default",
    "printf",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "trunc",
    "__line__",
    "__timestamp__",
];

/// What a template reads while it runs.
pub struct Data<'a> {
    pub label: &'a dyn Fn(&str) -> Option<String>,
    pub line: &'a str,
    /// Unix nanoseconds.
    pub ts: i64,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let items = split_actions(src)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&items, &mut pos)?;
        if let Some(end) = end {
            return Err(format!("template: unexpected {{{{{end}}}}}"));
        }
        Ok(Template {
            src: src.to_string(),
            nodes,
        })
    }

    pub fn source(&self) -> &str {
        &self.src
    }

    /// Whether the template reads `__line__` or the entry timestamp, or only labels.
    pub fn execute(&self, data: &Data<'_>) -> Result<String, String> {
        let mut out = String::new();
        exec_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

enum Item {
    Text(String),
    Action(Vec<ATok>),
}

#[derive(Debug, Clone, PartialEq)]
enum ATok {
    Word(String),
    Field(String),
    Str(String),
    Num(String),
    LParen,
    RParen,
    Pipe,
}

/// Splits the source into text and tokenised actions, applying trim markers.
fn split_actions(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let text = if trim_next { rest.trim_start() } else { rest };
            items.push(Item::Text(text.to_string()));
            break;
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[open + 2..];
        if inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n") {
            text = text.trim_end();
            inner = &inner[1..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let close = find_close(inner).ok_or("template: unclosed action")?;
        let mut body = &inner[..close];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            trim_next = true;
            body = &body[..body.len() - 1];
        }
        rest = &inner[close + 2..];
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return Err("template: unclosed comment".into());
            }
            continue;
        }
        items.push(Item::Action(tokenize_action(body)?));
    }
    Ok(items)
}

/// The offset of the `}}` closing an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn tokenize_action(body: &str) -> Result<Vec<ATok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                toks.push(ATok::LParen);
                i += 1
            }
            ')' => {
                toks.push(ATok::RParen);
                i += 1
            }
            '|' => {
                toks.push(ATok::Pipe);
                i += 1
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("template: unterminated quoted string".into());
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        c => s.push(c),
                    }
                }
                toks.push(ATok::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = (start..chars.len())
                    .find(|&j| chars[j] == '`')
                    .ok_or("template: unterminated raw quoted string")?;
                toks.push(ATok::Str(chars[start..end].iter().collect()));
                i = end + 1;
            }
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                toks.push(ATok::Field(chars[start..j].iter().collect()));
                i = j;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                toks.push(ATok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push(ATok::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("template: unexpected {other:?} in command")),
        }
    }
    Ok(toks)
}

/// Parses nodes up to an `{{else}}`/`{{end}}`, returned as the terminator.
fn parse_nodes(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let item = &items[*pos];
        *pos += 1;
        match item {
            Item::Text(t) => nodes.push(Node::Text(t.clone())),
            Item::Action(toks) => match toks.first() {
                Some(ATok::Word(w)) if w == "end" => return Ok((nodes, Some("end".into()))),
                Some(ATok::Word(w)) if w == "else" => {
                    return Ok((nodes, Some(tok_text(&toks[1..]))));
                }
                Some(ATok::Word(w)) if w == "if" => {
                    let mut branches = Vec::new();
                    let mut cond = parse_pipeline(&toks[1..])?;
                    let otherwise = loop {
                        let (body, end) = parse_nodes(items, pos)?;
                        branches.push((cond, body));
                        match end.as_deref() {
                            Some("end") => break Vec::new(),
                            Some("") => {
                                let (body, end) = parse_nodes(items, pos)?;
                                if end.as_deref() != Some("end") {
                                    return Err("template: expected {{end}}".into());
                                }
                                break body;
                            }
                            Some(rest) if rest.starts_with("if ") => {
                                let t = tokenize_action(&rest[3..])?;
                                cond = parse_pipeline(&t)?;
                            }
                            _ => return Err("template: unexpected EOF".into()),
                        }
                    };
                    nodes.push(Node::If {
                        branches,
                        otherwise,
                    });
                }
                Some(ATok::Word(w))
                    if matches!(
                        w.as_str(),
                        "range" | "with" | "define" | "template" | "block"
                    ) =>
                {
                    return Err(format!("template: {w} is not supported"))
                }
                _ => nodes.push(Node::Action(parse_pipeline(toks)?)),
            },
        }
    }
    Ok((nodes, None))
}

/// Re-joins tokens of an `{{else if ...}}` so that its condition can be parsed.
fn tok_text(toks: &[ATok]) -> String {
    toks.iter()
        .map(|t| match t {
            ATok::Word(w) => w.clone(),
            ATok::Field(f) => format!(".{f}"),
            ATok::Str(s) => go_quote(s),
            ATok::Num(n) => n.clone(),
            ATok::LParen => "(".into(),
            ATok::RParen => ")".into(),
            ATok::Pipe => "|".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_pipeline(toks: &[ATok]) -> Result<Pipeline, String> {
    let mut pos = 0;
    let p = parse_pipe(toks, &mut pos)?;
    if pos != toks.len() {
        return Err("template: unexpected \")\" in command".into());
    }
    Ok(p)
}

/// Deepest parenthesis nesting in an action (parsing recurses).
const MAX_PAREN_DEPTH: usize = 100;

fn parse_pipe(toks: &[ATok], pos: &mut usize) -> Result<Pipeline, String> {
    parse_pipe_at(toks, pos, 0)
}

fn parse_pipe_at(toks: &[ATok], pos: &mut usize, depth: usize) -> Result<Pipeline, String> {
    if depth > MAX_PAREN_DEPTH {
        return Err("template: parentheses nested too deeply".into());
    }
    let mut cmds = Vec::new();
    let mut args = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t {
            ATok::Pipe => {
                if args.is_empty() {
                    return Err("template: missing command".into());
                }
                cmds.push(Command(std::mem::take(&mut args)));
            }
            ATok::RParen => {
                *pos -= 1;
                break;
            }
            ATok::LParen => {
                let sub = parse_pipe_at(toks, pos, depth + 1)?;
                if toks.get(*pos) != Some(&ATok::RParen) {
                    return Err("template: unclosed left paren".into());
                }
                *pos += 1;
                args.push(Arg::Sub(sub));
            }
            ATok::Field(f) => args.push(Arg::Field(f.clone())),
            ATok::Str(s) => args.push(Arg::Str(s.clone())),
            ATok::Num(n) => args.push(if let Ok(i) = n.parse::<i64>() {
                Arg::Int(i)
            } else {
                Arg::Float(
                    n.parse()
                        .map_err(|_| format!("template: bad number syntax: {n:?}"))?,
                )
            }),
            ATok::Word(w) if w == "true" || w == "false" => args.push(Arg::Bool(w == "true")),
            ATok::Word(w) => {
                if !FUNCS.contains(&w.as_str()) {
                    return Err(format!("template: function {w:?} not defined"));
                }
                args.push(Arg::Func(w.clone()));
            }
        }
    }
    if args.is_empty() {
        return Err("template: missing value for command".into());
    }
    cmds.push(Command(args));
    Ok(Pipeline(cmds))
}

fn exec_nodes(nodes: &[Node], data: &Data<'_>, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&eval_pipeline(p, data)?.render()),
            Node::If {
                branches,
                otherwise,
            } => {
                let mut done = false;
                for (cond, body) in branches {
                    if eval_pipeline(cond, data)?.truthy() {
                        exec_nodes(body, data, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    exec_nodes(otherwise, data, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, data: &Data<'_>) -> Result<Val, String> {
    let mut piped: Option<Val> = None;
    for cmd in &p.0 {
        piped = Some(eval_command(cmd, piped.take(), data)?);
    }
    piped.ok_or_else(|| "template: empty pipeline".into())
}

fn eval_arg(a: &Arg, data: &Data<'_>) -> Result<Val, String> {
    Ok(match a {
        Arg::Field(f) => Val::Str((data.label)(f).unwrap_or_default()),
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Int(i) => Val::Int(*i),
        Arg::Float(f) => Val::Float(*f),
        Arg::Bool(b) => Val::Bool(*b),
        Arg::Sub(p) => eval_pipeline(p, data)?,
        Arg::Func(f) => call(f, Vec::new(), data)?,
    })
}

fn eval_command(cmd: &Command, piped: Option<Val>, data: &Data<'_>) -> Result<Val, String> {
    match &cmd.0[0] {
        Arg::Func(name) => {
            let mut args = cmd.0[1..]
                .iter()
                .map(|a| eval_arg(a, data))
                .collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            call(name, args, data)
        }
        operand => {
            if cmd.0.len() > 1 || piped.is_some() {
                return Err("template: can't give argument to non-function".into());
            }
            eval_arg(operand, data)
        }
    }
}

fn s(v: &Val) -> String {
    v.render()
}

fn call(name: &str, args: Vec<Val>, data: &Data<'_>) -> Result<Val, String> {
    let want = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "template: wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    let str1 = |f: fn(&str) -> String| -> Result<Val, String> {
        want(1)?;
        Ok(Val::Str(f(&s(&args[0]))))
    };
    match name {
        "ToUpper" | "upper" => str1(|x| x.to_uppercase()),
        "ToLower" | "lower" => str1(|x| x.to_lowercase()),
        "trim" | "TrimSpace" => str1(|x| x.trim().to_string()),
        "title" => str1(|x| {
            let mut out = String::new();
            let mut prev_letter = false;
            for c in x.chars() {
                if !prev_letter {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                prev_letter = c.is_alphanumeric();
            }
            out
        }),
        "len" => {
            want(1)?;
            Ok(Val::Int(s(&args[0]).len() as i64))
        }
        "TrimPrefix" | "TrimSuffix" | "trimPrefix" | "trimSuffix" => {
            want(2)?;
            // Go's strings.TrimPrefix(s, prefix); sprig's trimPrefix(prefix, s).
            let (text, affix) = if name.starts_with('T') {
                (s(&args[0]), s(&args[1]))
            } else {
                (s(&args[1]), s(&args[0]))
            };
            let out = if name.ends_with("Prefix") {
                text.strip_prefix(&affix).unwrap_or(&text).to_string()
            } else {
                text.strip_suffix(&affix).unwrap_or(&text).to_string()
            };
            Ok(Val::Str(out))
        }
        "replace" => {
            // sprig: replace old new s
            want(3)?;
            Ok(Val::Str(s(&args[2]).replace(&s(&args[0]), &s(&args[1]))))
        }
        "Replace" => {
            // Go: strings.Replace(s, old, new, n)
            want(4)?;
            let n = args[3]
                .as_f64()
                .ok_or("template: Replace wants an integer count")? as i64;
            let text = s(&args[0]);
            let out = if n < 0 {
                text.replace(&s(&args[1]), &s(&args[2]))
            } else {
                text.replacen(&s(&args[1]), &s(&args[2]), n as usize)
            };
            Ok(Val::Str(out))
        }
        "default" => {
            want(2)?;
            Ok(if args[1].truthy() {
                args[1].clone()
            } else {
                args[0].clone()
            })
        }
        "contains" | "hasPrefix" | "hasSuffix" => {
            want(2)?;
            let (needle, hay) = (s(&args[0]), s(&args[1]));
            Ok(Val::Bool(match name {
                "contains" => hay.contains(&needle),
                "hasPrefix" => hay.starts_with(&needle),
                _ => hay.ends_with(&needle),
            }))
        }
        "trunc" => {
            want(2)?;
            let n = args[0]
                .as_f64()
                .ok_or("template: trunc wants an integer length")? as i64;
            let text: Vec<char> = s(&args[1]).chars().collect();
            let out: String = if n >= 0 {
                text.iter().take(n as usize).collect()
            } else {
                let skip = text.len().saturating_sub(n.unsigned_abs() as usize);
                text[skip..].iter().collect()
            };
            Ok(Val::Str(out))
        }
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ord = match (args[0].as_f64(), args[1].as_f64()) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => Some(s(&args[0]).cmp(&s(&args[1]))),
            };
            use std::cmp::Ordering::*;
            Ok(Val::Bool(match name {
                "eq" => ord == Some(Equal),
                "ne" => ord != Some(Equal),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                "gt" => ord == Some(Greater),
                _ => matches!(ord, Some(Greater | Equal)),
            }))
        }
        "not" => {
            want(1)?;
            Ok(Val::Bool(!args[0].truthy()))
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err(format!("template: wrong number of args for {name}"));
            }
            let want_truthy = name == "or";
            for a in &args {
                if a.truthy() == want_truthy {
                    return Ok(a.clone());
                }
            }
            Ok(args[args.len() - 1].clone())
        }
        "printf" => {
            if args.is_empty() {
                return Err("template: wrong number of args for printf".into());
            }
            Ok(Val::Str(printf(&s(&args[0]), &args[1..])))
        }
        "__line__" => {
            want(0)?;
            Ok(Val::Str(data.line.to_string()))
        }
        "__timestamp__" => {
            want(0)?;
            Ok(Val::Str(go_time_string(data.ts)))
        }
        other => Err(format!("template: function {other:?} not defined")),
    }
}

/// A Unix-nanosecond time as Go prints a `time.Time` in UTC:
/// `2006-01-02 15:04:05.999999999 +0000 UTC` (fraction without trailing zeros).
fn go_time_string(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let nanos = ts.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// `fmt.Sprintf` for `%s %v %d %f %.Nf %q %%`.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Go's flags and width: `%-6s` pads on the right, `%05d` with zeros.
        let (mut left, mut zero) = (false, false);
        while let Some(&f) = it.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = 0usize;
        while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
            width = width
                .saturating_mul(10)
                .saturating_add(d as usize)
                .min(1 << 16);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut n = 0;
            while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
                n = n * 10 + d as usize;
                it.next();
            }
            prec = Some(n);
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let before = out.len();
        match verb {
            's' | 'v' => out.push_str(&arg.render()),
            'q' => out.push_str(&go_quote(&arg.render())),
            'd' => match arg {
                Val::Int(i) => out.push_str(&i.to_string()),
                other => out.push_str(&format!("%!d({})", other.render())),
            },
            'f' => match arg.as_f64() {
                Some(f) => out.push_str(&format!("{:.*}", prec.unwrap_or(6), f)),
                None => out.push_str(&format!("%!f({})", arg.render())),
            },
            other => out.push_str(&format!("%!{other}({})", arg.render())),
        }
        let len = out[before..].chars().count();
        if len < width {
            let pad = width - len;
            if left {
                out.extend(std::iter::repeat_n(' ', pad));
            } else {
                let fill = if zero && verb != 's' && verb != 'q' {
                    '0'
                } else {
                    ' '
                };
                let text = out.split_off(before);
                let (sign, digits) = match text.strip_prefix('-') {
                    Some(d) if fill == '0' => ("-", d.to_string()),
                    _ => ("", text.clone()),
                };
                out.push_str(sign);
                out.extend(std::iter::repeat_n(fill, pad));
                out.push_str(&digits);
            }
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..].iter().map(Val::render).collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &str, labels: &[(&str, &str)]) -> Result<String, String> {
        let get = |n: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        Template::parse(t)?.execute(&Data {
            label: &get,
            line: "the line",
            ts: 0,
        })
    }

    #[test]
    fn fields_pipes_and_functions() {
        let l = [("a", "x"), ("b", "Yz")];
        assert_eq!(run("{{.a}} {{.b | ToUpper}}", &l).unwrap(), "x YZ");
        assert_eq!(
            run("{{ .missing | default \"none\" }}", &l).unwrap(),
            "none"
        );
        assert_eq!(run("{{printf \"%s-%s\" .a .b}}", &l).unwrap(), "x-Yz");
        assert_eq!(run("{{ __line__ }}", &l).unwrap(), "the line");
        assert_eq!(run("a  {{- .a -}}  b", &l).unwrap(), "axb");
        assert_eq!(run("{{/* c */}}{{.a}}", &l).unwrap(), "x");
    }

    #[test]
    fn timestamps_print_as_go_times() {
        assert_eq!(go_time_string(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time_string(1_700_000_000_123_000_000),
            "2023-11-14 22:13:20.123 +0000 UTC"
        );
        assert_eq!(
            go_time_string(951_782_400_000_000_000),
            "2000-02-29 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn conditionals() {
        let l = [("a", "x")];
        let t = "{{if eq .a \"x\"}}yes{{else if .b}}b{{else}}no{{end}}";
        assert_eq!(run(t, &l).unwrap(), "yes");
        assert_eq!(run(t, &[("a", "y"), ("b", "1")]).unwrap(), "b");
        assert_eq!(run(t, &[]).unwrap(), "no");
    }

    #[test]
    fn unknown_function_is_a_parse_error() {
        assert!(Template::parse("{{ .a | Nope }}").is_err());
        assert!(Template::parse("{{ .a ").is_err());
        assert!(Template::parse("{{if .a}}x").is_err());
    }
}
