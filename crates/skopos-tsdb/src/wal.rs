//! Write-ahead log.
//!
//! # Format (WAL format version 1)
//!
//! `dir/wal/NNNNNNNN` are segments (8 decimal digits, increasing);
//! `dir/wal/checkpoint.NNNNNNNN` holds the head state as of the end of
//! segment `NNNNNNNN` (segments up to and including it are deleted once the
//! checkpoint is durable). Both have the same layout:
//!
//! ```text
//! header:  magic "SKWL" | version u32 LE (=1)
//! record:  len u32 LE | crc32 u32 LE | type u8 | payload[len]
//! ```
//! `crc32` (crc32fast, IEEE) covers `type` and `payload`. Payloads use LEB128
//! varints (`v` = unsigned, `z` = zigzag signed):
//! * type 1, series: repeated { ref v | nlabels v | (name len-prefixed, value len-prefixed)* }
//! * type 2, samples: repeated { ref v | n v | t0 z | (t - prev_t) z ... | value u64 LE × n }
//!   (the n timestamps come first, then the n values).
//!
//! On open, a record that is short or fails its CRC ends the segment: the
//! file is truncated to the last good record (with a warning) and replay
//! goes on with the next segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use skopos_model::{Label, Labels, Sample};

use crate::encoding::{put_bytes, put_uvarint, put_varint, Reader};
use crate::{Counters, FsyncPolicy, TsdbError};

pub const MAGIC: &[u8; 4] = b"SKWL";
pub const VERSION: u32 = 1;
const HEADER_LEN: u64 = 8;
const REC_SERIES: u8 = 1;
const REC_SAMPLES: u8 = 2;
/// Sanity bound on one record; anything larger is treated as corruption.
const MAX_RECORD: usize = 1 << 30;

pub enum Record {
    Series(Vec<(u64, Labels)>),
    Samples(Vec<(u64, Vec<Sample>)>),
}

/// Appends a framed record to `buf`; `body` writes the payload.
pub fn frame(buf: &mut Vec<u8>, typ: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.push(typ);
    body(buf);
    let len = (buf.len() - start - 9) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn encode_series<'a>(buf: &mut Vec<u8>, series: impl IntoIterator<Item = (u64, &'a Labels)>) {
    frame(buf, REC_SERIES, |b| {
        for (r, labels) in series {
            put_uvarint(b, r);
            put_uvarint(b, labels.len() as u64);
            for l in labels {
                put_bytes(b, l.name.as_bytes());
                put_bytes(b, l.value.as_bytes());
            }
        }
    });
}

pub fn encode_samples<'a>(
    buf: &mut Vec<u8>,
    series: impl IntoIterator<Item = (u64, &'a [Sample])>,
) {
    frame(buf, REC_SAMPLES, |b| {
        for (r, samples) in series {
            if samples.is_empty() {
                continue;
            }
            put_uvarint(b, r);
            put_uvarint(b, samples.len() as u64);
            let mut prev = 0i64;
            for (i, s) in samples.iter().enumerate() {
                put_varint(b, if i == 0 { s.t } else { s.t.wrapping_sub(prev) });
                prev = s.t;
            }
            for s in samples {
                b.extend_from_slice(&s.v.to_bits().to_le_bytes());
            }
        }
    });
}

fn decode_record(typ: u8, payload: &[u8]) -> Option<Record> {
    let mut r = Reader::new(payload);
    match typ {
        REC_SERIES => {
            let mut out = Vec::new();
            while !r.is_empty() {
                let rf = r.uvarint()?;
                let n = r.len(payload.len())?;
                let mut labels = Vec::with_capacity(n);
                for _ in 0..n {
                    labels.push(Label {
                        name: r.string()?,
                        value: r.string()?,
                    });
                }
                out.push((rf, Labels::from_sorted_checked(labels).ok()?));
            }
            Some(Record::Series(out))
        }
        REC_SAMPLES => {
            let mut out = Vec::new();
            while !r.is_empty() {
                let rf = r.uvarint()?;
                let n = r.len(payload.len())?;
                let mut samples = Vec::with_capacity(n);
                let mut t = 0i64;
                for i in 0..n {
                    let d = r.varint()?;
                    t = if i == 0 { d } else { t.wrapping_add(d) };
                    samples.push(Sample { t, v: 0.0 });
                }
                for s in samples.iter_mut() {
                    s.v = f64::from_bits(r.u64_le()?);
                }
                out.push((rf, samples));
            }
            Some(Record::Samples(out))
        }
        _ => None,
    }
}

