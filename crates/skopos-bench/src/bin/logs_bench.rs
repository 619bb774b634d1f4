//! Log benchmark (issue 4, section 5): a generated corpus of web access logs
//! and JSON application logs with request ids is written to disk, pushed to
//! skopos through the Loki push API, then searched through the Loki query
//! API and, for comparison, by `ripgrep` over the same raw files.
//!
//! Figures: ingestion MB of raw log text per CPU second of the server; bytes
//! stored against raw bytes; latency of a needle query (one request id over
//! the whole corpus) and of a full-scan regex count, each against ripgrep
//! on the same machine in the same run (medians).

#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use procs::{dir_bytes, Kind, Programs, Server};

#[derive(Parser, Debug)]
#[command(about = "Log ingestion and search: skopos against ripgrep over the raw files")]
struct Args {
    #[arg(long, default_value = "target/release/skopos")]
    skopos: PathBuf,
    /// Size of the generated corpus in GB (half access logs, half JSON).
    #[arg(long, default_value_t = 1.0)]
    gb: f64,
    /// Measured runs per query (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Raw bytes of lines per push request.
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: usize,
    /// Push requests in flight.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Where the corpus and the data directory go (a temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A deterministic pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATHS: [&str; 8] = [
    "/api/v1/items",
    "/api/v1/orders",
    "/api/v1/users",
    "/static/app.js",
    "/static/style.css",
    "/login",
    "/api/v1/cart",
    "/healthz",
];
const CODES: [u16; 8] = [200, 200, 200, 200, 201, 304, 404, 503];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "curl/8.4.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
];
const MESSAGES: [&str; 6] = [
    "order created",
    "payment authorized",
    "cache miss",
    "user logged in",
    "inventory reserved",
    "upstream timeout, retrying",
];
const LEVELS: [&str; 4] = ["info", "info", "debug", "warn"];

/// Where a corpus line goes: its stream (index into `streams`), time and text.
struct Corpus {
    dir: PathBuf,
    files: Vec<(PathBuf, String)>,
    start_ns: i64,
    span_ns: i64,
    lines: u64,
    bytes: u64,
    needle: String,
}

fn request_id(r: &mut Rng) -> String {
    format!("{:016x}{:016x}", r.next(), r.next())
}

/// Writes `access.log` and `app.ndjson` under `dir`, about `bytes` in all,
/// and picks a request id that occurs once as the needle.
fn generate(dir: &Path, bytes: u64) -> anyhow::Result<Corpus> {
    fs::create_dir_all(dir)?;
    let span_ns: i64 = 6 * 3_600 * 1_000_000_000;
    let start_ns = now_ns() - span_ns - 60_000_000_000;
    let mut r = Rng(42);
    let mut needle = String::new();
    let (mut lines, mut total) = (0u64, 0u64);
    let mut files = Vec::new();
    for (name, job) in [("access.log", "access"), ("app.ndjson", "app")] {
        let path = dir.join(name);
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let target = bytes / 2;
        let mut written = 0u64;
        // Times spread over the span by bytes written, so they keep rising
        // whatever the line lengths.
        while written < target {
            let ts = start_ns + (span_ns as f64 * written as f64 / target as f64) as i64;
            let rid = request_id(&mut r);
            let line = if job == "access" {
                format!(
                    "10.{}.{}.{} - - [{}] \"GET {}/{} HTTP/1.1\" {} {} \"-\" \"{}\" rt={}.{:03} req={}",
                    r.below(256),
                    r.below(256),
                    r.below(256),
                    ts / 1_000_000_000,
                    PATHS[r.below(8) as usize],
                    r.below(100_000),
                    CODES[r.below(8) as usize],
                    r.below(50_000),
                    AGENTS[r.below(3) as usize],
                    r.below(3),
                    r.below(1000),
                    rid
                )
            } else {
                format!(
                    "{{\"ts\":{},\"level\":\"{}\",\"msg\":\"{}\",\"request_id\":\"{}\",\"user_id\":{},\"duration_ms\":{},\"service\":\"checkout\"}}",
                    ts,
                    LEVELS[r.below(4) as usize],
                    MESSAGES[r.below(6) as usize],
                    rid,
                    r.below(1_000_000),
                    r.below(5_000)
                )
            };
            if job == "app" && needle.is_empty() && written >= target / 2 {
                needle = rid.clone();
            }
            // The time travels in a prefix the pusher strips: `<ns> <line>`.
            writeln!(w, "{ts} {line}")?;
            written += line.len() as u64 + 1;
            lines += 1;
        }
        w.flush()?;
        total += written;
        files.push((path, job.to_string()));
    }
    if needle.is_empty() {
        bail!("corpus too small to pick a needle");
    }
    Ok(Corpus {
        dir: dir.to_path_buf(),
        files,
        start_ns,
        span_ns,
        lines,
        bytes: total,
        needle,
    })
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Writes the corpus without the time prefix, as the raw files ripgrep reads.
fn write_raw(c: &Corpus) -> anyhow::Result<PathBuf> {
    let raw = c.dir.join("raw");
    fs::create_dir_all(&raw)?;
    for (path, _) in &c.files {
        let out = raw.join(path.file_name().context("file name")?);
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&out)?);
        for line in BufReader::with_capacity(1 << 20, File::open(path)?).lines() {
            let line = line?;
            let (_, text) = line.split_once(' ').context("time prefix")?;
            writeln!(w, "{text}")?;
        }
        w.flush()?;
    }
    Ok(raw)
}

