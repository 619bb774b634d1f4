//! Exemplar storage: one ring of fixed capacity over all series, the oldest
//! overwritten first, as Prometheus' circular exemplar storage keeps them,
//! and persisted so a restart keeps them (Prometheus writes exemplars to
//! its WAL and replays them).
//!
//! # Layout
//!
//! ```text
//! dir/NNNNNNNN   exemplar log segments (skopos-storage framing, magic SKEX)
//! dir/snapshot   the ring as it was when segment N closed (magic SKXS)
//! ```
//!
//! Every accepted batch is one record of the active segment, written before
//! the ring holds it. When the segments hold more exemplars than the ring's
//! capacity, [`ExemplarStore::compact`] closes the active segment, writes
//! the ring's contents to `snapshot` (atomically; its first record names
//! the last segment it covers) and deletes the covered segments. Opening
//! reads the snapshot, then replays the segments after it, so disk use
//! stays within about twice the ring.
//!
//! Acceptance follows Prometheus: an exemplar equal to its series' newest
//! (same labels, value and time) is a duplicate and dropped silently; one
//! not newer than its series' newest is out of order and dropped, counted.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use skopos_model::codec::{put_bytes, put_uvarint, put_varint, Reader};
use skopos_model::{Exemplar, Label, Labels, Matcher, SeriesExemplars};
use skopos_storage::frame;
use skopos_storage::wal::{self, Format};
use skopos_storage::{FsyncPolicy, Wal, WalOptions};

use crate::TsdbError;

/// The default capacity, as Prometheus' `--storage.exemplars.exemplars-limit`
/// examples use.
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;

/// Prometheus' limit on an exemplar's labels: 128 UTF-8 characters over
/// all names and values (`ExemplarMaxLabelSetLength`).
pub const MAX_LABEL_SET_CHARS: usize = 128;

const LOG_FORMAT: Format = Format::new(*b"SKEX", 1);
const SNAPSHOT_FORMAT: Format = Format::new(*b"SKXS", 1);
/// A batch of [`SeriesExemplars`].
const REC_BATCH: u8 = 1;
/// The snapshot's first record: the last log segment it covers.
const REC_COVERS: u8 = 2;
const SEGMENT_SIZE: u64 = 16 << 20;

/// What [`ExemplarStore::add`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExemplarOutcome {
    pub stored: usize,
    /// Equal to the newest exemplar of their series (dropped silently).
    pub duplicates: usize,
    /// Not newer than the newest exemplar of their series.
    pub out_of_order: usize,
    /// Labels over [`MAX_LABEL_SET_CHARS`].
    pub too_long: usize,
}

/// A bounded ring of exemplars over all series, persisted in a directory.
pub struct ExemplarStore {
    capacity: usize,
    dir: PathBuf,
    wal: Wal,
    inner: Mutex<Ring>,
    /// Serializes compactions.
    compacting: Mutex<()>,
}

#[derive(Default)]
struct Ring {
    /// Oldest first.
    entries: VecDeque<(Arc<Labels>, Exemplar)>,
    /// Each series' shared labels, how many entries hold them, and its
    /// newest exemplar's time.
    series: HashMap<Labels, Held>,
    /// Exemplars in the log segments since the snapshot.
    logged: usize,
}

struct Held {
    labels: Arc<Labels>,
    entries: usize,
    newest: Exemplar,
}

impl Ring {
    /// Whether `ex` may join `series` by time, and if not, why not.
    fn verdict(&self, series: &Labels, ex: &Exemplar) -> Verdict {
        match self.series.get(series) {
            Some(h) => order(&h.newest, ex),
            None => Verdict::Accept,
        }
    }