/// What reading one file found.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileRead {
    pub records: u64,
    /// Offset just past the last good record.
    pub good_len: u64,
    pub file_len: u64,
    /// Set when the file is damaged after `good_len`.
    pub damaged: bool,
}

/// Reads one segment or checkpoint, passing each good record to `visit`.
pub fn read_file(path: &Path, visit: &mut dyn FnMut(Record)) -> Result<FileRead, TsdbError> {
    let data = fs::read(path).map_err(|e| TsdbError::io(path, e))?;
    let mut st = FileRead {
        file_len: data.len() as u64,
        ..FileRead::default()
    };
    if data.len() < HEADER_LEN as usize || &data[..4] != MAGIC {
        st.damaged = true;
        return Ok(st);
    }
    let version = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if version != VERSION {
        // A damaged header (or a file from an unknown version): unreadable,
        // and never a reason to refuse to boot.
        tracing::warn!(path = %path.display(), version, "WAL file has an unknown format version");
        st.damaged = true;
        return Ok(st);
    }
    let mut pos = HEADER_LEN as usize;
    st.good_len = pos as u64;
    while pos < data.len() {
        let Some(head) = data.get(pos..pos + 9) else {
            st.damaged = true;
            break;
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let Some(body) = data
            .get(pos + 8..pos + 9 + len)
            .filter(|_| len <= MAX_RECORD)
        else {
            st.damaged = true;
            break;
        };
        if crc32fast::hash(body) != crc {
            st.damaged = true;
            break;
        }
        let Some(rec) = decode_record(body[0], &body[1..]) else {
            st.damaged = true;
            break;
        };
        visit(rec);
        st.records += 1;
        pos += 9 + len;
        st.good_len = pos as u64;
    }
    Ok(st)
}

/// Files of a WAL directory: the newest checkpoint and the segments after it.
#[derive(Debug, Default)]
pub struct WalFiles {
    pub checkpoint: Option<(u64, PathBuf)>,
    pub segments: Vec<(u64, PathBuf)>,
    /// Stale checkpoints and segments already covered by the checkpoint.
    pub obsolete: Vec<PathBuf>,
}

pub fn list(dir: &Path) -> Result<WalFiles, TsdbError> {
    let mut files = WalFiles::default();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(TsdbError::io(dir, e)),
    };
    let mut cps = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| TsdbError::io(dir, e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("checkpoint.")
            .and_then(|n| n.parse::<u64>().ok())
        {
            cps.push((n, ent.path()));
        } else if let Ok(n) = name.parse::<u64>() {
            files.segments.push((n, ent.path()));
        } else if name.ends_with(".tmp") {
            files.obsolete.push(ent.path());
        }
    }
    cps.sort();
    files.segments.sort();
    if let Some(cp) = cps.pop() {
        files.obsolete.extend(cps.into_iter().map(|c| c.1));
        let (old, new): (Vec<_>, Vec<_>) =
            files.segments.into_iter().partition(|(n, _)| *n <= cp.0);
        files.obsolete.extend(old.into_iter().map(|s| s.1));
        files.segments = new;
        files.checkpoint = Some(cp);
    }
    Ok(files)
}

