//! Self-monitoring: skopos' own metrics in the Prometheus text format at
//! `/metrics`, and (by default) stored in its own TSDB by a loop that renders
//! them and appends them like any scraped target with `job="skopos"`.

use skopos_model::exposition::TextWriter;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use skopos_model::{SeriesSamples, WriteBatch};
use skopos_tsdb::Db;

/// Buckets of the request latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters and histograms the handlers update. Cheap to share (`Arc`).
pub struct SelfMetrics {
    started: SystemTime,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    ingested: Mutex<BTreeMap<&'static str, u64>>,
    rejected: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    scrape_age: Mutex<Option<Instant>>,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        SelfMetrics {
            started: SystemTime::now(),
            requests: Mutex::default(),
            latency: Mutex::default(),
            ingested: Mutex::default(),
            rejected: Mutex::default(),
            scrape_age: Mutex::default(),
        }
    }
}

impl SelfMetrics {
    pub fn observe_request(&self, handler: &str, code: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .entry((handler.to_string(), code))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut lat = self.latency.lock();
        let h = lat.entry(handler.to_string()).or_default();
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Samples accepted from a protocol (`remote_write`, `otlp`, `scrape`, `self`).
    pub fn ingested(&self, protocol: &'static str, samples: usize) {
        *self.ingested.lock().entry(protocol).or_default() += samples as u64;
    }

    /// Samples or requests refused, by protocol and reason.
    pub fn rejected(&self, protocol: &'static str, reason: &'static str, n: usize) {
        *self.rejected.lock().entry((protocol, reason)).or_default() += n as u64;
    }

    /// Renders every metric in text format 0.0.4.
    pub fn render(&self, db: &Db) -> String {
        let mut w = TextWriter::new();
        w.family("skopos_build_info", "gauge", "Build information.");
        w.sample(
            "skopos_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );

        let name = "skopos_http_requests_total";
        w.family(name, "counter", "HTTP requests by handler and status code.");
        for ((handler, code), n) in self.requests.lock().iter() {
            w.sample(
                name,
                &[("handler", handler.as_str()), ("code", &code.to_string())],
                n,
            );
        }
        let name = "skopos_http_request_duration_seconds";
        w.family(name, "histogram", "HTTP request latency by handler.");
        for (handler, h) in self.latency.lock().iter() {
            let bucket = format!("{name}_bucket");
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                w.sample(
                    &bucket,
                    &[("handler", handler.as_str()), ("le", &b.to_string())],
                    h.counts[i],
                );
            }
            w.sample(
                &bucket,
                &[("handler", handler.as_str()), ("le", "+Inf")],
                h.count,
            );
            w.sample(&format!("{name}_sum"), &[("handler", handler)], h.sum);
            w.sample(&format!("{name}_count"), &[("handler", handler)], h.count);
        }
        let name = "skopos_ingest_samples_total";
        w.family(name, "counter", "Samples accepted, by protocol.");
        for (proto, n) in self.ingested.lock().iter() {
            w.sample(name, &[("protocol", proto)], n);
        }
        let name = "skopos_ingest_rejected_total";
        w.family(
            name,
            "counter",
            "Samples or requests refused, by protocol and reason.",
        );
        for ((proto, reason), n) in self.rejected.lock().iter() {
            w.sample(name, &[("protocol", proto), ("reason", reason)], n);
        }

        let s = db.stats();
        let gauges: [(&str, &str, f64); 9] = [
            (
                "skopos_tsdb_head_series",
                "Series in the in-memory head.",
                s.head_series as f64,
            ),
            (
                "skopos_tsdb_head_samples",
                "Samples in the in-memory head.",
                s.head_samples as f64,
            ),
            (
                "skopos_tsdb_head_chunks",
                "Chunks in the in-memory head.",
                s.head_chunks as f64,
            ),
            (
                "skopos_tsdb_head_min_time_seconds",
                "Oldest timestamp in the head, in Unix seconds.",
                s.head_min_t.unwrap_or(0) as f64 / 1000.0,
            ),
            (
                "skopos_tsdb_head_max_time_seconds",
                "Newest timestamp in the head, in Unix seconds.",
                s.head_max_t.unwrap_or(0) as f64 / 1000.0,
            ),
            ("skopos_tsdb_blocks", "Persisted blocks.", s.blocks as f64),
            (
                "skopos_tsdb_block_bytes",
                "Bytes of persisted blocks.",
                s.block_bytes as f64,
            ),
            (
                "skopos_tsdb_wal_segments",
                "WAL segment files.",
                s.wal_segments as f64,
            ),
            (
                "skopos_tsdb_wal_bytes",
                "Bytes of WAL on disk.",
                s.wal_bytes as f64,
            ),
        ];
        for (name, help, v) in gauges {
            w.family(name, "gauge", help);
            w.sample(name, &[], v);
        }
        let counters: [(&str, &str, u64); 11] = [
            (
                "skopos_tsdb_samples_appended_total",
                "Samples stored.",
                s.samples_appended,
            ),
            (
                "skopos_tsdb_duplicate_samples_total",
                "Exact duplicate samples ignored.",
                s.duplicates,
            ),
            (
                "skopos_tsdb_too_old_samples_total",
                "Samples refused as older than the out-of-order window.",
                s.too_old,
            ),
            (
                "skopos_tsdb_conflicting_samples_total",
                "Samples refused for a different value at a stored timestamp.",
                s.conflicts,
            ),
            (
                "skopos_tsdb_series_created_total",
                "Series created in the head.",
                s.series_created,
            ),
            (
                "skopos_tsdb_series_limit_rejections_total",
                "Batches refused by the max_series limit.",
                s.series_limit_rejections,
            ),
            (
                "skopos_tsdb_wal_fsyncs_total",
                "WAL fsync calls.",
                s.wal_fsyncs,
            ),
            (
                "skopos_tsdb_wal_corruptions_repaired_total",
                "Torn or corrupt WAL tails truncated on start.",
                s.wal_corruptions_repaired,
            ),
            (
                "skopos_tsdb_compactions_total",
                "Block compactions.",
                s.compactions,
            ),
            (
                "skopos_tsdb_head_cuts_total",
                "Blocks cut from the head.",
                s.head_cuts,
            ),
            (
                "skopos_tsdb_retention_deleted_blocks_total",
                "Blocks deleted by retention.",
                s.blocks_deleted_by_retention,
            ),
        ];
        for (name, help, v) in counters {
            w.family(name, "counter", help);
            w.sample(name, &[], v);
        }
        self.render_process(&mut w);
        w.finish()
    }

    fn render_process(&self, w: &mut TextWriter) {
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let name = "process_start_time_seconds";
        w.family(
            name,
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        w.sample(name, &[], start);
        if let Some((cpu, rss)) = proc_stat() {
            let name = "process_cpu_seconds_total";
            w.family(
                name,
                "counter",
                "Total user and system CPU time spent in seconds.",
            );
            w.sample(name, &[], cpu);
            let name = "process_resident_memory_bytes";
            w.family(name, "gauge", "Resident memory size in bytes.");
            w.sample(name, &[], rss);
        }
    }

    /// Seconds since the last self-scrape, for tests and diagnostics.
    pub fn since_last_self_scrape(&self) -> Option<Duration> {
        self.scrape_age.lock().map(|t| t.elapsed())
    }
}

/// CPU seconds and resident bytes of this process, from /proc (Linux).
fn proc_stat() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime 11, stime 12, rss 21.
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) is 100 on Linux.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some(((utime + stime) / ticks, rss_pages * 4096))
}

