//! Tracing through the server in process: OTLP (HTTP protobuf and JSON,
//! gRPC) and Zipkin ingest, the Tempo and Jaeger query APIs, span metrics
//! and the service graph in PromQL with exemplars, trace → logs, restart.

use std::net::SocketAddr;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, ResourceSpans, ScopeSpans, Span, Status, TracesData,
};
use prost::Message;
use serde_json::Value;
use skopos_server::{ServerConfig, ServerHandle};

/// `google.rpc.Status`, OTLP/HTTP's error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Tempo's `TraceByIDResponse`, its trace read as `TracesData`.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

async fn start(dir: &std::path::Path, tweak: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut cfg = ServerConfig::new(dir.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.otlp_http_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.otlp_grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.self_scrape_interval = None;
    // Collected by hand (`collect_span_metrics`).
    cfg.span_metrics_interval = Some(std::time::Duration::from_secs(3600));
    cfg.traces.fsync = false;
    tweak(&mut cfg);
    skopos_server::start(cfg).await.unwrap()
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

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

fn tid(n: u8) -> Vec<u8> {
    let mut t = vec![0xab; 16];
    t[15] = n;
    t
}

fn sid(n: u8) -> Vec<u8> {
    vec![0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, n]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[allow(clippy::too_many_arguments)]
fn otlp_span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &str,
    kind: i32,
    start: u64,
    dur_ms: u64,
    error: bool,
    attrs: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: sid(id),
        parent_span_id: parent.map(sid).unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: start + dur_ms * 1_000_000,
        attributes: attrs,
        status: Some(Status {
            code: if error { 2 } else { 0 },
            message: if error { "boom".into() } else { String::new() },
        }),
        ..Default::default()
    }
}

fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s(service)), kv("host.name", s("h1"))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.2".into(),
                ..Default::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// Trace `n`: frontend `GET /` (server, root) → frontend `call backend`
/// (client) → backend `handle` (server, error when `error`), with an event
/// and a link on the root.
fn three_span_trace(n: u8, start: u64, error: bool) -> ExportTraceServiceRequest {
    let mut root = otlp_span(
        n,
        1,
        None,
        "GET /",
        2,
        start,
        30,
        false,
        vec![
            kv("http.method", s("GET")),
            kv("http.status_code", any_value::Value::IntValue(200)),
        ],
    );
    root.events.push(span::Event {
        time_unix_nano: start + 1_000_000,
        name: "cache miss".into(),
        attributes: vec![kv("key", s("user:1"))],
        dropped_attributes_count: 0,
    });
    root.links.push(span::Link {
        trace_id: tid(200),
        span_id: sid(9),
        ..Default::default()
    });
    let client = otlp_span(
        n,
        2,
        Some(1),
        "call backend",
        3,
        start + 2_000_000,
        20,
        false,
        vec![],
    );
    let server = otlp_span(
        n,
        3,
        Some(2),
        "handle",
        2,
        start + 3_000_000,
        15,
        error,
        vec![kv("db.rows", any_value::Value::IntValue(7))],
    );
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans("frontend", vec![root, client]),
            resource_spans("backend", vec![server]),
        ],
    }
}