/// Replays checkpoint + segments. With `repair`, damaged files are truncated
/// to their last good record (or removed when not even the header is good).
/// Returns the number of damaged files found.
pub fn replay(dir: &Path, repair: bool, visit: &mut dyn FnMut(Record)) -> Result<u64, TsdbError> {
    let files = list(dir)?;
    if repair {
        for p in &files.obsolete {
            let _ = fs::remove_file(p);
        }
    }
    let mut damaged = 0;
    let all = files.checkpoint.iter().chain(files.segments.iter());
    for (_, path) in all {
        let st = read_file(path, visit)?;
        if st.damaged {
            damaged += 1;
            tracing::warn!(
                path = %path.display(),
                good_bytes = st.good_len,
                file_bytes = st.file_len,
                records = st.records,
                "WAL file has a torn or corrupt tail; truncating it at the last good record"
            );
            if repair {
                if st.good_len == 0 {
                    fs::remove_file(path).map_err(|e| TsdbError::io(path, e))?;
                } else {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| TsdbError::io(path, e))?;
                    f.set_len(st.good_len).map_err(|e| TsdbError::io(path, e))?;
                    f.sync_all().map_err(|e| TsdbError::io(path, e))?;
                }
            }
        }
    }
    Ok(damaged)
}

pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

fn create_file(path: &Path) -> Result<File, TsdbError> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(|e| TsdbError::io(path, e))?;
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&VERSION.to_le_bytes());
    f.write_all(&header).map_err(|e| TsdbError::io(path, e))?;
    Ok(f)
}

pub fn sync_dir(dir: &Path) -> Result<(), TsdbError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| TsdbError::io(dir, e))
}

struct Active {
    file: Arc<File>,
    seg: u64,
    size: u64,
    dirty: bool,
    closed: bool,
    /// Records written so far (for group commit).
    seq: u64,
}

struct Shared {
    active: Mutex<Active>,
    /// Highest `seq` known to be fsynced; held while fsyncing, so
    /// concurrent `Always` appenders share one fsync (group commit).
    synced: Mutex<u64>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The writable WAL: one active segment, rotated at `segment_size`.
pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    policy: FsyncPolicy,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Wal {
    /// Opens the WAL for writing: continues the newest segment, or starts
    /// the next one.
    pub fn create(
        dir: &Path,
        segment_size: u64,
        policy: FsyncPolicy,
        counters: Arc<Counters>,
    ) -> Result<Wal, TsdbError> {
        fs::create_dir_all(dir).map_err(|e| TsdbError::io(dir, e))?;
        let files = list(dir)?;
        let last = files
            .segments
            .last()
            .map(|s| s.0)
            .max(files.checkpoint.as_ref().map(|c| c.0));
        // Continue in the newest segment (replay has already cut any torn
        // tail off it) unless it is full; otherwise start the next one.
        let reuse = files
            .segments
            .last()
            .filter(|(n, _)| Some(*n) == last)
            .and_then(|(n, p)| {
                let len = fs::metadata(p).ok()?.len();
                let mut head = [0u8; 8];
                let f = File::open(p).ok()?;
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0).ok()?;
                let ok =
                    &head[..4] == MAGIC && head[4..] == VERSION.to_le_bytes() && len < segment_size;
                ok.then_some((*n, len))
            });
        let (seg, file, size) = match reuse {
            Some((n, len)) => {
                let path = segment_path(dir, n);
                let f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| TsdbError::io(&path, e))?;
                (n, f, len)
            }
            None => {
                let seg = last.map_or(0, |n| n + 1);
                let path = segment_path(dir, seg);
                let file = create_file(&path)?;
                file.sync_all().map_err(|e| TsdbError::io(&path, e))?;
                sync_dir(dir)?;
                (seg, file, HEADER_LEN)
            }
        };
        let shared = Arc::new(Shared {
            active: Mutex::new(Active {
                file: Arc::new(file),
                seg,
                size,
                dirty: false,
                seq: 0,
                closed: false,
            }),
            synced: Mutex::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let syncer = match policy {
            FsyncPolicy::Interval(every) => {
                let shared = shared.clone();
                let counters = counters.clone();
                Some(
                    std::thread::Builder::new()
                        .name("skopos-wal-fsync".into())
                        .spawn(move || fsync_loop(shared, counters, every))
                        .map_err(|e| TsdbError::io(dir, e))?,
                )
            }
            _ => None,
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_size: segment_size.max(4096),
            policy,
            shared,
            counters,
            syncer: Mutex::new(syncer),
        })
    }

