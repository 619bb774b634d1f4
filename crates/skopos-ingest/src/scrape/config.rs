//! The configuration of the scraper: Prometheus' `global` and
//! `scrape_configs` sections, with their defaults and validation.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::relabel::RelabelConfig;

/// A Prometheus duration (`15s`, `1m`, `1h30m`, `100ms`, `1d`).
/// The error is raised while the scalar is read (in the visitor), so the
/// YAML decoder reports the key path and the line of the value itself.
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as 15s, 1m or 1h30m")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
            parse_duration(s).map_err(E::custom)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
            self.visit_str(&n.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
            self.visit_str(&n.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
            self.visit_str(&n.to_string())
        }
    }
    d.deserialize_any(V)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
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
    skopos_units::parse_size(s).map_err(|e| e.to_string())
}

/// Parses a Prometheus duration (`15s`, `1m`, `1h30m`, `100ms`, `1d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    skopos_units::parse_duration(s).map_err(|e| e.to_string())
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

pub(super) fn default_refresh() -> Duration {
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
            for sd in &sc.file_sd_configs {
                for pattern in &sd.files {
                    glob::Pattern::new(pattern).map_err(|e| {
                        format!(
                            "job {:?}: invalid file_sd_configs pattern {pattern:?}: {e}",
                            sc.job_name
                        )
                    })?;
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
pub(super) struct JobConfig {
    pub(super) sc: ScrapeConfig,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    /// The client for jobs with their own TLS/redirect/compression settings.
    pub(super) client: JobClient,
}

/// An HTTP client built from a config; equal configs give equivalent
/// clients, so it takes no part in comparisons.
#[derive(Clone, Default)]
pub(super) struct JobClient(pub(super) Option<reqwest::Client>);

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

pub(super) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(concat!("skopos/", env!("CARGO_PKG_VERSION")))
}

/// A dedicated client when the job's settings differ from the shared
/// client's (`Ok(None)`).
pub(super) fn build_client(sc: &ScrapeConfig) -> Result<Option<reqwest::Client>, String> {
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
    pub(super) fn resolve(sc: &ScrapeConfig, global: &GlobalConfig) -> JobConfig {
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