    fn push(&mut self, series: &Labels, ex: Exemplar, capacity: usize) {
        let labels = match self.series.get_mut(series) {
            Some(h) => {
                h.entries += 1;
                h.newest = ex.clone();
                h.labels.clone()
            }
            None => {
                let labels = Arc::new(series.clone());
                self.series.insert(
                    series.clone(),
                    Held {
                        labels: labels.clone(),
                        entries: 1,
                        newest: ex.clone(),
                    },
                );
                labels
            }
        };
        self.entries.push_back((labels, ex));
        while self.entries.len() > capacity {
            let Some((s, _)) = self.entries.pop_front() else {
                break;
            };
            if let Some(h) = self.series.get_mut(s.as_ref()) {
                h.entries -= 1;
                if h.entries == 0 {
                    self.series.remove(s.as_ref());
                }
            }
        }
    }

    /// Adds what replay read (no acceptance checks beyond order: what was
    /// logged was accepted then).
    fn replay(&mut self, batch: Vec<SeriesExemplars>, capacity: usize) {
        for se in batch {
            for ex in se.exemplars {
                if self.verdict(&se.series, &ex) == Verdict::Accept {
                    self.push(&se.series, ex, capacity);
                }
                self.logged += 1;
            }
        }
    }
}

/// `ex` after `newest` of the same series: Prometheus' duplicate and
/// out-of-order rules.
fn order(newest: &Exemplar, ex: &Exemplar) -> Verdict {
    if newest == ex {
        Verdict::Duplicate
    } else if ex.ts_ms <= newest.ts_ms {
        Verdict::OutOfOrder
    } else {
        Verdict::Accept
    }
}

fn too_long(ex: &Exemplar) -> bool {
    let chars: usize = ex
        .labels
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum();
    chars > MAX_LABEL_SET_CHARS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Duplicate,
    OutOfOrder,
}

impl ExemplarStore {
    /// Opens (creating) the store in `dir`, keeping at most `capacity`
    /// exemplars (0: none are kept): reads the snapshot and replays the log after it,
    /// repairing a torn tail as every WAL does.
    pub fn open(dir: &Path, capacity: usize, fsync: FsyncPolicy) -> Result<Self, TsdbError> {
        std::fs::create_dir_all(dir).map_err(|e| TsdbError::io(dir, e))?;
        skopos_storage::remove_leftover_tmp(dir)?;
        let mut ring = Ring::default();
        let snapshot = dir.join("snapshot");
        let mut covered = 0u64;
        if snapshot.exists() {
            let mut first = true;
            let read = wal::read_file(&snapshot, &SNAPSHOT_FORMAT, &mut |typ, payload| {
                let ok = match (typ, first) {
                    (REC_COVERS, true) => Reader::new(payload).uvarint().map(|n| covered = n),
                    (REC_BATCH, false) => decode_batch(payload).map(|b| ring.replay(b, capacity)),
                    _ => None,
                };
                first = false;
                ok.is_some()
            })?;
            if let Some(damage) = read.damage {
                tracing::warn!(
                    path = %snapshot.display(),
                    ?damage,
                    kept = ring.entries.len(),
                    "exemplar snapshot damaged; keeping the exemplars read before the damage"
                );
            }
        }
        ring.logged = 0;
        wal::replay_dir(
            dir,
            &LOG_FORMAT,
            (covered > 0).then_some(covered),
            &mut |typ, payload| {
                typ == REC_BATCH
                    && decode_batch(payload)
                        .map(|b| ring.replay(b, capacity))
                        .is_some()
            },
        )?;
        let wal = Wal::open(
            dir,
            LOG_FORMAT,
            WalOptions {
                fsync,
                segment_size: SEGMENT_SIZE,
            },
            covered + 1,
        )?;
        let store = ExemplarStore {
            capacity,
            dir: dir.to_path_buf(),
            wal,
            inner: Mutex::new(ring),
            compacting: Mutex::new(()),
        };
        store.compact()?;
        Ok(store)
    }

