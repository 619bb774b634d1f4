//! `skopos tsdb inspect` and `skopos tsdb import`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use skopos_ingest::exposition::{self, Format};
use skopos_model::{Labels, Sample, SeriesSamples};
use skopos_tsdb::{Db, Options};

/// The metrics store lives in this folder of the data directory.
pub fn metrics_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("metrics")
}

/// The metrics store of a data directory that must already hold one.
fn existing_metrics_dir(data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = metrics_dir(data_dir);
    if !dir.exists() {
        bail!(
            "{} holds no metrics store (expected {})",
            data_dir.display(),
            dir.display()
        );
    }
    Ok(dir)
}

pub fn inspect(data_dir: &Path, output: &str) -> anyhow::Result<()> {
    let dir = existing_metrics_dir(data_dir)?;
    let report =
        skopos_tsdb::inspect(&dir).with_context(|| format!("inspecting {}", dir.display()))?;
    match output {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        "text" => println!("{report}"),
        other => bail!("-o: {other:?} is not one of text, json"),
    }
    Ok(())
}

/// Sentinel timestamp for samples that carried none.
const NO_TIMESTAMP: i64 = i64::MIN;

pub fn import(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let format = if text.trim_end().ends_with("# EOF") {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    };
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("parsing {}", file.display()));
    let mut by_series: HashMap<Labels, Vec<Sample>> = HashMap::new();
    let mut missing_timestamp: Option<Labels> = None;
    exposition::parse_each(&text, format, NO_TIMESTAMP, |labels, sample| {
        if sample.t == NO_TIMESTAMP {
            missing_timestamp.get_or_insert_with(|| labels.clone());
            return;
        }
        match by_series.get_mut(labels) {
            Some(v) => v.push(sample),
            None => {
                by_series.insert(labels.clone(), vec![sample]);
            }
        }
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    spinner.finish_and_clear();
    if let Some(labels) = missing_timestamp {
        bail!(
            "{}: sample of {labels} has no timestamp; backfilling needs one on every sample",
            file.display()
        );
    }
    let mut series: Vec<SeriesSamples> = by_series
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.t);
            samples.dedup_by_key(|s| s.t);
            SeriesSamples { labels, samples }
        })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let total: u64 = series.iter().map(|s| s.samples.len() as u64).sum();

    let dir = metrics_dir(data_dir);
    let db = Db::open(&dir, Options::default())
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} samples ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    let mut chunk = Vec::new();
    let mut in_chunk = 0u64;
    for s in series {
        in_chunk += s.samples.len() as u64;
        chunk.push(s);
        if in_chunk >= 1_000_000 {
            db.backfill(std::mem::take(&mut chunk))?;
            bar.inc(in_chunk);
            in_chunk = 0;
        }
    }
    if !chunk.is_empty() {
        db.backfill(chunk)?;
        bar.inc(in_chunk);
    }
    bar.finish_and_clear();
    db.close()?;
    println!(
        "imported {total} samples from {} into {}",
        file.display(),
        dir.display()
    );
    Ok(())
}

/// Formats a value the way Prometheus prints one, with the staleness
/// marker spelled out.
/// A `--min-time`/`--max-time` value: Unix milliseconds or RFC 3339.
pub fn parse_time_ms(flag: &str, v: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = v.trim().parse::<i64>() {
        return Ok(ms);
    }
    skopos_units::parse_rfc3339_millis(v)
        .map_err(|e| anyhow::anyhow!("{flag}: {e}; want Unix milliseconds or RFC 3339"))
}

fn format_value(v: f64) -> String {
    if skopos_model::is_stale_nan(v) {
        "StaleNaN".into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Prints raw samples, like `promtool tsdb dump`: one line per sample
/// (`text`), or one JSON object per series (`json`). The server must be
/// stopped, since this opens the store for reading and writing.
pub fn dump(
    data_dir: &Path,
    selector: &str,
    min_time: i64,
    max_time: i64,
    output: &str,
) -> anyhow::Result<()> {
    use std::io::Write;
    let matchers =
        skopos_server::parse_selector(selector).map_err(|e| anyhow::anyhow!("--match: {e}"))?;
    let dir = existing_metrics_dir(data_dir)?;
    let db = Db::open(&dir, Options::default())
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let series = db.select(&matchers, min_time, max_time)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for s in &series {
        match output {
            "json" => {
                let labels: serde_json::Map<String, serde_json::Value> = s
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone().into()))
                    .collect();
                let samples: Vec<serde_json::Value> = s
                    .samples
                    .iter()
                    .map(|p| serde_json::json!([p.t, format_value(p.v)]))
                    .collect();
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"labels": labels, "samples": samples})
                )?;
            }
            "text" => {
                for p in &s.samples {
                    writeln!(out, "{} {} {}", s.labels, format_value(p.v), p.t)?;
                }
            }
            other => bail!("-o: {other:?} is not one of text, json"),
        }
    }
    out.flush()?;
    drop(out);
    db.close()?;
    Ok(())
}
