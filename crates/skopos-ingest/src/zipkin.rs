//! Zipkin v2 JSON (`POST /api/v2/spans`, a JSON array of spans) → the span
//! model, the way OpenTelemetry's Zipkin receiver maps it.
//!
//! | Zipkin | model |
//! |---|---|
//! | `traceId` (16 or 32 hex; shorter is left-padded, as Zipkin does), `id`, `parentId` | ids |
//! | `kind` `CLIENT`/`SERVER`/`PRODUCER`/`CONSUMER` | [`SpanKind`]; absent → unspecified |
//! | `timestamp`, `duration` (µs) | `start_ns`, `end_ns` |
//! | `localEndpoint` | the resource: `service.name`, `net.host.ip`, `net.host.port`; spans with the same local endpoint share one resource |
//! | `remoteEndpoint` | `peer.service`, `net.peer.ip`, `net.peer.port`, and `server.address` on client and producer spans |
//! | `tags` | string attributes, except: `error` → status error with the tag as message (unless it is empty or `true`); `otel.status_code`/`otel.status_description` → status; `otel.scope.name`/`otel.library.name` and their `.version` → the scope |
//! | `annotations` | events named by their value |
//! | `shared`, `debug` | attributes `zipkin.shared`, `zipkin.debug` (true only) |
//!
//! Every Zipkin span that reached a collector was sampled, so `flags` is 1
//! (W3C "sampled"). A body that is not a JSON array of span objects is a
//! [`DecodeError`]; a span with a bad id, no timestamp or an unknown kind is
//! rejected on its own and counted, as OTLP's `partial_success` does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use skopos_model::{
    parse_hex_id, AttrValue, Attribute, Resource, Scope, Span, SpanEvent, SpanId, SpanKind,
    StatusCode, TraceId,
};

use crate::otlp_traces::TranslatedSpans;
use crate::DecodeError;

#[derive(Deserialize, Default, Debug, Clone, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", default)]
struct Endpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
}

#[derive(Deserialize, Debug)]
struct Annotation {
    timestamp: u64,
    value: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ZipkinSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local_endpoint: Option<Endpoint>,
    remote_endpoint: Option<Endpoint>,
    annotations: Vec<Annotation>,
    tags: BTreeMap<String, serde_json::Value>,
    shared: Option<bool>,
    debug: Option<bool>,
}

