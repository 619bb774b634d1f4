//! The Prometheus-compatible scraper: `scrape_configs` in, samples out
//! through a [`SampleSink`].
//!
//! Shape: one tokio task per job does target discovery (static targets and
//! `file_sd_configs`) and keeps one task per target running; each target
//! task scrapes at a stable offset within its interval (derived from a hash
//! of the target), so timestamps are evenly spaced and successive samples of
//! a target are exactly one interval apart. Reconfiguration goes through
//! the same path as startup: [`ScrapeManager::apply`] hands each job its new
//! config; targets that stay keep their state (no staleness gap), targets
//! that go away are stopped.
//!
//! Staleness follows Prometheus: a series present in the previous scrape and
//! absent from the current one gets a [`STALE_NAN`] sample at the scrape
//! time; when a scrape fails, all series of the previous scrape go stale
//! while `up` becomes 0 and the other synthetic series are still written;
//! when a target is stopped, its scraped series *and* its synthetic series
//! (including `up`) go stale. Series exposed with their own timestamp are
//! exempt from staleness markers, as in Prometheus. One deliberate
//! difference: when a whole job is removed, Prometheus writes no markers
//! (its series linger for the 5-minute lookback), skopos marks them stale
//! like any other stopped target. `tests/real_prometheus.rs` compares the
//! markers of both.
//!
//! `global.external_labels` is parsed but not applied to stored samples: as
//! in Prometheus, external labels are for talking to *other* systems.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use skopos_model::{Labels, Sample, SampleSink, WriteBatch, METRIC_NAME, STALE_NAN};
use skopos_units::now_ms;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::exposition::{self, Format};
use crate::relabel;

mod config;
mod discovery;

use config::{build_client, client_builder, JobClient, JobConfig};
pub use config::{
    parse_duration, parse_size, Authorization, BasicAuth, FileSdConfig, GlobalConfig, ScrapeConfig,
    ScrapeConfigFile, Secret, TargetGroup, TlsConfig,
};
use discovery::{populate, FileSdCache, Target};

// ---------------------------------------------------------------------------
// Status

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// What the targets API shows for one active target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStatus {
    pub job: String,
    pub scrape_url: String,
    /// Labels after relabelling, as attached to scraped series.
    pub labels: Labels,
    /// Labels before relabelling (including `__` labels).
    pub discovered_labels: Labels,
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Duration,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    /// TYPE, HELP and UNIT of the families of the last successful scrape,
    /// for the metadata APIs.
    pub metadata: Arc<Vec<crate::MetricMetadata>>,
}

// ---------------------------------------------------------------------------
// Manager

/// Status of every active target, keyed by (job, target key).
type StatusMap = BTreeMap<(String, String), Arc<Mutex<TargetStatus>>>;

struct Inner {
    sink: Arc<dyn SampleSink>,
    client: reqwest::Client,
    jobs: Mutex<HashMap<String, JobHandle>>,
    statuses: Mutex<StatusMap>,
    file_check_interval: Duration,
    /// The runtime the manager was created in, for `apply` calls made
    /// from outside any runtime (a signal-handling thread, say).
    runtime: Option<tokio::runtime::Handle>,
}

struct JobHandle {
    cfg_tx: watch::Sender<Arc<JobConfig>>,
    stop_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs scrape jobs. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct ScrapeManager {
    inner: Arc<Inner>,
}

/// How often file_sd files are checked for changes by default.
pub const DEFAULT_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

impl ScrapeManager {
    pub fn new(sink: Arc<dyn SampleSink>) -> Self {
        Self::with_file_check_interval(sink, DEFAULT_FILE_CHECK_INTERVAL)
    }

