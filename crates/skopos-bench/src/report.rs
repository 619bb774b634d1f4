//! The table of figures and ratios, as Markdown (readable as plain text),
//! and the same figures as JSON.

use std::fmt::Write;

use serde_json::{json, Value};

use crate::bench::{IngestRun, Results};

pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn med(runs: &[IngestRun], f: impl Fn(&IngestRun) -> f64) -> f64 {
    median(runs.iter().map(f).collect())
}

/// One figure: name, unit, skopos, Prometheus, goal on the ratio.
pub struct Figure {
    pub name: &'static str,
    pub unit: &'static str,
    pub skopos: f64,
    pub prometheus: f64,
    pub goal: f64,
}

impl Figure {
    pub fn ratio(&self) -> f64 {
        self.skopos / self.prometheus
    }
}

pub fn figures(r: &Results) -> Vec<Figure> {
    let mut out = Vec::new();
    let (s, p) = (&r.skopos_runs, &r.prometheus_runs);
    if !s.is_empty() && !p.is_empty() {
        out.push(Figure {
            name: "ingestion CPU (remote write)",
            unit: "CPU s / 1M samples",
            skopos: med(s, IngestRun::cpu_per_million),
            prometheus: med(p, IngestRun::cpu_per_million),
            goal: 0.5,
        });
        out.push(Figure {
            name: "resident memory per active series",
            unit: "bytes / series",
            skopos: med(s, IngestRun::rss_per_series),
            prometheus: med(p, IngestRun::rss_per_series),
            goal: 0.5,
        });
    }
    if let Some((sk, pr)) = &r.backfill {
        out.push(Figure {
            name: "disk after backfill (blocks)",
            unit: "bytes / sample",
            skopos: sk.bytes_per_sample(),
            prometheus: pr.bytes_per_sample(),
            goal: 0.7,
        });
    }
    if !s.is_empty() && !p.is_empty() {
        out.push(Figure {
            name: "restart until /-/ready (WAL replay)",
            unit: "seconds",
            skopos: med(s, |x| x.restart_seconds),
            prometheus: med(p, |x| x.restart_seconds),
            goal: 1.0,
        });
    }
    out
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| figure | unit | skopos | Prometheus | skopos / Prometheus | goal | met |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|");
    for f in figures(r) {
        let ratio = f.ratio();
        let met = if !ratio.is_finite() {
            "n/a"
        } else if ratio <= f.goal {
            "yes"
        } else {
            "no"
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} | ≤ {} | {met} |",
            f.name,
            f.unit,
            num(f.skopos),
            num(f.prometheus),
            ratio,
            f.goal
        );
    }
    let (sk, pr) = (&r.skopos_runs, &r.prometheus_runs);
    if !sk.is_empty() && !pr.is_empty() {
        let _ = writeln!(s);
        if sk.len() > 1 {
            let _ = writeln!(
                s,
                "Details of the remote-write runs (medians of {} runs; each run in brackets):",
                sk.len()
            );
        } else {
            let _ = writeln!(s, "Details of the remote-write run (one run):");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "| | skopos | Prometheus |");
        let _ = writeln!(s, "|---|---:|---:|");
        type Row = (&'static str, fn(&IngestRun) -> f64);
        let rows: [Row; 10] = [
            ("series", |x| x.series as f64),
            ("samples", |x| x.samples as f64),
            ("CPU seconds for the load", |x| x.cpu_seconds),
            ("wall seconds for the load", |x| x.wall_seconds),
            ("idle RSS (MB)", |x| x.idle_rss as f64 / 1e6),
            ("RSS after the load (MB)", |x| x.loaded_rss as f64 / 1e6),
            ("peak RSS, VmHWM (MB)", |x| x.peak_rss as f64 / 1e6),
            ("graceful stop (s)", |x| x.stop_seconds),
            ("data dir once stopped (MB)", |x| {
                x.stopped_dir_bytes as f64 / 1e6
            }),
            ("restart until ready (s)", |x| x.restart_seconds),
        ];
        for (name, f) in rows {
            let cell = |runs: &[IngestRun]| {
                let each: Vec<String> = runs.iter().map(|x| num(f(x))).collect();
                if runs.len() > 1 {
                    format!("{} [{}]", num(med(runs, f)), each.join(", "))
                } else {
                    num(med(runs, f))
                }
            };
            let _ = writeln!(s, "| {name} | {} | {} |", cell(sk), cell(pr));
        }
    }
    if let Some((sk, pr)) = &r.backfill {
        let _ = writeln!(s);
        let _ = writeln!(s, "Details of the backfill:");
        let _ = writeln!(s);
        let _ = writeln!(s, "| | skopos | Prometheus (promtool) |");
        let _ = writeln!(s, "|---|---:|---:|");
        let _ = writeln!(
            s,
            "| samples in the file | {} | {} |",
            sk.samples, pr.samples
        );
        let rep = |x: Option<u64>| {
            x.map(|n| n.to_string())
                .unwrap_or_else(|| "not reported".into())
        };
        let _ = writeln!(
            s,
            "| samples the store reports | {} | {} |",
            rep(sk.reported_samples),
            rep(pr.reported_samples)
        );
        let _ = writeln!(s, "| blocks | {} | {} |", sk.blocks, pr.blocks);
        let _ = writeln!(s, "| block bytes | {} | {} |", sk.bytes, pr.bytes);
        let _ = writeln!(
            s,
            "| import wall seconds | {} | {} |",
            num(sk.import_seconds),
            num(pr.import_seconds)
        );
    }
    s
}

pub fn json(r: &Results, context: Value) -> Value {
    let run = |x: &IngestRun| {
        json!({
            "series": x.series, "samples": x.samples, "cpu_seconds": x.cpu_seconds,
            "wall_seconds": x.wall_seconds, "idle_rss": x.idle_rss, "loaded_rss": x.loaded_rss,
            "peak_rss": x.peak_rss, "stop_seconds": x.stop_seconds, "stopped_dir_bytes": x.stopped_dir_bytes,
            "restart_seconds": x.restart_seconds,
        })
    };
    let figs: Vec<Value> = figures(r)
        .iter()
        .map(|f| {
            json!({"name": f.name, "unit": f.unit, "skopos": f.skopos, "prometheus": f.prometheus,
                   "ratio": f.ratio(), "goal": f.goal})
        })
        .collect();
    let backfill = r.backfill.as_ref().map(|(sk, pr)| {
        let b = |x: &crate::bench::BackfillResult| {
            json!({"bytes": x.bytes, "samples": x.samples, "reported_samples": x.reported_samples,
                   "blocks": x.blocks, "import_seconds": x.import_seconds})
        };
        json!({"skopos": b(sk), "prometheus": b(pr)})
    });
    json!({
        "context": context,
        "figures": figs,
        "ingest_runs": {
            "skopos": r.skopos_runs.iter().map(run).collect::<Vec<_>>(),
            "prometheus": r.prometheus_runs.iter().map(run).collect::<Vec<_>>(),
        },
        "backfill": backfill,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
