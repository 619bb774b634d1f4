//! The head: the in-memory, writable part of the database holding the most
//! recent samples (those not yet cut into blocks).
//!
//! Series labels are interned into a symbol table (a series stores only
//! `u32` symbol ids); samples live in Gorilla chunks with the open chunk
//! appended in place. Out-of-order samples (older than the series' latest
//! sample but inside the window) go to a small sorted per-series buffer that
//! is merged at query time and when the head is cut into a block.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use skopos_model::{Labels, Sample};

use crate::chunk::{self, ChunkEncoder, HEAD_CHUNK_SAMPLES};
use crate::index::MemIndex;

pub struct HeadChunk {
    pub bytes: Box<[u8]>,
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
}

pub struct SeriesState {
    pub closed: Vec<HeadChunk>,
    pub open: Option<ChunkEncoder>,
    /// Out-of-order samples; allocated only for series that receive some.
    pub ooo: Option<Box<Ooo>>,
    /// Bumped on each out-of-order insert (lets a head cut know whether the
    /// buffer changed since it took its snapshot).
    pub ooo_gen: u32,
    pub last_t: i64,
    pub last_v: u64,
    /// Set when garbage-collected: an appender holding a stale handle must
    /// look the series up again.
    pub deleted: bool,
    /// Whether `last_t`/`last_v` hold a real sample (any i64 is a valid timestamp).
    pub started: bool,
}

/// Out-of-order samples of one series: a small sorted buffer that is sealed
/// into a compressed chunk whenever it reaches [`HEAD_CHUNK_SAMPLES`].
/// Chunks may overlap each other; timestamps are unique across all parts.
#[derive(Default)]
pub struct Ooo {
    buf: Vec<Sample>,
    chunks: Vec<HeadChunk>,
}

impl Ooo {
    fn insert(&mut self, s: Sample) {
        let i = self.buf.partition_point(|x| x.t < s.t);
        self.buf.insert(i, s);
        if self.buf.len() >= HEAD_CHUNK_SAMPLES {
            let e = ChunkEncoder::from_samples(&self.buf);
            self.chunks.push(HeadChunk {
                min_t: e.min_t(),
                max_t: e.max_t(),
                count: e.count() as u16,
                bytes: e.into_bytes(),
            });
            self.buf = Vec::new();
        }
    }

    fn find(&self, t: i64) -> Option<u64> {
        if let Ok(i) = self.buf.binary_search_by_key(&t, |s| s.t) {
            return Some(self.buf[i].v.to_bits());
        }
        let mut tmp = Vec::new();
        for c in self.chunks.iter().filter(|c| c.min_t <= t && t <= c.max_t) {
            tmp.clear();
            let _ = chunk::decode(&c.bytes, c.count as usize, &mut tmp);
            if let Ok(i) = tmp.binary_search_by_key(&t, |s| s.t) {
                return Some(tmp[i].v.to_bits());
            }
        }
        None
    }

    /// Appends the samples in `[mint, maxt]` to `out` (unsorted across parts).
    fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let start = out.len();
        for c in self
            .chunks
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
        {
            let _ = chunk::decode(&c.bytes, c.count as usize, out);
        }
        let mut i = start;
        while i < out.len() {
            if out[i].t < mint || out[i].t > maxt {
                out.swap_remove(i);
            } else {
                i += 1;
            }
        }
        let lo = self.buf.partition_point(|s| s.t < mint);
        let hi = self.buf.partition_point(|s| s.t <= maxt);
        out.extend_from_slice(&self.buf[lo..hi.max(lo)]);
    }

    fn truncate(&mut self, cutoff: i64) {
        let n = self.buf.partition_point(|s| s.t < cutoff);
        self.buf.drain(..n);
        let mut kept = Vec::new();
        for c in std::mem::take(&mut self.chunks) {
            if c.max_t < cutoff {
                continue;
            }
            if c.min_t >= cutoff {
                kept.push(c);
                continue;
            }
            let mut s = Vec::new();
            let _ = chunk::decode(&c.bytes, c.count as usize, &mut s);
            s.retain(|x| x.t >= cutoff);
            let e = ChunkEncoder::from_samples(&s);
            kept.push(HeadChunk {
                min_t: e.min_t(),
                max_t: e.max_t(),
                count: e.count() as u16,
                bytes: e.into_bytes(),
            });
        }
        self.chunks = kept;
    }

    fn len(&self) -> usize {
        self.buf.len() + self.chunks.iter().map(|c| c.count as usize).sum::<usize>()
    }

    fn min_t(&self) -> Option<i64> {
        let c = self.chunks.iter().map(|c| c.min_t).min();
        [c, self.buf.first().map(|s| s.t)]
            .into_iter()
            .flatten()
            .min()
    }

    fn max_t(&self) -> Option<i64> {
        let c = self.chunks.iter().map(|c| c.max_t).max();
        [c, self.buf.last().map(|s| s.t)]
            .into_iter()
            .flatten()
            .max()
    }
}

