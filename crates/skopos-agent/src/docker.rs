//! The Docker source: container logs through the engine API (`bollard`).
//!
//! Running containers (matching the optional `docker ps`-style filters) are
//! listed every `refresh_interval`; each one's log is followed with
//! timestamps from the last shipped timestamp (the per-container position),
//! stdout and stderr demultiplexed into the `stream` label. Docker's `since`
//! has one-second resolution, so lines at or before the remembered
//! nanosecond timestamp are skipped. Stream labels: `container_name`,
//! `image`, `compose_project`, `compose_service`, `stream`, plus the
//! configured ones. The Docker timestamp is the entry's timestamp unless the
//! line's own (with `format: json|logfmt`) says otherwise. Docker splits
//! lines over 16 KiB into several messages; each is shipped as a line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptions, LogsOptions};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::config::DockerSourceConfig;
use crate::metrics::{inc, SourceMetrics};
use crate::parse::{parse_timestamp, LineParser};
use crate::positions::{Checkpoint, Positions};
use crate::ship::{render_labels, Record};

/// Connects to `host` (`unix://…`, `tcp://…`, `http://…`), or to
/// `DOCKER_HOST` / the local socket when `None`.
pub fn connect(host: Option<&str>) -> Result<Docker, bollard::errors::Error> {
    match host {
        None => Docker::connect_with_defaults(),
        Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
            Docker::connect_with_unix(h, 120, bollard::API_DEFAULT_VERSION)
        }
        Some(h) => Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION),
    }
}

#[derive(Clone)]
struct Shared {
    parser: LineParser,
    static_labels: BTreeMap<String, String>,
    tx: mpsc::Sender<Record>,
    positions: Arc<Mutex<Positions>>,
    metrics: Arc<SourceMetrics>,
}

pub struct DockerSource {
    cfg: DockerSourceConfig,
    docker: Docker,
    shared: Shared,
}

impl DockerSource {
    pub fn new(
        cfg: DockerSourceConfig,
        tx: mpsc::Sender<Record>,
        positions: Arc<Mutex<Positions>>,
        metrics: Arc<SourceMetrics>,
    ) -> Result<DockerSource, bollard::errors::Error> {
        let docker = connect(cfg.host.as_deref())?;
        Ok(DockerSource {
            shared: Shared {
                parser: LineParser::new(cfg.parse_config()),
                static_labels: cfg.labels.clone(),
                tx,
                positions,
                metrics,
            },
            cfg,
            docker,
        })
    }

    async fn list(&self, filtered: bool) -> Result<Vec<ContainerSummary>, bollard::errors::Error> {
        let filters = (filtered && !self.cfg.filters.is_empty()).then(|| {
            self.cfg
                .filters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        });
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: !filtered,
                filters,
                ..Default::default()
            }))
            .await
    }

    /// Follows containers until `stop`. With `once`, reads the logs of the
    /// running containers up to now and returns; an engine that cannot be
    /// reached is then an error.
    pub async fn run(self, mut stop: watch::Receiver<bool>, once: bool) -> anyhow::Result<()> {
        let mut following: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            following.retain(|_, h| !h.is_finished());
            match self.list(true).await {
                Ok(list) => {
                    for c in list {
                        let Some(id) = c.id.clone() else { continue };
                        if following.contains_key(&id) {
                            continue;
                        }
                        let running = c.state.as_ref().is_none_or(|s| s.to_string() == "running");
                        if !running {
                            continue;
                        }
                        tracing::info!(container = %id, name = ?c.names, "following container logs");
                        let task = follow(
                            self.docker.clone(),
                            c,
                            self.shared.clone(),
                            !once,
                            stop.clone(),
                        );
                        following.insert(id, tokio::spawn(task));
                    }
                }
                Err(e) if once => {
                    return Err(anyhow::anyhow!(
                        "docker source: cannot list containers: {e}"
                    ))
                }
                Err(e) => tracing::warn!("docker source: cannot list containers: {e}"),
            }
            self.shared
                .metrics
                .containers_followed
                .store(following.len() as u64, Relaxed);
            // Forget positions of containers that no longer exist.
            if let Ok(all) = self.list(false).await {
                let ids: HashSet<String> = all.into_iter().filter_map(|c| c.id).collect();
                self.shared
                    .positions
                    .lock()
                    .unwrap()
                    .retain_containers(|id| ids.contains(id));
            }
            if once {
                for (_, h) in following.drain() {
                    let _ = h.await;
                }
                self.shared.metrics.containers_followed.store(0, Relaxed);
                return Ok(());
            }
            tokio::select! {
                _ = crate::stopped(&mut stop) => break,
                _ = tokio::time::sleep(self.cfg.refresh_interval) => {}
            }
        }
        for (_, h) in following.drain() {
            let _ = h.await;
        }
        Ok(())
    }
}

