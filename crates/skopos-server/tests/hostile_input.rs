//! Hostile input over real HTTP: each case is named after what broke. The
//! server answers a 4xx (or the query's answer) with a message, never a
//! dropped connection or a 500 carrying panic text, and keeps serving.

use skopos_server::{ServerConfig, ServerHandle};

async fn start(dir: &std::path::Path) -> ServerHandle {
    start_with(dir, |_| {}).await
}

async fn start_with(dir: &std::path::Path, tweak: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut cfg = ServerConfig::new(dir.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.otlp_http_listen = None;
    cfg.otlp_grpc_listen = None;
    cfg.self_scrape_interval = None;
    tweak(&mut cfg);
    skopos_server::start(cfg).await.unwrap()
}

async fn get(h: &ServerHandle, path_and_query: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{}{path_and_query}", h.listen))
        .await
        .unwrap_or_else(|e| panic!("{path_and_query}: the connection failed: {e}"));
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap())
}

fn no_panic_text(body: &str) {
    for marker in ["panicked", "char boundary", "byte index"] {
        assert!(
            !body.contains(marker),
            "panic text reached the client: {body}"
        );
    }
}

#[tokio::test]
async fn multibyte_character_in_a_time_offset_answers_400() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    for q in [
        "/api/v1/query?query=1&time=2024-01-02T03:04:05%2B0%C3%A900",
        "/api/v1/query_range?query=1&start=2024-01-02T03:04:05%C3%A9&end=1&step=1",
        "/api/v1/series?match[]=up&start=%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9",
        "/loki/api/v1/query_range?query=%7Ba%3D%22b%22%7D&start=2024-01-02T03:04:05%2B0%C3%A900",
    ] {
        let (code, body) = get(&h, q).await;
        assert_eq!(code, 400, "{q}: {body}");
        assert!(body.contains("cannot parse") || body.contains("invalid"), "{q}: {body}");
        no_panic_text(&body);
    }
    // Still serving.
    let (code, body) = get(&h, "/api/v1/query?query=1%2B1&time=1700000000").await;
    assert_eq!(code, 200, "{body}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn logfmt_escape_before_a_multibyte_character_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let push = serde_json::json!({"streams": [{
        "stream": {"app": "utf8"},
        "values": [[now_ns.to_string(), "k=\"\\é\" x=1"]],
    }]});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/loki/api/v1/push", h.listen))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (code, body) = get(
        &h,
        "/loki/api/v1/query_range?query=%7Bapp%3D%22utf8%22%7D%20%7C%20logfmt&since=1h&limit=10",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    no_panic_text(&body);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stream = &v["data"]["result"][0]["stream"];
    assert_eq!(stream["x"], "1", "{body}");
    assert_eq!(stream["k"], "é", "{body}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn body_over_the_limit_written_whole_before_reading_gets_413_with_the_message() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let h = start_with(dir.path(), |c| c.max_body_bytes = 1 << 20).await;
    for path in ["/loki/api/v1/push", "/api/v1/write", "/v1/traces"] {
        let mut s = tokio::net::TcpStream::connect(h.listen).await.unwrap();
        let body = vec![b'x'; 24 << 20];
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // The whole request goes out before anything is read, as most
        // clients send it; the write must not be cut off by a reset.
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body)
            .await
            .unwrap_or_else(|e| panic!("{path}: write cut off: {e}"));
        let mut answer = vec![0u8; 4096];
        let n = s.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(
            answer.contains("larger than the limit of 1048576 bytes"),
            "{path}: {answer}"
        );
    }
    h.shutdown().await.unwrap();
}

/// A raw `"` typed into the query string (as Prometheus users do with
/// curl) is answered as Go's server answers it: the query runs. Three
/// requests on one kept-alive connection, the middle one a POST whose body
/// has quotes and a request-line look-alike that must arrive untouched.
#[tokio::test]
async fn raw_quotes_in_a_query_string_are_read_as_go_reads_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let mut s = tokio::net::TcpStream::connect(h.listen).await.unwrap();
    // A body that starts like a request line with quotes in its query: were
    // it rewritten, it would grow past its Content-Length and the query in
    // it would be cut short.
    let body = r#"GET /x?"=1&query=label_replace(vector(2),"a","q\"","","")&time=100"#;
    let requests = [
        "GET /api/v1/query?query=label_replace(vector(1),\"k\",\"v|w\",\"\",\"\")&time=100 HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        format!(
            "POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        "GET /api/v1/query?query=sum(rate(x[5m])&time=100 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
    ];
    for r in &requests {
        s.write_all(r.as_bytes()).await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers all three")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "400"], "{answer}");
    // The first query ran with its quoted arguments read whole.
    assert!(answer.contains(r#""metric":{"k":"v|w"}"#), "{answer}");
    // The POST's body arrived untouched.
    assert!(answer.contains(r#""metric":{"a":"q\""}"#), "{answer}");
    assert!(
        answer.contains("1:16: parse error: unclosed left parenthesis"),
        "{answer}"
    );
    h.shutdown().await.unwrap();
}

/// Never acknowledge what will not be kept: a sample older than the
/// retention window or stamped too far ahead is refused with 400 "out of
/// bounds" (the rest of the request is stored, as Prometheus does), and a
/// sample 30 days ahead no longer moves the store's newest time.
#[tokio::test]
async fn samples_lines_and_spans_out_of_bounds_are_refused() {
    use skopos_model::{Labels, Sample, SeriesSamples, WriteBatch};
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000;
    let write = |samples: Vec<Sample>| {
        let batch = WriteBatch {
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m"), ("job", "x")]),
                samples,
            }],
        };
        let url = format!("http://{}/api/v1/write", h.listen);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .body(skopos_ingest::remote_write::encode(&batch))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, body) = write(vec![Sample::new(now - 16 * day, 1.0)]).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("out of bounds") && body.contains("retention"),
        "{body}"
    );
    let (code, body) = write(vec![
        Sample::new(now + 30 * day, 1.0),
        Sample::new(now - 60_000, 2.0),
    ])
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("out of bounds") && body.contains("future"),
        "{body}"
    );
    // The in-bounds sample of that request was stored, and the refused one
    // did not move the newest time: a sample a minute late is still in order.
    let (code, body) = write(vec![Sample::new(now - 120_000, 3.0)]).await;
    assert_eq!(code, 204, "{body}");
    let stored = h
        .db()
        .select(
            &[skopos_model::Matcher::equal("__name__", "m")],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    let times: Vec<i64> = stored[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(times, vec![now - 120_000, now - 60_000]);

    // Log lines stamped too far ahead: 400 naming the line, the rest stored.
    let ns = |ms: i64| (ms * 1_000_000).to_string();
    let push = serde_json::json!({"streams": [{"stream": {"app": "b"},
        "values": [[ns(now + 30 * day), "ahead"], [ns(now), "fine"]]}]});
    let r = reqwest::Client::new()
        .post(format!("http://{}/loki/api/v1/push", h.listen))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("too far in the future") && text.contains("app=\"b\""),
        "{text}"
    );
    let (code, body) = get(
        &h,
        "/loki/api/v1/query_range?query=%7Bapp%3D%22b%22%7D&since=1h&limit=10",
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("fine") && !body.contains("ahead"), "{body}");
    h.shutdown().await.unwrap();
}
