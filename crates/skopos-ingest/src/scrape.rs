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
//! exempt from staleness markers, as in Prometheus.
//!
//! `global.external_labels` is parsed but not applied to stored samples: as
//! in Prometheus, external labels are for talking to *other* systems.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer};
use skopos_model::{Labels, LabelsBuilder, Sample, SampleSink, WriteBatch, METRIC_NAME, STALE_NAN};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::exposition::{self, Format};
use crate::relabel::{self, RelabelConfig};

// ---------------------------------------------------------------------------
// Configuration

/// A Prometheus duration (`15s`, `1m`, `1h30m`, `100ms`, `1d`).
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = Option::<serde_yaml_ng::Value>::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(serde_yaml_ng::Value::Number(n)) => Ok(n.as_u64()),
        Some(serde_yaml_ng::Value::String(s)) => {
            parse_size(&s).map(Some).map_err(serde::de::Error::custom)
        }
        Some(other) => Err(serde::de::Error::custom(format!("invalid size {other:?}"))),
    }
}

/// Parses a Prometheus byte size (`512KB`, `10MB`, `1GB`; powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. \"10MB\")"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {s:?} (expected B, KB, MB, GB or TB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses a Prometheus duration string.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration {s:?}: {e} (expected e.g. \"15s\", \"1m\", \"1h30m\")")
    })
}

/// A secret string: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A Prometheus configuration file; keys other than `global` and
/// `scrape_configs` (rule_files, alerting, ...) are ignored here.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct ScrapeConfigFile {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GlobalConfig {
    #[serde(deserialize_with = "de_duration")]
    pub scrape_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub scrape_timeout: Duration,
    pub external_labels: BTreeMap<String, String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            external_labels: BTreeMap::new(),
        }
    }
}

/// One `scrape_configs` entry. Prometheus options skopos does not
/// implement (other service discoveries, native histogram settings, ...)
/// are accepted and reported by [`ScrapeConfigFile::warnings`]; names that
/// Prometheus does not know either are an error (a typo).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub scrape_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub scrape_timeout: Option<Duration>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub static_configs: Vec<TargetGroup>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Maximum samples per scrape after metric relabelling; 0 = no limit.
    #[serde(default)]
    pub sample_limit: usize,
    /// Maximum labels per series (including `__name__`); 0 = no limit.
    #[serde(default)]
    pub label_limit: usize,
    #[serde(default)]
    pub label_name_length_limit: usize,
    #[serde(default)]
    pub label_value_length_limit: usize,
    /// Maximum uncompressed body size, e.g. `10MB` (powers of 1024);
    /// absent or 0 = the built-in cap of 256MiB.
    #[serde(default, deserialize_with = "de_opt_size")]
    pub body_size_limit: Option<u64>,
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// `authorization: { type: Bearer, credentials | credentials_file }`.
    #[serde(default)]
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// Ask for gzip-compressed bodies (default true).
    #[serde(default = "default_true")]
    pub enable_compression: bool,
    /// Every other key, checked by [`ScrapeConfigFile::validate`].
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Defaults to `Bearer`.
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    #[serde(default)]
    pub credentials: Option<Secret>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// TLS settings for https targets. Client certificates and `server_name`
/// are not supported (accepted and ignored, see
/// [`ScrapeConfigFile::warnings`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct TlsConfig {
    /// PEM file with the CA certificates that sign the targets' certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml_ng::Value>,
}

/// Prometheus scrape_config keys that skopos accepts but ignores.
const UNSUPPORTED_KEYS: &[&str] = &[
    "track_timestamps_staleness",
    "scrape_protocols",
    "fallback_scrape_protocol",
    "scrape_classic_histograms",
    "always_scrape_classic_histograms",
    "convert_classic_histograms_to_nhcb",
    "scrape_native_histograms",
    "native_histogram_bucket_limit",
    "native_histogram_min_bucket_factor",
    "oauth2",
    "enable_http2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "http_headers",
    "target_limit",
    "keep_dropped_targets",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "scrape_failure_log_file",
];

fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// A static target group, or one entry of a file_sd file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct TargetGroup {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths or globs (`*` in the file name) of JSON (`.json`) or YAML
    /// (`.yml`, `.yaml`) target group files.
    pub files: Vec<String>,
    #[serde(default = "default_refresh", deserialize_with = "de_duration")]
    pub refresh_interval: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

impl ScrapeConfigFile {
    /// Parses and validates a YAML configuration.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let f: ScrapeConfigFile = serde_yaml_ng::from_str(text)
            .map_err(|e| format!("invalid scrape configuration: {e}"))?;
        f.validate()?;
        Ok(f)
    }

    /// Checks what serde cannot: unique job names, timeout within interval,
    /// schemes, paths.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = HashSet::new();
        for sc in &self.scrape_configs {
            if sc.job_name.is_empty() {
                return Err("a scrape config has an empty job_name".into());
            }
            if !seen.insert(&sc.job_name) {
                return Err(format!(
                    "found multiple scrape configs with job name {:?}",
                    sc.job_name
                ));
            }
            let r = JobConfig::resolve(sc, &self.global);
            if r.interval.is_zero() {
                return Err(format!(
                    "job {:?}: scrape_interval must be greater than 0",
                    sc.job_name
                ));
            }
            if r.timeout > r.interval {
                return Err(format!(
                    "job {:?}: scrape_timeout {:?} is greater than scrape_interval {:?}",
                    sc.job_name, r.timeout, r.interval
                ));
            }
            if sc.scheme != "http" && sc.scheme != "https" {
                return Err(format!(
                    "job {:?}: scheme must be http or https, not {:?}",
                    sc.job_name, sc.scheme
                ));
            }
            if !sc.metrics_path.starts_with('/') {
                return Err(format!(
                    "job {:?}: metrics_path {:?} must start with '/'",
                    sc.job_name, sc.metrics_path
                ));
            }
            if sc.bearer_token.is_some() && sc.bearer_token_file.is_some() {
                return Err(format!(
                    "job {:?}: at most one of bearer_token and bearer_token_file",
                    sc.job_name
                ));
            }
            let auths = [
                sc.bearer_token.is_some() || sc.bearer_token_file.is_some(),
                sc.basic_auth.is_some(),
                sc.authorization.is_some(),
            ];
            if auths.iter().filter(|a| **a).count() > 1 {
                return Err(format!(
                    "job {:?}: at most one of basic_auth, authorization and bearer_token may be set",
                    sc.job_name
                ));
            }
            if let Some(a) = &sc.authorization {
                if a.credentials.is_some() && a.credentials_file.is_some() {
                    return Err(format!(
                        "job {:?}: authorization has both credentials and credentials_file",
                        sc.job_name
                    ));
                }
            }
            for key in sc.other.keys() {
                if !UNSUPPORTED_KEYS.contains(&key.as_str()) && !key.ends_with("_sd_configs") {
                    return Err(format!(
                        "job {:?}: unknown field `{key}` in scrape config",
                        sc.job_name
                    ));
                }
            }
            build_client(sc).map_err(|e| format!("job {:?}: {e}", sc.job_name))?;
        }
        Ok(())
    }

    /// Prometheus options present in the file that skopos ignores; worth
    /// logging at startup.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sc in &self.scrape_configs {
            for key in sc.other.keys() {
                out.push(format!(
                    "job {:?}: `{key}` is not supported by skopos and is ignored",
                    sc.job_name
                ));
            }
            if let Some(tls) = &sc.tls_config {
                for key in tls.other.keys() {
                    out.push(format!(
                        "job {:?}: tls_config `{key}` is not supported by skopos and is ignored",
                        sc.job_name
                    ));
                }
            }
        }
        out
    }
}

/// A scrape config with the global defaults filled in.
#[derive(Debug, Clone, PartialEq)]
struct JobConfig {
    sc: ScrapeConfig,
    interval: Duration,
    timeout: Duration,
    /// The client for jobs with their own TLS/redirect/compression settings.
    client: JobClient,
}

/// An HTTP client built from a config; equal configs give equivalent
/// clients, so it takes no part in comparisons.
#[derive(Clone, Default)]
struct JobClient(Option<reqwest::Client>);

