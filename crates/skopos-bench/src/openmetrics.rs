//! The backfill workload: an OpenMetrics file with timestamps holding a
//! realistic mix of counters (irregular increments, occasional resets when
//! the "application" restarts), gauges (noise around a level) and classic
//! histograms (`_bucket`/`_sum`/`_count`), scraped every 15 s.
//!
//! The file is family-major (OpenMetrics forbids interleaving families), and
//! within a family each series lists its samples in time order, which both
//! `promtool tsdb create-blocks-from openmetrics` and `skopos tsdb import`
//! read.

use std::io::{self, Write};

use crate::workload::Rng;

pub const SCRAPE_INTERVAL_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;

/// Buckets of the request-duration histogram, as OpenMetrics spells them.
const LE: &[(&str, f64)] = &[
    ("0.005", 0.005),
    ("0.01", 0.01),
    ("0.025", 0.025),
    ("0.05", 0.05),
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1.0", 1.0),
    ("2.5", 2.5),
    ("5.0", 5.0),
    ("10.0", 10.0),
    ("+Inf", f64::INFINITY),
];
const CPUS: usize = 4;
const MODES: &[&str] = &[
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const NET: &[&str] = &["eth0", "eth1", "lo"];
/// Handlers: path, requests per scrape interval (mean), median latency (s).
/// The health check is polled at a fixed rate, as a load balancer does.
const HANDLERS: &[(&str, u64, f64)] = &[
    ("/api/v1/orders", 60, 0.08),
    ("/api/v1/users", 200, 0.03),
    ("/healthz", 0, 0.002),
];
const HEALTHZ_PER_INTERVAL: u64 = 3;
const CODES: &[&str] = &["200", "404", "500"];
const MOUNTS: &[(&str, &str)] = &[
    ("/dev/nvme0n1p2", "/"),
    ("/dev/sda1", "/var"),
    ("/dev/sdb1", "/data"),
];
const SENSORS: &[&str] = &["temp1", "temp2", "temp3", "temp4"];

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub hosts: usize,
    /// Start of the data, ms since the epoch.
    pub start_ms: i64,
    pub hours: u32,
}

/// What was generated.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub series: u64,
    pub samples: u64,
    pub counters: u64,
    pub gauges: u64,
    pub histogram_series: u64,
}

/// Series per host, for sizing.
pub fn series_per_host() -> usize {
    CPUS * MODES.len()
        + 2 * NET.len()
        + HANDLERS.len() * CODES.len()
        + GAUGES.len()
        + CONSTANT_GAUGES.iter().map(|g| g.1.len()).sum::<usize>()
        + 2
        + MOUNTS.len()
        + SENSORS.len()
        + HANDLERS.len() * (LE.len() + 2)
}

/// Plain gauges: name, level, relative noise, decimals, step (values are
/// multiples of it when decimals is 0).
const GAUGES: &[(&str, f64, f64, usize, f64)] = &[
    ("node_memory_MemAvailable_bytes", 6.0e9, 0.05, 0, 4096.0),
    ("node_memory_Cached_bytes", 2.0e9, 0.02, 0, 4096.0),
    ("process_resident_memory_bytes", 1.5e8, 0.03, 0, 4096.0),
    ("go_memstats_heap_alloc_bytes", 6.0e7, 0.3, 0, 8.0),
    ("go_goroutines", 120.0, 0.1, 0, 1.0),
    ("node_procs_running", 3.0, 0.6, 0, 1.0),
];

/// Gauges that stay put: name, label sets (beyond instance and job), value.
const CONSTANT_GAUGES: &[(&str, &[&str], f64)] = &[
    ("node_memory_MemTotal_bytes", &[""], 8_340_000_768.0),
    ("node_boot_time_seconds", &[""], 1_764_000_000.0),
    (
        "node_filesystem_size_bytes",
        &[
            "device=\"/dev/nvme0n1p2\",fstype=\"ext4\",mountpoint=\"/\"",
            "device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/var\"",
            "device=\"/dev/sdb1\",fstype=\"ext4\",mountpoint=\"/data\"",
        ],
        107_374_182_400.0,
    ),
    (
        "node_network_up",
        &["device=\"eth0\"", "device=\"eth1\"", "device=\"lo\""],
        1.0,
    ),
];