fn json_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Loki push bodies of about `batch_bytes` of lines each, 4 streams a file.
fn bodies(c: &Corpus, batch_bytes: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (path, job) in &c.files {
        let mut streams: Vec<String> = vec![String::new(); 4];
        let mut size = 0usize;
        let flush = |streams: &mut Vec<String>, out: &mut Vec<String>| {
            let mut body = String::from("{\"streams\":[");
            let mut first = true;
            for (k, values) in streams.iter_mut().enumerate() {
                if values.is_empty() {
                    continue;
                }
                if !first {
                    body.push(',');
                }
                first = false;
                body.push_str(&format!(
                    "{{\"stream\":{{\"job\":\"{job}\",\"host\":\"host-{k}\"}},\"values\":[{values}]}}"
                ));
                values.clear();
            }
            body.push_str("]}");
            out.push(body);
        };
        for (i, line) in BufReader::with_capacity(1 << 20, File::open(path)?)
            .lines()
            .enumerate()
        {
            let line = line?;
            let (ts, text) = line.split_once(' ').context("time prefix")?;
            let s = &mut streams[i % 4];
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str("[\"");
            s.push_str(ts);
            s.push_str("\",\"");
            json_escape(text, s);
            s.push_str("\"]");
            size += text.len();
            if size >= batch_bytes {
                flush(&mut streams, &mut out);
                size = 0;
            }
        }
        if size > 0 {
            flush(&mut streams, &mut out);
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `rg` with `args` over `dir`; returns (matching lines, seconds).
fn ripgrep(args: &[&str], dir: &Path) -> anyhow::Result<(u64, f64)> {
    let t0 = Instant::now();
    let out = Command::new("rg")
        .args(args)
        .arg("--count")
        .arg("--no-filename")
        .arg(dir)
        .output()
        .context("cannot run rg (ripgrep)")?;
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() && out.status.code() != Some(1) {
        bail!("rg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let n = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum();
    Ok((n, secs))
}

async fn loki_get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> anyhow::Result<(serde_json::Value, f64)> {
    let t0 = Instant::now();
    let resp = client
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    let secs = t0.elapsed().as_secs_f64();
    if !status.is_success() {
        bail!("{path}: {status}: {body}");
    }
    Ok((serde_json::from_str(&body)?, secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp;
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let corpus_bytes = (args.gb * 1e9) as u64;
    println!("generating {:.2} GB of logs", args.gb);
    let corpus = generate(&work.join("corpus"), corpus_bytes)?;
    let raw_dir = write_raw(&corpus)?;
    let raw_bytes = dir_bytes(&raw_dir)?;
    println!(
        "corpus: {} lines, {:.1} MB of line text ({:.1} MB on disk as raw files)",
        corpus.lines,
        corpus.bytes as f64 / 1e6,
        raw_bytes as f64 / 1e6
    );
    let bodies = bodies(&corpus, args.batch_bytes)?;
    let programs = Programs {
        skopos: args.skopos.clone(),
        prometheus: PathBuf::from("prometheus"),
        promtool: PathBuf::from("promtool"),
    };
    let data = work.join("skopos-logs");
    let _ = fs::remove_dir_all(&data);
    let client = reqwest::Client::new();
    let mut server = Server::start(&programs, Kind::Skopos, &data, "logs")?;
    server
        .wait_ready(&client, Instant::now(), Duration::from_secs(60))
        .await?;
    let base = server.base_url();

    // Ingestion.
    let cpu0 = server.cpu_seconds()?;
    let t0 = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for body in bodies {
        while in_flight.len() >= args.concurrency {
            in_flight.join_next().await.context("join")???;
        }
        let (client, url) = (client.clone(), format!("{base}/loki/api/v1/push"));
        in_flight.spawn(async move {
            let resp = client
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await?;
            if resp.status().as_u16() != 204 {
                bail!("push: {}: {}", resp.status(), resp.text().await?);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds()? - cpu0;
    let mb = corpus.bytes as f64 / 1e6;
    println!(
        "ingestion: {mb:.0} MB in {wall:.1} s wall, {cpu:.1} s CPU: {:.1} MB/s per core ({:.1} MB/s wall)",
        mb / cpu,
        mb / wall
    );
    // A restart: the head is flushed to compressed, indexed segments.
    server.stop(Duration::from_secs(300)).await?;
    let stored = dir_bytes(&data.join("logs"))?;
    println!(
        "stored: {:.1} MB for {:.1} MB of lines: {:.3} of raw",
        stored as f64 / 1e6,
        mb,
        stored as f64 / corpus.bytes as f64
    );
    let mut server = Server::start(&programs, Kind::Skopos, &data, "logs2")?;
    server
        .wait_ready(&client, Instant::now(), Duration::from_secs(120))
        .await?;
    let base = server.base_url();
    let start = corpus.start_ns.to_string();
    let end = (corpus.start_ns + corpus.span_ns + 1).to_string();

    // Needle: one request id over everything.
    let needle_q = format!("{{job=~\".+\"}} |= \"{}\"", corpus.needle);
    let mut sk = Vec::new();
    let mut found = 0;
    for run in 0..=args.runs {
        let (v, secs) = loki_get(
            &client,
            &base,
            "/loki/api/v1/query_range",
            &[
                ("query", needle_q.clone()),
                ("start", start.clone()),
                ("end", end.clone()),
                ("limit", "100".into()),
            ],
        )
        .await?;
        found = v["data"]["result"].as_array().map_or(0, |r| {
            r.iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum()
        });
        if run > 0 {
            sk.push(secs);
        }
    }
    let mut rg = Vec::new();
    let mut rg_found = 0;
    for run in 0..=args.runs {
        let (n, secs) = ripgrep(&["-F", &corpus.needle], &raw_dir)?;
        rg_found = n;
        if run > 0 {
            rg.push(secs);
        }
    }
    let (sk_needle, rg_needle) = (median(sk), median(rg));
    println!(
        "needle ({} lines, rg {}): skopos {:.1} ms, ripgrep {:.1} ms: ripgrep / skopos = {:.1}x",
        found,
        rg_found,
        sk_needle * 1e3,
        rg_needle * 1e3,
        rg_needle / sk_needle
    );

    // Full scan: count the 5xx access lines with a regex.
    let re = r#"HTTP/1.1" 5[0-9][0-9] "#;
    let range_s = corpus.span_ns / 1_000_000_000 + 120;
    let scan_q = format!("sum(count_over_time({{job=\"access\"}} |~ `{re}` [{range_s}s]))");
    let mut sk = Vec::new();
    let mut count = String::new();
    for run in 0..=args.runs {
        let (v, secs) = loki_get(
            &client,
            &base,
            "/loki/api/v1/query",
            &[("query", scan_q.clone()), ("time", end.clone())],
        )
        .await?;
        count = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("0")
            .to_string();
        if run > 0 {
            sk.push(secs);
        }
    }
    let mut rg = Vec::new();
    let mut rg_count = 0;
    for run in 0..=args.runs {
        let (n, secs) = ripgrep(&["-e", re], &raw_dir)?;
        rg_count = n;
        if run > 0 {
            rg.push(secs);
        }
    }
    let (sk_scan, rg_scan) = (median(sk), median(rg));
    println!(
        "full-scan regex ({count} lines, rg {rg_count}): skopos {:.0} ms, ripgrep {:.0} ms: skopos / ripgrep = {:.2}x",
        sk_scan * 1e3,
        rg_scan * 1e3,
        sk_scan / rg_scan
    );
    server.stop(Duration::from_secs(60)).await?;
    Ok(())
}
