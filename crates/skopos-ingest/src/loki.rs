//! Loki's push API (`POST /loki/api/v1/push`): the JSON body and the
//! snappy-compressed protobuf body (`logproto.PushRequest`), decoded into a
//! [`LogBatch`]. Snappy and gzip framing are the caller's business; this
//! module sees the plain bytes.

use skopos_model::{is_valid_label_name, Labels, LabelsBuilder, LogBatch, LogEntry, LogStream};

/// A push body that cannot be decoded; the message says where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PushError(pub String);

fn err(msg: impl Into<String>) -> PushError {
    PushError(msg.into())
}

/// `logproto.PushRequest` and friends, declared by hand (fields skopos does
/// not read are left out; prost skips them).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        /// The stream's labels in selector syntax: `{app="api", env="prod"}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPair>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

fn build_labels(
    pairs: impl IntoIterator<Item = (String, String)>,
    what: &str,
) -> Result<Labels, PushError> {
    let mut b = LabelsBuilder::new();
    let mut n = 0;
    for (name, value) in pairs {
        if !is_valid_label_name(&name) {
            return Err(err(format!("{what}: invalid label name {name:?}")));
        }
        if b.get(&name).is_some() {
            return Err(err(format!("{what}: duplicate label name {name:?}")));
        }
        b.set(name, value);
        n += 1;
    }
    let l = b.build();
    // Empty values are dropped, as Prometheus and Loki do.
    debug_assert!(l.len() <= n);
    Ok(l)
}

/// Decodes the JSON push body:
/// `{"streams":[{"stream":{"app":"api"},"values":[["<ns>","line",{"k":"v"}]]}]}`.
/// The parsed document is taken apart by value, so each line's text moves
/// into its entry rather than being copied.
pub fn decode_json(body: &[u8]) -> Result<LogBatch, PushError> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let streams = match v {
        Value::Object(mut m) => match m.remove("streams") {
            Some(Value::Array(a)) => a,
            _ => return Err(err("the body has no \"streams\" array")),
        },
        _ => return Err(err("the body has no \"streams\" array")),
    };
    let mut out = LogBatch::default();
    for (si, s) in streams.into_iter().enumerate() {
        let what = || format!("streams[{si}]");
        let Value::Object(mut s) = s else {
            return Err(err(format!("{} must be an object", what())));
        };
        let labels = match s.remove("stream") {
            None | Some(Value::Null) => Labels::empty(),
            Some(Value::Object(m)) => {
                let mut pairs = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let Value::String(v) = v else {
                        return Err(err(format!(
                            "{}.stream.{k}: label values must be strings",
                            what()
                        )));
                    };
                    pairs.push((k, v));
                }
                build_labels(pairs, &format!("{}.stream", what()))?
            }
            Some(_) => return Err(err(format!("{}.stream must be an object", what()))),
        };
        let Some(Value::Array(values)) = s.remove("values") else {
            return Err(err(format!("{} has no \"values\" array", what())));
        };
        let mut entries = Vec::with_capacity(values.len());
        for (vi, v) in values.into_iter().enumerate() {
            let what = || format!("streams[{si}].values[{vi}]");
            let arr = match v {
                Value::Array(a) if a.len() == 2 || a.len() == 3 => a,
                _ => {
                    return Err(err(format!(
                        "{} must be [\"<unix ns>\", \"<line>\"] or with a metadata object",
                        what()
                    )))
                }
            };
            let mut arr = arr.into_iter();
            let t = arr.next().unwrap_or(Value::Null);
            let line = arr.next().unwrap_or(Value::Null);
            let ts = t
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    err(format!(
                        "{}: the timestamp must be a string of Unix nanoseconds, got {t}",
                        what()
                    ))
                })?;
            let Value::String(line) = line else {
                return Err(err(format!("{}: the line must be a string", what())));
            };
            let mut e = LogEntry::new(ts, line);
            if let Some(meta) = arr.next() {
                let Value::Object(m) = meta else {
                    return Err(err(format!(
                        "{}: structured metadata must be an object",
                        what()
                    )));
                };
                let mut pairs = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let Value::String(v) = v else {
                        return Err(err(format!(
                            "{}: metadata value of {k:?} must be a string",
                            what()
                        )));
                    };
                    pairs.push((k, v));
                }
                e.metadata = build_labels(pairs, &what())?;
            }
            entries.push(e);
        }
        out.streams.push(LogStream { labels, entries });
    }
    Ok(out)
}

