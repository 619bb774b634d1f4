//! `skopos agent`: the host log shipper. It tails files and Docker
//! container logs, parses lines (`json`, `logfmt`), batches them and pushes
//! them to `<server>/loki/api/v1/push` as snappy-compressed protobuf, so it
//! works against skopos and against a real Loki.
//!
//! The one design decision to know: **delivery is at-least-once, and a read
//! position only moves once its line is safe** — acknowledged by the server,
//! dropped as permanently refused (a 4xx other than 429), or durably written
//! to the bounded disk buffer. A crash or restart therefore never loses a
//! line; it may resend the last unacknowledged batch. When the disk buffer
//! is full the agent stops reading (backpressure) rather than dropping: for
//! files the file itself is the buffer, and Docker keeps its own log.
//!
//! ```yaml
//! server: http://127.0.0.1:9700
//! auth_token_file: null          # file with a bearer token
//! headers: {}                    # extra HTTP headers, e.g. X-Scope-OrgID
//! state_dir: ./skopos-agent      # positions.json + buffer/
//! buffer_max_bytes: 256MiB       # disk buffer bound (then: backpressure)
//! batch: {max_bytes: 1MiB, max_wait: 1s}
//! retry: {min_backoff: 500ms, max_backoff: 30s, timeout: 10s}
//! metrics_listen: 127.0.0.1:9701 # or "off"
//! sources:
//!   - type: file
//!     name: app                  # in metrics; default file-<index>
//!     include: ["/var/log/app/*.log"]
//!     exclude: ["*.gz"]          # matched against the path and the file name
//!     format: json               # json | logfmt | raw
//!     timestamp_field: null      # default: ts, time, timestamp, @timestamp
//!     fields_to_labels: [level]
//!     fields_to_metadata: [trace_id]
//!     labels: {job: app}         # plus filename
//!     max_line_bytes: 256KiB     # longer lines are truncated (counted)
//!     poll_interval: 250ms
//!     refresh_interval: 5s       # globs evaluated again
//!     rotate_wait: 5s            # a rotated file is followed this long after it stops growing
//!   - type: docker
//!     host: unix:///var/run/docker.sock
//!     filters: {label: ["com.docker.compose.project=shop"]}
//!     labels: {job: docker}      # plus container_name, image, compose_project, compose_service, stream
//! ```
//!
//! Modules: `tail` (files, rotation), `docker` (containers), `parse`
//! (formats, timestamps), `ship` (batches, push, retries), `buffer` (disk
//! buffer format), `positions` (positions file), `metrics` (`/metrics`).

pub mod buffer;
pub mod config;
pub mod docker;
pub mod metrics;
pub mod parse;
pub mod positions;
pub mod ship;
pub mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

pub use config::{Config, ConfigError};
use metrics::{Metrics, SourceMetrics};
use positions::Positions;
use ship::{Backoff, Sender, ShipReport, Shipper};

/// `skopos agent` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The agent's YAML config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Read every source to its current end, ship it all, wait for the
    /// server to acknowledge it, save positions and exit (non-zero if
    /// something could not be shipped).
    #[arg(long)]
    pub once: bool,
    /// Print batches as JSON lines on stdout instead of sending them;
    /// positions and the disk buffer are left alone.
    #[arg(long)]
    pub dry_run: bool,
    /// With --once: how long to keep retrying before giving up.
    #[arg(long, default_value = "60s", value_parser = skopos_units::parse_duration)]
    pub once_timeout: Duration,
}

/// How a run is driven (the library face of [`AgentArgs`]).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub once: bool,
    pub dry_run: bool,
    pub once_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            once: false,
            dry_run: false,
            once_timeout: Duration::from_secs(60),
        }
    }
}

/// What a finished run achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub ship: ShipReport,
    /// Sources that failed (e.g. Docker unreachable with `--once`).
    pub source_errors: Vec<String>,
}

impl Report {
    /// Everything read was delivered (or is safe on disk, when not `--once`).
    pub fn ok(&self) -> bool {
        self.ship.undelivered_batches == 0
            && self.ship.rejected_batches == 0
            && self.source_errors.is_empty()
    }
}

