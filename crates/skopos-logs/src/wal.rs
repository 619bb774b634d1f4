//! The log store's write-ahead log: its records over `skopos-storage`'s
//! segments.
//!
//! # Format (version 2)
//!
//! `dir/wal/NNNNNNNN` are segments (8 decimal digits, increasing), in the
//! shared segment format (header, framing, torn-tail repair: see
//! `skopos-storage`):
//!
//! ```text
//! header:  magic "SKLW" | version u32 LE (=2)
//! record:  len u32 LE | crc32 u32 LE | type u8 (=1, a batch) | payload[len]
//! payload: one batch: nstreams v | per stream: nlabels v | (name, value)*
//!          | nentries v | per entry: ts z | line | nmeta v | (name, value)*
//! ```
//! Strings are length-prefixed (LEB128, `v` unsigned, `z` zigzag). Version
//! 1 segments (the same payloads framed without the type byte, the CRC over
//! the payload alone) are still replayed; new segments are always version
//! 2. A record that is short, fails its CRC or does not decode ends the
//! segment: the file is truncated to the last good record, with a warning,
//! and replay goes on.

use skopos_model::codec::{put_uvarint, Reader};
use skopos_model::{LogBatch, LogStream};
use skopos_storage::Format;

use crate::segment::{decode_entries, encode_entries, put_labels, read_labels};

const REC_BATCH: u8 = 1;

pub(crate) const FORMAT: Format = Format::new(*b"SKLW", 2).reading_untyped(1, REC_BATCH);

/// `batch` as one framed record.
pub(crate) fn record(batch: &LogBatch) -> Vec<u8> {
    let mut rec = Vec::with_capacity(batch.line_bytes() + 64);
    skopos_storage::frame(&mut rec, REC_BATCH, |b| encode_batch(b, batch));
    rec
}

/// The batch a record holds; `None` for a type or payload this build does
/// not know.
pub(crate) fn decode(typ: u8, payload: &[u8]) -> Option<LogBatch> {
    (typ == REC_BATCH).then(|| decode_batch(payload)).flatten()
}

/// Appends the encoding of `batch` to `buf`.
pub(crate) fn encode_batch(buf: &mut Vec<u8>, batch: &LogBatch) {
    put_uvarint(buf, batch.streams.len() as u64);
    for s in &batch.streams {
        put_labels(buf, &s.labels);
        encode_entries(buf, &s.entries);
    }
}

pub(crate) fn decode_batch(payload: &[u8]) -> Option<LogBatch> {
    let mut r = Reader::new(payload);
    let n = r.len(payload.len())?;
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let labels = read_labels(&mut r)?;
        let entries = decode_entries(&mut r, payload.len())?;
        streams.push(LogStream { labels, entries });
    }
    r.is_empty().then_some(LogBatch { streams })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skopos_model::{Labels, LogEntry};

    fn batch() -> LogBatch {
        let mut e = LogEntry::new(-5, "héllo \"world\"\n");
        e.metadata = Labels::from_pairs([("trace_id", "abc")]);
        LogBatch {
            streams: vec![
                LogStream {
                    labels: Labels::from_pairs([("app", "a")]),
                    entries: vec![e, LogEntry::new(i64::MAX, "")],
                },
                LogStream {
                    labels: Labels::empty(),
                    entries: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn batches_round_trip_and_garbage_is_refused() {
        let b = batch();
        let mut buf = Vec::new();
        encode_batch(&mut buf, &b);
        assert_eq!(decode_batch(&buf).unwrap().streams, b.streams);
        for cut in 0..buf.len() {
            assert!(decode_batch(&buf[..cut]).is_none(), "prefix {cut}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode_batch(&longer).is_none());
    }

    /// A segment as version 1 wrote it: `len | crc | payload`, no type.
    pub(crate) fn version_1_segment(batches: &[LogBatch]) -> Vec<u8> {
        let mut data = b"SKLW".to_vec();
        data.extend_from_slice(&1u32.to_le_bytes());
        for b in batches {
            let mut payload = Vec::new();
            encode_batch(&mut payload, b);
            data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            data.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            data.extend_from_slice(&payload);
        }
        data
    }

    #[test]
    fn version_1_segments_replay_and_version_2_records_carry_a_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = skopos_storage::segment_path(dir.path(), 1);
        std::fs::write(&path, version_1_segment(&[batch(), batch()])).unwrap();
        let mut seen = Vec::new();
        let st = skopos_storage::replay_file(&path, &FORMAT, true, &mut |t, p| {
            decode(t, p).map(|b| seen.push(b.streams)).is_some()
        })
        .unwrap();
        assert_eq!(st.damage, None);
        assert_eq!(seen, vec![batch().streams, batch().streams]);
        let rec = record(&batch());
        assert_eq!(rec[8], REC_BATCH);
        assert_eq!(decode(rec[8], &rec[9..]).unwrap().streams, batch().streams);
        assert!(decode(2, &rec[9..]).is_none(), "an unknown record type");
    }

    /// A data directory whose WAL an older skopos wrote (version 1) opens
    /// with its lines, and what is written next goes to a version 2 segment.
    #[test]
    fn a_store_with_a_version_1_wal_opens_with_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        std::fs::create_dir_all(&wal_dir).unwrap();
        let v1 = LogBatch {
            streams: vec![LogStream {
                labels: Labels::from_pairs([("app", "old")]),
                entries: vec![LogEntry::new(10, "from version 1")],
            }],
        };
        std::fs::write(
            skopos_storage::segment_path(&wal_dir, 1),
            version_1_segment(std::slice::from_ref(&v1)),
        )
        .unwrap();
        let opts = crate::Options {
            fsync: false,
            ..crate::Options::default()
        };
        let store = crate::Store::open(dir.path(), opts.clone()).unwrap();
        let mut v2 = v1.clone();
        v2.streams[0].entries = vec![LogEntry::new(20, "from version 2")];
        store.append(v2).unwrap();
        drop(store);
        let segs = skopos_storage::list_segments(&wal_dir).unwrap();
        assert_eq!(segs.len(), 2, "{segs:?}");
        let header = std::fs::read(&segs[1].1).unwrap();
        assert_eq!(&header[..8], &FORMAT.header());
        let store = crate::Store::open(dir.path(), opts).unwrap();
        let sel = skopos_model::LogSelect {
            matchers: vec![skopos_model::Matcher::equal("app", "old")],
            start: i64::MIN,
            end: i64::MAX,
            contains: Vec::new(),
            matches: Vec::new(),
        };
        let mut lines = Vec::new();
        store
            .select(&sel, &mut |s| {
                lines.extend(s.entries.into_iter().map(|e| e.line));
                true
            })
            .unwrap();
        assert_eq!(lines, ["from version 1", "from version 2"]);
    }
}
