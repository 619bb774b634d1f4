//! The server's settings: flags, an optional YAML config file (`--config`)
//! with the same names (dashes as underscores, plus Prometheus' `global` and
//! `scrape_configs` sections), and the defaults. A flag wins over the file.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use skopos_server::{ServerConfig, TlsConfig};
use skopos_tsdb::FsyncPolicy;

#[derive(Args, Debug, Default, Clone)]
pub struct ServerFlags {
    /// YAML config file; its keys are the flag names with underscores.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory for all data [default: ./skopos-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP port for everything [default: 127.0.0.1:9700]
    #[arg(long)]
    pub listen: Option<String>,
    /// OTLP/HTTP address, or `off` [default: 127.0.0.1:4318]
    #[arg(long)]
    pub otlp_http_listen: Option<String>,
    /// OTLP/gRPC address, or `off` [default: 127.0.0.1:4317]
    #[arg(long)]
    pub otlp_grpc_listen: Option<String>,
    /// File holding the bearer token every request must carry.
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
    /// Allow listening beyond loopback without a token.
    #[arg(long)]
    pub insecure: bool,
    /// PEM certificate for HTTPS (with --tls-key).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// WAL fsync policy: always, interval (every second) or never [default: interval]
    #[arg(long)]
    pub wal_fsync: Option<String>,
    /// Delete blocks older than this, e.g. 15d; 0 keeps everything [default: 15d]
    #[arg(long = "retention.time")]
    pub retention_time: Option<String>,
    /// Delete oldest blocks while blocks use more than this, e.g. 10GB [default: unlimited]
    #[arg(long = "retention.size")]
    pub retention_size: Option<String>,
    /// How far behind the newest sample a sample may arrive [default: 10m]
    #[arg(long)]
    pub out_of_order_window: Option<String>,
    /// Largest accepted request body, compressed or not [default: 32MB]
    #[arg(long)]
    pub max_body_size: Option<String>,
    /// Maximum active series in the head [default: 5000000]
    #[arg(long)]
    pub max_series: Option<usize>,
    /// Maximum labels per series [default: 64]
    #[arg(long)]
    pub max_labels_per_series: Option<usize>,
    /// Maximum label name length in bytes [default: 1024]
    #[arg(long)]
    pub max_label_name_length: Option<usize>,
    /// Maximum label value length in bytes [default: 4096]
    #[arg(long)]
    pub max_label_value_length: Option<usize>,
    /// How often skopos stores its own metrics, or `off` [default: 15s]
    #[arg(long)]
    pub self_scrape_interval: Option<String>,
    /// How far back an instant selector looks for a sample [default: 5m]
    #[arg(long = "query.lookback-delta")]
    pub query_lookback_delta: Option<String>,
    /// Most samples one query may load [default: 50000000]
    #[arg(long = "query.max-samples")]
    pub query_max_samples: Option<usize>,
    /// Longest a query may run [default: 2m]
    #[arg(long = "query.timeout")]
    pub query_timeout: Option<String>,
    /// Queries evaluated at once; more wait [default: 20]
    #[arg(long = "query.max-concurrency")]
    pub query_max_concurrency: Option<usize>,
    /// Delete trace segments older than this, e.g. 7d; 0 keeps everything [default: 0]
    #[arg(long = "traces.retention-time")]
    pub traces_retention_time: Option<String>,
    /// Delete oldest trace segments while they use more than this, e.g. 5GB [default: unlimited]
    #[arg(long = "traces.retention-size")]
    pub traces_retention_size: Option<String>,
    /// Most spans one trace may hold; later ones are rejected [default: 50000]
    #[arg(long = "traces.max-spans-per-trace")]
    pub traces_max_spans_per_trace: Option<usize>,
    /// Most bytes one trace may hold, e.g. 50MB; later spans are rejected [default: 50MB]
    #[arg(long = "traces.max-bytes-per-trace")]
    pub traces_max_bytes_per_trace: Option<String>,
    /// Attributes kept per span (and event, link, resource); the rest are dropped [default: 128]
    #[arg(long = "traces.max-attributes-per-span")]
    pub traces_max_attributes_per_span: Option<usize>,
    /// How often span metrics and the service graph are written, or `off` [default: 15s]
    #[arg(long = "traces.span-metrics-interval")]
    pub traces_span_metrics_interval: Option<String>,
    /// Exemplars kept (a ring over all series, persisted) for /api/v1/query_exemplars [default: 100000]
    #[arg(long = "traces.max-exemplars")]
    pub traces_max_exemplars: Option<usize>,
    /// Longest a trace search may run [default: 30s]
    #[arg(long = "traces.search-timeout")]
    pub traces_search_timeout: Option<String>,
    /// How far ahead of now a sample, log line or span may be stamped; later ones are refused [default: 10m]
    #[arg(long)]
    pub future_grace: Option<String>,
    /// Accept POST /-/reload and /-/quit, as Prometheus' flag of that name.
    #[arg(long = "web.enable-lifecycle")]
    pub web_enable_lifecycle: bool,
    /// Accept the TSDB admin API (snapshot, delete_series, clean_tombstones), as Prometheus' flag of that name.
    #[arg(long = "web.enable-admin-api")]
    pub web_enable_admin_api: bool,
}