pub struct MemSeries {
    pub r: u64,
    pub syms: Box<[u32]>,
    pub state: Mutex<SeriesState>,
}

/// Result of trying to add one sample to a series.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Added {
    Appended,
    Duplicate,
    Conflict,
    TooOld,
}

impl SeriesState {
    fn new() -> Self {
        SeriesState {
            closed: Vec::new(),
            open: None,
            ooo: None,
            ooo_gen: 0,
            last_t: i64::MIN,
            last_v: 0,
            deleted: false,
            started: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
            && self.open.as_ref().is_none_or(|o| o.count() == 0)
            && self.ooo.is_none()
    }

    pub fn min_t(&self) -> Option<i64> {
        let c = self.closed.first().map(|c| c.min_t);
        let o = self
            .open
            .as_ref()
            .filter(|o| o.count() > 0)
            .map(|o| o.min_t());
        let x = self.ooo.as_ref().and_then(|o| o.min_t());
        [c, o, x].into_iter().flatten().min()
    }

    pub fn max_t(&self) -> Option<i64> {
        let c = self.closed.last().map(|c| c.max_t);
        let o = self
            .open
            .as_ref()
            .filter(|o| o.count() > 0)
            .map(|o| o.max_t());
        let x = self.ooo.as_ref().and_then(|o| o.max_t());
        [c, o, x].into_iter().flatten().max()
    }

    pub fn chunk_count(&self) -> usize {
        self.closed.len() + usize::from(self.open.as_ref().is_some_and(|o| o.count() > 0))
    }

    /// Value stored at exactly `t`, if any.
    fn find(&self, t: i64) -> Option<u64> {
        if let Some(bits) = self.ooo.as_ref().and_then(|o| o.find(t)) {
            return Some(bits);
        }
        let mut buf = Vec::new();
        for c in self.closed.iter().filter(|c| c.min_t <= t && t <= c.max_t) {
            buf.clear();
            if chunk::decode(&c.bytes, c.count as usize, &mut buf).is_ok() {
                if let Some(s) = buf.iter().find(|s| s.t == t) {
                    return Some(s.v.to_bits());
                }
            }
        }
        if let Some(o) = self
            .open
            .as_ref()
            .filter(|o| o.count() > 0 && o.min_t() <= t && t <= o.max_t())
        {
            buf.clear();
            if chunk::decode(o.bytes(), o.count(), &mut buf).is_ok() {
                return buf.iter().find(|s| s.t == t).map(|s| s.v.to_bits());
            }
        }
        None
    }

    /// Adds a sample. `oldest` is the oldest timestamp an out-of-order
    /// sample may have (`None` = no limit, used by WAL replay).
    pub fn add(&mut self, t: i64, v: f64, oldest: Option<i64>, block_ms: i64) -> Added {
        if !self.started || t > self.last_t {
            self.append_in_order(t, v, block_ms);
            return Added::Appended;
        }
        if t == self.last_t {
            return if self.last_v == v.to_bits() {
                Added::Duplicate
            } else {
                Added::Conflict
            };
        }
        if oldest.is_some_and(|o| t < o) {
            return Added::TooOld;
        }
        match self.find(t) {
            Some(bits) if bits == v.to_bits() => Added::Duplicate,
            Some(_) => Added::Conflict,
            None => {
                self.ooo
                    .get_or_insert_with(Default::default)
                    .insert(Sample { t, v });
                self.ooo_gen = self.ooo_gen.wrapping_add(1);
                Added::Appended
            }
        }
    }

    fn close_open(&mut self) {
        if let Some(o) = self.open.take() {
            if o.count() > 0 {
                // Exact growth: a series holds only a few closed chunks.
                self.closed.reserve_exact(1);
                self.closed.push(HeadChunk {
                    min_t: o.min_t(),
                    max_t: o.max_t(),
                    count: o.count() as u16,
                    bytes: o.into_bytes(),
                });
            }
        }
    }

    fn append_in_order(&mut self, t: i64, v: f64, block_ms: i64) {
        let cut = match &self.open {
            None => true,
            Some(o) => {
                o.count() >= HEAD_CHUNK_SAMPLES
                    || (o.count() > 0
                        && t >= align_down(o.min_t(), block_ms).saturating_add(block_ms))
            }
        };
        if cut {
            self.close_open();
            let mut e = ChunkEncoder::for_value(v);
            // The previous chunk predicts this one's size: one allocation
            // instead of a series of reallocations.
            if let Some(prev) = self.closed.last() {
                e.reserve(prev.bytes.len() + prev.bytes.len() / 16);
            }
            self.open = Some(e);
        }
        self.open.as_mut().expect("just ensured").push(t, v);
        self.last_t = t;
        self.last_v = v.to_bits();
        self.started = true;
    }

    /// Deletes the samples in `[mint, maxt]`, rebuilding the chunks from
    /// what is left; returns how many were deleted and the change in the
    /// number of chunks.
    pub fn delete_range(&mut self, mint: i64, maxt: i64, block_ms: i64) -> (u64, i64) {
        if self.max_t().is_none_or(|t| t < mint) || self.min_t().is_none_or(|t| t > maxt) {
            return (0, 0);
        }
        let all = self.samples(i64::MIN, i64::MAX);
        let before = self.chunk_count() as i64;
        let kept: Vec<Sample> = all
            .iter()
            .filter(|s| s.t < mint || s.t > maxt)
            .copied()
            .collect();
        let deleted = (all.len() - kept.len()) as u64;
        if deleted == 0 {
            return (0, 0);
        }
        let gen = self.ooo_gen.wrapping_add(1);
        *self = SeriesState::new();
        self.ooo_gen = gen;
        for s in kept {
            self.append_in_order(s.t, s.v, block_ms);
        }
        (deleted, self.chunk_count() as i64 - before)
    }

    /// All samples in `[mint, maxt]`, sorted, chunks merged with the
    /// out-of-order buffer.
    pub fn samples(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        for c in self
            .closed
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
        {
            let _ = chunk::decode(&c.bytes, c.count as usize, &mut out);
        }
        if let Some(o) = self
            .open
            .as_ref()
            .filter(|o| o.count() > 0 && o.max_t() >= mint && o.min_t() <= maxt)
        {
            let _ = chunk::decode(o.bytes(), o.count(), &mut out);
        }
        out.retain(|s| s.t >= mint && s.t <= maxt);
        let before = out.len();
        if let Some(o) = &self.ooo {
            o.samples(mint, maxt, &mut out);
        }
        if out.len() > before {
            out.sort_by_key(|s| s.t);
            out.dedup_by_key(|s| s.t);
        }
        out
    }

    /// Drops in-order samples with `t < cutoff` and, if `drop_ooo`, buffered
    /// out-of-order samples with `t < ooo_cutoff`. Returns (samples, chunks) removed.
    pub fn truncate(&mut self, cutoff: i64, drop_ooo: bool, ooo_cutoff: i64) -> (u64, u64) {
        let before_samples = self.sample_count();
        let before_chunks = self.chunk_count() as u64;
        let mut kept = Vec::with_capacity(self.closed.len());
        for c in std::mem::take(&mut self.closed) {
            if c.max_t < cutoff {
                continue;
            }
            if c.min_t >= cutoff {
                kept.push(c);
                continue;
            }
            let mut s = Vec::new();
            let _ = chunk::decode(&c.bytes, c.count as usize, &mut s);
            s.retain(|s| s.t >= cutoff);
            if !s.is_empty() {
                let e = ChunkEncoder::from_samples(&s);
                kept.push(HeadChunk {
                    min_t: e.min_t(),
                    max_t: e.max_t(),
                    count: e.count() as u16,
                    bytes: e.into_bytes(),
                });
            }
        }
        self.closed = kept;
        if let Some(o) = self
            .open
            .as_ref()
            .filter(|o| o.count() > 0 && o.min_t() < cutoff)
        {
            let mut s = Vec::new();
            let _ = chunk::decode(o.bytes(), o.count(), &mut s);
            s.retain(|s| s.t >= cutoff);
            let e = ChunkEncoder::from_samples(&s);
            self.open = if s.is_empty() { None } else { Some(e) };
        }
        if drop_ooo {
            if let Some(o) = &mut self.ooo {
                o.truncate(ooo_cutoff);
            }
            if self.ooo.as_ref().is_some_and(|o| o.len() == 0) {
                self.ooo = None;
            }
        }
        (
            before_samples - self.sample_count(),
            before_chunks - self.chunk_count() as u64,
        )
    }

    pub fn sample_count(&self) -> u64 {
        let c: u64 = self.closed.iter().map(|c| c.count as u64).sum();
        c + self.open.as_ref().map_or(0, |o| o.count() as u64)
            + self.ooo.as_ref().map_or(0, |o| o.len() as u64)
    }
}

pub fn align_down(t: i64, step: i64) -> i64 {
    t.div_euclid(step).saturating_mul(step)
}

/// A map keyed by series refs or by label hashes (already SipHash outputs):
/// a multiplicative hash is enough for those keys and much cheaper than
/// hashing them again with SipHash, which showed in ingestion profiles.
pub type U64Map<V> = HashMap<u64, V, std::hash::BuildHasherDefault<U64Hasher>>;

/// Fibonacci hashing of one `u64`; other input is folded in byte by byte.
#[derive(Default, Clone, Copy)]
pub struct U64Hasher(u64);

impl std::hash::Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Default)]
pub struct HeadIndex {
    pub ix: MemIndex<u64>,
    pub series: U64Map<Arc<MemSeries>>,
    by_hash: U64Map<u64>,
    collisions: U64Map<Vec<u64>>,
    next_ref: u64,
}