async fn post(addr: SocketAddr, path: &str, ct: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.bytes().await.unwrap().to_vec())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap())
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (code, body) = get(addr, path).await;
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn export_pb(
    addr: SocketAddr,
    req: &ExportTraceServiceRequest,
) -> ExportTraceServiceResponse {
    let (code, body) = post(
        addr,
        "/v1/traces",
        "application/x-protobuf",
        req.encode_to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    ExportTraceServiceResponse::decode(body.as_slice()).unwrap()
}

/// Every span of a Tempo `batches`/`resourceSpans` answer, with its service.
fn otlp_json_spans(batches: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for b in batches.as_array().unwrap() {
        let service = b["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
            .unwrap();
        for ss in b["scopeSpans"].as_array().unwrap() {
            assert_eq!(ss["scope"]["name"], "lib");
            assert_eq!(ss["scope"]["version"], "1.2");
            for sp in ss["spans"].as_array().unwrap() {
                out.push((service.clone(), sp.clone()));
            }
        }
    }
    out
}

fn check_tempo_trace(batches: &Value, n: u8, start: u64) {
    let spans = otlp_json_spans(batches);
    assert_eq!(spans.len(), 3, "{batches}");
    let by_name = |name: &str| spans.iter().find(|(_, s)| s["name"] == name).unwrap();
    let (svc, root) = by_name("GET /");
    assert_eq!(svc, "frontend");
    assert_eq!(root["traceId"], hex(&tid(n)));
    assert_eq!(root["spanId"], hex(&sid(1)));
    assert!(root["parentSpanId"].as_str().unwrap_or("").is_empty());
    assert_eq!(root["kind"], 2);
    assert_eq!(root["startTimeUnixNano"], start.to_string());
    assert_eq!(root["endTimeUnixNano"], (start + 30_000_000).to_string());
    let attrs = root["attributes"].as_array().unwrap();
    assert!(attrs
        .iter()
        .any(|a| a["key"] == "http.method" && a["value"]["stringValue"] == "GET"));
    assert!(attrs.iter().any(|a| a["key"] == "http.status_code"
        && (a["value"]["intValue"] == "200" || a["value"]["intValue"] == 200)));
    assert_eq!(root["events"][0]["name"], "cache miss");
    assert_eq!(
        root["events"][0]["timeUnixNano"],
        (start + 1_000_000).to_string()
    );
    assert_eq!(root["events"][0]["attributes"][0]["key"], "key");
    assert_eq!(root["links"][0]["traceId"], hex(&tid(200)));
    assert_eq!(root["links"][0]["spanId"], hex(&sid(9)));
    let (svc, client) = by_name("call backend");
    assert_eq!(svc, "frontend");
    assert_eq!(client["parentSpanId"], hex(&sid(1)));
    assert_eq!(client["kind"], 3);
    let (svc, server) = by_name("handle");
    assert_eq!(svc, "backend");
    assert_eq!(server["parentSpanId"], hex(&sid(2)));
    assert_eq!(server["status"]["code"], 2);
    assert_eq!(server["status"]["message"], "boom");
}

#[tokio::test]
async fn otlp_protobuf_and_json_exports_are_readable_by_id_in_tempo_and_jaeger_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let t0 = now_ns() - 60_000_000_000;

    // Protobuf on the main port.
    let resp = export_pb(h.listen, &three_span_trace(1, t0, true)).await;
    assert!(resp.partial_success.is_none(), "{resp:?}");
    // JSON on the OTLP/HTTP port, hex ids and integer enums.
    let json_req = serde_json::to_vec(&three_span_trace(2, t0, true)).unwrap();
    let (code, body) = post(
        h.otlp_http.unwrap(),
        "/v1/traces",
        "application/json",
        json_req,
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        serde_json::json!({})
    );

    for n in [1u8, 2] {
        let id = hex(&tid(n));
        let v1 = get_json(h.listen, &format!("/api/traces/{id}")).await;
        check_tempo_trace(&v1["batches"], n, t0);
        let v2 = get_json(h.listen, &format!("/api/v2/traces/{}", id.to_uppercase())).await;
        check_tempo_trace(&v2["trace"]["resourceSpans"], n, t0);
    }

    // Protobuf answers: v1 is Tempo's Trace (TracesData's wire form).
    let id = hex(&tid(1));
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/traces/{id}", h.listen))
        .header("Accept", "application/protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let td = TracesData::decode(resp.bytes().await.unwrap()).unwrap();
    let n: usize = td
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(n, 3);

    // v2 as protobuf: TraceByIDResponse { trace = 1 }.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v2/traces/{id}", h.listen))
        .header("Accept", "application/protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let by_id = TraceByIdResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(by_id.trace.unwrap().resource_spans.len(), 2);

    // gzip'd protobuf.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &three_span_trace(3, t0, false).encode_to_vec()).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", h.listen))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v = get_json(h.listen, &format!("/api/traces/{}", hex(&tid(3)))).await;
    assert_eq!(otlp_json_spans(&v["batches"]).len(), 3);

    // Unknown and malformed ids.
    let (code, body) = get(h.listen, &format!("/api/traces/{}", hex(&tid(99)))).await;
    assert_eq!(code, 404);
    assert!(body.contains("not found"), "{body}");
    let (code, body) = get(h.listen, "/api/traces/xyz-not-hex").await;
    assert_eq!(code, 400);
    assert!(body.contains("non-hex"), "{body}");
    let (code, _) = get(h.listen, &format!("/api/traces/{}", "a".repeat(33))).await;
    assert_eq!(code, 400);

    // Jaeger's shape.
    let j = get_json(h.listen, &format!("/jaeger/api/traces/{id}")).await;
    assert_eq!(j["total"], 1);
    assert!(j["errors"].is_null());
    let t = &j["data"][0];
    assert_eq!(t["traceID"], id);
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);
    let sp = |name: &str| spans.iter().find(|s| s["operationName"] == name).unwrap();
    let root = sp("GET /");
    assert_eq!(root["spanID"], hex(&sid(1)));
    assert_eq!(root["startTime"], t0 / 1000);
    assert_eq!(root["duration"], 30_000);
    assert_eq!(root["references"][0]["refType"], "FOLLOWS_FROM");
    let tags = root["tags"].as_array().unwrap();
    let tag = |k: &str| tags.iter().find(|t| t["key"] == k).cloned();
    assert_eq!(tag("http.method").unwrap()["type"], "string");
    assert_eq!(tag("http.status_code").unwrap()["type"], "int64");
    assert_eq!(tag("http.status_code").unwrap()["value"], 200);
    assert_eq!(tag("span.kind").unwrap()["value"], "server");
    assert_eq!(tag("otel.scope.name").unwrap()["value"], "lib");
    assert_eq!(root["logs"][0]["timestamp"], (t0 + 1_000_000) / 1000);
    assert_eq!(root["logs"][0]["fields"][0]["key"], "event");
    assert_eq!(root["logs"][0]["fields"][0]["value"], "cache miss");
    let handle = sp("handle");
    assert_eq!(handle["references"][0]["refType"], "CHILD_OF");
    assert_eq!(handle["references"][0]["spanID"], hex(&sid(2)));
    assert_eq!(handle["references"][0]["traceID"], id);
    let htags = handle["tags"].as_array().unwrap();
    assert!(htags
        .iter()
        .any(|t| t["key"] == "error" && t["value"] == true));
    assert!(htags
        .iter()
        .any(|t| t["key"] == "otel.status_description" && t["value"] == "boom"));
    let p_backend = handle["processID"].as_str().unwrap();
    let p_front = root["processID"].as_str().unwrap();
    assert_ne!(p_backend, p_front);
    assert_eq!(t["processes"][p_backend]["serviceName"], "backend");
    assert_eq!(t["processes"][p_front]["serviceName"], "frontend");
    assert!(t["processes"][p_front]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["key"] == "host.name" && x["value"] == "h1"));
    let (code, body) = get(h.listen, &format!("/jaeger/api/traces/{}", hex(&tid(99)))).await;
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], 404);

    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn otlp_grpc_export_is_stored() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let t0 = now_ns() - 10_000_000_000;
    let mut client = TraceServiceClient::connect(format!("http://{}", h.otlp_grpc.unwrap()))
        .await
        .unwrap();
    let resp = client
        .export(three_span_trace(5, t0, false))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.partial_success.is_none());
    let v = get_json(h.listen, &format!("/api/traces/{}", hex(&tid(5)))).await;
    assert_eq!(otlp_json_spans(&v["batches"]).len(), 3);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_spans_get_partial_success_and_broken_bodies_400_with_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.traces.max_spans_per_trace = 2).await;
    let t0 = now_ns() - 10_000_000_000;

    // One span with an all-zero trace id next to a good one.
    let mut bad = otlp_span(7, 1, None, "bad", 1, t0, 1, false, vec![]);
    bad.trace_id = vec![0; 16];
    let good = otlp_span(7, 2, None, "good", 1, t0, 1, false, vec![]);
    let req = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("svc", vec![bad, good])],
    };
    let resp = export_pb(h.listen, &req).await;
    let p = resp.partial_success.expect("partial success");
    assert_eq!(p.rejected_spans, 1);
    assert!(!p.error_message.is_empty());
    let v = get_json(h.listen, &format!("/api/traces/{}", hex(&tid(7)))).await;
    assert_eq!(otlp_json_spans(&v["batches"]).len(), 1);

    // The same over JSON: rejectedSpans as a string, as OTLP/JSON has int64s.
    let mut bad = otlp_span(8, 1, None, "bad", 1, t0, 1, false, vec![]);
    bad.span_id = vec![];
    let req = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("svc", vec![bad])],
    };
    let (code, body) = post(
        h.listen,
        "/v1/traces",
        "application/json",
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().len() > 3);

    // A store limit: the trace keeps what it had, the third span is refused.
    let spans: Vec<Span> = (1..=3)
        .map(|i| otlp_span(9, i, None, "x", 1, t0 + i as u64, 1, false, vec![]))
        .collect();
    let resp = export_pb(
        h.listen,
        &ExportTraceServiceRequest {
            resource_spans: vec![resource_spans("svc", spans)],
        },
    )
    .await;
    let p = resp.partial_success.expect("partial success for the limit");
    assert_eq!(p.rejected_spans, 1);
    assert!(!p.error_message.is_empty());
    let v = get_json(h.listen, &format!("/api/traces/{}", hex(&tid(9)))).await;
    assert_eq!(otlp_json_spans(&v["batches"]).len(), 2);

    // Broken bodies: 400 with a message, nothing stored.
    let mut truncated = three_span_trace(10, t0, false).encode_to_vec();
    truncated.truncate(truncated.len() - 5);
    let (code, body) = post(h.listen, "/v1/traces", "application/x-protobuf", truncated).await;
    assert_eq!(code, 400);
    let st = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(st.code, 3);
    assert!(!st.message.is_empty());
    let mut json = serde_json::to_string(&three_span_trace(11, t0, false)).unwrap();
    json.truncate(json.len() - 3);
    let (code, body) = post(
        h.listen,
        "/v1/traces",
        "application/json",
        json.into_bytes(),
    )
    .await;
    assert_eq!(code, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(!v["message"].as_str().unwrap().is_empty());
    let (code, _) = post(h.listen, "/v1/traces", "text/plain", b"hi".to_vec()).await;
    assert_eq!(code, 415);
    for n in [10u8, 11] {
        let (code, _) = get(h.listen, &format!("/api/traces/{}", hex(&tid(n)))).await;
        assert_eq!(code, 404, "trace {n} must not be stored");
    }
    // Over the body limit.
    h.shutdown().await.unwrap();
    let h = start(dir.path(), |c| c.max_body_bytes = 100).await;
    let (code, _) = post(
        h.listen,
        "/v1/traces",
        "application/x-protobuf",
        three_span_trace(12, t0, false).encode_to_vec(),
    )
    .await;
    assert_eq!(code, 413);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn zipkin_v2_spans_are_accepted_and_malformed_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let ts_us = now_ns() / 1000 - 5_000_000;
    let body = serde_json::json!([
        {"traceId": "00000000000000000000000000000abc", "id": "0000000000000001", "name": "get /zip",
         "kind": "SERVER", "timestamp": ts_us, "duration": 1500,
         "localEndpoint": {"serviceName": "zipsvc"}, "tags": {"http.path": "/zip", "error": "oops"}},
        {"traceId": "abc", "id": "0000000000000002", "parentId": "0000000000000001", "name": "db",
         "kind": "CLIENT", "timestamp": ts_us + 100, "duration": 500,
         "localEndpoint": {"serviceName": "zipsvc"}, "remoteEndpoint": {"serviceName": "postgres"}}
    ]);
    let (code, _) = post(
        h.listen,
        "/api/v2/spans",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 202);
    let v = get_json(h.listen, "/api/traces/abc").await;
    let spans = v["batches"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap();
    assert_eq!(spans.len(), 2);
    let root = spans.iter().find(|s| s["name"] == "get /zip").unwrap();
    assert_eq!(root["kind"], 2);
    assert_eq!(root["status"]["code"], 2);
    let (code, body) = post(
        h.listen,
        "/api/v2/spans",
        "application/json",
        b"{\"not\": \"a list\"}".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(!body.is_empty());
    h.shutdown().await.unwrap();
}

/// Stores traces 1..=4: 1 and 3 with an error in backend, 2 and 4 without;
/// trace 4 much longer.
async fn load_search_fixture(h: &ServerHandle) -> u64 {
    let t0 = now_ns() - 120_000_000_000;
    for n in 1..=3u8 {
        export_pb(
            h.listen,
            &three_span_trace(n, t0 + n as u64 * 1_000_000_000, n % 2 == 1),
        )
        .await;
    }
    let mut long = three_span_trace(4, t0 + 4_000_000_000, false);
    long.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano =
        t0 + 4_000_000_000 + 2_000_000_000;
    export_pb(h.listen, &long).await;
    t0
}

fn trace_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn tempo_search_by_traceql_tags_and_durations_and_tag_values() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let t0 = load_search_fixture(&h).await;
    let (s, e) = (t0 / 1_000_000_000 - 10, t0 / 1_000_000_000 + 100);
    let range = format!("&start={s}&end={e}");

    let q = enc("{ resource.service.name = \"backend\" && status = error }");
    let v = get_json(h.listen, &format!("/api/search?q={q}{range}")).await;
    assert_eq!(trace_ids(&v), [hex(&tid(1)), hex(&tid(3))]);
    let t = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["traceID"] == hex(&tid(1)))
        .unwrap();
    assert_eq!(t["rootServiceName"], "frontend");
    assert_eq!(t["rootTraceName"], "GET /");
    assert_eq!(t["durationMs"], 30);
    assert_eq!(t["startTimeUnixNano"], (t0 + 1_000_000_000).to_string());
    assert_eq!(t["spanSet"]["matched"], 1);
    assert_eq!(t["spanSet"]["spans"][0]["spanID"], hex(&sid(3)));
    assert_eq!(t["spanSet"]["spans"][0]["durationNanos"], "15000000");
    assert_eq!(t["spanSets"].as_array().unwrap().len(), 1);
    assert!(v["metrics"]["inspectedTraces"].as_u64().unwrap() >= 2);

    // Structural: a backend span under a frontend client span.
    let q = enc("{ resource.service.name = \"frontend\" && kind = client } > { resource.service.name = \"backend\" }");
    let v = get_json(h.listen, &format!("/api/search?q={q}{range}&limit=2")).await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 2);

    // Legacy tags and trace durations.
    let tags = enc("service.name=backend error=true");
    let v = get_json(h.listen, &format!("/api/search?tags={tags}{range}")).await;
    assert_eq!(trace_ids(&v), [hex(&tid(1)), hex(&tid(3))]);
    let v = get_json(h.listen, &format!("/api/search?minDuration=1s{range}")).await;
    assert_eq!(trace_ids(&v), [hex(&tid(4))]);
    let v = get_json(
        h.listen,
        &format!(
            "/api/search?maxDuration=100ms&tags={}{range}",
            enc("http.method=GET")
        ),
    )
    .await;
    assert_eq!(trace_ids(&v), [hex(&tid(1)), hex(&tid(2)), hex(&tid(3))]);
    // A range that holds none of them.
    let v = get_json(
        h.listen,
        &format!("/api/search?q={}&start=1000&end=2000", enc("{}")),
    )
    .await;
    assert!(v["traces"].as_array().unwrap().is_empty());
    // Bad queries.
    let (code, body) = get(
        h.listen,
        &format!("/api/search?q={}{range}", enc("{ .a = ")),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = get(h.listen, &format!("/api/search?minDuration=soon{range}")).await;
    assert_eq!(code, 400);
    let (code, _) = get(h.listen, "/api/search?start=x").await;
    assert_eq!(code, 400);

    // Tags.
    let v = get_json(h.listen, &format!("/api/search/tags?{}", &range[1..])).await;
    let names: Vec<&str> = v["tagNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for k in ["http.method", "service.name", "db.rows", "host.name"] {
        assert!(names.contains(&k), "{k} in {names:?}");
    }
    let v = get_json(h.listen, &format!("/api/v2/search/tags?{}", &range[1..])).await;
    let scope = |n: &str| -> Vec<String> {
        v["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    assert!(scope("span").contains(&"http.method".to_string()));
    assert!(!scope("span").contains(&"host.name".to_string()));
    assert!(scope("resource").contains(&"host.name".to_string()));
    assert!(scope("intrinsic").contains(&"duration".to_string()));
    let v = get_json(
        h.listen,
        &format!("/api/v2/search/tags?scope=resource{range}"),
    )
    .await;
    assert_eq!(v["scopes"].as_array().unwrap().len(), 1);

    let v = get_json(
        h.listen,
        &format!("/api/search/tag/service.name/values?{}", &range[1..]),
    )
    .await;
    assert_eq!(v["tagValues"], serde_json::json!(["backend", "frontend"]));
    let v = get_json(
        h.listen,
        &format!(
            "/api/v2/search/tag/resource.service.name/values?{}",
            &range[1..]
        ),
    )
    .await;
    assert_eq!(
        v["tagValues"],
        serde_json::json!([{"type": "string", "value": "backend"}, {"type": "string", "value": "frontend"}])
    );
    let v = get_json(
        h.listen,
        &format!("/api/v2/search/tag/span.db.rows/values?{}", &range[1..]),
    )
    .await;
    assert_eq!(
        v["tagValues"],
        serde_json::json!([{"type": "int", "value": "7"}])
    );
    let v = get_json(
        h.listen,
        &format!("/api/v2/search/tag/status/values?{}", &range[1..]),
    )
    .await;
    assert!(v["tagValues"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"type": "keyword", "value": "error"})));
    let (code, _) = get(h.listen, "/api/v2/search/tag/bogus/values").await;
    assert_eq!(code, 400);
    let (code, body) = get(h.listen, "/api/echo").await;
    assert_eq!((code, body.as_str()), (200, "echo"));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn jaeger_services_operations_search_and_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let t0 = load_search_fixture(&h).await;
    let v = get_json(h.listen, "/jaeger/api/services").await;
    assert_eq!(v["data"], serde_json::json!(["backend", "frontend"]));
    assert_eq!(v["total"], 2);
    let v = get_json(h.listen, "/jaeger/api/services/frontend/operations").await;
    assert_eq!(v["data"], serde_json::json!(["GET /", "call backend"]));
    let v = get_json(
        h.listen,
        "/jaeger/api/operations?service=frontend&spanKind=client",
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!([{"name": "call backend", "spanKind": "client"}])
    );
    let (code, _) = get(h.listen, "/jaeger/api/operations").await;
    assert_eq!(code, 400);

    let (s, e) = (t0 / 1000 - 1_000_000, t0 / 1000 + 100_000_000);
    let tags = enc(r#"{"error":"true"}"#);
    let v = get_json(h.listen, &format!("/jaeger/api/traces?service=backend&operation=handle&tags={tags}&start={s}&end={e}&limit=10")).await;
    let mut ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [hex(&tid(1)), hex(&tid(3))]);
    assert_eq!(
        v["data"][0]["spans"].as_array().unwrap().len(),
        3,
        "whole traces"
    );
    let v = get_json(
        h.listen,
        &format!(
            "/jaeger/api/traces?service=frontend&operation={}&minDuration=1s&start={s}&end={e}",
            enc("GET /")
        ),
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["traceID"], hex(&tid(4)));
    let v = get_json(
        h.listen,
        &format!("/jaeger/api/traces?service=frontend&start={s}&end={e}&limit=2"),
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (code, body) = get(
        h.listen,
        &format!("/jaeger/api/traces?service=x&tags=notjson&start={s}&end={e}"),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("tags"), "{body}");
    let (code, _) = get(h.listen, "/jaeger/api/traces").await;
    assert_eq!(code, 400);

    let end_ms = now_ns() / 1_000_000;
    let v = get_json(
        h.listen,
        &format!("/jaeger/api/dependencies?endTs={end_ms}&lookback=3600000"),
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!([{"parent": "frontend", "child": "backend", "callCount": 4}])
    );
    let v = get_json(
        h.listen,
        "/jaeger/api/dependencies?endTs=1000&lookback=1000",
    )
    .await;
    assert_eq!(v["data"], serde_json::json!([]));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn span_metrics_and_service_graph_are_queryable_with_trace_exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let t0 = now_ns() - 5_000_000_000;
    export_pb(h.listen, &three_span_trace(1, t0, true)).await;
    export_pb(h.listen, &three_span_trace(2, t0 + 1000, false)).await;
    h.collect_span_metrics().await;

    let addr = h.listen;
    let query = |q: &str| {
        let q = enc(q);
        async move { get_json(addr, &format!("/api/v1/query?query={q}")).await }
    };
    let v = query("sum by (service, span_kind) (traces_spanmetrics_calls_total)").await;
    let result = v["data"]["result"].as_array().unwrap();
    let calls = |svc: &str, kind: &str| -> f64 {
        result
            .iter()
            .find(|r| r["metric"]["service"] == svc && r["metric"]["span_kind"] == kind)
            .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
            .unwrap_or(0.0)
    };
    assert_eq!(calls("frontend", "SPAN_KIND_SERVER"), 2.0, "{v}");
    assert_eq!(calls("frontend", "SPAN_KIND_CLIENT"), 2.0);
    assert_eq!(calls("backend", "SPAN_KIND_SERVER"), 2.0);
    let v = query(
        "traces_spanmetrics_calls_total{service=\"backend\", status_code=\"STATUS_CODE_ERROR\"}",
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
    let v = query("sum(traces_spanmetrics_latency_count{service=\"backend\"})").await;
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");

    let v =
        query("traces_service_graph_request_total{client=\"frontend\", server=\"backend\"}").await;
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");
    let v =
        query("traces_service_graph_request_failed_total{client=\"frontend\", server=\"backend\"}")
            .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");

    // Exemplars carry the trace ids; a selector picks the series.
    let now_s = now_ns() / 1_000_000_000;
    let v = get_json(
        h.listen,
        &format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            enc("traces_spanmetrics_calls_total{service=\"backend\"}"),
            now_s - 60,
            now_s + 60
        ),
    )
    .await;
    assert_eq!(v["status"], "success");
    let groups = v["data"].as_array().unwrap();
    assert!(!groups.is_empty(), "{v}");
    let mut ids = Vec::new();
    for g in groups {
        assert_eq!(g["seriesLabels"]["service"], "backend");
        assert_eq!(
            g["seriesLabels"]["__name__"],
            "traces_spanmetrics_calls_total"
        );
        for e in g["exemplars"].as_array().unwrap() {
            assert!(e["timestamp"].as_f64().unwrap() > 1e9);
            assert!(e["value"].is_string());
            ids.push(e["labels"]["trace_id"].as_str().unwrap().to_string());
        }
    }
    assert!(
        ids.iter().all(|i| *i == hex(&tid(1)) || *i == hex(&tid(2))),
        "{ids:?}"
    );
    assert!(!ids.is_empty());
    // From an exemplar to its trace.
    get_json(h.listen, &format!("/api/traces/{}", ids[0])).await;
    // A time range before them holds none.
    let v = get_json(
        h.listen,
        &format!(
            "/api/v1/query_exemplars?query={}&start=1000&end=2000",
            enc("traces_spanmetrics_calls_total")
        ),
    )
    .await;
    assert_eq!(v["data"], serde_json::json!([]));
    let (code, _) = get(h.listen, "/api/v1/query_exemplars?query=sum(").await;
    assert_eq!(code, 400);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn trace_logs_finds_the_lines_carrying_the_trace_id() {
    use skopos_model::{Labels, LogBatch, LogEntry, LogStream};
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let t0 = now_ns() - 5_000_000_000;
    export_pb(h.listen, &three_span_trace(1, t0, true)).await;
    let id = hex(&tid(1));
    let entry = |ts: u64, line: &str, trace: &str| {
        let mut e = LogEntry::new(ts as i64, line);
        if !trace.is_empty() {
            e.metadata = Labels::from_pairs([("trace_id", trace)]);
        }
        e
    };
    h.logs()
        .append(LogBatch {
            streams: vec![
                LogStream {
                    labels: Labels::from_pairs([("service_name", "backend")]),
                    entries: vec![
                        entry(t0 + 1, "handling", &id.to_uppercase()),
                        entry(t0 + 2, "other trace", &hex(&tid(2))),
                        entry(t0 + 3, "no trace", ""),
                    ],
                },
                LogStream {
                    labels: Labels::from_pairs([("service_name", "frontend")]),
                    entries: vec![entry(t0 + 4, "served", &id)],
                },
            ],
        })
        .unwrap();
    let v = get_json(h.listen, &format!("/api/traces/{id}/logs")).await;
    assert_eq!(v["data"]["resultType"], "streams");
    let mut lines: Vec<(String, String)> = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for e in s["values"].as_array().unwrap() {
            lines.push((
                s["stream"]["service_name"].as_str().unwrap().to_string(),
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    lines.sort();
    assert_eq!(
        lines,
        [
            ("backend".to_string(), "handling".to_string()),
            ("frontend".to_string(), "served".to_string())
        ]
    );
    // An explicit window that misses them.
    let v = get_json(
        h.listen,
        &format!("/api/traces/{id}/logs?start=1000&end=2000"),
    )
    .await;
    assert_eq!(v["data"]["result"], serde_json::json!([]));
    let (code, _) = get(h.listen, "/api/traces/zz/logs").await;
    assert_eq!(code, 400);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_keeps_the_traces() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ns() - 5_000_000_000;
    let h = start(dir.path(), |_| {}).await;
    export_pb(h.listen, &three_span_trace(1, t0, false)).await;
    h.shutdown().await.unwrap();
    let h = start(dir.path(), |_| {}).await;
    let v = get_json(h.listen, &format!("/api/traces/{}", hex(&tid(1)))).await;
    check_tempo_trace_loose(&v["batches"]);
    let v = get_json(
        h.listen,
        &format!("/api/search?q={}", enc("{ name = \"handle\" }")),
    )
    .await;
    assert_eq!(trace_ids(&v), [hex(&tid(1))]);
    h.shutdown().await.unwrap();
}

fn check_tempo_trace_loose(batches: &Value) {
    assert_eq!(otlp_json_spans(batches).len(), 3);
}

#[tokio::test]
async fn the_span_metrics_loop_writes_on_its_own_interval() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| {
        c.span_metrics_interval = Some(std::time::Duration::from_millis(100))
    })
    .await;
    export_pb(
        h.listen,
        &three_span_trace(1, now_ns() - 1_000_000_000, false),
    )
    .await;
    let q = enc("sum(traces_spanmetrics_calls_total)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = get_json(h.listen, &format!("/api/v1/query?query={q}")).await;
        if v["data"]["result"][0]["value"][1] == "3" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no span metrics: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.shutdown().await.unwrap();
}
