//! The Loki endpoints of Grafana's log views: volume, detected labels and
//! fields, format_query, buildinfo and readiness.

use serde_json::{json, Value};
use skopos_server::{ServerConfig, ServerHandle};

async fn start(dir: &std::path::Path) -> ServerHandle {
    let mut cfg = ServerConfig::new(dir.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.otlp_http_listen = None;
    cfg.otlp_grpc_listen = None;
    cfg.self_scrape_interval = None;
    skopos_server::start(cfg).await.unwrap()
}

async fn get(h: &ServerHandle, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{}{path}", h.listen))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const JSON_LINES: [&str; 3] = [
    r#"{"level":"info","status":200,"took":"15ms","msg":"ok"}"#,
    r#"{"level":"error","status":500,"took":"1.5s","msg":"boom"}"#,
    r#"{"level":"info","status":204,"took":"2ms","msg":"ok"}"#,
];
const LOGFMT_LINES: [&str; 2] = [
    "level=warn size=10KB user=ann",
    "level=info size=2MB user=bob",
];

async fn load(h: &ServerHandle) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let values = |lines: &[&str]| -> Vec<Value> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                json!([
                    (now - 60_000_000_000 + i as i64 * 1_000_000_000).to_string(),
                    l
                ])
            })
            .collect()
    };
    let push = json!({"streams": [
        {"stream": {"app": "api", "env": "prod"}, "values": values(&JSON_LINES)},
        {"stream": {"app": "worker", "env": "prod"}, "values": values(&LOGFMT_LINES)},
    ]});
    let r = reqwest::Client::new()
        .post(format!("http://{}/loki/api/v1/push", h.listen))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    now
}

