//! Peer: the real `promtool` 2.42 (Debian `prometheus`, installed by
//! `scripts/test.sh`). `promtool check config` and `skopos check config`
//! agree on Prometheus config files, accepting and refusing the same ones;
//! `promtool check metrics` finds nothing to lint in skopos' `/metrics`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn promtool() -> Command {
    let c = Command::new("promtool");
    // Fails rather than skips: scripts/test.sh installs the peer.
    assert!(
        Command::new("promtool").arg("--version").output().is_ok(),
        "promtool is not installed (Debian package prometheus; scripts/test.sh installs it)"
    );
    c
}

const JOB: &str =
    "scrape_configs:\n  - job_name: node\n    static_configs: [{targets: ['127.0.0.1:9100']}]\n";

#[test]
fn check_config_agrees_with_promtool() {
    let cases: Vec<(&str, String)> = vec![
        ("plain job", JOB.to_string()),
        (
            "global 15s",
            format!("global: {{scrape_interval: 15s, scrape_timeout: 10s}}\n{JOB}"),
        ),
        (
            "1h30m",
            format!("global: {{scrape_interval: 1h30m}}\n{JOB}"),
        ),
        (
            "1d and 1w",
            "global: {scrape_interval: 1d, evaluation_interval: 1w}\n".to_string(),
        ),
        (
            "500ms",
            format!("global: {{scrape_interval: 500ms, scrape_timeout: 100ms}}\n{JOB}"),
        ),
        (
            "external labels",
            format!("global: {{external_labels: {{region: eu}}}}\n{JOB}"),
        ),
        ("1min", format!("global: {{scrape_interval: 1min}}\n{JOB}")),
        (
            "2months",
            format!("global: {{scrape_interval: 2months}}\n{JOB}"),
        ),
        ("1.5s", format!("global: {{scrape_interval: 1.5s}}\n{JOB}")),
        (
            "5q in a job",
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5q\n".to_string(),
        ),
        (
            "timeout over interval",
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n"
                .to_string(),
        ),
        (
            "duplicate jobs",
            "scrape_configs:\n  - job_name: a\n  - job_name: a\n".to_string(),
        ),
        (
            "unknown field",
            "scrape_configs:\n  - job_name: a\n    metrics_pth: /x\n".to_string(),
        ),
        (
            "units out of order",
            format!("global: {{scrape_interval: 30s1m}}\n{JOB}"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (mut accepted, mut refused) = (0, 0);
    let mut disagree = Vec::new();
    for (i, (name, text)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.yml"));
        std::fs::write(&path, text).unwrap();
        let prom = promtool()
            .args(["check", "config", "--syntax-only"])
            .arg(&path)
            .output()
            .unwrap();
        let sk = Command::new(env!("CARGO_BIN_EXE_skopos"))
            .args(["check", "config"])
            .arg(&path)
            .output()
            .unwrap();
        if prom.status.success() {
            accepted += 1;
        } else {
            refused += 1;
        }
        if prom.status.success() != sk.status.success() {
            disagree.push(format!(
                "{name}: promtool {} ({}), skopos {} ({})",
                prom.status,
                String::from_utf8_lossy(&prom.stdout).trim(),
                sk.status,
                String::from_utf8_lossy(&sk.stdout).trim()
            ));
        }
    }
    // Guards against agreement that proves nothing.
    assert!(
        accepted >= 5 && refused >= 5,
        "accepted {accepted}, refused {refused}"
    );
    assert!(
        disagree.is_empty(),
        "skopos and promtool disagree:\n{}",
        disagree.join("\n")
    );
}

#[test]
fn own_metrics_pass_promtool_check_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::start(&tmp.path().join("data"), &[]);
    // Some traffic first, so the request counters and histograms exist.
    for path in ["/-/healthy", "/api/v1/labels", "/metrics"] {
        reqwest::blocking::get(format!("{}{path}", server.url)).unwrap();
    }
    let text = reqwest::blocking::get(format!("{}/metrics", server.url))
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("skopos_http_requests_total"), "{text}");
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && lint.trim().is_empty(),
        "promtool check metrics: {lint}"
    );
}
