//! The server's settings: flags, an optional YAML config file (`--config`)
//! with the same names (dashes as underscores, plus Prometheus' `global` and
//! `scrape_configs` sections), and the defaults. A flag wins over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde::Deserialize;
use skopos_server::{ServerConfig, TlsConfig};
use skopos_tsdb::FsyncPolicy;

use crate::units::{parse_duration, parse_size};

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
    /// Exemplars kept in memory for /api/v1/query_exemplars [default: 100000]
    #[arg(long = "traces.max-exemplars")]
    pub traces_max_exemplars: Option<usize>,
    /// Longest a trace search may run [default: 30s]
    #[arg(long = "traces.search-timeout")]
    pub traces_search_timeout: Option<String>,
}

/// The config file. Unknown keys are an error, so a typo is caught.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    otlp_http_listen: Option<String>,
    otlp_grpc_listen: Option<String>,
    auth_token_file: Option<PathBuf>,
    insecure: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    wal_fsync: Option<String>,
    retention_time: Option<String>,
    retention_size: Option<String>,
    out_of_order_window: Option<String>,
    max_body_size: Option<String>,
    max_series: Option<usize>,
    max_labels_per_series: Option<usize>,
    max_label_name_length: Option<usize>,
    max_label_value_length: Option<usize>,
    self_scrape_interval: Option<String>,
    query_lookback_delta: Option<String>,
    query_max_samples: Option<usize>,
    query_timeout: Option<String>,
    query_max_concurrency: Option<usize>,
    traces_retention_time: Option<String>,
    traces_retention_size: Option<String>,
    traces_max_spans_per_trace: Option<usize>,
    traces_max_bytes_per_trace: Option<String>,
    traces_max_attributes_per_span: Option<usize>,
    traces_span_metrics_interval: Option<String>,
    traces_max_exemplars: Option<usize>,
    traces_search_timeout: Option<String>,
    log_format: Option<String>,
    global: Option<serde_yaml_ng::Value>,
    scrape_configs: Option<serde_yaml_ng::Value>,
}

fn parse_addr(flag: &str, v: &str) -> anyhow::Result<Option<SocketAddr>> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| anyhow!("{flag}: {v:?} is not an address like 127.0.0.1:9700 (or `off`)"))
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
}

/// Log format from the config file, when the flag did not set it.
pub fn log_format_from_file(flags: &ServerFlags) -> Option<String> {
    flags
        .config
        .as_ref()
        .and_then(|p| read_file_config(p).ok())
        .and_then(|c| c.log_format)
}

