//! Newline-delimited JSON logs (`POST /api/v1/logs/ndjson?<labels>`): one
//! JSON object per line, for anything that can `curl` a file. The time,
//! level and message fields are found by their common names; the message
//! becomes the line (the whole object when there is none), the level the
//! `level` stream label, and the other top-level fields structured metadata.

use skopos_model::{is_valid_label_name, Labels, LabelsBuilder, LogBatch, LogEntry, LogStream};

use crate::loki::PushError;
use crate::otlp::sanitize_label_name;

const TIME_KEYS: &[&str] = &["timestamp", "@timestamp", "ts", "time", "t", "date"];
const LEVEL_KEYS: &[&str] = &["level", "lvl", "severity", "log.level", "loglevel"];
const MESSAGE_KEYS: &[&str] = &["message", "msg", "log", "text"];

/// A time field's value in Unix ns: RFC 3339 text, or a number of seconds,
/// milliseconds, microseconds or nanoseconds (told apart by magnitude).
fn parse_time(v: &serde_json::Value) -> Option<i64> {
    let s = match v {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    if let Ok(i) = s.parse::<i64>() {
        // Integers exactly: seconds, ms, µs or ns by magnitude.
        let scale = match i.unsigned_abs() {
            0..100_000_000_000 => 1_000_000_000,
            100_000_000_000..100_000_000_000_000 => 1_000_000,
            100_000_000_000_000..100_000_000_000_000_000 => 1_000,
            _ => 1,
        };
        return i.checked_mul(scale);
    }
    if let Ok(f) = s.parse::<f64>() {
        let ns = if f.abs() < 1e11 { f * 1e9 } else { f * 1e6 };
        return ns.is_finite().then_some(ns as i64);
    }
    skopos_units::parse_log_time(&s).ok()
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Decodes `body` into streams labelled with `labels` (plus `level`);
/// `now_ns` stamps lines without a time field. A line that is not a JSON
/// object fails the whole body, naming the line.
pub fn decode(body: &[u8], labels: &Labels, now_ns: i64) -> Result<LogBatch, PushError> {
    if labels.is_empty() {
        return Err(PushError(
            "give the stream's labels as query parameters, e.g. ?app=web&env=prod".into(),
        ));
    }
    let text_body =
        std::str::from_utf8(body).map_err(|e| PushError(format!("body is not UTF-8: {e}")))?;
    let mut streams: std::collections::BTreeMap<Labels, Vec<LogEntry>> = Default::default();
    for (i, raw) in text_body.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
            .map_err(|e| PushError(format!("line {}: not a JSON object: {e}", i + 1)))?;
        let find = |keys: &[&str]| keys.iter().find_map(|k| obj.get_key_value(*k));
        let ts = match find(TIME_KEYS) {
            Some((k, v)) => parse_time(v).ok_or_else(|| {
                PushError(format!("line {}: cannot read {k:?} = {v} as a time", i + 1))
            })?,
            None => now_ns,
        };
        let level = find(LEVEL_KEYS).map(|(k, v)| (k.clone(), text(v).to_lowercase()));
        let message = find(MESSAGE_KEYS).map(|(k, v)| (k.clone(), text(v)));
        let mut meta = LabelsBuilder::new();
        if message.is_some() {
            for (k, v) in &obj {
                let skip = TIME_KEYS.contains(&k.as_str())
                    || level.as_ref().is_some_and(|(lk, _)| lk == k)
                    || message.as_ref().is_some_and(|(mk, _)| mk == k);
                let name = sanitize_label_name(k);
                if !skip && is_valid_label_name(&name) {
                    meta.set(name, text(v));
                }
            }
        }
        let mut stream = labels.builder();
        if let Some((_, lv)) = &level {
            stream.set("level", lv.clone());
        }
        let line = message.map_or_else(|| raw.to_string(), |(_, m)| m);
        streams.entry(stream.build()).or_default().push(LogEntry {
            ts,
            line,
            metadata: meta.build(),
        });
    }
    Ok(LogBatch {
        streams: streams
            .into_iter()
            .map(|(labels, entries)| LogStream { labels, entries })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_common_names() {
        let body =
            br#"{"ts":"2023-11-14T22:13:20Z","level":"ERROR","msg":"boom","req.id":"r1","n":3}
{"time":1700000000123,"message":"ms epoch"}

{"t":1700000000,"other":"no message"}
"#;
        let labels = Labels::from_pairs([("app", "web")]);
        let b = decode(body, &labels, 7).unwrap();
        let all: Vec<(String, &LogEntry)> = b
            .streams
            .iter()
            .flat_map(|s| s.entries.iter().map(move |e| (s.labels.to_string(), e)))
            .collect();
        assert_eq!(all.len(), 3);
        let (l, e) = &all.iter().find(|(_, e)| e.line == "boom").unwrap();
        assert_eq!(l, r#"{app="web", level="error"}"#);
        assert_eq!(e.ts, 1_700_000_000_000_000_000);
        assert_eq!(e.metadata.get("req_id"), Some("r1"));
        assert_eq!(e.metadata.get("n"), Some("3"));
        let (_, e) = all.iter().find(|(_, e)| e.line == "ms epoch").unwrap();
        assert_eq!(e.ts, 1_700_000_000_123_000_000);
        // No message field: the whole object is the line.
        let (_, e) = all
            .iter()
            .find(|(_, e)| e.line.contains("no message"))
            .unwrap();
        assert_eq!(e.ts, 1_700_000_000_000_000_000);

        let err = decode(b"{\"msg\":1}\nnot json\n", &labels, 0).unwrap_err();
        assert!(err.0.starts_with("line 2:"), "{err}");
        let err = decode(b"{\"ts\":\"yesterday\"}\n", &labels, 0).unwrap_err();
        assert!(err.0.contains("as a time"), "{err}");
        assert!(decode(b"{}", &Labels::empty(), 0).is_err());
        // Without a time field, lines get the time they arrived.
        assert_eq!(
            decode(b"{\"msg\":\"x\"}", &labels, 42).unwrap().streams[0].entries[0].ts,
            42
        );
    }
}
