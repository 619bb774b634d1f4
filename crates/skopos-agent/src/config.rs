//! The agent's YAML config file (see the crate docs for an example).
//! Sizes take `B`, `KiB`/`KB`, `MiB`/`MB`, `GiB`/`GB`, … (all base 1024) or
//! a plain byte count; durations take Prometheus' syntax (`500ms`, `1s`,
//! `2m`, `1h30m`). Both grammars are `skopos-units`'.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A config file that cannot be used; the message names the file, and for
/// syntax errors the line and column.
#[derive(Debug, thiserror::Error)]
#[error("config file {}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the server; batches go to `<server>/loki/api/v1/push`.
    pub server: String,
    /// File holding a bearer token sent with every push.
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    /// Extra HTTP headers sent with every push (e.g. `X-Scope-OrgID`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Positions file and disk buffer live here.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Bound of the on-disk buffer. When it is full the agent stops reading
    /// its sources (backpressure) until the server takes batches again.
    #[serde(default = "default_buffer_max", deserialize_with = "de_size")]
    pub buffer_max_bytes: u64,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    /// `host:port` of the agent's own `/metrics`, or `off`.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_batch_bytes", deserialize_with = "de_size")]
    pub max_bytes: u64,
    #[serde(default = "default_batch_wait", deserialize_with = "de_duration")]
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_bytes: default_batch_bytes(),
            max_wait: default_batch_wait(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_min_backoff", deserialize_with = "de_duration")]
    pub min_backoff: Duration,
    #[serde(default = "default_max_backoff", deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// Timeout of one push request.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            timeout: default_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    File(FileSourceConfig),
    Docker(DockerSourceConfig),
}

/// How each line is parsed, shared by both source kinds.
#[derive(Debug, Clone, Default)]
pub struct ParseConfig {
    pub format: Format,
    pub timestamp_field: Option<String>,
    pub fields_to_labels: Vec<String>,
    pub fields_to_metadata: Vec<String>,
}

macro_rules! parse_config {
    ($t:ty) => {
        impl $t {
            pub fn parse_config(&self) -> ParseConfig {
                ParseConfig {
                    format: self.format,
                    timestamp_field: self.timestamp_field.clone(),
                    fields_to_labels: self.fields_to_labels.clone(),
                    fields_to_metadata: self.fields_to_metadata.clone(),
                }
            }
        }
    };
}
parse_config!(FileSourceConfig);
parse_config!(DockerSourceConfig);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Raw,
    Json,
    Logfmt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Name in metrics; default `file-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub format: Format,
    /// Field holding the timestamp; default: the first of `ts`, `time`,
    /// `timestamp`, `@timestamp` present.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Fields copied into stream labels (keep these low-cardinality).
    #[serde(default)]
    pub fields_to_labels: Vec<String>,
    /// Fields copied into structured metadata (e.g. `trace_id`).
    #[serde(default)]
    pub fields_to_metadata: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Longer lines are truncated to this many bytes (counted in
    /// `skopos_agent_lines_truncated_total`).
    #[serde(default = "default_max_line", deserialize_with = "de_size")]
    pub max_line_bytes: u64,
    /// How often files are checked for new data and rotation.
    #[serde(default = "default_poll", deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// How often the globs are evaluated again.
    #[serde(default = "default_refresh", deserialize_with = "de_duration")]
    pub refresh_interval: Duration,
    /// How long a rotated-away file is still followed after it stops growing.
    #[serde(default = "default_rotate_wait", deserialize_with = "de_duration")]
    pub rotate_wait: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// `unix:///var/run/docker.sock`, `tcp://host:2375`; default: `DOCKER_HOST`
    /// or the local socket.
    #[serde(default)]
    pub host: Option<String>,
    /// Docker list filters, as for `docker ps --filter`:
    /// `{name: [web], label: ["com.docker.compose.project=shop"]}`.
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub format: Format,
    /// Field holding the timestamp; default: the first of `ts`, `time`,
    /// `timestamp`, `@timestamp` present.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// Fields copied into stream labels (keep these low-cardinality).
    #[serde(default)]
    pub fields_to_labels: Vec<String>,
    /// Fields copied into structured metadata (e.g. `trace_id`).
    #[serde(default)]
    pub fields_to_metadata: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How often running containers are listed.
    #[serde(default = "default_refresh", deserialize_with = "de_duration")]
    pub refresh_interval: Duration,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./skopos-agent")
}
fn default_buffer_max() -> u64 {
    256 << 20
}
fn default_batch_bytes() -> u64 {
    1 << 20
}
fn default_batch_wait() -> Duration {
    Duration::from_secs(1)
}
fn default_min_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9701".into()
}
fn default_max_line() -> u64 {
    256 << 10
}
fn default_poll() -> Duration {
    Duration::from_millis(250)
}
fn default_refresh() -> Duration {
    Duration::from_secs(5)
}
fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