/// Decodes a Zipkin v2 JSON span list into spans; spans that break the
/// rules are left out and counted.
pub fn decode_zipkin_v2(body: &[u8]) -> Result<TranslatedSpans, DecodeError> {
    let spans: Vec<ZipkinSpan> =
        serde_json::from_slice(body).map_err(|e| DecodeError::Zipkin(e.to_string()))?;
    let mut out = TranslatedSpans::default();
    let mut resources: HashMap<Endpoint, Arc<Resource>> = HashMap::new();
    let mut scopes: HashMap<(String, String), Arc<Scope>> = HashMap::new();
    for (i, z) in spans.iter().enumerate() {
        let local = z.local_endpoint.clone().unwrap_or_default();
        let resource = resources
            .entry(local)
            .or_insert_with_key(|ep| Arc::new(resource(ep)))
            .clone();
        match span(z, resource, &mut scopes) {
            Ok(s) => out.batch.spans.push(s),
            Err(why) => out.reject(format!(
                "span {i} (id {:?}): {why}",
                z.id.as_deref().unwrap_or("")
            )),
        }
    }
    out.finish();
    Ok(out)
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn resource(ep: &Endpoint) -> Resource {
    let mut attributes = Vec::new();
    if let Some(name) = non_empty(&ep.service_name) {
        attributes.push(Attribute::str("service.name", name));
    }
    if let Some(ip) = non_empty(&ep.ipv4).or(non_empty(&ep.ipv6)) {
        attributes.push(Attribute::str("net.host.ip", ip));
    }
    if let Some(port) = ep.port.filter(|&p| p != 0) {
        attributes.push(Attribute::new("net.host.port", AttrValue::Int(port.into())));
    }
    Resource {
        attributes,
        dropped_attributes: 0,
    }
}

fn trace_id(s: Option<&str>) -> Result<TraceId, String> {
    let s = s.ok_or("no traceId")?;
    let id: TraceId = parse_hex_id(s).map_err(|e| format!("traceId: {e}"))?;
    if id == [0; 16] {
        return Err("traceId is all zeros".into());
    }
    Ok(id)
}

fn span_id(s: &str, what: &str) -> Result<SpanId, String> {
    let id: SpanId = parse_hex_id(s).map_err(|e| format!("{what}: {e}"))?;
    if id == [0; 8] {
        return Err(format!("{what} is all zeros"));
    }
    Ok(id)
}

fn micros_to_ns(us: u64, what: &str) -> Result<i64, String> {
    us.checked_mul(1000)
        .and_then(|ns| i64::try_from(ns).ok())
        .ok_or_else(|| format!("{what} {us} µs is past the year 2262"))
}

fn span(
    z: &ZipkinSpan,
    resource: Arc<Resource>,
    scopes: &mut HashMap<(String, String), Arc<Scope>>,
) -> Result<Span, String> {
    let trace_id = trace_id(z.trace_id.as_deref())?;
    let id = span_id(z.id.as_deref().ok_or("no id")?, "id")?;
    let parent_span_id = match z.parent_id.as_deref() {
        None | Some("") => None,
        Some(p) => Some(span_id(p, "parentId")?),
    };
    let kind = match z.kind.as_deref() {
        None | Some("") => SpanKind::Unspecified,
        Some("CLIENT") => SpanKind::Client,
        Some("SERVER") => SpanKind::Server,
        Some("PRODUCER") => SpanKind::Producer,
        Some("CONSUMER") => SpanKind::Consumer,
        Some(k) => {
            return Err(format!(
                "unknown kind {k:?} (want CLIENT, SERVER, PRODUCER or CONSUMER)"
            ))
        }
    };
    let start_ns = match z.timestamp {
        None | Some(0) => return Err("no timestamp".into()),
        Some(t) => micros_to_ns(t, "timestamp")?,
    };
    let end_ns = start_ns
        .checked_add(micros_to_ns(z.duration.unwrap_or(0), "duration")?)
        .ok_or("timestamp + duration is past the year 2262")?;

    let mut attributes = Vec::new();
    let mut status = StatusCode::Unset;
    let mut status_message = String::new();
    let (mut scope_name, mut scope_version) = (String::new(), String::new());
    for (k, v) in &z.tags {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(format!("tag {k:?} is not a string")),
        };
        match k.as_str() {
            "error" => {
                // `otel.status_code` wins if both are present.
                if status == StatusCode::Unset {
                    status = StatusCode::Error;
                    if !(text.is_empty() || text == "true") {
                        status_message = text;
                    }
                }
            }
            "otel.status_code" => match text.as_str() {
                "ERROR" => status = StatusCode::Error,
                "OK" => status = StatusCode::Ok,
                "UNSET" => status = StatusCode::Unset,
                other => return Err(format!("unknown otel.status_code {other:?}")),
            },
            "otel.status_description" => status_message = text,
            "otel.scope.name" | "otel.library.name" => scope_name = text,
            "otel.scope.version" | "otel.library.version" => scope_version = text,
            _ => attributes.push(Attribute::str(k.clone(), text)),
        }
    }
    if let Some(remote) = &z.remote_endpoint {
        let service = non_empty(&remote.service_name);
        let ip = non_empty(&remote.ipv4).or(non_empty(&remote.ipv6));
        if let Some(name) = service {
            attributes.push(Attribute::str("peer.service", name));
        }
        if let Some(ip) = ip {
            attributes.push(Attribute::str("net.peer.ip", ip));
        }
        if let Some(port) = remote.port.filter(|&p| p != 0) {
            attributes.push(Attribute::new("net.peer.port", AttrValue::Int(port.into())));
        }
        if matches!(kind, SpanKind::Client | SpanKind::Producer) {
            if let Some(server) = service.or(ip) {
                attributes.push(Attribute::str("server.address", server));
            }
        }
    }
    if z.shared == Some(true) {
        attributes.push(Attribute::new("zipkin.shared", AttrValue::Bool(true)));
    }
    if z.debug == Some(true) {
        attributes.push(Attribute::new("zipkin.debug", AttrValue::Bool(true)));
    }
    let events = z
        .annotations
        .iter()
        .map(|a| {
            Ok(SpanEvent {
                time_ns: micros_to_ns(a.timestamp, "annotation timestamp")?,
                name: a.value.clone(),
                attributes: Vec::new(),
                dropped_attributes: 0,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let scope = scopes
        .entry((scope_name, scope_version))
        .or_insert_with_key(|(name, version)| {
            Arc::new(Scope {
                name: name.clone(),
                version: version.clone(),
                attributes: Vec::new(),
            })
        })
        .clone();
    Ok(Span {
        trace_id,
        span_id: id,
        parent_span_id,
        trace_state: String::new(),
        flags: 1,
        name: z.name.clone().unwrap_or_default(),
        kind,
        start_ns,
        end_ns,
        attributes,
        dropped_attributes: 0,
        events,
        dropped_events: 0,
        links: Vec::new(),
        dropped_links: 0,
        status,
        status_message,
        resource,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skopos_model::find_attr;

    #[test]
    fn every_zipkin_field_maps_onto_the_model() {
        let body = br#"[
          {"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","parentId":"6b221d5bc9e6496c",
           "name":"get /api","kind":"SERVER","timestamp":1556604172355737,"duration":1431,
           "localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},
           "remoteEndpoint":{"ipv6":"::1","port":61845},
           "annotations":[{"timestamp":1556604172355800,"value":"wr"}],
           "tags":{"http.method":"GET","http.status_code":500,"error":"boom"},
           "shared":true,"debug":true},
          {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"6b221d5bc9e6496c",
           "name":"post /charge","kind":"CLIENT","timestamp":1556604172355000,"duration":2000,
           "localEndpoint":{"serviceName":"frontend"},
           "remoteEndpoint":{"serviceName":"payments","ipv4":"10.0.0.7","port":8443},
           "tags":{"otel.status_code":"OK","otel.scope.name":"io.opentelemetry.http",
                   "otel.scope.version":"1.2","error":"true"}},
          {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"0000000000000001",
           "parentId":"6b221d5bc9e6496c","kind":"PRODUCER","timestamp":1556604172356000,
           "localEndpoint":{"serviceName":"frontend"},
           "remoteEndpoint":{"serviceName":"kafka"},"tags":{"error":""}},
          {"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"0000000000000002",
           "timestamp":1556604172356000}
        ]"#;
        let t = decode_zipkin_v2(body).unwrap();
        assert_eq!((t.rejected_spans, t.error_message.as_str()), (0, ""));
        let [server, client, producer, local] = &t.batch.spans[..] else {
            panic!("{:?}", t.batch.spans)
        };

        assert_eq!(
            skopos_model::to_hex(&server.trace_id),
            "00000000000000005af7183fb1d4cf5f"
        );
        assert_eq!(skopos_model::to_hex(&server.span_id), "352bff9a74ca9ad2");
        assert_eq!(
            server.parent_span_id.map(|p| skopos_model::to_hex(&p)),
            Some("6b221d5bc9e6496c".to_string())
        );
        assert_eq!(server.name, "get /api");
        assert_eq!(server.kind, SpanKind::Server);
        assert_eq!(server.start_ns, 1_556_604_172_355_737_000);
        assert_eq!(server.duration_ns(), 1_431_000);
        assert_eq!(server.flags, 1);
        assert_eq!(
            server.resource.attributes,
            vec![
                Attribute::str("service.name", "backend"),
                Attribute::str("net.host.ip", "192.168.99.1"),
                Attribute::new("net.host.port", AttrValue::Int(3306)),
            ]
        );
        assert_eq!(
            server.attributes,
            vec![
                Attribute::str("http.method", "GET"),
                Attribute::str("http.status_code", "500"),
                Attribute::str("net.peer.ip", "::1"),
                Attribute::new("net.peer.port", AttrValue::Int(61845)),
                Attribute::new("zipkin.shared", AttrValue::Bool(true)),
                Attribute::new("zipkin.debug", AttrValue::Bool(true)),
            ]
        );
        assert_eq!(
            (server.status, server.status_message.as_str()),
            (StatusCode::Error, "boom")
        );
        assert_eq!(
            server.events,
            vec![SpanEvent {
                time_ns: 1_556_604_172_355_800_000,
                name: "wr".into(),
                attributes: vec![],
                dropped_attributes: 0,
            }]
        );

        assert_eq!(
            skopos_model::to_hex(&client.trace_id),
            "463ac35c9f6413ad48485a3953bb6124"
        );
        assert!(client.is_root());
        assert_eq!(client.kind, SpanKind::Client);
        assert_eq!(client.service_name(), "frontend");
        // otel.status_code wins over the error tag.
        assert_eq!(
            (client.status, client.status_message.as_str()),
            (StatusCode::Ok, "")
        );
        assert_eq!(
            (client.scope.name.as_str(), client.scope.version.as_str()),
            ("io.opentelemetry.http", "1.2")
        );
        assert_eq!(
            client.attributes,
            vec![
                Attribute::str("peer.service", "payments"),
                Attribute::str("net.peer.ip", "10.0.0.7"),
                Attribute::new("net.peer.port", AttrValue::Int(8443)),
                Attribute::str("server.address", "payments"),
            ]
        );

        assert_eq!(producer.kind, SpanKind::Producer);
        assert_eq!(
            (producer.status, producer.status_message.as_str()),
            (StatusCode::Error, "")
        );
        assert_eq!(producer.duration_ns(), 0);
        assert_eq!(
            find_attr(&producer.attributes, "server.address"),
            Some(&AttrValue::Str("kafka".into()))
        );
        // Spans from the same local endpoint share one resource.
        assert!(Arc::ptr_eq(&client.resource, &producer.resource));
        assert!(!Arc::ptr_eq(&client.resource, &server.resource));
        assert!(Arc::ptr_eq(&producer.scope, &local.scope));

        assert_eq!(local.kind, SpanKind::Unspecified);
        assert_eq!(local.name, "");
        assert_eq!(local.service_name(), skopos_model::UNKNOWN_SERVICE);
        assert!(local.attributes.is_empty());
    }

    #[test]
    fn bad_spans_are_rejected_and_counted_while_the_rest_are_kept() {
        let good = r#"{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"6b221d5bc9e6496c","timestamp":10}"#;
        let cases = [
            (r#"{"id":"6b221d5bc9e6496c","timestamp":10}"#, "no traceId"),
            (
                r#"{"traceId":"463ac35c9f6413ad48485a3953bb6124ff","id":"6b221d5bc9e6496c","timestamp":10}"#,
                "traceId: id",
            ),
            (
                r#"{"traceId":"00000000000000000000000000000000","id":"6b221d5bc9e6496c","timestamp":10}"#,
                "traceId is all zeros",
            ),
            (
                r#"{"traceId":"463ac35c9f6413ad","id":"xyz","timestamp":10}"#,
                "non-hex",
            ),
            (r#"{"traceId":"463ac35c9f6413ad","timestamp":10}"#, "no id"),
            (
                r#"{"traceId":"463ac35c9f6413ad","id":"0000000000000000","timestamp":10}"#,
                "id is all zeros",
            ),
            (
                r#"{"traceId":"463ac35c9f6413ad","id":"6b221d5bc9e6496c","parentId":"6b221d5bc9e6496c00","timestamp":10}"#,
                "parentId: id",
            ),
            (
                r#"{"traceId":"463ac35c9f6413ad","id":"6b221d5bc9e6496c"}"#,
                "no timestamp",
            ),
            (
                r#"{"traceId":"463ac35c9f6413ad","id":"6b221d5bc9e6496c","timestamp":10,"kind":"server"}"#,
                "unknown kind \"server\"",
            ),
            (
                r#"{"traceId":"463ac35c9f6413ad","id":"6b221d5bc9e6496c","timestamp":18446744073709551615}"#,
                "past the year 2262",
            ),
            (
                r#"{"traceId":"463ac35c9f6413ad","id":"6b221d5bc9e6496c","timestamp":10,"tags":{"a":[1]}}"#,
                "tag \"a\" is not a string",
            ),
        ];
        for (bad, why) in cases {
            let body = format!("[{good},{bad},{good}]");
            let t = decode_zipkin_v2(body.as_bytes()).unwrap();
            assert_eq!(t.rejected_spans, 1, "{why}");
            assert!(t.error_message.contains(why), "{why}: {}", t.error_message);
            assert!(
                t.error_message.starts_with("span 1 "),
                "{}",
                t.error_message
            );
            assert_eq!(t.batch.spans.len(), 2);
        }
        let all: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let t = decode_zipkin_v2(format!("[{}]", all.join(",")).as_bytes()).unwrap();
        assert_eq!(t.rejected_spans, cases.len() as i64);
        assert!(
            t.error_message.contains("no traceId"),
            "{}",
            t.error_message
        );
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_message() {
        for body in [
            &b""[..],
            b"[",
            b"{}",
            br#"[{"traceId":1}]"#,
            br#"[{"timestamp":"soon"}]"#,
            br#"[{"timestamp":-5}]"#,
            br#"[{"localEndpoint":{"port":70000}}]"#,
            br#"[{"annotations":[{"value":"x"}]}]"#,
            br#"[1]"#,
        ] {
            let e = decode_zipkin_v2(body).unwrap_err();
            assert!(e.to_string().contains("Zipkin v2"), "{e}");
        }
        assert!(decode_zipkin_v2(b"[]").unwrap().batch.spans.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_zipkin_v2(&body);
        }

        #[test]
        fn damaged_json_is_refused_or_translated_without_panic(
            at in 0usize..10_000,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let mut body = br#"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"6b221d5bc9e6496c",
              "parentId":"6b221d5bc9e6496d","name":"x","kind":"CLIENT","timestamp":1556604172355737,
              "duration":1431,"localEndpoint":{"serviceName":"a","ipv4":"1.2.3.4","port":80},
              "remoteEndpoint":{"serviceName":"b"},"annotations":[{"timestamp":1,"value":"v"}],
              "tags":{"error":"e","k":"v"},"shared":true,"debug":false}]"#.to_vec();
            let n = body.len();
            body[at % n] = byte;
            if let Ok(t) = decode_zipkin_v2(&body) {
                proptest::prop_assert!(t.batch.spans.len() as i64 + t.rejected_spans <= 1);
            }
        }
    }
}
