//! skopos-tsdb: the embedded metrics storage engine.
//!
//! Layout of a data directory:
//!
//! ```text
//! dir/lock              exclusive flock while a Db is open
//! dir/wal/NNNNNNNN      write-ahead log segments   (format: src/wal.rs docs)
//! dir/wal/checkpoint.N  head state up to segment N
//! dir/blocks/<id>/      immutable blocks           (format: src/block.rs, src/chunk.rs docs)
//! dir/exemplars/        the exemplar ring's log and snapshot (src/exemplars.rs docs)
//! ```
//!
//! Each appended batch goes into the in-memory head (`src/head.rs`) and into
//! the WAL (one `write(2)` before `append` returns). Periodic
//! [`Db::maintenance`] cuts the oldest part of the head into a block,
//! compacts blocks, applies retention and truncates the WAL behind a
//! checkpoint.
//!
//! The one design decision to know: **the head applies a batch before the
//! WAL record is written, and WAL replay accepts any sample** (it ignores the
//! out-of-order window and de-duplicates). That lets appenders to different
//! series run in parallel and only serialize on the short WAL write, and it
//! makes every crash window (between block write and checkpoint, between
//! head apply and WAL write) resolve to "data present twice", which queries
//! and compaction de-duplicate, never to "data lost".
//!
//! The TSDB knows nothing about PromQL or HTTP.

mod block;
mod chunk;
mod db;
mod exemplars;
use skopos_model::codec as encoding;
mod head;
mod index;
mod inspect;
mod wal;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use db::Db;
pub use exemplars::{ExemplarOutcome, ExemplarStore, DEFAULT_MAX_EXEMPLARS, MAX_LABEL_SET_CHARS};

pub use inspect::{inspect, BlockInfo, InspectReport, NameCount, WalInfo};

pub use skopos_storage::FsyncPolicy;

#[derive(Clone, Debug)]
pub struct Options {
    pub wal_fsync: FsyncPolicy,
    /// Blocks entirely older than now minus this are deleted.
    pub retention_time: Option<Duration>,
    /// Oldest blocks are deleted until blocks total at most this many bytes.
    pub retention_size: Option<u64>,
    /// How far behind the newest head sample an out-of-order sample may be.
    pub out_of_order_window_ms: i64,
    pub block_duration_ms: i64,
    pub limits: skopos_model::Limits,
    pub wal_segment_size: u64,
    /// Exemplars kept (a ring over all series; 0 keeps none).
    pub max_exemplars: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wal_fsync: FsyncPolicy::default(),
            retention_time: Some(Duration::from_secs(15 * 24 * 3600)),
            retention_size: None,
            out_of_order_window_ms: 10 * 60 * 1000,
            block_duration_ms: 2 * 3600 * 1000,
            limits: skopos_model::Limits::default(),
            wal_segment_size: 128 << 20,
            max_exemplars: DEFAULT_MAX_EXEMPLARS,
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum TsdbError {
    /// I/O, corruption, the directory lock, a closed WAL: what the shared
    /// storage mechanics report.
    #[error(transparent)]
    Storage(#[from] skopos_storage::Error),
    #[error("invalid data: {0}")]
    InvalidData(String),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("the database is closed")]
    Closed,
}

impl TsdbError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        skopos_storage::Error::io(path, source).into()
    }

    pub(crate) fn corrupt(path: impl AsRef<Path>, detail: impl Into<String>) -> Self {
        skopos_storage::Error::corrupt(path, detail).into()
    }
}

/// What the query engines see of a failure.
impl From<TsdbError> for skopos_model::StorageError {
    fn from(e: TsdbError) -> Self {
        match e {
            TsdbError::Storage(s) => s.into(),
            TsdbError::Closed => skopos_model::StorageError::Unavailable(e.to_string()),
            TsdbError::InvalidData(_) | TsdbError::InvalidOptions(_) => {
                skopos_model::StorageError::Other(e.to_string())
            }
        }
    }
}

/// Cardinality of the in-memory head, as Prometheus' `/api/v1/status/tsdb`
/// reports it. Each list is the top entries, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadCardinality {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Total bytes of the distinct values of each label name.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// `name=value` pairs by the number of series carrying them.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

/// Cheap snapshot of the database's state and cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub head_series: u64,
    pub head_samples: u64,
    pub head_chunks: u64,
    /// Oldest / newest timestamp in the head; `None` when the head is empty.
    pub head_min_t: Option<i64>,
    pub head_max_t: Option<i64>,
    /// Distinct label strings interned by the head.
    pub head_symbols: u64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub wal_segments: u64,
    pub wal_bytes: u64,
    pub samples_appended: u64,
    pub duplicates: u64,
    pub too_old: u64,
    pub conflicts: u64,
    pub series_created: u64,
    pub series_limit_rejections: u64,
    pub wal_fsyncs: u64,
    pub wal_corruptions_repaired: u64,
    pub compactions: u64,
    pub blocks_deleted_by_retention: u64,
    pub head_cuts: u64,
}

/// What one [`Db::maintenance`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MaintenanceReport {
    /// Blocks cut from the head.
    pub head_cuts: u64,
    pub compactions: u64,
    pub blocks_deleted: u64,
    pub series_gc: u64,
    pub wal_segments_deleted: u64,
    /// Exemplar log compactions into the snapshot.
    pub exemplar_snapshots: u64,
}

/// What [`Db::delete_series`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeleteReport {
    /// Head series that lost samples, and how many samples.
    pub head_series: u64,
    pub head_samples: u64,
    /// Blocks given tombstones, and the series marked in them.
    pub blocks: u64,
    pub block_series: u64,
}

/// What [`Db::snapshot`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotReport {
    /// Blocks in the snapshot, including the head's.
    pub blocks: u64,
    /// Whether the head was written as a block.
    pub head_block: bool,
}

/// What [`Db::backfill`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillReport {
    pub blocks_created: u64,
    pub series: u64,
    pub samples: u64,
    /// Samples dropped because another sample of the series had the same timestamp.
    pub duplicates_dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub samples_appended: AtomicU64,
    pub duplicates: AtomicU64,
    pub too_old: AtomicU64,
    pub conflicts: AtomicU64,
    pub series_created: AtomicU64,
    pub series_limit_rejections: AtomicU64,
    pub wal_corruptions_repaired: AtomicU64,
    pub compactions: AtomicU64,
    pub blocks_deleted_by_retention: AtomicU64,
    pub head_cuts: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Formats a millisecond duration the way Prometheus does (`10m`, `1h30m`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = -rest;
    }
    for (unit, size) in [
        ("d", 86_400_000i64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}
