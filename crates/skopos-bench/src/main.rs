//! `skopos-bench`: runs the same workloads through skopos and through a real
//! Prometheus on the same machine and prints the figures side by side with
//! their ratio (skopos / Prometheus). `scripts/bench.sh` builds and runs it;
//! `BENCHMARKS.md` explains the figures.
//!
//! The one design decision to know: the servers are measured from the
//! outside, as child processes, through `/proc` (CPU time, RSS) and their
//! HTTP edges (remote write, `/-/ready`, `/api/v1/series`), so both are
//! treated exactly alike and nothing in skopos is instrumented for the bench.
//! The load is encoded before the clock starts, so the generator's own work
//! never competes with the server being measured.

mod bench;
mod openmetrics;
mod procs;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::procs::Programs;

#[derive(Parser)]
#[command(
    name = "skopos-bench",
    about = "Benchmarks skopos against a real Prometheus on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every benchmark against both servers, then the table of ratios.
    Run(RunArgs),
    /// Only write the backfill OpenMetrics file.
    GenOpenmetrics {
        #[arg(long, default_value_t = 30)]
        hosts: usize,
        #[arg(long, default_value_t = 2)]
        hours: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Only send the remote-write load to a running server.
    Load {
        /// e.g. http://127.0.0.1:9090/api/v1/write
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 200_000)]
        series: usize,
        #[arg(long, default_value_t = 10)]
        samples_per_series: usize,
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The skopos binary (a release build).
    #[arg(long, env = "SKOPOS_BIN", default_value = "target/release/skopos")]
    skopos: PathBuf,
    #[arg(long, env = "PROMETHEUS_BIN", default_value = "prometheus")]
    prometheus: PathBuf,
    #[arg(long, env = "PROMTOOL_BIN", default_value = "promtool")]
    promtool: PathBuf,
    /// Small sizes and one run (about two minutes): a smoke test.
    #[arg(long)]
    quick: bool,
    /// Active series in the remote-write load [default: 200000; quick: 20000]
    #[arg(long, env = "BENCH_SERIES")]
    series: Option<usize>,
    /// Samples per series, 15 s apart, ending now [default: 10; quick: 5]
    #[arg(long, env = "BENCH_SAMPLES_PER_SERIES")]
    samples_per_series: Option<usize>,
    /// Samples per remote-write request.
    #[arg(long, env = "BENCH_BATCH", default_value_t = 2000)]
    batch: usize,
    /// Concurrent remote-write requests.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Remote-write runs per server; figures are medians [default: 3; quick: 1]
    #[arg(long, env = "BENCH_RUNS")]
    runs: Option<usize>,
    /// Hosts in the backfill file, about 104 series each [default: 30; quick: 5]
    #[arg(long, env = "BENCH_BACKFILL_HOSTS")]
    backfill_hosts: Option<usize>,
    /// Hours of data in the backfill file (at least 2).
    #[arg(long, env = "BENCH_BACKFILL_HOURS", default_value_t = 2)]
    backfill_hours: u32,
    #[arg(long)]
    skip_ingest: bool,
    #[arg(long)]
    skip_backfill: bool,
    /// Where data directories and logs go [default: a fresh temporary directory]
    #[arg(long, env = "BENCH_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep data directories and logs after the run.
    #[arg(long)]
    keep: bool,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Resolves a bare program name through PATH; a path must exist.
