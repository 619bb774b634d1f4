//! The record framing: `len u32 LE | crc32 u32 LE | type u8 | payload[len]`.
//!
//! `len` counts the payload only; `crc32` (crc32fast, IEEE) covers the type
//! byte and the payload. The legacy framing of an older file version has no
//! type byte: `len | crc32 | payload`, the CRC over the payload.

/// Bytes of framing before a record's payload.
pub const RECORD_HEADER: usize = 9;

/// Sanity bound on one record's payload; a longer `len` is corruption.
pub const MAX_RECORD: usize = 1 << 30;

/// Appends one record of type `typ` to `buf`; `body` writes its payload.
/// Several records may be framed into one buffer and written at once.
pub fn frame(buf: &mut Vec<u8>, typ: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.push(typ);
    body(buf);
    let len = u32::try_from(buf.len() - start - RECORD_HEADER).expect("a record under 4 GiB");
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// How the records of one file are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `len | crc | type | payload`: the framing every new file uses.
    Typed,
    /// `len | crc | payload` (an older file version); each record is
    /// reported with type `record_type`.
    Untyped { record_type: u8 },
}

/// Why parsing stopped before the end of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The data ends inside a record (a torn write), or a length is absurd.
    Torn,
    /// A record's CRC does not match.
    Checksum,
    /// The CRC matches but the visitor could not decode the payload.
    Undecodable,
}

/// What parsing a run of records found.
pub(crate) struct Parsed {
    pub records: u64,
    /// Bytes of `data` taken by the good records.
    pub good: usize,
    pub stop: Option<Stop>,
}

/// Walks the records of `data` (what follows a file's header), handing
/// each good one's type and payload to `visit`, which says whether it could
/// decode it. Stops at the first bad record.
pub(crate) fn parse(
    data: &[u8],
    framing: Framing,
    visit: &mut dyn FnMut(u8, &[u8]) -> bool,
) -> Parsed {
    let head = match framing {
        Framing::Typed => RECORD_HEADER,
        Framing::Untyped { .. } => 8,
    };
    let mut out = Parsed {
        records: 0,
        good: 0,
        stop: None,
    };
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(h) = data.get(pos..pos + head) else {
            out.stop = Some(Stop::Torn);
            break;
        };
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        // The CRC covers everything after itself: the type byte, if any,
        // and the payload.
        let Some(covered) = data
            .get(pos + 8..pos + head + len)
            .filter(|_| len <= MAX_RECORD)
        else {
            out.stop = Some(Stop::Torn);
            break;
        };
        if crc32fast::hash(covered) != crc {
            out.stop = Some(Stop::Checksum);
            break;
        }
        let (typ, payload) = match framing {
            Framing::Typed => (covered[0], &covered[1..]),
            Framing::Untyped { record_type } => (record_type, covered),
        };
        if !visit(typ, payload) {
            out.stop = Some(Stop::Undecodable);
            break;
        }
        out.records += 1;
        pos += head + len;
        out.good = pos;
    }
    out
}
