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
