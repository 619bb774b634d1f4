//! The Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text:
//! a parser (for the scraper and pushed text) and a writer.
//!
//! The parser is line-based and single-pass. Differences between the two
//! formats that matter here: OpenMetrics timestamps are float *seconds* (text
//! 0.0.4 uses integer milliseconds), OpenMetrics must end with `# EOF`, may
//! carry `# UNIT` and exemplars (skipped), and counters expose `_total` and
//! `_created` samples. `_created` samples are kept as ordinary series, as
//! Prometheus does unless its created-timestamp feature flag is on (checked
//! against a real Prometheus in `tests/real_prometheus.rs`). In both formats
//! the `le` label of histograms and the `quantile` label of summaries are
//! normalised to float notation (`le="1"` becomes `le="1.0"`), as Prometheus 3
//! does, so both formats give the same series (Prometheus 2 keeps the text
//! as sent).

use std::collections::HashMap;

use skopos_model::{is_valid_label_name, Label, Labels, Sample, METRIC_NAME};

use crate::floatfmt::{format_float, format_label_float};
use crate::MetricMetadata;

/// Which text format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    PrometheusText,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

/// Picks the format from a `Content-Type` header; anything that is not
/// OpenMetrics is read as Prometheus text.
pub fn format_from_content_type(ct: &str) -> Format {
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/openmetrics-text") {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    }
}

/// The result of parsing one exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Every sample in input order, with its own timestamp or the default.
    pub series: Vec<(Labels, Sample)>,
    /// One entry per family that had a `# TYPE`, `# HELP` or `# UNIT` line.
    pub metadata: Vec<MetricMetadata>,
}

/// A syntax error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Default)]
struct Family {
    type_: Option<String>,
    help: Option<String>,
    unit: Option<String>,
}

struct Parser<'a, 'f> {
    format: Format,
    default_ts: i64,
    families: HashMap<String, Family>,
    order: Vec<String>,
    /// Series text (`name{labels}` as written) → its parsed labels, so a
    /// series repeated on many lines is parsed and allocated once.
    cache: HashMap<&'a str, Labels>,
    emit: &'f mut dyn FnMut(&Labels, Sample),
}

/// Bound on the series cache; beyond it labels are parsed every time.
const SERIES_CACHE_MAX: usize = 1 << 20;

/// Parses an exposition. Samples without a timestamp get `default_ts` (ms).
pub fn parse(text: &str, format: Format, default_ts: i64) -> Result<Parsed, ParseError> {
    let mut series = Vec::new();
    let metadata = parse_each(text, format, default_ts, |l, s| series.push((l.clone(), s)))?;
    Ok(Parsed { series, metadata })
}

/// Like [`parse`], but hands each sample to `f` instead of collecting them,
/// and returns the metadata. The labels of a series that occurs on many
/// lines (a backfill file) are parsed once; `f` can look them up by
/// reference and clone only new ones.
pub fn parse_each(
    text: &str,
    format: Format,
    default_ts: i64,
    mut f: impl FnMut(&Labels, Sample),
) -> Result<Vec<MetricMetadata>, ParseError> {
    let mut p = Parser {
        format,
        default_ts,
        families: HashMap::new(),
        order: Vec::new(),
        cache: HashMap::new(),
        emit: &mut f,
    };
    let mut eof_line = None;
    let mut last_line = 0;
    // The newline that ends the last line does not start another one.
    let body = text.strip_suffix('\n').unwrap_or(text);
    for (i, raw) in body.split('\n').enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(eof) = eof_line {
            if !l.is_empty() {
                return Err(ParseError {
                    line,
                    message: format!("unexpected content after \"# EOF\" (on line {eof})"),
                });
            }
            continue;
        }
        if l.trim().is_empty() {
            if format == Format::OpenMetrics {
                return Err(ParseError {
                    line,
                    message: "OpenMetrics allows no empty lines".into(),
                });
            }
            continue;
        }
        last_line = line;
        let res = if let Some(comment) = l.trim_start().strip_prefix('#') {
            p.comment(comment).map(|eof| {
                if eof {
                    eof_line = Some(line);
                }
            })
        } else {
            p.sample(l.trim_start())
        };
        res.map_err(|message| ParseError { line, message })?;
    }
    if format == Format::OpenMetrics && eof_line.is_none() {
        return Err(ParseError {
            line: last_line.max(1),
            message: "OpenMetrics exposition does not end with \"# EOF\" (truncated body?)".into(),
        });
    }
    let metadata = p
        .order
        .iter()
        .map(|name| {
            let f = &p.families[name];
            MetricMetadata {
                metric_family_name: name.clone(),
                type_: f.type_.clone().unwrap_or_else(|| "unknown".into()),
                help: f.help.clone().unwrap_or_default(),
                unit: f.unit.clone().unwrap_or_default(),
            }
        })
        .collect();
    Ok(metadata)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// Splits a leading metric name off `s`.
