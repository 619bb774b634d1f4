//! The state every capability's handlers share: the three stores, the
//! self-monitoring registry, authentication and limits, and the append paths
//! that count what they store. Built once by `server::start`.

use std::sync::Arc;

use skopos_ingest::otlp::Translator;
use skopos_ingest::scrape::{ScrapeConfigFile, ScrapeManager};
use skopos_model::{AppendError, AppendOutcome, LogBatch, SampleSink, WriteBatch};
use skopos_tsdb::Db;
pub(crate) use skopos_units::now_ns;

use crate::metrics::selfmon::SelfMetrics;

/// Shared state of every handler.
pub struct AppState {
    pub db: Arc<Db>,
    /// The log store (`<data-dir>/logs`).
    pub logs: Arc<skopos_logs::Store>,
    /// The trace store (`<data-dir>/traces`).
    pub traces: Arc<skopos_traces::Store>,
    /// TraceQL limits for the Tempo and Jaeger APIs.
    pub traceql: skopos_traceql::EngineOptions,
    /// Span metrics and service graph processors fed by every stored batch
    /// (`None` when `span_metrics_interval` is off).
    pub derived: Option<Arc<crate::traces::ingest::SpanDerived>>,
    pub metrics: Arc<SelfMetrics>,
    pub otlp: Translator,
    pub max_body_bytes: usize,
    pub auth_token: Option<String>,
    pub query: QueryState,
    pub metadata: crate::metrics::metadata::MetadataStore,
    /// Open `/loki/api/v1/tail` sockets, offered every stored log batch.
    pub tail: Arc<crate::logs::tail::TailHub>,
    /// Set to true when the server begins shutting down, so long-lived
    /// connections (tails) close instead of holding the shutdown up.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The scrape manager, for the targets API.
    pub scraper: Arc<ScrapeManager>,
    /// The scrape configuration in force (its `global.external_labels` go
    /// on federated series); replaced on reload.
    pub scrape_config: parking_lot::RwLock<ScrapeConfigFile>,
    /// What the status endpoints report.
    pub status: crate::metrics::status::StatusInfo,
    /// Where `POST /-/reload` and `/-/quit` go (`None` unless lifecycle
    /// requests are enabled).
    pub lifecycle: Option<tokio::sync::mpsc::UnboundedSender<Lifecycle>>,
    /// Whether the TSDB admin API answers (`--web.enable-admin-api`).
    pub admin_api: bool,
    /// Where samples, log lines and spans may land.
    pub metrics_bounds: TimeBounds,
    pub logs_bounds: TimeBounds,
    pub traces_bounds: TimeBounds,
}

/// The window a write may land in, per store: nothing older than the
/// store's retention (it would be deleted at the next maintenance, so it is
/// never acknowledged) and nothing further ahead of now than the grace (a
/// sample stamped days ahead would otherwise move the store's newest time
/// and turn every later sample into an out-of-order one).
#[derive(Debug, Clone, Copy)]
pub struct TimeBounds {
    /// Unix ns; `None` keeps everything.
    pub retention_ns: Option<i64>,
    pub future_grace_ns: i64,
}

impl TimeBounds {
    /// Why `t_ns` is refused at `now_ns`, or `None` when it is in bounds.
    pub fn check(&self, t_ns: i64, now_ns: i64) -> Option<String> {
        let at = |t: i64| skopos_units::format_rfc3339(t, skopos_units::Precision::Millis);
        let dur = |ns: i64| {
            skopos_units::format_duration(std::time::Duration::from_nanos(ns.max(0) as u64))
        };
        if let Some(r) = self.retention_ns {
            if t_ns < now_ns.saturating_sub(r) {
                return Some(format!(
                    "out of bounds: timestamp {} is older than the retention window ({} before now)",
                    at(t_ns),
                    dur(r)
                ));
            }
        }
        if t_ns > now_ns.saturating_add(self.future_grace_ns) {
            return Some(format!(
                "out of bounds: timestamp {} is too far in the future (more than {} after now, {})",
                at(t_ns),
                dur(self.future_grace_ns),
                at(now_ns)
            ));
        }
        None
    }
}

