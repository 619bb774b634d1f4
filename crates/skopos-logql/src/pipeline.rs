//! Runs a pipeline over one entry: line filters, parsers, label filters,
//! formatters, drop/keep, in written order.
//!
//! Labels follow Loki's builder: the entry starts with its stream labels
//! plus its structured metadata; a parser's key that names a stream label
//! is stored as `<key>_extracted`; a failing stage sets `__error__` and
//! `__error_details__` (kept beside the labels; string label filters match
//! on them). A label set to the empty value reads as present to label
//! filters but is absent from the entry's result labels.

use std::collections::BTreeMap;

use skopos_model::{Labels, LabelsBuilder};

use crate::ast::{Conversion, Extraction, LabelFilter, LabelFmt, LabelSel, LineOp, Stage, Unwrap};
use crate::parsers::{
    json_path, parse_json_object, parse_json_object_partial, parse_json_value_partial, scan_logfmt,
    JKind, JVal,
};
use crate::template::Data;
use crate::template::Template;
use crate::units::{parse_bytes, parse_go_duration, parse_go_float};

pub const ERROR_LABEL: &str = "__error__";
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";
const DUPLICATE_SUFFIX: &str = "_extracted";

pub const ERR_JSON: &str = "JSONParserErr";
pub const ERR_LOGFMT: &str = "LogfmtParserErr";
pub const ERR_LABEL_FILTER: &str = "LabelFilterErr";
pub const ERR_SAMPLE_EXTRACTION: &str = "SampleExtractionErr";
pub const ERR_TEMPLATE: &str = "TemplateFormatErr";

/// The labels of one entry while its pipeline runs.
pub struct EntryLabels<'a> {
    stream: &'a Labels,
    map: BTreeMap<String, String>,
    err: Option<String>,
    details: Option<String>,
}

impl<'a> EntryLabels<'a> {
    pub fn new(stream: &'a Labels, metadata: &Labels) -> Self {
        let mut map: BTreeMap<String, String> = stream
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        for l in metadata {
            let name = if stream.get(&l.name).is_some() {
                format!("{}{DUPLICATE_SUFFIX}", l.name)
            } else {
                l.name.clone()
            };
            map.insert(name, l.value.clone());
        }
        EntryLabels {
            stream,
            map,
            err: None,
            details: None,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            ERROR_LABEL => self.err.as_deref(),
            ERROR_DETAILS_LABEL => self.details.as_deref(),
            _ => self.map.get(name).map(String::as_str),
        }
    }

    fn set(&mut self, name: String, value: String) {
        match name.as_str() {
            ERROR_LABEL => self.err = Some(value).filter(|v| !v.is_empty()),
            ERROR_DETAILS_LABEL => self.details = Some(value).filter(|v| !v.is_empty()),
            _ => {
                self.map.insert(name, value);
            }
        }
    }

    fn del(&mut self, name: &str) {
        match name {
            ERROR_LABEL => self.err = None,
            ERROR_DETAILS_LABEL => self.details = None,
            _ => {
                self.map.remove(name);
            }
        }
    }

    /// Sets a parsed key, renamed `<key>_extracted` when a stream label has its name.
    fn set_parsed(&mut self, key: String, value: String) {
        let key = if self.stream.get(&key).is_some() {
            key + DUPLICATE_SUFFIX
        } else {
            key
        };
        self.set(key, value);
    }

    pub fn has_err(&self) -> bool {
        self.err.is_some()
    }

    pub fn set_err(&mut self, err: &str, details: Option<String>) {
        // Like Loki's builder, a later error replaces the earlier one.
        self.err = Some(err.to_string());
        if let Some(d) = details.filter(|d| !d.is_empty()) {
            self.details = Some(d);
        }
    }

    /// The entry's labels with the error labels, empty values dropped.
    pub fn result(&self) -> Labels {
        let mut b = LabelsBuilder::new();
        for (k, v) in &self.map {
            b.set(k.clone(), v.clone());
        }
        if let Some(e) = &self.err {
            b.set(ERROR_LABEL, e.clone());
        }
        if let Some(d) = &self.details {
            b.set(ERROR_DETAILS_LABEL, d.clone());
        }
        b.build()
    }

