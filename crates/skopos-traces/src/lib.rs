//! Span storage for skopos: spans written through a WAL, held in an
//! in-memory head grouped by trace, flushed to compressed, time-partitioned
//! immutable segments, and read back through
//! [`skopos_model::TraceQueryable`] (trace by id, search, tag names and
//! values).
//!
//! The one design decision to know: **a segment keeps every span of a trace
//! together** (the head groups spans by trace id; a flush writes each trace
//! whole into one block), and each segment carries, in memory once opened,
//! a sorted trace-id table and a small search index mapping (field, value)
//! to the blocks that hold it. A lookup by id is then one binary search per
//! segment and one block read per segment that has the trace; a search
//! decompresses only the blocks whose time range, longest span and index
//! entries allow a match, newest first, and stops as soon as the caller has
//! enough. The index is hand-rolled rather than tantivy: the fields searched
//! are exact matches on a few intrinsics and attribute values (no full
//! text), a per-segment dictionary of a few thousand entries answers them,
//! and tantivy would roughly double the crate's build time on the 2-core
//! build machine for no measured gain. Spans are stored row by row in
//! zstd-compressed blocks of ~128 KiB (a columnar layout would compress
//! better; see the figures of the `store` benchmark).
//!
//! Acknowledged means durable: [`Store::append`] returns once its WAL
//! record is written (and fsynced unless [`Options::fsync`] is false), and
//! the spans are readable from the head the moment it returns. A flush swaps
//! the head out, rotates the WAL, writes one segment per time partition
//! (`.tmp`, fsync, rename), then deletes the WAL it covers. Limits: a trace
//! takes at most [`Options::max_spans_per_trace`] spans and
//! [`Options::max_bytes_per_trace`] encoded bytes (later spans of it are
//! rejected, the trace keeps what it has, and [`Appended`] says how many and
//! why); attributes, events and links past their limits are dropped and
//! counted in the span's `dropped_*` fields, and over-long strings are cut
//! (the span is kept, [`Appended::truncated`] counts it) — the same thing an
//! OpenTelemetry SDK does with its span limits.
//!
//! Map: `codec.rs` (span encoding), `wal.rs` (record format, replay with
//! torn-tail repair), `segment.rs` (segment format, trace table, search
//! index), `limits.rs` (attribute limits), `query.rs` (trace by id, search,
//! tags), this file (`Store`: head, append, flush, retention, stats).

mod codec;
mod limits;
mod query;
mod segment;
mod wal;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use skopos_model::{to_hex, Span, SpanBatch, SpanId, TraceId};

use segment::Segment;
use skopos_storage::{DirLock, FsyncPolicy, Wal, WalOptions};

/// A trace store failure.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// I/O, corruption, the directory lock: what the shared storage
    /// mechanics report.
    #[error(transparent)]
    Storage(#[from] skopos_storage::Error),
    /// An earlier WAL write failed; appends are refused until a restart.
    #[error("the trace WAL failed earlier; refusing appends until restart")]
    Failed,
}

impl TracesError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        skopos_storage::Error::io(path, source).into()
    }

    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        skopos_storage::Error::corrupt(path, detail).into()
    }
}

/// What the query engines see of a failure.
impl From<TracesError> for skopos_model::StorageError {
    fn from(e: TracesError) -> Self {
        match e {
            TracesError::Storage(s) => s.into(),
            TracesError::Failed => skopos_model::StorageError::Unavailable(e.to_string()),
        }
    }
}

