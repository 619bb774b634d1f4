//! Differential test against a real Prometheus 2.42 (Debian package): one
//! generated dataset — counters with resets, gauges, classic histograms,
//! sparse and stale series, over two hours — is remote-written to both;
//! then a corpus of queries generated combinatorially from templates
//! (`promql/corpus.rs`) is run against both as instant and range queries.
//! Results match when label sets are identical and values agree within a
//! relative 1e-6 (NaN equals NaN). The test prints the pass rate and fails
//! under 100%, except for the cases listed with a reason in
//! `promql/known_differences.txt`.
//!
//! A second test sends the malformed queries of `promql/parse_errors.txt`
//! to both and requires the same error, word for word and position for
//! position (`1:16: parse error: unclosed left parenthesis`).

mod common;
#[path = "promql/corpus.rs"]
mod corpus;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skopos_model::{Labels, Sample, SeriesSamples, WriteBatch, STALE_NAN};

/// Timestamps: two hours and a quarter of 15 s scrapes ending at `END`.
const STEP_MS: i64 = 15_000;
const POINTS: i64 = 540;
const END_S: i64 = 1_700_006_400;
const START_MS: i64 = END_S * 1000 - (POINTS - 1) * STEP_MS;

/// Marks "no sample at this step" in the generated value lists.
const GAP: f64 = f64::NEG_INFINITY;

/// A deterministic pseudo-random sequence (64-bit LCG), so both servers and
/// every run see the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn series(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// The dataset, as one list of series with all their samples.
fn dataset() -> Vec<SeriesSamples> {
    let mut rng = Rng(42);
    let mut out = Vec::new();
    let times: Vec<i64> = (0..POINTS).map(|i| START_MS + i * STEP_MS).collect();
    let mut push = |labels: Labels, values: Vec<f64>| {
        let samples = times
            .iter()
            .zip(values)
            .filter(|(_, v)| *v != GAP)
            .map(|(t, v)| Sample::new(*t, v))
            .collect();
        out.push(SeriesSamples { labels, samples });
    };
    let instances: Vec<String> = (0..40).map(|i| format!("10.0.0.{i}:9100")).collect();
    for job in ["api", "web"] {
        for inst in &instances {
            for method in ["GET", "POST"] {
                for code in ["200", "404", "500"] {
                    // Counters growing at different rates, with a reset now and then.
                    let rate = rng.next() * 20.0;
                    let reset_at = (rng.next() * POINTS as f64 * 3.0) as i64;
                    let mut v = (rng.next() * 1000.0).floor();
                    let vals = (0..POINTS)
                        .map(|i| {
                            if i == reset_at {
                                v = 0.0;
                            }
                            v += (rate * rng.next() * 15.0).floor();
                            v
                        })
                        .collect();
                    push(
                        series(&[
                            ("__name__", "http_requests_total"),
                            ("job", job),
                            ("instance", inst),
                            ("method", method),
                            ("code", code),
                        ]),
                        vals,
                    );
                }
            }
            // A gauge with noise around a level.
            let level = 1e8 + rng.next() * 1e9;
            let vals = (0..POINTS)
                .map(|_| (level * (0.9 + rng.next() * 0.2)).round())
                .collect();
            push(
                series(&[
                    ("__name__", "memory_usage_bytes"),
                    ("job", job),
                    ("instance", inst),
                ]),
                vals,
            );
            // A classic histogram.
            let bounds = [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
            ];
            let mut counts = [0f64; 10];
            let mut sum = 0.0;
            let mut bucket_vals: Vec<Vec<f64>> = vec![Vec::new(); 10];
            let mut count_vals = Vec::new();
            let mut sum_vals = Vec::new();
            for _ in 0..POINTS {
                for _ in 0..(rng.next() * 10.0) as usize {
                    let latency = (rng.next() * 3.0).powi(3);
                    sum += latency;
                    for (b, bound) in bounds.iter().enumerate() {
                        if *bound == "+Inf" || latency <= bound.parse::<f64>().unwrap() {
                            counts[b] += 1.0;
                        }
                    }
                }
                for b in 0..10 {
                    bucket_vals[b].push(counts[b]);
                }
                count_vals.push(counts[9]);
                sum_vals.push(sum);
            }
            for (b, bound) in bounds.iter().enumerate() {
                push(
                    series(&[
                        ("__name__", "request_duration_seconds_bucket"),
                        ("job", job),
                        ("instance", inst),
                        ("le", bound),
                    ]),
                    bucket_vals[b].clone(),
                );
            }
            push(
                series(&[
                    ("__name__", "request_duration_seconds_sum"),
                    ("job", job),
                    ("instance", inst),
                ]),
                sum_vals,
            );
            push(
                series(&[
                    ("__name__", "request_duration_seconds_count"),
                    ("job", job),
                    ("instance", inst),
                ]),
                count_vals,
            );
        }
    }
    for inst in &instances {
        for cpu in 0..4 {
            for mode in ["idle", "user", "system", "iowait"] {
                let mut v = rng.next() * 1e5;
                let share = match mode {
                    "idle" => 0.7,
                    "user" => 0.2,
                    "system" => 0.08,
                    _ => 0.02,
                };
                let vals = (0..POINTS)
                    .map(|_| {
                        v += 15.0 * share * (0.5 + rng.next());
                        (v * 100.0).round() / 100.0
                    })
                    .collect();
                push(
                    series(&[
                        ("__name__", "node_cpu_seconds_total"),
                        ("instance", inst),
                        ("cpu", &cpu.to_string()),
                        ("mode", mode),
                    ]),
                    vals,
                );
            }
        }
        for sensor in ["cpu", "board", "ambient", "outside"] {
            let base = if sensor == "outside" { -5.0 } else { 40.0 };
            let mut v = base + rng.next() * 10.0;
            let vals = (0..POINTS)
                .map(|_| {
                    v += rng.next() - 0.5;
                    (v * 10.0).round() / 10.0
                })
                .collect();
            push(
                series(&[
                    ("__name__", "temperature_celsius"),
                    ("instance", inst),
                    ("sensor", sensor),
                ]),
                vals,
            );
        }
    }
    // Sparse series: a sample every ten minutes.
    for job in ["backup", "report", "cleanup"] {
        let mut vals = vec![GAP; POINTS as usize];
        let mut last = START_MS as f64 / 1000.0;
        for (i, v) in vals.iter_mut().enumerate() {
            if i % 40 == 0 {
                last += 600.0 + (rng.next() * 60.0).floor();
                *v = last;
            }
        }
        push(
            series(&[
                ("__name__", "batch_last_success_timestamp_seconds"),
                ("job", job),
            ]),
            vals,
        );
    }
    // Stale series: pods that go away (a staleness marker) part-way through.
    for pod in 0..20 {
        let end = (POINTS / 4) + (rng.next() * POINTS as f64 / 2.0) as i64;
        let vals = (0..POINTS)
            .map(|i| match i.cmp(&end) {
                std::cmp::Ordering::Less => 1.0 + (rng.next() * 3.0).floor(),
                std::cmp::Ordering::Equal => STALE_NAN,
                std::cmp::Ordering::Greater => GAP,
            })
            .collect();
        push(
            series(&[
                ("__name__", "pod_restarts"),
                ("pod", &format!("pod-{pod}")),
                ("namespace", if pod % 2 == 0 { "a" } else { "b" }),
            ]),
            vals,
        );
    }
    // Odd values: NaN, infinities, negatives.
    let vals = (0..POINTS)
        .map(|i| match i % 50 {
            7 => f64::NAN,
            13 => -1.0,
            _ => (i % 17) as f64 - 3.0,
        })
        .collect();
    push(
        series(&[("__name__", "odd_values"), ("kind", "mixed")]),
        vals,
    );
    out
}

