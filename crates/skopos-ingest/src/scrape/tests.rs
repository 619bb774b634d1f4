//! Scraper tests against a tiny HTTP server on 127.0.0.1:0 that writes raw
//! HTTP/1.1 responses, and an in-memory sink.

use std::net::SocketAddr;

use skopos_model::{is_stale_nan, AppendError, AppendOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

struct Resp {
    status: u16,
    content_type: String,
    body: String,
}

struct TestServer {
    addr: SocketAddr,
    resp: Arc<Mutex<Resp>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    async fn start(body: &str) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let resp = Arc::new(Mutex::new(Resp {
            status: 200,
            content_type: "text/plain; version=0.0.4".into(),
            body: body.into(),
        }));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (resp.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (r, q) = (r.clone(), q.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    q.lock().push(String::from_utf8_lossy(&buf).into_owned());
                    let out = {
                        let r = r.lock();
                        format!(
                            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                            r.status,
                            r.content_type,
                            r.body.len(),
                            r.body
                        )
                    };
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestServer {
            addr,
            resp,
            requests,
        }
    }

    fn set(&self, status: u16, body: &str) {
        let mut r = self.resp.lock();
        r.status = status;
        r.body = body.into();
    }
}

#[derive(Default)]
struct MemSink {
    batches: Mutex<Vec<WriteBatch>>,
}

impl SampleSink for MemSink {
    fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome, AppendError> {
        self.batches.lock().push(batch.clone());
        Ok(AppendOutcome::default())
    }
}

impl MemSink {
    fn samples(&self) -> Vec<(Labels, Sample)> {
        self.batches
            .lock()
            .iter()
            .flat_map(|b| {
                b.series
                    .iter()
                    .flat_map(|s| s.samples.iter().map(|x| (s.labels.clone(), *x)))
            })
            .collect()
    }

    fn of(&self, name: &str) -> Vec<(Labels, Sample)> {
        self.samples()
            .into_iter()
            .filter(|(l, _)| l.metric_name() == Some(name))
            .collect()
    }

    async fn wait(&self, what: &str, pred: impl Fn(&[(Labels, Sample)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if pred(&self.samples()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:#?}",
                self.samples()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn has(samples: &[(Labels, Sample)], name: &str, pred: impl Fn(&Labels, f64) -> bool) -> bool {
    samples
        .iter()
        .any(|(l, s)| l.metric_name() == Some(name) && pred(l, s.v))
}

fn config(yaml: &str) -> ScrapeConfigFile {
    ScrapeConfigFile::from_yaml(yaml).unwrap()
}

fn setup() -> (Arc<MemSink>, ScrapeManager) {
    let sink = Arc::new(MemSink::default());
    let mgr = ScrapeManager::with_file_check_interval(sink.clone(), Duration::from_millis(100));
    (sink, mgr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_applies_target_labels_metric_relabel_and_synthetic_series() {
    let srv = TestServer::start(
        "# TYPE foo counter\nfoo_total{instance=\"x\",job=\"inner\"} 1\nbar 2\ndrop_me 3\n",
    )
    .await;
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        r#"
global: {{ scrape_interval: 250ms }}
scrape_configs:
  - job_name: app
    static_configs: [{{ targets: ["{}"], labels: {{ env: dev }} }}]
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: drop_me
        action: drop
"#,
        srv.addr
    )));
    sink.wait("two scrapes", |s| {
        has(s, "up", |_, _| true)
            && s.iter()
                .filter(|(l, _)| l.metric_name() == Some("up"))
                .count()
                >= 2
    })
    .await;
    let addr = srv.addr.to_string();
    let foo = sink.of("foo_total");
    assert_eq!(
        foo[0].0,
        Labels::from_pairs([
            ("__name__", "foo_total"),
            ("env", "dev"),
            ("exported_instance", "x"),
            ("exported_job", "inner"),
            ("instance", addr.as_str()),
            ("job", "app"),
        ])
    );
    assert!(sink.of("drop_me").is_empty());
    let up = sink.of("up");
    assert_eq!(
        up[0].0,
        Labels::from_pairs([
            ("__name__", "up"),
            ("env", "dev"),
            ("instance", addr.as_str()),
            ("job", "app")
        ])
    );
    assert_eq!(up[0].1.v, 1.0);
    // Aligned timestamps: a whole number of intervals apart (one, unless the
    // machine is so loaded that a slot was missed), same as the samples'.
    let gap = up[1].1.t - up[0].1.t;
    assert!(gap > 0 && gap % 250 == 0, "{gap}");
    assert_eq!(foo[0].1.t, up[0].1.t);
    assert_eq!(sink.of("scrape_samples_scraped")[0].1.v, 3.0);
    assert_eq!(sink.of("scrape_samples_post_metric_relabeling")[0].1.v, 2.0);
    let added = sink.of("scrape_series_added");
    assert_eq!((added[0].1.v, added[1].1.v), (2.0, 0.0));
    let dur = sink.of("scrape_duration_seconds")[0].1.v;
    assert!(dur > 0.0 && dur < 5.0, "{dur}");
    let req = srv.requests.lock()[0].clone();
    assert!(req.starts_with("GET /metrics HTTP/1.1"), "{req}");
    assert!(
        req.to_ascii_lowercase()
            .contains("accept: application/openmetrics-text"),
        "{req}"
    );
    assert!(
        req.to_ascii_lowercase()
            .contains("x-prometheus-scrape-timeout-seconds: 0.25"),
        "{req}"
    );
    let t = mgr.targets();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].health, Health::Up);
    assert_eq!(t[0].scrape_url, format!("http://{addr}/metrics"));
    assert_eq!(
        t[0].discovered_labels.get("__address__"),
        Some(addr.as_str())
    );
    assert_eq!(t[0].labels.get("job"), Some("app"));
    mgr.stop().await;
    assert!(mgr.targets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honor_labels_keeps_scraped_values() {
    let srv = TestServer::start("foo{instance=\"x\",job=\"inner\"} 1\n").await;
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        "global: {{ scrape_interval: 250ms }}\nscrape_configs:\n  - job_name: app\n    honor_labels: true\n    static_configs: [{{ targets: [\"{}\"], labels: {{ env: dev }} }}]\n",
        srv.addr
    )));
    sink.wait("a scrape", |s| has(s, "foo", |_, _| true)).await;
    assert_eq!(
        sink.of("foo")[0].0,
        Labels::from_pairs([
            ("__name__", "foo"),
            ("env", "dev"),
            ("instance", "x"),
            ("job", "inner")
        ])
    );
    mgr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_on_disappearing_series_failed_scrape_and_removed_target() {
    let srv = TestServer::start("a 1\nb 2\n").await;
    let (sink, mgr) = setup();
    let yaml = format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 250ms\n    scrape_timeout: 250ms\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
        srv.addr
    );
    mgr.apply(&config(&yaml));
    sink.wait("b", |s| has(s, "b", |_, v| v == 2.0)).await;

    // b disappears: it gets a staleness marker, a does not.
    srv.set(200, "a 1\n");
    sink.wait("stale b", |s| has(s, "b", |_, v| is_stale_nan(v)))
        .await;
    assert!(!has(&sink.samples(), "a", |_, v| is_stale_nan(v)));

    // The target fails: a goes stale, up is 0 (not stale), the error is shown.
    srv.set(500, "oops");
    sink.wait("up 0", |s| has(s, "up", |_, v| v == 0.0)).await;
    sink.wait("stale a", |s| has(s, "a", |_, v| is_stale_nan(v)))
        .await;
    assert!(!has(&sink.samples(), "up", |_, v| is_stale_nan(v)));
    let st = &mgr.targets()[0];
    assert_eq!(st.health, Health::Down);
    assert!(
        st.last_error.contains("HTTP status 500"),
        "{}",
        st.last_error
    );

    // Recovers, then the target is removed from the config: everything,
    // including up, goes stale.
    srv.set(200, "a 5\n");
    sink.wait("a back", |s| has(s, "a", |_, v| v == 5.0)).await;
    mgr.apply(&config("scrape_configs: []"));
    sink.wait("stale up", |s| has(s, "up", |_, v| is_stale_nan(v)))
        .await;
    let a = sink.of("a");
    assert!(is_stale_nan(a.last().unwrap().1.v), "{a:?}");
    for name in REPORT_NAMES {
        assert!(is_stale_nan(sink.of(name).last().unwrap().1.v), "{name}");
    }
    mgr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_with_explicit_timestamps_get_no_staleness_markers() {
    let srv = TestServer::start("a 1\nb 2 1000\n").await;
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 250ms\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
        srv.addr
    )));
    sink.wait("b", |s| has(s, "b", |_, v| v == 2.0)).await;
    assert_eq!(sink.of("b")[0].1.t, 1000);
    srv.set(200, "c 3\n");
    sink.wait("stale a", |s| has(s, "a", |_, v| is_stale_nan(v)))
        .await;
    mgr.stop().await;
    assert!(!has(&sink.samples(), "b", |_, v| is_stale_nan(v)));
    // c is tracked and went stale when the target stopped.
    assert!(is_stale_nan(sink.of("c").last().unwrap().1.v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_limit_fails_the_scrape() {
    let srv = TestServer::start("a 1\nb 2\n").await;
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 250ms\n    sample_limit: 1\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
        srv.addr
    )));
    sink.wait("up 0", |s| has(s, "up", |_, v| v == 0.0)).await;
    assert!(sink.of("a").is_empty());
    let err = mgr.targets()[0].last_error.clone();
    assert!(err.contains("sample_limit exceeded: 2 samples"), "{err}");
    mgr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_content_type_and_parse_errors() {
    let srv = TestServer::start("m 1 1.5\n# EOF\n").await;
    srv.resp.lock().content_type =
        "application/openmetrics-text; version=1.0.0; charset=utf-8".into();
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 250ms\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
        srv.addr
    )));
    // OpenMetrics timestamps are seconds and honoured by default.
    sink.wait("m", |s| has(s, "m", |_, _| true)).await;
    assert_eq!(sink.of("m")[0].1.t, 1500);
    srv.set(200, "m 1\n");
    sink.wait("up 0", |s| has(s, "up", |_, v| v == 0.0)).await;
    let err = mgr.targets()[0].last_error.clone();
    assert!(err.contains("# EOF"), "{err}");
    mgr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_is_reread_when_the_file_changes() {
    let one = TestServer::start("from_one 1\n").await;
    let two = TestServer::start("from_two 2\n").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    let write = |addr: SocketAddr| {
        std::fs::write(
            &file,
            format!(r#"[{{"targets": ["{addr}"], "labels": {{"team": "a"}}}}]"#),
        )
        .unwrap();
        // Make sure the modification time moves even on coarse clocks.
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(rand_secs()))
            .unwrap();
    };
    write(one.addr);
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        "scrape_configs:\n  - job_name: fsd\n    scrape_interval: 250ms\n    file_sd_configs:\n      - files: ['{}/*.json']\n",
        dir.path().display()
    )));
    sink.wait("from_one", |s| has(s, "from_one", |_, _| true))
        .await;
    let l = &sink.of("from_one")[0].0;
    assert_eq!(l.get("team"), Some("a"));
    assert_eq!(l.get("job"), Some("fsd"));
    assert!(l.get("__meta_filepath").is_none());
    assert_eq!(
        mgr.targets()[0].discovered_labels.get("__meta_filepath"),
        Some(file.display().to_string().as_str())
    );

    write(two.addr);
    sink.wait("from_two", |s| has(s, "from_two", |_, _| true))
        .await;
    let one_addr = one.addr.to_string();
    sink.wait("stale up of the old target", |s| {
        has(s, "up", |l, v| {
            l.get("instance") == Some(one_addr.as_str()) && is_stale_nan(v)
        })
    })
    .await;
    assert!(is_stale_nan(sink.of("from_one").last().unwrap().1.v));
    assert_eq!(mgr.targets().len(), 1);
    mgr.stop().await;
}