/// Start aligned so the data fills whole Prometheus blocks: the largest
/// block range (2h · 3^k) that fits in `hours`, and its alignment.
pub fn block_hours(hours: u32) -> u32 {
    let mut b = 2;
    while b * 3 <= hours {
        b *= 3;
    }
    b
}

/// A start time about two days before `now_ms`, aligned to the block range.
pub fn aligned_start(now_ms: i64, hours: u32) -> i64 {
    let range = block_hours(hours) as i64 * HOUR_MS;
    let base = now_ms - 48 * HOUR_MS - hours as i64 * HOUR_MS;
    base.div_euclid(range) * range
}

/// A log-normal latency around `median` (normal deviate from twelve uniforms).
fn latency(rng: &mut Rng, median: f64) -> f64 {
    let z: f64 = (0..12).map(|_| rng.unit()).sum::<f64>() - 6.0;
    median * (0.8 * z).exp()
}

/// Requests in one scrape interval for a handler.
fn requests(rng: &mut Rng, mean: u64) -> u64 {
    if mean == 0 {
        HEALTHZ_PER_INTERVAL
    } else {
        mean / 2 + rng.below(mean + 1)
    }
}

struct Host {
    instance: String,
    /// Scrape timestamps of this host (its own phase, a few ms of jitter).
    ts: Vec<i64>,
    /// Sample index at which the application restarted, if it did.
    restart_at: Option<usize>,
}

fn fmt_ts(t: i64) -> String {
    format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000))
}

