//! Log storage for skopos: streams of log lines, written through a WAL,
//! held in an in-memory head, flushed to compressed immutable segments, and
//! read back through [`skopos_model::LogQueryable`].
//!
//! The one design decision to know: an append is acknowledged only after its
//! WAL record is written (and fsynced unless told otherwise), exactly like
//! the TSDB, so an acknowledged line survives `kill -9`; lines may arrive in
//! any order (no "entry too far behind") and an exact duplicate (same stream,
//! timestamp and line) is dropped. A flush swaps the head out, rotates the
//! WAL, writes the segment (`.tmp` + rename), then deletes the WAL segments
//! the segment covers; the segment records the last of them, so a crash in
//! between never replays them twice.
//!
//! Map: `wal.rs` (record format, replay with torn-tail repair), `segment.rs`
//! (segment format, block reads), `tokens.rs` (the full-text index of a
//! segment: `|=` needles skip the blocks that cannot hold them), this file
//! (`Store`: limits, head, flush, retention, queries).

mod deletes;
mod inspect;
mod segment;
mod tokens;
mod wal;

pub use deletes::DeleteRequest;
pub use inspect::{inspect, Report, SegmentInfo};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use skopos_model::{
    Labels, LogBatch, LogEntry, LogQueryable, LogSelect, LogStream, Matcher, StorageError,
};

use segment::Segment;
pub use skopos_model::Retained;
use skopos_storage::{DirLock, FsyncPolicy, Wal, WalOptions};

/// A log store failure.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// I/O, corruption, the directory lock: what the shared storage
    /// mechanics report.
    #[error(transparent)]
    Storage(#[from] skopos_storage::Error),
    /// The batch breaks a limit; nothing of it was stored.
    #[error("{0}")]
    Limit(String),
    /// The batch would pass the active-stream limit; nothing was stored.
    #[error("{0}")]
    Streams(String),
    /// An earlier WAL write failed; appends are refused until a restart.
    #[error("the log WAL failed earlier; refusing appends until restart")]
    Failed,
}

impl LogsError {
    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        skopos_storage::Error::io(path, source).into()
    }

    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        skopos_storage::Error::corrupt(path, detail).into()
    }
}

/// What the query engines see of a failure.
impl From<LogsError> for StorageError {
    fn from(e: LogsError) -> Self {
        match e {
            LogsError::Storage(s) => s.into(),
            LogsError::Failed => StorageError::Unavailable(e.to_string()),
            LogsError::Limit(_) | LogsError::Streams(_) => StorageError::Other(e.to_string()),
        }
    }
}

/// Limits and tuning.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest line accepted, in bytes.
    pub max_line_bytes: usize,
    /// Most labels a stream may have.
    pub max_labels_per_stream: usize,
    /// Most streams the head may hold.
    pub max_active_streams: usize,
    /// Raw bytes after which the head is flushed to a segment.
    pub head_max_bytes: usize,
    /// fsync the WAL before acknowledging.
    pub fsync: bool,
    /// Segments whose newest line is older than this (ns) are deleted.
    pub retention_ns: Option<i64>,
    /// Oldest segments are deleted while segments take more bytes than this.
    pub retention_bytes: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_line_bytes: 256 * 1024,
            max_labels_per_stream: 15,
            max_active_streams: 100_000,
            head_max_bytes: 256 << 20,
            fsync: true,
            retention_ns: None,
            retention_bytes: None,
        }
    }
}

/// What an append did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub entries: usize,
    pub duplicates: usize,
}

/// Entries of equal time compared on append to drop exact duplicates.
const DEDUP_WINDOW: usize = 32;

#[derive(Default)]
struct Head {
    index: HashMap<Labels, usize>,
    streams: Vec<(Labels, Vec<LogEntry>)>,
    bytes: usize,
}

