//! `skopos logs inspect`: what a log data directory holds, read without
//! changing anything (no WAL replay, no repair), so it is safe beside a
//! running server.

use std::fmt;
use std::path::Path;

use crate::segment::Segment;
use crate::LogsError;

/// One segment's figures.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub file: String,
    pub streams: usize,
    pub blocks: usize,
    pub entries: u64,
    /// Bytes of line text.
    pub line_bytes: u64,
    pub file_bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub tokens: usize,
}

/// A log data directory's figures.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub segments: Vec<SegmentInfo>,
    pub wal_files: usize,
    pub wal_bytes: u64,
    /// Distinct streams over all segments.
    pub streams: usize,
}

impl Report {
    /// Stored bytes over line bytes, for the segments.
    pub fn ratio(&self) -> f64 {
        let lines: u64 = self.segments.iter().map(|s| s.line_bytes).sum();
        let file: u64 = self.segments.iter().map(|s| s.file_bytes).sum();
        if lines == 0 {
            0.0
        } else {
            file as f64 / lines as f64
        }
    }
}

/// Reads `dir` (a store's `logs` directory).
pub fn inspect(dir: &Path) -> Result<Report, LogsError> {
    let mut report = Report::default();
    let mut streams = std::collections::BTreeSet::new();
    let seg_dir = dir.join("segments");
    if seg_dir.is_dir() {
        let mut paths: Vec<_> = std::fs::read_dir(&seg_dir)
            .map_err(|e| LogsError::io(&seg_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        paths.sort();
        for p in paths {
            let s = Segment::open(&p)?;
            streams.extend(s.streams.iter().map(|st| st.labels.clone()));
            let blocks = s.streams.iter().flat_map(|st| &st.blocks);
            report.segments.push(SegmentInfo {
                file: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                streams: s.streams.len(),
                blocks: s.blocks,
                entries: s.entries(),
                line_bytes: blocks.map(|b| b.line_bytes).sum(),
                file_bytes: s.file_bytes,
                min_ts: s.min_ts,
                max_ts: s.max_ts,
                tokens: s.index.len(),
            });
        }
    }
    let wal_dir = dir.join("wal");
    if wal_dir.is_dir() {
        for (_, p) in skopos_storage::list_segments(&wal_dir)? {
            report.wal_files += 1;
            report.wal_bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
    }
    report.streams = streams.len();
    Ok(report)
}

fn time(ns: i64) -> String {
    skopos_units::format_rfc3339(ns, skopos_units::Precision::Seconds)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<18} {:>8} {:>8} {:>12} {:>12} {:>12} {:>6}  {:<20}  {:<20}",
            "SEGMENT",
            "STREAMS",
            "BLOCKS",
            "ENTRIES",
            "LINE BYTES",
            "FILE BYTES",
            "RATIO",
            "FROM",
            "TO"
        )?;
        for s in &self.segments {
            let ratio = if s.line_bytes == 0 {
                0.0
            } else {
                s.file_bytes as f64 / s.line_bytes as f64
            };
            writeln!(
                f,
                "{:<18} {:>8} {:>8} {:>12} {:>12} {:>12} {:>6.3}  {:<20}  {:<20}",
                s.file,
                s.streams,
                s.blocks,
                s.entries,
                s.line_bytes,
                s.file_bytes,
                ratio,
                time(s.min_ts),
                time(s.max_ts)
            )?;
        }
        writeln!(
            f,
            "{} segments, {} streams, stored/line bytes {:.3}; WAL: {} files, {} bytes (lines not yet in a segment)",
            self.segments.len(),
            self.streams,
            self.ratio(),
            self.wal_files,
            self.wal_bytes
        )
    }
}