/// Limits and tuning.
#[derive(Debug, Clone)]
pub struct Options {
    /// fsync the WAL before acknowledging.
    pub fsync: bool,
    /// Encoded bytes of spans after which the head is flushed.
    pub head_max_bytes: usize,
    /// Width of a time partition: a flush writes one segment per partition
    /// (a trace goes to the partition of its earliest span).
    pub partition_ns: i64,
    /// Raw bytes of spans per compressed block (a trace is never split).
    pub block_bytes: usize,
    /// Distinct values of one attribute the search index keeps per segment;
    /// past it, the key is searched through per-block value hashes.
    pub index_values_per_key: usize,
    /// Most spans one trace may hold; later ones are rejected.
    pub max_spans_per_trace: usize,
    /// Most encoded bytes one trace may hold; later spans are rejected.
    pub max_bytes_per_trace: u64,
    /// Attributes kept per span, event, link, resource or scope; the rest are
    /// dropped and counted in `dropped_attributes`.
    pub max_attributes_per_span: usize,
    /// Longest string or byte value (and key, name, message) kept; longer
    /// ones are cut (at a character boundary).
    pub max_attribute_value_bytes: usize,
    /// Events kept per span (the rest counted in `dropped_events`).
    pub max_events_per_span: usize,
    /// Links kept per span (the rest counted in `dropped_links`).
    pub max_links_per_span: usize,
    /// Segments whose newest span started before now minus this (ns) are
    /// deleted by [`Store::apply_retention`].
    pub retention_ns: Option<i64>,
    /// Oldest segments are deleted while segments take more bytes than this.
    pub retention_bytes: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: true,
            head_max_bytes: 64 << 20,
            partition_ns: 3_600_000_000_000,
            block_bytes: 128 << 10,
            index_values_per_key: 10_000,
            max_spans_per_trace: 50_000,
            max_bytes_per_trace: 50 << 20,
            max_attributes_per_span: 128,
            max_attribute_value_bytes: 16 << 10,
            max_events_per_span: 128,
            max_links_per_span: 128,
            retention_ns: None,
            retention_bytes: None,
        }
    }
}

/// What an append did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Spans stored.
    pub spans: usize,
    /// Spans whose span id the head already held for their trace; dropped
    /// (a retried export).
    pub duplicates: usize,
    /// Spans refused: their trace reached a limit, or their ids are invalid.
    pub rejected: usize,
    /// Why spans were refused (the first reason), for OTLP's
    /// `partial_success.error_message`.
    pub reject_reason: Option<String>,
    /// Spans stored with attributes, events or links dropped or values cut.
    pub truncated: usize,
}

impl Appended {
    fn reject(&mut self, why: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.reject_reason.is_none() {
            self.reject_reason = Some(why());
        }
    }
}

/// Figures for `skopos traces inspect`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub segments: Vec<SegmentStats>,
    pub head_spans: usize,
    pub head_traces: usize,
    /// Encoded bytes of the spans in the head.
    pub head_bytes: usize,
    /// Segment blocks decompressed by reads since the store was opened.
    pub blocks_read: u64,
}

impl Stats {
    pub fn segment_spans(&self) -> u64 {
        self.segments.iter().map(|s| s.spans).sum()
    }

    pub fn segment_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.file_bytes).sum()
    }

    /// Bytes on disk per span stored in segments.
    pub fn bytes_per_span(&self) -> f64 {
        self.segment_bytes() as f64 / self.segment_spans().max(1) as f64
    }
}

#[derive(Debug, Clone)]
pub struct SegmentStats {
    pub file: PathBuf,
    pub spans: u64,
    pub traces: usize,
    pub blocks: usize,
    /// Traces that also have spans in older segments.
    pub split_traces: usize,
    /// Keys in the search index.
    pub index_keys: usize,
    pub raw_bytes: u64,
    pub file_bytes: u64,
    pub min_start: i64,
    pub max_start: i64,
}

/// What [`Store::apply_retention`] removed.
pub use skopos_model::Retained;

/// Spans of one trace in the head, in start order.
pub(crate) struct HeadTrace {
    pub spans: Vec<Span>,
    /// Span ids, once the trace is too long for a linear scan.
    ids: Option<HashSet<SpanId>>,
    /// Spans and bytes of this trace stored elsewhere (segments, the head
    /// being flushed) when it entered this head.
    pub prior_spans: u64,
    pub prior_bytes: u64,
    pub bytes: u64,
    pub min_start: i64,
}

/// Spans past which a head trace indexes its span ids.
const LINEAR_IDS: usize = 64;

impl HeadTrace {
    fn has(&self, id: &SpanId) -> bool {
        match &self.ids {
            Some(ids) => ids.contains(id),
            None => self.spans.iter().any(|s| s.span_id == *id),
        }
    }

