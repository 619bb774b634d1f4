//! OTLP traces → [`SpanBatch`]: a straight translation of OTLP's span data
//! model into `skopos-model`'s, which has the same shape, so nothing an
//! exporter sends is lost (events, links, dropped counts, trace state,
//! flags, status message). The resource and scope of a `ResourceSpans` /
//! `ScopeSpans` are built once and shared by their spans through `Arc`.
//!
//! OTLP/JSON differs from protobuf's canonical JSON mapping in that trace
//! and span ids are hex, not base64; `opentelemetry-proto`'s serde support
//! already decodes them that way (as [`crate::otlp_logs`] relies on too),
//! and accepts 64-bit integers as strings or numbers. Enums are integers.
//!
//! A span that breaks OTLP's rules (bad or all-zero ids, a parent id of the
//! wrong length, an end before its start, an unknown kind or status code)
//! is left out and counted, with a message naming the first problem, for
//! `partial_success`; the other spans of the request are kept.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1 as otlp;
use prost::Message;
use skopos_model::{
    AttrValue, Attribute, Resource, Scope, Span, SpanBatch, SpanEvent, SpanId, SpanKind, SpanLink,
    StatusCode, TraceId,
};

use crate::otlp::Encoding;
use crate::DecodeError;

/// Decodes an `ExportTraceServiceRequest` (protobuf, or OTLP/JSON with hex
/// ids). A broken body is an error; nothing of it is kept.
pub fn decode_traces_request(
    body: &[u8],
    enc: Encoding,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    match enc {
        Encoding::Protobuf => {
            ExportTraceServiceRequest::decode(body).map_err(|e| DecodeError::Protobuf {
                message: "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
                error: e.to_string(),
            })
        }
        Encoding::Json => serde_json::from_slice(body).map_err(|e| DecodeError::Json {
            message: "ExportTraceServiceRequest",
            error: e.to_string(),
        }),
    }
}

/// The spans of a request, and how many could not be taken and why.
#[derive(Debug, Default, Clone)]
pub struct TranslatedSpans {
    pub batch: SpanBatch,
    /// Spans left out (for `partial_success.rejected_spans`).
    pub rejected_spans: i64,
    /// Why, for `partial_success.error_message`: the first problem, and how
    /// many spans were rejected in all. Empty when nothing was rejected.
    pub error_message: String,
}

impl TranslatedSpans {
    /// Counts a rejected span; the first reason becomes the message.
    pub(crate) fn reject(&mut self, reason: String) {
        self.rejected_spans += 1;
        if self.error_message.is_empty() {
            self.error_message = reason;
        }
    }

    /// Appends the total to the message once all spans are seen.
    pub(crate) fn finish(&mut self) {
        if self.rejected_spans > 1 {
            self.error_message = format!(
                "{} spans rejected; the first: {}",
                self.rejected_spans, self.error_message
            );
        }
    }
}

/// An OTLP `AnyValue` as a model value; an empty value becomes `""`.
/// Strings and bytes are moved, not copied.
pub fn attr_value(v: Option<AnyValue>) -> AttrValue {
    match v.and_then(|v| v.value) {
        None => AttrValue::Str(String::new()),
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Float(d),
        Some(any_value::Value::BytesValue(b)) => AttrValue::Bytes(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let mut out = Vec::with_capacity(a.values.len());
            out.extend(a.values.into_iter().map(|v| attr_value(Some(v))));
            AttrValue::Array(out)
        }
        Some(any_value::Value::KvlistValue(kv)) => AttrValue::Map(attributes(kv.values)),
        // An index into a profiles string table, which traces do not have.
        Some(any_value::Value::StringValueStrindex(i)) => AttrValue::Int(i64::from(i)),
    }
}

/// OTLP key-values as model attributes, in the order sent. Collected into
/// a vector of exactly their number: a plain `collect` would reuse the
/// decoder's larger buffer in place (and its spare capacity, which the head
/// would hold until a flush).
pub fn attributes(kvs: Vec<KeyValue>) -> Vec<Attribute> {
    let mut out = Vec::with_capacity(kvs.len());
    out.extend(
        kvs.into_iter()
            .map(|kv| Attribute::new(kv.key, attr_value(kv.value))),
    );
    out
}

fn scope(s: Option<InstrumentationScope>) -> Scope {
    s.map(|s| Scope {
        name: s.name,
        version: s.version,
        attributes: attributes(s.attributes),
    })
    .unwrap_or_default()
}

