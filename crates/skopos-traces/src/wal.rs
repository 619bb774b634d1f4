//! The trace store's write-ahead log: its records over `skopos-storage`'s
//! segments.
//!
//! # Format (version 2)
//!
//! `dir/wal/NNNNNNNN` are segments (8 decimal digits, increasing), in the
//! shared segment format (header, framing, torn-tail repair: see
//! `skopos-storage`):
//!
//! ```text
//! header:  magic "SKTW" | version u32 LE (=2)
//! record:  len u32 LE | crc32 u32 LE | type u8 (=1, spans) | payload[len]
//! payload: the spans of one append, as a run (`codec.rs`)
//! ```
//! Version 1 segments (the same payloads framed without the type byte, the
//! CRC over the payload alone) are still replayed; new segments are always
//! version 2. A record that is short, fails its CRC or does not decode ends
//! the segment: the file is truncated to the last good record, with a
//! warning, and replay goes on.

use skopos_model::Span;
use skopos_storage::Format;

const REC_SPANS: u8 = 1;

pub(crate) const FORMAT: Format = Format::new(*b"SKTW", 2).reading_untyped(1, REC_SPANS);

/// An encoded run of spans (`codec::encode_run`) as one framed record.
pub(crate) fn record(run: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(run.len() + skopos_storage::RECORD_HEADER);
    skopos_storage::frame(&mut rec, REC_SPANS, |b| b.extend_from_slice(run));
    rec
}

/// The spans a record holds; `None` for a type or payload this build does
/// not know.
pub(crate) fn decode(typ: u8, payload: &[u8]) -> Option<Vec<Span>> {
    (typ == REC_SPANS)
        .then(|| crate::codec::decode_run(payload))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_run, put_span, tests::full_span, Tables};

    fn run() -> Vec<u8> {
        let mut tables = Tables::default();
        let mut buf = Vec::new();
        put_span(&mut buf, &mut tables, &full_span(1, 1, 10));
        put_span(&mut buf, &mut tables, &full_span(1, 2, 20));
        encode_run(&tables, &buf, 2)
    }

    /// A data directory whose WAL an older skopos wrote (version 1:
    /// `len | crc | payload`, no type byte) opens with its spans, and what
    /// is written next goes to a version 2 segment.
    #[test]
    fn a_store_with_a_version_1_wal_opens_with_its_spans() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        std::fs::create_dir_all(&wal_dir).unwrap();
        let payload = run();
        let mut v1 = b"SKTW".to_vec();
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v1.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        v1.extend_from_slice(&payload);
        std::fs::write(skopos_storage::segment_path(&wal_dir, 1), &v1).unwrap();
        let opts = crate::Options {
            fsync: false,
            ..crate::Options::default()
        };
        let store = crate::Store::open(dir.path(), opts.clone()).unwrap();
        store
            .append(skopos_model::SpanBatch {
                spans: vec![full_span(1, 3, 30)],
            })
            .unwrap();
        drop(store);
        let segs = skopos_storage::list_segments(&wal_dir).unwrap();
        assert_eq!(segs.len(), 2, "{segs:?}");
        assert_eq!(&std::fs::read(&segs[1].1).unwrap()[..8], &FORMAT.header());
        let store = crate::Store::open(dir.path(), opts).unwrap();
        let trace = skopos_model::TraceQueryable::trace(&store, &full_span(1, 1, 10).trace_id)
            .unwrap()
            .expect("the trace is there");
        assert_eq!(trace.spans.len(), 3);
        let rec = record(&payload);
        assert_eq!(decode(rec[8], &rec[9..]).unwrap().len(), 2);
        assert!(decode(2, &rec[9..]).is_none(), "an unknown record type");
    }
}