/// A running agent.
pub struct Agent {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Report>,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    metrics_task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Opens the state directory, binds `/metrics` and starts every source
    /// and the shipper.
    pub async fn start(cfg: Config, opts: RunOptions) -> anyhow::Result<Agent> {
        std::fs::create_dir_all(&cfg.state_dir)
            .with_context(|| format!("cannot create state_dir {}", cfg.state_dir.display()))?;
        let positions_path = cfg.state_dir.join("positions.json");
        let positions = Arc::new(Mutex::new(
            Positions::load(&positions_path)
                .with_context(|| format!("cannot read {}", positions_path.display()))?,
        ));
        let buffer_dir = cfg.state_dir.join("buffer");
        let buffer = if opts.dry_run {
            // Printing never fails, and a dry run must not consume what
            // a real run buffered.
            buffer::DiskBuffer::disabled()
        } else {
            buffer::DiskBuffer::open(&buffer_dir, cfg.buffer_max_bytes)
                .with_context(|| format!("cannot open the disk buffer {}", buffer_dir.display()))?
        };
        if !buffer.is_empty() {
            tracing::info!(
                batches = buffer.len(),
                bytes = buffer.bytes(),
                "replaying the disk buffer"
            );
        }
        let token = match &cfg.auth_token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read auth_token_file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let sender = Sender::new(
            &cfg.server,
            token,
            &cfg.headers,
            cfg.retry.timeout,
            opts.dry_run,
        )?;

        let source_metrics: Vec<Arc<SourceMetrics>> = cfg
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Arc::new(SourceMetrics {
                    name: cfg.source_name(i),
                    kind: match s {
                        config::SourceConfig::File(_) => "file",
                        config::SourceConfig::Docker(_) => "docker",
                    },
                    ..Default::default()
                })
            })
            .collect();
        let metrics = Arc::new(Metrics {
            sources: source_metrics.clone(),
            ..Default::default()
        });
        let (metrics_addr, metrics_task) = if cfg.metrics_listen == "off" {
            (None, None)
        } else {
            let l = tokio::net::TcpListener::bind(&cfg.metrics_listen)
                .await
                .with_context(|| format!("metrics_listen {}: cannot bind", cfg.metrics_listen))?;
            let addr = l.local_addr()?;
            (
                Some(addr),
                Some(tokio::spawn(metrics::serve(l, metrics.clone()))),
            )
        };

        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(1024);
        let tracking = tail::Tracking::default();
        let mut sources = Vec::new();
        for (i, s) in cfg.sources.iter().enumerate() {
            let m = source_metrics[i].clone();
            let stop = stop_rx.clone();
            let once = opts.once;
            let name = cfg.source_name(i);
            let task: tokio::task::JoinHandle<Result<(), String>> = match s {
                config::SourceConfig::File(f) => {
                    let src = tail::FileSource::new(
                        f.clone(),
                        tx.clone(),
                        positions.clone(),
                        tracking.clone(),
                        m,
                    );
                    tokio::spawn(async move {
                        src.run(stop, once).await;
                        Ok(())
                    })
                }
                config::SourceConfig::Docker(d) => {
                    let src =
                        docker::DockerSource::new(d.clone(), tx.clone(), positions.clone(), m)
                            .with_context(|| format!("source {name}: cannot connect to Docker"))?;
                    tokio::spawn(async move {
                        src.run(stop, once)
                            .await
                            .map_err(|e| format!("source {name}: {e:#}"))
                    })
                }
            };
            sources.push(task);
        }
        drop(tx);
        let shipper = Shipper {
            sender,
            buffer,
            positions,
            metrics: metrics.clone(),
            max_bytes: cfg.batch.max_bytes,
            max_wait: cfg.batch.max_wait,
            backoff: Backoff::new(cfg.retry.min_backoff, cfg.retry.max_backoff),
            dry_run: opts.dry_run,
        };
        let drain = opts.once.then_some(opts.once_timeout);
        let ship_stop = stop_rx.clone();
        let task = tokio::spawn(async move {
            let ship = shipper.run(rx, ship_stop, drain).await;
            let mut source_errors = Vec::new();
            for s in sources {
                match s.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => source_errors.push(e),
                    Err(e) => source_errors.push(format!("source task failed: {e}")),
                }
            }
            Report {
                ship,
                source_errors,
            }
        });
        Ok(Agent {
            stop: stop_tx,
            task,
            metrics,
            metrics_addr,
            metrics_task,
        })
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops reading, flushes the current batch (to the server or the disk
    /// buffer), saves positions.
    pub async fn stop(self) -> anyhow::Result<Report> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Ends the agent abruptly, as a crash would: no flush, no final save
    /// of positions (for tests of what survives).
    pub fn abort(self) {
        self.task.abort();
        if let Some(m) = &self.metrics_task {
            m.abort();
        }
    }

    /// Waits for the agent to finish by itself (`--once`).
    pub async fn wait(mut self) -> anyhow::Result<Report> {
        let r = (&mut self.task).await.context("agent task failed")?;
        if let Some(m) = self.metrics_task.take() {
            m.abort();
        }
        Ok(r)
    }
}

/// `skopos agent`: runs until `shutdown` resolves (or, with `--once`, until
/// everything is shipped).
pub async fn run(
    args: AgentArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let cfg = Config::load(&args.config)?;
    let opts = RunOptions {
        once: args.once,
        dry_run: args.dry_run,
        once_timeout: args.once_timeout,
    };
    let once = opts.once;
    let mut agent = Agent::start(cfg, opts).await?;
    if let Some(a) = agent.metrics_addr() {
        tracing::info!("agent metrics on http://{a}/metrics");
    }
    // With --once the agent ends by itself; a signal stops it either way.
    let finished = tokio::select! {
        r = &mut agent.task => Some(r),
        _ = shutdown => None,
    };
    let report = match finished {
        Some(r) => {
            if let Some(m) = agent.metrics_task.take() {
                m.abort();
            }
            r.context("agent task failed")?
        }
        None => {
            tracing::info!("stopping: flushing and saving positions");
            agent.stop().await?
        }
    };
    for e in &report.source_errors {
        tracing::error!("{e}");
    }
    if once && !report.ok() {
        anyhow::bail!(
            "not everything was shipped: {} batch(es) left in the disk buffer, {} refused by the server, {} source error(s)",
            report.ship.undelivered_batches,
            report.ship.rejected_batches,
            report.source_errors.len()
        );
    }
    Ok(())
}

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