    /// Writes already-framed records with one write(2); fsyncs if the policy
    /// is `Always`.
    pub fn log(&self, buf: &[u8]) -> Result<(), TsdbError> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut a = self.shared.active.lock();
        if a.closed {
            return Err(TsdbError::Closed);
        }
        if a.size > HEADER_LEN && a.size + buf.len() as u64 > self.segment_size {
            self.rotate_locked(&mut a)?;
        }
        let path = segment_path(&self.dir, a.seg);
        if let Err(e) = (&*a.file).write_all(buf) {
            // A partial record would hide every later record of this segment
            // from replay: cut it off and continue in a fresh segment.
            let _ = a.file.set_len(a.size);
            let _ = self.rotate_locked(&mut a);
            return Err(TsdbError::io(&path, e));
        }
        a.size += buf.len() as u64;
        a.seq += 1;
        a.dirty = true;
        if !matches!(self.policy, FsyncPolicy::Always) {
            return Ok(());
        }
        let (mine, my_file) = (a.seq, a.file.clone());
        drop(a);
        let mut synced = self.shared.synced.lock();
        if *synced >= mine {
            return Ok(()); // another appender's fsync covered this record
        }
        let (file, target, seg) = {
            let a = self.shared.active.lock();
            (a.file.clone(), a.seq, a.seg)
        };
        if !Arc::ptr_eq(&file, &my_file) {
            // The segment was rotated since, and rotation fsyncs it.
            return Ok(());
        }
        file.sync_data()
            .map_err(|e| TsdbError::io(segment_path(&self.dir, seg), e))?;
        *synced = target;
        self.counters.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn rotate_locked(&self, a: &mut Active) -> Result<u64, TsdbError> {
        let old = a.seg;
        a.file
            .sync_data()
            .map_err(|e| TsdbError::io(segment_path(&self.dir, old), e))?;
        self.counters.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
        let path = segment_path(&self.dir, old + 1);
        a.file = Arc::new(create_file(&path)?);
        a.seg = old + 1;
        a.size = HEADER_LEN;
        a.dirty = true;
        Ok(old)
    }

    /// Closes the active segment and starts the next; returns the closed
    /// segment's number. Everything logged so far is in segments <= it.
    pub fn rotate(&self) -> Result<u64, TsdbError> {
        let mut a = self.shared.active.lock();
        self.rotate_locked(&mut a)
    }

