//! The agent's own counters and gauges, rendered in the Prometheus text
//! exposition format on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Per-source counters.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    pub name: String,
    pub kind: &'static str,
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub parse_errors: AtomicU64,
    pub lines_truncated: AtomicU64,
    pub files_tailed: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    pub containers_followed: AtomicU64,
}

/// Shipping counters, shared by the whole agent.
#[derive(Debug, Default)]
pub struct Metrics {
    pub sources: Vec<Arc<SourceMetrics>>,
    pub lines_shipped: AtomicU64,
    pub bytes_shipped: AtomicU64,
    pub batches_shipped: AtomicU64,
    pub send_failures: AtomicU64,
    pub send_retries: AtomicU64,
    pub batches_dropped: AtomicU64,
    pub lines_dropped: AtomicU64,
    pub batches_buffered: AtomicU64,
    pub buffer_bytes: AtomicU64,
    pub buffer_batches: AtomicU64,
    pub buffer_corrupt: AtomicU64,
    pub buffer_full_waits: AtomicU64,
}

pub fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

impl Metrics {
    /// Lines read by all sources.
    pub fn lines_read_total(&self) -> u64 {
        self.sources
            .iter()
            .map(|s| s.lines_read.load(Relaxed))
            .sum()
    }

    pub fn render(&self) -> String {
        let mut w = skopos_model::exposition::TextWriter::new();
        type Get = fn(&SourceMetrics) -> &AtomicU64;
        let per_source: [(&str, &str, &str, Get, Option<&str>); 8] = [
            (
                "skopos_agent_lines_read_total",
                "counter",
                "Lines read from a source.",
                |s| &s.lines_read,
                None,
            ),
            (
                "skopos_agent_bytes_read_total",
                "counter",
                "Bytes of lines read from a source.",
                |s| &s.bytes_read,
                None,
            ),
            (
                "skopos_agent_parse_errors_total",
                "counter",
                "Lines that did not parse as the source's format (shipped unchanged).",
                |s| &s.parse_errors,
                None,
            ),
            (
                "skopos_agent_lines_truncated_total",
                "counter",
                "Lines longer than max_line_bytes, truncated.",
                |s| &s.lines_truncated,
                Some("file"),
            ),
            (
                "skopos_agent_files_tailed",
                "gauge",
                "Files being tailed.",
                |s| &s.files_tailed,
                Some("file"),
            ),
            (
                "skopos_agent_file_rotations_total",
                "counter",
                "Files rotated away by rename or deletion.",
                |s| &s.rotations,
                Some("file"),
            ),
            (
                "skopos_agent_file_truncations_total",
                "counter",
                "Files truncated in place (copytruncate); read again from 0.",
                |s| &s.truncations,
                Some("file"),
            ),
            (
                "skopos_agent_containers_followed",
                "gauge",
                "Containers whose logs are followed.",
                |s| &s.containers_followed,
                Some("docker"),
            ),
        ];
        for (name, kind, help, get, only) in per_source {
            w.family(name, kind, help);
            for s in self
                .sources
                .iter()
                .filter(|s| only.is_none_or(|k| k == s.kind))
            {
                w.sample(
                    name,
                    &[("source", s.name.as_str()), ("type", s.kind)],
                    get(s).load(Relaxed),
                );
            }
        }
        let global: [(&str, &str, &str, &AtomicU64); 13] = [
            (
                "skopos_agent_lines_shipped_total",
                "counter",
                "Lines in batches the server acknowledged.",
                &self.lines_shipped,
            ),
            (
                "skopos_agent_bytes_shipped_total",
                "counter",
                "Bytes of lines in batches the server acknowledged.",
                &self.bytes_shipped,
            ),
            (
                "skopos_agent_batches_shipped_total",
                "counter",
                "Batches the server acknowledged.",
                &self.batches_shipped,
            ),
            (
                "skopos_agent_send_failures_total",
                "counter",
                "Push requests that failed (any reason).",
                &self.send_failures,
            ),
            (
                "skopos_agent_send_retries_total",
                "counter",
                "Push requests that were retries of a buffered batch.",
                &self.send_retries,
            ),
            (
                "skopos_agent_batches_dropped_total",
                "counter",
                "Batches the server refused permanently (4xx other than 429), dropped.",
                &self.batches_dropped,
            ),
            (
                "skopos_agent_lines_dropped_total",
                "counter",
                "Lines in dropped batches.",
                &self.lines_dropped,
            ),
            (
                "skopos_agent_batches_buffered_total",
                "counter",
                "Batches written to the disk buffer.",
                &self.batches_buffered,
            ),
            (
                "skopos_agent_buffer_bytes",
                "gauge",
                "Bytes in the disk buffer.",
                &self.buffer_bytes,
            ),
            (
                "skopos_agent_buffer_batches",
                "gauge",
                "Batches in the disk buffer.",
                &self.buffer_batches,
            ),
            (
                "skopos_agent_buffer_corrupt_total",
                "counter",
                "Buffered batches that failed their checksum, dropped.",
                &self.buffer_corrupt,
            ),
            (
                "skopos_agent_buffer_full_total",
                "counter",
                "Times reading paused because the disk buffer was full.",
                &self.buffer_full_waits,
            ),
            ("skopos_agent_up", "gauge", "Always 1.", &AtomicU64::new(1)),
        ];
        for (name, kind, help, v) in global {
            w.family(name, kind, help);
            w.sample(name, &[], v.load(Relaxed));
        }
        w.finish()
    }
}

/// Serves `/metrics` on an already bound listener until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("metrics server failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_source_labels() {
        let s = Arc::new(SourceMetrics {
            name: "app".into(),
            kind: "file",
            ..Default::default()
        });
        inc(&s.lines_read, 3);
        let m = Metrics {
            sources: vec![s],
            ..Default::default()
        };
        inc(&m.lines_shipped, 2);
        let text = m.render();
        assert!(
            text.contains("skopos_agent_lines_read_total{source=\"app\",type=\"file\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("skopos_agent_lines_shipped_total 2\n"));
        assert!(text.contains("# TYPE skopos_agent_buffer_bytes gauge\n"));
        assert!(!text.contains("skopos_agent_containers_followed{"));
    }
}
