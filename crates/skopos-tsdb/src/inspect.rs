//! Offline, read-only inspection of a data directory (`skopos tsdb inspect`).
//! Takes no lock and writes nothing, so it works next to a running server.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Serialize;
use skopos_model::{Labels, METRIC_NAME};

use crate::block;
use crate::wal::{self, Record};
use crate::TsdbError;

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_print_as_utc() {
        assert_eq!(super::fmt_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::fmt_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::fmt_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::fmt_ms(-1000), "1969-12-31T23:59:59Z");
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlockInfo {
    pub id: String,
    pub min_time: i64,
    pub max_time: i64,
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub level: u32,
    pub origin: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WalInfo {
    /// Segment files plus the checkpoint, if any.
    pub segments: u64,
    pub bytes: u64,
    /// Distinct series defined in the WAL.
    pub series: u64,
    /// Sample entries in the WAL (a sample may appear twice across a checkpoint).
    pub samples: u64,
    /// Files with a torn or corrupt tail (left untouched by inspect).
    pub damaged_files: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NameCount {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectReport {
    pub blocks: Vec<BlockInfo>,
    pub wal: WalInfo,
    /// Distinct series over blocks and WAL.
    pub total_series: u64,
    pub total_samples: u64,
    pub total_chunks: u64,
    pub block_bytes: u64,
    pub block_samples: u64,
    /// Block bytes on disk divided by block samples.
    pub bytes_per_sample: f64,
    /// Top 10 label names by number of distinct values.
    pub top_label_names: Vec<NameCount>,
    /// Top 10 metric names by number of series.
    pub top_metrics: Vec<NameCount>,
}

fn top10(map: HashMap<String, u64>) -> Vec<NameCount> {
    let mut v: Vec<NameCount> = map
        .into_iter()
        .map(|(name, count)| NameCount { name, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v.truncate(10);
    v
}

/// Reads a data directory without modifying it.
pub fn inspect(dir: &Path) -> Result<InspectReport, TsdbError> {
    if !dir.is_dir() {
        return Err(TsdbError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    let blocks = block::load_all(&dir.join("blocks"), false)?;
    let mut all_series: HashSet<Labels> = HashSet::new();
    let mut infos = Vec::new();
    let (mut block_samples, mut block_bytes, mut chunks) = (0, 0, 0);
    for b in &blocks {
        for sid in 0..b.series.len() as u32 {
            all_series.insert(b.labels(sid));
        }
        block_samples += b.meta.stats.samples;
        block_bytes += b.disk_bytes;
        chunks += b.meta.stats.chunks;
        infos.push(BlockInfo {
            id: b.meta.id.clone(),
            min_time: b.meta.min_time,
            max_time: b.meta.max_time,
            series: b.meta.stats.series,
            samples: b.meta.stats.samples,
            chunks: b.meta.stats.chunks,
            bytes: b.disk_bytes,
            level: b.meta.compaction.level,
            origin: b.meta.origin.clone(),
        });
    }
    let wal_dir = dir.join("wal");
    let mut w = WalInfo::default();
    let mut wal_series: HashSet<Labels> = HashSet::new();
    let mut visit = |rec: Record| match rec {
        Record::Series(list) => wal_series.extend(list.into_iter().map(|(_, l)| l)),
        Record::Samples(list) => w.samples += list.iter().map(|(_, s)| s.len() as u64).sum::<u64>(),
        Record::Tombstones(_) => {}
    };
    w.damaged_files = wal::replay(&wal_dir, false, &mut visit)?.0;
    (w.segments, w.bytes) = wal::disk_usage(&wal_dir);
    w.series = wal_series.len() as u64;
    all_series.extend(wal_series);

    let mut values: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut metrics: HashMap<String, u64> = HashMap::new();
    for l in &all_series {
        for x in l {
            values.entry(&x.name).or_default().insert(&x.value);
        }
        *metrics
            .entry(l.get(METRIC_NAME).unwrap_or("").to_string())
            .or_default() += 1;
    }
    let label_counts = values
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.len() as u64))
        .collect();
    Ok(InspectReport {
        total_series: all_series.len() as u64,
        total_samples: block_samples + w.samples,
        total_chunks: chunks,
        block_bytes,
        block_samples,
        bytes_per_sample: if block_samples > 0 {
            block_bytes as f64 / block_samples as f64
        } else {
            0.0
        },
        top_label_names: top10(label_counts),
        top_metrics: top10(metrics),
        blocks: infos,
        wal: w,
    })
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn fmt_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Blocks: {}", self.blocks.len())?;
        if !self.blocks.is_empty() {
            writeln!(
                f,
                "  {:<24} {:<20} {:<20} {:>5} {:>9} {:>12} {:>9} {:>12} {:>6}",
                "ID",
                "MIN TIME",
                "MAX TIME",
                "LEVEL",
                "SERIES",
                "SAMPLES",
                "CHUNKS",
                "BYTES",
                "B/SMP"
            )?;
            for b in &self.blocks {
                let bps = if b.samples > 0 {
                    b.bytes as f64 / b.samples as f64
                } else {
                    0.0
                };
                writeln!(
                    f,
                    "  {:<24} {:<20} {:<20} {:>5} {:>9} {:>12} {:>9} {:>12} {:>6.2}",
                    b.id,
                    fmt_ms(b.min_time),
                    fmt_ms(b.max_time),
                    b.level,
                    b.series,
                    b.samples,
                    b.chunks,
                    b.bytes,
                    bps
                )?;
            }
        }
        writeln!(
            f,
            "WAL: {} files, {} bytes, {} series, {} samples{}",
            self.wal.segments,
            self.wal.bytes,
            self.wal.series,
            self.wal.samples,
            if self.wal.damaged_files > 0 {
                format!(
                    ", {} with a torn or corrupt tail (normal for the segment a running server is writing; repaired on open)",
                    self.wal.damaged_files
                )
            } else {
                String::new()
            }
        )?;
        writeln!(f, "Total series: {}", self.total_series)?;
        writeln!(f, "Total samples: {}", self.total_samples)?;
        writeln!(f, "Total chunks (blocks): {}", self.total_chunks)?;
        writeln!(
            f,
            "Bytes per sample on disk (blocks): {:.3} ({} bytes / {} samples)",
            self.bytes_per_sample, self.block_bytes, self.block_samples
        )?;
        writeln!(f, "Top label names by distinct values:")?;
        for n in &self.top_label_names {
            writeln!(f, "  {:>10}  {}", n.count, n.name)?;
        }
        writeln!(f, "Top metric names by series:")?;
        for n in &self.top_metrics {
            writeln!(f, "  {:>10}  {}", n.count, n.name)?;
        }
        Ok(())
    }
}