/// Resolves flags over the config file over the defaults.
pub fn resolve(flags: &ServerFlags) -> anyhow::Result<ServerConfig> {
    let file = match &flags.config {
        Some(p) => read_file_config(p)?,
        None => FileConfig::default(),
    };
    let src = flags
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    macro_rules! pick {
        ($f:ident) => {
            flags.$f.clone().or(file.$f.clone())
        };
    }
    let data_dir = pick!(data_dir).unwrap_or_else(|| PathBuf::from("./skopos-data"));
    let mut cfg = ServerConfig::new(data_dir);
    if let Some(v) = pick!(listen) {
        cfg.listen =
            parse_addr("--listen", &v)?.ok_or_else(|| anyhow!("--listen cannot be off"))?;
    }
    if let Some(v) = pick!(otlp_http_listen) {
        cfg.otlp_http_listen = parse_addr("--otlp-http-listen", &v)?;
    }
    if let Some(v) = pick!(otlp_grpc_listen) {
        cfg.otlp_grpc_listen = parse_addr("--otlp-grpc-listen", &v)?;
    }
    if let Some(p) = pick!(auth_token_file) {
        let t = std::fs::read_to_string(&p)
            .with_context(|| format!("cannot read auth token file {}", p.display()))?;
        cfg.auth_token = Some(t.trim().to_string());
    }
    cfg.insecure = flags.insecure || file.insecure.unwrap_or(false);
    match (pick!(tls_cert), pick!(tls_key)) {
        (Some(cert), Some(key)) => cfg.tls = Some(TlsConfig { cert, key }),
        (None, None) => {}
        _ => bail!("--tls-cert and --tls-key go together"),
    }
    if let Some(v) = pick!(wal_fsync) {
        cfg.tsdb.wal_fsync = match v.as_str() {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::Interval(Duration::from_secs(1)),
            "never" => FsyncPolicy::Never,
            other => bail!("--wal-fsync: {other:?} is not one of always, interval, never"),
        };
    }
    if let Some(v) = pick!(retention_time) {
        let d = parse_duration(&v).map_err(|e| anyhow!("--retention.time: {e}"))?;
        cfg.tsdb.retention_time = (!d.is_zero()).then_some(d);
    }
    if let Some(v) = pick!(retention_size) {
        let s = parse_size(&v).map_err(|e| anyhow!("--retention.size: {e}"))?;
        cfg.tsdb.retention_size = (s > 0).then_some(s);
    }
    if let Some(v) = pick!(out_of_order_window) {
        let d = parse_duration(&v).map_err(|e| anyhow!("--out-of-order-window: {e}"))?;
        cfg.tsdb.out_of_order_window_ms = d.as_millis() as i64;
    }
    if let Some(v) = pick!(max_body_size) {
        cfg.max_body_bytes = parse_size(&v).map_err(|e| anyhow!("--max-body-size: {e}"))? as usize;
    }
    if let Some(v) = pick!(max_series) {
        cfg.tsdb.limits.max_series = v;
    }
    if let Some(v) = pick!(max_labels_per_series) {
        cfg.tsdb.limits.max_labels_per_series = v;
    }
    if let Some(v) = pick!(max_label_name_length) {
        cfg.tsdb.limits.max_label_name_length = v;
    }
    if let Some(v) = pick!(max_label_value_length) {
        cfg.tsdb.limits.max_label_value_length = v;
    }
    if let Some(v) = pick!(self_scrape_interval) {
        cfg.self_scrape_interval = if v == "off" {
            None
        } else {
            Some(parse_duration(&v).map_err(|e| anyhow!("--self-scrape-interval: {e}"))?)
        };
    }
    if let Some(v) = pick!(query_lookback_delta) {
        let d = parse_duration(&v).map_err(|e| anyhow!("--query.lookback-delta: {e}"))?;
        if d.is_zero() {
            bail!("--query.lookback-delta must be greater than 0");
        }
        cfg.query.lookback_delta_ms = d.as_millis() as i64;
    }
    if let Some(v) = pick!(query_max_samples) {
        cfg.query.max_samples = v;
    }
    if let Some(v) = pick!(query_timeout) {
        let d = parse_duration(&v).map_err(|e| anyhow!("--query.timeout: {e}"))?;
        if d.is_zero() {
            bail!("--query.timeout must be greater than 0");
        }
        cfg.query.timeout = d;
    }
    if let Some(v) = pick!(query_max_concurrency) {
        cfg.query_max_concurrency = v.max(1);
    }
    if let Some(v) = pick!(traces_retention_time) {
        let d = parse_duration(&v).map_err(|e| anyhow!("--traces.retention-time: {e}"))?;
        cfg.traces.retention_ns = (!d.is_zero()).then_some(d.as_nanos() as i64);
    }
    if let Some(v) = pick!(traces_retention_size) {
        let s = parse_size(&v).map_err(|e| anyhow!("--traces.retention-size: {e}"))?;
        cfg.traces.retention_bytes = (s > 0).then_some(s);
    }
    if let Some(v) = pick!(traces_max_spans_per_trace) {
        if v == 0 {
            bail!("--traces.max-spans-per-trace must be greater than 0");
        }
        cfg.traces.max_spans_per_trace = v;
    }
    if let Some(v) = pick!(traces_max_bytes_per_trace) {
        let s = parse_size(&v).map_err(|e| anyhow!("--traces.max-bytes-per-trace: {e}"))?;
        if s == 0 {
            bail!("--traces.max-bytes-per-trace must be greater than 0");
        }
        cfg.traces.max_bytes_per_trace = s;
    }
    if let Some(v) = pick!(traces_max_attributes_per_span) {
        cfg.traces.max_attributes_per_span = v;
    }
    if let Some(v) = pick!(traces_span_metrics_interval) {
        cfg.span_metrics_interval = if v == "off" {
            None
        } else {
            let d =
                parse_duration(&v).map_err(|e| anyhow!("--traces.span-metrics-interval: {e}"))?;
            if d.is_zero() {
                bail!("--traces.span-metrics-interval must be greater than 0 (or `off`)");
            }
            Some(d)
        };
    }
    if let Some(v) = pick!(traces_max_exemplars) {
        cfg.max_exemplars = v;
    }
    if let Some(v) = pick!(traces_search_timeout) {
        let d = parse_duration(&v).map_err(|e| anyhow!("--traces.search-timeout: {e}"))?;
        if d.is_zero() {
            bail!("--traces.search-timeout must be greater than 0");
        }
        cfg.traceql.timeout = d;
    }
    if file.global.is_some() || file.scrape_configs.is_some() {
        let mut m = serde_yaml_ng::Mapping::new();
        if let Some(g) = file.global {
            m.insert("global".into(), g);
        }
        if let Some(s) = file.scrape_configs {
            m.insert("scrape_configs".into(), s);
        }
        let scrape: skopos_ingest::scrape::ScrapeConfigFile =
            serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(m))
                .map_err(|e| anyhow!("config file {src}: scrape_configs: {e}"))?;
        scrape
            .validate()
            .map_err(|e| anyhow!("config file {src}: {e}"))?;
        cfg.scrape = Some(scrape);
    }
    Ok(cfg)
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
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(e.contains("retention") && e.contains("line 2"), "{e}");
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
        assert_eq!(cfg.max_exemplars, 7);
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