/// Renders the metrics and appends them to the TSDB every `interval`, with
/// `job="skopos"` and `instance` set to the listen address.
pub async fn self_scrape_loop(
    state: Arc<crate::state::AppState>,
    instance: String,
    interval: Duration,
) {
    let (metrics, db) = (state.metrics.clone(), state.db.clone());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let began = std::time::Instant::now();
        let text = metrics.render(&db);
        let parsed = match skopos_ingest::exposition::parse(
            &text,
            skopos_ingest::exposition::Format::PrometheusText,
            now,
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "self-metrics failed to parse; this is a bug");
                continue;
            }
        };
        state.metadata.record(&parsed.metadata);
        let mut batch = WriteBatch::default();
        for (labels, sample) in parsed.series {
            let mut b = labels.builder();
            b.set("job", "skopos");
            b.set("instance", instance.clone());
            batch.series.push(SeriesSamples {
                labels: b.build(),
                samples: vec![sample],
            });
        }
        // The series a Prometheus scrape adds for every target, so that
        // `up{job="skopos"}` exists as it does for Prometheus' self-scrape.
        let scraped = batch.series.len() as f64;
        for (name, v) in [
            ("up", 1.0),
            ("scrape_duration_seconds", began.elapsed().as_secs_f64()),
            ("scrape_samples_scraped", scraped),
            ("scrape_samples_post_metric_relabeling", scraped),
        ] {
            batch.series.push(SeriesSamples {
                labels: skopos_model::Labels::from_pairs([
                    ("__name__", name),
                    ("job", "skopos"),
                    ("instance", instance.as_str()),
                ]),
                samples: vec![skopos_model::Sample::new(now, v)],
            });
        }
        let n = batch.sample_count();
        let db2 = db.clone();
        match tokio::task::spawn_blocking(move || db2.append(&batch)).await {
            Ok(Ok(_)) => metrics.ingested("self", n),
            Ok(Err(e)) => tracing::warn!(error = %e, "storing self-metrics failed"),
            Err(e) => tracing::warn!(error = %e, "self-metrics task failed"),
        }
        *metrics.scrape_age.lock() = Some(Instant::now());
    }
}