/// A changing offset so repeated writes never share a modification time.
fn rand_secs() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfiguring_a_job_keeps_targets_without_staleness() {
    let srv = TestServer::start("a 1\n").await;
    let (sink, mgr) = setup();
    let yaml = |limit: usize| {
        format!(
            "scrape_configs:\n  - job_name: app\n    scrape_interval: 250ms\n    sample_limit: {limit}\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
            srv.addr
        )
    };
    mgr.apply(&config(&yaml(10)));
    sink.wait("a", |s| has(s, "a", |_, _| true)).await;
    mgr.apply(&config(&yaml(20)));
    let n = sink.of("a").len();
    sink.wait("more a", |s| {
        s.iter()
            .filter(|(l, _)| l.metric_name() == Some("a"))
            .count()
            >= n + 2
    })
    .await;
    assert!(!has(&sink.samples(), "a", |_, v| is_stale_nan(v)));
    assert!(!has(&sink.samples(), "up", |_, v| is_stale_nan(v)));
    mgr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_and_bearer_tokens() {
    use std::io::Write;
    // A raw server that always answers with a gzip-encoded body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"zipped 7\n").unwrap();
        let body = gz.finish().unwrap();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            *seen2.lock() = String::from_utf8_lossy(&buf[..n]).into_owned();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        }
    });
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        "scrape_configs:\n  - job_name: z\n    scrape_interval: 250ms\n    bearer_token: tok123\n    static_configs: [{{ targets: [\"{addr}\"] }}]\n"
    )));
    sink.wait("zipped", |s| has(s, "zipped", |_, v| v == 7.0))
        .await;
    let req = seen.lock().to_ascii_lowercase();
    assert!(req.contains("accept-encoding: gzip"), "{req}");
    assert!(req.contains("authorization: bearer tok123"), "{req}");
    mgr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_header_and_ignored_prometheus_options() {
    let srv = TestServer::start("a 1\n").await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("cred");
    std::fs::write(&cred, "abc\n").unwrap();
    let f = config(&format!(
        r#"
scrape_configs:
  - job_name: auth
    scrape_interval: 250ms
    authorization: {{ type: Token, credentials_file: "{}" }}
    tls_config: {{ insecure_skip_verify: true, cert_file: /x.pem }}
    enable_compression: false
    kubernetes_sd_configs: [ {{ role: pod }} ]
    target_limit: 10
    static_configs: [ {{ targets: ["{}"] }} ]
"#,
        cred.display(),
        srv.addr
    ));
    let w = f.warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w.iter()
            .any(|m| m.contains("`kubernetes_sd_configs` is not supported")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("tls_config `cert_file`")),
        "{w:?}"
    );
    let (sink, mgr) = setup();
    mgr.apply(&f);
    sink.wait("a", |s| has(s, "a", |_, _| true)).await;
    let req = srv.requests.lock()[0].to_ascii_lowercase();
    assert!(req.contains("authorization: token abc\r\n"), "{req}");
    assert!(!req.contains("accept-encoding: gzip"), "{req}");
    mgr.stop().await;
}