/// The keys the config file takes besides Prometheus' `global` and
/// `scrape_configs`: each flag's name with underscores.
const FILE_KEYS: &[&str] = &[
    "data_dir",
    "listen",
    "otlp_http_listen",
    "otlp_grpc_listen",
    "auth_token_file",
    "insecure",
    "tls_cert",
    "tls_key",
    "wal_fsync",
    "retention_time",
    "retention_size",
    "out_of_order_window",
    "max_body_size",
    "max_series",
    "max_labels_per_series",
    "max_label_name_length",
    "max_label_value_length",
    "self_scrape_interval",
    "query_lookback_delta",
    "query_max_samples",
    "query_timeout",
    "query_max_concurrency",
    "traces_retention_time",
    "traces_retention_size",
    "traces_max_spans_per_trace",
    "traces_max_bytes_per_trace",
    "traces_max_attributes_per_span",
    "traces_span_metrics_interval",
    "traces_max_exemplars",
    "traces_search_timeout",
    "log_format",
    "web_enable_lifecycle",
    "web_enable_admin_api",
    "future_grace",
    "global",
    "scrape_configs",
];

/// The config file as read: its top-level mapping, and its text to find
/// the line a key is on. Unknown keys are an error, so a typo is caught.
#[derive(Default)]
struct FileConfig {
    path: Option<PathBuf>,
    text: String,
    map: serde_yaml_ng::Mapping,
}

impl FileConfig {
    fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow!("config file {}: {e}", path.display()))?;
        let map = match value {
            serde_yaml_ng::Value::Mapping(m) => m,
            serde_yaml_ng::Value::Null => serde_yaml_ng::Mapping::new(),
            _ => bail!(
                "config file {}: expected a mapping of settings at the top level",
                path.display()
            ),
        };
        let file = FileConfig {
            path: Some(path.to_path_buf()),
            text,
            map,
        };
        for key in file.map.keys() {
            let name = key.as_str().unwrap_or("");
            if !FILE_KEYS.contains(&name) {
                bail!(
                    "{}: unknown key {:?} (the keys are the flag names with underscores, plus global and scrape_configs)",
                    file.position(name),
                    key
                );
            }
        }
        Ok(file)
    }

    /// `path:line` of a top-level key (line 1 when it cannot be found,
    /// e.g. in flow style).
    fn position(&self, key: &str) -> String {
        let line = self
            .text
            .lines()
            .position(|l| {
                let l = l.trim_end();
                [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
                    .iter()
                    .any(|k| {
                        l.strip_prefix(k.as_str())
                            .is_some_and(|r| r.trim_start().starts_with(':'))
                    })
            })
            .map_or(1, |i| i + 1);
        let path = self.path.as_deref().unwrap_or(Path::new("config file"));
        format!("{}:{line}", path.display())
    }

    fn value(&self, key: &str) -> Option<&serde_yaml_ng::Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }
}

/// One setting's value and where it came from, so an error names the flag,
/// or the file, line and key.
struct Setting {
    value: String,
    origin: String,
}

