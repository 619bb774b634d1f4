//! Differential tests against a real Prometheus (Debian package
//! `prometheus`), started on a free loopback port and stopped afterwards.
//!
//! One Prometheus run checks three things at once:
//! - it scrapes an exposition served by this test, and so does skopos'
//!   `ScrapeManager`; the series Prometheus stores (received back through
//!   its remote write) must equal the ones skopos' scraper appends, target
//!   labels, `exported_` renames and synthetic series included;
//! - `remote_write::decode` reads what a real Prometheus sends;
//! - a body made by `remote_write::encode` is accepted by Prometheus' remote
//!   write receiver and queryable with the same value.
//!
//! Known, deliberate difference: skopos normalises `le`/`quantile` label
//! values (`le="1"` → `le="1.0"`) as Prometheus 3 does; Prometheus 2.x does
//! not, so those two labels are compared as numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

mod common;
use skopos_ingest::remote_write;
use skopos_ingest::scrape::{ScrapeConfigFile, ScrapeManager};
use skopos_model::{AppendError, AppendOutcome, Labels, Sample, SampleSink, WriteBatch};

const EXPOSITION: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027
http_requests_total{method="get",code="400",path="C:\\dir \"x\"\nnext"} 3
# TYPE temperature gauge
temperature{room="a"} -3.5
temperature{room="b"} +Inf
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le="0.05"} 1
rpc_seconds_bucket{le="1"} 5
rpc_seconds_bucket{le="+Inf"} 7
rpc_seconds_sum 8.25
rpc_seconds_count 7
# TYPE lat summary
lat{quantile="0.5"} 0.2
lat{quantile="1"} 0.9
lat_sum 3
lat_count 10
untyped_thing{instance="exported",job="inner"} 42
"#;

const OPENMETRICS: &str = r#"# TYPE om_requests counter
# HELP om_requests Requests with \"quotes\".
om_requests_total{code="200"} 17.0 # {trace_id="abc"} 1.0
om_requests_created{code="200"} 1520430000.123
# TYPE om_size_bytes gauge
# UNIT om_size_bytes bytes
om_size_bytes 42
# TYPE om_latency histogram
om_latency_bucket{le="0.5"} 1
om_latency_bucket{le="+Inf"} 2
om_latency_count 2
om_latency_sum 0.75
om_latency_created 1520430000
# TYPE om_build info
om_build_info{version="1.2.3"} 1
# TYPE om_state stateset
om_state{om_state="a"} 1
om_state{om_state="b"} 0
# EOF
"#;

/// Exercises target relabelling (every action Prometheus 2.42 has) and
/// metric relabelling (which must not touch the synthetic series);
/// `TEXT_TARGET` and `OM_TARGET` are replaced by the two targets.
const SCRAPE_CONFIG: &str = r#"
global: { scrape_interval: 1s }
scrape_configs:
  - job_name: diff
    static_configs:
      - targets: ["TEXT_TARGET", "OM_TARGET"]
        labels: { team: "Core", __meta_zone: "eu-1", tmp_x: "1" }
    relabel_configs:
      - source_labels: [__address__]
        modulus: 7
        target_label: shard
        action: hashmod
      - source_labels: [__meta_zone]
        regex: '(\w+)-(\d+)'
        target_label: region
        replacement: 'r-$1${2}x'
      - source_labels: [team]
        target_label: team_lc
        action: lowercase
      - source_labels: [team]
        target_label: team_uc
        action: uppercase
      - regex: '__meta_(zone)'
        replacement: 'meta_$1'
        action: labelmap
      - regex: 'tmp_.*'
        action: labeldrop
      - source_labels: [team_lc]
        target_label: team_uc
        action: dropequal
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'temperature'
        action: drop
      - source_labels: [method, code]
        separator: '@'
        target_label: mc
      - regex: 'path'
        action: labeldrop
      - source_labels: [__name__]
        regex: 'lat.*|om_.*|http.*|rpc.*|untyped.*'
        action: keep
"#;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `le` and `quantile` compared as numbers (see the module doc).
fn canonical(l: &Labels) -> Labels {
    Labels::from_pairs(l.iter().map(|x| {
        let v = if x.name == "le" || x.name == "quantile" {
            let f: f64 = x.value.parse().unwrap_or_else(|_| {
                if x.value == "+Inf" {
                    f64::INFINITY
                } else {
                    f64::NAN
                }
            });
            format!("{f:?}")
        } else {
            x.value.clone()
        };
        (x.name.clone(), v)
    }))
}

#[derive(Default)]
struct MemSink(Mutex<Vec<WriteBatch>>);

