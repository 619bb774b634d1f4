//! The HTTP edges in process. Bad input: every malformed or over-limit request gets a 4xx
//! with a message naming the problem, the server keeps serving, and what was
//! stored before is intact.

use std::io::Write;
use std::net::SocketAddr;

use skopos_model::{Labels, Matcher, Sample, SeriesSamples, WriteBatch};
use skopos_server::{ServerConfig, ServerHandle};

async fn start(dir: &std::path::Path, tweak: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut cfg = ServerConfig::new(dir.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.otlp_http_listen = None;
    cfg.otlp_grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.self_scrape_interval = None;
    // Fixed timestamps of November 2023: keep everything, or they would be
    // refused as older than the retention window.
    cfg.tsdb.retention_time = None;
    tweak(&mut cfg);
    skopos_server::start(cfg).await.unwrap()
}

fn batch(name: &str, extra: &[(&str, &str)], samples: &[(i64, f64)]) -> WriteBatch {
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    pairs.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    WriteBatch {
        series: vec![SeriesSamples {
            labels: Labels::from_pairs(pairs),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }],
    }
}

async fn post(
    addr: SocketAddr,
    path: &str,
    ct: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", ct)
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn stored(h: &ServerHandle, name: &str) -> Vec<Sample> {
    let s = h
        .db()
        .select(
            &[Matcher::equal("__name__", name)],
            i64::MIN / 2,
            i64::MAX / 2,
        )
        .unwrap();
    s.into_iter().flat_map(|s| s.samples).collect()
}

const RW: &str = "application/x-protobuf";

/// Path, content type, body, extra headers, expected status, and a word the
/// error message must contain.
type Case = (
    &'static str,
    &'static str,
    Vec<u8>,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
);

#[tokio::test]
async fn malformed_and_over_limit_writes_are_refused_and_nothing_is_harmed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| {
        c.max_body_bytes = 64 * 1024;
        c.tsdb.limits.max_labels_per_series = 5;
        c.tsdb.limits.max_label_value_length = 50;
        c.tsdb.limits.max_series = 3;
    })
    .await;
    let addr = h.listen;
    let t = now_ms();
    let good = batch("kept", &[("job", "a")], &[(t, 1.0), (t + 1000, 2.0)]);
    let (code, _) = post(
        addr,
        "/api/v1/write",
        RW,
        skopos_ingest::remote_write::encode(&good),
        &[],
    )
    .await;
    assert_eq!(code, 204);

    let cases: Vec<Case> = vec![
        (
            "/api/v1/write",
            RW,
            b"definitely not snappy".to_vec(),
            vec![],
            400,
            "snappy",
        ),
        (
            "/api/v1/write",
            RW,
            snap::raw::Encoder::new().compress_vec(&[0xff; 40]).unwrap(),
            vec![],
            400,
            "protobuf",
        ),
        (
            "/api/v1/write",
            "text/plain",
            vec![1, 2, 3],
            vec![],
            415,
            "Content-Type",
        ),
        (
            "/api/v1/write",
            RW,
            vec![0u8; 100 * 1024],
            vec![],
            413,
            "limit",
        ),
        (
            "/api/v1/write",
            RW,
            skopos_ingest::remote_write::encode(&batch(
                "m",
                &[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")],
                &[(t, 1.0)],
            )),
            vec![],
            400,
            "max_labels_per_series=5",
        ),
        (
            "/api/v1/write",
            RW,
            skopos_ingest::remote_write::encode(&batch(
                "m",
                &[("a", &"x".repeat(51))],
                &[(t, 1.0)],
            )),
            vec![],
            400,
            "max_label_value_length=50",
        ),
        (
            "/v1/metrics",
            "application/json",
            b"{\"resourceMetrics\": [".to_vec(),
            vec![],
            400,
            "",
        ),
        (
            "/v1/metrics",
            "application/x-protobuf",
            vec![0xff; 30],
            vec![],
            400,
            "",
        ),
        (
            "/v1/metrics",
            "text/csv",
            vec![],
            vec![],
            415,
            "Content-Type",
        ),
        (
            "/v1/metrics",
            "application/json",
            gzip(&vec![b' '; 1 << 20]),
            vec![("Content-Encoding", "gzip")],
            413,
            "limit",
        ),
        (
            "/v1/metrics",
            "application/json",
            b"not gzip".to_vec(),
            vec![("Content-Encoding", "gzip")],
            400,
            "gzip",
        ),
    ];
    for (path, ct, body, headers, want, needle) in cases {
        let (code, text) = post(addr, path, ct, body, &headers).await;
        assert_eq!(code, want, "{path} {ct} {needle}: {text}");
        assert!(!text.trim().is_empty(), "{path}: an error needs a message");
        assert!(
            text.contains(needle),
            "{path}: {text:?} should mention {needle:?}"
        );
    }

    // The series limit (3): one series stored, a batch of three new ones is refused whole.
    let mut three = WriteBatch::default();
    for i in 0..3 {
        three
            .series
            .extend(batch("lim", &[("i", &i.to_string())], &[(t, 1.0)]).series);
    }
    let (code, text) = post(
        addr,
        "/api/v1/write",
        RW,
        skopos_ingest::remote_write::encode(&three),
        &[],
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("max_series=3"), "{text}");
    assert!(
        stored(&h, "lim").is_empty(),
        "a refused batch stores nothing"
    );

    // Still serving, and the first write is intact.
    let (code, _) = post(
        addr,
        "/api/v1/write",
        RW,
        skopos_ingest::remote_write::encode(&good),
        &[],
    )
    .await;
    assert_eq!(code, 204, "an exact duplicate is a no-op, not an error");
    let kept = stored(&h, "kept");
    assert_eq!(kept, vec![Sample::new(t, 1.0), Sample::new(t + 1000, 2.0)]);

    // A conflicting duplicate is refused with 400 and the stored value stays.
    let conflict = batch("kept", &[("job", "a")], &[(t, 9.0)]);
    let (code, text) = post(
        addr,
        "/api/v1/write",
        RW,
        skopos_ingest::remote_write::encode(&conflict),
        &[],
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert_eq!(stored(&h, "kept")[0], Sample::new(t, 1.0));

    // Read API errors use Prometheus' envelope.
    let r = reqwest::get(format!("http://{addr}/api/v1/series?match[]=up{{"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    let r = reqwest::get(format!("http://{addr}/api/v1/series"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    h.shutdown().await.unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn read_api_answers_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let addr = h.listen;
    let t = now_ms();
    let mut b = batch(
        "http_requests_total",
        &[("job", "api"), ("code", "200")],
        &[(t, 1.0)],
    );
    b.series.extend(
        batch(
            "http_requests_total",
            &[("job", "api"), ("code", "500")],
            &[(t, 1.0)],
        )
        .series,
    );
    b.series
        .extend(batch("up", &[("job", "db")], &[(t, 1.0)]).series);
    let (code, _) = post(
        addr,
        "/api/v1/write",
        RW,
        skopos_ingest::remote_write::encode(&b),
        &[],
    )
    .await;
    assert_eq!(code, 204);

    let get = |path: String| async move {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        r.json::<serde_json::Value>().await.unwrap()
    };
    let v = get("/api/v1/series?match[]=http_requests_total{code=~\"5..\"}".into()).await;
    assert_eq!(v["status"], "success");
    assert_eq!(
        v["data"],
        serde_json::json!([{"__name__": "http_requests_total", "code": "500", "job": "api"}])
    );
    let v = get("/api/v1/labels".into()).await;
    assert_eq!(v["data"], serde_json::json!(["__name__", "code", "job"]));
    let v = get("/api/v1/label/job/values?match[]=up".into()).await;
    assert_eq!(v["data"], serde_json::json!(["db"]));
    let v = get(format!(
        "/api/v1/label/__name__/values?start={}&end={}",
        t / 1000 - 60,
        t / 1000 + 60
    ))
    .await;
    assert_eq!(v["data"], serde_json::json!(["http_requests_total", "up"]));
    let v = get(format!(
        "/api/v1/label/__name__/values?end={}",
        t / 1000 - 3600
    ))
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!([]),
        "nothing before the first sample"
    );

    // POST form, as Grafana sends it.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/series"))
        .form(&[
            ("match[]", "up"),
            ("match[]", "http_requests_total{code=\"200\"}"),
        ])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    let m = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("skopos_ingest_samples_total{protocol=\"remote_write\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("skopos_http_request_duration_seconds_bucket{handler=\"/api/v1/write\""),
        "{m}"
    );
    assert!(m.contains("skopos_tsdb_head_series 3"), "{m}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn bearer_token_guards_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.auth_token = Some("s3cret".into())).await;
    let addr = h.listen;
    let client = reqwest::Client::new();
    for path in [
        "/metrics",
        "/api/v1/labels",
        "/loki/api/v1/labels",
        "/api/search/tags",
    ] {
        let r = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let r = client
            .get(format!("http://{addr}{path}"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = client
        .get(format!("http://{addr}/api/v1/labels"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Liveness and readiness probes need no token and reveal nothing.
    for path in ["/-/healthy", "/-/ready"] {
        let r = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    h.shutdown().await.unwrap();
}

#[test]
fn non_loopback_without_token_is_refused() {
    let mut cfg = ServerConfig::new("/nonexistent".into());
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let e = cfg.validate().unwrap_err().to_string();
    assert!(
        e.contains("--auth-token-file") && e.contains("--insecure"),
        "{e}"
    );
    cfg.auth_token = Some("t".into());
    cfg.validate().unwrap();
}

#[tokio::test]
async fn own_metrics_are_stored_as_job_skopos() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| {
        c.self_scrape_interval = Some(std::time::Duration::from_millis(100))
    })
    .await;
    let addr = h.listen;
    let _ = reqwest::get(format!("http://{addr}/-/healthy"))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = h
            .db()
            .select(
                &[
                    Matcher::equal("__name__", "skopos_http_requests_total"),
                    Matcher::equal("job", "skopos"),
                ],
                i64::MIN / 2,
                i64::MAX / 2,
            )
            .unwrap();
        if let Some(s) = found
            .iter()
            .find(|s| s.labels.get("handler") == Some("/-/healthy"))
        {
            assert_eq!(s.labels.get("instance"), Some(addr.to_string().as_str()));
            assert_eq!(s.samples.last().unwrap().v, 1.0);
            // `up{job="skopos"}`, as Prometheus' self-scrape gives.
            let up = h
                .db()
                .select(
                    &[
                        Matcher::equal("__name__", "up"),
                        Matcher::equal("job", "skopos"),
                    ],
                    i64::MIN / 2,
                    i64::MAX / 2,
                )
                .unwrap();
            assert_eq!(up.len(), 1);
            assert_eq!(up[0].samples.last().unwrap().v, 1.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "self-metrics never reached the TSDB"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn otlp_json_over_http_is_stored_and_partial_success_reports_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let addr = h.listen;
    let ns = now_ms() as u128 * 1_000_000;
    let body = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "orders", "unit": "1", "gauge": {"dataPoints": [
                {"timeUnixNano": ns.to_string(), "asInt": "7",
                 "attributes": [{"key": "region", "value": {"stringValue": "eu"}}]}]}},
            {"name": "sold", "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
                {"startTimeUnixNano": (ns - 1_000_000_000).to_string(), "timeUnixNano": ns.to_string(), "asDouble": 2.5}]}}
        ]}]
    }]});
    let gz = gzip(body.to_string().as_bytes());
    let (code, text) = post(
        addr,
        "/v1/metrics",
        "application/json",
        gz,
        &[("Content-Encoding", "gzip")],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(reply.get("partialSuccess").is_none(), "{reply}");
    let g = h
        .db()
        .select(&[Matcher::equal("job", "cart")], i64::MIN / 2, i64::MAX / 2)
        .unwrap();
    let names: Vec<_> = g
        .iter()
        .map(|s| s.labels.metric_name().unwrap().to_string())
        .collect();
    assert!(names.contains(&"orders_ratio".to_string()), "{names:?}");
    assert!(names.contains(&"sold_total".to_string()), "{names:?}");
    let orders = g
        .iter()
        .find(|s| s.labels.metric_name() == Some("orders_ratio"))
        .unwrap();
    assert_eq!(orders.labels.get("region"), Some("eu"));
    assert_eq!(orders.samples[0].v, 7.0);

    // The same point again with a different value conflicts: reported via partialSuccess, not an error.
    let conflict = body.to_string().replace("\"7\"", "\"8\"");
    let (code, text) = post(
        addr,
        "/v1/metrics",
        "application/json",
        conflict.into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        reply["partialSuccess"]["rejectedDataPoints"], "1",
        "{reply}"
    );
    assert!(
        reply["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("duplicate"),
        "{reply}"
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn query_api_shapes_results_and_errors_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.query.max_samples = 1000).await;
    let addr = h.listen;
    let t = 1_700_000_000_000i64;
    let mut b = batch(
        "reqs_total",
        &[("job", "a")],
        &[(t, 1.0), (t + 15_000, 4.0), (t + 30_000, 7.0)],
    );
    b.series.extend(
        batch(
            "reqs_total",
            &[("job", "b")],
            &[(t, 10.0), (t + 15_000, 20.0), (t + 30_000, 30.0)],
        )
        .series,
    );
    let (code, _) = post(
        addr,
        "/api/v1/write",
        RW,
        skopos_ingest::remote_write::encode(&b),
        &[],
    )
    .await;
    assert_eq!(code, 204);
    let get = |path: String| async move {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        let code = r.status().as_u16();
        (code, r.json::<serde_json::Value>().await.unwrap())
    };

    let (code, v) = get("/api/v1/query?query=sum(reqs_total)&time=1700000030".into()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["data"],
        serde_json::json!({"resultType": "vector", "result": [{"metric": {}, "value": [1700000030, "37"]}]})
    );

    let (code, v) =
        get("/api/v1/query?query=reqs_total{job=\"a\"}[1m]&time=1700000030".into()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(
        v["data"]["result"][0]["values"],
        serde_json::json!([[1700000000, "1"], [1700000015, "4"], [1700000030, "7"]])
    );

    let (code, v) = get("/api/v1/query?query=1/0&time=1700000000.5".into()).await;
    assert_eq!(code, 200);
    assert_eq!(
        v["data"],
        serde_json::json!({"resultType": "scalar", "result": [1700000000.5, "+Inf"]})
    );

    let (code, v) = get(
        "/api/v1/query_range?query=reqs_total*2&start=1700000000&end=1700000030&step=15s".into(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0]["metric"],
        serde_json::json!({"job": "a"}),
        "arithmetic drops the metric name"
    );
    assert_eq!(
        series[0]["values"],
        serde_json::json!([[1700000000, "2"], [1700000015, "8"], [1700000030, "14"]])
    );

    for (path, code_want, kind, needle) in [
        ("/api/v1/query?query=sum(", 400, "bad_data", ""),
        (
            "/api/v1/query_range?query=up&start=10&end=5&step=1",
            400,
            "bad_data",
            "end timestamp",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=100000&step=1",
            400,
            "bad_data",
            "11,000 points",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=10&step=0",
            400,
            "bad_data",
            "zero or negative",
        ),
        (
            "/api/v1/query?query=count_over_time(reqs_total[1y])&time=1700000030",
            200,
            "",
            "",
        ),
        (
            "/api/v1/query_range?query=reqs_total&start=1700000000&end=1700000300&step=0.1",
            422,
            "execution",
            "too many samples",
        ),
    ] {
        let (code, v) = get(path.to_string()).await;
        assert_eq!(code, code_want, "{path}: {v}");
        if code != 200 {
            assert_eq!(v["status"], "error", "{path}");
            assert_eq!(v["errorType"], kind, "{path}: {v}");
            assert!(v["error"].as_str().unwrap().contains(needle), "{path}: {v}");
        }
    }

    let (code, v) = get("/api/v1/format_query?query=sum(rate(x[5m]))by(job)".into()).await;
    assert_eq!(code, 200);
    assert_eq!(v["data"], "sum by (job) (rate(x[5m]))");
    let (code, v) = get("/api/v1/status/buildinfo".into()).await;
    assert_eq!(code, 200);
    assert!(v["data"]["version"].is_string());
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata_status_tsdb_and_exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let addr = h.listen;
    let t = now_ms();
    let mut b = batch(
        "http_requests_total",
        &[("job", "api"), ("code", "200")],
        &[(t, 1.0)],
    );
    b.series.extend(
        batch(
            "http_requests_total",
            &[("job", "api"), ("code", "500")],
            &[(t, 1.0)],
        )
        .series,
    );
    b.series
        .extend(batch("up", &[("job", "api")], &[(t, 1.0)]).series);
    let md = skopos_ingest::MetricMetadata {
        metric_family_name: "http_requests_total".into(),
        type_: "counter".into(),
        help: "Requests served.".into(),
        unit: String::new(),
    };
    let req = skopos_ingest::remote_write::to_proto(&b, &[md]);
    let body = skopos_ingest::remote_write::compress(&req);
    let (code, text) = post(addr, "/api/v1/write", RW, body, &[]).await;
    assert_eq!(code, 204, "{text}");
    let get = |path: &'static str| async move {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (code, v) = get("/api/v1/metadata").await;
    assert_eq!(code, 200);
    assert_eq!(
        v["data"],
        serde_json::json!({"http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}]})
    );
    let (_, v) = get("/api/v1/metadata?metric=nope").await;
    assert_eq!(v["data"], serde_json::json!({}));

    let (code, v) = get("/api/v1/status/tsdb").await;
    assert_eq!(code, 200);
    assert_eq!(v["data"]["headStats"]["numSeries"], 3);
    assert_eq!(
        v["data"]["seriesCountByMetricName"][0],
        serde_json::json!({"name": "http_requests_total", "value": 2})
    );
    assert_eq!(
        v["data"]["seriesCountByLabelValuePair"][0],
        serde_json::json!({"name": "job=api", "value": 3})
    );

    let (code, v) = get("/api/v1/query_exemplars?query=up&start=1&end=2").await;
    assert_eq!(code, 200);
    assert_eq!(v["data"], serde_json::json!([]));
    let (code, v) = get("/api/v1/query_exemplars?query=up(").await;
    assert_eq!(code, 400);
    assert_eq!(v["errorType"], "bad_data");

    // Remote write exemplars are kept, in Prometheus' shape, and survive a
    // restart; a duplicate is stored once.
    let mut req = skopos_ingest::remote_write::to_proto(
        &batch(
            "http_requests_total",
            &[("job", "api"), ("code", "500")],
            &[(t + 1000, 2.0)],
        ),
        &[],
    );
    let ex = |trace: &str, ts: i64, value: f64| skopos_ingest::remote_write::proto::Exemplar {
        labels: vec![skopos_ingest::remote_write::proto::Label {
            name: "trace_id".into(),
            value: trace.into(),
        }],
        value,
        timestamp: ts,
    };
    req.timeseries[0].exemplars = vec![ex("4bf92f35", t + 500, 0.25), ex("00f067aa", t + 900, 1.5)];
    let body = skopos_ingest::remote_write::compress(&req);
    let (code, text) = post(addr, "/api/v1/write", RW, body.clone(), &[]).await;
    assert_eq!(code, 204, "{text}");
    let (code, text) = post(addr, "/api/v1/write", RW, body, &[]).await;
    assert_eq!(code, 204, "{text}");
    let q = format!(
        "/api/v1/query_exemplars?query=http_requests_total&start={}&end={}",
        t / 1000,
        t / 1000 + 10
    );
    let want = serde_json::json!([{
        "seriesLabels": {"__name__": "http_requests_total", "code": "500", "job": "api"},
        "exemplars": [
            {"labels": {"trace_id": "4bf92f35"}, "value": "0.25", "timestamp": (t + 500) as f64 / 1000.0},
            {"labels": {"trace_id": "00f067aa"}, "value": "1.5", "timestamp": (t + 900) as f64 / 1000.0},
        ],
    }]);
    let get_owned = |path: String| async move {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (code, v) = get_owned(q.clone()).await;
    assert_eq!(code, 200);
    assert_eq!(v["data"], want);
    h.shutdown().await.unwrap();
    let h = start(dir.path(), |_| {}).await;
    let addr = h.listen;
    let r = reqwest::get(format!("http://{addr}{q}")).await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"], want, "exemplars after a restart");
    h.shutdown().await.unwrap();
}

fn log_lines(h: &ServerHandle, app: &str) -> Vec<(i64, String, Option<String>)> {
    let sel = skopos_model::LogSelect {
        matchers: vec![Matcher::equal("app", app)],
        start: i64::MIN,
        end: i64::MAX,
        contains: Vec::new(),
        matches: Vec::new(),
    };
    let mut out = Vec::new();
    h.logs()
        .select(&sel, &mut |s| {
            out.extend(s.entries.into_iter().map(|e| {
                let trace = e.metadata.get("trace_id").map(str::to_string);
                (e.ts, e.line, trace)
            }));
            true
        })
        .unwrap();
    out
}

#[tokio::test]
async fn loki_push_stores_json_and_protobuf_and_refuses_bad_bodies() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.logs.max_line_bytes = 100).await;
    let addr = h.listen;
    let now = now_ms() * 1_000_000;
    let json_body = format!(
        r#"{{"streams":[{{"stream":{{"app":"api","env":"prod"}},"values":[["{}","GET /a 200"],["{}","GET /b 500",{{"trace_id":"t1"}}]]}}]}}"#,
        now - 2,
        now - 1
    );
    let (code, msg) = post(
        addr,
        "/loki/api/v1/push",
        "application/json",
        json_body.clone().into_bytes(),
        &[],
    )
    .await;
    assert_eq!(code, 204, "{msg}");
    // The same body again (a client retry) is absorbed: exact duplicates drop.
    let (code, _) = post(
        addr,
        "/loki/api/v1/push",
        "application/json",
        gzip(json_body.as_bytes()),
        &[("Content-Encoding", "gzip")],
    )
    .await;
    assert_eq!(code, 204);
    let req = skopos_ingest::loki::proto::PushRequest {
        streams: vec![skopos_ingest::loki::proto::Stream {
            labels: r#"{app="api", env="prod"}"#.into(),
            entries: vec![skopos_ingest::loki::proto::Entry {
                timestamp: Some(skopos_ingest::loki::proto::Timestamp {
                    seconds: (now - 3) / 1_000_000_000,
                    nanos: ((now - 3) % 1_000_000_000) as i32,
                }),
                line: "GET /c 200".into(),
                structured_metadata: Vec::new(),
            }],
        }],
    };
    let snappy = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let (code, msg) = post(
        addr,
        "/loki/api/v1/push",
        "application/x-protobuf",
        snappy,
        &[],
    )
    .await;
    assert_eq!(code, 204, "{msg}");
    let want = vec![
        (now - 3, "GET /c 200".to_string(), None),
        (now - 2, "GET /a 200".to_string(), None),
        (now - 1, "GET /b 500".to_string(), Some("t1".to_string())),
    ];
    assert_eq!(log_lines(&h, "api"), want);

    // Bad bodies: a 4xx naming the problem, and nothing stored.
    for (ct, body, code, needle) in [
        ("application/json", b"{".to_vec(), 400, "invalid JSON"),
        (
            "application/json",
            br#"{"streams":[{"stream":{"app":"x"},"values":[[1,"l"]]}]}"#.to_vec(),
            400,
            "timestamp",
        ),
        (
            "application/x-protobuf",
            b"not snappy".to_vec(),
            400,
            "snappy",
        ),
        ("text/plain", b"x".to_vec(), 415, "Content-Type"),
        (
            "application/json",
            format!(
                r#"{{"streams":[{{"stream":{{"app":"x"}},"values":[["1","{}"]]}}]}}"#,
                "y".repeat(200)
            )
            .into_bytes(),
            400,
            "longer than the limit of 100",
        ),
    ] {
        let (got, msg) = post(addr, "/loki/api/v1/push", ct, body, &[]).await;
        assert_eq!(got, code, "{msg}");
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    }
    assert!(log_lines(&h, "x").is_empty());

    // Labels and values, as Loki answers them.
    let get = |path: String| async move {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (code, v) = get("/loki/api/v1/labels".into()).await;
    assert_eq!(code, 200);
    assert_eq!(v["data"], serde_json::json!(["app", "env"]));
    let (_, v) = get("/loki/api/v1/label/app/values?query=%7Benv%3D%22prod%22%7D".into()).await;
    assert_eq!(v["data"], serde_json::json!(["api"]));
    let (code, v) = get("/loki/api/v1/labels?start=10&end=5".into()).await;
    assert_eq!(code, 400, "{v}");

    // LogQL through Loki's query API.
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let window = format!("&start={}&end={}", now - 10, now + 1);
    let (code, v) = get(format!(
        "/loki/api/v1/query_range?query={}&direction=forward{window}",
        enc(r#"{app="api"} |= "GET /""#)
    ))
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "streams");
    let values: Vec<&serde_json::Value> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap())
        .collect();
    assert_eq!(values.len(), 3, "{v}");
    // Loki's stats: what was read and what was returned.
    let summary = &v["data"]["stats"]["summary"];
    assert_eq!(summary["totalLinesProcessed"], 3, "{summary}");
    assert_eq!(summary["totalEntriesReturned"], 3, "{summary}");
    let line_bytes: usize = values.iter().map(|x| x[1].as_str().unwrap().len()).sum();
    assert!(
        summary["totalBytesProcessed"].as_u64().unwrap() >= line_bytes as u64,
        "{summary}"
    );
    assert!(summary["execTime"].as_f64().unwrap() > 0.0, "{summary}");
    // Structured metadata is a label to the pipeline.
    let (_, v) = get(format!(
        "/loki/api/v1/query_range?query={}{window}",
        enc(r#"{app="api"} | trace_id="t1""#)
    ))
    .await;
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(result[0]["values"][0][1], "GET /b 500");
    assert_eq!(result[0]["values"][0][0], (now - 1).to_string());
    let (code, v) = get(format!(
        "/loki/api/v1/query?query={}&time={}",
        enc(r#"sum(count_over_time({app="api"}[1m]))"#),
        now
    ))
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "3");
    assert_eq!(v["data"]["stats"]["summary"]["totalLinesProcessed"], 3);
    assert_eq!(v["data"]["stats"]["summary"]["totalEntriesReturned"], 1);
    let (code, v) = get(format!(
        "/loki/api/v1/query_range?query={}&step=1{window}",
        enc("{app=\"api\"} |= ")
    ))
    .await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");
    let (_, v) = get(format!(
        "/loki/api/v1/series?match[]={}{window}",
        enc(r#"{env="prod"}"#)
    ))
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!([{"app": "api", "env": "prod"}])
    );
    let (_, v) = get(format!(
        "/loki/api/v1/index/stats?query={}{window}",
        enc(r#"{app="api"}"#)
    ))
    .await;
    assert_eq!(v["entries"], 3);
    assert_eq!(v["streams"], 1);

    // NDJSON: labels from the query string, fields by their common names.
    let nd = b"{\"ts\":1700000000000,\"level\":\"INFO\",\"msg\":\"started\",\"port\":80}\n{\"msg\":\"no time\"}\n";
    let (code, msg) = post(
        addr,
        "/api/v1/logs/ndjson?app=web",
        "application/x-ndjson",
        nd.to_vec(),
        &[],
    )
    .await;
    assert_eq!(code, 204, "{msg}");
    let mut web = log_lines(&h, "web");
    web.sort();
    assert_eq!(web[0].0, 1_700_000_000_000_000_000);
    assert_eq!(web[0].1, "started");
    assert_eq!(web[1].1, "no time");
    let (_, v) =
        get("/loki/api/v1/label/level/values?query=%7Bapp%3D%22web%22%7D&start=1699999999".into())
            .await;
    assert_eq!(v["data"], serde_json::json!(["info"]));
    for (path, body, needle) in [
        (
            "/api/v1/logs/ndjson?app=web",
            &b"{}\nnot json"[..],
            "line 2",
        ),
        ("/api/v1/logs/ndjson", &b"{}"[..], "query parameters"),
        (
            "/api/v1/logs/ndjson?bad-name=x",
            &b"{}"[..],
            "invalid label name",
        ),
    ] {
        let (code, msg) = post(addr, path, "application/x-ndjson", body.to_vec(), &[]).await;
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains(needle), "{msg} lacks {needle}");
    }
    assert_eq!(log_lines(&h, "web").len(), 2);

    // Acknowledged lines survive a restart.
    h.shutdown().await.unwrap();
    let h = start(dir.path(), |_| {}).await;
    assert_eq!(log_lines(&h, "api"), want);
    h.shutdown().await.unwrap();
}

/// Percent-encodes everything but ASCII letters and digits.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn loki_json(app: &str, lines: &[(i64, &str)]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|(t, l)| serde_json::json!([t.to_string(), l]))
        .collect();
    serde_json::json!({"streams": [{"stream": {"app": app}, "values": values}]})
        .to_string()
        .into_bytes()
}

/// The next text message of a tail, parsed; fails after 10 s.
async fn next_tail_message<S>(ws: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("no tail message within 10 s")
            .expect("tail socket ended")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// `(labels, ts, line)` of every entry of a tail message or query result.
fn tail_entries(streams: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for s in streams.as_array().unwrap() {
        for v in s["values"].as_array().unwrap() {
            out.push((
                s["stream"].to_string(),
                v[0].as_str().unwrap().to_string(),
                v[1].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn loki_tail_sends_stored_lines_then_new_ones_through_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let addr = h.listen;
    let now = now_ms() * 1_000_000;
    let (code, msg) = post(
        addr,
        "/loki/api/v1/push",
        "application/json",
        loki_json(
            "web",
            &[
                (now - 3_000, "level=error msg=\"disk full\""),
                (now - 2_000, "level=info msg=ok"),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(code, 204, "{msg}");

    // Bad requests are refused before any upgrade, with a message.
    let query = r#"{app="web"} | logfmt | level="error" | line_format "{{.msg}}""#;
    let plain = reqwest::get(format!(
        "http://{addr}/loki/api/v1/tail?query={}",
        enc(query)
    ))
    .await
    .unwrap();
    assert_eq!(plain.status().as_u16(), 400);
    assert!(plain.text().await.unwrap().contains("WebSocket"));
    for (q, needle) in [
        (r#"count_over_time({app="web"}[1m])"#, "log query"),
        (r#"{app="web""#, "parse"),
    ] {
        let r = reqwest::get(format!("http://{addr}/loki/api/v1/tail?query={}", enc(q)))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{q}: {body}");
    }
    let r = reqwest::get(format!(
        "http://{addr}/loki/api/v1/tail?query={}&delay_for=9",
        enc(query)
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let url = format!(
        "ws://{addr}/loki/api/v1/tail?query={}&start={}",
        enc(query),
        now - 60_000_000_000
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // First the stored line the pipeline keeps, rewritten by line_format.
    let first = next_tail_message(&mut ws).await;
    let got = tail_entries(&first["streams"]);
    assert_eq!(got.len(), 1, "{first}");
    assert_eq!(got[0].2, "disk full");
    assert_eq!(got[0].1, (now - 3_000).to_string());
    assert!(got[0].0.contains(r#""level":"error""#), "{}", got[0].0);

    // Then new lines as they are stored: another stream and filtered lines
    // are not sent.
    for (app, lines) in [
        ("db", vec![(now - 500, "level=error msg=\"db down\"")]),
        (
            "web",
            vec![
                (now - 400, "level=info msg=fine"),
                (now - 300, "level=error msg=\"oom\""),
            ],
        ),
    ] {
        let (code, msg) = post(
            addr,
            "/loki/api/v1/push",
            "application/json",
            loki_json(app, &lines),
            &[],
        )
        .await;
        assert_eq!(code, 204, "{msg}");
    }
    let live = next_tail_message(&mut ws).await;
    let got = tail_entries(&live["streams"]);
    assert_eq!(got.len(), 1, "{live}");
    assert_eq!(got[0].2, "oom");
    assert_eq!(got[0].1, (now - 300).to_string());

    // Shutting down closes the tail instead of waiting for it.
    let began = std::time::Instant::now();
    h.shutdown().await.unwrap();
    assert!(
        began.elapsed() < std::time::Duration::from_secs(5),
        "shutdown waited {:?} for the tail",
        began.elapsed()
    );
    use futures_util::StreamExt;
    let mut closed = false;
    while let Ok(Some(m)) = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await
    {
        match m {
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the tail was not closed at shutdown");
}

#[tokio::test]
async fn loki_delete_removes_lines_for_good_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms() * 1_000_000;
    let query_all = |addr: SocketAddr| async move {
        let r = reqwest::get(format!(
            "http://{addr}/loki/api/v1/query_range?query={}&start={}&end={}&limit=1000&direction=forward",
            enc(r#"{app=~".+"}"#),
            now - 60_000_000_000,
            now + 1
        ))
        .await
        .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        let mut lines: Vec<String> = tail_entries(&v["data"]["result"])
            .into_iter()
            .map(|(_, _, l)| l)
            .collect();
        lines.sort();
        lines
    };
    {
        let h = start(dir.path(), |_| {}).await;
        let addr = h.listen;
        for (app, lines) in [
            (
                "web",
                vec![
                    (now - 5_000, "GET /a token=s3cret"),
                    (now - 4_000, "GET /b"),
                ],
            ),
            ("db", vec![(now - 3_000, "query token=s3cret")]),
        ] {
            let (code, msg) = post(
                addr,
                "/loki/api/v1/push",
                "application/json",
                loki_json(app, &lines),
                &[],
            )
            .await;
            assert_eq!(code, 204, "{msg}");
        }
        let delete = |q: &str, range: String| {
            let body = format!("query={}{range}", enc(q));
            async move {
                post(
                    addr,
                    "/loki/api/v1/delete",
                    "application/x-www-form-urlencoded",
                    body.into_bytes(),
                    &[],
                )
                .await
            }
        };
        let range = format!("&start={}&end={}", now - 60_000_000_000, now);
        for (q, r, needle) in [
            (r#"rate({app="web"}[1m])"#, range.clone(), "metric"),
            (r#"{app="web"} | logfmt"#, range.clone(), "line filters"),
            (r#"{app="web"} |= "s3cret""#, String::new(), "start"),
            (r#"{app="web""#, range.clone(), "parse"),
        ] {
            let (code, msg) = delete(q, r).await;
            assert_eq!(code, 400, "{q}: {msg}");
            assert!(msg.contains(needle), "{q}: {msg}");
        }
        assert_eq!(
            query_all(addr).await.len(),
            3,
            "a refused delete deleted something"
        );
        let (code, msg) = delete(
            r#"{app=~".+"} |= "s3cret""#,
            format!("{range}&dry_run=true"),
        )
        .await;
        assert_eq!(code, 200, "{msg}");
        assert_eq!(msg, r#"{"lines":2}"#);
        assert_eq!(
            query_all(addr).await.len(),
            3,
            "a dry run deleted something"
        );
        let (code, msg) = delete(r#"{app="web"} |= "s3cret""#, range.clone()).await;
        assert_eq!(code, 204, "{msg}");
        assert_eq!(query_all(addr).await, vec!["GET /b", "query token=s3cret"]);
        let listed: serde_json::Value = reqwest::get(format!("http://{addr}/loki/api/v1/delete"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0]["status"], "processed");
        assert_eq!(listed[0]["deleted_lines"], 1);
        h.shutdown().await.unwrap();
    }
    // The history an older skopos kept beside the store is moved into it.
    let legacy = dir.path().join("logs").join("delete_requests.jsonl");
    assert!(legacy.parent().unwrap().is_dir(), "{}", legacy.display());
    std::fs::write(
        &legacy,
        "{\"request_id\":\"5\",\"query\":\"{app=\\\"old\\\"}\",\"start_time\":1.0,\"end_time\":2.0,\"created_at\":3.0,\"status\":\"processed\",\"deleted_lines\":4,\"bytes_freed\":9}\n{\"torn",
    )
    .unwrap();
    // Still gone after a restart: not in the WAL, not in a segment.
    let h = start(dir.path(), |_| {}).await;
    assert_eq!(
        query_all(h.listen).await,
        vec!["GET /b", "query token=s3cret"]
    );
    // The history survives the restart, the imported request after it.
    let listed: serde_json::Value = reqwest::get(format!("http://{}/loki/api/v1/delete", h.listen))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["query"], r#"{app="web"} |= "s3cret""#);
    assert_eq!(listed[0]["deleted_lines"], 1);
    assert_eq!(listed[1]["query"], r#"{app="old"}"#);
    assert_eq!(listed[1]["start_time"], 1.0);
    assert_eq!(listed[1]["end_time"], 2.0);
    assert_eq!(listed[1]["deleted_lines"], 4);
    assert!(!legacy.exists(), "the old history file was left behind");
    h.shutdown().await.unwrap();
}