    fn push(&mut self, s: Span, bytes: u64) {
        match &mut self.ids {
            Some(ids) => {
                ids.insert(s.span_id);
            }
            None if self.spans.len() >= LINEAR_IDS => {
                let mut ids: HashSet<SpanId> = self.spans.iter().map(|s| s.span_id).collect();
                ids.insert(s.span_id);
                self.ids = Some(ids);
            }
            None => {}
        }
        self.min_start = self.min_start.min(s.start_ns);
        self.bytes += bytes;
        let at = self.spans.partition_point(|x| x.start_ns <= s.start_ns);
        self.spans.insert(at, s);
    }

    /// Whether the trace has spans outside this head.
    pub fn is_split(&self) -> bool {
        self.prior_spans > 0
    }
}

#[derive(Default)]
pub(crate) struct Head {
    /// Keyed hashing: clients choose trace ids, and could choose ones that
    /// collide under an unkeyed hash.
    pub traces: HashMap<TraceId, HeadTrace>,
    pub spans: usize,
    pub bytes: usize,
}

pub(crate) struct Parts {
    pub head: Head,
    /// The head being written to segments, still readable.
    pub flushing: Option<Arc<Head>>,
    pub segments: Vec<Arc<Segment>>,
}

impl Parts {
    /// Spans and bytes of trace `id` outside the current head.
    fn prior(&self, id: &TraceId) -> (u64, u64) {
        if let Some(t) = self.flushing.as_ref().and_then(|h| h.traces.get(id)) {
            return (
                t.prior_spans + t.spans.len() as u64,
                t.prior_bytes + t.bytes,
            );
        }
        let (mut spans, mut bytes) = (0, 0);
        for seg in &self.segments {
            if let Some(e) = seg.find(id) {
                spans += u64::from(e.spans);
                bytes += e.bytes;
            }
        }
        (spans, bytes)
    }

    /// Spans and bytes trace `id` holds over every part.
    fn stored(&self, id: &TraceId) -> (u64, u64) {
        match self.head.traces.get(id) {
            Some(t) => (
                t.prior_spans + t.spans.len() as u64,
                t.prior_bytes + t.bytes,
            ),
            None => self.prior(id),
        }
    }

    /// Puts `s` into the head unless the head has its span id already.
    fn insert(&mut self, s: Span, bytes: u64) -> bool {
        let id = s.trace_id;
        if !self.head.traces.contains_key(&id) {
            let (prior_spans, prior_bytes) = self.prior(&id);
            self.head.traces.insert(
                id,
                HeadTrace {
                    spans: Vec::new(),
                    ids: None,
                    prior_spans,
                    prior_bytes,
                    bytes: 0,
                    min_start: i64::MAX,
                },
            );
        }
        let t = self.head.traces.get_mut(&id).expect("inserted above");
        if t.has(&s.span_id) {
            return false;
        }
        t.push(s, bytes);
        self.head.spans += 1;
        self.head.bytes += bytes as usize;
        true
    }
}

struct WalState {
    wal: Wal,
    failed: bool,
}

/// The trace store of one data directory.
pub struct Store {
    dir: PathBuf,
    _lock: DirLock,
    opts: Options,
    wal: Mutex<WalState>,
    pub(crate) parts: RwLock<Parts>,
    /// One flush or retention pass at a time.
    flush: Mutex<()>,
    next_segment: Mutex<u64>,
    pub(crate) blocks_read: AtomicU64,
}