/// Decodes the protobuf push body (after snappy).
pub fn decode_proto(body: &[u8]) -> Result<LogBatch, PushError> {
    use prost::Message;
    let req = proto::PushRequest::decode(body)
        .map_err(|e| err(format!("invalid protobuf PushRequest: {e}")))?;
    let mut out = LogBatch::default();
    for (si, s) in req.streams.into_iter().enumerate() {
        let what = format!("streams[{si}]");
        let labels = parse_label_set(&s.labels).map_err(|e| err(format!("{what}.labels: {e}")))?;
        let mut entries = Vec::with_capacity(s.entries.len());
        for (ei, e) in s.entries.into_iter().enumerate() {
            let ts = e.timestamp.map_or(Some(0), |t| {
                t.seconds
                    .checked_mul(1_000_000_000)
                    .and_then(|s| s.checked_add(i64::from(t.nanos)))
            });
            let ts =
                ts.ok_or_else(|| err(format!("{what}.entries[{ei}]: timestamp out of range")))?;
            let mut entry = LogEntry::new(ts, e.line);
            entry.metadata = build_labels(
                e.structured_metadata.into_iter().map(|p| (p.name, p.value)),
                &format!("{what}.entries[{ei}]"),
            )?;
            entries.push(entry);
        }
        out.streams.push(LogStream { labels, entries });
    }
    Ok(out)
}

/// Parses a label set in selector syntax, `{a="b", c="d\"e"}`.
pub fn parse_label_set(s: &str) -> Result<Labels, String> {
    let b = s.trim().as_bytes();
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
        return Err(format!("{s:?} is not a label set like {{a=\"b\"}}"));
    }
    let inner = &s.trim()[1..s.trim().len() - 1];
    let mut pairs = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("expected name=\"value\" at {rest:?}"))?;
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let (value, after) =
            unquote(rest).ok_or_else(|| format!("bad quoted value at {rest:?}"))?;
        pairs.push((name, value));
        rest = after.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected ',' or '}}' at {rest:?}"));
        }
    }
    build_labels(pairs, "label set").map_err(|e| e.0)
}

/// A Go-style double-quoted string at the start of `s`: its value and the rest.
fn unquote(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' | '"' | '\'' => out.push(e),
                    'u' => {
                        let hex: String =
                            (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    _ => return None,
                }
            }
            _ => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_push_with_metadata() {
        let body = br#"{"streams":[{"stream":{"app":"api","empty":""},"values":[["1700000000000000001","hello"],["2","x",{"trace_id":"abc"}]]}]}"#;
        let b = decode_json(body).unwrap();
        assert_eq!(b.streams[0].labels, Labels::from_pairs([("app", "api")]));
        assert_eq!(
            b.streams[0].entries[0],
            LogEntry::new(1_700_000_000_000_000_001, "hello")
        );
        assert_eq!(
            b.streams[0].entries[1].metadata.get("trace_id"),
            Some("abc")
        );
        for (bad, want) in [
            (&b"{"[..], "invalid JSON"),
            (br#"{"x":1}"#, "no \"streams\""),
            (
                br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#,
                "streams[0].stream.a",
            ),
            (
                br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#,
                "streams[0].values[0]: the timestamp",
            ),
            (
                br#"{"streams":[{"stream":{"a b":"c"},"values":[]}]}"#,
                "invalid label name",
            ),
        ] {
            let e = decode_json(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn protobuf_push_round_trips() {
        use prost::Message;
        let req = proto::PushRequest {
            streams: vec![proto::Stream {
                labels: r#"{app="api", msg="a \"q\" b\\"}"#.into(),
                entries: vec![proto::Entry {
                    timestamp: Some(proto::Timestamp {
                        seconds: 2,
                        nanos: 5,
                    }),
                    line: "l".into(),
                    structured_metadata: vec![proto::LabelPair {
                        name: "trace_id".into(),
                        value: "t".into(),
                    }],
                }],
            }],
        };
        let b = decode_proto(&req.encode_to_vec()).unwrap();
        assert_eq!(b.streams[0].labels.get("msg"), Some("a \"q\" b\\"));
        assert_eq!(b.streams[0].entries[0].ts, 2_000_000_005);
        assert_eq!(b.streams[0].entries[0].metadata.get("trace_id"), Some("t"));
        assert!(decode_proto(b"\xff\xff").is_err());
        assert!(parse_label_set("app=\"x\"").is_err());
        assert!(parse_label_set("{app=\"x\" b=\"y\"}").is_err());
        assert_eq!(parse_label_set("{}").unwrap(), Labels::empty());
    }
}
