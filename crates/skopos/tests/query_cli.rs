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
