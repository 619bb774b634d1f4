//! `skopos agent` end to end: the real binary ships files to a real
//! `skopos server`, and the lines come back through the Loki query API.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `(stream labels, lines)` of a LogQL log query, oldest first.
async fn query(url: &str, q: &str) -> Vec<(serde_json::Value, Vec<String>)> {
    let end = (now_s() + 60) * 1_000_000_000;
    let start = (now_s() - 3600) * 1_000_000_000;
    let resp: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/loki/api/v1/query_range"))
        .query(&[
            ("query", q),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("limit", "1000"),
            ("direction", "forward"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["status"], "success", "{resp}");
    let mut out: Vec<(serde_json::Value, Vec<String>)> = resp["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let lines = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v[1].as_str().unwrap().to_string())
                .collect();
            (s["stream"].clone(), lines)
        })
        .collect();
    out.sort_by_key(|(l, _)| l.to_string());
    out
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn agent(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skopos"));
    c.arg("agent").args(args);
    c
}

#[tokio::test]
async fn agent_once_ships_files_to_the_server_with_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::start(&tmp.path().join("data"), &[]);
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    write(&logs.join("a.log"), "alpha one\nalpha two\nalpha three\n");
    write(&logs.join("b.log"), "beta one\nbeta partial");
    write(&logs.join("old.log.gz"), "never\n");
    let t = now_s() - 10;
    write(
        &logs.join("app.json"),
        &format!(
            "{{\"ts\":{t},\"level\":\"info\",\"msg\":\"started\"}}\n{{\"ts\":{},\"level\":\"error\",\"msg\":\"failed\",\"trace_id\":\"abc123\"}}\n",
            t + 1
        ),
    );
    let config = tmp.path().join("agent.yaml");
    write(
        &config,
        &format!(
            r#"server: {url}
state_dir: {state}
metrics_listen: "off"
sources:
  - type: file
    include: ["{logs}/*.log*"]
    exclude: ["*.gz"]
    labels: {{job: e2e-raw}}
  - type: file
    include: ["{logs}/*.json"]
    format: json
    fields_to_labels: [level]
    fields_to_metadata: [trace_id]
    labels: {{job: e2e-json, env: test}}
"#,
            url = server.url,
            state = tmp.path().join("state").display(),
            logs = logs.display()
        ),
    );
    let out = agent(&["--config", config.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let raw = query(&server.url, r#"{job="e2e-raw"}"#).await;
    let file = |n: &str| logs.join(n).display().to_string();
    assert_eq!(
        raw,
        vec![
            (
                serde_json::json!({"filename": file("a.log"), "job": "e2e-raw"}),
                vec!["alpha one".into(), "alpha two".into(), "alpha three".into()]
            ),
            (
                serde_json::json!({"filename": file("b.log"), "job": "e2e-raw"}),
                vec!["beta one".to_string()]
            ),
        ]
    );
    let json = query(&server.url, r#"{job="e2e-json"}"#).await;
    let labels = |level: &str| serde_json::json!({"env": "test", "filename": file("app.json"), "job": "e2e-json", "level": level});
    // Structured metadata comes back among the labels, as Loki returns it.
    let mut error_labels = labels("error");
    error_labels["trace_id"] = "abc123".into();
    assert_eq!(
        json,
        vec![
            (
                error_labels,
                vec![
                    r#"{"ts":TS,"level":"error","msg":"failed","trace_id":"abc123"}"#
                        .replace("TS", &(t + 1).to_string())
                ]
            ),
            (
                labels("info"),
                vec![r#"{"ts":TS,"level":"info","msg":"started"}"#.replace("TS", &t.to_string())]
            ),
        ]
    );
    // The line's own timestamp was used.
    let resp: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/loki/api/v1/query_range", server.url))
        .query(&[
            ("query", r#"{job="e2e-json", level="info"}"#),
            ("start", &((t - 1) * 1_000_000_000).to_string()),
            ("end", &((t + 1) * 1_000_000_000).to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resp["data"]["result"][0]["values"][0][0],
        (t * 1_000_000_000).to_string()
    );
    // Structured metadata reaches the server: filter on it.
    let meta = query(&server.url, r#"{job="e2e-json"} | trace_id="abc123""#).await;
    assert_eq!(meta.len(), 1, "{meta:?}");
    assert_eq!(meta[0].1.len(), 1);

    // Run again: nothing new, nothing resent; the partial line completes.
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("b.log"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b" now\n"))
        .unwrap();
    let out = agent(&["--config", config.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let raw = query(&server.url, r#"{job="e2e-raw"}"#).await;
    assert_eq!(raw[0].1.len(), 3);
    assert_eq!(raw[1].1, ["beta one", "beta partial now"]);
    common::stop(server);
}

#[tokio::test]
async fn agent_once_fails_when_the_server_is_unreachable_and_on_bad_config() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("a.log"), "x\n");
    let config = tmp.path().join("agent.yaml");
    write(
        &config,
        &format!(
            "server: http://127.0.0.1:{}\nstate_dir: {}\nmetrics_listen: \"off\"\nretry: {{min_backoff: 10ms, max_backoff: 50ms, timeout: 1s}}\nsources:\n  - type: file\n    include: [\"{}/*.log\"]\n",
            free_port(),
            tmp.path().join("state").display(),
            tmp.path().display()
        ),
    );
    let out = agent(&[
        "--config",
        config.to_str().unwrap(),
        "--once",
        "--once-timeout",
        "1s",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not everything was shipped"), "{err}");

    let bad = tmp.path().join("bad.yaml");
    write(
        &bad,
        "server: http://x\nsources:\n  - type: file\n    includes: [a]\n",
    );
    let out = agent(&["--config", bad.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("includes") && err.contains("line 3"),
        "{err}"
    );
}

#[tokio::test]
async fn running_agent_serves_its_metrics_and_stops_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::start(&tmp.path().join("data"), &[]);
    let log = tmp.path().join("app.log");
    write(&log, "m one\nm two\nm three\n");
    let metrics_port = free_port();
    let config = tmp.path().join("agent.yaml");
    write(
        &config,
        &format!(
            "server: {}\nstate_dir: {}\nmetrics_listen: 127.0.0.1:{metrics_port}\nbatch: {{max_bytes: 1MiB, max_wait: 100ms}}\nsources:\n  - type: file\n    name: app\n    include: [\"{}\"]\n    labels: {{job: e2e-metrics}}\n",
            server.url,
            tmp.path().join("state").display(),
            log.display()
        ),
    );
    let child = agent(&["--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = common::KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let client = reqwest::Client::new();
    let metrics = loop {
        assert!(Instant::now() < deadline, "lines never shipped");
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
        {
            let text = r.text().await.unwrap();
            if text.contains("skopos_agent_lines_shipped_total 3\n") {
                break text;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for want in [
        "skopos_agent_lines_read_total{source=\"app\",type=\"file\"} 3\n",
        "skopos_agent_bytes_read_total{source=\"app\",type=\"file\"} 17\n",
        "skopos_agent_files_tailed{source=\"app\",type=\"file\"} 1\n",
        "skopos_agent_batches_shipped_total 1\n",
        "skopos_agent_bytes_shipped_total 17\n",
        "skopos_agent_send_failures_total 0\n",
        "skopos_agent_buffer_bytes 0\n",
        "skopos_agent_parse_errors_total{source=\"app\",type=\"file\"} 0\n",
        "# TYPE skopos_agent_send_retries_total counter\n",
        "skopos_agent_lines_dropped_total 0\n",
    ] {
        assert!(metrics.contains(want), "missing {want:?} in\n{metrics}");
    }
    let got = query(&server.url, r#"{job="e2e-metrics"}"#).await;
    assert_eq!(got[0].1, ["m one", "m two", "m three"]);

    // SAFETY: a plain syscall on our own child's pid, which has not been reaped.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "SIGTERM should exit 0, got {status}");
    let positions = std::fs::read_to_string(tmp.path().join("state/positions.json")).unwrap();
    assert!(positions.contains("\"offset\": 20"), "{positions}");
    common::stop(server);
}

#[test]
fn dry_run_prints_batches_and_keeps_no_state() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("a.log"),
        "level=info msg=one\nlevel=warn msg=two\n",
    );
    let config = tmp.path().join("agent.yaml");
    let state = tmp.path().join("state");
    write(
        &config,
        &format!(
            "server: http://127.0.0.1:{}\nstate_dir: {}\nmetrics_listen: \"off\"\nsources:\n  - type: file\n    include: [\"{}/*.log\"]\n    format: logfmt\n    fields_to_labels: [level]\n",
            free_port(),
            state.display(),
            tmp.path().display()
        ),
    );
    let out = agent(&["--config", config.to_str().unwrap(), "--once", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut streams: Vec<(String, Vec<String>)> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let lines = v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e[1].as_str().unwrap().to_string())
                .collect();
            (v["stream"].as_str().unwrap().to_string(), lines)
        })
        .collect();
    streams.sort();
    let file = tmp.path().join("a.log").display().to_string();
    assert_eq!(
        streams,
        vec![
            (
                format!("{{filename=\"{file}\", level=\"info\"}}"),
                vec!["level=info msg=one".to_string()]
            ),
            (
                format!("{{filename=\"{file}\", level=\"warn\"}}"),
                vec!["level=warn msg=two".to_string()]
            ),
        ]
    );
    assert!(!state.join("positions.json").exists());
    assert!(!state.join("buffer").exists());
}