#[test]
fn apply_from_outside_the_runtime_uses_the_managers_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let srv = rt.block_on(TestServer::start("a 1\n"));
    let sink = Arc::new(MemSink::default());
    let mgr = rt.block_on(async { ScrapeManager::new(sink.clone()) });
    // This thread is not a runtime thread.
    mgr.apply(&config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 250ms\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
        srv.addr
    )));
    rt.block_on(sink.wait("a", |s| has(s, "a", |_, _| true)));
    rt.block_on(mgr.stop());
}

#[test]
fn file_sd_keeps_good_content_and_retries_broken_files_only_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yml");
    let touch = |content: &str| {
        std::fs::write(&file, content).unwrap();
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(rand_secs()))
            .unwrap();
    };
    let cfgs = vec![FileSdConfig {
        files: vec![format!("{}/*.yml", dir.path().display())],
        refresh_interval: Duration::from_secs(300),
    }];
    let mut cache = FileSdCache::new();
    touch("- targets: ['a:1']\n");
    assert_eq!(cache.refresh(&cfgs, "j")[0].targets, vec!["a:1"]);
    // Broken: the last good content stays.
    touch("- targets: [unclosed\n");
    assert_eq!(cache.refresh(&cfgs, "j")[0].targets, vec!["a:1"]);
    assert!(cache.failed.contains_key(&file));
    // Fixed: picked up on the next check.
    touch("- targets: ['b:2']\n  labels: {x: y}\n");
    let g = cache.refresh(&cfgs, "j");
    assert_eq!(g[0].targets, vec!["b:2"]);
    assert_eq!(g[0].labels["x"], "y");
    assert!(cache.failed.is_empty());
    // Deleted: its targets go.
    std::fs::remove_file(&file).unwrap();
    assert!(cache.refresh(&cfgs, "j").is_empty());
}

