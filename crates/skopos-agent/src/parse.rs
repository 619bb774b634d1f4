//! Line parsing: `json` and `logfmt` fields, the timestamp among them, and
//! the fields promoted to labels or structured metadata. Sans I/O. A line
//! that does not parse is shipped unchanged and counted by the caller.

use crate::config::{Format, ParseConfig};

/// Default timestamp field names, tried in this order.
pub const TIMESTAMP_FIELDS: [&str; 4] = ["ts", "time", "timestamp", "@timestamp"];

#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// Unix nanoseconds, when the line carried a timestamp we understood.
    pub ts_ns: Option<i64>,
    pub labels: Vec<(String, String)>,
    pub metadata: Vec<(String, String)>,
    /// The line is not valid `json`/`logfmt`.
    pub error: bool,
}

#[derive(Debug, Clone)]
pub struct LineParser {
    cfg: ParseConfig,
}

impl LineParser {
    pub fn new(cfg: ParseConfig) -> LineParser {
        LineParser { cfg }
    }

    pub fn format(&self) -> Format {
        self.cfg.format
    }

    pub fn parse(&self, line: &str) -> Parsed {
        let fields = match self.cfg.format {
            Format::Raw => return Parsed::default(),
            Format::Json => json_fields(line),
            Format::Logfmt => logfmt_fields(line),
        };
        let Some(fields) = fields else {
            return Parsed {
                error: true,
                ..Parsed::default()
            };
        };
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let ts_ns = match &self.cfg.timestamp_field {
            Some(f) => get(f).and_then(|v| parse_timestamp(v)),
            None => TIMESTAMP_FIELDS
                .iter()
                .find_map(|f| get(f))
                .and_then(|v| parse_timestamp(v)),
        };
        let pick = |names: &[String]| {
            names
                .iter()
                .filter_map(|n| get(n).map(|v| (n.clone(), v.clone())))
                .filter(|(_, v)| !v.is_empty())
                .collect()
        };
        Parsed {
            ts_ns,
            labels: pick(&self.cfg.fields_to_labels),
            metadata: pick(&self.cfg.fields_to_metadata),
            error: false,
        }
    }
}

/// Top-level fields of a JSON object; scalars as text, nested values as
/// compact JSON. `None` unless the line is one JSON object.
pub fn json_fields(line: &str) -> Option<Vec<(String, String)>> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    Some(
        v.into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect(),
    )
}

/// `key=value key2="quoted \"value\"" flag` pairs. A bare key has an empty
/// value. `None` on a syntax error (unterminated quote, empty key) or when
/// the line has no `key=value` pair at all (plain text is not logfmt).
pub fn logfmt_fields(line: &str) -> Option<Vec<(String, String)>> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let mut pairs = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        if i == start {
            return None; // `=` or `"` where a key should start
        }
        let key = line[start..i].to_string();
        if i < b.len() && b[i] == b'"' {
            return None;
        }
        if i == b.len() || b[i] != b'=' {
            out.push((key, String::new()));
            continue;
        }
        i += 1; // '='
        pairs += 1;
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut val = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b'\\' if i + 1 < b.len() => {
                        // The escaped character may be more than one byte
                        // (`\é`): take it whole, never half of it.
                        let e = line[i + 1..].chars().next()?;
                        val.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        i += 1 + e.len_utf8();
                    }
                    _ => {
                        // Copy one UTF-8 character.
                        let ch = line[i..].chars().next()?;
                        val.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if !closed {
                return None;
            }
            out.push((key, val));
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push((key, line[vs..i].to_string()));
        }
    }
    (pairs > 0).then_some(out)
}

/// RFC 3339 (`2024-05-01T12:00:00.123Z`, `+02:00` offsets, a space instead
/// of `T`), or a Unix time whose unit follows from its size: seconds
/// (fractions allowed), milliseconds, microseconds or nanoseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes()
        .all(|c| c.is_ascii_digit() || c == b'.' || c == b'-')
        && !s.contains("--")
    {
        if let Some(t) = unix_timestamp(s) {
            return Some(t);
        }
    }
    skopos_units::parse_log_time(s).ok()
}

fn unix_timestamp(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        let a = n.unsigned_abs();
        return Some(if a < 100_000_000_000 {
            n.checked_mul(1_000_000_000)?
        } else if a < 100_000_000_000_000 {
            n.checked_mul(1_000_000)?
        } else if a < 100_000_000_000_000_000 {
            n.checked_mul(1_000)?
        } else {
            n
        });
    }
    let (int, frac) = s.split_once('.')?;
    let secs: i64 = int.parse().ok()?;
    if secs.unsigned_abs() >= 100_000_000_000 || frac.is_empty() {
        return None;
    }
    Some(secs * 1_000_000_000 + frac_ns(frac)?)
}

