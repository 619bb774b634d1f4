//! The benchmark procedures: the remote-write run (ingestion CPU, memory per
//! series, restart time) and the backfill run (bytes per sample on disk).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::openmetrics;
use crate::procs::{dir_bytes, Kind, Programs, Server};
use crate::workload::{self, Load};

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause after start before the idle RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(2);
/// Pause after the last response before CPU is read (deferred work counts).
const CPU_SETTLE: Duration = Duration::from_secs(1);
/// Further pause before the loaded RSS is read.
const RSS_SETTLE: Duration = Duration::from_secs(3);
/// The metric whose series count is checked after the load and after restart.
const CHECK_METRIC: &str = "node_load1";

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .no_proxy()
        .build()?)
}

/// Sends every round in order, the bodies of a round `concurrency` at a time;
/// any response other than 2xx fails the whole load.
pub async fn send_load(
    client: &reqwest::Client,
    url: &str,
    load: &Load,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    for round in &load.rounds {
        let bodies: Arc<Vec<Bytes>> = Arc::new(round.clone());
        let next = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (client, url, bodies, next) = (
                client.clone(),
                url.to_string(),
                bodies.clone(),
                next.clone(),
            );
            set.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return anyhow::Ok(());
                    };
                    let resp = client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .header("Content-Encoding", "snappy")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .header("User-Agent", "skopos-bench")
                        .body(body.clone())
                        .send()
                        .await
                        .with_context(|| format!("POST {url}"))?;
                    let status = resp.status();
                    if !status.is_success() {
                        let text = resp.text().await.unwrap_or_default();
                        let text: String = text.chars().take(500).collect();
                        bail!("POST {url} answered {status}: {}", text.trim());
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.context("load task panicked")??;
        }
    }
    Ok(t0.elapsed())
}

/// Number of series the server returns for `GET /api/v1/series?match[]=NAME`.
async fn series_count(client: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<usize> {
    let url = format!("{base}/api/v1/series?match%5B%5D={name}");
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.with_context(|| format!("GET {url}"))?;
    let body: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("GET {url}: body is not JSON"))?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    Ok(body["data"].as_array().map(|a| a.len()).unwrap_or(0))
}

async fn check_series(
    client: &reqwest::Client,
    server: &Server,
    expected: usize,
    when: &str,
) -> anyhow::Result<()> {
    let got = series_count(client, &server.base_url(), CHECK_METRIC).await?;
    if got != expected {
        bail!(
            "{} {when}: {got} series of {CHECK_METRIC}, expected {expected}; the figures would be meaningless",
            server.kind.name()
        );
    }
    Ok(())
}

/// What one remote-write run measured on one server.
#[derive(Clone, Debug, Default)]
pub struct IngestRun {
    pub series: usize,
    pub samples: usize,
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub idle_rss: u64,
    pub loaded_rss: u64,
    pub peak_rss: u64,
    pub stop_seconds: f64,
    /// Bytes in the data directory once stopped (what the restart reads).
    pub stopped_dir_bytes: u64,
    pub restart_seconds: f64,
}

impl IngestRun {
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu_seconds / self.samples as f64 * 1e6
    }

    pub fn rss_per_series(&self) -> f64 {
        (self.loaded_rss as f64 - self.idle_rss as f64) / self.series as f64
    }
}

/// One run on one server: fresh start, idle RSS, load, CPU and RSS, series
/// check, graceful stop, restart timed until ready, series check again.
pub async fn ingest_run(
    programs: &Programs,
    kind: Kind,
    dir: &Path,
    load: &Load,
    expected_check: usize,
    concurrency: usize,
) -> anyhow::Result<IngestRun> {
    let client = client()?;
    let mut server = Server::start(programs, kind, dir, "load")?;
    server
        .wait_ready(&client, Instant::now(), READY_TIMEOUT)
        .await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle = server.memory()?;
    let url = format!("{}/api/v1/write", server.base_url());

    let cpu0 = server.cpu_seconds()?;
    let wall = send_load(&client, &url, load, concurrency)
        .await
        .with_context(|| {
            format!(
                "{} refused the load; log: {}",
                kind.name(),
                server.log_tail()
            )
        })?;
    tokio::time::sleep(CPU_SETTLE).await;
    let cpu1 = server.cpu_seconds()?;
    tokio::time::sleep(RSS_SETTLE).await;
    let loaded = server.memory()?;
    check_series(&client, &server, expected_check, "after the load").await?;
    let stop = server.stop(STOP_TIMEOUT).await?;
    let stopped_dir_bytes = dir_bytes(dir)?;

    let t0 = Instant::now();
    let mut server = Server::start(programs, kind, dir, "restart")?;
    let restart = server.wait_ready(&client, t0, READY_TIMEOUT).await?;
    check_series(
        &client,
        &server,
        expected_check,
        "right after restart (ready before the data was loaded?)",
    )
    .await?;
    server.stop(STOP_TIMEOUT).await?;

    Ok(IngestRun {
        series: load.series,
        samples: load.samples,
        cpu_seconds: cpu1 - cpu0,
        wall_seconds: wall.as_secs_f64(),
        idle_rss: idle.rss,
        loaded_rss: loaded.rss,
        peak_rss: loaded.hwm,
        stop_seconds: stop.as_secs_f64(),
        stopped_dir_bytes,
        restart_seconds: restart.as_secs_f64(),
    })
}