/// A lifecycle request made over HTTP, carried out by the binary (only it
/// knows the config file and the process).
#[derive(Debug)]
pub enum Lifecycle {
    /// Re-read the configuration; the answer goes back to the request.
    Reload(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Shut down gracefully.
    Quit,
}

/// What the query handlers share: engine limits and the concurrency gate.
pub struct QueryState {
    pub opts: skopos_promql::EngineOptions,
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// A store failure, classified for status codes.
pub enum StoreError {
    /// The client's data is at fault; do not retry.
    Client(String),
    /// Storage could not take the write; retry later.
    Unavailable(String),
}

impl AppState {
    /// Removes the samples outside [`AppState::metrics_bounds`]: how many,
    /// and the message for the first.
    fn drop_out_of_bounds(&self, batch: &mut WriteBatch) -> (usize, Option<String>) {
        let now = now_ns();
        let mut dropped = 0;
        let mut first = None;
        for s in &mut batch.series {
            s.samples.retain(|smp| {
                match self
                    .metrics_bounds
                    .check(smp.t.saturating_mul(1_000_000), now)
                {
                    None => true,
                    Some(why) => {
                        dropped += 1;
                        first.get_or_insert_with(|| format!("{why}: series {}", s.labels));
                        false
                    }
                }
            });
        }
        batch.series.retain(|s| !s.samples.is_empty());
        (dropped, first)
    }

    /// Appends a log batch off the async runtime, then offers it to the
    /// open tails.
    pub async fn append_logs(
        &self,
        batch: LogBatch,
    ) -> Result<Result<skopos_logs::Appended, skopos_logs::LogsError>, crate::http::panic::Panicked>
    {
        let mut batch = batch;
        let now = now_ns();
        let (mut dropped, mut first) = (0usize, None);
        for s in &mut batch.streams {
            s.entries
                .retain(|e| match self.logs_bounds.check(e.ts, now) {
                    None => true,
                    Some(why) => {
                        dropped += 1;
                        first
                            .get_or_insert_with(|| format!("entry for stream {}: {why}", s.labels));
                        false
                    }
                });
        }
        batch.streams.retain(|s| !s.entries.is_empty());
        let copy = self.tail.active().then(|| batch.clone());
        let logs = self.logs.clone();
        let result = if batch.streams.is_empty() {
            Ok(skopos_logs::Appended::default())
        } else {
            crate::http::panic::blocking_or_error("log append", move || logs.append(batch)).await?
        };
        if let (Ok(_), Some(batch)) = (&result, copy) {
            self.tail.publish(&batch);
        }
        // As Loki does: the lines in bounds are stored, the answer is a 400
        // naming the first line refused.
        if let (Ok(_), Some(why)) = (&result, first) {
            return Ok(Err(skopos_logs::LogsError::Limit(format!(
                "{dropped} of the lines were refused; {why}"
            ))));
        }
        Ok(result)
    }

    /// Appends a batch off the async runtime and counts the outcome.
    pub async fn store(
        &self,
        protocol: &'static str,
        batch: WriteBatch,
    ) -> Result<AppendOutcome, StoreError> {
        if batch.series.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let mut batch = batch;
        let (out_of_bounds, first) = self.drop_out_of_bounds(&mut batch);
        if out_of_bounds > 0 {
            self.metrics
                .rejected(protocol, "out_of_bounds", out_of_bounds);
        }
        let db = self.db.clone();
        let result = if batch.series.is_empty() {
            Ok(AppendOutcome::default())
        } else {
            crate::http::panic::blocking_or_error("sample append", move || db.append(&batch))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
        };
        match result {
            Ok(mut outcome) => {
                outcome.out_of_bounds = out_of_bounds;
                if first.is_some() {
                    outcome.first_rejection = first;
                }
                self.metrics.ingested(protocol, outcome.samples_appended);
                if outcome.too_old > 0 {
                    self.metrics.rejected(protocol, "too_old", outcome.too_old);
                }
                if outcome.conflicts > 0 {
                    self.metrics
                        .rejected(protocol, "conflict", outcome.conflicts);
                }
                Ok(outcome)
            }
            Err(e @ AppendError::SeriesLimit { .. }) => {
                self.metrics.rejected(protocol, "series_limit", 1);
                Err(StoreError::Client(e.to_string()))
            }
            Err(e) if e.is_client_error() => {
                self.metrics.rejected(protocol, "invalid_series", 1);
                Err(StoreError::Client(e.to_string()))
            }
            Err(e) => {
                self.metrics.rejected(protocol, "unavailable", 1);
                Err(StoreError::Unavailable(e.to_string()))
            }
        }
    }
}

/// Sends scraped samples to the TSDB and counts them.
pub(crate) struct CountingSink {
    pub db: Arc<Db>,
    pub metrics: Arc<SelfMetrics>,
}

impl SampleSink for CountingSink {
    fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome, AppendError> {
        let r = self.db.append(batch);
        if let Ok(o) = &r {
            self.metrics.ingested("scrape", o.samples_appended);
        }
        r
    }
}