impl Store {
    /// Opens (or creates) the store in `dir`: opens the segments, drops the
    /// segments of a flush a crash cut short, replays the WAL segments no
    /// segment covers (repairing a torn tail).
    pub fn open(dir: &Path, opts: Options) -> Result<Store, TracesError> {
        let wal_dir = dir.join("wal");
        let seg_dir = dir.join("segments");
        for d in [dir, &wal_dir, &seg_dir] {
            std::fs::create_dir_all(d).map_err(|e| TracesError::io(d, e))?;
        }
        let lock = DirLock::acquire(dir)?;
        // A flush that did not finish left `.tmp`s; its WAL is still there.
        skopos_storage::remove_leftover_tmp(&seg_dir)?;
        let mut segments = Vec::new();
        let mut next = 1u64;
        for e in std::fs::read_dir(&seg_dir).map_err(|e| TracesError::io(&seg_dir, e))? {
            let e = e.map_err(|e| TracesError::io(&seg_dir, e))?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            next = next.max(n + 1);
            segments.push(Arc::new(Segment::open(&path)?));
        }
        let wal_segs: Vec<u64> = skopos_storage::list_segments(&wal_dir)?
            .into_iter()
            .map(|s| s.0)
            .collect();
        // A flush group with members missing while its WAL is still there
        // was cut short by a crash: its WAL is replayed instead.
        let mut members: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for s in &segments {
            let m = members.entry(s.wal_upto).or_insert((0, s.group));
            m.0 += 1;
        }
        let torn: HashSet<u64> = members
            .iter()
            .filter(|(upto, (have, want))| have < want && wal_segs.contains(upto))
            .map(|(upto, _)| *upto)
            .collect();
        segments.retain(|s| {
            if torn.contains(&s.wal_upto) {
                tracing::warn!(path = %s.path.display(), "trace segment of an unfinished flush; removed, its WAL is replayed");
                segment::remove_tmp(&s.path);
                false
            } else {
                true
            }
        });
        let covered = segments.iter().map(|s| s.wal_upto).max().unwrap_or(0);
        segments.sort_by_key(|s| s.min_start);
        let mut parts = Parts {
            head: Head::default(),
            flushing: None,
            segments,
        };
        let wal_opts = WalOptions {
            fsync: FsyncPolicy::always_if(opts.fsync),
            ..WalOptions::default()
        };
        let (wal, _) = Wal::recover(&wal_dir, wal::FORMAT, wal_opts, covered, &mut |typ, p| {
            let Some(spans) = wal::decode(typ, p) else {
                return false;
            };
            for s in spans {
                let bytes = codec::encoded_len(&s);
                parts.insert(s, bytes);
            }
            true
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            opts,
            wal: Mutex::new(WalState { wal, failed: false }),
            parts: RwLock::new(parts),
            flush: Mutex::new(()),
            next_segment: Mutex::new(next),
            blocks_read: AtomicU64::new(0),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Appends a batch. Spans past a trace's limits, and spans with an
    /// all-zero trace or span id, are refused and counted; the rest are
    /// stored and readable when this returns, which is after their WAL
    /// record is written (and fsynced when configured).
    pub fn append(&self, batch: SpanBatch) -> Result<Appended, TracesError> {
        self.append_observed(batch, &mut |_| {})
    }

    /// [`Store::append`], handing `observe` the spans the store keeps (past
    /// the limits, without duplicates) once their WAL record is written and
    /// before the head takes them, so a caller can derive from them (span
    /// metrics) without a copy and without counting what was not stored.
    pub fn append_observed(
        &self,
        batch: SpanBatch,
        observe: &mut dyn FnMut(&SpanBatch),
    ) -> Result<Appended, TracesError> {
        let mut out = Appended::default();
        let mut spans = batch.spans;
        let mut cache = limits::Cache::default();
        for s in &mut spans {
            if limits::apply(s, &self.opts, &mut cache) {
                out.truncated += 1;
            }
        }
        let mut w = self.wal.lock();
        if w.failed {
            return Err(TracesError::Failed);
        }
        let mut tables = codec::Tables::default();
        let mut buf = Vec::with_capacity(spans.len() * 512);
        let mut kept: Vec<(Span, u64)> = Vec::with_capacity(spans.len());
        {
            let parts = self.parts.read();
            // Per trace of the batch: spans, bytes, span ids so far.
            let mut pending: HashMap<TraceId, (u64, u64, HashSet<SpanId>)> = HashMap::new();
            for s in spans {
                if s.trace_id == [0; 16] || s.span_id == [0; 8] {
                    out.reject(|| "a span has an all-zero trace id or span id".into());
                    continue;
                }
                let p = pending.entry(s.trace_id).or_insert_with(|| {
                    let (n, b) = parts.stored(&s.trace_id);
                    (n, b, HashSet::new())
                });
                let in_head = parts
                    .head
                    .traces
                    .get(&s.trace_id)
                    .is_some_and(|t| t.has(&s.span_id));
                if in_head || p.2.contains(&s.span_id) {
                    out.duplicates += 1;
                    continue;
                }
                if p.0 >= self.opts.max_spans_per_trace as u64 {
                    out.reject(|| {
                        format!(
                            "trace {} has reached the limit of {} spans per trace",
                            to_hex(&s.trace_id),
                            self.opts.max_spans_per_trace
                        )
                    });
                    continue;
                }
                let before = buf.len();
                codec::put_span(&mut buf, &mut tables, &s);
                let bytes = (buf.len() - before) as u64;
                if p.1 + bytes > self.opts.max_bytes_per_trace {
                    buf.truncate(before);
                    out.reject(|| {
                        format!(
                            "trace {} has reached the limit of {} bytes per trace",
                            to_hex(&s.trace_id),
                            self.opts.max_bytes_per_trace
                        )
                    });
                    continue;
                }
                p.0 += 1;
                p.1 += bytes;
                p.2.insert(s.span_id);
                kept.push((s, bytes));
            }
        }
        if kept.is_empty() {
            return Ok(out);
        }
        let rec = wal::record(&codec::encode_run(&tables, &buf, kept.len()));
        if let Err(e) = w.wal.log(&rec) {
            w.failed = true;
            return Err(e.into());
        }
        let (spans, sizes): (Vec<Span>, Vec<u64>) = kept.into_iter().unzip();
        let logged = SpanBatch { spans };
        observe(&logged);
        let full = {
            let mut parts = self.parts.write();
            for (s, bytes) in logged.spans.into_iter().zip(sizes) {
                if parts.insert(s, bytes) {
                    out.spans += 1;
                }
            }
            parts.head.bytes >= self.opts.head_max_bytes
        };
        drop(w);
        if full {
            // The spans are durable in the WAL whatever happens here; a
            // failed flush keeps the head and is tried again next time.
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "trace head flush failed; spans stay in the WAL");
            }
        }
        Ok(out)
    }

    /// Writes the head to segments (one per time partition) and drops the
    /// WAL they cover. The server calls it at shutdown.
    pub fn flush(&self) -> Result<(), TracesError> {
        let _one = self.flush.lock();
        self.flush_locked()
    }

    fn flush_locked(&self) -> Result<(), TracesError> {
        let (head, upto) = {
            let w = self.wal.lock();
            let mut parts = self.parts.write();
            if parts.head.traces.is_empty() {
                return Ok(());
            }
            let upto = w.wal.rotate()?;
            let head = Arc::new(std::mem::take(&mut parts.head));
            parts.flushing = Some(head.clone());
            (head, upto)
        };
        let written = self.write_segments(&head, upto);
        let mut parts = self.parts.write();
        parts.flushing = None;
        match written {
            Ok(segs) => {
                parts.segments.extend(segs.into_iter().map(Arc::new));
                parts.segments.sort_by_key(|s| s.min_start);
            }
            Err(e) => {
                // Keep the spans readable and in the WAL: merge them back.
                for t in head.traces.values() {
                    for s in &t.spans {
                        let bytes = codec::encoded_len(s);
                        parts.insert(s.clone(), bytes);
                    }
                }
                return Err(e);
            }
        }
        drop(parts);
        skopos_storage::delete_segments_upto(&self.dir.join("wal"), upto)?;
        Ok(())
    }

    /// Writes `head` as one segment per partition: every `.tmp` first, then
    /// the renames, so a crash leaves a group that open can recognise.
    fn write_segments(&self, head: &Head, upto: u64) -> Result<Vec<Segment>, TracesError> {
        let width = self.opts.partition_ns.max(1);
        // Per window: (id, spans, split, first start).
        type Part<'a> = (TraceId, &'a [Span], bool, i64);
        let mut by_window: BTreeMap<i64, Vec<Part>> = BTreeMap::new();
        for (id, t) in &head.traces {
            if t.spans.is_empty() {
                continue;
            }
            by_window
                .entry(t.min_start.div_euclid(width))
                .or_default()
                .push((*id, &t.spans, t.is_split(), t.min_start));
        }
        let group = by_window.len() as u64;
        let first = {
            let mut n = self.next_segment.lock();
            *n += group;
            *n - group
        };
        let seg_dir = self.dir.join("segments");
        let mut tmps: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut result = Ok(());
        for (i, traces) in by_window.values_mut().enumerate() {
            traces.sort_unstable_by_key(|t| (t.3, t.0));
            let input: Vec<(TraceId, &[Span], bool)> =
                traces.iter().map(|t| (t.0, t.1, t.2)).collect();
            let name = format!("{:012}.seg", first + i as u64);
            let written = segment::write_tmp(
                &seg_dir,
                &name,
                upto,
                group,
                &input,
                self.opts.block_bytes,
                self.opts.index_values_per_key,
            );
            match written {
                Ok(paths) => tmps.push(paths),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            for (tmp, _) in &tmps {
                segment::remove_tmp(tmp);
            }
            return Err(e);
        }
        let placed: Result<Vec<Segment>, TracesError> = (|| {
            for (tmp, path) in &tmps {
                skopos_storage::rename(tmp, path)?;
            }
            skopos_storage::sync_dir(&seg_dir)?;
            tmps.iter().map(|(_, path)| Segment::open(path)).collect()
        })();
        if placed.is_err() {
            // The head goes back to memory and its WAL stays: leave no part
            // of this group behind to be read twice.
            for (tmp, path) in &tmps {
                for p in [tmp, path] {
                    if p.exists() {
                        segment::remove_tmp(p);
                    }
                }
            }
        }
        placed
    }

    /// Deletes segments past the retention time (relative to `now_ns`) or
    /// size, oldest first.
    pub fn apply_retention(&self, now_ns: i64) -> Result<Retained, TracesError> {
        let _one = self.flush.lock();
        let mut doomed = Vec::new();
        {
            let mut parts = self.parts.write();
            if let Some(r) = self.opts.retention_ns {
                let cutoff = now_ns.saturating_sub(r);
                parts.segments.retain(|s| {
                    let keep = s.max_start >= cutoff;
                    if !keep {
                        doomed.push(s.clone());
                    }
                    keep
                });
            }
            if let Some(max) = self.opts.retention_bytes {
                let mut total: u64 = parts.segments.iter().map(|s| s.file_bytes).sum();
                while total > max && !parts.segments.is_empty() {
                    let oldest = (0..parts.segments.len())
                        .min_by_key(|&i| parts.segments[i].max_start)
                        .expect("not empty");
                    let s = parts.segments.remove(oldest);
                    total -= s.file_bytes;
                    doomed.push(s);
                }
            }
        }
        let mut out = Retained::default();
        for s in &doomed {
            std::fs::remove_file(&s.path).map_err(|e| TracesError::io(&s.path, e))?;
            out.segments_deleted += 1;
            out.bytes_freed += s.file_bytes;
        }
        if !doomed.is_empty() {
            skopos_storage::sync_dir(&self.dir.join("segments"))?;
        }
        Ok(out)
    }

    /// Figures for `skopos traces inspect`.
    pub fn stats(&self) -> Stats {
        let parts = self.parts.read();
        let mut segments: Vec<SegmentStats> = parts
            .segments
            .iter()
            .map(|s| SegmentStats {
                file: s.path.clone(),
                spans: s.spans,
                traces: s.traces.len(),
                blocks: s.blocks.len(),
                split_traces: s.split.len(),
                index_keys: s.index.len(),
                raw_bytes: s.raw_bytes,
                file_bytes: s.file_bytes,
                min_start: s.min_start,
                max_start: s.max_start,
            })
            .collect();
        segments.sort_by(|a, b| a.file.cmp(&b.file));
        Stats {
            segments,
            head_spans: parts.head.spans,
            head_traces: parts.head.traces.len(),
            head_bytes: parts.head.bytes,
            blocks_read: self.blocks_read.load(Ordering::Relaxed),
        }
    }
}

impl skopos_model::Lifecycle for Store {
    type Report = Retained;
    type Error = TracesError;
    const KIND: &'static str = "traces";

    fn flush(&self) -> Result<(), TracesError> {
        Store::flush(self)
    }

    fn maintenance(&self, now_ns: i64) -> Result<Retained, TracesError> {
        self.apply_retention(now_ns)
    }

    /// Flushes the head (on failure its spans stay in the WAL), then closes
    /// the WAL.
    fn close(&self) -> Result<(), TracesError> {
        let flushed = Store::flush(self);
        self.wal.lock().wal.close()?;
        flushed
    }
}