#[test]
fn manager_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ScrapeManager>();
}

#[test]
fn config_file_parses_with_prometheus_defaults() {
    let f = config(
        r#"
global:
  scrape_interval: 15s
  external_labels: { region: eu }
rule_files: [ "x.yml" ]
scrape_configs:
  - job_name: a
    static_configs: [ { targets: [ "h:1" ] } ]
  - job_name: b
    scrape_interval: 1m30s
    scrape_timeout: 5s
    metrics_path: /m
    scheme: https
    honor_labels: true
    honor_timestamps: false
    params: { module: [ http_2xx ] }
    bearer_token: s3cret
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
    file_sd_configs:
      - files: [ "/etc/sd/*.yml" ]
"#,
    );
    assert_eq!(f.global.scrape_interval, Duration::from_secs(15));
    assert_eq!(f.global.scrape_timeout, Duration::from_secs(10));
    assert_eq!(f.global.external_labels["region"], "eu");
    let a = &f.scrape_configs[0];
    assert_eq!(
        (a.metrics_path.as_str(), a.scheme.as_str()),
        ("/metrics", "http")
    );
    assert!(!a.honor_labels && a.honor_timestamps);
    let ra = JobConfig::resolve(a, &f.global);
    assert_eq!(
        (ra.interval, ra.timeout),
        (Duration::from_secs(15), Duration::from_secs(10))
    );
    let b = &f.scrape_configs[1];
    assert_eq!(b.scrape_interval, Some(Duration::from_secs(90)));
    assert_eq!(
        b.file_sd_configs[0].refresh_interval,
        Duration::from_secs(300)
    );
    assert_eq!(b.params["module"], vec!["http_2xx"]);
    // Secrets never reach logs through Debug.
    let dbg = format!("{b:?}");
    assert!(!dbg.contains("s3cret") && dbg.contains("<secret>"), "{dbg}");
}

