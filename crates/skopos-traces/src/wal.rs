//! The trace store's write-ahead log.
//!
//! # Format (version 1)
//!
//! `dir/wal/NNNNNNNN` are segments (8 decimal digits, increasing):
//!
//! ```text
//! header:  magic "SKTW" | version u32 LE (=1)
//! record:  len u32 LE | crc32 u32 LE | payload[len]
//! payload: the spans of one append, as a run (`codec.rs`)
//! ```
//! `crc32` (crc32fast, IEEE) covers the payload. On open, a record that is
//! short, fails its CRC or does not decode ends the segment: the file is
//! truncated to the last good record, with a warning, and replay goes on.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use skopos_model::Span;

use crate::TracesError;

const MAGIC: &[u8; 4] = b"SKTW";
const VERSION: u32 = 1;
const HEADER: usize = 8;

pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// Segment numbers in `dir`, ascending.
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>, TracesError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| TracesError::io(dir, e))? {
        let e = e.map_err(|e| TracesError::io(dir, e))?;
        if let Some(n) = e
            .file_name()
            .to_str()
            .filter(|s| s.len() == 8)
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Frames `payload` as a record.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(payload.len() + 8);
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    rec.extend_from_slice(payload);
    rec
}

/// Creates segment `n` with its header, durably.
pub(crate) fn create_segment(dir: &Path, n: u64) -> Result<File, TracesError> {
    let path = segment_path(dir, n);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| TracesError::io(&path, e))?;
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    f.write_all(&h).map_err(|e| TracesError::io(&path, e))?;
    f.sync_all().map_err(|e| TracesError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(f)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), TracesError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| TracesError::io(dir, e))
}

/// Replays segment `n`, handing each record's spans to `visit`; truncates a
/// torn or corrupt tail (returns how many bytes were cut).
pub(crate) fn replay_segment(
    dir: &Path,
    n: u64,
    visit: &mut dyn FnMut(Vec<Span>),
) -> Result<u64, TracesError> {
    let path = segment_path(dir, n);
    let mut data = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| TracesError::io(&path, e))?;
    if data.len() < HEADER || &data[..4] != MAGIC {
        // A segment whose header never made it to disk holds nothing.
        tracing::warn!(path = %path.display(), "trace WAL segment without a header; emptied");
        drop(create_segment(dir, n)?);
        return Ok(data.len() as u64);
    }
    let version = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(TracesError::Corrupt {
            path,
            message: format!("unsupported trace WAL version {version}"),
        });
    }
    let mut pos = HEADER;
    while pos < data.len() {
        let Some(head) = data.get(pos..pos + 8) else {
            break;
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let Some(payload) = data.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(spans) = crate::codec::decode_run(payload) else {
            break;
        };
        visit(spans);
        pos += 8 + len;
    }
    let cut = (data.len() - pos) as u64;
    if cut > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = cut,
            "trace WAL segment ends in a torn or corrupt record; truncated"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| TracesError::io(&path, e))?;
        f.set_len(pos as u64)
            .map_err(|e| TracesError::io(&path, e))?;
        f.sync_all().map_err(|e| TracesError::io(&path, e))?;
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_run, put_span, tests::full_span, Tables};

    fn record() -> Vec<u8> {
        let mut tables = Tables::default();
        let mut buf = Vec::new();
        put_span(&mut buf, &mut tables, &full_span(1, 1, 10));
        put_span(&mut buf, &mut tables, &full_span(1, 2, 20));
        frame(&encode_run(&tables, &buf, 2))
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = create_segment(dir.path(), 1).unwrap();
        let rec = record();
        f.write_all(&rec).unwrap();
        f.write_all(&rec[..rec.len() - 3]).unwrap();
        drop(f);
        let mut seen = Vec::new();
        let cut = replay_segment(dir.path(), 1, &mut |s| seen.push(s)).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0], vec![full_span(1, 1, 10), full_span(1, 2, 20)]);
        assert_eq!(cut, rec.len() as u64 - 3);
        let len = fs::metadata(segment_path(dir.path(), 1)).unwrap().len();
        assert_eq!(len, (HEADER + rec.len()) as u64);
        // A flipped byte in a record ends the segment there.
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 1))
            .unwrap();
        let mut bad = rec.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        f.write_all(&bad).unwrap();
        f.write_all(&rec).unwrap();
        drop(f);
        let mut seen = 0;
        replay_segment(dir.path(), 1, &mut |_| seen += 1).unwrap();
        assert_eq!(seen, 1);
    }
}
