//! Runs the LogQL case files in `testdata/*.test` against an in-memory
//! [`LogQueryable`]. The format (line oriented; `#` starts a comment line):
//!
//! ```text
//! clear                                   empty the store
//! stream {app="api", env="prod"}          following entry lines belong to it
//! 10s some log line                       <time> <line>
//! 12s @{trace_id="abc"} another line      with structured metadata
//!
//! query logs <start> <end> [limit N] [forward|backward] [max_entries N]
//! query range <start> <end> <step> [max_series N] [max_samples N]
//! query instant <time> [max_series N] [max_samples N]
//! query parse                             parse only
//! <the query, one line>
//! ```
//!
//! and then one expectation:
//!
//! ```text
//! streams                  expected streams, in order, up to `end`:
//! {labels}                 a stream (its full label set)
//! 10s line                 its entries, in order
//! end
//! matrix                   `{labels} <t>=<v> ...` lines up to `end`
//! vector                   `{labels} <v>` lines up to `end` (in order)
//! scalar <v>
//! canonical <text>         (`query parse`) the canonical form
//! error <errorType> <message>      the exact error text
//! error_prefix <errorType> <text>  the error text starts with this
//! ```
//!
//! optionally followed by `pushdown "a" "b"`: the literals the engine
//! passed to the store as `LogSelect::contains` (every read, in order).
//! Times are Go durations from the epoch (`0`, `1m30s`, `1500ms`, `7ns`).
//! Values: floats, `NaN`, `+Inf`, `-Inf`; compared to 1e-9 relative.
//!
//! Every file runs twice: against a store that honours `contains` and one
//! that ignores it (both are allowed; the answers must not differ). The
//! store hands each stream over in parts of two entries, as the trait allows.

use std::path::Path;
use std::sync::Mutex;

use skopos_logql::{CancelToken, Engine, EngineOptions, QueryError, Value};
use skopos_model::{
    Direction, Labels, LogEntry, LogQueryable, LogSelect, LogStream, Matcher, StorageError,
};

#[derive(Default)]
struct MemStore {
    streams: Vec<LogStream>,
    contains_seen: Mutex<Vec<Vec<String>>>,
    /// Whether `LogSelect::contains` narrows what is handed over (a store
    /// may ignore the hint; the engine must give the same answers).
    honour_contains: bool,
}

