//! The server binary end to end: HTTPS with a certificate made here, JSON
//! logs on request, a bearer token that never shows up in the logs, and a
//! clean exit on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

#[tokio::test]
async fn https_json_logs_token_and_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed by scripts/test.sh");
    assert!(status.success());
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "tok-93a7f1\n").unwrap();

    let port = free_port();
    let grpc_port = free_port();
    let log_path = tmp.path().join("server.log");
    let mut child = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_skopos"))
            .args(["--log-format", "json", "server", "--data-dir"])
            .arg(tmp.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--otlp-http-listen", "off"])
            .args(["--otlp-grpc-listen", &format!("127.0.0.1:{grpc_port}")])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--auth-token-file")
            .arg(&token_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/-/healthy");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&url).bearer_auth("tok-93a7f1").send().await {
            assert_eq!(r.status().as_u16(), 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not come up over HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let guarded = format!("https://127.0.0.1:{port}/api/v1/labels");
    let r = client.get(&guarded).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token, no entry");
    // Probes need no token.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "health probes are open");
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/-/healthy"))
            .await
            .is_err(),
        "plain HTTP must not be served on a TLS port"
    );

    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM should shut down cleanly, got {status}"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains("tok-93a7f1"),
        "the token must never be logged"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(lines.iter().any(|l| l["level"] == "INFO"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[tokio::test]
async fn sighup_reloads_scrape_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = tmp.path().join("skopos.yml");
    std::fs::write(&cfg, "self_scrape_interval: \"off\"\n").unwrap();
    let data = tmp.path().join("data");
    let mut child = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_skopos"))
            .args(["server", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--otlp-http-listen", "off", "--otlp-grpc-listen", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Add a job scraping skopos itself, then ask for a reload.
    std::fs::write(
        &cfg,
        format!(
            "self_scrape_interval: \"off\"\nscrape_configs:\n  - job_name: reloaded\n    scrape_interval: 200ms\n    scrape_timeout: 200ms\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ),
    )
    .unwrap();
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGHUP);
    }
    let url = format!("http://127.0.0.1:{port}/api/v1/series?match[]=up{{job=\"reloaded\"}}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if v["data"].as_array().is_some_and(|a| a.len() == 1) {
            assert_eq!(v["data"][0]["instance"], format!("127.0.0.1:{port}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reloaded job never scraped: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    assert!(child.0.wait().unwrap().success());
}