/// What the backfill measured on one store.
#[derive(Clone, Debug, Default)]
pub struct BackfillResult {
    /// Bytes of the block files.
    pub bytes: u64,
    /// Samples in the input file (the denominator for both stores).
    pub samples: u64,
    /// Samples the store itself reports holding, where it says.
    pub reported_samples: Option<u64>,
    pub blocks: usize,
    pub import_seconds: f64,
}

impl BackfillResult {
    pub fn bytes_per_sample(&self) -> f64 {
        self.bytes as f64 / self.samples as f64
    }
}

fn run_checked(cmd: &mut Command, what: &str, log: &Path) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    std::fs::write(log, &text)?;
    if !out.status.success() {
        let s = String::from_utf8_lossy(&text);
        let tail: Vec<&str> = s
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("{what} failed with {}:\n{}", out.status, tail.join("\n"));
    }
    Ok(secs)
}

/// Sum of `stats.numSamples` over the `meta.json` of Prometheus blocks in `dir`.
fn prometheus_block_samples(dir: &Path) -> anyhow::Result<(u64, usize)> {
    let mut samples = 0;
    let mut blocks = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.path().join("meta.json");
        if meta.exists() {
            let v: Value = serde_json::from_slice(&std::fs::read(&meta)?)?;
            samples += v["stats"]["numSamples"].as_u64().unwrap_or(0);
            blocks += 1;
        }
    }
    Ok((samples, blocks))
}

/// The samples in blocks according to `skopos tsdb inspect -o json`
/// (`block_samples`; older spellings tolerated), else the sum over its
/// `blocks` array.
fn skopos_reported_samples(report: &Value) -> Option<u64> {
    let pick = |obj: &serde_json::Map<String, Value>| {
        ["block_samples", "samples", "num_samples", "numSamples"]
            .iter()
            .find_map(|k| obj.get(*k).and_then(Value::as_u64))
    };
    let obj = report.as_object()?;
    if let Some(n) = pick(obj) {
        return Some(n);
    }
    let blocks = obj.get("blocks")?.as_array()?;
    let mut total = 0;
    for b in blocks {
        total += pick(b.as_object()?)?;
    }
    Some(total)
}

