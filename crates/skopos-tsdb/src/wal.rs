//! Write-ahead log: the TSDB's records over `skopos-storage`'s segments.
//!
//! # Format (WAL format version 1)
//!
//! `dir/wal/NNNNNNNN` are segments (8 decimal digits, increasing);
//! `dir/wal/checkpoint.NNNNNNNN` holds the head state as of the end of
//! segment `NNNNNNNN` (segments up to and including it are deleted once the
//! checkpoint is durable). Both are `skopos-storage` segment files (header,
//! record framing, torn-tail repair: see that crate's docs):
//!
//! ```text
//! header:  magic "SKWL" | version u32 LE (=1)
//! record:  len u32 LE | crc32 u32 LE | type u8 | payload[len]
//! ```
//! Payloads use LEB128 varints (`v` = unsigned, `z` = zigzag signed):
//! * type 1, series: repeated { ref v | nlabels v | (name len-prefixed, value len-prefixed)* }
//! * type 2, samples: repeated { ref v | n v | t0 z | (t - prev_t) z ... | value u64 LE × n }
//!   (the n timestamps come first, then the n values).
//! * type 3, tombstones: repeated { ref v | mint z | maxt z }: the series'
//!   samples in `[mint, maxt]` are deleted (`/api/v1/admin/tsdb/delete_series`);
//!   replay applies it where it stands, after the samples logged before it.
//!
//! On open, a record that is short, fails its CRC or does not decode ends
//! the segment: the file is truncated to the last good record (with a
//! warning) and replay goes on with the next segment. A checkpoint is
//! written as `checkpoint.NNNNNNNN.tmp` and renamed into place.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use skopos_model::{Label, Labels, Sample};
use skopos_storage::{frame, AtomicFile, Format};

use crate::encoding::{put_bytes, put_uvarint, put_varint, Reader};
use crate::TsdbError;

/// The header of segments and checkpoints.
pub const FORMAT: Format = Format::new(*b"SKWL", 1);
const REC_SERIES: u8 = 1;
const REC_SAMPLES: u8 = 2;
const REC_TOMBSTONES: u8 = 3;

pub enum Record {
    Series(Vec<(u64, Labels)>),
    Samples(Vec<(u64, Vec<Sample>)>),
    /// (series ref, mint, maxt): samples deleted.
    Tombstones(Vec<(u64, i64, i64)>),
}

pub fn encode_tombstones(buf: &mut Vec<u8>, deleted: &[(u64, i64, i64)]) {
    frame(buf, REC_TOMBSTONES, |b| {
        for &(r, mint, maxt) in deleted {
            put_uvarint(b, r);
            put_varint(b, mint);
            put_varint(b, maxt);
        }
    });
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
        REC_TOMBSTONES => {
            let mut out = Vec::new();
            while !r.is_empty() {
                out.push((r.uvarint()?, r.varint()?, r.varint()?));
            }
            Some(Record::Tombstones(out))
        }
        _ => None,
    }
}

/// Decodes one record's payload for `visit`; false when it does not decode.
fn decoded<'a>(visit: &'a mut dyn FnMut(Record)) -> impl FnMut(u8, &[u8]) -> bool + 'a {
    move |typ, payload| match decode_record(typ, payload) {
        Some(rec) => {
            visit(rec);
            true
        }
        None => false,
    }
}

/// Files of a WAL directory: the newest checkpoint and the segments after it.
#[derive(Debug, Default)]
pub struct WalFiles {
    pub checkpoint: Option<(u64, PathBuf)>,
    pub segments: Vec<(u64, PathBuf)>,
    /// Stale checkpoints, segments already covered by the checkpoint, and
    /// checkpoints whose writing did not finish.
    pub obsolete: Vec<PathBuf>,
}

impl WalFiles {
    /// The first segment number a writer may use: after the checkpoint.
    pub fn first_segment(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.0 + 1)
    }
}

pub fn list(dir: &Path) -> Result<WalFiles, TsdbError> {
    let mut files = WalFiles {
        segments: skopos_storage::list_segments(dir)?,
        ..WalFiles::default()
    };
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
            .and_then(skopos_storage::parse_segment_name)
        {
            cps.push((n, ent.path()));
        } else if name.ends_with(skopos_storage::TMP_SUFFIX) {
            files.obsolete.push(ent.path());
        }
    }
    cps.sort();
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

