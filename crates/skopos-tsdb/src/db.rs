//! [`Db`]: ties the WAL, the head and the blocks together.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use skopos_model::{
    AppendError, AppendOutcome, Labels, Matcher, Sample, SampleSink, SeriesSamples, WriteBatch,
};

use crate::block::{self, Block, BlockWriter, FrameCache};
use crate::exemplars::ExemplarStore;
use crate::head::{align_down, Added, Head, MemSeries};
use crate::wal::{self, Record};
use crate::{
    format_duration_ms, BackfillReport, Counters, DeleteReport, MaintenanceReport, Options,
    SnapshotReport, Stats, TsdbError,
};
use skopos_storage::{DirLock, Wal, WalOptions};

/// Series per WAL record when writing checkpoints.
const CHECKPOINT_BATCH: usize = 4096;

/// The metrics database. `Send + Sync`; share it behind an `Arc`.
pub struct Db {
    dir: PathBuf,
    opts: Options,
    _lock: DirLock,
    head: Head,
    wal: Wal,
    exemplars: ExemplarStore,
    blocks: RwLock<Vec<Arc<Block>>>,
    counters: Arc<Counters>,
    /// Serializes head cuts, compaction, retention and backfill.
    maint: Mutex<()>,
    /// Held (shared) by reads for their whole duration, and (exclusive) by
    /// a head cut while it truncates the head: a read that lists head
    /// series and blocks, then decodes them lazily, sees every sample.
    cut_guard: RwLock<()>,
    closed: AtomicBool,
    /// Set when a WAL write failed: the head may then hold data the WAL
    /// lacks, so no later append may be acknowledged until a restart
    /// rebuilds the head from the WAL (fail-stop).
    wal_failed: AtomicBool,
}

impl Db {
    /// Opens (creating if needed) the store in `dir`: takes an exclusive
    /// `flock` on `dir/lock`, loads the blocks, replays the WAL into the head
    /// (truncating a torn or corrupt tail with a warning).
    pub fn open(dir: &Path, opts: Options) -> Result<Db, TsdbError> {
        if opts.block_duration_ms <= 0 {
            return Err(TsdbError::InvalidOptions(
                "block_duration_ms must be positive".into(),
            ));
        }
        if opts.out_of_order_window_ms < 0 {
            return Err(TsdbError::InvalidOptions(
                "out_of_order_window_ms must not be negative".into(),
            ));
        }
        fs::create_dir_all(dir).map_err(|e| TsdbError::io(dir, e))?;
        let lock = DirLock::acquire(dir)?;
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir).map_err(|e| TsdbError::io(&blocks_dir, e))?;
        let blocks = block::load_all(&blocks_dir, true)?;
        let counters = Arc::new(Counters::default());
        let head = Head::new(opts.block_duration_ms);
        let wal_dir = dir.join("wal");
        let (damaged, first_segment) = replay_into(&head, &wal_dir)?;
        Counters::add(&counters.wal_corruptions_repaired, damaged);
        let wal = Wal::open(
            &wal_dir,
            wal::FORMAT,
            WalOptions {
                fsync: opts.wal_fsync,
                segment_size: opts.wal_segment_size,
            },
            first_segment,
        )?;
        let exemplars =
            ExemplarStore::open(&dir.join("exemplars"), opts.max_exemplars, opts.wal_fsync)?;
        Ok(Db {
            dir: dir.to_path_buf(),
            opts,
            _lock: lock,
            head,
            wal,
            exemplars,
            blocks: RwLock::new(blocks.into_iter().map(Arc::new).collect()),
            counters,
            maint: Mutex::new(()),
            cut_guard: RwLock::new(()),
            closed: AtomicBool::new(false),
            wal_failed: AtomicBool::new(false),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The exemplar ring (persisted beside the WAL).
    pub fn exemplars(&self) -> &ExemplarStore {
        &self.exemplars
    }

    /// Looks a series up, creating it (and logging its WAL record) if needed.
    fn resolve(&self, labels: &Labels) -> Result<Arc<MemSeries>, AppendError> {
        let hash = self.head.hash(labels);
        if let Some(s) = self.head.index.read().get(hash, labels) {
            return Ok(s.clone());
        }
        let mut ix = self.head.index.write();
        if let Some(s) = ix.get(hash, labels) {
            return Ok(s.clone());
        }
        let s = ix.create(hash, labels, None);
        let mut buf = Vec::new();
        wal::encode_series(&mut buf, [(s.r, labels)]);
        self.wal
            .log(&buf)
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        Counters::add(&self.counters.series_created, 1);
        Ok(s)
    }

    /// Validates the whole batch (limits, series limit; a refused batch
    /// stores nothing), applies it to the head and writes it to the WAL with
    /// one `write(2)` before returning. Single samples may still be refused
    /// (too old, conflicting), as counted in the outcome.
    pub fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome, AppendError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AppendError::Unavailable("the database is closed".into()));
        }
        if self.wal_failed.load(Ordering::Acquire) {
            return Err(AppendError::Unavailable(
                "an earlier write-ahead log write failed; restart skopos to recover".into(),
            ));
        }
        for s in &batch.series {
            self.opts.limits.check(&s.labels)?;
        }
        let mut out = AppendOutcome::default();
        let live: Vec<&SeriesSamples> = batch
            .series
            .iter()
            .filter(|s| !s.samples.is_empty())
            .collect();
        let hashes: Vec<u64> = live.iter().map(|s| self.head.hash(&s.labels)).collect();
        let mut handles: Vec<Option<Arc<MemSeries>>> = {
            let ix = self.head.index.read();
            live.iter()
                .zip(&hashes)
                .map(|(s, h)| ix.get(*h, &s.labels).cloned())
                .collect()
        };
        if handles.iter().any(Option::is_none) {
            let mut ix = self.head.index.write();
            let mut fresh: HashMap<&Labels, usize> = HashMap::new();
            for (i, s) in live.iter().enumerate() {
                if handles[i].is_none() && ix.get(hashes[i], &s.labels).is_none() {
                    let n = fresh.len();
                    fresh.entry(&s.labels).or_insert(n);
                }
            }
            let current = ix.series.len();
            let limit = self.opts.limits.max_series;
            if !fresh.is_empty() && current + fresh.len() > limit {
                Counters::add(&self.counters.series_limit_rejections, 1);
                return Err(AppendError::SeriesLimit {
                    new: fresh.len(),
                    current,
                    limit,
                });
            }
            let mut created = Vec::new();
            for (i, s) in live.iter().enumerate() {
                if handles[i].is_some() {
                    continue;
                }
                let h = match ix.get(hashes[i], &s.labels) {
                    Some(h) => h.clone(),
                    None => {
                        let h = ix.create(hashes[i], &s.labels, None);
                        created.push((h.r, &s.labels));
                        h
                    }
                };
                handles[i] = Some(h);
            }
            if !created.is_empty() {
                let mut buf = Vec::new();
                wal::encode_series(&mut buf, created.iter().map(|(r, l)| (*r, *l)));
                self.wal.log(&buf).map_err(|e| self.wal_write_failed(e))?;
                out.series_created = created.len();
                Counters::add(&self.counters.series_created, created.len() as u64);
            }
        }