#[test]
fn config_errors_name_the_problem() {
    let err = |y: &str| ScrapeConfigFile::from_yaml(y).unwrap_err();
    assert!(err("scrape_configs: [{job_name: a}, {job_name: a}]")
        .contains("multiple scrape configs with job name \"a\""));
    assert!(
        err("scrape_configs: [{job_name: a, scrape_interval: 5s, scrape_timeout: 10s}]")
            .contains("greater than scrape_interval")
    );
    assert!(
        err("scrape_configs: [{job_name: a, scrape_interval: soon}]")
            .contains("scrape_configs[0].scrape_interval: not a valid duration string: \"soon\"")
    );
    assert!(err("scrape_configs: [{job_name: a, metrics_pth: /x}]")
        .contains("unknown field `metrics_pth`"));
    assert!(err("scrape_configs: [{job_name: a, scheme: ftp}]")
        .contains("scheme must be http or https"));
    assert!(
        err("scrape_configs: [{job_name: a, relabel_configs: [{action: nope}]}]")
            .contains("unknown relabel action")
    );
    assert!(
        err("scrape_configs: [{job_name: a, file_sd_configs: [{files: ['/x/[']}]}]")
            .contains("invalid file_sd_configs pattern")
    );
    assert!(
        err("scrape_configs: [{job_name: a, bearer_token: x, basic_auth: {username: u}}]")
            .contains("at most one of basic_auth, authorization and bearer_token")
    );
    assert!(
        err("scrape_configs: [{job_name: a, tls_config: {ca_file: /nonexistent/ca.pem}}]")
            .contains("cannot read tls_config.ca_file")
    );
    assert!(err(
        "scrape_configs: [{job_name: a, authorization: {credentials: x, credentials_file: /y}}]"
    )
    .contains("both credentials and credentials_file"));
}