#[tokio::test]
async fn volume_sums_line_bytes_by_the_selector_labels() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let now = load(&h).await;
    let (start, end) = (now - 3_600_000_000_000, now);
    let q = format!(
        "/loki/api/v1/index/volume?query={}&start={start}&end={end}",
        enc(r#"{app=~".+"}"#)
    );
    let (code, body) = get(&h, &q).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    let bytes = |lines: &[&str]| lines.iter().map(|l| l.len()).sum::<usize>().to_string();
    assert_eq!(result.len(), 2, "{body}");
    // Largest first, grouped by `app` only (the label the selector names).
    assert_eq!(result[0]["metric"], json!({"app": "api"}));
    assert_eq!(result[0]["value"][1], bytes(&JSON_LINES));
    assert_eq!(result[1]["metric"], json!({"app": "worker"}));
    assert_eq!(result[1]["value"][1], bytes(&LOGFMT_LINES));
    let (_, body) = get(&h, &format!("{q}&targetLabels=env&limit=1")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let total: usize = JSON_LINES
        .iter()
        .chain(&LOGFMT_LINES)
        .map(|l| l.len())
        .sum();
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{body}");
    assert_eq!(result[0]["metric"], json!({"env": "prod"}));
    // The time is `end` in seconds; serde_json reads floats to within an ulp.
    let t = result[0]["value"][0].as_f64().unwrap();
    assert!((t - end as f64 / 1e9).abs() < 1e-6, "{body}");
    assert_eq!(result[0]["value"][1], total.to_string());

    let q = format!(
        "/loki/api/v1/index/volume_range?query={}&start={start}&end={end}&step=600",
        enc(r#"{env="prod"}"#)
    );
    let (code, body) = get(&h, &q).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix", "{body}");
    let points = v["data"]["result"][0]["values"].as_array().unwrap();
    let summed: f64 = points
        .iter()
        .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(summed as usize, total, "{body}");
    let (code, body) = get(
        &h,
        "/loki/api/v1/index/volume?query=sum(rate(%7Ba%3D%22b%22%7D%5B1m%5D))",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn detected_labels_and_fields_describe_what_the_lines_hold() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let now = load(&h).await;
    let window = format!("&start={}&end={now}", now - 3_600_000_000_000);
    let (code, body) = get(
        &h,
        &format!(
            "/loki/api/v1/detected_labels?query={}{window}",
            enc(r#"{env="prod"}"#)
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["detectedLabels"],
        json!([{"label": "app", "cardinality": 2}, {"label": "env", "cardinality": 1}])
    );
    let (code, body) = get(
        &h,
        &format!(
            "/loki/api/v1/detected_fields?query={}{window}",
            enc(r#"{env="prod"}"#)
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let field = |name: &str| -> Value {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["label"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {body}"))
    };
    assert_eq!(
        field("level"),
        json!({"label": "level", "type": "string", "cardinality": 3, "parsers": ["json", "logfmt"]})
    );
    assert_eq!(
        field("status"),
        json!({"label": "status", "type": "int", "cardinality": 3, "parsers": ["json"]})
    );
    assert_eq!(field("took")["type"], "duration");
    assert_eq!(field("size")["type"], "bytes");
    assert_eq!(field("user")["cardinality"], 2);
    // The query's own filters decide which lines count.
    let (_, body) = get(
        &h,
        &format!(
            "/loki/api/v1/detected_fields?query={}{window}",
            enc(r#"{app="api"} |= "boom""#)
        ),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let level = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["label"] == "level")
        .unwrap()
        .clone();
    assert_eq!(level["cardinality"], 1, "{body}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn format_query_buildinfo_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let (code, body) = get(
        &h,
        &format!(
            "/loki/api/v1/format_query?query={}",
            enc(r#"{app="a"}|="x"|json"#)
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], r#"{app="a"} |= "x" | json"#);
    let (code, body) = get(&h, "/loki/api/v1/format_query?query=%7Bapp%3D").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = get(&h, "/loki/api/v1/status/buildinfo").await;
    assert_eq!(code, 200);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["version"].is_string());
    assert_eq!(get(&h, "/ready").await, (200, "ready\n".to_string()));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn patterns_cluster_the_lines_of_the_range_with_counts_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    // One stream a minute ago: 40 requests, 35 of one shape with varying
    // numbers, and 5 of a rare shape (under Loki's 30-line cut).
    let base = (now - 60_000_000_000) / 10_000_000_000 * 10_000_000_000;
    let mut values: Vec<Value> = (0..35)
        .map(|i| {
            json!([
                (base + i * 1_000_000_000).to_string(),
                format!("GET /api/items/{i} 200 in {}ms", i * 3 + 1)
            ])
        })
        .collect();
    values.extend((0..5).map(|i| {
        json!([
            (base + i * 1_000_000_000 + 500).to_string(),
            format!("worker {i} restarted after panic")
        ])
    }));
    let push = json!({"streams": [{"stream": {"app": "web"}, "values": values}]});
    let r = reqwest::Client::new()
        .post(format!("http://{}/loki/api/v1/push", h.listen))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let window = format!("&start={}&end={now}", now - 3_600_000_000_000);
    let (code, body) = get(
        &h,
        &format!(
            "/loki/api/v1/patterns?query={}{window}&step=10s",
            enc(r#"{app="web"}"#)
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{body}");
    assert_eq!(data[0]["pattern"], "GET <_> 200 in <_>");
    let samples: Vec<(i64, u64)> = data[0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_i64().unwrap(), s[1].as_u64().unwrap()))
        .collect();
    let b = base / 1_000_000_000;
    assert_eq!(
        samples,
        vec![(b, 10), (b + 10, 10), (b + 20, 10), (b + 30, 5)]
    );
    // A 60 s step sums them (the buckets fall on multiples of the step).
    let (code, body) = get(
        &h,
        &format!(
            "/loki/api/v1/patterns?query={}{window}&step=60s",
            enc(r#"{app="web"}"#)
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let total: u64 = v["data"][0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_u64().unwrap())
        .sum();
    assert_eq!(total, 35);
    assert!(v["data"][0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s[0].as_i64().unwrap() % 60 == 0));
    // Nothing selected: an empty list. A pipeline or a metric query: 400.
    let (code, body) = get(
        &h,
        &format!(
            "/loki/api/v1/patterns?query={}{window}",
            enc(r#"{app="none"}"#)
        ),
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"data":[],"status":"success"}"#)
    );
    for q in [r#"{app="web"} |= "GET""#, r#"rate({app="web"}[1m])"#] {
        let (code, body) = get(
            &h,
            &format!("/loki/api/v1/patterns?query={}{window}", enc(q)),
        )
        .await;
        assert_eq!(code, 400, "{q}: {body}");
        assert!(body.contains("stream selector only"), "{q}: {body}");
    }
    let (code, body) = get(
        &h,
        &format!(
            "/loki/api/v1/patterns?query={}{window}&step=-5s",
            enc(r#"{app="web"}"#)
        ),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    h.shutdown().await.unwrap();
}