struct Peer {
    child: Child,
    url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &Path) -> Peer {
    let port = common::free_port();
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("the prometheus binary (Debian package prometheus) must be installed; scripts/test.sh installs it");
    Peer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/-/ready")).await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the dataset round by round (every series' sample at one
/// timestamp per request), so both receive samples in time order.
async fn load(url: &str, data: &[SeriesSamples]) {
    let client = reqwest::Client::new();
    for i in 0..POINTS {
        let t = START_MS + i * STEP_MS;
        let mut batch = WriteBatch::default();
        for s in data {
            if let Some(p) = s.samples.iter().find(|p| p.t == t) {
                batch.series.push(SeriesSamples {
                    labels: s.labels.clone(),
                    samples: vec![*p],
                });
            }
        }
        let r = client
            .post(format!("{url}/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(skopos_ingest::remote_write::encode(&batch))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "{url} refused round {i}: {status} {}",
            r.text().await.unwrap()
        );
    }
}

/// A result reduced to comparable form: label set → values (with times).
type Shape = BTreeMap<String, Vec<(String, String)>>;

fn shape(data: &Value) -> Result<(String, Shape), String> {
    let kind = data["resultType"]
        .as_str()
        .ok_or("no resultType")?
        .to_string();
    let mut out = Shape::new();
    let key = |m: &Value| serde_json::to_string(m).unwrap_or_default();
    let pt = |p: &Value| (p[0].to_string(), p[1].as_str().unwrap_or("").to_string());
    match kind.as_str() {
        "vector" => {
            for s in data["result"].as_array().ok_or("no result")? {
                out.entry(key(&s["metric"]))
                    .or_default()
                    .push(pt(&s["value"]));
            }
        }
        "matrix" => {
            for s in data["result"].as_array().ok_or("no result")? {
                let vals = s["values"]
                    .as_array()
                    .ok_or("no values")?
                    .iter()
                    .map(pt)
                    .collect();
                if out.insert(key(&s["metric"]), vals).is_some() {
                    return Err("duplicate series in result".into());
                }
            }
        }
        _ => {
            out.insert(String::new(), vec![pt(&data["result"])]);
        }
    }
    Ok((kind, out))
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_nan() && y.is_nan() => true,
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            (x - y).abs() <= 1e-6 * x.abs().max(y.abs()) || (x - y).abs() < 1e-12
        }
        _ => false,
    }
}