    /// Like [`new`](Self::new) with a different file_sd change-check period.
    pub fn with_file_check_interval(
        sink: Arc<dyn SampleSink>,
        file_check_interval: Duration,
    ) -> Self {
        let client = client_builder()
            .build()
            .expect("the HTTP client builds with static settings");
        ScrapeManager {
            inner: Arc::new(Inner {
                sink,
                client,
                jobs: Mutex::new(HashMap::new()),
                statuses: Mutex::new(BTreeMap::new()),
                file_check_interval,
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// (Re)configures: starts new jobs, hands changed configs to running
    /// jobs, stops jobs no longer present (their series go stale). Runs the
    /// jobs on the current tokio runtime, or else on the one the manager was
    /// created in; with neither, it logs an error and starts nothing. The
    /// file should have passed
    /// [`ScrapeConfigFile::validate`].
    pub fn apply(&self, file: &ScrapeConfigFile) {
        let mut jobs = self.inner.jobs.lock();
        let mut wanted = HashSet::new();
        for sc in &file.scrape_configs {
            wanted.insert(sc.job_name.clone());
            let mut cfg = JobConfig::resolve(sc, &file.global);
            match build_client(sc) {
                Ok(c) => cfg.client = JobClient(c),
                Err(e) => {
                    // validate() reports this; keep whatever runs now.
                    tracing::error!(job = %sc.job_name, error = %e, "cannot configure scrape job");
                    continue;
                }
            }
            let cfg = Arc::new(cfg);
            if let Some(h) = jobs.get(&sc.job_name) {
                if **h.cfg_tx.borrow() != *cfg {
                    let _ = h.cfg_tx.send(cfg);
                }
                continue;
            }
            let (cfg_tx, cfg_rx) = watch::channel(cfg);
            let (stop_tx, stop_rx) = watch::channel(false);
            let Some(rt) = tokio::runtime::Handle::try_current()
                .ok()
                .or_else(|| self.inner.runtime.clone())
            else {
                tracing::error!(job = %sc.job_name, "no tokio runtime to run the scrape job on");
                continue;
            };
            let task = rt.spawn(run_job(
                self.inner.clone(),
                sc.job_name.clone(),
                cfg_rx,
                stop_rx,
            ));
            jobs.insert(
                sc.job_name.clone(),
                JobHandle {
                    cfg_tx,
                    stop_tx,
                    task,
                },
            );
        }
        let gone: Vec<String> = jobs
            .keys()
            .filter(|j| !wanted.contains(*j))
            .cloned()
            .collect();
        for name in gone {
            if let Some(h) = jobs.remove(&name) {
                let _ = h.stop_tx.send(true);
                // The job task finishes on its own, writing stale markers.
                drop(h.task);
            }
        }
    }

    /// The active targets of all jobs, ordered by job then URL.
    pub fn targets(&self) -> Vec<TargetStatus> {
        self.inner
            .statuses
            .lock()
            .values()
            .map(|s| s.lock().clone())
            .collect()
    }

    /// Stops every job and waits until their final stale markers are written.
    pub async fn stop(&self) {
        let handles: Vec<JobHandle> = self.inner.jobs.lock().drain().map(|(_, h)| h).collect();
        for h in &handles {
            let _ = h.stop_tx.send(true);
        }
        for h in handles {
            let _ = h.task.await;
        }
    }
}

impl Drop for ScrapeManager {
    /// Signals every job to stop (they write their stale markers on the
    /// runtime); call [`stop`](Self::stop) to wait for that.
    fn drop(&mut self) {
        for h in self.inner.jobs.lock().values() {
            let _ = h.stop_tx.send(true);
        }
    }
}

struct TargetHandle {
    status: Arc<Mutex<TargetStatus>>,
    cfg_tx: watch::Sender<Arc<JobConfig>>,
    stop_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn run_job(
    inner: Arc<Inner>,
    job: String,
    mut cfg_rx: watch::Receiver<Arc<JobConfig>>,
    mut stop_rx: watch::Receiver<bool>,
) {
    let mut targets: HashMap<String, TargetHandle> = HashMap::new();
    let mut cache = FileSdCache::new();
    loop {
        let cfg = cfg_rx.borrow_and_update().clone();
        let mut groups = cfg.sc.static_configs.clone();
        if !cfg.sc.file_sd_configs.is_empty() {
            groups.extend(cache.refresh(&cfg.sc.file_sd_configs, &job));
        }
        let mut desired: BTreeMap<String, Target> = BTreeMap::new();
        for g in &groups {
            for addr in &g.targets {
                match populate(addr, &g.labels, &cfg) {
                    Ok(Some(t)) => {
                        desired.insert(t.key(), t);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(job = %job, target = %addr, error = %e, "dropping target")
                    }
                }
            }
        }
        // Stop targets that went away.
        let gone: Vec<String> = targets
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        let mut stopping = Vec::new();
        for k in gone {
            let h = targets.remove(&k).unwrap();
            let _ = h.stop_tx.send(true);
            stopping.push((k, h));
        }
        // Update or start the rest.
        for (k, t) in desired {
            match targets.get(&k) {
                Some(h) => {
                    if **h.cfg_tx.borrow() != *cfg {
                        let _ = h.cfg_tx.send(cfg.clone());
                    }
                }
                None => {
                    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let status = Arc::new(Mutex::new(TargetStatus {
                        job: job.clone(),
                        scrape_url: t.url.clone(),
                        labels: t.labels.clone(),
                        discovered_labels: t.discovered.clone(),
                        health: Health::Unknown,
                        last_error: String::new(),
                        last_scrape: None,
                        last_scrape_duration: Duration::ZERO,
                        scrape_interval: t.interval,
                        scrape_timeout: t.timeout,
                        metadata: Arc::default(),
                    }));
                    inner
                        .statuses
                        .lock()
                        .insert((job.clone(), k.clone()), status.clone());
                    let task = tokio::spawn(run_target(
                        inner.clone(),
                        Arc::new(t),
                        cfg_rx,
                        stop_rx,
                        status.clone(),
                    ));
                    targets.insert(
                        k,
                        TargetHandle {
                            status,
                            cfg_tx,
                            stop_tx,
                            task,
                        },
                    );
                }
            }
        }
        for (key, h) in stopping {
            let _ = h.task.await;
            forget_status(&inner, &job, &key, &h.status);
        }
        tokio::select! {
            r = stop_rx.changed() => if r.is_err() || *stop_rx.borrow() { break },
            r = cfg_rx.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(inner.file_check_interval), if !cfg.sc.file_sd_configs.is_empty() => {}
        }
    }
    for h in targets.values() {
        let _ = h.stop_tx.send(true);
    }
    for (key, h) in targets.drain() {
        let _ = h.task.await;
        forget_status(&inner, &job, &key, &h.status);
    }
}

/// Removes a stopped target's status, unless a newer task (the same job
/// re-added meanwhile) has already replaced it.
fn forget_status(inner: &Inner, job: &str, key: &str, status: &Arc<Mutex<TargetStatus>>) {
    let mut statuses = inner.statuses.lock();
    let k = (job.to_string(), key.to_string());
    if statuses.get(&k).is_some_and(|s| Arc::ptr_eq(s, status)) {
        statuses.remove(&k);
    }
}

/// The stable offset of a target within its interval.
fn offset_ms(key: &str, interval_ms: i64) -> i64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % interval_ms.max(1) as u64) as i64
}

/// The first time `>= after` that is `offset` past a multiple of `interval`.
fn next_slot(after: i64, interval: i64, offset: i64) -> i64 {
    let rem = (after - offset).rem_euclid(interval);
    if rem == 0 {
        after
    } else {
        after + interval - rem
    }
}

const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn with_name(labels: &Labels, name: &str) -> Labels {
    let mut b = labels.builder();
    b.set(METRIC_NAME, name);
    b.build()
}

async fn run_target(
    inner: Arc<Inner>,
    target: Arc<Target>,
    mut cfg_rx: watch::Receiver<Arc<JobConfig>>,
    mut stop_rx: watch::Receiver<bool>,
    status: Arc<Mutex<TargetStatus>>,
) {
    let key = target.key();
    // Series of the last successful scrape; true = tracked for staleness.
    let mut prev: HashMap<Labels, bool> = HashMap::new();
    let mut last_ts: Option<i64> = None;
    loop {
        let cfg = cfg_rx.borrow_and_update().clone();
        let interval = (target.interval.as_millis() as i64).max(1);
        let offset = offset_ms(&key, interval);
        let earliest = last_ts.map_or_else(now_ms, |t| (t + interval).max(now_ms()));
        let slot = next_slot(earliest, interval, offset);
        let wait = Duration::from_millis((slot - now_ms()).max(0) as u64);
        tokio::select! {
            r = stop_rx.changed() => if r.is_err() || *stop_rx.borrow() { break },
            r = cfg_rx.changed() => { if r.is_err() { break } continue },
            _ = tokio::time::sleep(wait) => {}
        }
        // Timestamps are the slot, unless the task woke up very late.
        let ts = if now_ms() - slot < 1000 {
            slot
        } else {
            now_ms()
        };
        last_ts = Some(ts);
        let started = Instant::now();
        let wall = SystemTime::now();
        let client = cfg.client.0.as_ref().unwrap_or(&inner.client);
        let outcome = match fetch(client, &target.url, target.timeout, &cfg).await {
            Ok((body, format)) => process(&body, format, ts, &target, &cfg),
            Err(e) => Err(e),
        };
        let duration = started.elapsed();
        let mut batch = WriteBatch::default();
        let (up, scraped, post, added, error) = match outcome {
            Ok(res) => {
                // Series with their own timestamp are not tracked for
                // staleness, as in Prometheus.
                let current: HashMap<Labels, bool> = res
                    .series
                    .iter()
                    .map(|(l, s)| (l.clone(), s.t == ts))
                    .collect();
                let added = current.keys().filter(|l| !prev.contains_key(*l)).count();
                for (l, s) in res.series {
                    batch.push(l, s);
                }
                for (gone, _) in prev
                    .iter()
                    .filter(|(l, tracked)| **tracked && !current.contains_key(*l))
                {
                    batch.push(gone.clone(), Sample::new(ts, STALE_NAN));
                }
                prev = current;
                status.lock().metadata = Arc::new(res.metadata);
                (1.0, res.scraped, res.post_relabel, added, String::new())
            }
            Err(e) => {
                for (gone, tracked) in prev.drain() {
                    if tracked {
                        batch.push(gone, Sample::new(ts, STALE_NAN));
                    }
                }
                (0.0, 0, 0, 0, e)
            }
        };
        let values = [
            up,
            duration.as_secs_f64(),
            scraped as f64,
            post as f64,
            added as f64,
        ];
        for (name, v) in REPORT_NAMES.iter().zip(values) {
            batch.push(with_name(&target.labels, name), Sample::new(ts, v));
        }
        // The status is updated before the samples are stored, so whoever
        // sees the samples also sees the status they came with.
        {
            let mut st = status.lock();
            st.health = if up == 1.0 { Health::Up } else { Health::Down };
            st.last_error = error.clone();
            st.last_scrape = Some(wall);
            st.last_scrape_duration = duration;
        }
        if !error.is_empty() {
            tracing::debug!(url = %target.url, error = %error, "scrape failed");
        }
        if let Err(e) = append(&inner, batch).await {
            let mut st = status.lock();
            if st.last_error.is_empty() {
                st.last_error = format!("storing scraped samples failed: {e}");
            }
        }
    }
    // Stopped: everything this target wrote goes stale.
    let ts = now_ms().max(last_ts.map_or(i64::MIN, |t| t + 1));
    let mut batch = WriteBatch::default();
    for (l, tracked) in prev.drain() {
        if tracked {
            batch.push(l, Sample::new(ts, STALE_NAN));
        }
    }
    if last_ts.is_some() {
        for name in REPORT_NAMES {
            batch.push(with_name(&target.labels, name), Sample::new(ts, STALE_NAN));
        }
    }
    if !batch.series.is_empty() {
        let _ = append(&inner, batch).await;
    }
}

async fn append(inner: &Arc<Inner>, batch: WriteBatch) -> Result<(), String> {
    let sink = inner.sink.clone();
    let res = tokio::task::spawn_blocking(move || sink.append(&batch))
        .await
        .map_err(|e| format!("append task failed: {e}"))?;
    match res {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "storing scraped samples failed");
            Err(e.to_string())
        }
    }
}

/// Accept header: OpenMetrics preferred, then text 0.0.4.
pub const ACCEPT_HEADER: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// Scrape bodies larger than this are refused.
const MAX_BODY: usize = 256 << 20;

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    cfg: &JobConfig,
) -> Result<(String, Format), String> {
    let mut req = client
        .get(url)
        .header(reqwest::header::ACCEPT, ACCEPT_HEADER)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        )
        .timeout(timeout);
    if let Some(a) = &cfg.sc.authorization {
        let creds = match (&a.credentials, &a.credentials_file) {
            (Some(c), _) => c.0.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    format!(
                        "cannot read authorization credentials_file {}: {e}",
                        path.display()
                    )
                })?
                .trim()
                .to_string(),
            (None, None) => String::new(),
        };
        let kind = a.type_.as_deref().unwrap_or("Bearer");
        req = req.header(reqwest::header::AUTHORIZATION, format!("{kind} {creds}"));
    } else if let Some(tok) = &cfg.sc.bearer_token {
        req = req.bearer_auth(&tok.0);
    } else if let Some(path) = &cfg.sc.bearer_token_file {
        let tok = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read bearer_token_file {}: {e}", path.display()))?;
        req = req.bearer_auth(tok.trim());
    } else if let Some(ba) = &cfg.sc.basic_auth {
        let pw = match (&ba.password, &ba.password_file) {
            (Some(p), _) => Some(p.0.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        req = req.basic_auth(&ba.username, pw);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| describe_reqwest_error(&e, timeout))?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let limit = match cfg.sc.body_size_limit {
        Some(l) if l > 0 => (l as usize).min(MAX_BODY),
        _ => MAX_BODY,
    };
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| describe_reqwest_error(&e, timeout))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!(
                "body size limit exceeded: the body is larger than {limit} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let text =
        String::from_utf8(body).map_err(|e| format!("scrape body is not valid UTF-8: {e}"))?;
    Ok((text, exposition::format_from_content_type(&ct)))
}

fn describe_reqwest_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("scrape timed out after {timeout:?}")
    } else {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        msg
    }
}