fn resolve_program(p: &Path, hint: &str) -> anyhow::Result<PathBuf> {
    if p.components().count() > 1 {
        if p.is_file() {
            return Ok(p.canonicalize()?);
        }
        bail!("{} not found; {hint}", p.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let c = dir.join(p);
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!("{} is not on PATH; {hint}", p.display())
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let mut t = o.stdout;
            t.extend(o.stderr);
            String::from_utf8_lossy(&t)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .map(|l| l[9..].trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({"cpus": cpus, "cpu_model": model, "memory": mem})
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let programs = Programs {
        skopos: resolve_program(
            &a.skopos,
            "build it with `cargo build --release -p skopos` or pass --skopos",
        )?,
        prometheus: resolve_program(
            &a.prometheus,
            "install the Debian package `prometheus` or pass --prometheus",
        )?,
        promtool: resolve_program(
            &a.promtool,
            "install the Debian package `prometheus` or pass --promtool",
        )?,
    };
    let q = a.quick;
    let cfg = bench::IngestConfig {
        series: a.series.unwrap_or(if q { 20_000 } else { 200_000 }),
        samples_per_series: a
            .samples_per_series
            .unwrap_or(if q { 5 } else { 10 })
            .max(1),
        batch: a.batch,
        concurrency: a.concurrency,
        runs: a.runs.unwrap_or(if q { 1 } else { 3 }).max(1),
        keep: a.keep,
    };
    let hosts = a.backfill_hosts.unwrap_or(if q { 5 } else { 30 }).max(1);
    if a.backfill_hours < 2 {
        bail!("--backfill-hours must be at least 2");
    }

    // The temporary directory (removed on drop unless --keep).
    let mut guard = None;
    let work = match &a.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.canonicalize()?
        }
        None => {
            let t = tempfile::Builder::new().prefix("skopos-bench-").tempdir()?;
            let p = t.path().to_path_buf();
            if !a.keep {
                guard = Some(t);
            } else {
                let _ = t.keep();
            }
            p
        }
    };

    let context = json!({
        "machine": machine(),
        "skopos": first_line(Command::new(&programs.skopos).arg("--version")),
        "skopos_git_rev": std::env::var("SKOPOS_GIT_REV").unwrap_or_else(|_| "unknown".into()),
        "prometheus": first_line(Command::new(&programs.prometheus).arg("--version")),
        "promtool": first_line(Command::new(&programs.promtool).arg("--version")),
        "ingest": {"series": cfg.series, "samples_per_series": cfg.samples_per_series, "batch": cfg.batch,
                   "concurrency": cfg.concurrency, "runs": cfg.runs, "metric_names": workload::metric_name_count()},
        "backfill": {"hosts": hosts, "series": hosts * openmetrics::series_per_host(), "hours": a.backfill_hours,
                     "scrape_interval_s": openmetrics::SCRAPE_INTERVAL_MS / 1000},
        "work_dir": work.display().to_string(),
    });
    eprintln!("{}", serde_json::to_string_pretty(&context)?);

    let mut results = bench::Results::default();
    if !a.skip_ingest {
        bench::ingest(&programs, &work, &cfg, &mut results).await?;
    }
    if !a.skip_backfill {
        eprintln!("== backfill: {hosts} hosts × {} h", a.backfill_hours);
        results.backfill = Some(bench::backfill(&programs, &work, hosts, a.backfill_hours)?);
    }

    let m = context["machine"].clone();
    println!();
    println!(
        "skopos {} (git {}) vs {} on {} × {}, {}",
        context["skopos"].as_str().unwrap_or(""),
        context["skopos_git_rev"].as_str().unwrap_or(""),
        context["prometheus"].as_str().unwrap_or(""),
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or(""),
        m["memory"].as_str().unwrap_or("")
    );
    println!();
    print!("{}", report::markdown(&results));
    if let Some(path) = &a.json {
        let v = report::json(&results, context);
        std::fs::write(path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if a.keep {
        eprintln!("kept data and logs in {}", work.display());
    }
    drop(guard);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run(a) => run(a).await,
        Cmd::GenOpenmetrics { hosts, hours, out } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let spec = openmetrics::Spec {
                hosts,
                start_ms: openmetrics::aligned_start(now, hours),
                hours,
            };
            let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
            let s = openmetrics::write(&spec, &mut w)?;
            std::io::Write::flush(&mut w)?;
            println!(
                "{} series, {} samples -> {}",
                s.series,
                s.samples,
                out.display()
            );
            Ok(())
        }
        Cmd::Load {
            url,
            series,
            samples_per_series,
            batch,
            concurrency,
        } => {
            let labels = workload::node_series(series);
            let end = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let load = workload::build_load(
                &labels,
                samples_per_series,
                openmetrics::SCRAPE_INTERVAL_MS,
                end,
                batch,
            );
            let took = bench::send_load(&bench::client()?, &url, &load, concurrency).await?;
            println!(
                "sent {} samples of {} series in {:.2}s ({:.0} samples/s)",
                load.samples,
                load.series,
                took.as_secs_f64(),
                load.samples as f64 / took.as_secs_f64()
            );
            Ok(())
        }
    }
}
