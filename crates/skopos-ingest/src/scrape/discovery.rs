//! Target discovery: static and file_sd target groups, and turning a
//! discovered address into a target with Prometheus' relabelling rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use skopos_model::{Labels, LabelsBuilder};

use super::config::{default_refresh, parse_duration, FileSdConfig, JobConfig, TargetGroup};
use crate::relabel;

/// One target after discovery and relabelling.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub(super) labels: Labels,
    pub(super) discovered: Labels,
    pub(super) url: String,
    /// From `__scrape_interval__`/`__scrape_timeout__` after relabelling.
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
}

impl Target {
    pub(super) fn key(&self) -> String {
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
pub(super) fn populate(
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
            skopos_units::format_duration(cfg.interval),
        ),
        (
            "__scrape_timeout__",
            skopos_units::format_duration(cfg.timeout),
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
            skopos_units::format_duration(timeout),
            skopos_units::format_duration(interval)
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

pub(super) struct FileSdCache {
    files: HashMap<PathBuf, (Option<SystemTime>, Vec<TargetGroup>)>,
    /// Files that failed to read, with their modification time then: not
    /// retried (nor logged again) until they change or a full refresh.
    pub(super) failed: HashMap<PathBuf, Option<SystemTime>>,
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
    pub(super) fn new() -> Self {
        FileSdCache {
            files: HashMap::new(),
            failed: HashMap::new(),
            last_full_refresh: Instant::now(),
        }
    }

    /// Re-reads files whose modification time changed (or all of them when
    /// the refresh interval passed) and returns all their target groups.
    pub(super) fn refresh(&mut self, cfgs: &[FileSdConfig], job: &str) -> Vec<TargetGroup> {
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
                    let stale = match (self.files.get(&path), self.failed.get(&path)) {
                        _ if full => true,
                        (_, Some(failed_at)) => *failed_at != mtime,
                        (Some((old, _)), None) => *old != mtime,
                        (None, None) => true,
                    };
                    if stale {
                        match read_sd_file(&path) {
                            Ok(groups) => {
                                self.failed.remove(&path);
                                self.files.insert(path.clone(), (mtime, groups));
                            }
                            // Keep the last good content, as Prometheus does.
                            Err(e) => {
                                tracing::warn!(job, error = %e, "file_sd read failed");
                                self.failed.insert(path.clone(), mtime);
                            }
                        }
                    }
                    if let Some((_, groups)) = self.files.get(&path) {
                        out.extend(groups.iter().cloned());
                    }
                }
            }
        }
        self.files.retain(|p, _| present.contains(p));
        self.failed.retain(|p, _| present.contains(p));
        out
    }
}