#[test]
fn timeout_defaults_to_global_capped_by_interval() {
    let f = config(
        "global: { scrape_interval: 5s }\nscrape_configs: [{job_name: a, scrape_interval: 2s}]",
    );
    assert_eq!(
        JobConfig::resolve(&f.scrape_configs[0], &f.global).timeout,
        Duration::from_secs(2)
    );
}

#[test]
fn target_labels_follow_prometheus_populate_rules() {
    let f = config(
        r#"
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: { module: [http_2xx], extra: [a, b] }
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: exporter:9115
      - source_labels: [__meta_drop]
        regex: yes
        action: drop
"#,
    );
    let cfg = JobConfig::resolve(&f.scrape_configs[0], &f.global);
    let group: BTreeMap<String, String> = [
        ("__meta_x".to_string(), "1".to_string()),
        ("team".into(), "t".into()),
    ]
    .into();
    let t = populate("example.com", &group, &cfg).unwrap().unwrap();
    assert_eq!(
        t.url,
        "http://exporter:9115/probe?extra=a&extra=b&module=http_2xx&target=example.com"
    );
    assert_eq!(
        t.labels,
        Labels::from_pairs([
            ("instance", "example.com"),
            ("job", "blackbox"),
            ("team", "t")
        ])
    );
    assert_eq!(t.discovered.get("__meta_x"), Some("1"));
    assert_eq!(t.discovered.get("__scrape_interval__"), Some("1m"));
    assert_eq!(t.discovered.get("__param_module"), Some("http_2xx"));
    let dropped: BTreeMap<String, String> = [("__meta_drop".to_string(), "yes".to_string())].into();
    assert_eq!(populate("h:1", &dropped, &cfg).unwrap(), None);
    // instance defaults to the address.
    let f = config("scrape_configs: [{job_name: j}]");
    let cfg = JobConfig::resolve(&f.scrape_configs[0], &f.global);
    let t = populate("h:9", &BTreeMap::new(), &cfg).unwrap().unwrap();
    assert_eq!(
        t.labels,
        Labels::from_pairs([("instance", "h:9"), ("job", "j")])
    );
}

#[test]
fn interval_and_timeout_can_be_relabelled_per_target() {
    let f = config(
        r#"
scrape_configs:
  - job_name: j
    scrape_interval: 10s
    relabel_configs:
      - source_labels: [slow]
        regex: "yes"
        target_label: __scrape_interval__
        replacement: 1m
      - source_labels: [slow]
        regex: "yes"
        target_label: __scrape_timeout__
        replacement: 30s
      - source_labels: [broken]
        regex: "yes"
        target_label: __scrape_timeout__
        replacement: 20s
"#,
    );
    let cfg = JobConfig::resolve(&f.scrape_configs[0], &f.global);
    let group =
        |k: &str| -> BTreeMap<String, String> { [(k.to_string(), "yes".to_string())].into() };
    let t = populate("h:1", &BTreeMap::new(), &cfg).unwrap().unwrap();
    assert_eq!(
        (t.interval, t.timeout),
        (Duration::from_secs(10), Duration::from_secs(10))
    );
    let t = populate("h:1", &group("slow"), &cfg).unwrap().unwrap();
    assert_eq!(
        (t.interval, t.timeout),
        (Duration::from_secs(60), Duration::from_secs(30))
    );
    let e = populate("h:1", &group("broken"), &cfg).unwrap_err();
    assert!(
        e.contains("scrape timeout 20s greater than scrape interval 10s"),
        "{e}"
    );
}