fn take_metric_name(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(s.len(), |(i, _)| i);
    s.split_at(end)
}

fn unescape_help(s: &str, format: Format) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') if format == Format::OpenMetrics => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

impl<'a> Parser<'a, '_> {
    fn family(&mut self, name: &str) -> &mut Family {
        if !self.families.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.families.entry(name.to_string()).or_default()
    }

    /// Handles the text after `#`. Returns true for `# EOF`.
    fn comment(&mut self, rest: &str) -> Result<bool, String> {
        let rest = rest.trim_start_matches([' ', '\t']);
        let (keyword, args) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let om = self.format == Format::OpenMetrics;
        match keyword {
            "EOF" if om => {
                if !args.trim().is_empty() {
                    return Err("unexpected text after \"# EOF\"".into());
                }
                Ok(true)
            }
            "HELP" | "TYPE" => {
                let args = args.trim_start_matches([' ', '\t']);
                let (name, tail) = take_metric_name(args);
                if name.is_empty() {
                    return Err(format!(
                        "expected a metric name after \"# {keyword}\", got {args:?}"
                    ));
                }
                if !tail.is_empty() && !tail.starts_with([' ', '\t']) {
                    return Err(format!(
                        "invalid metric name in \"# {keyword}\" line: {args:?}"
                    ));
                }
                let tail = tail.strip_prefix([' ', '\t']).unwrap_or(tail);
                if keyword == "HELP" {
                    let help = unescape_help(tail, self.format);
                    // A repeated HELP replaces the earlier one, as in Prometheus.
                    self.family(name).help = Some(help);
                } else {
                    let t = tail.trim();
                    let valid: &[&str] = if om {
                        &[
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "summary",
                            "info",
                            "stateset",
                            "unknown",
                        ]
                    } else {
                        &["counter", "gauge", "histogram", "summary", "untyped"]
                    };
                    if !valid.contains(&t) {
                        return Err(format!(
                            "invalid metric type {t:?} for {name:?}; expected one of {}",
                            valid.join(", ")
                        ));
                    }
                    let t = if t == "untyped" { "unknown" } else { t };
                    // Like Prometheus' scrape parser, a repeated or late TYPE
                    // is accepted; it applies from here on.
                    self.family(name).type_ = Some(t.to_string());
                    // Cached series may need the family's normalisation now.
                    self.cache.clear();
                }
                Ok(false)
            }
            "UNIT" if om => {
                let args = args.trim_start_matches([' ', '\t']);
                let (name, tail) = take_metric_name(args);
                if name.is_empty() {
                    return Err(format!(
                        "expected a metric name after \"# UNIT\", got {args:?}"
                    ));
                }
                let unit = tail.trim().to_string();
                if !unit.is_empty() && !name.ends_with(&format!("_{unit}")) {
                    return Err(format!(
                        "metric name {name:?} must end with its unit suffix \"_{unit}\""
                    ));
                }
                self.family(name).unit = Some(unit);
                Ok(false)
            }
            _ if om => Err(
                "OpenMetrics allows no comments other than # HELP, # TYPE, # UNIT and # EOF".into(),
            ),
            // Any other comment is ignored in the text format.
            _ => Ok(false),
        }
    }

    /// The family a sample name belongs to: the length of the family name
    /// (a prefix of `name`) and its type.
    fn family_of(&self, name: &str) -> Option<(usize, &'static str)> {
        if let Some(t) = self.families.get(name).and_then(|f| f.type_.as_deref()) {
            return Some((name.len(), static_type(t)));
        }
        const SUFFIXES: &[(&str, &[&str])] = &[
            ("_total", &["counter"]),
            (
                "_created",
                &["counter", "histogram", "summary", "gaugehistogram"],
            ),
            ("_bucket", &["histogram", "gaugehistogram"]),
            ("_count", &["histogram", "summary"]),
            ("_sum", &["histogram", "summary"]),
            ("_gcount", &["gaugehistogram"]),
            ("_gsum", &["gaugehistogram"]),
            ("_info", &["info"]),
        ];
        for (suffix, types) in SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(t) = self.families.get(base).and_then(|f| f.type_.as_deref()) {
                    if types.contains(&t) {
                        return Some((base.len(), static_type(t)));
                    }
                }
            }
        }
        None
    }

    fn sample(&mut self, line: &'a str) -> Result<(), String> {
        let (name, mut rest) = take_metric_name(line);
        if name.is_empty() {
            let bad: String = line.chars().take(20).collect();
            return Err(format!(
                "expected a metric name at the start of the line, got {bad:?}"
            ));
        }
        if let Some(end) = series_text_end(line, name.len()) {
            if let Some(labels) = self.cache.get(&line[..end]) {
                let braces = line[..end].ends_with('}');
                let sample = self.value_and_timestamp(&line[end..], name, braces)?;
                (self.emit)(labels, sample);
                return Ok(());
            }
        }
        let mut labels = vec![Label::new(METRIC_NAME, name)];
        if let Some(after) = rest.strip_prefix('{') {
            rest = parse_labels(after, &mut labels, name)?;
        }
        let series_text = &line[..line.len() - rest.len()];
        let sample = self.value_and_timestamp(rest, name, series_text.ends_with('}'))?;
        let family = if self.families.is_empty() {
            None
        } else {
            self.family_of(name)
        };
        if let Some((_, type_)) = family {
            let normalise = match type_ {
                "histogram" | "gaugehistogram" => Some("le"),
                "summary" => Some("quantile"),
                _ => None,
            };
            if let Some(lname) = normalise {
                for l in labels.iter_mut().filter(|l| l.name == lname) {
                    if let Some(v) = parse_value(&l.value) {
                        l.value = format_label_float(v);
                    }
                }
            }
        }
        let labels = Labels::from_sorted_checked(labels)
            .map_err(|dup| format!("duplicate label name {dup:?} in sample {name:?}"))?;
        if self.cache.len() < SERIES_CACHE_MAX {
            let labels = self.cache.entry(series_text).or_insert(labels);
            (self.emit)(labels, sample);
        } else {
            (self.emit)(&labels, sample);
        }
        Ok(())
    }

    /// Parses what follows the series: value, optional timestamp, optional
    /// exemplar (OpenMetrics). After `}` the value may follow without a
    /// space, as Prometheus accepts.
    fn value_and_timestamp(&self, rest: &str, name: &str, braces: bool) -> Result<Sample, String> {
        if !braces && !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return Err(format!(
                "invalid character {:?} after metric name {name:?}",
                rest.chars().next().unwrap()
            ));
        }
        let mut tokens = rest.split([' ', '\t']).filter(|t| !t.is_empty());
        let value_tok = tokens
            .next()
            .ok_or_else(|| format!("sample {name:?} has no value"))?;
        let value = parse_value(value_tok).ok_or_else(|| format!("invalid value {value_tok:?} for sample {name:?}: expected a float, NaN, +Inf or -Inf"))?;
        let mut t = self.default_ts;
        let mut next = tokens.next();
        if let Some(tok) = next.filter(|t| *t != "#") {
            t = match self.format {
                Format::PrometheusText => tok
                    .parse::<i64>()
                    .map_err(|_| format!("invalid timestamp {tok:?} for sample {name:?}: expected integer milliseconds"))?,
                Format::OpenMetrics => {
                    let secs = tok
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite())
                        .ok_or_else(|| format!("invalid timestamp {tok:?} for sample {name:?}: expected seconds"))?;
                    (secs * 1000.0).round() as i64
                }
            };
            next = tokens.next();
        }
        if let Some(tok) = next {
            if tok == "#" && self.format == Format::OpenMetrics {
                // An exemplar: validated loosely and skipped.
                let ex = rest[rest.find('#').unwrap() + 1..].trim_start();
                if !ex.starts_with('{') {
                    return Err(format!(
                        "invalid exemplar for sample {name:?}: expected '{{' after '#'"
                    ));
                }
            } else {
                return Err(format!(
                    "unexpected text {tok:?} after the value of sample {name:?}"
                ));
            }
        }
        Ok(Sample::new(t, value))
    }
}

