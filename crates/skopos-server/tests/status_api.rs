//! Prometheus' status, targets and federation endpoints, and the lifecycle
//! API, in process.

use std::collections::BTreeMap;

use skopos_model::{Labels, Sample, SeriesSamples, WriteBatch, STALE_NAN};
use skopos_server::{Lifecycle, ServerConfig, ServerHandle};

async fn start(dir: &std::path::Path, tweak: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut cfg = ServerConfig::new(dir.to_path_buf());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.otlp_http_listen = None;
    cfg.otlp_grpc_listen = None;
    cfg.self_scrape_interval = None;
    tweak(&mut cfg);
    skopos_server::start(cfg).await.unwrap()
}

async fn get(h: &ServerHandle, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{}{path}", h.listen))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn federate_returns_the_newest_samples_with_external_labels() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| {
        let mut scrape = skopos_ingest::scrape::ScrapeConfigFile::default();
        scrape.global.external_labels = BTreeMap::from([
            ("region".to_string(), "eu".to_string()),
            ("replica".to_string(), "a".to_string()),
        ]);
        c.scrape = Some(scrape);
    })
    .await;
    let t = now_ms();
    let series = |pairs: &[(&str, &str)], samples: Vec<Sample>| SeriesSamples {
        labels: Labels::from_pairs(pairs.iter().copied()),
        samples,
    };
    let batch = WriteBatch {
        series: vec![
            series(
                &[("__name__", "up"), ("job", "x"), ("instance", "a")],
                vec![Sample::new(t - 30_000, 0.0), Sample::new(t - 15_000, 1.0)],
            ),
            // Its own `region` wins over the external one.
            series(
                &[
                    ("__name__", "up"),
                    ("job", "x"),
                    ("instance", "b"),
                    ("region", "us"),
                ],
                vec![Sample::new(t - 15_000, 1.0)],
            ),
            // Gone stale: left out.
            series(
                &[("__name__", "up"), ("job", "x"), ("instance", "c")],
                vec![
                    Sample::new(t - 20_000, 1.0),
                    Sample::new(t - 10_000, STALE_NAN),
                ],
            ),
            series(
                &[("__name__", "other"), ("job", "y")],
                vec![Sample::new(t - 5_000, 2.5)],
            ),
        ],
    };
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/write", h.listen))
        .body(skopos_ingest::remote_write::encode(&batch))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    let (code, body) = get(&h, "/federate?match[]=up&match[]=%7Bjob%3D%22y%22%7D").await;
    assert_eq!(code, 200, "{body}");
    let want = format!(
        "# TYPE other untyped\nother{{job=\"y\",region=\"eu\",replica=\"a\"}} 2.5 {}\n\
         # TYPE up untyped\nup{{instance=\"a\",job=\"x\",region=\"eu\",replica=\"a\"}} 1 {}\n\
         up{{instance=\"b\",job=\"x\",region=\"us\",replica=\"a\"}} 1 {}\n",
        t - 5_000,
        t - 15_000,
        t - 15_000
    );
    assert_eq!(body, want);
    let (code, body) = get(&h, "/federate").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("match[]"), "{body}");
    let (code, body) = get(&h, "/federate?match[]=up%7B").await;
    assert_eq!(code, 400, "{body}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_endpoints_answer_in_prometheus_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| {
        c.config_yaml = "retention_time: 2d\n".into();
        c.flags = BTreeMap::from([("retention.time".to_string(), "2d".to_string())]);
        let scrape = skopos_ingest::scrape::ScrapeConfigFile::from_yaml(
            "scrape_configs:\n  - job_name: node\n    scrape_interval: 1h\n    static_configs: [{targets: ['127.0.0.1:1']}]\n",
        )
        .unwrap();
        c.scrape = Some(scrape);
    })
    .await;
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();
    let (code, body) = get(&h, "/api/v1/status/config").await;
    assert_eq!(code, 200);
    assert_eq!(json(&body)["data"]["yaml"], "retention_time: 2d\n");
    let (_, body) = get(&h, "/api/v1/status/flags").await;
    assert_eq!(json(&body)["data"]["retention.time"], "2d");
    let (_, body) = get(&h, "/api/v1/status/runtimeinfo").await;
    let v = json(&body);
    assert_eq!(v["data"]["reloadConfigSuccess"], true);
    assert_eq!(v["data"]["storageRetention"], "15d");
    assert!(v["data"]["startTime"].as_str().unwrap().ends_with('Z'));
    let (code, body) = get(&h, "/api/v1/status/walreplay").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["data"]["current"], json(&body)["data"]["max"]);
    let (_, body) = get(&h, "/api/v1/scrape_pools").await;
    assert_eq!(
        json(&body)["data"]["scrapePools"],
        serde_json::json!(["node"])
    );
    let (_, body) = get(&h, "/api/v1/targets").await;
    let v = json(&body);
    let t = &v["data"]["activeTargets"][0];
    assert_eq!(t["scrapePool"], "node");
    assert_eq!(t["scrapeUrl"], "http://127.0.0.1:1/metrics");
    assert_eq!(t["labels"]["instance"], "127.0.0.1:1");
    assert_eq!(t["scrapeInterval"], "1h");
    let (_, body) = get(&h, "/api/v1/targets?state=dropped").await;
    assert_eq!(json(&body)["data"]["activeTargets"], serde_json::json!([]));
    let (code, body) = get(&h, "/api/v1/targets?state=sleeping").await;
    assert_eq!(code, 400, "{body}");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn lifecycle_api_is_off_by_default_and_reaches_the_owner_when_on() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://{}/-/reload", h.listen))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("--web.enable-lifecycle"));
    h.shutdown().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.enable_lifecycle = true).await;
    let mut rx = h.lifecycle_requests().unwrap();
    let owner = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(req) = rx.recv().await {
            match req {
                Lifecycle::Reload(reply) => {
                    let answer = if seen.is_empty() {
                        Ok(())
                    } else {
                        Err("bad file".into())
                    };
                    seen.push("reload");
                    let _ = reply.send(answer);
                }
                Lifecycle::Quit => {
                    seen.push("quit");
                    break;
                }
            }
        }
        seen
    });
    let post = |path: &'static str| {
        let c = client.clone();
        let url = format!("http://{}{path}", h.listen);
        async move {
            let r = c.post(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(post("/-/reload").await.0, 200);
    let (code, body) = post("/-/reload").await;
    assert_eq!(code, 500);
    assert!(body.contains("bad file"), "{body}");
    assert_eq!(post("/-/quit").await.0, 200);
    assert_eq!(owner.await.unwrap(), vec!["reload", "reload", "quit"]);
    h.shutdown().await.unwrap();
}

/// A target serving a fixed exposition on loopback.
async fn exposition_target(text: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn metadata_of_scrapes_and_the_self_scrape_is_served() {
    let target = exposition_target(
        "# HELP jobs_done_total Jobs finished.\n# TYPE jobs_done_total counter\njobs_done_total 7\n# HELP queue_depth Items waiting.\n# TYPE queue_depth gauge\n# UNIT queue_depth items\nqueue_depth 3\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| {
        c.self_scrape_interval = Some(std::time::Duration::from_millis(100));
        c.scrape = Some(
            skopos_ingest::scrape::ScrapeConfigFile::from_yaml(&format!(
                "scrape_configs:\n  - job_name: worker\n    scrape_interval: 200ms\n    scrape_timeout: 100ms\n    static_configs: [{{targets: ['{target}']}}]\n"
            ))
            .unwrap(),
        );
    })
    .await;
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let md = loop {
        let (_, body) = get(&h, "/api/v1/metadata").await;
        let v = json(&body);
        if v["data"]["jobs_done_total"].is_array()
            && v["data"]["skopos_http_requests_total"].is_array()
        {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metadata never appeared: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        md["data"]["jobs_done_total"],
        serde_json::json!([{"type": "counter", "help": "Jobs finished.", "unit": ""}])
    );
    assert_eq!(
        md["data"]["skopos_http_requests_total"][0]["type"],
        "counter"
    );
    let (_, body) = get(
        &h,
        "/api/v1/targets/metadata?match_target=%7Bjob%3D%22worker%22%7D&metric=queue_depth",
    )
    .await;
    let v = json(&body);
    assert_eq!(
        v["data"],
        serde_json::json!([{
            "target": {"instance": target.to_string(), "job": "worker"},
            "metric": "queue_depth", "type": "gauge", "help": "Items waiting.",
            // `# UNIT` is OpenMetrics only; the text format ignores it, as Prometheus does.
            "unit": "",
        }]),
        "{body}"
    );
    let (_, body) = get(
        &h,
        "/api/v1/targets/metadata?match_target=%7Bjob%3D%22nobody%22%7D",
    )
    .await;
    assert_eq!(json(&body)["data"], serde_json::json!([]));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_admin_api_deletes_cleans_and_snapshots_only_when_enabled() {
    let client = reqwest::Client::new();
    let post = |h: &ServerHandle, path: &str| {
        let (c, url) = (client.clone(), format!("http://{}{path}", h.listen));
        async move {
            let r = c.post(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    for path in [
        "/api/v1/admin/tsdb/snapshot",
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        "/api/v1/admin/tsdb/clean_tombstones",
    ] {
        let (code, body) = post(&h, path).await;
        assert_eq!(code, 503, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errorType"], "unavailable");
        assert_eq!(v["error"], "admin APIs disabled");
    }
    h.shutdown().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.enable_admin_api = true).await;
    let t = now_ms();
    let series = |job: &str| SeriesSamples {
        labels: Labels::from_pairs([("__name__", "up"), ("job", job)]),
        samples: (0..10)
            .map(|i| Sample::new(t - 100_000 + i * 10_000, 1.0))
            .collect(),
    };
    h.db()
        .append(&WriteBatch {
            series: vec![series("a"), series("b")],
        })
        .unwrap();
    let count = |h: &ServerHandle, job: &'static str| {
        let url = format!(
            "http://{}/api/v1/query?query=count_over_time(up{{job=\"{job}\"}}[5m])&time={}",
            h.listen,
            t as f64 / 1000.0
        );
        async move {
            let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            v["data"]["result"][0]["value"][1]
                .as_str()
                .map(|s| s.parse::<f64>().unwrap())
        }
    };
    assert_eq!(count(&h, "a").await, Some(10.0));

    let (code, body) = post(&h, "/api/v1/admin/tsdb/delete_series").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("no match[] parameter provided"), "{body}");
    let (code, body) = post(&h, "/api/v1/admin/tsdb/delete_series?match[]=up{").await;
    assert_eq!(code, 400, "{body}");
    // The five newest samples of job a.
    let path = format!(
        "/api/v1/admin/tsdb/delete_series?match[]=up{{job=\"a\"}}&start={}",
        (t - 50_000) as f64 / 1000.0
    );
    let (code, body) = post(&h, &path).await;
    assert_eq!(code, 204, "{body}");
    assert_eq!(count(&h, "a").await, Some(5.0));
    assert_eq!(count(&h, "b").await, Some(10.0));
    assert_eq!(post(&h, "/api/v1/admin/tsdb/clean_tombstones").await.0, 204);

    let (code, body) = post(&h, "/api/v1/admin/tsdb/snapshot?skip_head=maybe").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&h, "/api/v1/admin/tsdb/snapshot").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = v["data"]["name"].as_str().unwrap().to_string();
    let snap = dir.path().join("metrics/snapshots").join(&name);
    assert!(snap.is_dir(), "{}", snap.display());
    let r = client
        .get(format!("http://{}/api/v1/admin/tsdb/snapshot", h.listen))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405, "POST or PUT only");
    h.shutdown().await.unwrap();

    // The snapshot is a blocks directory: a store opened on it holds what
    // the server held, the deletion included.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("metrics")).unwrap();
    std::fs::rename(&snap, other.path().join("metrics/blocks")).unwrap();
    let h = start(other.path(), |_| {}).await;
    assert_eq!(count(&h, "a").await, Some(5.0));
    assert_eq!(count(&h, "b").await, Some(10.0));
    // The deletion also survived the restart of the original store.
    h.shutdown().await.unwrap();
    let h = start(dir.path(), |_| {}).await;
    assert_eq!(count(&h, "a").await, Some(5.0));
    h.shutdown().await.unwrap();
}