impl Setting {
    fn fail(&self, problem: impl fmt::Display) -> anyhow::Error {
        anyhow!("{}: {problem}", self.origin)
    }
    fn duration(&self) -> anyhow::Result<Duration> {
        skopos_units::parse_duration(&self.value).map_err(|e| self.fail(e))
    }
    fn positive_duration(&self) -> anyhow::Result<Duration> {
        let d = self.duration()?;
        if d.is_zero() {
            return Err(self.fail("must be greater than 0"));
        }
        Ok(d)
    }
    /// A duration, or `off`.
    fn interval(&self) -> anyhow::Result<Option<Duration>> {
        if self.value == "off" {
            return Ok(None);
        }
        let d = self.duration()?;
        if d.is_zero() {
            return Err(self.fail("must be greater than 0 (or `off`)"));
        }
        Ok(Some(d))
    }
    fn size(&self) -> anyhow::Result<u64> {
        skopos_units::parse_size(&self.value).map_err(|e| self.fail(e))
    }
    fn count(&self) -> anyhow::Result<usize> {
        self.value
            .trim()
            .parse()
            .map_err(|_| self.fail(format!("{:?} is not a whole number", self.value)))
    }
    fn bool(&self) -> anyhow::Result<bool> {
        match self.value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(self.fail(format!("{v:?} is not true or false"))),
        }
    }
    /// An address, or `None` for `off`.
    fn addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.value == "off" {
            return Ok(None);
        }
        self.value.parse().map(Some).map_err(|_| {
            self.fail(format!(
                "{:?} is not an address like 127.0.0.1:9700 (or `off`)",
                self.value
            ))
        })
    }
}

/// Flags over the file: `get` answers the flag's value when it was given,
/// else the file's.
struct Sources<'a> {
    file: &'a FileConfig,
}

impl Sources<'_> {
    fn get(&self, flag_name: &str, flag: Option<impl ToString>) -> anyhow::Result<Option<Setting>> {
        if let Some(v) = flag {
            return Ok(Some(Setting {
                value: v.to_string(),
                origin: flag_name.to_string(),
            }));
        }
        let key = flag_name.trim_start_matches('-').replace(['-', '.'], "_");
        let Some(v) = self.file.value(&key) else {
            return Ok(None);
        };
        let origin = format!("{}: {key}", self.file.position(&key));
        let value = match v {
            serde_yaml_ng::Value::String(s) => s.clone(),
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            _ => bail!("{origin}: expected a single value, not a list or mapping"),
        };
        Ok(Some(Setting { value, origin }))
    }
}

/// Log format from the config file, when the flag did not set it.
pub fn log_format_from_file(flags: &ServerFlags) -> Option<String> {
    let file = FileConfig::read(flags.config.as_ref()?).ok()?;
    file.value("log_format")?.as_str().map(str::to_string)
}

/// Resolves flags over the config file over the defaults.
pub fn resolve(flags: &ServerFlags) -> anyhow::Result<ServerConfig> {
    let file = match &flags.config {
        Some(p) => FileConfig::read(p)?,
        None => FileConfig::default(),
    };
    let src = Sources { file: &file };
    let data_dir = match src.get("--data-dir", flags.data_dir.as_ref().map(|p| p.display()))? {
        Some(s) => PathBuf::from(s.value),
        None => PathBuf::from("./skopos-data"),
    };
    let mut cfg = ServerConfig::new(data_dir);
    resolve_edges(flags, &src, &mut cfg)?;
    resolve_metrics(flags, &src, &mut cfg)?;
    resolve_traces(flags, &src, &mut cfg)?;
    resolve_scrape(&file, &mut cfg)?;
    cfg.enable_lifecycle = flags.web_enable_lifecycle
        || src
            .get("--web.enable-lifecycle", None::<bool>)?
            .map(|s| s.bool())
            .transpose()?
            .unwrap_or(false);
    cfg.enable_admin_api = flags.web_enable_admin_api
        || src
            .get("--web.enable-admin-api", None::<bool>)?
            .map(|s| s.bool())
            .transpose()?
            .unwrap_or(false);
    cfg.config_yaml = redacted_yaml(&file.map);
    cfg.flags = effective_flags(flags, &cfg);
    Ok(cfg)
}

/// Keys whose values `/api/v1/status/config` never shows.
const SECRET_KEYS: &[&str] = &[
    "password",
    "bearer_token",
    "credentials",
    "client_secret",
    "secret",
];