struct ScrapeResult {
    series: Vec<(Labels, Sample)>,
    scraped: usize,
    post_relabel: usize,
    metadata: Vec<crate::MetricMetadata>,
}

/// Merges target labels into scraped labels (`honor_labels` semantics).
fn merge_target_labels(scraped: &Labels, target: &Labels, honor: bool) -> Labels {
    let mut b = scraped.builder();
    for tl in target {
        match scraped.get(&tl.name) {
            Some(_) if honor => {}
            Some(existing) => {
                let mut name = format!("exported_{}", tl.name);
                while scraped.get(&name).is_some() || target.get(&name).is_some() {
                    name = format!("exported_{name}");
                }
                b.set(name, existing);
                b.set(tl.name.clone(), tl.value.clone());
            }
            None => {
                b.set(tl.name.clone(), tl.value.clone());
            }
        }
    }
    b.build()
}

/// The per-series label limits; breaking one fails the whole scrape.
fn check_label_limits(l: &Labels, sc: &ScrapeConfig) -> Result<(), String> {
    let name: String = l.metric_name().unwrap_or("").chars().take(50).collect();
    if sc.label_limit > 0 && l.len() > sc.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {name}, number of labels: {}, limit: {})",
            l.len(),
            sc.label_limit
        ));
    }
    for x in l {
        if sc.label_name_length_limit > 0 && x.name.len() > sc.label_name_length_limit {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {name}, label name: {:.50}, length: {}, limit: {})",
                x.name,
                x.name.len(),
                sc.label_name_length_limit
            ));
        }
        if sc.label_value_length_limit > 0 && x.value.len() > sc.label_value_length_limit {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {name}, label name: {:.50}, value: {:.50}, length: {}, limit: {})",
                x.name,
                x.value,
                x.value.len(),
                sc.label_value_length_limit
            ));
        }
    }
    Ok(())
}