impl PartialEq for JobClient {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for JobClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "custom" } else { "shared" })
    }
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(concat!("skopos/", env!("CARGO_PKG_VERSION")))
}

/// A dedicated client when the job's settings differ from the shared
/// client's (`Ok(None)`).
fn build_client(sc: &ScrapeConfig) -> Result<Option<reqwest::Client>, String> {
    let tls = sc.tls_config.clone().unwrap_or_default();
    if tls.ca_file.is_none()
        && !tls.insecure_skip_verify
        && sc.follow_redirects
        && sc.enable_compression
    {
        return Ok(None);
    }
    let mut b = client_builder();
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read tls_config.ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "tls_config.ca_file {} holds no valid PEM certificates: {e}",
                path.display()
            )
        })?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    if !sc.follow_redirects {
        b = b.redirect(reqwest::redirect::Policy::none());
    }
    if !sc.enable_compression {
        b = b.no_gzip();
    }
    b.build()
        .map(Some)
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl JobConfig {
    fn resolve(sc: &ScrapeConfig, global: &GlobalConfig) -> JobConfig {
        let interval = sc.scrape_interval.unwrap_or(global.scrape_interval);
        // Like Prometheus: the timeout defaults to the global one, capped by the interval.
        let timeout = sc
            .scrape_timeout
            .unwrap_or_else(|| global.scrape_timeout.min(interval));
        JobConfig {
            sc: sc.clone(),
            interval,
            timeout,
            client: JobClient::default(),
        }
    }
}

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
}

// ---------------------------------------------------------------------------
// Targets

/// One target after discovery and relabelling.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    labels: Labels,
    discovered: Labels,
    url: String,
    /// From `__scrape_interval__`/`__scrape_timeout__` after relabelling.
    interval: Duration,
    timeout: Duration,
}

impl Target {
    fn key(&self) -> String {
        format!(
            "{} {} {}/{}",
            self.url,
            self.labels,
            self.interval.as_millis(),
            self.timeout.as_millis()
        )
    }
}

/// Builds a target from a discovered address and group labels, as
/// Prometheus' `PopulateLabels` does. `Ok(None)` = dropped by relabelling.
fn populate(
    addr: &str,
    group: &BTreeMap<String, String>,
    cfg: &JobConfig,
) -> Result<Option<Target>, String> {
    let mut b = LabelsBuilder::new();
    for (k, v) in group {
        b.set(k.clone(), v.clone());
    }
    b.set("__address__", addr);
    let sc = &cfg.sc;
    let defaults = [
        ("job", sc.job_name.clone()),
        ("__scheme__", sc.scheme.clone()),
        ("__metrics_path__", sc.metrics_path.clone()),
        (
            "__scrape_interval__",
            humantime::format_duration(cfg.interval)
                .to_string()
                .replace(' ', ""),
        ),
        (
            "__scrape_timeout__",
            humantime::format_duration(cfg.timeout)
                .to_string()
                .replace(' ', ""),
        ),
    ];
    for (k, v) in defaults {
        if b.get(k).is_none() {
            b.set(k, v);
        }
    }
    for (k, vs) in &sc.params {
        let name = format!("__param_{k}");
        if b.get(&name).is_none() {
            if let Some(v) = vs.first() {
                b.set(name, v.clone());
            }
        }
    }
    let discovered = b.build();
    let Some(relabelled) = relabel::process(discovered.clone(), &sc.relabel_configs) else {
        return Ok(None);
    };
    let address = relabelled.get("__address__").unwrap_or("").to_string();
    if address.is_empty() {
        return Err("target has no __address__ after relabelling".into());
    }
    let scheme = relabelled.get("__scheme__").unwrap_or("http");
    let path = relabelled.get("__metrics_path__").unwrap_or("/metrics");
    let mut url = reqwest::Url::parse(&format!("{scheme}://{address}{path}"))
        .map_err(|e| format!("invalid scrape URL for address {address:?}: {e}"))?;
    // A `__param_<name>` label overrides the first configured value.
    let mut params: BTreeMap<String, Vec<String>> = sc.params.clone();
    for l in relabelled.iter() {
        if let Some(p) = l.name.strip_prefix("__param_") {
            let vs = params.entry(p.to_string()).or_default();
            match vs.first_mut() {
                Some(first) => *first = l.value.clone(),
                None => vs.push(l.value.clone()),
            }
        }
    }
    if !params.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, vs) in &params {
            for v in vs {
                q.append_pair(k, v);
            }
        }
    }
    let mut fb = relabelled.builder();
    if fb.get("instance").is_none() {
        fb.set("instance", address.clone());
    }
    fb.retain(|l| !l.name.starts_with("__"));
    let duration_label = |name: &str, default: Duration| -> Result<Duration, String> {
        match relabelled.get(name) {
            Some(v) => parse_duration(v).map_err(|e| format!("{name}: {e}")),
            None => Ok(default),
        }
    };
    let interval = duration_label("__scrape_interval__", cfg.interval)?;
    let timeout = duration_label("__scrape_timeout__", cfg.timeout)?;
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout {} greater than scrape interval {}",
            humantime::format_duration(timeout),
            humantime::format_duration(interval)
        ));
    }
    Ok(Some(Target {
        labels: fb.build(),
        discovered,
        url: url.to_string(),
        interval,
        timeout,
    }))
}