impl SampleSink for MemSink {
    fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome, AppendError> {
        self.0.lock().push(batch.clone());
        Ok(AppendOutcome::default())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrape_and_remote_write_agree_with_skopos() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("the `prometheus` binary (Debian package prometheus) is not installed; scripts/test.sh installs it");
    }
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let addr = common::serve(bodies.clone(), EXPOSITION).await;
    let om_addr = common::serve_as(
        bodies.clone(),
        OPENMETRICS,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    .await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    // One scrape configuration, read by both Prometheus and skopos.
    let scrape_yaml = SCRAPE_CONFIG
        .replace("TEXT_TARGET", &addr.to_string())
        .replace("OM_TARGET", &om_addr.to_string());
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "{scrape_yaml}remote_write:\n  - url: http://{addr}/receive\n    queue_config: {{ batch_send_deadline: 1s }}\n"
        ),
    )
    .unwrap();
    let _prom = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // skopos' scraper on the same target.
    let sink = Arc::new(MemSink::default());
    let mgr = ScrapeManager::new(sink.clone());
    mgr.apply(&ScrapeConfigFile::from_yaml(&scrape_yaml).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    // One scrape of each target (the bodies never change, so the union of
    // all batches is the series set).
    // Series → first value.
    let ours: BTreeMap<Labels, f64> = loop {
        let mut all = BTreeMap::new();
        for b in sink.0.lock().iter() {
            for s in &b.series {
                all.entry(canonical(&s.labels)).or_insert(s.samples[0].v);
            }
        }
        let ups = all.keys().filter(|l| l.metric_name() == Some("up")).count();
        if ups == 2 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "skopos did not scrape both targets"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    mgr.stop().await;
    let synthetic = [
        "scrape_duration_seconds",
        "scrape_samples_post_metric_relabeling",
        "scrape_samples_scraped",
        "scrape_series_added",
        "up",
    ];

    // Wait until Prometheus has remote-written one full scrape to us.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (theirs, _) = loop {
        let mut theirs = BTreeMap::new();
        let mut names = BTreeSet::new();
        for body in bodies.lock().iter() {
            let d = remote_write::decode(body, 64 << 20)
                .expect("a real Prometheus remote write body decodes");
            for s in d.batch.series {
                if s.labels.get("job") != Some("diff") {
                    continue;
                }
                let name = s.labels.metric_name().unwrap().to_string();
                if synthetic.contains(&name.as_str()) {
                    names.insert(name);
                }
                theirs.entry(canonical(&s.labels)).or_insert(s.samples[0].v);
            }
        }
        let ups = theirs
            .keys()
            .filter(|l| l.metric_name() == Some("up"))
            .count();
        if theirs.len() >= ours.len() && names.len() == synthetic.len() && ups == 2 {
            break (theirs, names);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not remote-write a full scrape in time: {theirs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    // Same values too, synthetic series included (but for the duration).
    for (l, v) in &theirs {
        if l.metric_name() != Some("scrape_duration_seconds") {
            assert_eq!(v.to_bits(), ours[l].to_bits(), "value of {l}");
        }
    }
    let ours: BTreeSet<Labels> = ours.into_keys().collect();
    // The relabelling really happened (on both sides, as they are equal).
    let up = ours.iter().find(|l| l.metric_name() == Some("up")).unwrap();
    assert_eq!(up.get("region"), Some("r-eu1x"));
    assert_eq!(up.get("meta_zone"), Some("eu-1"));
    assert_eq!(
        (up.get("team_lc"), up.get("team_uc")),
        (Some("core"), Some("CORE"))
    );
    assert!(up.get("shard").is_some() && up.get("tmp_x").is_none());
    assert!(ours
        .iter()
        .all(|l| l.metric_name() != Some("temperature") && l.get("path").is_none()));
    assert!(ours.iter().any(|l| l.get("mc") == Some("post@200")));
    assert!(ours
        .iter()
        .any(|l| l.metric_name() == Some("om_requests_created")));

    // Our encoder, their receiver.
    let t = now_ms();
    let mut batch = WriteBatch::default();
    batch.push(
        Labels::from_pairs([("__name__", "skopos_rw_check"), ("k", "v \"quoted\"")]),
        Sample::new(t, 12.5),
    );
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://127.0.0.1:{port}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(remote_write::encode(&batch))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let text = client
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[
            ("query", "skopos_rw_check"),
            ("time", &format!("{}", t as f64 / 1000.0)),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp: serde_json::Value = serde_json::from_str(&text).unwrap();
    let result = &resp["data"]["result"][0];
    assert_eq!(result["metric"]["k"], "v \"quoted\"", "{resp}");
    assert_eq!(result["value"][1], "12.5", "{resp}");
}

const TEXT: &str = "text/plain; version=0.0.4";
const OM: &str = "application/openmetrics-text; version=1.0.0";

/// Edge cases of the exposition formats; Prometheus and skopos must agree
/// on whether each scrape succeeds. (Leading whitespace before a sample is
/// the one known difference: Prometheus 2.42 takes it into the metric name
/// and fails, skopos skips it.)
const EDGE_CASES: &[(&str, &str, &str)] = &[
    ("trailing_comma", TEXT, "m{a=\"1\",} 1\n"),
    ("dup_label", TEXT, "m{a=\"1\",a=\"2\"} 1\n"),
    ("name_label", TEXT, "m{__name__=\"n\"} 1\n"),
    ("infinity_word", TEXT, "m infinity\n"),
    ("nan_mixed_case", TEXT, "m Nan\n"),
    ("plus_sign", TEXT, "m +5\n"),
    ("hex", TEXT, "m 0x10\n"),
    ("hex_float", TEXT, "m 0x1p4\n"),
    ("float_timestamp", TEXT, "m 1 1.5\n"),
    ("no_final_newline", TEXT, "m 1"),
    ("type_after_samples", TEXT, "m 1\n# TYPE m gauge\n"),
    (
        "second_type",
        TEXT,
        "# TYPE m gauge\n# TYPE m counter\nm 1\n",
    ),
    ("second_help", TEXT, "# HELP m a\n# HELP m b\nm 1\n"),
    ("bad_type", TEXT, "# TYPE m gaugez\nm 1\n"),
    ("unknown_escape", TEXT, "m{a=\"x\\qy\"} 1\n"),
    ("spaces_in_labels", TEXT, "m{ a = \"1\" } 1\n"),
    ("value_after_brace", TEXT, "m{a=\"1\"}1\n"),
    ("tab_separator", TEXT, "m\t1\n"),
    ("exemplar_in_text", TEXT, "m 1 # {a=\"b\"} 1\n"),
    ("empty_body", TEXT, ""),
    ("duplicate_series", TEXT, "m 1\nm 2\n"),
    ("om_no_eof", OM, "m 1\n"),
    ("om_untyped", OM, "# TYPE m untyped\nm 1\n# EOF\n"),
    (
        "om_unit_not_suffix",
        OM,
        "# TYPE m gauge\n# UNIT m bytes\nm 1\n# EOF\n",
    ),
    ("om_empty_line", OM, "m 1\n\nn 2\n# EOF\n"),
    ("om_free_comment", OM, "# free comment\nm 1\n# EOF\n"),
    (
        "om_counter_without_total",
        OM,
        "# TYPE c counter\nc 1\n# EOF\n",
    ),
    (
        "om_exemplar",
        OM,
        "# TYPE c counter\nc_total 1 # {a=\"b\"} 1\n# EOF\n",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_and_skopos_agree_on_which_expositions_are_valid() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("the `prometheus` binary (Debian package prometheus) is not installed; scripts/test.sh installs it");
    }
    let addr = common::serve_cases(EDGE_CASES).await;
    let mut yaml = String::from("global: { scrape_interval: 1s }\nscrape_configs:\n");
    for (name, _, _) in EDGE_CASES {
        yaml.push_str(&format!(
            "  - job_name: {name}\n    metrics_path: /{name}\n    static_configs: [ {{ targets: [\"{addr}\"] }} ]\n"
        ));
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, &yaml).unwrap();
    let _prom = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sink = Arc::new(MemSink::default());
    let mgr = ScrapeManager::new(sink.clone());
    mgr.apply(&ScrapeConfigFile::from_yaml(&yaml).unwrap());

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let theirs: BTreeSet<(String, String)> = loop {
        let text = match client
            .get(format!("http://127.0.0.1:{port}/api/v1/targets"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let health: BTreeSet<(String, String)> = v["data"]["activeTargets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| {
                        (
                            t["labels"]["job"].as_str().unwrap_or("").to_string(),
                            t["health"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if health.len() == EDGE_CASES.len() && health.iter().all(|(_, h)| h != "unknown") {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape every target: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ours: BTreeSet<(String, String)> = loop {
        let t = mgr.targets();
        if t.len() == EDGE_CASES.len() && t.iter().all(|t| t.health.as_str() != "unknown") {
            break t
                .iter()
                .map(|t| (t.job.clone(), t.health.as_str().to_string()))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "skopos did not scrape every target"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    mgr.stop().await;
    let diff: Vec<_> = theirs.symmetric_difference(&ours).collect();
    assert!(
        diff.is_empty(),
        "Prometheus and skopos disagree: {diff:?}\nPrometheus: {theirs:?}"
    );
}

/// A condition on the samples one side has written.
type Cond<'a> = dyn Fn(&[(Labels, f64)]) -> bool + 'a;

/// Which samples get staleness markers, compared with Prometheus: a series
/// that disappears, a failing scrape, and a target removed by a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_and_skopos_write_the_same_staleness_markers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("the `prometheus` binary (Debian package prometheus) is not installed; scripts/test.sh installs it");
    }
    // Phase 0: a and b; phase 1: only a; phase 2: HTTP 500.
    let phase = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let (phase, bodies) = (phase.clone(), bodies.clone());
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (phase, bodies) = (phase.clone(), bodies.clone());
                tokio::spawn(async move {
                    let Some((head, body)) = common::read_request(&mut sock).await else {
                        return;
                    };
                    let resp = if head.starts_with("post") {
                        bodies.lock().push(body);
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    } else {
                        match phase.load(Ordering::SeqCst) {
                            0 => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\na 1\nb 1\n".to_string(),
                            1 => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\na 1\n".to_string(),
                            _ => "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                        }
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
    }
    let scrape = format!(
        "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: stale\n    static_configs: [ {{ targets: [\"{addr}\"] }} ]\n"
    );
    let remote = format!("remote_write:\n  - url: http://{addr}/receive\n    queue_config: {{ batch_send_deadline: 1s }}\n");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, format!("{scrape}{remote}")).unwrap();
    let _prom = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sink = Arc::new(MemSink::default());
    let mgr = ScrapeManager::new(sink.clone());
    mgr.apply(&ScrapeConfigFile::from_yaml(&scrape).unwrap());

    // All samples of job "stale" each side has written so far.
    let theirs = || -> Vec<(Labels, f64)> {
        bodies
            .lock()
            .iter()
            .flat_map(|b| remote_write::decode(b, 64 << 20).unwrap().batch.series)
            .filter(|s| s.labels.get("job") == Some("stale"))
            .flat_map(|s| {
                s.samples
                    .iter()
                    .map(|x| (s.labels.clone(), x.v))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let ours = || -> Vec<(Labels, f64)> {
        sink.0
            .lock()
            .iter()
            .flat_map(|b| {
                b.series
                    .iter()
                    .flat_map(|s| s.samples.iter().map(|x| (s.labels.clone(), x.v)))
            })
            .collect()
    };
    let stale_names = |v: &[(Labels, f64)]| -> BTreeSet<Labels> {
        v.iter()
            .filter(|(_, x)| skopos_model::is_stale_nan(*x))
            .map(|(l, _)| l.clone())
            .collect()
    };
    let has = |v: &[(Labels, f64)], name: &str, pred: &dyn Fn(f64) -> bool| {
        v.iter()
            .any(|(l, x)| l.metric_name() == Some(name) && pred(*x))
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let wait = |what: &str, cond: &Cond<'_>| {
        let ok_theirs = cond(&theirs());
        let ok_ours = cond(&ours());
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: theirs {ok_theirs}, ours {ok_ours}"
        );
        ok_theirs && ok_ours
    };
    while !wait("b", &|v| has(v, "b", &|x| x == 1.0)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase.store(1, Ordering::SeqCst);
    while !wait("stale b", &|v| {
        has(v, "b", &|x| skopos_model::is_stale_nan(x))
    }) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phase.store(2, Ordering::SeqCst);
    while !wait("up 0", &|v| {
        has(v, "up", &|x| x == 0.0) && has(v, "a", &|x| skopos_model::is_stale_nan(x))
    }) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Remove the target but keep the job (Prometheus writes end-of-run
    // markers only then; when a whole job goes it writes none, where skopos
    // still marks everything stale): Prometheus by a reload, skopos by apply.
    let no_target = "global: { scrape_interval: 1s }\nscrape_configs:\n  - job_name: stale\n    static_configs: []\n";
    std::fs::write(&cfg, format!("{no_target}{remote}")).unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    mgr.apply(&ScrapeConfigFile::from_yaml(no_target).unwrap());
    while !wait("stale up", &|v| {
        has(v, "up", &|x| skopos_model::is_stale_nan(x))
    }) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mgr.stop().await;
    // Give Prometheus' queue a moment to flush whatever else it marked.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stale_names(&theirs()), stale_names(&ours()));
    // up went stale only at the end, never while the target was failing.
    let up_values = |v: &[(Labels, f64)]| -> Vec<bool> {
        v.iter()
            .filter(|(l, _)| l.metric_name() == Some("up"))
            .map(|(_, x)| skopos_model::is_stale_nan(*x))
            .collect()
    };
    for side in [up_values(&theirs()), up_values(&ours())] {
        assert_eq!(side.iter().filter(|s| **s).count(), 1, "{side:?}");
        assert!(side.last().unwrap());
    }
}