/// The stream labels of a container, without `stream`.
fn container_labels(
    c: &ContainerSummary,
    base: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = base.clone();
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    l.insert("container_name".into(), name);
    l.insert("image".into(), c.image.clone().unwrap_or_default());
    if let Some(dl) = &c.labels {
        for (from, to) in [
            ("com.docker.compose.project", "compose_project"),
            ("com.docker.compose.service", "compose_service"),
        ] {
            if let Some(v) = dl.get(from) {
                l.insert(to.into(), v.clone());
            }
        }
    }
    l
}

/// Splits `2024-05-01T12:00:00.123456789Z message` into (ns, message).
pub fn split_timestamp(msg: &[u8]) -> Option<(i64, &[u8])> {
    let sp = msg.iter().position(|&b| b == b' ')?;
    let ts = parse_timestamp(std::str::from_utf8(&msg[..sp]).ok()?)?;
    Some((ts, &msg[sp + 1..]))
}

async fn follow(
    docker: Docker,
    c: ContainerSummary,
    sh: Shared,
    follow: bool,
    mut stop: watch::Receiver<bool>,
) {
    let id: Arc<str> = Arc::from(c.id.clone().unwrap_or_default());
    let base = container_labels(&c, &sh.static_labels);
    let render = |stream: &str, extra: &[(String, String)]| -> Arc<str> {
        let mut l = base.clone();
        l.insert("stream".into(), stream.into());
        for (k, v) in extra {
            l.insert(k.clone(), v.clone());
        }
        Arc::from(render_labels(
            l.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
    };
    let (stdout_labels, stderr_labels) = (render("stdout", &[]), render("stderr", &[]));
    let after = sh.positions.lock().unwrap().container(&id);
    let opts = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        since: after.map_or(0, |ns| {
            (ns.div_euclid(1_000_000_000)).clamp(0, i32::MAX as i64) as i32
        }),
        timestamps: true,
        ..Default::default()
    };
    let mut logs = docker.logs(&id, Some(opts));
    loop {
        let item = tokio::select! {
            biased;
            _ = crate::stopped(&mut stop) => break,
            item = logs.next() => item,
        };
        let (stream, msg) = match item {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(container = %id, "log stream ended: {e}");
                break;
            }
            Some(Ok(LogOutput::StdErr { message })) => ("stderr", message),
            Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                ("stdout", message)
            }
            Some(Ok(LogOutput::StdIn { .. })) => continue,
        };
        let Some((ts, mut body)) = split_timestamp(&msg) else {
            tracing::debug!(container = %id, "log message without a timestamp");
            continue;
        };
        if after.is_some_and(|a| ts <= a) {
            continue; // shipped before the restart
        }
        while let Some(b) = body
            .strip_suffix(b"\n")
            .or_else(|| body.strip_suffix(b"\r"))
        {
            body = b;
        }
        let line = String::from_utf8_lossy(body).into_owned();
        let m = &sh.metrics;
        inc(&m.lines_read, 1);
        inc(&m.bytes_read, line.len() as u64);
        let parsed = sh.parser.parse(&line);
        if parsed.error {
            inc(&m.parse_errors, 1);
        }
        let labels = if !parsed.labels.is_empty() {
            render(stream, &parsed.labels)
        } else if stream == "stderr" {
            stderr_labels.clone()
        } else {
            stdout_labels.clone()
        };
        let rec = Record {
            labels,
            ts_ns: parsed.ts_ns.unwrap_or(ts),
            line,
            metadata: parsed.metadata,
            checkpoint: Some(Checkpoint::Container {
                id: id.clone(),
                ts_ns: ts,
            }),
        };
        if sh.tx.send(rec).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_split_off() {
        let (ts, rest) = split_timestamp(b"2024-05-01T12:00:00.000000001Z hello world\n").unwrap();
        assert_eq!(ts, 1_714_564_800_000_000_001);
        assert_eq!(rest, b"hello world\n");
        assert!(split_timestamp(b"no-timestamp here").is_none());
    }

    #[test]
    fn compose_labels_are_mapped() {
        let c = ContainerSummary {
            names: Some(vec!["/shop-web-1".into()]),
            image: Some("shop/web:1".into()),
            labels: Some(HashMap::from([
                ("com.docker.compose.project".to_string(), "shop".to_string()),
                ("com.docker.compose.service".to_string(), "web".to_string()),
                ("other".to_string(), "x".to_string()),
            ])),
            ..Default::default()
        };
        let l = container_labels(
            &c,
            &BTreeMap::from([("job".to_string(), "docker".to_string())]),
        );
        let want: BTreeMap<String, String> = [
            ("compose_project", "shop"),
            ("compose_service", "web"),
            ("container_name", "shop-web-1"),
            ("image", "shop/web:1"),
            ("job", "docker"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(l, want);
    }
}