/// Writes the OpenMetrics file and returns what is in it.
pub fn write(spec: &Spec, out: &mut impl Write) -> io::Result<Summary> {
    let n = (spec.hours as i64 * HOUR_MS / SCRAPE_INTERVAL_MS) as usize;
    let mut rng = Rng::new(0x0e_be_11);
    let hosts: Vec<Host> = (0..spec.hosts)
        .map(|h| {
            let phase = 5 + rng.below(SCRAPE_INTERVAL_MS as u64 - 10) as i64;
            let ts = (0..n)
                .map(|i| {
                    // Prometheus aligns scrape timestamps within 2 ms, so most
                    // land exactly on the interval; a late scrape does not.
                    let jitter = if rng.below(10) == 0 {
                        rng.below(20) as i64
                    } else {
                        0
                    };
                    spec.start_ms + phase + i as i64 * SCRAPE_INTERVAL_MS + jitter
                })
                .collect();
            let restart_at =
                (rng.below(3) == 0).then(|| 1 + rng.below(n.max(2) as u64 - 1) as usize);
            Host {
                instance: format!("host-{h}:9100"),
                ts,
                restart_at,
            }
        })
        .collect();
    let mut sum = Summary::default();

    // Counter: CPU seconds, two decimals, per cpu and mode; never resets.
    writeln!(out, "# TYPE node_cpu_seconds counter")?;
    writeln!(out, "# UNIT node_cpu_seconds seconds")?;
    writeln!(
        out,
        "# HELP node_cpu_seconds Seconds the CPUs spent in each mode."
    )?;
    for host in &hosts {
        for cpu in 0..CPUS {
            for mode in MODES {
                let share = match *mode {
                    "idle" => 0.8,
                    "user" => 0.12,
                    "system" => 0.05,
                    "iowait" => 0.02,
                    _ => 0.002,
                };
                let mut v = rng.below(10_000_000) as f64 / 100.0 * share;
                for &t in &host.ts {
                    v += ((15.0 * share * (0.5 + rng.unit())) * 100.0).round() / 100.0;
                    writeln!(
                        out,
                        "node_cpu_seconds_total{{cpu=\"{cpu}\",instance=\"{}\",job=\"node\",mode=\"{mode}\"}} {v:.2} {}",
                        host.instance,
                        fmt_ts(t)
                    )?;
                }
                sum.counters += 1;
            }
        }
    }

    // Counters: network bytes, integers, bursty.
    for dir in ["receive", "transmit"] {
        writeln!(out, "# TYPE node_network_{dir}_bytes counter")?;
        for host in &hosts {
            for dev in NET {
                let mut v = rng.below(1 << 40);
                for &t in &host.ts {
                    let burst = if rng.below(20) == 0 { 50 } else { 1 };
                    v += rng.below(200_000) * burst;
                    writeln!(
                        out,
                        "node_network_{dir}_bytes_total{{device=\"{dev}\",instance=\"{}\",job=\"node\"}} {v} {}",
                        host.instance,
                        fmt_ts(t)
                    )?;
                }
                sum.counters += 1;
            }
        }
    }

    // Counter: application requests; resets to zero when the app restarts.
    writeln!(out, "# TYPE http_requests counter")?;
    for host in &hosts {
        for &(handler, mean, _) in HANDLERS {
            for code in CODES {
                let mut v = rng.below(1_000_000);
                for (i, &t) in host.ts.iter().enumerate() {
                    if host.restart_at == Some(i) {
                        v = 0;
                    }
                    // Nearly all 200; an error now and then.
                    let n = requests(&mut rng, mean);
                    v += match *code {
                        "200" => n,
                        "404" => u64::from(rng.below(100) < n.min(100) / 10),
                        _ => u64::from(rng.below(1000) < n.min(1000) / 10),
                    };
                    writeln!(
                        out,
                        "http_requests_total{{code=\"{code}\",handler=\"{handler}\",instance=\"{}\",job=\"node\",method=\"GET\"}} {v} {}",
                        host.instance,
                        fmt_ts(t)
                    )?;
                }
                sum.counters += 1;
            }
        }
    }

    // Gauges: noise around a level.
    for &(name, level, noise, decimals, step) in GAUGES {
        writeln!(out, "# TYPE {name} gauge")?;
        for host in &hosts {
            let base = level * (0.5 + rng.unit());
            for &t in &host.ts {
                let v = base * (1.0 + noise * (rng.unit() - 0.5) * 2.0);
                let v = (v / step).round() * step;
                writeln!(
                    out,
                    "{name}{{instance=\"{}\",job=\"node\"}} {v:.decimals$} {}",
                    host.instance,
                    fmt_ts(t)
                )?;
            }
            sum.gauges += 1;
        }
    }
    // Gauges that do not change, as many node exporter series do.
    for &(name, extra, value) in CONSTANT_GAUGES {
        writeln!(out, "# TYPE {name} gauge")?;
        for (h, host) in hosts.iter().enumerate() {
            for (k, labels) in extra.iter().enumerate() {
                let v = value * (1 + (h + k) % 4) as f64;
                let sep = if labels.is_empty() { "" } else { "," };
                for &t in &host.ts {
                    writeln!(
                        out,
                        "{name}{{{labels}{sep}instance=\"{}\",job=\"node\"}} {v} {}",
                        host.instance,
                        fmt_ts(t)
                    )?;
                }
                sum.gauges += 1;
            }
        }
    }
    // Gauges: load averages, two decimals, smoothed.
    writeln!(out, "# TYPE node_load1 gauge")?;
    for host in &hosts {
        let mut v = rng.unit() * 4.0;
        for &t in &host.ts {
            v = (v * 0.8 + rng.unit() * 4.0 * 0.2).max(0.0);
            writeln!(
                out,
                "node_load1{{instance=\"{}\",job=\"node\"}} {v:.2} {}",
                host.instance,
                fmt_ts(t)
            )?;
        }
        sum.gauges += 1;
    }
    writeln!(out, "# TYPE node_load15 gauge")?;
    for host in &hosts {
        let mut v = rng.unit() * 4.0;
        for &t in &host.ts {
            v = (v * 0.98 + rng.unit() * 4.0 * 0.02).max(0.0);
            writeln!(
                out,
                "node_load15{{instance=\"{}\",job=\"node\"}} {v:.2} {}",
                host.instance,
                fmt_ts(t)
            )?;
        }
        sum.gauges += 1;
    }
    // Gauges: filesystem space, slowly filling, changes in 4 KiB steps.
    writeln!(out, "# TYPE node_filesystem_avail_bytes gauge")?;
    for host in &hosts {
        for (dev, mount) in MOUNTS {
            let mut v = (rng.below(500_000_000) + 1_000_000) * 4096;
            for &t in &host.ts {
                if rng.below(4) == 0 {
                    v = v.saturating_sub(rng.below(2000) * 4096);
                }
                writeln!(
                    out,
                    "node_filesystem_avail_bytes{{device=\"{dev}\",fstype=\"ext4\",instance=\"{}\",job=\"node\",mountpoint=\"{mount}\"}} {v} {}",
                    host.instance,
                    fmt_ts(t)
                )?;
            }
            sum.gauges += 1;
        }
    }
    // Gauges: temperatures, whole degrees, mostly flat.
    writeln!(out, "# TYPE node_hwmon_temp_celsius gauge")?;
    for host in &hosts {
        for sensor in SENSORS {
            let mut v = 40.0 + rng.below(20) as f64;
            for &t in &host.ts {
                match rng.below(10) {
                    0 => v += 1.0,
                    1 => v -= 1.0,
                    _ => {}
                }
                writeln!(
                    out,
                    "node_hwmon_temp_celsius{{chip=\"platform_coretemp_0\",instance=\"{}\",job=\"node\",sensor=\"{sensor}\"}} {v} {}",
                    host.instance,
                    fmt_ts(t)
                )?;
            }
            sum.gauges += 1;
        }
    }

    // Classic histogram: request durations per handler; resets with the app.
    writeln!(out, "# TYPE http_request_duration_seconds histogram")?;
    writeln!(out, "# UNIT http_request_duration_seconds seconds")?;
    for host in &hosts {
        for &(handler, mean, median) in HANDLERS {
            // Observations before the window: a sample of them, scaled up.
            let before = rng.below(100_000) as f64;
            let mut buckets = [0u64; 12];
            let mut total_sum = 0.0;
            for _ in 0..1000 {
                let l = latency(&mut rng, median);
                total_sum += l * before / 1000.0;
                for (b, (_, le)) in buckets.iter_mut().zip(LE) {
                    if l <= *le {
                        *b += 1;
                    }
                }
            }
            for b in buckets.iter_mut() {
                *b = (*b as f64 * before / 1000.0).round() as u64;
            }
            let mut rows: Vec<([u64; 12], f64)> = Vec::with_capacity(host.ts.len());
            for i in 0..host.ts.len() {
                if host.restart_at == Some(i) {
                    buckets = [0; 12];
                    total_sum = 0.0;
                }
                for _ in 0..requests(&mut rng, mean) {
                    let l = latency(&mut rng, median);
                    total_sum += l;
                    for (b, (_, le)) in buckets.iter_mut().zip(LE) {
                        if l <= *le {
                            *b += 1;
                        }
                    }
                }
                rows.push((buckets, total_sum));
            }
            // A classic histogram's metric point: all buckets, sum, count.
            for (i, (b, s)) in rows.iter().enumerate() {
                let ts = fmt_ts(host.ts[i]);
                let lbl = format!(
                    "handler=\"{handler}\",instance=\"{}\",job=\"node\"",
                    host.instance
                );
                for (k, (le, _)) in LE.iter().enumerate() {
                    writeln!(
                        out,
                        "http_request_duration_seconds_bucket{{{lbl},le=\"{le}\"}} {} {ts}",
                        b[k]
                    )?;
                }
                writeln!(out, "http_request_duration_seconds_sum{{{lbl}}} {s} {ts}")?;
                writeln!(
                    out,
                    "http_request_duration_seconds_count{{{lbl}}} {} {ts}",
                    b[LE.len() - 1]
                )?;
            }
            sum.histogram_series += LE.len() as u64 + 2;
        }
    }
    writeln!(out, "# EOF")?;
    sum.series = sum.counters + sum.gauges + sum.histogram_series;
    sum.samples = sum.series * n as u64;
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skopos_ingest::exposition::{parse, Format};

    #[test]
    fn file_parses_as_openmetrics_with_every_sample() {
        let spec = Spec {
            hosts: 2,
            start_ms: aligned_start(1_700_000_000_000, 2),
            hours: 2,
        };
        let mut buf = Vec::new();
        let s = write(&spec, &mut buf).unwrap();
        assert_eq!(s.series as usize, 2 * series_per_host());
        assert_eq!(s.samples, s.series * 480);
        let text = String::from_utf8(buf).unwrap();
        let parsed = parse(&text, Format::OpenMetrics, i64::MIN).unwrap();
        assert_eq!(parsed.series.len() as u64, s.samples);
        let end = spec.start_ms + 2 * HOUR_MS;
        assert!(parsed
            .series
            .iter()
            .all(|(_, x)| x.t >= spec.start_ms && x.t < end));
    }

    #[test]
    fn start_is_aligned_to_the_block_range() {
        assert_eq!(block_hours(2), 2);
        assert_eq!(block_hours(5), 2);
        assert_eq!(block_hours(6), 6);
        assert_eq!(aligned_start(1_700_000_000_000, 6) % (6 * HOUR_MS), 0);
    }
}