/// The config file as YAML with every secret value replaced by `<secret>`,
/// as Prometheus shows its configuration.
fn redacted_yaml(map: &serde_yaml_ng::Mapping) -> String {
    fn walk(v: &mut serde_yaml_ng::Value) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, val) in m.iter_mut() {
                    if k.as_str().is_some_and(|k| SECRET_KEYS.contains(&k)) && !val.is_null() {
                        *val = serde_yaml_ng::Value::String("<secret>".into());
                    } else {
                        walk(val);
                    }
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_yaml_ng::Value::Mapping(map.clone());
    walk(&mut v);
    if map.is_empty() {
        return String::new();
    }
    serde_yaml_ng::to_string(&v).unwrap_or_default()
}

/// The settings in force, by flag name, for `/api/v1/status/flags`.
fn effective_flags(
    flags: &ServerFlags,
    cfg: &ServerConfig,
) -> std::collections::BTreeMap<String, String> {
    let addr = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
    let dur =
        |d: Option<Duration>| d.map_or_else(|| "0".to_string(), skopos_units::format_duration);
    let size = |s: Option<u64>| s.map_or_else(|| "0".to_string(), skopos_units::format_size);
    let fsync = match cfg.tsdb.wal_fsync {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Interval(_) => "interval",
        FsyncPolicy::Never => "never",
    };
    [
        (
            "config",
            flags
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("data-dir", cfg.data_dir.display().to_string()),
        ("listen", cfg.listen.to_string()),
        ("otlp-http-listen", addr(cfg.otlp_http_listen)),
        ("otlp-grpc-listen", addr(cfg.otlp_grpc_listen)),
        (
            "auth-token-file",
            flags
                .auth_token_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("insecure", cfg.insecure.to_string()),
        ("wal-fsync", fsync.to_string()),
        ("retention.time", dur(cfg.tsdb.retention_time)),
        ("retention.size", size(cfg.tsdb.retention_size)),
        (
            "out-of-order-window",
            dur(Some(Duration::from_millis(
                cfg.tsdb.out_of_order_window_ms.max(0) as u64,
            ))),
        ),
        ("max-body-size", size(Some(cfg.max_body_bytes as u64))),
        ("max-series", cfg.tsdb.limits.max_series.to_string()),
        (
            "self-scrape-interval",
            cfg.self_scrape_interval
                .map_or("off".into(), skopos_units::format_duration),
        ),
        (
            "query.lookback-delta",
            dur(Some(Duration::from_millis(
                cfg.query.lookback_delta_ms.max(0) as u64,
            ))),
        ),
        ("query.max-samples", cfg.query.max_samples.to_string()),
        ("query.timeout", dur(Some(cfg.query.timeout))),
        (
            "query.max-concurrency",
            cfg.query_max_concurrency.to_string(),
        ),
        (
            "traces.retention-time",
            dur(cfg
                .traces
                .retention_ns
                .map(|n| Duration::from_nanos(n.max(0) as u64))),
        ),
        ("traces.retention-size", size(cfg.traces.retention_bytes)),
        (
            "traces.span-metrics-interval",
            cfg.span_metrics_interval
                .map_or("off".into(), skopos_units::format_duration),
        ),
        ("web.enable-lifecycle", cfg.enable_lifecycle.to_string()),
        ("web.enable-admin-api", cfg.enable_admin_api.to_string()),
        ("future-grace", dur(Some(cfg.future_grace))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Listeners, authentication, TLS and the body limit.
fn resolve_edges(flags: &ServerFlags, src: &Sources, cfg: &mut ServerConfig) -> anyhow::Result<()> {
    if let Some(s) = src.get("--listen", flags.listen.as_ref())? {
        cfg.listen = s
            .addr()?
            .ok_or_else(|| s.fail("the main HTTP listener cannot be `off`"))?;
    }
    if let Some(s) = src.get("--otlp-http-listen", flags.otlp_http_listen.as_ref())? {
        cfg.otlp_http_listen = s.addr()?;
    }
    if let Some(s) = src.get("--otlp-grpc-listen", flags.otlp_grpc_listen.as_ref())? {
        cfg.otlp_grpc_listen = s.addr()?;
    }
    let path = |flag, v: Option<&PathBuf>| src.get(flag, v.map(|p| p.display()));
    if let Some(s) = path("--auth-token-file", flags.auth_token_file.as_ref())? {
        let t = std::fs::read_to_string(&s.value)
            .map_err(|e| s.fail(format!("cannot read auth token file {}: {e}", s.value)))?;
        cfg.auth_token = Some(t.trim().to_string());
    }
    cfg.insecure = flags.insecure
        || src
            .get("--insecure", None::<bool>)?
            .map(|s| s.bool())
            .transpose()?
            .unwrap_or(false);
    let cert = path("--tls-cert", flags.tls_cert.as_ref())?;
    let key = path("--tls-key", flags.tls_key.as_ref())?;
    match (cert, key) {
        (Some(cert), Some(key)) => {
            cfg.tls = Some(TlsConfig {
                cert: cert.value.into(),
                key: key.value.into(),
            })
        }
        (None, None) => {}
        (Some(s), None) | (None, Some(s)) => {
            return Err(s.fail("--tls-cert and --tls-key go together"))
        }
    }
    if let Some(s) = src.get("--max-body-size", flags.max_body_size.as_ref())? {
        cfg.max_body_bytes = s.size()? as usize;
    }
    if let Some(s) = src.get("--future-grace", flags.future_grace.as_ref())? {
        cfg.future_grace = s.duration()?;
    }
    Ok(())
}

/// The TSDB, self-monitoring and PromQL.
fn resolve_metrics(
    flags: &ServerFlags,
    src: &Sources,
    cfg: &mut ServerConfig,
) -> anyhow::Result<()> {
    if let Some(s) = src.get("--wal-fsync", flags.wal_fsync.as_ref())? {
        cfg.tsdb.wal_fsync = match s.value.as_str() {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::Interval(Duration::from_secs(1)),
            "never" => FsyncPolicy::Never,
            other => return Err(s.fail(format!("{other:?} is not one of always, interval, never"))),
        };
    }
    if let Some(s) = src.get("--retention.time", flags.retention_time.as_ref())? {
        let d = s.duration()?;
        cfg.tsdb.retention_time = (!d.is_zero()).then_some(d);
    }
    if let Some(s) = src.get("--retention.size", flags.retention_size.as_ref())? {
        let n = s.size()?;
        cfg.tsdb.retention_size = (n > 0).then_some(n);
    }
    if let Some(s) = src.get("--out-of-order-window", flags.out_of_order_window.as_ref())? {
        cfg.tsdb.out_of_order_window_ms = s.duration()?.as_millis() as i64;
    }
    let limits = &mut cfg.tsdb.limits;
    for (flag, value, slot) in [
        ("--max-series", flags.max_series, &mut limits.max_series),
        (
            "--max-labels-per-series",
            flags.max_labels_per_series,
            &mut limits.max_labels_per_series,
        ),
        (
            "--max-label-name-length",
            flags.max_label_name_length,
            &mut limits.max_label_name_length,
        ),
        (
            "--max-label-value-length",
            flags.max_label_value_length,
            &mut limits.max_label_value_length,
        ),
    ] {
        if let Some(s) = src.get(flag, value)? {
            *slot = s.count()?;
        }
    }
    if let Some(s) = src.get(
        "--self-scrape-interval",
        flags.self_scrape_interval.as_ref(),
    )? {
        cfg.self_scrape_interval = s.interval()?;
    }
    if let Some(s) = src.get(
        "--query.lookback-delta",
        flags.query_lookback_delta.as_ref(),
    )? {
        cfg.query.lookback_delta_ms = s.positive_duration()?.as_millis() as i64;
    }
    if let Some(s) = src.get("--query.max-samples", flags.query_max_samples)? {
        cfg.query.max_samples = s.count()?;
    }
    if let Some(s) = src.get("--query.timeout", flags.query_timeout.as_ref())? {
        cfg.query.timeout = s.positive_duration()?;
    }
    if let Some(s) = src.get("--query.max-concurrency", flags.query_max_concurrency)? {
        cfg.query_max_concurrency = s.count()?.max(1);
    }
    Ok(())
}

/// The trace store, span metrics and TraceQL.
fn resolve_traces(
    flags: &ServerFlags,
    src: &Sources,
    cfg: &mut ServerConfig,
) -> anyhow::Result<()> {
    if let Some(s) = src.get(
        "--traces.retention-time",
        flags.traces_retention_time.as_ref(),
    )? {
        let d = s.duration()?;
        cfg.traces.retention_ns = (!d.is_zero()).then_some(d.as_nanos() as i64);
    }
    if let Some(s) = src.get(
        "--traces.retention-size",
        flags.traces_retention_size.as_ref(),
    )? {
        let n = s.size()?;
        cfg.traces.retention_bytes = (n > 0).then_some(n);
    }
    if let Some(s) = src.get(
        "--traces.max-spans-per-trace",
        flags.traces_max_spans_per_trace,
    )? {
        let n = s.count()?;
        if n == 0 {
            return Err(s.fail("must be greater than 0"));
        }
        cfg.traces.max_spans_per_trace = n;
    }
    if let Some(s) = src.get(
        "--traces.max-bytes-per-trace",
        flags.traces_max_bytes_per_trace.as_ref(),
    )? {
        let n = s.size()?;
        if n == 0 {
            return Err(s.fail("must be greater than 0"));
        }
        cfg.traces.max_bytes_per_trace = n;
    }
    if let Some(s) = src.get(
        "--traces.max-attributes-per-span",
        flags.traces_max_attributes_per_span,
    )? {
        cfg.traces.max_attributes_per_span = s.count()?;
    }
    if let Some(s) = src.get(
        "--traces.span-metrics-interval",
        flags.traces_span_metrics_interval.as_ref(),
    )? {
        cfg.span_metrics_interval = s.interval()?;
    }
    if let Some(s) = src.get("--traces.max-exemplars", flags.traces_max_exemplars)? {
        cfg.tsdb.max_exemplars = s.count()?;
    }
    if let Some(s) = src.get(
        "--traces.search-timeout",
        flags.traces_search_timeout.as_ref(),
    )? {
        cfg.traceql.timeout = s.positive_duration()?;
    }
    Ok(())
}

/// Prometheus' `global` and `scrape_configs` sections.
fn resolve_scrape(file: &FileConfig, cfg: &mut ServerConfig) -> anyhow::Result<()> {
    let (global, scrape_configs) = (file.value("global"), file.value("scrape_configs"));
    if global.is_none() && scrape_configs.is_none() {
        return Ok(());
    }
    let path = file
        .path
        .as_deref()
        .unwrap_or(Path::new("config file"))
        .display()
        .to_string();
    // The whole text, so serde's errors carry the key path and the line;
    // the scrape configuration ignores the other top-level keys.
    let scrape: skopos_ingest::scrape::ScrapeConfigFile =
        serde_yaml_ng::from_str(&file.text).map_err(|e| anyhow!("{path}: {e}"))?;
    scrape.validate().map_err(|e| anyhow!("{path}: {e}"))?;
    cfg.scrape = Some(scrape);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = write("listen: 127.0.0.1:1111\nretention_time: 2d\nout_of_order_window: 5m\n");
        let flags = ServerFlags {
            config: Some(f.path().to_path_buf()),
            listen: Some("127.0.0.1:2222".into()),
            ..Default::default()
        };
        let cfg = resolve(&flags).unwrap();
        assert_eq!(cfg.listen.port(), 2222);
        assert_eq!(
            cfg.tsdb.retention_time,
            Some(Duration::from_secs(2 * 86400))
        );
        assert_eq!(cfg.tsdb.out_of_order_window_ms, 300_000);
    }

    #[test]
    fn unknown_key_names_the_file_and_line() {
        let f = write("listen: 127.0.0.1:1111\nretention: 2d\n");
        let flags = ServerFlags {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let e = resolve(&flags).unwrap_err().to_string();
        let at = format!("{}:2:", f.path().display());
        assert!(e.starts_with(&at) && e.contains("\"retention\""), "{e}");
    }

    /// An error in the file names the file, the line and the key, not the
    /// flag the key maps to.
    fn file_error(text: &str) -> String {
        let f = write(text);
        let flags = ServerFlags {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let e = resolve(&flags).unwrap_err().to_string();
        e.replace(&f.path().display().to_string(), "FILE")
    }

    #[test]
    fn bad_values_in_the_file_name_file_line_and_key() {
        let e = file_error("listen: 127.0.0.1:1111\nretention_time: 30\n");
        assert!(
            e.starts_with("FILE:2: retention_time: not a valid duration string: \"30\""),
            "{e}"
        );
        let e = file_error("# settings\n\nwal_fsync: sometimes\n");
        assert!(
            e.starts_with("FILE:3: wal_fsync: \"sometimes\" is not one of"),
            "{e}"
        );
        assert!(!e.contains("--wal-fsync"), "{e}");
        let e = file_error("max_series: lots\n");
        assert!(
            e.starts_with("FILE:1: max_series: \"lots\" is not a whole number"),
            "{e}"
        );
        let e = file_error("retention_size: 512mb\n");
        assert!(
            e.starts_with("FILE:1: retention_size: invalid size \"512mb\""),
            "{e}"
        );
        let e = file_error("retention_time: [1d]\n");
        assert!(
            e.starts_with("FILE:1: retention_time: expected a single value"),
            "{e}"
        );
        let e = file_error(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5q\n    static_configs: [{targets: ['x:1']}]\n",
        );
        assert!(
            e.starts_with(
                "FILE: scrape_configs[0].scrape_interval: not a valid duration string: \"5q\""
            ),
            "{e}"
        );
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn durations_prometheus_rejects_are_rejected_in_flags_and_file() {
        for bad in ["1min", "2months", "1.5h", "-1m"] {
            let flags = ServerFlags {
                retention_time: Some(bad.into()),
                ..Default::default()
            };
            let e = resolve(&flags).unwrap_err().to_string();
            assert!(
                e.starts_with("--retention.time: not a valid duration"),
                "{bad}: {e}"
            );
            let e = file_error(&format!("global:\n  scrape_interval: {bad}\n"));
            assert!(
                e.contains("global.scrape_interval: not a valid duration"),
                "{bad}: {e}"
            );
        }
        let flags = ServerFlags {
            retention_time: Some("1y2w".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&flags).unwrap().tsdb.retention_time,
            Some(Duration::from_secs((365 + 14) * 86_400))
        );
    }

    #[test]
    fn off_disables_otlp_listeners_and_bad_values_are_named() {
        let flags = ServerFlags {
            otlp_grpc_listen: Some("off".into()),
            ..Default::default()
        };
        assert!(resolve(&flags).unwrap().otlp_grpc_listen.is_none());
        let flags = ServerFlags {
            wal_fsync: Some("sometimes".into()),
            ..Default::default()
        };
        assert!(resolve(&flags)
            .unwrap_err()
            .to_string()
            .contains("--wal-fsync"));
        let flags = ServerFlags {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        assert!(resolve(&flags)
            .unwrap_err()
            .to_string()
            .contains("--listen"));
    }

    #[test]
    fn trace_options_from_flags_and_file() {
        let f = write(
            "traces_retention_time: 3d\ntraces_max_spans_per_trace: 10\ntraces_span_metrics_interval: off\n",
        );
        let flags = ServerFlags {
            config: Some(f.path().to_path_buf()),
            traces_retention_size: Some("1GB".into()),
            traces_max_bytes_per_trace: Some("1MB".into()),
            traces_max_exemplars: Some(7),
            ..Default::default()
        };
        let cfg = resolve(&flags).unwrap();
        assert_eq!(cfg.traces.retention_ns, Some(3 * 86_400 * 1_000_000_000));
        assert_eq!(cfg.traces.max_spans_per_trace, 10);
        assert!(cfg.traces.retention_bytes.unwrap() >= 1_000_000_000);
        assert!(cfg.traces.max_bytes_per_trace >= 1_000_000);
        assert_eq!(cfg.span_metrics_interval, None);
        assert_eq!(cfg.tsdb.max_exemplars, 7);
        let flags = ServerFlags {
            traces_span_metrics_interval: Some("soon".into()),
            ..Default::default()
        };
        assert!(resolve(&flags)
            .unwrap_err()
            .to_string()
            .contains("--traces.span-metrics-interval"));
        let flags = ServerFlags {
            traces_max_spans_per_trace: Some(0),
            ..Default::default()
        };
        assert!(resolve(&flags).is_err());
    }

    #[test]
    fn public_address_needs_a_token_or_insecure() {
        let flags = ServerFlags {
            listen: Some("0.0.0.0:9700".into()),
            ..Default::default()
        };
        let cfg = resolve(&flags).unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--auth-token-file"));
        let flags = ServerFlags {
            listen: Some("0.0.0.0:9700".into()),
            insecure: true,
            ..Default::default()
        };
        resolve(&flags).unwrap().validate().unwrap();
    }
}