impl Head {
    /// Inserts a stream's entries keeping time order, dropping exact
    /// duplicates; returns (inserted, duplicates). Entries older than the
    /// stream's newest are merged in one pass over the part they overlap,
    /// so a late batch costs what it overlaps, not a shift per entry.
    fn insert(&mut self, labels: &Labels, mut new: Vec<LogEntry>) -> (usize, usize) {
        if new.is_empty() {
            return (0, 0);
        }
        let i = match self.index.get(labels) {
            Some(&i) => i,
            None => {
                self.streams.push((labels.clone(), Vec::new()));
                self.index.insert(labels.clone(), self.streams.len() - 1);
                self.streams.len() - 1
            }
        };
        if !new.windows(2).all(|w| w[0].ts <= w[1].ts) {
            new.sort_by_key(|e| e.ts);
        }
        let entries = &mut self.streams[i].1;
        let at = entries.partition_point(|x| x.ts < new[0].ts);
        let tail = entries.split_off(at);
        entries.reserve(tail.len() + new.len());
        let (mut added, mut dups, mut bytes) = (0, 0, 0);
        let mut old = tail.into_iter().peekable();
        for e in new {
            while let Some(o) = old.next_if(|o| o.ts <= e.ts) {
                entries.push(o);
            }
            // Every entry with this timestamp, old or new, is now at the
            // end of `entries` (the old tail left holds only later ones).
            // Only the last few are compared, so that a source stamping
            // thousands of lines with one time stays linear; a duplicate
            // further back is dropped when read instead (see `select`).
            let dup = entries
                .iter()
                .rev()
                .take(DEDUP_WINDOW)
                .take_while(|x| x.ts == e.ts)
                .any(|x| x.line == e.line && x.metadata == e.metadata);
            if dup {
                dups += 1;
                continue;
            }
            bytes += e.line.len() + 16;
            added += 1;
            entries.push(e);
        }
        entries.extend(old);
        self.bytes += bytes;
        (added, dups)
    }
}

struct WalState {
    wal: Wal,
    failed: bool,
}

struct Parts {
    head: Head,
    /// The head being written to a segment, still readable.
    flushing: Option<Arc<Head>>,
    segments: Vec<Arc<Segment>>,
}

/// What a selector covers (Loki's `index/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub streams: u64,
    /// Segment blocks, plus one per head stream.
    pub chunks: u64,
    pub entries: u64,
    /// Bytes of line text.
    pub bytes: u64,
}

/// Figures for `skopos logs inspect`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub segments: Vec<SegmentStats>,
    pub head_streams: usize,
    pub head_entries: usize,
    pub head_bytes: usize,
    /// Segment blocks decompressed by queries since the store was opened.
    pub blocks_read: u64,
}

#[derive(Debug, Clone)]
pub struct SegmentStats {
    pub file: PathBuf,
    /// Memory held by the segment's token index.
    pub index_bytes: usize,
    pub streams: usize,
    pub entries: u64,
    pub raw_bytes: u64,
    pub file_bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// What [`Store::delete`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub entries: u64,
    /// Segments written again without the deleted lines.
    pub segments_rewritten: usize,
    /// Segments left empty, and so removed.
    pub segments_removed: usize,
    /// Segment bytes on disk before minus after.
    pub bytes_freed: i64,
}

/// The log store of one data directory.
pub struct Store {
    dir: PathBuf,
    _lock: DirLock,
    opts: Options,
    wal: Mutex<WalState>,
    parts: RwLock<Parts>,
    /// One flush, retention pass or delete at a time.
    flush: Mutex<()>,
    next_segment: Mutex<u64>,
    blocks_read: AtomicU64,
    /// The delete requests made so far (`deletes.rs`).
    deletes: deletes::History,
}