/// Replays checkpoint + segments. With `repair`, obsolete files are removed
/// and damaged ones repaired (`skopos_storage::replay_file`). Returns the
/// number of damaged files found and the first segment number a writer may
/// use.
pub fn replay(
    dir: &Path,
    repair: bool,
    visit: &mut dyn FnMut(Record),
) -> Result<(u64, u64), TsdbError> {
    let files = list(dir)?;
    if repair {
        for p in &files.obsolete {
            let _ = fs::remove_file(p);
        }
    }
    let mut damaged = 0;
    let mut visit = decoded(visit);
    for (_, path) in files.checkpoint.iter().chain(files.segments.iter()) {
        let st = skopos_storage::replay_file(path, &FORMAT, repair, &mut visit)?;
        if st.damage.is_some() {
            damaged += 1;
        }
    }
    Ok((damaged, files.first_segment()))
}

/// Starts writing `checkpoint.{upto}`; see [`CheckpointWriter::commit`].
pub fn begin_checkpoint(dir: &Path, upto: u64) -> Result<CheckpointWriter, TsdbError> {
    let path = dir.join(format!("checkpoint.{upto:08}"));
    let mut file = AtomicFile::create(&path)?;
    file.write_all(&FORMAT.header())?;
    Ok(CheckpointWriter {
        dir: dir.to_path_buf(),
        file,
    })
}

/// A checkpoint being written; invisible until committed.
pub struct CheckpointWriter {
    dir: PathBuf,
    file: AtomicFile,
}

impl CheckpointWriter {
    /// Appends framed records.
    pub fn write(&mut self, records: &[u8]) -> Result<(), TsdbError> {
        Ok(self.file.write_all(records)?)
    }

    /// Makes the checkpoint durable, then deletes the segments and older
    /// checkpoints it supersedes. Returns how many files were deleted.
    pub fn commit(self) -> Result<u64, TsdbError> {
        self.file.commit()?;
        let files = list(&self.dir)?;
        let mut n = 0;
        for p in files.obsolete {
            fs::remove_file(&p).map_err(|e| TsdbError::io(&p, e))?;
            n += 1;
        }
        Ok(n)
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

    /// A segment of one series record and `n` sample records.
    fn segment(n: usize) -> Vec<u8> {
        let mut data = FORMAT.header().to_vec();
        let l = Labels::from_pairs([("__name__", "m")]);
        encode_series(&mut data, [(7u64, &l)]);
        for i in 0..n {
            let s: Vec<Sample> = (0..=i)
                .map(|j| Sample::new((i * 100 + j) as i64, j as f64 / 3.0))
                .collect();
            encode_samples(&mut data, [(7u64, s.as_slice())]);
        }
        data
    }

    #[test]
    fn replay_repairs_and_counts_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = segment(5);
        let seg = |n| skopos_storage::segment_path(dir.path(), n);
        fs::write(seg(0), &data[..data.len() - 3]).unwrap();
        fs::write(seg(1), &data).unwrap();
        let mut n = 0;
        let (damaged, first) = replay(dir.path(), true, &mut |r| {
            if let Record::Samples(s) = r {
                assert_eq!(s[0].0, 7);
                n += 1;
            }
        })
        .unwrap();
        assert_eq!((damaged, first, n), (1, 0, 4 + 5));
        // Repaired: a second replay finds nothing wrong and the same records.
        let mut m = 0;
        assert_eq!(replay(dir.path(), true, &mut |_| m += 1).unwrap().0, 0);
        assert_eq!(m, 2 + 4 + 5);
    }

    #[test]
    fn a_checkpoint_supersedes_the_segments_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let seg = |n| skopos_storage::segment_path(dir.path(), n);
        for n in 0..4 {
            fs::write(seg(n), segment(1)).unwrap();
        }
        let mut cp = begin_checkpoint(dir.path(), 2).unwrap();
        cp.write(&segment(2)[8..]).unwrap();
        assert_eq!(cp.commit().unwrap(), 3, "segments 0 to 2 deleted");
        let mut samples = 0;
        let (damaged, first) = replay(dir.path(), true, &mut |r| {
            if matches!(r, Record::Samples(_)) {
                samples += 1;
            }
        })
        .unwrap();
        // The checkpoint's two sample records, then segment 3's one.
        assert_eq!((damaged, first, samples), (0, 3, 3));
    }
}