fn frac_ns(frac: &str) -> Option<i64> {
    if frac.is_empty() || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().take(9).collect();
    let n: i64 = digits.parse().ok()?;
    Some(n * 10i64.pow(9 - digits.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(format: Format, labels: &[&str], meta: &[&str]) -> LineParser {
        LineParser::new(ParseConfig {
            format,
            timestamp_field: None,
            fields_to_labels: labels.iter().map(|s| s.to_string()).collect(),
            fields_to_metadata: meta.iter().map(|s| s.to_string()).collect(),
        })
    }

    const T: i64 = 1_714_564_800_000_000_000; // 2024-05-01T12:00:00Z

    #[test]
    fn timestamps() {
        let cases: &[(&str, Option<i64>)] = &[
            ("2024-05-01T12:00:00Z", Some(T)),
            ("2024-05-01T12:00:00.5Z", Some(T + 500_000_000)),
            ("2024-05-01T12:00:00.123456789Z", Some(T + 123_456_789)),
            ("2024-05-01T14:00:00+02:00", Some(T)),
            ("2024-05-01T07:30:00-04:30", Some(T)),
            ("2024-05-01 12:00:00Z", Some(T)),
            ("1714564800", Some(T)),
            ("1714564800.25", Some(T + 250_000_000)),
            ("1714564800000", Some(T)),
            ("1714564800000000", Some(T)),
            ("1714564800000000000", Some(T)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000_000_000)),
            ("yesterday", None),
            ("2024-13-01T12:00:00Z", None),
            ("2024-05-01T12:00:00", Some(T)), // no offset: UTC, as NDJSON takes it
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_timestamp(s), *want, "{s}");
        }
    }

    #[test]
    fn logfmt() {
        let f = logfmt_fields(r#"level=info msg="hello \"world\"" dur=1.5s flag a="""#).unwrap();
        assert_eq!(
            f,
            vec![
                ("level".into(), "info".into()),
                ("msg".into(), "hello \"world\"".into()),
                ("dur".into(), "1.5s".into()),
                ("flag".into(), "".into()),
                ("a".into(), "".into()),
            ]
        );
        assert_eq!(
            logfmt_fields("k=ünï \"x").map(|v| v.len()),
            None,
            "a quote where a key starts"
        );
        assert_eq!(logfmt_fields(r#"msg="unterminated"#), None);
        // Regression (char boundary in logfmt escapes): `\é` panicked.
        assert_eq!(
            logfmt_fields(r#"k="\é" x=1"#).unwrap(),
            vec![("k".into(), "é".into()), ("x".into(), "1".into())]
        );
        assert_eq!(logfmt_fields(r#"k="\é"#), None);
        assert_eq!(logfmt_fields("=x"), None);
        assert_eq!(logfmt_fields("just some words"), None);
        assert_eq!(
            logfmt_fields("msg=\"ünï\"").unwrap(),
            vec![("msg".into(), "ünï".into())]
        );
    }

    #[test]
    fn json() {
        let f = json_fields(r#"{"a":"x","n":1.5,"b":true,"o":{"k":1},"z":null}"#).unwrap();
        assert_eq!(
            f,
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "true".into()),
                ("n".into(), "1.5".into()),
                ("o".into(), "{\"k\":1}".into()),
                ("z".into(), "".into()),
            ]
        );
        assert_eq!(json_fields("[1,2]"), None);
        assert_eq!(json_fields("{broken"), None);
    }

    #[test]
    fn parser_extracts_timestamp_labels_and_metadata() {
        let p = parser(Format::Json, &["level"], &["trace_id"]);
        let got =
            p.parse(r#"{"time":"2024-05-01T12:00:00Z","level":"warn","trace_id":"abc","msg":"x"}"#);
        assert_eq!(
            got,
            Parsed {
                ts_ns: Some(T),
                labels: vec![("level".into(), "warn".into())],
                metadata: vec![("trace_id".into(), "abc".into())],
                error: false,
            }
        );
        let p = parser(Format::Logfmt, &["level"], &[]);
        let got = p.parse("ts=1714564800000 level=error msg=boom");
        assert_eq!(got.ts_ns, Some(T));
        assert_eq!(got.labels, vec![("level".into(), "error".into())]);
        // `ts` wins over `time`: the order of TIMESTAMP_FIELDS.
        let got = p.parse("time=1 ts=1714564800 msg=x");
        assert_eq!(got.ts_ns, Some(T));
        // Not logfmt: flagged, nothing extracted.
        assert!(p.parse("plain words").error);
        assert!(parser(Format::Json, &[], &[]).parse("level=info").error);
        assert_eq!(parser(Format::Raw, &[], &[]).parse("{}"), Parsed::default());
        // An explicit field.
        let p = LineParser::new(ParseConfig {
            format: Format::Json,
            timestamp_field: Some("when".into()),
            ..ParseConfig::default()
        });
        assert_eq!(p.parse(r#"{"ts":5,"when":1714564800}"#).ts_ns, Some(T));
    }
}