/// Compares two API responses; `None` means they agree.
fn differs(prom: &Value, sk: &Value) -> Option<String> {
    match (prom["status"].as_str(), sk["status"].as_str()) {
        (Some("error"), Some("error")) => return None,
        (Some("success"), Some("success")) => {}
        _ => {
            return Some(format!(
                "status: prometheus {} / skopos {}",
                compact(prom),
                compact(sk)
            ))
        }
    }
    let (pk, ps) = match shape(&prom["data"]) {
        Ok(x) => x,
        Err(e) => return Some(format!("prometheus answer unreadable: {e}")),
    };
    let (sk_kind, ss) = match shape(&sk["data"]) {
        Ok(x) => x,
        Err(e) => return Some(format!("skopos answer unreadable: {e}")),
    };
    if pk != sk_kind {
        return Some(format!("result type: prometheus {pk} / skopos {sk_kind}"));
    }
    let pkeys: HashSet<_> = ps.keys().collect();
    let skeys: HashSet<_> = ss.keys().collect();
    if pkeys != skeys {
        let only_p: Vec<_> = pkeys.difference(&skeys).take(2).collect();
        let only_s: Vec<_> = skeys.difference(&pkeys).take(2).collect();
        return Some(format!(
            "series: {} vs {}; only prometheus {only_p:?}; only skopos {only_s:?}",
            ps.len(),
            ss.len()
        ));
    }
    for (k, pv) in &ps {
        let sv = &ss[k];
        if pv.len() != sv.len() {
            return Some(format!("{k}: {} points vs {}", pv.len(), sv.len()));
        }
        for (a, b) in pv.iter().zip(sv) {
            if a.0 != b.0 || !close(&a.1, &b.1) {
                return Some(format!("{k}: prometheus {a:?} / skopos {b:?}"));
            }
        }
    }
    None
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(300).collect()
}

async fn ask(client: &reqwest::Client, base: &str, path: &str, form: &[(&str, String)]) -> Value {
    let r = client
        .post(format!("{base}{path}"))
        .form(form)
        .send()
        .await
        .unwrap();
    r.json::<Value>()
        .await
        .unwrap_or_else(|e| serde_json::json!({"status": "error", "error": e.to_string()}))
}