    /// Starts writing `checkpoint.{upto}`; see [`CheckpointWriter::commit`].
    pub fn begin_checkpoint(&self, upto: u64) -> Result<CheckpointWriter, TsdbError> {
        let tmp = self.dir.join(format!("checkpoint.{upto:08}.tmp"));
        let file = create_file(&tmp)?;
        Ok(CheckpointWriter {
            dir: self.dir.clone(),
            upto,
            tmp,
            out: std::io::BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Fsyncs and refuses further writes.
    pub fn close(&self) -> Result<(), TsdbError> {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.syncer.lock().take() {
            let _ = h.join();
        }
        let mut a = self.shared.active.lock();
        if a.closed {
            return Ok(());
        }
        a.closed = true;
        a.file
            .sync_all()
            .map_err(|e| TsdbError::io(segment_path(&self.dir, a.seg), e))?;
        self.counters.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// A checkpoint being written; invisible until committed.
pub struct CheckpointWriter {
    dir: PathBuf,
    upto: u64,
    tmp: PathBuf,
    out: std::io::BufWriter<File>,
}

impl CheckpointWriter {
    /// Appends framed records.
    pub fn write(&mut self, records: &[u8]) -> Result<(), TsdbError> {
        self.out
            .write_all(records)
            .map_err(|e| TsdbError::io(&self.tmp, e))
    }

    /// Makes the checkpoint durable, then deletes the segments and older
    /// checkpoints it supersedes. Returns how many files were deleted.
    pub fn commit(mut self) -> Result<u64, TsdbError> {
        self.out.flush().map_err(|e| TsdbError::io(&self.tmp, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| TsdbError::io(&self.tmp, e))?;
        let final_path = self.dir.join(format!("checkpoint.{:08}", self.upto));
        fs::rename(&self.tmp, &final_path).map_err(|e| TsdbError::io(&final_path, e))?;
        sync_dir(&self.dir)?;
        let files = list(&self.dir)?;
        let mut n = 0;
        for p in files.obsolete {
            fs::remove_file(&p).map_err(|e| TsdbError::io(&p, e))?;
            n += 1;
        }
        Ok(n)
    }
}

fn fsync_loop(shared: Arc<Shared>, counters: Arc<Counters>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    loop {
        {
            let mut stop = shared.stop.lock();
            if *stop {
                return;
            }
            shared.wake.wait_for(&mut stop, every);
            if *stop {
                return;
            }
        }
        let file = {
            let mut a = shared.active.lock();
            if !a.dirty || a.closed {
                continue;
            }
            a.dirty = false;
            a.file.clone()
        };
        // fsync outside the lock so appends are not blocked by it.
        if file.sync_data().is_ok() {
            counters.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Segment count and bytes of a WAL directory (checkpoint included).
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    let Ok(files) = list(dir) else { return (0, 0) };
    let all = files.checkpoint.iter().chain(files.segments.iter());
    let mut bytes = 0;
    let mut n = 0;
    for (_, p) in all {
        n += 1;
        bytes += fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    }
    (n, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type SampleRecords = Vec<Vec<(u64, Vec<Sample>)>>;

    fn segment(n: usize) -> (Vec<u8>, SampleRecords) {
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&VERSION.to_le_bytes());
        let l = Labels::from_pairs([("__name__", "m")]);
        encode_series(&mut data, [(7u64, &l)]);
        let mut recs = Vec::new();
        for i in 0..n {
            let s: Vec<Sample> = (0..=i)
                .map(|j| Sample::new((i * 100 + j) as i64, j as f64 / 3.0))
                .collect();
            encode_samples(&mut data, [(7u64, s.as_slice())]);
            recs.push(vec![(7u64, s)]);
        }
        (data, recs)
    }

    fn samples_read(path: &Path) -> (SampleRecords, FileRead) {
        let mut got = Vec::new();
        let st = read_file(path, &mut |r| {
            if let Record::Samples(s) = r {
                got.push(s);
            }
        })
        .unwrap();
        (got, st)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Any truncation or byte flip yields a prefix of the records, never a panic.
        #[test]
        fn damage_yields_a_prefix(cut in 0usize..2000, flip in proptest::option::of((0usize..2000, 1u8..=255))) {
            let (mut data, recs) = segment(12);
            if let Some((at, x)) = flip {
                let at = at % data.len();
                data[at] ^= x;
            }
            data.truncate(data.len().saturating_sub(cut % data.len()));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("00000000");
            fs::write(&path, &data).unwrap();
            let (got, st) = samples_read(&path);
            prop_assert!(got.len() <= recs.len());
            for (g, r) in got.iter().zip(&recs) {
                prop_assert_eq!(g.len(), r.len());
                for ((gr, gs), (rr, rs)) in g.iter().zip(r) {
                    prop_assert_eq!(gr, rr);
                    prop_assert!(gs.iter().zip(rs).all(|(a, b)| a.same_as(b)));
                }
            }
            prop_assert!(st.good_len <= data.len() as u64);
        }
    }

    #[test]
    fn replay_repairs_and_counts_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = segment(5);
        fs::write(segment_path(dir.path(), 0), &data[..data.len() - 3]).unwrap();
        fs::write(segment_path(dir.path(), 1), &data).unwrap();
        let mut n = 0;
        let damaged = replay(dir.path(), true, &mut |r| {
            if matches!(r, Record::Samples(_)) {
                n += 1;
            }
        })
        .unwrap();
        assert_eq!((damaged, n), (1, 4 + 5));
        // Repaired: a second replay finds nothing wrong and the same records.
        let mut m = 0;
        assert_eq!(replay(dir.path(), true, &mut |_| m += 1).unwrap(), 0);
        assert_eq!(m, 2 + 4 + 5);
    }
}