    /// The most exemplars kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Exemplars held now.
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Logs and keeps the acceptable exemplars of `batch` (see the module
    /// doc), evicting the oldest past the capacity. An error means none of
    /// the batch was kept.
    pub fn add(&self, batch: &[SeriesExemplars]) -> Result<ExemplarOutcome, TsdbError> {
        let mut out = ExemplarOutcome::default();
        if self.capacity == 0 {
            return Ok(out);
        }
        let mut ring = self.inner.lock();
        // Accepted exemplars, checked against the ring and against the
        // batch's own earlier exemplars of the same series.
        let mut kept: Vec<SeriesExemplars> = Vec::new();
        let mut newest: HashMap<&Labels, &Exemplar> = HashMap::new();
        for se in batch {
            let mut mine = Vec::new();
            for ex in &se.exemplars {
                if too_long(ex) {
                    out.too_long += 1;
                    continue;
                }
                let v = match newest.get(&se.series) {
                    Some(n) => order(n, ex),
                    None => ring.verdict(&se.series, ex),
                };
                match v {
                    Verdict::Accept => {
                        newest.insert(&se.series, ex);
                        mine.push(ex.clone());
                    }
                    Verdict::Duplicate => out.duplicates += 1,
                    Verdict::OutOfOrder => out.out_of_order += 1,
                }
            }
            if !mine.is_empty() {
                kept.push(SeriesExemplars {
                    series: se.series.clone(),
                    exemplars: mine,
                });
            }
        }
        if kept.is_empty() {
            return Ok(out);
        }
        let mut buf = Vec::new();
        encode_batch(&mut buf, &kept);
        self.wal.log(&buf)?;
        for se in kept {
            for ex in se.exemplars {
                ring.push(&se.series, ex, self.capacity);
                ring.logged += 1;
                out.stored += 1;
            }
        }
        Ok(out)
    }

    /// Exemplars in `[start_ms, end_ms]` of series matching any of the
    /// selectors, grouped by series (in order of first exemplar), each
    /// group oldest first.
    pub fn select(
        &self,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesExemplars> {
        let r = self.inner.lock();
        let mut out: Vec<SeriesExemplars> = Vec::new();
        let mut at: HashMap<*const Labels, Option<usize>> = HashMap::new();
        for (s, e) in &r.entries {
            if e.ts_ms < start_ms || e.ts_ms > end_ms {
                continue;
            }
            let slot = at.entry(Arc::as_ptr(s)).or_insert_with(|| {
                selectors
                    .iter()
                    .any(|ms| ms.iter().all(|m| m.matches_labels(s)))
                    .then(|| {
                        out.push(SeriesExemplars {
                            series: (**s).clone(),
                            exemplars: Vec::new(),
                        });
                        out.len() - 1
                    })
            });
            if let Some(i) = *slot {
                out[i].exemplars.push(e.clone());
            }
        }
        for g in &mut out {
            g.exemplars.sort_by_key(|e| e.ts_ms);
        }
        out
    }

    /// When the log holds more exemplars than the ring keeps: closes the
    /// active segment, writes the ring to the snapshot and deletes the
    /// segments it covers. Returns whether it did.
    pub fn compact(&self) -> Result<bool, TsdbError> {
        let _one = self.compacting.lock();
        let (covered, entries) = {
            let mut r = self.inner.lock();
            if r.logged <= self.capacity {
                return Ok(false);
            }
            // Under the ring's lock no batch is between its log write and
            // the ring, so the snapshot is exactly the closed segments.
            let covered = self.wal.rotate()?;
            r.logged = 0;
            (covered, r.entries.iter().cloned().collect::<Vec<_>>())
        };
        let mut buf = SNAPSHOT_FORMAT.header().to_vec();
        frame(&mut buf, REC_COVERS, |b| put_uvarint(b, covered));
        // One record per run of entries of the same series, in ring order.
        let mut run: Vec<SeriesExemplars> = Vec::new();
        for chunk in entries.chunk_by(|a, b| Arc::ptr_eq(&a.0, &b.0)) {
            run.push(SeriesExemplars {
                series: (*chunk[0].0).clone(),
                exemplars: chunk.iter().map(|(_, e)| e.clone()).collect(),
            });
            if run.len() >= 256 {
                encode_batch(&mut buf, &run);
                run.clear();
            }
        }
        if !run.is_empty() {
            encode_batch(&mut buf, &run);
        }
        skopos_storage::write_atomic(&self.dir.join("snapshot"), &buf)?;
        wal::delete_segments_upto(&self.dir, covered)?;
        Ok(true)
    }

    /// Fsyncs and closes the log; later adds are refused.
    pub fn close(&self) -> Result<(), TsdbError> {
        Ok(self.wal.close()?)
    }
}

fn put_labels(b: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(b, labels.len() as u64);
    for l in labels {
        put_bytes(b, l.name.as_bytes());
        put_bytes(b, l.value.as_bytes());
    }
}

fn read_labels(r: &mut Reader, max: usize) -> Option<Labels> {
    let n = r.len(max)?;
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        labels.push(Label {
            name: r.string()?,
            value: r.string()?,
        });
    }
    Labels::from_sorted_checked(labels).ok()
}

fn encode_batch(buf: &mut Vec<u8>, batch: &[SeriesExemplars]) {
    frame(buf, REC_BATCH, |b| {
        for se in batch {
            put_labels(b, &se.series);
            put_uvarint(b, se.exemplars.len() as u64);
            for e in &se.exemplars {
                put_labels(b, &e.labels);
                b.extend_from_slice(&e.value.to_bits().to_le_bytes());
                put_varint(b, e.ts_ms);
            }
        }
    });
}

fn decode_batch(payload: &[u8]) -> Option<Vec<SeriesExemplars>> {
    let mut r = Reader::new(payload);
    let max = payload.len();
    let mut out = Vec::new();
    while !r.is_empty() {
        let series = read_labels(&mut r, max)?;
        let n = r.len(max)?;
        let mut exemplars = Vec::with_capacity(n);
        for _ in 0..n {
            let labels = read_labels(&mut r, max)?;
            let value = f64::from_bits(r.u64_le()?);
            let ts_ms = r.varint()?;
            exemplars.push(Exemplar {
                labels,
                value,
                ts_ms,
            });
        }
        out.push(SeriesExemplars { series, exemplars });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, ts: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: 1.0,
            ts_ms: ts,
        }
    }