fn known_differences() -> BTreeMap<String, String> {
    let text = include_str!("promql/known_differences.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (q, reason) = l.split_once("\t#").unwrap_or_else(|| {
                panic!("known_differences.txt: {l:?} needs a TAB, '#' and a reason")
            });
            (q.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_agrees_with_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let prom = start_prometheus(&tmp.path().join("prometheus"));
    let sk = common::start(&tmp.path().join("skopos"), &["--out-of-order-window", "0"]);
    wait_ready(&prom.url).await;
    let data = dataset();
    assert!(data.len() >= 2000, "{} series", data.len());
    load(&prom.url, &data).await;
    load(&sk.url, &data).await;

    let queries = corpus::queries();
    assert!(
        queries.len() >= 500,
        "the corpus has {} queries",
        queries.len()
    );
    let known = known_differences();
    let client = reqwest::Client::new();
    let end = END_S;
    // Prometheus-worded parse errors are explained only for what the
    // evaluator's parser refuses; what Prometheus accepts must have nothing
    // to explain, or a query refused by a parser bug would read as valid.
    let mut accepted = 0;
    let (mut pass, mut fail, mut excused) = (0usize, Vec::new(), 0usize);
    // Agreement on errors or on nothing proves little, so count those.
    let (mut both_failed, mut empty) = (Vec::new(), 0usize);
    for q in &queries {
        let mut problem = None;
        for (n, at) in [end, end - 1800, end - 3 * 3600].into_iter().enumerate() {
            let form = [("query", q.clone()), ("time", at.to_string())];
            let p = ask(&client, &prom.url, "/api/v1/query", &form).await;
            let s = ask(&client, &sk.url, "/api/v1/query", &form).await;
            if n == 0 {
                if p["status"] == "success" {
                    accepted += 1;
                    let why = skopos_promql::syntax::explain(q).map(|e| e.render(q));
                    assert_eq!(why, None, "Prometheus accepts {q:?}");
                }
                if p["status"] == "error" {
                    if s["status"] == "error" {
                        both_failed.push(q.clone());
                    }
                } else if p["data"]["result"].as_array().is_some_and(|r| r.is_empty()) {
                    empty += 1;
                }
            }
            if let Some(d) = differs(&p, &s) {
                problem = Some(format!("instant at {at}: {d}"));
                break;
            }
        }
        if problem.is_none() {
            let form = [
                ("query", q.clone()),
                ("start", (end - 3600).to_string()),
                ("end", end.to_string()),
                ("step", "60".to_string()),
            ];
            let p = ask(&client, &prom.url, "/api/v1/query_range", &form).await;
            let s = ask(&client, &sk.url, "/api/v1/query_range", &form).await;
            if let Some(d) = differs(&p, &s) {
                problem = Some(format!("range: {d}"));
            }
        }
        match (problem, known.contains_key(q)) {
            (None, _) => pass += 1,
            (Some(_), true) => excused += 1,
            (Some(d), false) => fail.push(format!("{q}\n    {d}")),
        }
    }
    let total = queries.len();
    println!(
        "PromQL differential: {pass}/{total} queries agree ({:.1}%), {excused} known differences, {} failures; \
         {} are errors in both, {empty} empty in both",
        100.0 * pass as f64 / total as f64,
        fail.len(),
        both_failed.len(),
    );
    common::stop(sk);
    assert!(accepted * 2 > total, "only {accepted} queries parse");
    let unexpected: Vec<_> = both_failed
        .iter()
        .filter(|q| !corpus::EXPECTED_ERRORS.contains(&q.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "queries that fail on both sides but should not: {unexpected:?}"
    );
    assert!(
        empty * 10 <= total,
        "{empty} of {total} queries are empty on both sides: the corpus proves little"
    );
    assert!(
        fail.is_empty(),
        "{} queries disagree with Prometheus:\n{}",
        fail.len(),
        fail.join("\n")
    );
}

/// The malformed queries of `promql/parse_errors.txt` (separated by lines
/// `====`).
fn malformed() -> Vec<&'static str> {
    include_str!("promql/parse_errors.txt")
        .trim_end_matches('\n')
        .split("\n====\n")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_errors_match_prometheus_word_for_word() {
    let tmp = tempfile::tempdir().unwrap();
    let prom = start_prometheus(&tmp.path().join("prometheus"));
    let sk = common::start(&tmp.path().join("skopos"), &[]);
    wait_ready(&prom.url).await;
    let queries = malformed();
    assert!(queries.len() >= 150, "{} queries", queries.len());
    let client = reqwest::Client::new();
    let (mut kinds, mut fail) = (HashSet::new(), Vec::new());
    for q in &queries {
        for path in ["/api/v1/query", "/api/v1/query_range"] {
            let form = [
                ("query", q.to_string()),
                ("time", END_S.to_string()),
                ("start", (END_S - 60).to_string()),
                ("end", END_S.to_string()),
                ("step", "15".to_string()),
            ];
            let p = ask(&client, &prom.url, path, &form).await;
            let s = ask(&client, &sk.url, path, &form).await;
            // Every case must be an error in Prometheus, or agreement
            // proves nothing.
            assert_eq!(p["status"], "error", "Prometheus accepts {q:?}: {p}");
            assert_eq!(p["errorType"], "bad_data", "{q:?}: {p}");
            let want = p["error"].as_str().unwrap().to_string();
            // How many different messages the file exercises.
            let message = want.split("parse error: ").nth(1).unwrap_or(&want);
            kinds.insert(
                message
                    .split(['"', '\'', ':', '`'])
                    .next()
                    .unwrap()
                    .to_string(),
            );
            if s["error"].as_str() != Some(want.as_str()) || s["errorType"] != "bad_data" {
                fail.push(format!(
                    "{q:?} ({path})\n    prometheus: {want}\n    skopos:     {s}"
                ));
            }
        }
    }
    common::stop(sk);
    println!(
        "PromQL parse errors: {}/{} agree, {} different messages",
        queries.len() * 2 - fail.len(),
        queries.len() * 2,
        kinds.len()
    );
    assert!(
        kinds.len() >= 40,
        "only {} kinds of error: {kinds:?}",
        kinds.len()
    );
    assert!(
        fail.is_empty(),
        "{} parse errors differ from Prometheus':\n{}",
        fail.len(),
        fail.join("\n")
    );
}