/// A trace id: exactly 16 bytes, not all zero.
fn trace_id(b: &[u8]) -> Result<TraceId, String> {
    let id: TraceId = b
        .try_into()
        .map_err(|_| format!("trace id has {} bytes, want 16", b.len()))?;
    if id == [0; 16] {
        return Err("trace id is all zeros".into());
    }
    Ok(id)
}

/// A span id: exactly 8 bytes, not all zero.
fn span_id(b: &[u8], what: &str) -> Result<SpanId, String> {
    let id: SpanId = b
        .try_into()
        .map_err(|_| format!("{what} has {} bytes, want 8", b.len()))?;
    if id == [0; 8] {
        return Err(format!("{what} is all zeros"));
    }
    Ok(id)
}

fn time_ns(t: u64, what: &str) -> Result<i64, String> {
    i64::try_from(t).map_err(|_| format!("{what} {t} is past the year 2262"))
}

/// One OTLP span in the model, or why it is refused.
/// Everything is checked before anything is moved out of `s`, so a refused
/// span can still be named.
fn span(s: &mut otlp::Span, resource: &Arc<Resource>, scope: &Arc<Scope>) -> Result<Span, String> {
    let trace_id = trace_id(&s.trace_id)?;
    let id = span_id(&s.span_id, "span id")?;
    // An empty parent id means a root span; an all-zero one too (some
    // exporters write eight zero bytes rather than nothing).
    let parent_span_id = match s.parent_span_id.len() {
        0 => None,
        8 if s.parent_span_id.iter().all(|&b| b == 0) => None,
        8 => Some(span_id(&s.parent_span_id, "parent span id")?),
        n => return Err(format!("parent span id has {n} bytes, want 8 or none")),
    };
    let start_ns = time_ns(s.start_time_unix_nano, "start time")?;
    let end_ns = time_ns(s.end_time_unix_nano, "end time")?;
    if end_ns < start_ns {
        return Err(format!("end time {end_ns} is before start time {start_ns}"));
    }
    let kind = SpanKind::from_i32(s.kind).ok_or_else(|| format!("unknown span kind {}", s.kind))?;
    let status = match &s.status {
        None => StatusCode::Unset,
        Some(st) => StatusCode::from_i32(st.code)
            .ok_or_else(|| format!("unknown status code {}", st.code))?,
    };
    let event_times = s
        .events
        .iter()
        .map(|e| time_ns(e.time_unix_nano, "event time"))
        .collect::<Result<Vec<_>, String>>()?;
    let link_ids = s
        .links
        .iter()
        .map(|l| {
            Ok((
                self::trace_id(&l.trace_id).map_err(|e| format!("link {e}"))?,
                self::span_id(&l.span_id, "link span id")?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Valid: from here on the span's parts move into the model.
    let status_message = s.status.take().map(|st| st.message).unwrap_or_default();
    // Exact-size vectors, as in `attributes`.
    let mut events = Vec::with_capacity(s.events.len());
    events.extend(
        std::mem::take(&mut s.events)
            .into_iter()
            .zip(event_times)
            .map(|(e, time_ns)| SpanEvent {
                time_ns,
                name: e.name,
                attributes: attributes(e.attributes),
                dropped_attributes: e.dropped_attributes_count,
            }),
    );
    let mut links = Vec::with_capacity(s.links.len());
    links.extend(std::mem::take(&mut s.links).into_iter().zip(link_ids).map(
        |(l, (trace_id, span_id))| SpanLink {
            trace_id,
            span_id,
            trace_state: l.trace_state,
            attributes: attributes(l.attributes),
            dropped_attributes: l.dropped_attributes_count,
        },
    ));
    Ok(Span {
        trace_id,
        span_id: id,
        parent_span_id,
        trace_state: std::mem::take(&mut s.trace_state),
        flags: s.flags,
        name: std::mem::take(&mut s.name),
        kind,
        start_ns,
        end_ns,
        attributes: attributes(std::mem::take(&mut s.attributes)),
        dropped_attributes: s.dropped_attributes_count,
        events,
        dropped_events: s.dropped_events_count,
        links,
        dropped_links: s.dropped_links_count,
        status,
        status_message,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    })
}

/// Translates a decoded request into spans, leaving out (and counting) the
/// spans that break OTLP's rules.
pub fn translate_traces(req: ExportTraceServiceRequest) -> TranslatedSpans {
    let mut out = TranslatedSpans::default();
    let spans: usize = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    out.batch.spans.reserve(spans);
    for rs in req.resource_spans {
        let resource = Arc::new(
            rs.resource
                .map(|r| Resource {
                    attributes: attributes(r.attributes),
                    dropped_attributes: r.dropped_attributes_count,
                })
                .unwrap_or_default(),
        );
        for ss in rs.scope_spans {
            let scope = Arc::new(scope(ss.scope));
            for mut s in ss.spans {
                match span(&mut s, &resource, &scope) {
                    Ok(sp) => out.batch.spans.push(sp),
                    Err(why) => out.reject(format!(
                        "span {:?} (span id {}): {why}",
                        s.name,
                        skopos_model::to_hex(&s.span_id)
                    )),
                }
            }
        }
    }
    out.finish();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
    use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Status};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    /// A span with every field set.
    fn full_span() -> otlp::Span {
        otlp::Span {
            trace_id: (1..=16).collect(),
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            trace_state: "vendor=x".into(),
            parent_span_id: vec![9, 9, 9, 9, 9, 9, 9, 9],
            flags: 0x101,
            name: "GET /cart".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_250_000_000,
            attributes: vec![
                kv("http.method", s("GET")),
                kv("http.status_code", any_value::Value::IntValue(500)),
                kv("ratio", any_value::Value::DoubleValue(0.5)),
                kv("cached", any_value::Value::BoolValue(false)),
                kv("raw", any_value::Value::BytesValue(vec![0xab, 0xcd])),
                kv(
                    "list",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(any_value::Value::IntValue(1)),
                        }],
                    }),
                ),
                kv(
                    "map",
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![kv("a", s("b"))],
                    }),
                ),
            ],
            dropped_attributes_count: 1,
            events: vec![span::Event {
                time_unix_nano: 1_700_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.message", s("boom"))],
                dropped_attributes_count: 2,
            }],
            dropped_events_count: 3,
            links: vec![span::Link {
                trace_id: vec![0xee; 16],
                span_id: vec![0xdd; 8],
                trace_state: "k=v".into(),
                attributes: vec![kv("link.kind", s("follows"))],
                dropped_attributes_count: 4,
                flags: 1,
            }],
            dropped_links_count: 5,
            status: Some(Status {
                message: "payment failed".into(),
                code: status::StatusCode::Error as i32,
            }),
        }
    }

    fn request(spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(OtlpResource {
                    attributes: vec![kv("service.name", s("checkout"))],
                    dropped_attributes_count: 6,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.opentelemetry.http".into(),
                        version: "1.2.3".into(),
                        attributes: vec![kv("scope.attr", s("y"))],
                        dropped_attributes_count: 0,
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn check_full(sp: &Span) {
        assert_eq!(
            sp.trace_id,
            core::array::from_fn::<u8, 16, _>(|i| i as u8 + 1)
        );
        assert_eq!(sp.span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(sp.parent_span_id, Some([9; 8]));
        assert_eq!(sp.trace_state, "vendor=x");
        assert_eq!(sp.flags, 0x101);
        assert_eq!(sp.name, "GET /cart");
        assert_eq!(sp.kind, SpanKind::Server);
        assert_eq!(sp.start_ns, 1_700_000_000_000_000_000);
        assert_eq!(sp.duration_ns(), 250_000_000);
        assert_eq!(
            sp.attributes,
            vec![
                Attribute::str("http.method", "GET"),
                Attribute::new("http.status_code", AttrValue::Int(500)),
                Attribute::new("ratio", AttrValue::Float(0.5)),
                Attribute::new("cached", AttrValue::Bool(false)),
                Attribute::new("raw", AttrValue::Bytes(vec![0xab, 0xcd])),
                Attribute::new("list", AttrValue::Array(vec![AttrValue::Int(1)])),
                Attribute::new("map", AttrValue::Map(vec![Attribute::str("a", "b")])),
            ]
        );
        assert_eq!(sp.dropped_attributes, 1);
        assert_eq!(
            sp.events,
            vec![SpanEvent {
                time_ns: 1_700_000_000_100_000_000,
                name: "exception".into(),
                attributes: vec![Attribute::str("exception.message", "boom")],
                dropped_attributes: 2,
            }]
        );
        assert_eq!(sp.dropped_events, 3);
        assert_eq!(
            sp.links,
            vec![SpanLink {
                trace_id: [0xee; 16],
                span_id: [0xdd; 8],
                trace_state: "k=v".into(),
                attributes: vec![Attribute::str("link.kind", "follows")],
                dropped_attributes: 4,
            }]
        );
        assert_eq!(sp.dropped_links, 5);
        assert_eq!(sp.status, StatusCode::Error);
        assert_eq!(sp.status_message, "payment failed");
        assert_eq!(sp.service_name(), "checkout");
        assert_eq!(sp.resource.dropped_attributes, 6);
        assert_eq!(
            *sp.scope,
            Scope {
                name: "io.opentelemetry.http".into(),
                version: "1.2.3".into(),
                attributes: vec![Attribute::str("scope.attr", "y")],
            }
        );
    }

    #[test]
    fn protobuf_round_trip_keeps_every_field() {
        let mut root = full_span();
        root.span_id = vec![9; 8];
        root.parent_span_id = vec![];
        root.status = None;
        root.kind = 0;
        let body = request(vec![full_span(), root]).encode_to_vec();
        let req = decode_traces_request(&body, Encoding::Protobuf).unwrap();
        let t = translate_traces(req);
        assert_eq!((t.rejected_spans, t.error_message.as_str()), (0, ""));
        assert_eq!(t.batch.spans.len(), 2);
        check_full(&t.batch.spans[0]);
        let r = &t.batch.spans[1];
        assert!(r.is_root());
        assert_eq!(
            (r.kind, r.status),
            (SpanKind::Unspecified, StatusCode::Unset)
        );
        // Resource and scope are shared, not copied, across the spans.
        assert!(Arc::ptr_eq(&t.batch.spans[0].resource, &r.resource));
        assert!(Arc::ptr_eq(&t.batch.spans[0].scope, &r.scope));
    }

    #[test]
    fn json_with_hex_ids_integer_enums_and_string_ints_keeps_every_field() {
        let body = br#"{"resourceSpans":[{
          "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}],
                      "droppedAttributesCount":6},
          "scopeSpans":[{"scope":{"name":"io.opentelemetry.http","version":"1.2.3",
              "attributes":[{"key":"scope.attr","value":{"stringValue":"y"}}]},
            "spans":[{
              "traceId":"0102030405060708090A0B0C0D0E0F10","spanId":"0102030405060708",
              "traceState":"vendor=x","parentSpanId":"0909090909090909","flags":257,
              "name":"GET /cart","kind":2,
              "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000250000000,
              "attributes":[
                {"key":"http.method","value":{"stringValue":"GET"}},
                {"key":"http.status_code","value":{"intValue":"500"}},
                {"key":"ratio","value":{"doubleValue":0.5}},
                {"key":"cached","value":{"boolValue":false}},
                {"key":"raw","value":{"bytesValue":"q80="}},
                {"key":"list","value":{"arrayValue":{"values":[{"intValue":1}]}}},
                {"key":"map","value":{"kvlistValue":{"values":[{"key":"a","value":{"stringValue":"b"}}]}}}],
              "droppedAttributesCount":1,
              "events":[{"timeUnixNano":"1700000000100000000","name":"exception",
                 "attributes":[{"key":"exception.message","value":{"stringValue":"boom"}}],
                 "droppedAttributesCount":2}],
              "droppedEventsCount":3,
              "links":[{"traceId":"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee","spanId":"dddddddddddddddd",
                 "traceState":"k=v","attributes":[{"key":"link.kind","value":{"stringValue":"follows"}}],
                 "droppedAttributesCount":4,"flags":1}],
              "droppedLinksCount":5,
              "status":{"code":2,"message":"payment failed"}}]}]}]}"#;
        let req = decode_traces_request(body, Encoding::Json).unwrap();
        let t = translate_traces(req.clone());
        assert_eq!((t.rejected_spans, t.error_message.as_str()), (0, ""));
        assert_eq!(t.batch.spans.len(), 1);
        check_full(&t.batch.spans[0]);
        // The JSON the proto crate writes reads back the same.
        let again = serde_json::to_vec(&req).unwrap();
        let back = decode_traces_request(&again, Encoding::Json).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn bad_spans_are_counted_and_named_while_the_rest_are_kept() {
        let mut cases: Vec<(otlp::Span, &str)> = Vec::new();
        let mut add = |f: &dyn Fn(&mut otlp::Span), why: &'static str| {
            let mut sp = full_span();
            f(&mut sp);
            cases.push((sp, why));
        };
        add(
            &|s| s.trace_id = vec![1; 8],
            "trace id has 8 bytes, want 16",
        );
        add(&|s| s.trace_id = vec![0; 16], "trace id is all zeros");
        add(&|s| s.span_id = vec![1; 16], "span id has 16 bytes, want 8");
        add(&|s| s.span_id = vec![0; 8], "span id is all zeros");
        add(&|s| s.span_id.clear(), "span id has 0 bytes, want 8");
        add(
            &|s| s.parent_span_id = vec![1; 4],
            "parent span id has 4 bytes, want 8 or none",
        );
        add(
            &|s| s.end_time_unix_nano = s.start_time_unix_nano - 1,
            "is before start time",
        );
        add(&|s| s.kind = 9, "unknown span kind 9");
        add(
            &|s| s.status.as_mut().unwrap().code = 3,
            "unknown status code 3",
        );
        add(
            &|s| s.links[0].span_id = vec![1; 3],
            "link span id has 3 bytes",
        );
        add(&|s| s.start_time_unix_nano = u64::MAX, "past the year 2262");
        for (sp, why) in &cases {
            let req = request(vec![full_span(), sp.clone()]);
            let t = translate_traces(req);
            assert_eq!(t.rejected_spans, 1, "{why}");
            assert!(t.error_message.contains(why), "{why}: {}", t.error_message);
            assert!(t.error_message.contains("GET /cart"), "{}", t.error_message);
            assert_eq!(t.batch.spans.len(), 1);
            check_full(&t.batch.spans[0]);
        }
        // Many bad spans: all counted, the first named.
        let all: Vec<otlp::Span> = cases.iter().map(|(s, _)| s.clone()).collect();
        let t = translate_traces(request(all));
        assert_eq!(t.rejected_spans, cases.len() as i64);
        assert!(t.batch.spans.is_empty());
        assert!(
            t.error_message
                .starts_with(&format!("{} spans rejected; the first: ", cases.len())),
            "{}",
            t.error_message
        );
        assert!(t.error_message.contains(cases[0].1));
        // An all-zero parent id is a root, not an error.
        let mut zero_parent = full_span();
        zero_parent.parent_span_id = vec![0; 8];
        let t = translate_traces(request(vec![zero_parent]));
        assert_eq!(t.rejected_spans, 0);
        assert!(t.batch.spans[0].is_root());
    }

    #[test]
    fn json_ids_of_the_wrong_length_are_rejected_per_span() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"abcd","spanId":"0102030405060708","name":"short"},
            {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"ok",
             "startTimeUnixNano":"5","endTimeUnixNano":"7"}]}]}]}"#;
        let t = translate_traces(decode_traces_request(body, Encoding::Json).unwrap());
        assert_eq!(t.rejected_spans, 1);
        assert!(
            t.error_message.contains("trace id has 2 bytes"),
            "{}",
            t.error_message
        );
        assert_eq!(t.batch.spans.len(), 1);
        let ok = &t.batch.spans[0];
        assert_eq!((ok.name.as_str(), ok.start_ns, ok.end_ns), ("ok", 5, 7));
        assert_eq!(ok.service_name(), skopos_model::UNKNOWN_SERVICE);
    }

    #[test]
    fn broken_bodies_are_refused_with_a_message() {
        for body in [
            &b"{"[..],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SERVER"}]}]}]}"#,
            br#"{"resourceSpans":"nope"}"#,
        ] {
            let e = decode_traces_request(body, Encoding::Json).unwrap_err();
            assert!(e.to_string().contains("ExportTraceServiceRequest"), "{e}");
        }
        let e = decode_traces_request(b"\xff\xff\xff", Encoding::Protobuf).unwrap_err();
        assert!(e.to_string().contains("protobuf"), "{e}");
        // Truncated valid protobuf.
        let body = request(vec![full_span()]).encode_to_vec();
        assert!(decode_traces_request(&body[..body.len() - 3], Encoding::Protobuf).is_err());
        // An empty body is an empty request, as OTLP allows.
        let t = translate_traces(decode_traces_request(b"", Encoding::Protobuf).unwrap());
        assert!(t.batch.spans.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for enc in [Encoding::Protobuf, Encoding::Json] {
                if let Ok(req) = decode_traces_request(&body, enc) {
                    let t = translate_traces(req);
                    proptest::prop_assert!(t.rejected_spans >= 0);
                }
            }
        }

        #[test]
        fn damaged_protobuf_is_refused_or_translated_without_panic(
            at in 0usize..10_000,
            byte in proptest::prelude::any::<u8>(),
            cut in 0usize..10_000,
        ) {
            let mut body = request(vec![full_span(), full_span()]).encode_to_vec();
            let n = body.len();
            body[at % n] = byte;
            body.truncate(n - cut % n);
            if let Ok(req) = decode_traces_request(&body, Encoding::Protobuf) {
                let t = translate_traces(req);
                proptest::prop_assert!(t.batch.spans.len() as i64 + t.rejected_spans <= 2);
            }
        }
    }
}