impl Store {
    /// Opens (or creates) the store in `dir`: opens the segments, replays
    /// the WAL segments they do not cover (repairing a torn tail).
    pub fn open(dir: &Path, opts: Options) -> Result<Store, LogsError> {
        let wal_dir = dir.join("wal");
        let seg_dir = dir.join("segments");
        for d in [dir, &wal_dir, &seg_dir] {
            std::fs::create_dir_all(d).map_err(|e| LogsError::io(d, e))?;
        }
        let lock = DirLock::acquire(dir)?;
        // A flush that did not finish left a `.tmp`; its WAL is still there.
        skopos_storage::remove_leftover_tmp(&seg_dir)?;
        let mut segments = Vec::new();
        let mut next = 1u64;
        let mut covered = 0u64;
        for e in std::fs::read_dir(&seg_dir).map_err(|e| LogsError::io(&seg_dir, e))? {
            let e = e.map_err(|e| LogsError::io(&seg_dir, e))?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let seg = Segment::open(&path)?;
            covered = covered.max(seg.wal_upto);
            next = next.max(n + 1);
            segments.push(Arc::new(seg));
        }
        segments.sort_by_key(|s| s.min_ts);
        let mut head = Head::default();
        let wal_opts = WalOptions {
            fsync: FsyncPolicy::always_if(opts.fsync),
            ..WalOptions::default()
        };
        let (wal, _) = Wal::recover(&wal_dir, wal::FORMAT, wal_opts, covered, &mut |typ, p| {
            let Some(batch) = wal::decode(typ, p) else {
                return false;
            };
            for s in batch.streams {
                head.insert(&s.labels, s.entries);
            }
            true
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            opts,
            wal: Mutex::new(WalState { wal, failed: false }),
            parts: RwLock::new(Parts {
                head,
                flushing: None,
                segments,
            }),
            flush: Mutex::new(()),
            next_segment: Mutex::new(next),
            blocks_read: AtomicU64::new(0),
            deletes: deletes::History::open(dir)?,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn check(&self, batch: &LogBatch) -> Result<(), LogsError> {
        let parts = self.parts.read();
        let mut new_streams = 0;
        for s in &batch.streams {
            if s.labels.is_empty() {
                return Err(LogsError::Limit("a stream needs at least one label".into()));
            }
            if s.labels.len() > self.opts.max_labels_per_stream {
                return Err(LogsError::Limit(format!(
                    "stream {} has {} labels, more than the limit of {}",
                    s.labels,
                    s.labels.len(),
                    self.opts.max_labels_per_stream
                )));
            }
            if let Some(e) = s
                .entries
                .iter()
                .find(|e| e.line.len() > self.opts.max_line_bytes)
            {
                return Err(LogsError::Limit(format!(
                    "a line of stream {} is {} bytes, longer than the limit of {}",
                    s.labels,
                    e.line.len(),
                    self.opts.max_line_bytes
                )));
            }
            if !parts.head.index.contains_key(&s.labels) {
                new_streams += 1;
            }
        }
        if parts.head.streams.len() + new_streams > self.opts.max_active_streams {
            return Err(LogsError::Streams(format!(
                "the batch would make {} active streams, more than the limit of {}",
                parts.head.streams.len() + new_streams,
                self.opts.max_active_streams
            )));
        }
        Ok(())
    }

    /// Appends a batch: all of it or, on a limit, none of it. Returns once
    /// the WAL record is written (and fsynced when configured).
    pub fn append(&self, batch: LogBatch) -> Result<Appended, LogsError> {
        self.check(&batch)?;
        let rec = wal::record(&batch);
        let mut w = self.wal.lock();
        if w.failed {
            return Err(LogsError::Failed);
        }
        if let Err(e) = w.wal.log(&rec) {
            w.failed = true;
            return Err(e.into());
        }
        let mut out = Appended::default();
        {
            let mut parts = self.parts.write();
            for s in batch.streams {
                let (a, d) = parts.head.insert(&s.labels, s.entries);
                out.entries += a;
                out.duplicates += d;
            }
        }
        drop(w);
        if self.parts.read().head.bytes >= self.opts.head_max_bytes {
            self.flush()?;
        }
        Ok(out)
    }

    /// Writes the head to a segment and drops the WAL it covers.
    pub fn flush(&self) -> Result<(), LogsError> {
        let _one = self.flush.lock();
        self.flush_locked()
    }

    fn flush_locked(&self) -> Result<(), LogsError> {
        let (head, upto) = {
            let w = self.wal.lock();
            let mut parts = self.parts.write();
            if parts.head.streams.is_empty() {
                return Ok(());
            }
            let upto = w.wal.rotate()?;
            let head = Arc::new(std::mem::take(&mut parts.head));
            parts.flushing = Some(head.clone());
            (head, upto)
        };
        let n = {
            let mut n = self.next_segment.lock();
            *n += 1;
            *n - 1
        };
        let mut streams: Vec<(&Labels, &[LogEntry])> = head
            .streams
            .iter()
            .map(|(l, e)| (l, e.as_slice()))
            .collect();
        streams.sort_by(|a, b| a.0.cmp(b.0));
        let seg_dir = self.dir.join("segments");
        let written = segment::write(&seg_dir, &format!("{n:012}.seg"), upto, &streams);
        let mut parts = self.parts.write();
        parts.flushing = None;
        match written {
            Ok(seg) => {
                parts.segments.push(Arc::new(seg));
                parts.segments.sort_by_key(|s| s.min_ts);
            }
            Err(e) => {
                // Keep the lines readable and in the WAL; merge them back.
                let head = Arc::try_unwrap(head).unwrap_or_else(|h| Head {
                    index: h.index.clone(),
                    streams: h.streams.clone(),
                    bytes: h.bytes,
                });
                for (labels, entries) in head.streams {
                    parts.head.insert(&labels, entries);
                }
                return Err(e);
            }
        }
        drop(parts);
        skopos_storage::delete_segments_upto(&self.dir.join("wal"), upto)?;
        Ok(())
    }

    /// Deletes segments past the retention time (`now_ns`) or size; says
    /// how many and how many bytes.
    pub fn apply_retention(&self, now_ns: i64) -> Result<Retained, LogsError> {
        let _one = self.flush.lock();
        let mut doomed = Vec::new();
        {
            let mut parts = self.parts.write();
            if let Some(r) = self.opts.retention_ns {
                let cutoff = now_ns.saturating_sub(r);
                parts.segments.retain(|s| {
                    let keep = s.max_ts >= cutoff;
                    if !keep {
                        doomed.push(s.clone());
                    }
                    keep
                });
            }
            if let Some(max) = self.opts.retention_bytes {
                let mut total: u64 = parts.segments.iter().map(|s| s.file_bytes).sum();
                while total > max && !parts.segments.is_empty() {
                    let s = parts.segments.remove(0);
                    total -= s.file_bytes;
                    doomed.push(s);
                }
            }
        }
        let mut out = Retained::default();
        for s in &doomed {
            std::fs::remove_file(&s.path).map_err(|e| LogsError::io(&s.path, e))?;
            out.segments_deleted += 1;
            out.bytes_freed += s.file_bytes;
        }
        if !doomed.is_empty() {
            skopos_storage::sync_dir(&self.dir.join("segments"))?;
        }
        Ok(out)
    }

    /// Deletes the lines of the streams matching `matchers` in
    /// `[start, end)` for which `doomed` holds, for good: the head is
    /// flushed first (so the WAL that holds its lines is gone), then every
    /// segment holding such a line is written again without it and put in
    /// place of the old one by a rename, so a crash leaves either the old
    /// segment or the new one, never a mix. A segment left empty is
    /// removed. Lines appended while the delete runs are not touched.
    pub fn delete(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        doomed: &dyn Fn(&LogEntry) -> bool,
    ) -> Result<Deleted, LogsError> {
        let _one = self.flush.lock();
        self.flush_locked()?;
        let matches = |l: &Labels| matchers.iter().all(|m| m.matches_labels(l));
        let segments = self.parts.read().segments.clone();
        let mut out = Deleted::default();
        for seg in segments {
            let hit = seg.max_ts >= start
                && seg.min_ts < end
                && seg.streams.iter().any(|s| {
                    matches(&s.labels)
                        && s.blocks.iter().any(|b| b.max_ts >= start && b.min_ts < end)
                });
            if !hit {
                continue;
            }
            let mut kept: Vec<(Labels, Vec<LogEntry>)> = Vec::with_capacity(seg.streams.len());
            let mut removed = 0u64;
            for s in &seg.streams {
                let mut entries = Vec::new();
                for b in &s.blocks {
                    entries.extend(seg.read_block(b, &|_, _| true)?);
                }
                if matches(&s.labels) {
                    let before = entries.len();
                    entries.retain(|e| !(e.ts >= start && e.ts < end && doomed(e)));
                    removed += (before - entries.len()) as u64;
                }
                if !entries.is_empty() {
                    kept.push((s.labels.clone(), entries));
                }
            }
            if removed == 0 {
                continue;
            }
            out.entries += removed;
            let replacement = if kept.is_empty() {
                std::fs::remove_file(&seg.path).map_err(|e| LogsError::io(&seg.path, e))?;
                skopos_storage::sync_dir(&self.dir.join("segments"))?;
                out.segments_removed += 1;
                out.bytes_freed += seg.file_bytes as i64;
                None
            } else {
                let streams: Vec<(&Labels, &[LogEntry])> =
                    kept.iter().map(|(l, e)| (l, e.as_slice())).collect();
                let name = seg
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let new =
                    segment::write(&self.dir.join("segments"), &name, seg.wal_upto, &streams)?;
                out.segments_rewritten += 1;
                out.bytes_freed += seg.file_bytes as i64 - new.file_bytes as i64;
                Some(Arc::new(new))
            };
            let mut parts = self.parts.write();
            parts.segments.retain(|s| !Arc::ptr_eq(s, &seg));
            parts.segments.extend(replacement);
            parts.segments.sort_by_key(|s| s.min_ts);
        }
        Ok(out)
    }

    /// [`Store::delete`], recorded in the store's delete history: logged as
    /// received before any line goes, then as processed with what was
    /// removed. `query` is the request as the client wrote it; `now` its
    /// arrival (Unix ns).
    pub fn delete_request(
        &self,
        query: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        doomed: &dyn Fn(&LogEntry) -> bool,
        now: i64,
    ) -> Result<DeleteRequest, LogsError> {
        let id = self.deletes.received(query, start, end, now)?;
        let removed = self.delete(matchers, start, end, doomed)?;
        let done = skopos_units::now_ns();
        self.deletes.processed(id, done, &removed)?;
        Ok(DeleteRequest {
            id,
            query: query.to_owned(),
            start,
            end,
            created: now,
            processed: Some((done, removed)),
        })
    }

    /// Adds requests kept elsewhere before (an older version's history) to
    /// the history, as they are.
    pub fn import_delete_requests(&self, reqs: &[DeleteRequest]) -> Result<(), LogsError> {
        self.deletes.import(reqs)
    }

    /// The delete requests made so far, oldest first.
    pub fn delete_requests(&self) -> Result<Vec<DeleteRequest>, LogsError> {
        self.deletes.list()
    }

    /// Figures for `skopos logs inspect`.
    pub fn stats(&self) -> Stats {
        let parts = self.parts.read();
        Stats {
            segments: parts
                .segments
                .iter()
                .map(|s| SegmentStats {
                    file: s.path.clone(),
                    index_bytes: s.index.bytes(),
                    streams: s.streams.len(),
                    entries: s.entries(),
                    raw_bytes: s.raw_bytes(),
                    file_bytes: s.file_bytes,
                    min_ts: s.min_ts,
                    max_ts: s.max_ts,
                })
                .collect(),
            head_streams: parts.head.streams.len(),
            head_entries: parts.head.streams.iter().map(|s| s.1.len()).sum(),
            head_bytes: parts.head.bytes,
            blocks_read: self.blocks_read.load(Ordering::Relaxed),
        }
    }

    /// Streams matching `sel`, each merged over segments and head, in time
    /// order, without exact duplicates; handed to `f` one at a time.
    pub fn select(
        &self,
        sel: &LogSelect,
        f: &mut dyn FnMut(LogStream) -> bool,
    ) -> Result<(), LogsError> {
        enum Src {
            Block(Arc<Segment>, usize, usize),
            Head(Arc<Head>, usize),
        }
        let matches = |l: &Labels| sel.matchers.iter().all(|m| m.matches_labels(l));
        let (segments, flushing, head) = {
            let parts = self.parts.read();
            // The head is copied per matching stream below, under the lock.
            let head: Vec<(Labels, Vec<LogEntry>)> = parts
                .head
                .streams
                .iter()
                .filter(|(l, _)| matches(l))
                .map(|(l, e)| {
                    let lo = e.partition_point(|x| x.ts < sel.start);
                    let hi = e.partition_point(|x| x.ts < sel.end);
                    (l.clone(), e[lo..hi].to_vec())
                })
                .filter(|(_, e)| !e.is_empty())
                .collect();
            (parts.segments.clone(), parts.flushing.clone(), head)
        };
        let mut by_stream: BTreeMap<Labels, Vec<Src>> = BTreeMap::new();
        for seg in &segments {
            if seg.max_ts < sel.start || seg.min_ts >= sel.end {
                continue;
            }
            // Blocks that may hold the needles, from the token index.
            let candidates = if sel.contains.is_empty() {
                None
            } else {
                seg.index.candidates(&sel.contains, seg.blocks)
            };
            for (si, s) in seg.streams.iter().enumerate() {
                if !matches(&s.labels) {
                    continue;
                }
                for (bi, b) in s.blocks.iter().enumerate() {
                    let maybe = candidates.as_ref().is_none_or(|c| c[b.ordinal as usize]);
                    if maybe && b.max_ts >= sel.start && b.min_ts < sel.end {
                        by_stream
                            .entry(s.labels.clone())
                            .or_default()
                            .push(Src::Block(seg.clone(), si, bi));
                    }
                }
            }
        }
        if let Some(fl) = &flushing {
            for (i, (l, _)) in fl.streams.iter().enumerate() {
                if matches(l) {
                    by_stream
                        .entry(l.clone())
                        .or_default()
                        .push(Src::Head(fl.clone(), i));
                }
            }
        }
        let mut head: BTreeMap<Labels, Vec<LogEntry>> = head.into_iter().collect();
        for l in head.keys() {
            by_stream.entry(l.clone()).or_default();
        }
        // The hints narrow what is copied out; a regex this store cannot
        // compile narrows nothing (the engine filters again anyway).
        let regexes: Vec<regex::Regex> = sel
            .matches
            .iter()
            .filter_map(|m| regex::Regex::new(m).ok())
            .collect();
        let keep_with = |regexes: &[regex::Regex], ts: i64, line: &str| {
            ts >= sel.start
                && ts < sel.end
                && sel.contains.iter().all(|c| line.contains(c.as_str()))
                && regexes.iter().all(|r| r.is_match(line))
        };
        let keep = |ts: i64, line: &str| keep_with(&regexes, ts, line);
        let wanted = |e: &LogEntry| keep(e.ts, &e.line);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        for (labels, srcs) in by_stream {
            let mut entries: Vec<LogEntry> = Vec::new();
            let mut blocks = Vec::new();
            for src in srcs {
                match src {
                    Src::Block(seg, si, bi) => blocks.push((seg, si, bi)),
                    Src::Head(h, i) => {
                        entries.extend(h.streams[i].1.iter().filter(|e| wanted(e)).cloned());
                    }
                }
            }
            self.blocks_read
                .fetch_add(blocks.len() as u64, Ordering::Relaxed);
            let read = |part: &[(Arc<Segment>, usize, usize)]| -> Result<Vec<LogEntry>, LogsError> {
                // A clone per reading thread: threads sharing one `Regex`
                // contend for its pool of match caches (the regex crate's advice).
                let regexes = regexes.clone();
                let keep = |ts: i64, line: &str| keep_with(&regexes, ts, line);
                let mut out = Vec::new();
                for (seg, si, bi) in part {
                    out.extend(seg.read_block(&seg.streams[*si].blocks[*bi], &keep)?);
                }
                Ok(out)
            };
            if blocks.len() > 1 && threads > 1 {
                // Blocks decompress independently: one contiguous share per core.
                let share = blocks.len().div_ceil(threads);
                let parts: Vec<Result<Vec<LogEntry>, LogsError>> = std::thread::scope(|sc| {
                    let handles: Vec<_> = blocks
                        .chunks(share)
                        .map(|part| sc.spawn(|| read(part)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                        .collect()
                });
                for p in parts {
                    entries.extend(p?);
                }
            } else {
                entries.extend(read(&blocks)?);
            }
            if let Some(h) = head.remove(&labels) {
                entries.extend(h.into_iter().filter(|e| wanted(e)));
            }
            let ordered = entries
                .windows(2)
                .all(|w| (w[0].ts, w[0].line.as_str()) < (w[1].ts, w[1].line.as_str()));
            if !ordered {
                entries.sort_by(|a, b| {
                    (a.ts, &a.line, &a.metadata).cmp(&(b.ts, &b.line, &b.metadata))
                });
            }
            entries.dedup_by(|a, b| a.ts == b.ts && a.line == b.line && a.metadata == b.metadata);
            if entries.is_empty() {
                continue;
            }
            if !f(LogStream { labels, entries }) {
                break;
            }
        }
        Ok(())
    }

    /// Streams, blocks, entries and line bytes of the streams matching
    /// `matchers` in `[start, end)`, counted at block granularity for segments.
    pub fn index_stats(&self, matchers: &[Matcher], start: i64, end: i64) -> IndexStats {
        let matches = |l: &Labels| matchers.iter().all(|m| m.matches_labels(l));
        let parts = self.parts.read();
        let mut out = IndexStats::default();
        let mut streams = std::collections::BTreeSet::new();
        for seg in &parts.segments {
            for s in seg.streams.iter().filter(|s| matches(&s.labels)) {
                for b in s
                    .blocks
                    .iter()
                    .filter(|b| b.max_ts >= start && b.min_ts < end)
                {
                    streams.insert(s.labels.clone());
                    out.chunks += 1;
                    out.entries += b.count;
                    out.bytes += b.line_bytes;
                }
            }
        }
        let heads = parts.flushing.iter().map(|h| &**h).chain([&parts.head]);
        for h in heads {
            for (l, e) in h.streams.iter().filter(|(l, _)| matches(l)) {
                let lo = e.partition_point(|x| x.ts < start);
                let hi = e.partition_point(|x| x.ts < end);
                if lo < hi {
                    streams.insert(l.clone());
                    out.chunks += 1;
                    out.entries += (hi - lo) as u64;
                    out.bytes += e[lo..hi].iter().map(|x| x.line.len() as u64).sum::<u64>();
                }
            }
        }
        out.streams = streams.len() as u64;
        out
    }

    /// Label sets of the streams with lines in `[start, end)` matching `matchers`.
    pub fn streams(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Labels> {
        let matches = |l: &Labels| matchers.iter().all(|m| m.matches_labels(l));
        let parts = self.parts.read();
        let mut out = std::collections::BTreeSet::new();
        for seg in &parts.segments {
            if seg.max_ts < start || seg.min_ts >= end {
                continue;
            }
            for s in &seg.streams {
                if matches(&s.labels)
                    && s.blocks.iter().any(|b| b.max_ts >= start && b.min_ts < end)
                {
                    out.insert(s.labels.clone());
                }
            }
        }
        let heads = parts.flushing.iter().map(|h| &**h).chain([&parts.head]);
        for h in heads {
            for (l, e) in &h.streams {
                if matches(l) && e.iter().any(|x| x.ts >= start && x.ts < end) {
                    out.insert(l.clone());
                }
            }
        }
        out.into_iter().collect()
    }
}

impl LogQueryable for Store {
    fn select_logs(
        &self,
        sel: &LogSelect,
        f: &mut dyn FnMut(LogStream) -> bool,
    ) -> Result<(), StorageError> {
        self.select(sel, f).map_err(Into::into)
    }

    fn log_label_names(&self, start: i64, end: i64) -> Result<Vec<String>, StorageError> {
        let mut names = std::collections::BTreeSet::new();
        for l in self.streams(&[], start, end) {
            names.extend(l.iter().map(|x| x.name.clone()));
        }
        Ok(names.into_iter().collect())
    }

    fn log_label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = std::collections::BTreeSet::new();
        for l in self.streams(matchers, start, end) {
            if let Some(v) = l.get(name) {
                values.insert(v.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }
}

impl skopos_model::Lifecycle for Store {
    type Report = Retained;
    type Error = LogsError;
    const KIND: &'static str = "logs";

    fn flush(&self) -> Result<(), LogsError> {
        Store::flush(self)
    }

    fn maintenance(&self, now_ns: i64) -> Result<Retained, LogsError> {
        self.apply_retention(now_ns)
    }

    /// Flushes the head (on failure its lines stay in the WAL), then closes
    /// the WAL.
    fn close(&self) -> Result<(), LogsError> {
        let flushed = Store::flush(self);
        self.wal.lock().wal.close()?;
        flushed
    }
}

#[cfg(test)]
mod tests;