impl HeadIndex {
    pub fn labels_of(&self, s: &MemSeries) -> Labels {
        self.ix.symbols.labels(&s.syms)
    }

    pub fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        let is = |r: &u64| {
            self.series
                .get(r)
                .filter(|s| self.ix.symbols.labels_eq(&s.syms, labels))
        };
        if let Some(s) = self.by_hash.get(&hash).and_then(is) {
            return Some(s);
        }
        self.collisions.get(&hash)?.iter().find_map(is)
    }

    /// Creates a series; `r` forces a ref (WAL replay), otherwise the next one.
    pub fn create(&mut self, hash: u64, labels: &Labels, r: Option<u64>) -> Arc<MemSeries> {
        let r = r.unwrap_or(self.next_ref);
        self.next_ref = self.next_ref.max(r.saturating_add(1));
        let syms: Box<[u32]> = labels
            .iter()
            .flat_map(|l| [l.name.as_str(), l.value.as_str()])
            .map(|s| self.ix.symbols.intern(s))
            .collect();
        let s = Arc::new(MemSeries {
            r,
            syms,
            state: Mutex::new(SeriesState::new()),
        });
        self.ix.add_sorted(r, &s.syms);
        self.series.insert(r, s.clone());
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(hash).or_default().push(r)
            }
        }
        s
    }

    /// Removes series (refs sorted); `hashes` are their label hashes.
    pub fn remove(&mut self, removed: &[(u64, u64)]) {
        let mut refs: Vec<u64> = removed.iter().map(|r| r.0).collect();
        refs.sort_unstable();
        self.ix.remove(&refs);
        for (r, hash) in removed {
            if let Some(s) = self.series.remove(r) {
                for sym in s.syms.iter() {
                    self.ix.symbols.release(*sym);
                }
            }
            if self.by_hash.get(hash) == Some(r) {
                self.by_hash.remove(hash);
                if let Some(mut c) = self.collisions.remove(hash) {
                    if let Some(first) = c.pop() {
                        self.by_hash.insert(*hash, first);
                    }
                    if !c.is_empty() {
                        self.collisions.insert(*hash, c);
                    }
                }
            } else if let Some(c) = self.collisions.get_mut(hash) {
                c.retain(|x| x != r);
                if c.is_empty() {
                    self.collisions.remove(hash);
                }
            }
        }
    }
}