#[test]
fn label_and_body_limits() {
    let f = config(
        "scrape_configs: [{job_name: a, label_limit: 2, label_name_length_limit: 8, label_value_length_limit: 4, body_size_limit: 10MB}]",
    );
    let sc = &f.scrape_configs[0];
    assert_eq!(sc.body_size_limit, Some(10 << 20));
    let ok = Labels::from_pairs([("__name__", "m"), ("abc", "1234")]);
    assert!(check_label_limits(&ok, sc).is_ok());
    let e = check_label_limits(
        &Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")]),
        sc,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "label_limit exceeded (metric: m, number of labels: 3, limit: 2)"
    );
    // As in Prometheus, `__name__` and the metric name count too.
    let long = Labels::from_pairs([("__name__", "m"), ("abcdefghi", "1")]);
    let e = check_label_limits(&long, sc).unwrap_err();
    assert!(
        e.starts_with(
            "label_name_length_limit exceeded (metric: m, label name: abcdefghi, length: 9"
        ),
        "{e}"
    );
    assert!(check_label_limits(&Labels::from_pairs([("__name__", "metric")]), sc).is_err());
    let e = check_label_limits(&Labels::from_pairs([("__name__", "m"), ("a", "12345")]), sc)
        .unwrap_err();
    assert!(e.starts_with("label_value_length_limit exceeded"), "{e}");
    assert_eq!(parse_size("512KB"), Ok(512 << 10));
    assert_eq!(parse_size("0"), Ok(0));
    assert!(parse_size("5 parsecs")
        .unwrap_err()
        .contains("invalid size \"5 parsecs\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_limit_fails_the_scrape() {
    let srv = TestServer::start(&"m 1\n".repeat(1000)).await;
    let (sink, mgr) = setup();
    mgr.apply(&config(&format!(
        "scrape_configs:\n  - job_name: app\n    scrape_interval: 250ms\n    body_size_limit: 1KB\n    static_configs: [{{ targets: [\"{}\"] }}]\n",
        srv.addr
    )));
    sink.wait("up 0", |s| has(s, "up", |_, v| v == 0.0)).await;
    let err = mgr.targets()[0].last_error.clone();
    assert!(err.contains("body size limit exceeded"), "{err}");
    mgr.stop().await;
}

#[test]
fn conflicting_target_labels_are_renamed_exported() {
    let scraped = Labels::from_pairs([("__name__", "m"), ("job", "a"), ("exported_job", "b")]);
    let target = Labels::from_pairs([("job", "t"), ("instance", "i")]);
    assert_eq!(
        merge_target_labels(&scraped, &target, false),
        Labels::from_pairs([
            ("__name__", "m"),
            ("exported_exported_job", "a"),
            ("exported_job", "b"),
            ("instance", "i"),
            ("job", "t"),
        ])
    );
    assert_eq!(
        merge_target_labels(&scraped, &target, true),
        Labels::from_pairs([
            ("__name__", "m"),
            ("exported_job", "b"),
            ("instance", "i"),
            ("job", "a")
        ])
    );
}

#[test]
fn scrape_slots_are_aligned() {
    assert_eq!(next_slot(1000, 100, 30), 1030);
    assert_eq!(next_slot(1030, 100, 30), 1030);
    assert_eq!(next_slot(1031, 100, 30), 1130);
    assert_eq!(next_slot(5, 100, 30), 30);
    let o = offset_ms("t", 15_000);
    assert!((0..15_000).contains(&o));
    assert_eq!(o, offset_ms("t", 15_000));
}