/// Generates the OpenMetrics file once and imports it into both stores.
pub fn backfill(
    programs: &Programs,
    work: &Path,
    hosts: usize,
    hours: u32,
) -> anyhow::Result<(BackfillResult, BackfillResult)> {
    let file = work.join("backfill.om");
    for old in ["promtool-blocks", "skopos-import"] {
        let p = work.join(old);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
        }
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let spec = openmetrics::Spec {
        hosts,
        start_ms: openmetrics::aligned_start(now_ms, hours),
        hours,
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let summary = openmetrics::write(&spec, &mut w)?;
    std::io::Write::flush(&mut w)?;
    drop(w);
    eprintln!(
        "   backfill file: {} series ({} counters, {} gauges, {} histogram series), {} samples, {:.0} MB",
        summary.series,
        summary.counters,
        summary.gauges,
        summary.histogram_series,
        summary.samples,
        std::fs::metadata(&file)?.len() as f64 / 1e6
    );

    // Prometheus: promtool writes blocks of at most the block range that fits.
    let prom_out = work.join("promtool-blocks");
    let secs = run_checked(
        Command::new(&programs.promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(format!(
                "--max-block-duration={}h",
                openmetrics::block_hours(hours)
            ))
            .arg(&file)
            .arg(&prom_out),
        "promtool tsdb create-blocks-from openmetrics",
        &work.join("promtool.log"),
    )?;
    let (prom_samples, prom_blocks) = prometheus_block_samples(&prom_out)?;
    let prom = BackfillResult {
        bytes: dir_bytes(&prom_out)?,
        samples: summary.samples,
        reported_samples: Some(prom_samples),
        blocks: prom_blocks,
        import_seconds: secs,
    };

    // skopos: only the blocks folder counts.
    let data = work.join("skopos-import");
    let secs = run_checked(
        Command::new(&programs.skopos)
            .args(["tsdb", "import"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&data),
        "skopos tsdb import",
        &work.join("skopos-import.log"),
    )?;
    let blocks_dir = data.join("metrics").join("blocks");
    if !blocks_dir.is_dir() {
        bail!("skopos tsdb import wrote no {}", blocks_dir.display());
    }
    let inspect = Command::new(&programs.skopos)
        .args(["tsdb", "inspect", "-o", "json", "--data-dir"])
        .arg(&data)
        .output()
        .context("cannot run skopos tsdb inspect")?;
    std::fs::write(work.join("skopos-inspect.json"), &inspect.stdout)?;
    let reported = if inspect.status.success() {
        serde_json::from_slice::<Value>(&inspect.stdout)
            .ok()
            .as_ref()
            .and_then(skopos_reported_samples)
    } else {
        eprintln!(
            "   warning: skopos tsdb inspect failed: {}",
            String::from_utf8_lossy(&inspect.stderr).trim()
        );
        None
    };
    let blocks = std::fs::read_dir(&blocks_dir)?
        .filter(|e| e.as_ref().map(|e| e.path().is_dir()).unwrap_or(false))
        .count();
    let skopos = BackfillResult {
        bytes: dir_bytes(&blocks_dir)?,
        samples: summary.samples,
        reported_samples: reported,
        blocks,
        import_seconds: secs,
    };
    for (name, r) in [("prometheus", &prom), ("skopos", &skopos)] {
        if let Some(n) = r.reported_samples {
            if n != r.samples {
                eprintln!(
                    "   warning: {name} reports {n} samples in its blocks, the file holds {}",
                    r.samples
                );
            }
        }
    }
    Ok((skopos, prom))
}

/// Everything one `run` measured.
#[derive(Default)]
pub struct Results {
    pub skopos_runs: Vec<IngestRun>,
    pub prometheus_runs: Vec<IngestRun>,
    pub backfill: Option<(BackfillResult, BackfillResult)>,
}

pub struct IngestConfig {
    pub series: usize,
    pub samples_per_series: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub runs: usize,
    pub keep: bool,
}

/// The remote-write runs, alternating which server goes first.
pub async fn ingest(
    programs: &Programs,
    work: &Path,
    cfg: &IngestConfig,
    results: &mut Results,
) -> anyhow::Result<()> {
    let series = workload::node_series(cfg.series);
    let expected = workload::count_with_name(&series, CHECK_METRIC);
    for run in 0..cfg.runs {
        // Timestamps end at "now" of each run.
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let t0 = Instant::now();
        let load = workload::build_load(
            &series,
            cfg.samples_per_series,
            openmetrics::SCRAPE_INTERVAL_MS,
            end,
            cfg.batch,
        );
        eprintln!(
            "== run {}/{}: {} series × {} samples in {} requests ({:.1} MB encoded, built in {:.1}s)",
            run + 1,
            cfg.runs,
            load.series,
            cfg.samples_per_series,
            load.rounds.iter().map(Vec::len).sum::<usize>(),
            load.bytes as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
        let order = if run % 2 == 0 {
            [Kind::Prometheus, Kind::Skopos]
        } else {
            [Kind::Skopos, Kind::Prometheus]
        };
        for kind in order {
            let dir: PathBuf = work.join(format!("run{}", run + 1)).join(kind.name());
            // A leftover from an earlier bench in the same work dir would
            // turn the fresh start into a restart.
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            let r = ingest_run(programs, kind, &dir, &load, expected, cfg.concurrency).await?;
            eprintln!(
                "   {:<10} cpu {:.2}s ({:.2} s/M samples), wall {:.1}s, rss {:.0}→{:.0} MB ({:.0} B/series), restart {:.2}s",
                kind.name(),
                r.cpu_seconds,
                r.cpu_per_million(),
                r.wall_seconds,
                r.idle_rss as f64 / 1e6,
                r.loaded_rss as f64 / 1e6,
                r.rss_per_series(),
                r.restart_seconds
            );
            if !cfg.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            match kind {
                Kind::Skopos => results.skopos_runs.push(r),
                Kind::Prometheus => results.prometheus_runs.push(r),
            }
        }
    }
    Ok(())
}