impl LogQueryable for MemStore {
    fn select_logs(
        &self,
        sel: &LogSelect,
        f: &mut dyn FnMut(LogStream) -> bool,
    ) -> Result<(), StorageError> {
        self.contains_seen
            .lock()
            .unwrap()
            .push(sel.contains.clone());
        let mut streams: Vec<&LogStream> = self
            .streams
            .iter()
            .filter(|s| sel.matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .collect();
        streams.sort_by(|a, b| a.labels.cmp(&b.labels));
        for s in streams {
            let mut entries: Vec<LogEntry> =
                s.entries
                    .iter()
                    .filter(|e| e.ts >= sel.start && e.ts < sel.end)
                    .filter(|e| {
                        !self.honour_contains
                            || (sel.contains.iter().all(|c| e.line.contains(c.as_str()))
                                && sel.matches.iter().all(|m| {
                                    regex::Regex::new(m).is_ok_and(|r| r.is_match(&e.line))
                                }))
                    })
                    .cloned()
                    .collect();
            entries.sort_by_key(|e| e.ts);
            for part in entries.chunks(2) {
                let go_on = f(LogStream {
                    labels: s.labels.clone(),
                    entries: part.to_vec(),
                });
                if !go_on {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn log_label_names(&self, _start: i64, _end: i64) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = self
            .streams
            .iter()
            .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn log_label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        _start: i64,
        _end: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values: Vec<String> = self
            .streams
            .iter()
            .filter(|s| matchers.iter().all(|m| m.matches_labels(&s.labels)))
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// A Go-style duration from the epoch, in nanoseconds.
fn parse_time(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time {s:?} lacks a unit"))?;
        let value: f64 = rest[..n].parse().map_err(|_| format!("bad time {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1.0,
            "us" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("bad unit {other:?} in {s:?}")),
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Ok(total.round() as i64)
}

/// `{a="b", c="d"}` (Go-quoted values) and what follows it.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let mut rest = s
        .strip_prefix('{')
        .ok_or_else(|| format!("expected labels: {s}"))?;
    let mut pairs = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((Labels::from_pairs(pairs), r));
        }
        let eq = rest.find('=').ok_or_else(|| format!("bad labels: {s}"))?;
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("bad labels: {s}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("bad labels: {s}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value: {s}")),
            }
        };
        pairs.push((name, value));
        rest = rest[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

fn same(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn fmt_time(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else {
        format!("{ns}ns")
    }
}

/// Renders a result in the file's own notation, so a failure shows a diff.
fn render(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Streams(streams) => {
            out.push_str("streams\n");
            for s in streams {
                out.push_str(&format!("{}\n", s.labels));
                for e in &s.entries {
                    out.push_str(&format!("{} {}\n", fmt_time(e.ts), e.line));
                }
            }
        }
        Value::Matrix(series) => {
            out.push_str("matrix\n");
            for s in series {
                out.push_str(&s.labels.to_string());
                for p in &s.points {
                    out.push_str(&format!(" {}={}", fmt_time(p.t), p.v));
                }
                out.push('\n');
            }
        }
        Value::Vector(samples) => {
            out.push_str("vector\n");
            for s in samples {
                out.push_str(&format!("{} {}\n", s.labels, s.v));
            }
        }
        Value::Scalar { v, .. } => out.push_str(&format!("scalar {v}\n")),
    }
    out
}

enum Expect {
    Streams(Vec<(Labels, Vec<(i64, String)>)>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
    Vector(Vec<(Labels, f64)>),
    Scalar(f64),
    /// For `query parse`: the canonical text of the parsed query.
    Canonical(String),
    Error {
        kind: String,
        text: String,
        prefix: bool,
    },
}

fn check(expect: &Expect, got: &Result<Value, QueryError>) -> Result<(), String> {
    let mismatch = || match got {
        Ok(v) => format!("got:\n{}", render(v)),
        Err(e) => format!("got error ({}): {e}", e.error_type()),
    };
    let ok = match (expect, got) {
        (Expect::Error { kind, text, prefix }, Err(e)) => {
            e.error_type() == kind
                && if *prefix {
                    e.to_string().starts_with(text.as_str())
                } else {
                    e.to_string() == *text
                }
        }
        (Expect::Streams(want), Ok(Value::Streams(got))) => {
            want.len() == got.len()
                && want.iter().zip(got).all(|((wl, we), g)| {
                    *wl == g.labels
                        && we.len() == g.entries.len()
                        && we
                            .iter()
                            .zip(&g.entries)
                            .all(|((t, l), e)| *t == e.ts && *l == e.line)
                })
        }
        (Expect::Matrix(want), Ok(Value::Matrix(got))) => {
            want.len() == got.len()
                && want.iter().zip(got).all(|((wl, wp), g)| {
                    *wl == g.labels
                        && wp.len() == g.points.len()
                        && wp
                            .iter()
                            .zip(&g.points)
                            .all(|((t, v), p)| *t == p.t && same(*v, p.v))
                })
        }
        (Expect::Vector(want), Ok(Value::Vector(got))) => {
            want.len() == got.len()
                && want
                    .iter()
                    .zip(got)
                    .all(|((wl, wv), g)| *wl == g.labels && same(*wv, g.v))
        }
        (Expect::Scalar(want), Ok(Value::Scalar { v, .. })) => same(*want, *v),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(mismatch())
    }
}

struct Query {
    kind: String,
    args: Vec<String>,
}

fn run_file(path: &Path, honour_contains: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read case file");
    let mut failures = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let fresh = || MemStore {
        honour_contains,
        ..MemStore::default()
    };
    let mut store = fresh();
    let mut i = 0;
    let mut cases = 0;
    let fail = |failures: &mut Vec<String>, line: usize, msg: String| {
        let store = if honour_contains {
            "store honouring contains"
        } else {
            "store ignoring contains"
        };
        failures.push(format!("{}:{} ({store}): {msg}", path.display(), line + 1));
    };
    while i < lines.len() {
        let line = lines[i].trim_end();
        let lineno = i;
        i += 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line == "clear" {
            store = fresh();
            continue;
        }
        if let Some(rest) = line.strip_prefix("stream ") {
            let labels = match parse_labels(rest) {
                Ok((l, _)) => l,
                Err(e) => {
                    fail(&mut failures, lineno, e);
                    continue;
                }
            };
            let mut entries = Vec::new();
            while i < lines.len() && lines[i].starts_with(|c: char| c.is_ascii_digit()) {
                let (ts, rest) = lines[i].split_once(' ').unwrap_or((lines[i], ""));
                let (metadata, text) = if let Some(m) = rest.strip_prefix('@') {
                    match parse_labels(m) {
                        Ok((l, r)) => (l, r.strip_prefix(' ').unwrap_or(r)),
                        Err(e) => {
                            fail(&mut failures, i, e);
                            (Labels::empty(), "")
                        }
                    }
                } else {
                    (Labels::empty(), rest)
                };
                match parse_time(ts) {
                    Ok(ts) => entries.push(LogEntry {
                        ts,
                        line: text.to_string(),
                        metadata,
                    }),
                    Err(e) => fail(&mut failures, i, e),
                }
                i += 1;
            }
            store.streams.push(LogStream { labels, entries });
            continue;
        }
        let Some(rest) = line.strip_prefix("query ") else {
            fail(&mut failures, lineno, format!("unknown directive: {line}"));
            continue;
        };
        let mut words = rest.split_whitespace();
        let q = Query {
            kind: words.next().unwrap_or("").to_string(),
            args: words.map(str::to_string).collect(),
        };
        let Some(expr) = lines.get(i) else {
            fail(&mut failures, lineno, "query without expression".into());
            break;
        };
        i += 1;
        let (expect, next) = match parse_expect(&lines, i) {
            Ok(x) => x,
            Err(e) => {
                fail(&mut failures, i, e);
                break;
            }
        };
        i = next;
        let mut pushdown = None;
        if let Some(p) = lines.get(i).and_then(|l| l.strip_prefix("pushdown")) {
            pushdown = Some(
                p.split('"')
                    .enumerate()
                    .filter(|(k, _)| k % 2 == 1)
                    .map(|(_, s)| s.to_string())
                    .collect::<Vec<_>>(),
            );
            i += 1;
        }
        cases += 1;
        if q.kind == "parse" {
            let got = skopos_logql::parse(expr).map(|e| e.to_string());
            let ok = match (&expect, &got) {
                (Expect::Canonical(want), Ok(text)) => want == text,
                (Expect::Error { kind, text, prefix }, Err(e)) => {
                    e.error_type() == kind
                        && if *prefix {
                            e.to_string().starts_with(text.as_str())
                        } else {
                            e.to_string() == *text
                        }
                }
                _ => false,
            };
            if !ok {
                fail(
                    &mut failures,
                    lineno,
                    format!(
                        "{expr}
got: {got:?}"
                    ),
                );
            }
            continue;
        }
        store.contains_seen.lock().unwrap().clear();
        let got = match run_query(&store, &q, expr) {
            Ok(r) => r,
            Err(e) => {
                fail(&mut failures, lineno, e);
                continue;
            }
        };
        if let Err(e) = check(&expect, &got) {
            fail(&mut failures, lineno, format!("{expr}\n{e}"));
        }
        if let Some(want) = pushdown {
            let seen: Vec<String> = store
                .contains_seen
                .lock()
                .unwrap()
                .iter()
                .flatten()
                .cloned()
                .collect();
            if seen != want {
                fail(
                    &mut failures,
                    lineno,
                    format!("{expr}\npushdown: want {want:?}, got {seen:?}"),
                );
            }
        }
    }
    assert!(cases > 0, "{} holds no cases", path.display());
    failures
}

fn run_query(store: &MemStore, q: &Query, expr: &str) -> Result<Result<Value, QueryError>, String> {
    let mut opts = EngineOptions::default();
    let mut limit = 100;
    let mut dir = Direction::Backward;
    let mut positional = Vec::new();
    let mut args = q.args.iter();
    while let Some(a) = args.next() {
        let mut num = || -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{a} needs a number"))
        };
        match a.as_str() {
            "limit" => limit = num()?,
            "max_series" => opts.max_series = num()?,
            "max_samples" => opts.max_samples = num()?,
            "max_entries" => opts.max_entries_limit = num()?,
            "forward" => dir = Direction::Forward,
            "backward" => dir = Direction::Backward,
            other => positional.push(parse_time(other)?),
        }
    }
    let engine = Engine::new(opts);
    let cancel = CancelToken::new();
    let want = |n: usize| {
        if positional.len() == n {
            Ok(())
        } else {
            Err(format!("query {} wants {n} times", q.kind))
        }
    };
    Ok(match q.kind.as_str() {
        "logs" => {
            want(2)?;
            engine.query_range(
                store,
                expr,
                positional[0],
                positional[1],
                1,
                limit,
                dir,
                &cancel,
            )
        }
        "range" => {
            want(3)?;
            engine.query_range(
                store,
                expr,
                positional[0],
                positional[1],
                positional[2],
                limit,
                dir,
                &cancel,
            )
        }
        "instant" => {
            want(1)?;
            engine.query_instant(store, expr, positional[0], &cancel)
        }
        other => return Err(format!("unknown query kind {other:?}")),
    })
}

fn parse_expect(lines: &[&str], mut i: usize) -> Result<(Expect, usize), String> {
    let head = lines.get(i).ok_or("missing expectation")?.trim_end();
    i += 1;
    let section_end = |i: usize| -> Result<usize, String> {
        (i..lines.len())
            .find(|&k| lines[k].trim_end() == "end")
            .ok_or_else(|| "missing `end`".to_string())
    };
    if let Some(rest) = head
        .strip_prefix("error ")
        .or(head.strip_prefix("error_prefix "))
    {
        let (kind, text) = rest.split_once(' ').unwrap_or((rest, ""));
        return Ok((
            Expect::Error {
                kind: kind.to_string(),
                text: text.replace("\\n", "\n"),
                prefix: head.starts_with("error_prefix"),
            },
            i,
        ));
    }
    if let Some(v) = head.strip_prefix("canonical ") {
        return Ok((Expect::Canonical(v.to_string()), i));
    }
    if let Some(v) = head.strip_prefix("scalar ") {
        return Ok((Expect::Scalar(parse_value(v.trim())?), i));
    }
    let end = section_end(i)?;
    let body = &lines[i..end];
    let expect = match head {
        "streams" => {
            let mut streams: Vec<(Labels, Vec<(i64, String)>)> = Vec::new();
            for l in body {
                if l.starts_with('{') {
                    streams.push((parse_labels(l)?.0, Vec::new()));
                } else {
                    let (ts, text) = l.split_once(' ').unwrap_or((l, ""));
                    let last = streams.last_mut().ok_or("entry before a stream")?;
                    last.1.push((parse_time(ts)?, text.to_string()));
                }
            }
            Expect::Streams(streams)
        }
        "matrix" => {
            let mut series = Vec::new();
            for l in body {
                let (labels, rest) = parse_labels(l)?;
                let mut points = Vec::new();
                for p in rest.split_whitespace() {
                    let (t, v) = p
                        .split_once('=')
                        .ok_or_else(|| format!("bad point {p:?}"))?;
                    points.push((parse_time(t)?, parse_value(v)?));
                }
                series.push((labels, points));
            }
            Expect::Matrix(series)
        }
        "vector" => {
            let mut samples = Vec::new();
            for l in body {
                let (labels, rest) = parse_labels(l)?;
                samples.push((labels, parse_value(rest.trim())?));
            }
            Expect::Vector(samples)
        }
        other => return Err(format!("unknown expectation {other:?}")),
    };
    Ok((expect, end + 1))
}

#[test]
fn case_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let failures: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let mut v = run_file(f, true);
            v.extend(run_file(f, false));
            v
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