fn process(
    body: &str,
    format: Format,
    ts: i64,
    target: &Target,
    cfg: &JobConfig,
) -> Result<ScrapeResult, String> {
    let parsed =
        exposition::parse(body, format, ts).map_err(|e| format!("parsing scrape body: {e}"))?;
    let scraped = parsed.series.len();
    let mut seen = HashSet::with_capacity(scraped);
    let mut series = Vec::with_capacity(scraped);
    for (labels, mut sample) in parsed.series {
        if !cfg.sc.honor_timestamps {
            sample.t = ts;
        }
        let merged = merge_target_labels(&labels, &target.labels, cfg.sc.honor_labels);
        let Some(out) = relabel::process(merged, &cfg.sc.metric_relabel_configs) else {
            continue;
        };
        if out.metric_name().is_none_or(str::is_empty) {
            continue;
        }
        check_label_limits(&out, &cfg.sc)?;
        // A duplicate series within one scrape: the first one wins.
        if seen.insert(out.clone()) {
            series.push((out, sample));
        }
    }
    if cfg.sc.sample_limit > 0 && series.len() > cfg.sc.sample_limit {
        return Err(format!(
            "sample_limit exceeded: {} samples after metric relabelling, limit is {}",
            series.len(),
            cfg.sc.sample_limit
        ));
    }
    Ok(ScrapeResult {
        post_relabel: series.len(),
        series,
        scraped,
        metadata: parsed.metadata,
    })
}

#[cfg(test)]
mod tests;