/// Where the series text (`name` or `name{...}`) of a sample line ends,
/// found without allocating; `None` if the braces are not closed (the full
/// parser then reports the error).
fn series_text_end(line: &str, name_len: usize) -> Option<usize> {
    let b = line.as_bytes();
    if b.get(name_len) != Some(&b'{') {
        return Some(name_len);
    }
    let mut i = name_len + 1;
    let mut in_quote = false;
    while i < b.len() {
        match b[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'}' if !in_quote => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The type names the parser stores, as `'static` strings.
fn static_type(t: &str) -> &'static str {
    match t {
        "counter" => "counter",
        "gauge" => "gauge",
        "histogram" => "histogram",
        "gaugehistogram" => "gaugehistogram",
        "summary" => "summary",
        "info" => "info",
        "stateset" => "stateset",
        _ => "unknown",
    }
}

/// Parses a sample value the way Go's `strconv.ParseFloat` does for the
/// spellings that occur in practice: decimal and exponent notation, and
/// `Inf`/`Infinity`/`NaN` in any case with an optional sign on infinities.
fn parse_value(tok: &str) -> Option<f64> {
    let (sign, rest) = match tok.as_bytes().first() {
        Some(b'+') => (1.0, &tok[1..]),
        Some(b'-') => (-1.0, &tok[1..]),
        _ => (1.0, tok),
    };
    if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    if tok.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if !tok
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    tok.parse::<f64>().ok()
}

/// Parses `name="value",...}` (after the `{`); returns the rest of the line.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut Vec<Label>,
    metric: &str,
) -> Result<&'a str, String> {
    let ws = |s: &'a str| s.trim_start_matches([' ', '\t']);
    loop {
        s = ws(s);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let end = s
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
            .map_or(s.len(), |(i, _)| i);
        let (lname, rest) = s.split_at(end);
        if lname.is_empty() || !is_valid_label_name(lname) {
            let bad: String = s.chars().take(20).collect();
            return Err(format!(
                "expected a label name in sample {metric:?}, got {bad:?}"
            ));
        }
        s = ws(rest);
        s = s.strip_prefix('=').ok_or_else(|| {
            format!("expected '=' after label name {lname:?} in sample {metric:?}")
        })?;
        s = ws(s);
        s = s.strip_prefix('"').ok_or_else(|| {
            format!("expected '\"' to open the value of label {lname:?} in sample {metric:?}")
        })?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let mut closed = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    closed = Some(i);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => break,
                },
                c => value.push(c),
            }
        }
        let close = closed
            .ok_or_else(|| format!("unterminated value of label {lname:?} in sample {metric:?}"))?;
        labels.push(Label::new(lname, value));
        s = ws(&s[close + 1..]);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            let bad: String = s.chars().take(20).collect();
            return Err(format!("expected ',' or '}}' after the value of label {lname:?} in sample {metric:?}, got {bad:?}"));
        }
    }
}

fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_series(out: &mut String, labels: &Labels, s: &Sample, with_ts: bool) {
    out.push_str(labels.metric_name().unwrap_or(""));
    let mut first = true;
    for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(&l.name);
        out.push_str("=\"");
        escape_label_value(&l.value, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_float(s.v));
    if with_ts {
        out.push(' ');
        out.push_str(&s.t.to_string());
    }
    out.push('\n');
}

/// Writes samples in the text format 0.0.4, one line each, with their
/// millisecond timestamps. No `# TYPE` lines (the types are not known here).
pub fn encode_text(series: &[(Labels, Sample)]) -> String {
    let mut out = String::new();
    for (l, s) in series {
        write_series(&mut out, l, s, true);
    }
    out
}

/// Like [`encode_text`] but without timestamps, as a `/metrics` endpoint
/// exposes its own current values.
pub fn encode_text_without_timestamps(series: &[(Labels, Sample)]) -> String {
    let mut out = String::new();
    for (l, s) in series {
        write_series(&mut out, l, s, false);
    }
    out
}

#[cfg(test)]
mod tests;