    /// Labels kept for a sample: `by` keeps only `names`, `without` drops
    /// them. An entry with an error keeps all its labels, so that the error
    /// is reported with the series it came from (as Loki does).
    pub fn grouped(&self, names: &[String], without: bool) -> Labels {
        if self.has_err() {
            return self.result();
        }
        let mut b = LabelsBuilder::new();
        for (k, v) in &self.map {
            if names.contains(k) != without {
                b.set(k.clone(), v.clone());
            }
        }
        if let Some(d) = &self.details {
            if names.iter().any(|n| n == ERROR_DETAILS_LABEL) != without {
                b.set(ERROR_DETAILS_LABEL, d.clone());
            }
        }
        b.build()
    }

    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut m = self.map.clone();
        if let Some(e) = &self.err {
            m.insert(ERROR_LABEL.into(), e.clone());
        }
        if let Some(d) = &self.details {
            m.insert(ERROR_DETAILS_LABEL.into(), d.clone());
        }
        m
    }
}

/// Loki's label-name sanitising: every character outside `[a-zA-Z0-9_]`
/// becomes `_`; a leading digit gets a `_` in front.
pub fn sanitize_key(key: &str, first: bool) -> String {
    let key = key.trim();
    let mut out = String::with_capacity(key.len() + 1);
    if first && key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// Runs `stages` over an entry. Returns the (possibly rewritten) line, or
/// `None` when a filter drops the entry.
pub fn run_stages(
    stages: &[Stage],
    ts: i64,
    line: &str,
    lbs: &mut EntryLabels<'_>,
) -> Option<String> {
    let mut line = line.to_string();
    for stage in stages {
        if !run_stage(stage, ts, &mut line, lbs) {
            return None;
        }
    }
    Some(line)
}

fn run_stage(stage: &Stage, ts: i64, line: &mut String, lbs: &mut EntryLabels<'_>) -> bool {
    match stage {
        Stage::LineFilter(f) => return f.matches(line),
        Stage::LabelFilter(f) => return label_filter(f, lbs),
        Stage::Json(params) if params.is_empty() => json_all(line, lbs),
        Stage::Json(params) => json_params(params, line, lbs),
        Stage::Logfmt {
            strict,
            keep_empty,
            params,
        } => logfmt(*strict, *keep_empty, params, line, lbs),
        Stage::Regexp { re, .. } => regexp(re, line, lbs),
        Stage::Pattern { pattern, .. } => {
            for (k, v) in pattern.matches(line) {
                lbs.set_parsed(k.to_string(), v.to_string());
            }
        }
        Stage::Unpack => unpack(line, lbs),
        Stage::LineFormat(tpl) => line_format(tpl, ts, line, lbs),
        Stage::LabelFormat(items) => label_format(items, ts, line, lbs),
        Stage::Drop(sels) => drop_labels(sels, lbs),
        Stage::Keep(sels) => keep_labels(sels, lbs),
        Stage::Decolorize => *line = strip_ansi(line),
    }
    true
}

/// `| json`: every field, nested keys joined with `_`.
fn json_all(line: &str, lbs: &mut EntryLabels<'_>) {
    // Keys read before a syntax error stay, as with Loki's streaming reader.
    let parsed = parse_json_object_partial(line);
    if let Some(JVal {
        kind: JKind::Obj(fields),
        ..
    }) = &parsed.value
    {
        for (k, v) in fields {
            json_fields(lbs, &sanitize_key(k, true), v);
        }
    }
    if let Some(e) = parsed.err {
        lbs.set_err(ERR_JSON, Some(e));
    }
}

/// `| json a="path", ...`: the named extractions only.
fn json_params(params: &[Extraction], line: &str, lbs: &mut EntryLabels<'_>) {
    if line.is_empty() {
        return;
    }
    if !line.starts_with(['"', '{', '[']) {
        lbs.set_err(ERR_JSON, None);
        return;
    }
    let parsed = parse_json_value_partial(line);
    let mut found = 0;
    if let Some(root) = &parsed.value {
        for p in params {
            let Some(v) = json_path(root, &p.path) else {
                continue;
            };
            let value = match &v.kind {
                JKind::Str(s) => s.clone(),
                JKind::Num(n) => n.clone(),
                JKind::Bool(b) => b.to_string(),
                JKind::Null => String::new(),
                JKind::Obj(_) | JKind::Arr(_) => line[v.start..v.end].to_string(),
            };
            lbs.set_parsed(p.name.clone(), value);
            found += 1;
        }
    }
    if let Some(e) = parsed.err {
        lbs.set_err(ERR_JSON, Some(e));
    }
    // Every extraction gets a label, empty when its path is missing.
    if found < params.len() {
        for p in params {
            if lbs.get(&p.name).is_none() {
                lbs.set(p.name.clone(), String::new());
            }
        }
    }
}

fn logfmt(
    strict: bool,
    keep_empty: bool,
    params: &[Extraction],
    line: &str,
    lbs: &mut EntryLabels<'_>,
) {
    let mut found: Vec<(String, String)> = Vec::new();
    let res = scan_logfmt(line, strict, |k, v| {
        if params.is_empty() {
            let key = sanitize_key(k, true);
            // Empty values are skipped unless asked for.
            if !key.is_empty() && (keep_empty || !v.is_empty()) {
                found.push((key, v));
            }
        } else if let Some(p) = params.iter().find(|p| p.expr == k) {
            found.push((p.name.clone(), v));
        }
    });
    for (k, v) in found {
        lbs.set_parsed(k, v);
    }
    if let Err(e) = res {
        lbs.set_err(ERR_LOGFMT, Some(e));
    }
}

fn regexp(re: &regex::Regex, line: &str, lbs: &mut EntryLabels<'_>) {
    if let Some(caps) = re.captures(line) {
        let mut found = Vec::new();
        for name in re.capture_names().flatten() {
            let v = caps.name(name).map_or("", |m| m.as_str());
            found.push((sanitize_key(name, true), v.to_string()));
        }
        for (k, v) in found {
            lbs.set_parsed(k, v);
        }
    }
}

/// `| unpack`: only an object with a packed `_entry` is unpacked: its
/// other string fields become labels and `_entry` becomes the line.
fn unpack(line: &mut String, lbs: &mut EntryLabels<'_>) {
    if line.is_empty() {
        return;
    }
    if !line.starts_with('{') {
        let e = "expecting json object(6), but it is not";
        return lbs.set_err(ERR_JSON, Some(e.into()));
    }
    let v = match parse_json_object(line) {
        Ok(v) => v,
        Err(e) => return lbs.set_err(ERR_JSON, Some(e)),
    };
    let mut entry = None;
    let mut found = Vec::new();
    if let JKind::Obj(fields) = v.kind {
        for (k, v) in fields {
            let JKind::Str(s) = v.kind else { continue };
            if k == "_entry" {
                entry = Some(s);
                continue;
            }
            let name = if lbs.stream.get(&k).is_some() {
                format!("{k}{DUPLICATE_SUFFIX}")
            } else {
                k
            };
            found.push((sanitize_key(&name, true), s));
        }
    }
    if let Some(e) = entry {
        for (k, v) in found {
            lbs.set(k, v);
        }
        *line = e;
    }
}

fn line_format(tpl: &Template, ts: i64, line: &mut String, lbs: &mut EntryLabels<'_>) {
    let snap = lbs.snapshot();
    let get = |n: &str| snap.get(n).cloned();
    match tpl.execute(&Data {
        label: &get,
        line,
        ts,
    }) {
        Ok(out) => *line = out,
        Err(e) => lbs.set_err(ERR_TEMPLATE, Some(e)),
    }
}

fn label_format(items: &[LabelFmt], ts: i64, line: &str, lbs: &mut EntryLabels<'_>) {
    let snap = lbs.snapshot();
    let get = |n: &str| snap.get(n).cloned();
    for item in items {
        match item {
            LabelFmt::Rename { dst, src } => {
                if let Some(v) = lbs.get(src).map(str::to_string) {
                    lbs.set(dst.clone(), v);
                    if src != dst {
                        lbs.del(src);
                    }
                }
            }
            LabelFmt::Template { dst, tpl } => match tpl.execute(&Data {
                label: &get,
                line,
                ts,
            }) {
                Ok(v) => lbs.set(dst.clone(), v),
                Err(e) => lbs.set_err(ERR_TEMPLATE, Some(e)),
            },
        }
    }
}

fn drop_labels(sels: &[LabelSel], lbs: &mut EntryLabels<'_>) {
    for s in sels {
        let value = lbs.get(&s.name).map(str::to_string);
        if let Some(v) = value {
            if s.matcher.as_ref().is_none_or(|m| m.matches(&v)) {
                lbs.del(&s.name);
            }
        }
    }
}

fn keep_labels(sels: &[LabelSel], lbs: &mut EntryLabels<'_>) {
    let names: Vec<String> = lbs.map.keys().cloned().collect();
    for name in names {
        let v = lbs.map[&name].clone();
        let keep = sels
            .iter()
            .any(|s| s.name == name && s.matcher.as_ref().is_none_or(|m| m.matches(&v)));
        if !keep {
            lbs.map.remove(&name);
        }
    }
}

fn json_fields(lbs: &mut EntryLabels<'_>, key: &str, v: &JVal) {
    match &v.kind {
        JKind::Obj(fields) => {
            for (k, child) in fields {
                let nested = format!("{key}_{}", sanitize_key(k, false));
                json_fields(lbs, &nested, child);
            }
        }
        JKind::Str(s) => lbs.set_parsed(key.to_string(), s.clone()),
        JKind::Num(n) => lbs.set_parsed(key.to_string(), n.clone()),
        JKind::Bool(b) => lbs.set_parsed(key.to_string(), b.to_string()),
        JKind::Arr(_) | JKind::Null => {}
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Evaluates a label filter. Numeric, duration and bytes filters drop
/// entries without the label, and let through a value they cannot read,
/// flagged with `LabelFilterErr` unless the entry already carries an error
/// (Loki 3.x; Loki 2.x let every errored entry through these filters).
pub fn label_filter(f: &LabelFilter, lbs: &mut EntryLabels<'_>) -> bool {
    match f {
        LabelFilter::Str(m) => m.matches(lbs.get(&m.name).unwrap_or("")),
        LabelFilter::And(a, b) => label_filter(a, lbs) && label_filter(b, lbs),
        LabelFilter::Or(a, b) => label_filter(a, lbs) || label_filter(b, lbs),
        LabelFilter::Num { name, op, value } => typed_filter(lbs, name, |v| {
            parse_go_float(v).map(|x| op.holds(x, *value))
        }),
        LabelFilter::Duration { name, op, value } => typed_filter(lbs, name, |v| {
            parse_go_duration(v).map(|x| op.holds(x, *value))
        }),
        LabelFilter::Bytes { name, op, value } => {
            typed_filter(lbs, name, |v| parse_bytes(v).map(|x| op.holds(x, *value)))
        }
    }
}

fn typed_filter(
    lbs: &mut EntryLabels<'_>,
    name: &str,
    check: impl Fn(&str) -> Result<bool, String>,
) -> bool {
    let Some(v) = lbs.get(name) else {
        return false;
    };
    match check(v) {
        Ok(ok) => ok,
        Err(e) => {
            // Don't overwrite what is likely the more useful, earlier error.
            if !lbs.has_err() {
                lbs.set_err(ERR_LABEL_FILTER, Some(e));
            }
            true
        }
    }
}

/// The value of an unwrapped label: `None` when the label is absent (the
/// entry yields no sample); a conversion failure flags the entry with
/// `SampleExtractionErr` and yields 0.
pub fn unwrap_value(u: &Unwrap, lbs: &mut EntryLabels<'_>) -> Option<f64> {
    let raw = lbs.get(&u.label).filter(|v| !v.is_empty())?.to_string();
    let conv = match u.conv {
        Conversion::Float => parse_go_float(&raw),
        Conversion::Duration | Conversion::DurationSeconds => {
            parse_go_duration(&raw).map(|ns| ns as f64 / 1e9)
        }
        Conversion::Bytes => parse_bytes(&raw).map(|b| b as f64),
    };
    Some(match conv {
        Ok(v) => v,
        Err(e) => {
            lbs.set_err(ERR_SAMPLE_EXTRACTION, Some(e));
            0.0
        }
    })
}

/// The literal substrings every selected line must contain: the `|=`
/// filters (single value, non-empty) that run before anything rewrites the
/// line. Parsers and label stages leave the line alone, so filters after
/// them still see the stored text.
/// The `|~` regexes a store may use the same way as [`pushdown_contains`].
pub fn pushdown_matches(stages: &[Stage]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stages {
        if s.changes_line() {
            break;
        }
        if let Stage::LineFilter(f) = s {
            if f.op == LineOp::Match && f.values.len() == 1 {
                out.push(f.values[0].clone());
            }
        }
    }
    out
}

pub fn pushdown_contains(stages: &[Stage]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stages {
        if s.changes_line() {
            break;
        }
        if let Stage::LineFilter(f) = s {
            if f.op == LineOp::Contains && f.values.len() == 1 && !f.values[0].is_empty() {
                out.push(f.values[0].clone());
            }
        }
    }
    out
}