    fn series(svc: &str) -> Labels {
        Labels::from_pairs([("__name__", "calls"), ("service", svc)])
    }

    fn one(svc: &str, exemplars: Vec<Exemplar>) -> Vec<SeriesExemplars> {
        vec![SeriesExemplars {
            series: series(svc),
            exemplars,
        }]
    }

    /// Every exemplar's trace id, oldest first (`select` groups by series).
    fn ids(store: &ExemplarStore) -> Vec<String> {
        let mut all: Vec<(i64, String)> = store
            .select(
                &[vec![Matcher::equal("__name__", "calls")]],
                i64::MIN,
                i64::MAX,
            )
            .iter()
            .flat_map(|g| {
                g.exemplars
                    .iter()
                    .map(|e| (e.ts_ms, e.labels.get("trace_id").unwrap().to_string()))
            })
            .collect();
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    fn open(dir: &Path, capacity: usize) -> ExemplarStore {
        ExemplarStore::open(dir, capacity, FsyncPolicy::Never).unwrap()
    }

    #[test]
    fn ring_evicts_oldest_and_filters_by_selector_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 3);
        store
            .add(&one("a", vec![ex("01", 1000), ex("02", 2000)]))
            .unwrap();
        store
            .add(&one("b", vec![ex("03", 3000), ex("04", 4000)]))
            .unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(ids(&store), ["02", "03", "04"]);
        let only_b = store.select(&[vec![Matcher::equal("service", "b")]], 3500, 10_000);
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].exemplars, vec![ex("04", 4000)]);
    }

    #[test]
    fn duplicates_out_of_order_and_overlong_labels_are_dropped_as_prometheus_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 100);
        let o = store
            .add(&one("a", vec![ex("01", 1000), ex("02", 2000)]))
            .unwrap();
        assert_eq!(o.stored, 2);
        let long = Exemplar {
            labels: Labels::from_pairs([("trace_id", "x".repeat(MAX_LABEL_SET_CHARS))]),
            value: 1.0,
            ts_ms: 5000,
        };
        // The newest again is a duplicate; an older or same-time other one
        // is out of order, also within one batch.
        let o = store
            .add(&one(
                "a",
                vec![
                    ex("02", 2000),
                    ex("03", 1500),
                    ex("04", 2000),
                    ex("05", 3000),
                    ex("06", 3000),
                    long,
                ],
            ))
            .unwrap();
        assert_eq!(
            o,
            ExemplarOutcome {
                stored: 1,
                duplicates: 1,
                out_of_order: 3,
                too_long: 1,
            }
        );
        assert_eq!(ids(&store), ["01", "02", "05"]);
        // 128 characters over names and values is still allowed.
        let edge = Exemplar {
            labels: Labels::from_pairs([("id", "y".repeat(MAX_LABEL_SET_CHARS - 2))]),
            value: 1.0,
            ts_ms: 6000,
        };
        assert_eq!(store.add(&one("a", vec![edge])).unwrap().stored, 1);
    }

    #[test]
    fn exemplars_survive_a_restart_without_close_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), 100);
            store.add(&one("a", vec![ex("01", 1000)])).unwrap();
            store
                .add(&one("b", vec![ex("02", 2000), ex("03", 3000)]))
                .unwrap();
            // Dropped without close, as a kill -9 leaves it.
        }
        let store = open(dir.path(), 100);
        assert_eq!(ids(&store), ["01", "02", "03"]);
        store.add(&one("a", vec![ex("04", 4000)])).unwrap();
        drop(store);
        // Tear the last record in half.
        let (_, seg) = wal::list_segments(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let store = open(dir.path(), 100);
        assert_eq!(ids(&store), ["01", "02", "03"]);
        // The repaired log takes new records after the good ones.
        store.add(&one("a", vec![ex("05", 5000)])).unwrap();
        drop(store);
        assert_eq!(ids(&open(dir.path(), 100)), ["01", "02", "03", "05"]);
    }

    #[test]
    fn compaction_bounds_the_log_and_keeps_the_ring_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 4);
        for i in 0..10 {
            store
                .add(&one(
                    ["a", "b"][i % 2],
                    vec![ex(&format!("{i:02}"), 1000 * i as i64)],
                ))
                .unwrap();
        }
        assert!(store.compact().unwrap(), "10 logged > capacity 4");
        assert!(!store.compact().unwrap(), "nothing logged since");
        assert!(dir.path().join("snapshot").exists());
        // Only the fresh active segment is left beside the snapshot.
        let segs = wal::list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 1, "{segs:?}");
        store.add(&one("a", vec![ex("10", 10_000)])).unwrap();
        let want = ["07", "08", "09", "10"];
        assert_eq!(ids(&store), want);
        store.close().unwrap();
        assert!(store.add(&one("a", vec![ex("11", 11_000)])).is_err());
        drop(store);
        let store = open(dir.path(), 4);
        assert_eq!(ids(&store), want);
        // Order rules hold against what was restored.
        assert_eq!(
            store
                .add(&one("a", vec![ex("x", 9000)]))
                .unwrap()
                .out_of_order,
            1
        );
        // A smaller capacity at the next open keeps the newest.
        drop(store);
        assert_eq!(ids(&open(dir.path(), 2)), ["09", "10"]);
    }

    #[test]
    fn a_damaged_snapshot_keeps_what_reads_and_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 2);
        for i in 0..6 {
            store
                .add(&one("a", vec![ex(&format!("{i:02}"), 1000 * i as i64)]))
                .unwrap();
        }
        store.compact().unwrap();
        drop(store);
        let snap = dir.path().join("snapshot");
        let mut bytes = std::fs::read(&snap).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&snap, bytes).unwrap();
        let store = open(dir.path(), 2);
        assert!(store.len() < 2, "the damaged record is not kept");
        store.add(&one("a", vec![ex("06", 6000)])).unwrap();
        assert!(ids(&store).contains(&"06".to_string()));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 0);
        assert_eq!(store.add(&one("a", vec![ex("01", 1)])).unwrap().stored, 0);
        assert!(store.is_empty());
    }
}
