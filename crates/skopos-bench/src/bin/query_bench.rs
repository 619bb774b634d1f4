//! Query benchmark (issue 3, section 5): the same 24 hours of data is
//! remote-written to skopos and to a real Prometheus, then typical dashboard
//! range queries run against both, alternating, and the median latency and
//! the median peak memory growth of each are printed with the ratio
//! skopos / Prometheus. A second phase loads a million series and checks that
//! `count by (job)` over them completes under the default sample limit.
//!
//! `scripts/bench-query.sh` builds and runs it; `--help` lists the sizes.

#[allow(dead_code)]
#[path = "../procs.rs"]
mod procs;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use procs::{Kind, Programs, Server};
use skopos_model::{Labels, Sample, SeriesSamples, WriteBatch};

#[derive(Parser, Debug)]
#[command(about = "PromQL range-query latency and memory: skopos against Prometheus")]
struct Args {
    #[arg(long, default_value = "target/release/skopos")]
    skopos: PathBuf,
    #[arg(long, default_value = "prometheus")]
    prometheus: PathBuf,
    /// Hosts; each has 40 counter series and 12 histogram buckets.
    #[arg(long, default_value_t = 250)]
    hosts: usize,
    /// Hours of data, one sample a minute, ending now.
    #[arg(long, default_value_t = 24)]
    hours: i64,
    /// Measured runs per query and server (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Series for the `count by (job)` phase; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    million: usize,
    /// Where the data directories go (a temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

const CODES: [&str; 10] = [
    "200", "201", "302", "304", "400", "401", "403", "404", "500", "503",
];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const LE: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// A deterministic pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Every series of the dashboard dataset, without samples.
fn dashboard_series(hosts: usize) -> Vec<Labels> {
    let mut out = Vec::new();
    for h in 0..hosts {
        let instance = format!("host-{h}:8080");
        let job = format!("svc-{}", h % 10);
        for m in METHODS {
            for c in CODES {
                out.push(labels(&[
                    ("__name__", "http_requests_total"),
                    ("job", &job),
                    ("instance", &instance),
                    ("method", m),
                    ("code", c),
                ]));
            }
        }
        for le in LE {
            out.push(labels(&[
                ("__name__", "request_duration_seconds_bucket"),
                ("job", &job),
                ("instance", &instance),
                ("le", le),
            ]));
        }
    }
    out
}

/// Encoded remote-write requests of at most `per_request` samples, one
/// timestamp round after another so each series' samples arrive in order.
fn dashboard_requests(
    series: &[Labels],
    start_ms: i64,
    points: i64,
    per_request: usize,
) -> Vec<Vec<u8>> {
    let mut rng = Rng(7);
    let mut values = vec![0f64; series.len()];
    let mut out = Vec::new();
    for p in 0..points {
        let t = start_ms + p * 60_000;
        let mut batch = WriteBatch::default();
        for (i, l) in series.iter().enumerate() {
            if l.get("le").is_some() {
                // Buckets: cumulative, so a bucket grows at least as fast as the one below.
                let le_index = LE.iter().position(|x| Some(*x) == l.get("le")).unwrap_or(0) as u64;
                values[i] += (rng.next() % (5 + le_index * 10)) as f64;
            } else {
                values[i] += (rng.next() % 100) as f64;
            }
            batch.series.push(SeriesSamples {
                labels: l.clone(),
                samples: vec![Sample::new(t, values[i])],
            });
            if batch.series.len() >= per_request {
                out.push(skopos_ingest::remote_write::encode(&std::mem::take(
                    &mut batch,
                )));
            }
        }
        if !batch.series.is_empty() {
            out.push(skopos_ingest::remote_write::encode(&batch));
        }
    }
    out
}

async fn send_all(client: &reqwest::Client, url: &str, bodies: &[Vec<u8>]) -> anyhow::Result<()> {
    let url = format!("{url}/api/v1/write");
    // Four requests in flight, in order within each round.
    for chunk in bodies.chunks(4) {
        let mut pending = Vec::new();
        for b in chunk {
            pending.push(
                client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(b.clone())
                    .send(),
            );
        }
        for p in pending {
            let r = p.await.context("remote write")?;
            if !r.status().is_success() {
                let status = r.status();
                bail!(
                    "{url} answered {status}: {}",
                    r.text().await.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

/// Resets the process' peak-RSS counter (Linux ≥ 4.0), so `VmHWM` afterwards
/// is the peak during what follows.
fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("cannot reset VmHWM")
}

struct Measured {
    latency: Duration,
    peak_growth: u64,
    series: usize,
}

async fn run_query(
    client: &reqwest::Client,
    server: &Server,
    form: &[(&str, String)],
    path: &str,
) -> anyhow::Result<Measured> {
    let before = server.memory()?.rss;
    reset_peak(server.pid())?;
    let t0 = Instant::now();
    let r = client
        .post(format!("{}{path}", server.base_url()))
        .form(form)
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
    let latency = t0.elapsed();
    if !status.is_success() || body["status"] != "success" {
        bail!("{} failed the query: {body}", server.kind.name());
    }
    let peak = server.memory()?.hwm;
    Ok(Measured {
        latency,
        peak_growth: peak.saturating_sub(before),
        series: body["data"]["result"].as_array().map_or(0, Vec::len),
    })
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let programs = Programs {
        skopos: args.skopos.clone(),
        prometheus: args.prometheus.clone(),
        promtool: PathBuf::from("promtool"),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let end_ms = now_ms - now_ms % 60_000;
    let points = args.hours * 60;
    let start_ms = end_ms - (points - 1) * 60_000;

    let series = dashboard_series(args.hosts);
    eprintln!("encoding {} series × {points} samples", series.len());
    let bodies = dashboard_requests(&series, start_ms, points, 5000);
    let mut servers = Vec::new();
    for kind in [Kind::Skopos, Kind::Prometheus] {
        let mut s = Server::start(
            &programs,
            kind,
            &work.join(format!("{}-dash", kind.name())),
            "query",
        )?;
        s.wait_ready(&client, Instant::now(), Duration::from_secs(120))
            .await?;
        let t0 = Instant::now();
        send_all(&client, &s.base_url(), &bodies).await?;
        eprintln!(
            "{}: loaded {} samples in {:.1?}",
            kind.name(),
            series.len() as i64 * points,
            t0.elapsed()
        );
        servers.push(s);
    }
    drop(bodies);

    let range = |q: &str| {
        vec![
            ("query", q.to_string()),
            ("start", (start_ms / 1000).to_string()),
            ("end", (end_ms / 1000).to_string()),
            ("step", "60".to_string()),
        ]
    };
    let queries = [
        (
            "rate, one host (40 series)".to_string(),
            "rate(http_requests_total{instance=\"host-7:8080\"}[5m])",
        ),
        (
            format!("sum by (job) (rate) over {} series", args.hosts * 40),
            "sum by (job) (rate(http_requests_total[5m]))",
        ),
        (
            format!("histogram_quantile(0.99) over {} buckets", args.hosts * 12),
            "histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        ),
    ];
    println!(
        "\nrange queries over {}h at 60s steps; {} series; medians of {} runs",
        args.hours,
        series.len(),
        args.runs
    );
    println!(
        "{:<42} {:>12} {:>12} {:>7} {:>14} {:>14} {:>7}",
        "query", "skopos ms", "prom ms", "ratio", "skopos peak", "prom peak", "ratio"
    );
    for (name, q) in queries {
        let form = range(q);
        let mut lat = [Vec::new(), Vec::new()];
        let mut mem = [Vec::new(), Vec::new()];
        let mut shape = [0usize; 2];
        for run in 0..=args.runs {
            // Alternate which server goes first.
            let order: [usize; 2] = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let m = run_query(&client, &servers[i], &form, "/api/v1/query_range").await?;
                shape[i] = m.series;
                if run > 0 {
                    lat[i].push(m.latency.as_secs_f64() * 1000.0);
                    mem[i].push(m.peak_growth as f64);
                }
            }
        }
        if shape[0] != shape[1] {
            bail!(
                "{name}: skopos returned {} series, Prometheus {}",
                shape[0],
                shape[1]
            );
        }
        let (ls, lp) = (median(lat[0].clone()), median(lat[1].clone()));
        let (ms, mp) = (median(mem[0].clone()), median(mem[1].clone()));
        println!(
            "{:<42} {:>12.1} {:>12.1} {:>7.2} {:>11.1} MB {:>11.1} MB {:>7}",
            name,
            ls,
            lp,
            ls / lp,
            ms / 1e6,
            mp / 1e6,
            if mp > 0.0 {
                format!("{:.2}", ms / mp)
            } else {
                "n/a".into()
            }
        );
    }
    for s in servers {
        s.stop(Duration::from_secs(120)).await?;
    }

    if args.million > 0 {
        let n = args.million;
        eprintln!("loading {n} series for count by (job)");
        let mut bodies = Vec::new();
        for t in [end_ms - 60_000, end_ms] {
            let mut batch = WriteBatch::default();
            for i in 0..n {
                batch.series.push(SeriesSamples {
                    labels: labels(&[
                        ("__name__", "million_series"),
                        ("job", &format!("job-{}", i % 20)),
                        ("instance", &format!("pod-{i}")),
                    ]),
                    samples: vec![Sample::new(t, 1.0)],
                });
                if batch.series.len() >= 10_000 {
                    bodies.push(skopos_ingest::remote_write::encode(&std::mem::take(
                        &mut batch,
                    )));
                }
            }
        }
        println!("\ncount by (job) over {n} series (instant query, default limits)");
        for kind in [Kind::Skopos, Kind::Prometheus] {
            let mut s = Server::start(
                &programs,
                kind,
                &work.join(format!("{}-million", kind.name())),
                "million",
            )?;
            s.wait_ready(&client, Instant::now(), Duration::from_secs(120))
                .await?;
            send_all(&client, &s.base_url(), &bodies).await?;
            let form = vec![
                ("query", "count by (job) (million_series)".to_string()),
                ("time", (end_ms / 1000).to_string()),
            ];
            let m = run_query(&client, &s, &form, "/api/v1/query").await?;
            if m.series != 20 {
                bail!(
                    "{}: count by (job) returned {} groups, not 20",
                    kind.name(),
                    m.series
                );
            }
            let rss = s.memory()?.rss;
            println!(
                "{:<10} {:>10.1} ms, peak growth {:>8.1} MB, RSS after {:>8.1} MB",
                kind.name(),
                m.latency.as_secs_f64() * 1000.0,
                m.peak_growth as f64 / 1e6,
                rss as f64 / 1e6
            );
            s.stop(Duration::from_secs(300)).await?;
        }
    }
    Ok(())
}