/// Parses `256MiB`, `1MB`, `64KiB`, `512B` or `1048576` (base 1024, the
/// one size grammar of skopos: `skopos_units::parse_size`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    skopos_units::parse_size(s).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    N(u64),
    S(String),
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeRepr::deserialize(d)? {
        SizeRepr::N(n) => Ok(n),
        SizeRepr::S(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    skopos_units::parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text).map_err(|message| ConfigError {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and checks YAML text; the error says where and what.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.server)
            .map_err(|e| format!("server: invalid URL {:?}: {e}", self.server))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("server: {:?} is not an http(s) URL", self.server));
        }
        if self.sources.is_empty() {
            return Err("sources: at least one source is needed".into());
        }
        if self.batch.max_bytes == 0 {
            return Err("batch.max_bytes must be positive".into());
        }
        if self.retry.min_backoff.is_zero() || self.retry.max_backoff < self.retry.min_backoff {
            return Err("retry: need 0 < min_backoff <= max_backoff".into());
        }
        if self.metrics_listen != "off" {
            self.metrics_listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    format!(
                        "metrics_listen: {:?} is not host:port or \"off\": {e}",
                        self.metrics_listen
                    )
                })?;
        }
        for name in self.headers.keys() {
            http_header_name_ok(name).map_err(|e| format!("headers: {e}"))?;
        }
        for (i, s) in self.sources.iter().enumerate() {
            let (labels, to_labels) = match s {
                SourceConfig::File(f) => {
                    if f.include.is_empty() {
                        return Err(format!("sources[{i}]: include needs at least one glob"));
                    }
                    for g in f.include.iter().chain(&f.exclude) {
                        glob::Pattern::new(g)
                            .map_err(|e| format!("sources[{i}]: invalid glob {g:?}: {e}"))?;
                    }
                    if f.max_line_bytes == 0 {
                        return Err(format!("sources[{i}]: max_line_bytes must be positive"));
                    }
                    (&f.labels, &f.fields_to_labels)
                }
                SourceConfig::Docker(d) => (&d.labels, &d.fields_to_labels),
            };
            for name in labels.keys().chain(to_labels) {
                if !valid_label_name(name) {
                    return Err(format!(
                        "sources[{i}]: {name:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The name of source `i` in metrics.
    pub fn source_name(&self, i: usize) -> String {
        match &self.sources[i] {
            SourceConfig::File(f) => f.name.clone().unwrap_or_else(|| format!("file-{i}")),
            SourceConfig::Docker(d) => d.name.clone().unwrap_or_else(|| format!("docker-{i}")),
        }
    }
}

fn http_header_name_ok(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
    {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid header name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1MB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1TB").unwrap(), 1 << 40);
        assert!(parse_size("MiB").is_err());
        assert!(
            parse_size("64 KiB").is_err(),
            "one grammar: no blank before the unit"
        );
    }

    #[test]
    fn full_example_parses() {
        let cfg = Config::parse(
            r#"
server: http://127.0.0.1:9700
auth_token_file: null
state_dir: ./skopos-agent
buffer_max_bytes: 256MiB
batch: {max_bytes: 1MiB, max_wait: 1s}
metrics_listen: 127.0.0.1:9701
sources:
  - type: file
    include: ["/var/log/app/*.log"]
    exclude: ["*.gz"]
    format: json
    fields_to_labels: [level]
    labels: {job: app}
  - type: docker
    host: unix:///var/run/docker.sock
    labels: {job: docker}
"#,
        )
        .unwrap();
        assert_eq!(cfg.buffer_max_bytes, 256 << 20);
        assert_eq!(cfg.batch.max_wait, Duration::from_secs(1));
        let SourceConfig::File(f) = &cfg.sources[0] else {
            panic!()
        };
        assert_eq!(f.format, Format::Json);
        assert_eq!(cfg.source_name(1), "docker-1");
    }

    #[test]
    fn errors_name_the_problem_and_place() {
        let e = Config::parse(
            "server: http://x\nsources:\n  - type: file\n    include: [a]\n    formt: json\n",
        )
        .unwrap_err();
        assert!(e.contains("formt") && e.contains("line"), "{e}");
        let e = Config::parse("server: http://x\nsources: []\n").unwrap_err();
        assert!(e.contains("at least one source"), "{e}");
        let e =
            Config::parse("server: http://x\nbuffer_max_bytes: 12XB\nsources: []\n").unwrap_err();
        assert!(e.contains("invalid size"), "{e}");
        let e = Config::parse(
            "server: http://x\nsources:\n  - type: file\n    include: [a]\n    labels: {bad-name: x}\n",
        )
        .unwrap_err();
        assert!(e.contains("bad-name"), "{e}");
    }
}