pub struct Head {
    pub index: RwLock<HeadIndex>,
    hasher: std::collections::hash_map::RandomState,
    /// Newest sample timestamp ever appended (`i64::MIN` when none).
    pub max_t: AtomicI64,
    /// Oldest sample timestamp in the head (recomputed after cuts).
    pub min_t: AtomicI64,
    pub samples: AtomicU64,
    pub chunks: AtomicU64,
    pub block_ms: i64,
}

impl Head {
    pub fn new(block_ms: i64) -> Self {
        Head {
            index: RwLock::new(HeadIndex::default()),
            hasher: Default::default(),
            max_t: AtomicI64::new(i64::MIN),
            min_t: AtomicI64::new(i64::MAX),
            samples: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            block_ms,
        }
    }

    pub fn hash(&self, labels: &Labels) -> u64 {
        self.hasher.hash_one(labels)
    }

    /// Min and max timestamps over the head's samples (scans all series).
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let ix = self.index.read();
        let mut range: Option<(i64, i64)> = None;
        for s in ix.series.values() {
            let st = s.state.lock();
            if let (Some(a), Some(b)) = (st.min_t(), st.max_t()) {
                range = Some(range.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
            }
        }
        range
    }

    pub fn note_appended(&self, t: i64) {
        self.max_t.fetch_max(t, Ordering::SeqCst);
        self.min_t.fetch_min(t, Ordering::SeqCst);
        self.samples.fetch_add(1, Ordering::Relaxed);
    }
}
