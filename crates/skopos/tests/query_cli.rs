//! `skopos query` against a running server: a readable table, the raw JSON,
//! range queries, and the server's error surfaced as a CLI error.

mod common;

use std::process::Command;

fn skopos(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skopos"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_prints_tables_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::start(&tmp.path().join("data"), &[]);
    let batch = skopos_model::WriteBatch {
        series: ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, job)| skopos_model::SeriesSamples {
                labels: skopos_model::Labels::from_pairs([
                    ("__name__", "jobs_total"),
                    ("job", job),
                ]),
                samples: (0..5)
                    .map(|k| {
                        skopos_model::Sample::new(
                            1_700_000_000_000 + k * 15_000,
                            ((i + 1) * k as usize) as f64,
                        )
                    })
                    .collect(),
            })
            .collect(),
    };
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/write", server.url))
        .body(skopos_ingest::remote_write::encode(&batch))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let url = server.url.clone();

    let out = tokio::task::spawn_blocking(move || {
        skopos(&[
            "query",
            "sum by (job) (jobs_total)",
            "--url",
            &url,
            "--time",
            "1700000060",
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].starts_with("{job=\"a\"}") && lines[1].contains(" 4 "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("{job=\"b\"}") && lines[2].contains(" 8 "),
        "{table}"
    );

    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        skopos(&[
            "query",
            "jobs_total{job=\"b\"}",
            "--url",
            &url,
            "--start",
            "1700000000",
            "--end",
            "1700000060",
            "--step",
            "30s",
            "-o",
            "json",
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["data"]["result"][0]["values"],
        serde_json::json!([[1700000000, "0"], [1700000030, "4"], [1700000060, "8"]])
    );

    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || skopos(&["query", "sum(", "--url", &url]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad_data"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_query_prints_lines_tables_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::start(&tmp.path().join("data"), &[]);
    let body = r#"{"streams":[{"stream":{"app":"web"},"values":[
        ["1700000000000000000","GET /a 200"],["1700000001000000000","GET /b 500"],["1700000002000000000","GET /c 200"]]}]}"#;
    let r = reqwest::Client::new()
        .post(format!("{}/loki/api/v1/push", server.url))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let url = server.url.clone();
    let run = move |args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut all: Vec<&str> = vec!["logs", "query", "--url", &url];
                all.extend(args.iter().map(String::as_str));
                skopos(&all)
            })
            .await
            .unwrap()
        }
    };
    let window = |q: &str| -> Vec<String> {
        vec![
            q.to_string(),
            "--start".into(),
            "1699999999".into(),
            "--end".into(),
            "1700000003".into(),
        ]
    };
    let out = run(window(r#"{app="web"} |= "200""#)).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "2023-11-14T22:13:22.000Z {app=\"web\"} GET /c 200\n\
         2023-11-14T22:13:20.000Z {app=\"web\"} GET /a 200\n"
    );
    let mut args = window(r#"{app="web"}"#);
    args.extend(["--forward".to_string(), "--limit".into(), "1".into()]);
    let out = run(args).await;
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .ends_with("GET /a 200\n"));
    // A metric query prints the table.
    let mut args = window(r#"sum(count_over_time({app="web"}[10s]))"#);
    args.extend(["-o".to_string(), "json".into()]);
    let out = run(args).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    // The server's parse error becomes a CLI error.
    let out = run(window(r#"{app="web"} |="#)).await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad_data") && err.contains("parse error"),
        "{err}"
    );

    // `logs inspect` reads the store beside the running server: the lines
    // are still in the WAL (no segment yet).
    let data = tmp.path().join("data");
    let out = skopos(&[
        "logs",
        "inspect",
        "--data-dir",
        data.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["segments"], serde_json::json!([]));
    assert!(v["walBytes"].as_u64().unwrap() > 0, "{v}");
    let out = skopos(&[
        "logs",
        "inspect",
        "--data-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("holds no log store"));
}

async fn push_lines(url: &str, app: &str, lines: &[(i64, &str)]) {
    let values: Vec<serde_json::Value> = lines
        .iter()
        .map(|(t, l)| serde_json::json!([t.to_string(), l]))
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"app": app}, "values": values}]});
    let r = reqwest::Client::new()
        .post(format!("{url}/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_follows_new_lines_and_logs_delete_counts_then_deletes() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let server = common::start(&tmp.path().join("data"), &[]);
    let now = now_ns();
    push_lines(
        &server.url,
        "web",
        &[
            (now - 2_000_000_000, "GET /old 500"),
            (now - 1_000_000_000, "GET /ok 200"),
        ],
    )
    .await;

    // `logs tail` prints the stored line, then a new one as it arrives.
    let mut child = Command::new(env!("CARGO_BIN_EXE_skopos"))
        .args([
            "logs",
            "tail",
            "--url",
            &server.url,
            r#"{app="web"} |= "500""#,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let wait = std::time::Duration::from_secs(15);
    let first = rx
        .recv_timeout(wait)
        .expect("no stored line from logs tail");
    assert!(first.ends_with("{app=\"web\"} GET /old 500"), "{first}");
    // Give the tail time to be following before the new line is pushed;
    // a line pushed earlier would come as history, which is also right,
    // but this checks the live path.
    std::thread::sleep(std::time::Duration::from_millis(500));
    push_lines(
        &server.url,
        "web",
        &[(now_ns(), "GET /new 500"), (now_ns(), "GET /fine 200")],
    )
    .await;
    push_lines(&server.url, "db", &[(now_ns(), "db 500")]).await;
    let live = rx.recv_timeout(wait).expect("no live line from logs tail");
    assert!(live.ends_with("{app=\"web\"} GET /new 500"), "{live}");
    assert!(rx
        .recv_timeout(std::time::Duration::from_millis(500))
        .is_err());
    child.kill().unwrap();
    let _ = child.wait();

    // A bad tail query is the server's 400, as a CLI error.
    let out = skopos(&[
        "logs",
        "tail",
        "--url",
        &server.url,
        r#"rate({app="web"}[1m])"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("400") && err.contains("log query"), "{err}");

    // `logs delete` without --yes counts and deletes nothing.
    let q = r#"{app="web"} |= "500""#;
    let out = skopos(&["logs", "delete", "--url", &server.url, "--since", "1h", q]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("2 lines match") && text.contains("--yes"),
        "{text}"
    );
    let out = skopos(&[
        "logs",
        "query",
        "--url",
        &server.url,
        "-o",
        "json",
        r#"{app="web"}"#,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |v: &serde_json::Value| -> usize {
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(count(&v), 4);
    let out = skopos(&[
        "logs",
        "delete",
        "--url",
        &server.url,
        "--since",
        "1h",
        "--yes",
        q,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("deleted 2 lines"));
    let out = skopos(&[
        "logs",
        "query",
        "--url",
        &server.url,
        "-o",
        "json",
        r#"{app=~".+"}"#,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(count(&v), 3, "{v}");
    let lines = v.to_string();
    assert!(!lines.contains("GET /old 500") && !lines.contains("GET /new 500"));
    assert!(
        lines.contains("db 500"),
        "another stream's line was deleted"
    );
    // A range is required, and a parser stage is refused.
    let out = skopos(&["logs", "delete", "--url", &server.url, q]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--start or --since"));
    let out = skopos(&[
        "logs",
        "delete",
        "--url",
        &server.url,
        "--since",
        "1h",
        "--yes",
        r#"{app="web"} | json"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line filters"), "{err}");
    common::stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_get_draws_a_waterfall_and_traces_search_finds_by_traceql() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::start(&tmp.path().join("data"), &[]);
    let now = now_ns();
    let trace = "5b8efff798038103d269b633813fc60c";
    let span = |svc: &str, id: &str, parent: &str, name: &str, from: i64, to: i64, code: i64| {
        serde_json::json!({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
            "scopeSpans": [{"scope": {"name": "test"}, "spans": [{
                "traceId": trace, "spanId": id, "parentSpanId": parent, "name": name,
                "kind": 2,
                "startTimeUnixNano": (now + from).to_string(),
                "endTimeUnixNano": (now + to).to_string(),
                "status": {"code": code}
            }]}]
        })
    };
    let body = serde_json::json!({"resourceSpans": [
        span("web", "eee19b7ec3c1b174", "", "GET /checkout", 0, 100_000_000, 0),
        span("api", "eee19b7ec3c1b175", "eee19b7ec3c1b174", "charge", 10_000_000, 60_000_000, 2),
        span("db", "eee19b7ec3c1b176", "eee19b7ec3c1b175", "INSERT", 20_000_000, 30_000_000, 0),
    ]});
    let r = reqwest::Client::new()
        .post(format!("{}/v1/traces", server.url))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());

    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || skopos(&["traces", "get", "--url", &url, trace]))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("trace {trace}: 3 spans"));
    assert!(lines[2].starts_with("web GET /checkout"), "{text}");
    assert!(
        lines[3].starts_with("  api charge") && lines[3].ends_with("ERROR"),
        "{text}"
    );
    assert!(
        lines[4].starts_with("    db INSERT") && lines[4].contains("10.00ms"),
        "{text}"
    );

    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        skopos(&[
            "traces",
            "search",
            "--url",
            &url,
            "{ status = error } >> { name = \"INSERT\" }",
        ])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().nth(1).unwrap().starts_with(trace), "{text}");
    assert!(
        text.contains("web") && text.contains("GET /checkout"),
        "{text}"
    );
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        skopos(&["traces", "search", "--url", &url, "{ name = \"nothing\" }"])
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "no traces\n");

    // From the trace to the lines logged with its id.
    let line = serde_json::json!({"streams": [{"stream": {"service_name": "api"}, "values": [
        [now.to_string(), "charge failed", {"trace_id": trace}],
        [(now + 1).to_string(), "unrelated", {"trace_id": "0000000000000000000000000000abcd"}]
    ]}]});
    let r = reqwest::Client::new()
        .post(format!("{}/loki/api/v1/push", server.url))
        .header("Content-Type", "application/json")
        .body(line.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let url = server.url.clone();
    let out =
        tokio::task::spawn_blocking(move || skopos(&["traces", "logs", "--url", &url, trace]))
            .await
            .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.ends_with("charge failed\n"), "{text}");

    // A malformed id and a bad query are the server's 400s, as CLI errors.
    let url = server.url.clone();
    let (bad_id, bad_query) = tokio::task::spawn_blocking(move || {
        (
            skopos(&["traces", "get", "--url", &url, "xyz"]),
            skopos(&["traces", "search", "--url", &url, "{ status = }"]),
        )
    })
    .await
    .unwrap();
    assert!(!bad_id.status.success());
    assert!(String::from_utf8(bad_id.stderr).unwrap().contains("400"));
    assert!(!bad_query.status.success());
    assert!(String::from_utf8(bad_query.stderr).unwrap().contains("400"));
    common::stop(server);
}

/// `SKOPOS_URL` and `SKOPOS_AUTH_TOKEN_FILE` stand in for the flags; a 401
/// says which flag to pass instead of describing the body.
#[test]
fn environment_names_the_server_and_a_401_says_what_to_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let server = common::start(
        &tmp.path().join("data"),
        &["--auth-token-file", token.to_str().unwrap()],
    );
    let run = |env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skopos"));
        c.args(["query", "1+1", "-o", "json"]);
        c.env_remove("SKOPOS_URL")
            .env_remove("SKOPOS_AUTH_TOKEN_FILE");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&[("SKOPOS_URL", &server.url)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("--auth-token-file"),
        "{stderr}"
    );
    assert!(!stderr.contains("not JSON"), "{stderr}");
    let out = run(&[
        ("SKOPOS_URL", &server.url),
        ("SKOPOS_AUTH_TOKEN_FILE", token.to_str().unwrap()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"2\""));
}

/// `--web.enable-lifecycle`: `POST /-/reload` re-reads the config file
/// (scrape pools change, a broken file answers 500 and keeps the running
/// configuration), the shown config hides secrets, `POST /-/quit` ends the
/// process cleanly.
#[test]
fn lifecycle_reload_and_quit_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("skopos.yml");
    let job = |name: &str| {
        format!(
            "scrape_configs:\n  - job_name: {name}\n    scrape_interval: 1h\n    basic_auth: {{username: u, password: hunter2}}\n    static_configs: [{{targets: ['127.0.0.1:1']}}]\n"
        )
    };
    std::fs::write(&file, job("first")).unwrap();
    let mut server = common::start(
        &tmp.path().join("data"),
        &["--config", file.to_str().unwrap(), "--web.enable-lifecycle"],
    );
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| -> serde_json::Value {
        client
            .get(format!("{}{path}", server.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let shown = get("/api/v1/status/config")["data"]["yaml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shown.contains("<secret>") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert_eq!(
        get("/api/v1/status/flags")["data"]["web.enable-lifecycle"],
        "true"
    );
    assert_eq!(
        get("/api/v1/scrape_pools")["data"]["scrapePools"][0],
        "first"
    );

    std::fs::write(&file, job("second")).unwrap();
    let r = client
        .post(format!("{}/-/reload", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        get("/api/v1/scrape_pools")["data"]["scrapePools"][0],
        "second"
    );

    std::fs::write(
        &file,
        "scrape_configs: [{job_name: x, scrape_interval: 5q}]\n",
    )
    .unwrap();
    let r = client
        .post(format!("{}/-/reload", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let text = r.text().unwrap();
    assert!(text.contains("5q"), "{text}");
    assert_eq!(
        get("/api/v1/status/runtimeinfo")["data"]["reloadConfigSuccess"],
        false
    );
    assert_eq!(
        get("/api/v1/scrape_pools")["data"]["scrapePools"][0],
        "second"
    );

    let r = client
        .post(format!("{}/-/quit", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not quit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