// ---------------------------------------------------------------------------
// file_sd

struct FileSdCache {
    files: HashMap<PathBuf, (Option<SystemTime>, Vec<TargetGroup>)>,
    last_full_refresh: Instant,
}

fn read_sd_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut groups: Vec<TargetGroup> = match ext {
        "json" => serde_json::from_str(&text)
            .map_err(|e| format!("invalid file_sd JSON in {}: {e}", path.display()))?,
        "yml" | "yaml" => serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("invalid file_sd YAML in {}: {e}", path.display()))?,
        _ => {
            return Err(format!(
                "file_sd file {} must end in .json, .yml or .yaml",
                path.display()
            ))
        }
    };
    for g in &mut groups {
        g.labels
            .insert("__meta_filepath".into(), path.display().to_string());
    }
    Ok(groups)
}

impl FileSdCache {
    fn new() -> Self {
        FileSdCache {
            files: HashMap::new(),
            last_full_refresh: Instant::now(),
        }
    }

    /// Re-reads files whose modification time changed (or all of them when
    /// the refresh interval passed) and returns all their target groups.
    fn refresh(&mut self, cfgs: &[FileSdConfig], job: &str) -> Vec<TargetGroup> {
        let min_refresh = cfgs
            .iter()
            .map(|c| c.refresh_interval)
            .min()
            .unwrap_or(default_refresh());
        let full = self.last_full_refresh.elapsed() >= min_refresh;
        if full {
            self.last_full_refresh = Instant::now();
        }
        let mut present = HashSet::new();
        let mut out = Vec::new();
        for cfg in cfgs {
            for pattern in &cfg.files {
                let paths = match glob::glob(pattern) {
                    Ok(p) => p.filter_map(Result::ok).collect::<Vec<_>>(),
                    Err(e) => {
                        tracing::warn!(job, pattern, error = %e, "invalid file_sd glob");
                        continue;
                    }
                };
                for path in paths {
                    if !present.insert(path.clone()) {
                        continue;
                    }
                    let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                    let stale = match self.files.get(&path) {
                        Some((old, _)) => full || *old != mtime,
                        None => true,
                    };
                    if stale {
                        match read_sd_file(&path) {
                            Ok(groups) => {
                                self.files.insert(path.clone(), (mtime, groups));
                            }
                            // Keep the last good content, as Prometheus does.
                            Err(e) => tracing::warn!(job, error = %e, "file_sd read failed"),
                        }
                    }
                    if let Some((_, groups)) = self.files.get(&path) {
                        out.extend(groups.iter().cloned());
                    }
                }
            }
        }
        self.files.retain(|p, _| present.contains(p));
        out
    }
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
            }),
        }
    }

    /// (Re)configures: starts new jobs, hands changed configs to running
    /// jobs, stops jobs no longer present (their series go stale). Must be
    /// called inside a tokio runtime. The file should have passed
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
            let task = tokio::spawn(run_job(
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    })
}

#[cfg(test)]
mod tests;