        let window = self.opts.out_of_order_window_ms;
        let block_ms = self.opts.block_duration_ms;
        // Head-wide min/max/count are updated once per batch, not per sample.
        let (mut batch_min, mut batch_max) = (i64::MAX, i64::MIN);
        let head_max = self.head.max_t.load(Ordering::SeqCst);
        // Samples to log, of all series, one buffer for the whole batch:
        // appended ones and exact duplicates. A duplicate is logged again
        // because the append that first stored it may not have reached the
        // WAL yet (it runs concurrently, or its WAL write failed); logging it
        // here makes this batch's acknowledgement durable on its own. Replay
        // de-duplicates.
        let mut ok: Vec<Sample> = Vec::with_capacity(batch.sample_count());
        let mut appended = 0usize;
        let mut accepted: Vec<(u64, std::ops::Range<usize>)> = Vec::with_capacity(live.len());
        for (i, s) in live.iter().enumerate() {
            let mut handle = handles[i].take().expect("resolved above");
            let mut st = loop {
                let st = handle.state.lock();
                if !st.deleted {
                    break st;
                }
                drop(st);
                handle = self.resolve(&s.labels)?;
            };
            let first = ok.len();
            let chunks_before = st.chunk_count();
            for smp in &s.samples {
                let max_t = head_max.max(batch_max);
                let oldest = (max_t != i64::MIN).then(|| max_t.saturating_sub(window));
                match st.add(smp.t, smp.v, oldest, block_ms) {
                    Added::Appended => {
                        ok.push(*smp);
                        appended += 1;
                        batch_min = batch_min.min(smp.t);
                        batch_max = batch_max.max(smp.t);
                    }
                    Added::Duplicate => {
                        ok.push(*smp);
                        out.duplicates += 1;
                    }
                    Added::Conflict => {
                        out.conflicts += 1;
                        out.first_rejection.get_or_insert_with(|| {
                            format!(
                                "duplicate sample for timestamp with different value: series {} at t={}",
                                s.labels, smp.t
                            )
                        });
                    }
                    Added::TooOld => {
                        out.too_old += 1;
                        out.first_rejection.get_or_insert_with(|| {
                            format!(
                                "sample timestamp too old: t={} for series {} is before {} (newest sample {}); out-of-order window is {}",
                                smp.t,
                                s.labels,
                                oldest.unwrap_or(i64::MIN),
                                max_t,
                                format_duration_ms(window)
                            )
                        });
                    }
                }
            }
            let chunks_after = st.chunk_count();
            drop(st);
            if chunks_after > chunks_before {
                self.head
                    .chunks
                    .fetch_add((chunks_after - chunks_before) as u64, Ordering::Relaxed);
            }
            if ok.len() > first {
                accepted.push((handle.r, first..ok.len()));
            }
        }
        out.samples_appended = appended;
        if out.samples_appended > 0 {
            self.head.max_t.fetch_max(batch_max, Ordering::SeqCst);
            self.head.min_t.fetch_min(batch_min, Ordering::SeqCst);
            self.head
                .samples
                .fetch_add(out.samples_appended as u64, Ordering::Relaxed);
        }
        if !accepted.is_empty() {
            let mut buf = Vec::new();
            wal::encode_samples(
                &mut buf,
                accepted.iter().map(|(r, range)| (*r, &ok[range.clone()])),
            );
            self.wal.log(&buf).map_err(|e| self.wal_write_failed(e))?;
        }
        let c = &self.counters;
        Counters::add(&c.samples_appended, out.samples_appended as u64);
        Counters::add(&c.duplicates, out.duplicates as u64);
        Counters::add(&c.too_old, out.too_old as u64);
        Counters::add(&c.conflicts, out.conflicts as u64);
        Ok(out)
    }

    /// Records a failed WAL write and turns the store fail-stop.
    fn wal_write_failed(&self, e: impl std::fmt::Display) -> AppendError {
        self.wal_failed.store(true, Ordering::Release);
        tracing::error!(error = %e, "write-ahead log write failed; refusing appends until restart");
        AppendError::Unavailable(format!("write-ahead log write failed: {e}"))
    }

    fn blocks_snapshot(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    /// Head series matching, with their labels.
    fn head_matches(&self, matchers: &[Matcher]) -> Vec<(Labels, Arc<MemSeries>)> {
        let ix = self.head.index.read();
        ix.ix
            .select(matchers)
            .into_iter()
            .filter_map(|r| ix.series.get(&r).map(|s| (ix.labels_of(s), s.clone())))
            .collect()
    }

    /// Series matching all `matchers` with their samples in `[mint, maxt]`
    /// (inclusive, ms), merged over blocks and head, sorted by time without
    /// duplicate timestamps; series sorted by labels; series without samples
    /// in range omitted. Staleness markers are returned as stored.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, TsdbError> {
        let mut out = Vec::new();
        self.select_each(matchers, mint, maxt, &mut |labels, samples| {
            out.push(SeriesSamples { labels, samples });
            true
        })?;
        Ok(out)
    }

    /// [`Db::select`], one series at a time: block data is decoded as each
    /// series is handed to `f`, so only one series' samples are held at
    /// once. Stops when `f` returns `false`.
    ///
    /// The matching series are not collected by label set: the head's are
    /// sorted by reference (their labels compared through the symbol
    /// table), each block's ids are already in label order (its symbols
    /// are sorted), and the sources are merged, so one label set per
    /// source is materialised at a time: memory is a few bytes per
    /// matching series, not a label set each.
    pub fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<(), TsdbError> {
        // Head series first, then blocks: a head cut adds its block before
        // it truncates the head, and cannot truncate while this guard is
        // held, so reading the head lazily never misses data that moves
        // from the head to a block meanwhile.
        let _no_truncation = self.cut_guard.read();
        let blocks = self.blocks_snapshot();
        let mut sources: Vec<Source> = vec![Source::head(self.head_sorted(matchers))];
        for (bi, b) in blocks.iter().enumerate() {
            if !b.overlaps(mint, maxt) {
                continue;
            }
            let mut sids: Vec<u32> = b
                .index
                .select(matchers)
                .into_iter()
                .filter(|&sid| b.has_data_in(sid, mint, maxt))
                .collect();
            // Already sorted for blocks written in label order; a block
            // written otherwise is put in order here (its symbol ids sort
            // as their strings do).
            sids.sort_by(|x, y| b.series[*x as usize].syms.cmp(&b.series[*y as usize].syms));
            sources.push(Source::block(bi, sids));
        }
        let mut caches: Vec<FrameCache> = blocks.iter().map(|_| FrameCache::default()).collect();
        for src in &mut sources {
            src.advance(self, &blocks, mint, maxt);
        }
        loop {
            let Some(min) = sources
                .iter()
                .filter_map(|s| s.labels.as_ref())
                .min()
                .cloned()
            else {
                return Ok(());
            };
            let mut parts = Vec::new();
            let mut head_part = None;
            for src in &mut sources {
                if src.labels.as_ref() != Some(&min) {
                    continue;
                }
                match src.kind {
                    SourceKind::Head => {
                        let s = src.head[src.at - 1].state.lock().samples(mint, maxt);
                        if !s.is_empty() {
                            head_part = Some(s);
                        }
                    }
                    SourceKind::Block(bi) => {
                        let sid = src.sids[src.at - 1];
                        let s = blocks[bi].samples(sid, mint, maxt, &mut caches[bi], bi)?;
                        if !s.is_empty() {
                            parts.push(s);
                        }
                    }
                }
                src.advance(self, &blocks, mint, maxt);
            }
            // Blocks oldest first, then the head, as `merge` expects.
            parts.extend(head_part);
            if parts.is_empty() {
                continue;
            }
            if !f(min, merge(parts)) {
                return Ok(());
            }
        }
    }

    /// Head series matching `matchers`, sorted by their labels.
    fn head_sorted(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let ix = self.head.index.read();
        let mut out: Vec<Arc<MemSeries>> = ix
            .ix
            .select(matchers)
            .into_iter()
            .filter_map(|r| ix.series.get(&r).cloned())
            .collect();
        let sym = &ix.ix.symbols;
        out.sort_unstable_by(|a, b| {
            for (x, y) in a.syms.iter().zip(b.syms.iter()) {
                if x != y {
                    let o = sym.get(*x).cmp(sym.get(*y));
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
            }
            a.syms.len().cmp(&b.syms.len())
        });
        out
    }

    /// Label sets of the series matching `matchers` that have data in range
    /// (at chunk granularity).
    pub fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, TsdbError> {
        let mut out = std::collections::BTreeSet::new();
        // Head first, then blocks (see `select`).
        for (labels, s) in self.head_matches(matchers) {
            let st = s.state.lock();
            if st.min_t().is_some_and(|a| a <= maxt) && st.max_t().is_some_and(|b| b >= mint) {
                out.insert(labels);
            }
        }
        for b in self
            .blocks_snapshot()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
        {
            for sid in b.index.select(matchers) {
                if b.has_data_in(sid, mint, maxt) {
                    out.insert(b.labels(sid));
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.head.samples.load(Ordering::Relaxed) > 0
            && self.head.min_t.load(Ordering::SeqCst) <= maxt
            && self.head.max_t.load(Ordering::SeqCst) >= mint
    }

    /// Label names of the series in range; empty `matchers` means all series.
    pub fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, TsdbError> {
        let mut out = std::collections::BTreeSet::new();
        if matchers.is_empty() {
            if self.head_overlaps(mint, maxt) {
                out.extend(self.head.index.read().ix.label_names());
            }
            for b in self
                .blocks_snapshot()
                .iter()
                .filter(|b| b.overlaps(mint, maxt))
            {
                out.extend(b.index.label_names());
            }
        } else {
            for l in self.series(matchers, mint, maxt)? {
                out.extend(l.into_vec().into_iter().map(|l| l.name));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Values of label `name` over the series in range matching `matchers`
    /// (all series if empty).
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, TsdbError> {
        let mut out = std::collections::BTreeSet::new();
        if matchers.is_empty() {
            if self.head_overlaps(mint, maxt) {
                out.extend(self.head.index.read().ix.label_values(name));
            }
            for b in self
                .blocks_snapshot()
                .iter()
                .filter(|b| b.overlaps(mint, maxt))
            {
                out.extend(b.index.label_values(name));
            }
        } else {
            for l in self.series(matchers, mint, maxt)? {
                if let Some(v) = l.get(name) {
                    out.insert(v.to_string());
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Periodic housekeeping: cut the head into blocks when it spans more
    /// than 1.5 block durations, compact, apply retention, truncate the WAL.
    pub fn maintenance(&self, now_ms: i64) -> Result<MaintenanceReport, TsdbError> {
        let _g = self.maint.lock();
        let mut report = MaintenanceReport::default();
        let block_ms = self.opts.block_duration_ms;
        for _ in 0..1000 {
            if self.head.samples.load(Ordering::Relaxed) == 0 {
                break;
            }
            // A sample stamped far in the future must not make every
            // maintenance cut the whole head: the span is measured up to `now`.
            let (hmin, hmax) = (
                self.head.min_t.load(Ordering::SeqCst),
                self.head.max_t.load(Ordering::SeqCst).min(now_ms),
            );
            if (hmax as i128 - hmin as i128) <= (block_ms as i128 * 3 / 2) {
                break;
            }
            let end = align_down(hmin, block_ms).saturating_add(block_ms);
            self.cut_head(end - 1)?;
            report.head_cuts += 1;
            if self.head.min_t.load(Ordering::SeqCst) <= hmin {
                break; // no progress (samples raced in); try again next run
            }
        }
        if report.head_cuts > 0 {
            let (gc, deleted) = self.gc_and_checkpoint()?;
            report.series_gc = gc;
            report.wal_segments_deleted = deleted;
        }
        report.compactions = self.compact()?;
        report.blocks_deleted = self.apply_retention(now_ms)?;
        report.exemplar_snapshots = u64::from(self.exemplars.compact()?);
        Ok(report)
    }

    /// Deletes the samples in `[mint, maxt]` of every series matching
    /// `matchers` (Prometheus' `delete_series`): the head's are removed
    /// (after a WAL tombstone record, so a restart deletes them again), the
    /// blocks' are marked in each block's tombstones file and left out of
    /// every read; compaction and [`Db::clean_tombstones`] drop them for
    /// good. Samples appended meanwhile into the range may survive.
    pub fn delete_series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<DeleteReport, TsdbError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TsdbError::Closed);
        }
        let _g = self.maint.lock();
        let mut report = DeleteReport::default();
        let head = self.head_sorted(matchers);
        if !head.is_empty() {
            let marks: Vec<(u64, i64, i64)> = head.iter().map(|s| (s.r, mint, maxt)).collect();
            let mut buf = Vec::new();
            wal::encode_tombstones(&mut buf, &marks);
            self.wal.log(&buf)?;
            let block_ms = self.opts.block_duration_ms;
            for s in &head {
                let (n, chunks) = s.state.lock().delete_range(mint, maxt, block_ms);
                if n > 0 {
                    report.head_series += 1;
                    report.head_samples += n;
                    self.head.samples.fetch_sub(n, Ordering::Relaxed);
                    if chunks >= 0 {
                        self.head.chunks.fetch_add(chunks as u64, Ordering::Relaxed);
                    } else {
                        self.head
                            .chunks
                            .fetch_sub(chunks.unsigned_abs(), Ordering::Relaxed);
                    }
                }
            }
        }
        for b in self.blocks_snapshot() {
            if !b.overlaps(mint, maxt) {
                continue;
            }
            let marks: Vec<(u32, i64, i64)> = b
                .index
                .select(matchers)
                .into_iter()
                .filter(|&sid| b.has_data_in(sid, mint, maxt))
                .map(|sid| (sid, mint, maxt))
                .collect();
            if !marks.is_empty() {
                b.add_tombstones(&marks)?;
                report.block_series += marks.len() as u64;
                report.blocks += 1;
            }
        }
        Ok(report)
    }

    /// Rewrites every block that has tombstones without the deleted
    /// samples (Prometheus' `clean_tombstones`); returns how many.
    pub fn clean_tombstones(&self) -> Result<u64, TsdbError> {
        let _g = self.maint.lock();
        let mut n = 0;
        for b in self.blocks_snapshot() {
            if b.has_tombstones() {
                self.merge_blocks(std::slice::from_ref(&b), b.meta.compaction.level)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Writes a snapshot of the store into `into` (which must not exist):
    /// every block hard-linked (copied where links cannot be made), and
    /// with `with_head` the head written as one more block, so `into` is a
    /// `blocks` directory another store can open. Prometheus'
    /// `/api/v1/admin/tsdb/snapshot`.
    pub fn snapshot(&self, into: &Path, with_head: bool) -> Result<SnapshotReport, TsdbError> {
        let _g = self.maint.lock();
        if into.exists() {
            return Err(TsdbError::InvalidOptions(format!(
                "snapshot directory {} already exists",
                into.display()
            )));
        }
        let tmp = skopos_storage::tmp_path(into);
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| TsdbError::io(&tmp, e))?;
        let mut report = SnapshotReport::default();
        for b in self.blocks_snapshot() {
            let dst = tmp.join(b.id());
            fs::create_dir_all(&dst).map_err(|e| TsdbError::io(&dst, e))?;
            for ent in fs::read_dir(&b.dir).map_err(|e| TsdbError::io(&b.dir, e))? {
                let ent = ent.map_err(|e| TsdbError::io(&b.dir, e))?;
                let (from, to) = (ent.path(), dst.join(ent.file_name()));
                if fs::hard_link(&from, &to).is_err() {
                    fs::copy(&from, &to).map_err(|e| TsdbError::io(&from, e))?;
                }
            }
            skopos_storage::sync_dir(&dst)?;
            report.blocks += 1;
        }
        if with_head && self.head.samples.load(Ordering::Relaxed) > 0 {
            let _no_truncation = self.cut_guard.read();
            let mut writer = BlockWriter::new(&tmp)?;
            for s in self.head_sorted(&[]) {
                let samples = s.state.lock().samples(i64::MIN, i64::MAX);
                if samples.is_empty() {
                    continue;
                }
                let labels = {
                    let ix = self.head.index.read();
                    ix.labels_of(&s)
                };
                writer.add_series(&labels, &samples)?;
            }
            if writer.finish(1, Vec::new(), "head")?.is_some() {
                report.blocks += 1;
                report.head_block = true;
            }
        }
        skopos_storage::sync_dir(&tmp)?;
        skopos_storage::rename(&tmp, into)?;
        Ok(report)
    }

    /// Persists everything in the head into block(s) now.
    pub fn flush_head(&self) -> Result<(), TsdbError> {
        let _g = self.maint.lock();
        if self.head.samples.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let block_ms = self.opts.block_duration_ms;
        // One block per block_duration-aligned range, oldest first.
        for _ in 0..100_000 {
            if self.head.samples.load(Ordering::Relaxed) == 0 {
                break;
            }
            let hmin = self.head.min_t.load(Ordering::SeqCst);
            let hmax = self.head.max_t.load(Ordering::SeqCst);
            let end = align_down(hmin, block_ms).saturating_add(block_ms);
            let last = end > hmax || end == i64::MAX;
            self.cut_head(if last { hmax } else { end - 1 })?;
            if last || self.head.min_t.load(Ordering::SeqCst) <= hmin {
                break;
            }
        }
        self.gc_and_checkpoint()?;
        Ok(())
    }

    /// Writes every head sample with `t <= maxt` into one block, then drops
    /// those samples from the head.
    fn cut_head(&self, maxt: i64) -> Result<(), TsdbError> {
        let end = maxt.saturating_add(1);
        let mut snap: Vec<(Labels, Arc<MemSeries>)> = {
            let ix = self.head.index.read();
            ix.series
                .values()
                .map(|s| (ix.labels_of(s), s.clone()))
                .collect()
        };
        snap.sort_by(|a, b| a.0.cmp(&b.0));
        let mut writer = BlockWriter::new(&self.dir.join("blocks"))?;
        let mut marks = Vec::with_capacity(snap.len());
        for (labels, s) in &snap {
            let (samples, last_t, gen) = {
                let st = s.state.lock();
                (st.samples(i64::MIN, maxt), st.last_t, st.ooo_gen)
            };
            marks.push((last_t, gen));
            writer.add_series(labels, &samples)?;
        }
        if let Some(b) = writer.finish(1, Vec::new(), "head")? {
            self.add_block(b);
        }
        let (mut samples, mut chunks) = (0, 0);
        let (mut new_min, mut any) = (i64::MAX, false);
        // Waits for running reads (see `select_each`).
        let _readers_done = self.cut_guard.write();
        for ((_, s), (last_t, gen)) in snap.iter().zip(marks) {
            let mut st = s.state.lock();
            let cutoff = end.min(last_t.saturating_add(1));
            let drop_ooo = st.ooo_gen == gen;
            let (a, b) = st.truncate(cutoff, drop_ooo, end);
            samples += a;
            chunks += b;
            if let Some(m) = st.min_t() {
                new_min = new_min.min(m);
                any = true;
            }
        }
        self.head.samples.fetch_sub(samples, Ordering::Relaxed);
        self.head.chunks.fetch_sub(chunks, Ordering::Relaxed);
        // Series created during the cut are not in `snap`; include them.
        if let Some((lo, _)) = self.head.time_range() {
            new_min = new_min.min(lo);
            any = true;
        }
        self.head
            .min_t
            .store(if any { new_min } else { i64::MAX }, Ordering::SeqCst);
        Counters::add(&self.counters.head_cuts, 1);
        Ok(())
    }

    fn add_block(&self, b: Block) {
        let mut blocks = self.blocks.write();
        blocks.push(Arc::new(b));
        blocks.sort_by(|a, b| (a.meta.min_time, &a.meta.id).cmp(&(b.meta.min_time, &b.meta.id)));
    }

    /// Removes empty series from the head, then writes a WAL checkpoint of
    /// the head and deletes the segments it covers. Returns (series removed,
    /// WAL files deleted).
    fn gc_and_checkpoint(&self) -> Result<(u64, u64), TsdbError> {
        let gc = {
            let mut ix = self.head.index.write();
            let mut removed = Vec::new();
            for s in ix.series.values() {
                let mut st = s.state.lock();
                if st.is_empty() {
                    st.deleted = true;
                    removed.push((s.r, self.head.hash(&ix.labels_of(s))));
                }
            }
            ix.remove(&removed);
            removed.len() as u64
        };
        let upto = self.wal.rotate()?;
        let mut cp = wal::begin_checkpoint(self.wal.dir(), upto)?;
        let series: Vec<(Labels, Arc<MemSeries>)> = {
            let ix = self.head.index.read();
            ix.series
                .values()
                .map(|s| (ix.labels_of(s), s.clone()))
                .collect()
        };
        let mut buf = Vec::new();
        for part in series.chunks(CHECKPOINT_BATCH) {
            buf.clear();
            wal::encode_series(&mut buf, part.iter().map(|(l, s)| (s.r, l)));
            let samples: Vec<(u64, Vec<Sample>)> = part
                .iter()
                .map(|(_, s)| (s.r, s.state.lock().samples(i64::MIN, i64::MAX)))
                .collect();
            wal::encode_samples(&mut buf, samples.iter().map(|(r, s)| (*r, s.as_slice())));
            cp.write(&buf)?;
        }
        let deleted = cp.commit()?;
        Ok((gc, deleted))
    }

    /// Merges overlapping blocks, then adjacent blocks into ranges of 3×, 9×,
    /// ... the block duration (up to 10% of retention, at most 31 days).
    fn compact(&self) -> Result<u64, TsdbError> {
        let mut n = 0;
        for _ in 0..1000 {
            let blocks = self.blocks_snapshot();
            let group = overlapping_group(&blocks).or_else(|| self.adjacent_group(&blocks));
            let Some(group) = group else { break };
            let level = group
                .iter()
                .map(|b| b.meta.compaction.level)
                .max()
                .unwrap_or(1)
                + 1;
            self.merge_blocks(&group, level)?;
            n += 1;
        }
        Ok(n)
    }

    fn adjacent_group(&self, blocks: &[Arc<Block>]) -> Option<Vec<Arc<Block>>> {
        let base = self.opts.block_duration_ms;
        let mut max_range = 31 * 86_400_000i64;
        if let Some(rt) = self.opts.retention_time {
            max_range = max_range.min(rt.as_millis() as i64 / 10);
        }
        let horizon = blocks.iter().map(|b| b.meta.max_time).max()?;
        let mut range = base.saturating_mul(3);
        while range <= max_range {
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in blocks {
                let start = align_down(b.meta.min_time, range);
                if b.meta.max_time < start.saturating_add(range) {
                    groups.entry(start).or_default().push(b.clone());
                }
            }
            for (start, g) in groups {
                // Only compact windows that are complete (newer data exists).
                if g.len() >= 2 && start.saturating_add(range) <= horizon {
                    return Some(g);
                }
            }
            range = range.saturating_mul(3);
        }
        None
    }

    fn merge_blocks(&self, group: &[Arc<Block>], level: u32) -> Result<(), TsdbError> {
        let mut all: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
        for (bi, b) in group.iter().enumerate() {
            for sid in 0..b.series.len() as u32 {
                all.entry(b.labels(sid)).or_default().push((bi, sid));
            }
        }
        let mut caches: Vec<FrameCache> = group.iter().map(|_| FrameCache::default()).collect();
        let mut writer = BlockWriter::new(&self.dir.join("blocks"))?;
        for (labels, refs) in all {
            let mut parts = Vec::with_capacity(refs.len());
            for (bi, sid) in refs {
                parts.push(group[bi].samples(sid, i64::MIN, i64::MAX, &mut caches[bi], bi)?);
            }
            writer.add_series(&labels, &merge(parts))?;
        }
        let mut sources: Vec<String> = Vec::new();
        for b in group {
            if b.meta.compaction.sources.is_empty() {
                sources.push(b.meta.id.clone());
            } else {
                sources.extend(b.meta.compaction.sources.iter().cloned());
            }
        }
        let new = writer.finish(level, sources, "compaction")?;
        let ids: Vec<&str> = group.iter().map(|b| b.id()).collect();
        {
            // One swap, so a query sees either the old blocks or the new one.
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !ids.contains(&b.id()));
            if let Some(b) = new {
                blocks.push(Arc::new(b));
            }
            blocks
                .sort_by(|a, b| (a.meta.min_time, &a.meta.id).cmp(&(b.meta.min_time, &b.meta.id)));
        }
        for b in group {
            block::delete(&b.dir)?;
        }
        Counters::add(&self.counters.compactions, 1);
        Ok(())
    }

    fn apply_retention(&self, now_ms: i64) -> Result<u64, TsdbError> {
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let mut blocks = self.blocks.write();
            if let Some(rt) = self.opts.retention_time {
                let cutoff = now_ms.saturating_sub(rt.as_millis() as i64);
                let (old, keep): (Vec<_>, Vec<_>) =
                    blocks.drain(..).partition(|b| b.meta.max_time < cutoff);
                *blocks = keep;
                doomed.extend(old);
            }
            if let Some(limit) = self.opts.retention_size {
                let mut total: u64 = blocks.iter().map(|b| b.disk_bytes).sum();
                while total > limit && !blocks.is_empty() {
                    let oldest = blocks.remove(0);
                    total -= oldest.disk_bytes;
                    doomed.push(oldest);
                }
            }
        }
        for b in &doomed {
            block::delete(&b.dir)?;
            tracing::info!(block = %b.id(), min_time = b.meta.min_time, max_time = b.meta.max_time, "deleted block by retention");
        }
        Counters::add(
            &self.counters.blocks_deleted_by_retention,
            doomed.len() as u64,
        );
        Ok(doomed.len() as u64)
    }

    /// Writes historical samples straight into blocks aligned to the block
    /// duration, bypassing the head and the out-of-order window.
    pub fn backfill(&self, series: Vec<SeriesSamples>) -> Result<BackfillReport, TsdbError> {
        for s in &series {
            self.opts
                .limits
                .check(&s.labels)
                .map_err(|e| TsdbError::InvalidData(e.to_string()))?;
        }
        let _g = self.maint.lock();
        let mut report = BackfillReport::default();
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for s in series {
            merged.entry(s.labels).or_default().extend(s.samples);
        }
        let block_ms = self.opts.block_duration_ms;
        let mut windows: BTreeMap<i64, Vec<(&Labels, std::ops::Range<usize>)>> = BTreeMap::new();
        for samples in merged.values_mut() {
            samples.sort_by_key(|s| s.t);
            let before = samples.len();
            samples.dedup_by_key(|s| s.t);
            report.duplicates_dropped += (before - samples.len()) as u64;
            report.samples += samples.len() as u64;
            if !samples.is_empty() {
                report.series += 1;
            }
        }
        for (labels, samples) in merged.iter() {
            let mut i = 0;
            while i < samples.len() {
                let start = align_down(samples[i].t, block_ms);
                let j = i + samples[i..].partition_point(|s| s.t < start.saturating_add(block_ms));
                windows.entry(start).or_default().push((labels, i..j));
                i = j;
            }
        }
        for parts in windows.values() {
            let mut writer = BlockWriter::new(&self.dir.join("blocks"))?;
            for (labels, range) in parts {
                writer.add_series(labels, &merged[*labels][range.clone()])?;
            }
            if let Some(b) = writer.finish(1, Vec::new(), "backfill")? {
                self.add_block(b);
                report.blocks_created += 1;
            }
        }
        Ok(report)
    }

    /// A cheap snapshot of sizes and cumulative counters.
    /// Head cardinality with the `limit` largest entries of each list.
    pub fn head_cardinality(&self, limit: usize) -> crate::HeadCardinality {
        fn top(mut v: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        }
        let ix = self.head.index.read();
        let syms = &ix.ix.symbols;
        let (mut by_metric, mut values_by_name, mut bytes_by_name, mut pairs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut num_pairs = 0u64;
        for (name, values) in &ix.ix.postings {
            let name = syms.get(*name);
            num_pairs += values.len() as u64;
            values_by_name.push((name.to_string(), values.len() as u64));
            let mut bytes = 0u64;
            for (value, refs) in values {
                let value = syms.get(*value);
                bytes += value.len() as u64;
                if name == skopos_model::METRIC_NAME {
                    by_metric.push((value.to_string(), refs.len() as u64));
                }
                pairs.push((format!("{name}={value}"), refs.len() as u64));
            }
            bytes_by_name.push((name.to_string(), bytes));
        }
        let range = self.head.time_range();
        crate::HeadCardinality {
            num_series: ix.series.len() as u64,
            num_label_pairs: num_pairs,
            chunk_count: self.head.chunks.load(Ordering::Relaxed),
            min_time: range.map(|r| r.0),
            max_time: range.map(|r| r.1),
            series_count_by_metric_name: top(by_metric, limit),
            label_value_count_by_label_name: top(values_by_name, limit),
            memory_in_bytes_by_label_name: top(bytes_by_name, limit),
            series_count_by_label_value_pair: top(pairs, limit),
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let blocks = self.blocks.read();
        let (wal_segments, wal_bytes) = wal::disk_usage(&self.dir.join("wal"));
        let head_samples = self.head.samples.load(Ordering::Relaxed);
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (head_series, head_symbols) = {
            let ix = self.head.index.read();
            (ix.series.len() as u64, ix.ix.symbols.live() as u64)
        };
        Stats {
            head_series,
            head_symbols,
            head_samples,
            head_chunks: self.head.chunks.load(Ordering::Relaxed),
            head_min_t: (head_samples > 0).then(|| self.head.min_t.load(Ordering::SeqCst)),
            head_max_t: (head_samples > 0).then(|| self.head.max_t.load(Ordering::SeqCst)),
            blocks: blocks.len() as u64,
            block_bytes: blocks.iter().map(|b| b.disk_bytes).sum(),
            wal_segments,
            wal_bytes,
            samples_appended: l(&c.samples_appended),
            duplicates: l(&c.duplicates),
            too_old: l(&c.too_old),
            conflicts: l(&c.conflicts),
            series_created: l(&c.series_created),
            series_limit_rejections: l(&c.series_limit_rejections),
            wal_fsyncs: self.wal.fsyncs(),
            wal_corruptions_repaired: l(&c.wal_corruptions_repaired),
            compactions: l(&c.compactions),
            blocks_deleted_by_retention: l(&c.blocks_deleted_by_retention),
            head_cuts: l(&c.head_cuts),
        }
    }

    /// Flushes and fsyncs the WAL and releases the directory lock.
    pub fn close(self) -> Result<(), TsdbError> {
        skopos_model::Lifecycle::close(&self)
    }
}

impl skopos_model::Lifecycle for Db {
    type Report = MaintenanceReport;
    type Error = TsdbError;
    const KIND: &'static str = "metrics";

    fn flush(&self) -> Result<(), TsdbError> {
        self.flush_head()
    }

    fn maintenance(&self, now_ns: i64) -> Result<MaintenanceReport, TsdbError> {
        Db::maintenance(self, now_ns.div_euclid(1_000_000))
    }

    /// Fsyncs and closes the WAL (the head is replayed from it at the next
    /// open, as Prometheus does); appends are refused from then on.
    fn close(&self) -> Result<(), TsdbError> {
        self.closed.store(true, Ordering::Release);
        let exemplars = self.exemplars.close();
        self.wal.close()?;
        exemplars
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.wal.close();
    }
}

impl SampleSink for Db {
    fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome, AppendError> {
        Db::append(self, batch)
    }
}

/// Merges sorted sample runs; on equal timestamps the earliest run wins.
fn merge(mut parts: Vec<Vec<Sample>>) -> Vec<Sample> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    let mut all: Vec<Sample> = parts.into_iter().flatten().collect();
    all.sort_by_key(|s| s.t);
    all.dedup_by_key(|s| s.t);
    all
}

/// The first set of blocks whose time ranges overlap each other.
fn overlapping_group(blocks: &[Arc<Block>]) -> Option<Vec<Arc<Block>>> {
    let mut sorted = blocks.to_vec();
    sorted.sort_by_key(|b| b.meta.min_time);
    let mut group: Vec<Arc<Block>> = Vec::new();
    let mut group_max = i64::MIN;
    for b in sorted {
        if !group.is_empty() && b.meta.min_time <= group_max {
            group_max = group_max.max(b.meta.max_time);
            group.push(b);
            continue;
        }
        if group.len() >= 2 {
            return Some(group);
        }
        group_max = b.meta.max_time;
        group = vec![b];
    }
    (group.len() >= 2).then_some(group)
}

/// Replays the WAL in `wal_dir` into `head`, repairing damaged tails.
/// Returns the damaged files found and the first segment a writer may use.
fn replay_into(head: &Head, wal_dir: &Path) -> Result<(u64, u64), TsdbError> {
    let mut refs: crate::head::U64Map<Arc<MemSeries>> = Default::default();
    let block_ms = head.block_ms;
    let mut visit = |rec: Record| match rec {
        Record::Series(list) => {
            let mut ix = head.index.write();
            for (r, labels) in list {
                let h = head.hash(&labels);
                let s = match ix.get(h, &labels) {
                    Some(s) => s.clone(),
                    None => ix.create(h, &labels, Some(r)),
                };
                refs.insert(r, s);
            }
        }
        Record::Tombstones(list) => {
            for (r, mint, maxt) in list {
                let Some(s) = refs.get(&r) else { continue };
                let (n, chunks) = s.state.lock().delete_range(mint, maxt, block_ms);
                head.samples.fetch_sub(n, Ordering::Relaxed);
                head.chunks
                    .fetch_add(chunks.max(0) as u64, Ordering::Relaxed);
                head.chunks
                    .fetch_sub(chunks.min(0).unsigned_abs(), Ordering::Relaxed);
            }
        }
        Record::Samples(list) => {
            for (r, samples) in list {
                let Some(s) = refs.get(&r) else { continue };
                let mut st = s.state.lock();
                let before = st.chunk_count();
                for smp in samples {
                    if st.add(smp.t, smp.v, None, block_ms) == Added::Appended {
                        head.note_appended(smp.t);
                    }
                }
                let after = st.chunk_count();
                head.chunks
                    .fetch_add(after.saturating_sub(before) as u64, Ordering::Relaxed);
            }
        }
    };
    wal::replay(wal_dir, true, &mut visit)
}

/// The query engines' view of the store.
impl skopos_model::Queryable for Db {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, skopos_model::StorageError> {
        let found = Db::select(self, matchers, mint, maxt)?;
        Ok(found
            .into_iter()
            .map(|s| SeriesSamples {
                labels: s.labels,
                samples: s.samples,
            })
            .collect())
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<(), skopos_model::StorageError> {
        Db::select_each(self, matchers, mint, maxt, f).map_err(Into::into)
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, skopos_model::StorageError> {
        Db::series(self, matchers, mint, maxt).map_err(Into::into)
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, skopos_model::StorageError> {
        Db::label_names(self, matchers, mint, maxt).map_err(Into::into)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, skopos_model::StorageError> {
        Db::label_values(self, name, matchers, mint, maxt).map_err(Into::into)
    }
}

/// One sorted source of series for [`Db::select_each`]'s merge: the head
/// or one block, with the label set of the series it is at.
struct Source {
    kind: SourceKind,
    head: Vec<Arc<MemSeries>>,
    sids: Vec<u32>,
    /// Index of the next series to look at; the current one is `at - 1`.
    at: usize,
    /// The current series' labels; `None` when the source is exhausted.
    labels: Option<Labels>,
}

#[derive(Clone, Copy)]
enum SourceKind {
    Head,
    Block(usize),
}

impl Source {
    fn head(series: Vec<Arc<MemSeries>>) -> Source {
        Source {
            kind: SourceKind::Head,
            head: series,
            sids: Vec::new(),
            at: 0,
            labels: None,
        }
    }

    fn block(bi: usize, sids: Vec<u32>) -> Source {
        Source {
            kind: SourceKind::Block(bi),
            head: Vec::new(),
            sids,
            at: 0,
            labels: None,
        }
    }

    /// Moves to the next series (for the head: the next one still in the
    /// index with samples overlapping the range) and reads its labels.
    fn advance(&mut self, db: &Db, blocks: &[Arc<Block>], mint: i64, maxt: i64) {
        self.labels = None;
        match self.kind {
            SourceKind::Block(bi) => {
                if let Some(&sid) = self.sids.get(self.at) {
                    self.at += 1;
                    self.labels = Some(blocks[bi].labels(sid));
                }
            }
            SourceKind::Head => {
                while let Some(s) = self.head.get(self.at) {
                    self.at += 1;
                    let overlaps = {
                        let st = s.state.lock();
                        st.min_t().is_some_and(|a| a <= maxt)
                            && st.max_t().is_some_and(|b| b >= mint)
                    };
                    if !overlaps {
                        continue;
                    }
                    // A series collected since it was listed is skipped:
                    // only series without samples are collected, and its
                    // symbols may have been reused.
                    let ix = db.head.index.read();
                    if ix.series.get(&s.r).is_some_and(|x| Arc::ptr_eq(x, s)) {
                        self.labels = Some(ix.labels_of(s));
                        break;
                    }
                }
            }
        }
    }
}
