//! Immutable segments: what the head holds when it is flushed, compressed.
//!
//! # Format (`segments/NNNNNNNNNNNN.seg`, version 3)
//!
//! ```text
//! header:  magic "SKLS" | version u32 LE (=3; 1 and 2 are still read)
//! blocks:  zstd(block)*            one or more per stream, in time order
//! footer:  zstd(index)
//! trailer: footer offset u64 LE | footer length u64 LE | crc32(footer) u32 LE | magic "SKLS"
//! block:   n v | first ts z | (ts - previous ts) z * (n-1) | line length v * n
//!          | per entry: nmeta v | (name, value)* | the lines, back to back
//!          (a line's length is its length as stored, references included)
//! (v2 block: the same without references; v1 block: n v | per entry:
//!  ts z | line | nmeta v | (name, value)*)
//! index:   wal_upto v | nstreams v | per stream: nlabels v | (name, value)*
//!          | nblocks v | per block: offset v | length v | count v
//!          | min_ts z | max_ts z | raw bytes v | crc32 v | line bytes v
//!          | ntokens v | dictionary (len-prefixed: sorted tokens, each + '\n')
//!          | per token: nblocks v | first block v | (block - previous block) v*
//! ```
//! A block is laid out by column so that the lines sit together and the
//! compressor sees one line after another rather than lines broken up by
//! timestamps (on the benchmark corpus, 14% smaller blocks than version 1's
//! entry-by-entry layout). In version 3 every indexed token of 12 bytes or
//! more is written in the lines as byte 0xFF (never in UTF-8) and its
//! number in the dictionary: a request or trace id, random and so hardly
//! compressible, is then stored once, in the index, instead of twice. Blocks are numbered in the order the index lists them; the token part
//! is the full-text index (`tokens.rs`).
//! `wal_upto` is the last WAL segment whose entries the segment holds: on
//! open, those WAL segments are not replayed again. A segment is written to
//! `.tmp` and renamed into place, so it is either whole or absent.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use skopos_model::codec::{put_bytes, put_uvarint, put_varint, zigzag, Reader};
use skopos_model::{Labels, LabelsBuilder, LogEntry};
use skopos_storage::{decompress_declared, AtomicFile};

use crate::tokens::{Builder, Index, TokenRef};
use crate::LogsError;

const MAGIC: &[u8; 4] = b"SKLS";
const VERSION: u32 = 3;
/// Raw bytes of entries per compressed block.
const BLOCK_BYTES: usize = 256 * 1024;

pub(crate) struct BlockMeta {
    /// The block's number in the segment (for the token index).
    pub ordinal: u32,
    offset: u64,
    len: u64,
    pub count: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub raw: u64,
    crc: u32,
    /// Bytes of line text in the block.
    pub line_bytes: u64,
}

pub(crate) struct StreamMeta {
    pub labels: Labels,
    pub blocks: Vec<BlockMeta>,
}

/// An open segment: its index in memory, its blocks read on demand.
pub(crate) struct Segment {
    pub path: PathBuf,
    file: File,
    /// Block layout: 1 entry by entry, 2 by column.
    version: u32,
    pub wal_upto: u64,
    pub streams: Vec<StreamMeta>,
    pub min_ts: i64,
    pub max_ts: i64,
    pub file_bytes: u64,
    pub blocks: usize,
    pub index: Index,
}

pub(crate) fn put_labels(buf: &mut Vec<u8>, l: &Labels) {
    put_uvarint(buf, l.len() as u64);
    for x in l.iter() {
        put_bytes(buf, x.name.as_bytes());
        put_bytes(buf, x.value.as_bytes());
    }
}

pub(crate) fn read_labels(r: &mut Reader) -> Option<Labels> {
    let n = r.len(r.remaining())?;
    let mut b = LabelsBuilder::new();
    for _ in 0..n {
        let name = r.string()?;
        let value = r.string()?;
        b.set(name, value);
    }
    Some(b.build())
}

pub(crate) fn encode_entries(buf: &mut Vec<u8>, entries: &[LogEntry]) {
    put_uvarint(buf, entries.len() as u64);
    for e in entries {
        put_varint(buf, e.ts);
        put_bytes(buf, e.line.as_bytes());
        put_labels(buf, &e.metadata);
    }
}

pub(crate) fn decode_entries(r: &mut Reader, max: usize) -> Option<Vec<LogEntry>> {
    let n = r.len(max)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ts = r.varint()?;
        let line = r.string()?;
        let metadata = read_labels(r)?;
        out.push(LogEntry { ts, line, metadata });
    }
    Some(out)
}

/// The long tokens of a block's lines, as the first pass over them noted
/// them: line `i` of the block has `refs[start..ends[0]]` when `i` is 0,
/// else `refs[ends[i - 1]..ends[i]]`.
struct BlockRefs<'a> {
    builder: &'a Builder,
    refs: &'a [TokenRef],
    start: usize,
    ends: &'a [usize],
}

/// A block of version 2 or 3: timestamps, lengths, metadata, then the
/// lines; with `refs` (version 3), long tokens of the lines become
/// references to the segment's dictionary. `text` is scratch space.
fn encode_block(
    buf: &mut Vec<u8>,
    text: &mut Vec<u8>,
    entries: &[LogEntry],
    refs: Option<BlockRefs<'_>>,
) {
    put_uvarint(buf, entries.len() as u64);
    let mut prev = 0i64;
    for e in entries {
        put_varint(buf, e.ts.wrapping_sub(prev));
        prev = e.ts;
    }
    text.clear();
    let mut from = refs.as_ref().map_or(0, |r| r.start);
    for (i, e) in entries.iter().enumerate() {
        let before = text.len();
        match &refs {
            Some(r) => {
                let to = r.ends[i];
                crate::tokens::encode_line(text, e.line.as_bytes(), &r.refs[from..to], r.builder);
                from = to;
            }
            None => text.extend_from_slice(e.line.as_bytes()),
        }
        put_uvarint(buf, (text.len() - before) as u64);
    }
    for e in entries {
        put_labels(buf, &e.metadata);
    }
    buf.extend_from_slice(text);
}

/// The entries of a version 2 or 3 block for which `keep(ts, line)` holds;
/// references are resolved through the segment's dictionary `index`.
fn decode_block(
    raw: &[u8],
    count: u64,
    index: &Index,
    keep: &dyn Fn(i64, &str) -> bool,
) -> Option<Vec<LogEntry>> {
    let mut r = Reader::new(raw);
    let n = r.len(raw.len())?;
    if n as u64 != count {
        return None;
    }
    let mut ts = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(r.varint()?);
        ts.push(prev);
    }
    let mut lens = Vec::with_capacity(n);
    let mut total = 0usize;
    for _ in 0..n {
        let l = r.len(raw.len())?;
        total = total.checked_add(l)?;
        lens.push(l);
    }
    let mut meta = Vec::with_capacity(n);
    for _ in 0..n {
        meta.push(read_labels(&mut r)?);
    }
    let lines = r.bytes(r.remaining())?;
    if lines.len() != total {
        return None;
    }
    // Without references the whole text is checked as UTF-8 at once.
    let plain = match memchr::memchr(crate::tokens::REF, lines) {
        None => Some(std::str::from_utf8(lines).ok()?),
        Some(_) => None,
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    // Lines with references are rebuilt here; only kept ones are copied out.
    let mut scratch = Vec::new();
    for ((ts, len), metadata) in ts.into_iter().zip(lens).zip(meta) {
        let bytes = &lines[at..at + len];
        let line: &str = match plain {
            Some(text) => text.get(at..at + len)?,
            None => crate::tokens::decode_line(bytes, index, &mut scratch)?,
        };
        at += len;
        if keep(ts, line) {
            out.push(LogEntry {
                ts,
                line: line.to_string(),
                metadata,
            });
        }
    }
    Some(out)
}

fn corrupt(path: &Path, message: impl ToString) -> LogsError {
    LogsError::corrupt(path, message.to_string())
}

/// Writes a segment of `streams` (each sorted by time) to `dir/<name>`.
pub(crate) fn write(
    dir: &Path,
    name: &str,
    wal_upto: u64,
    streams: &[(&Labels, &[LogEntry])],
) -> Result<Segment, LogsError> {
    write_version(dir, name, wal_upto, streams, VERSION)
}

/// [`write`] in an older block layout, so tests can prove old segments
/// still read.
pub(crate) fn write_version(
    dir: &Path,
    name: &str,
    wal_upto: u64,
    streams: &[(&Labels, &[LogEntry])],
    version: u32,
) -> Result<Segment, LogsError> {
    let path = dir.join(name);
    let mut f = AtomicFile::create(&path)?;
    let tmp = f.tmp_path().to_path_buf();
    let io = |e| LogsError::io(&tmp, e);
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    let mut index = Vec::new();
    put_uvarint(&mut index, wal_upto);
    put_uvarint(&mut index, streams.len() as u64);
    // Pass 1: cut the streams into blocks and index their tokens, so that
    // the dictionary is complete before any block refers to it.
    let mut tokens = Builder::default();
    let mut parts: Vec<(usize, usize, usize)> = Vec::new();
    // Long tokens of every line, and where each line's end in that list.
    let mut refs: Vec<TokenRef> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    for (si, (_, entries)) in streams.iter().enumerate() {
        let mut start = 0;
        while start < entries.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < entries.len() && (end == start || bytes < BLOCK_BYTES) {
                bytes += entries[end].line.len() + 16;
                end += 1;
            }
            let ordinal = parts.len() as u32;
            for e in &entries[start..end] {
                if version >= 3 {
                    tokens.add_line_noting(ordinal, &e.line, Some(&mut refs));
                    ends.push(refs.len());
                } else {
                    tokens.add_line(ordinal, &e.line);
                }
            }
            parts.push((si, start, end));
            start = end;
        }
    }
    let (dict, postings) = tokens.finish();
    // Pass 2: encode, compress and write the blocks.
    let mut raw = Vec::with_capacity(BLOCK_BYTES * 2);
    let mut text = Vec::with_capacity(BLOCK_BYTES * 2);
    // Bytes already written to the file (`out` holds what follows).
    let mut base = 0u64;
    let mut metas: Vec<Vec<[u64; 8]>> = vec![Vec::new(); streams.len()];
    // Lines written so far: where the next block's lines start in `ends`.
    let mut line_no = 0;
    for (si, start, end) in parts {
        let part = &streams[si].1[start..end];
        raw.clear();
        match version {
            1 => encode_entries(&mut raw, part),
            2 => encode_block(&mut raw, &mut text, part, None),
            _ => {
                let first = if line_no == 0 { 0 } else { ends[line_no - 1] };
                let block = BlockRefs {
                    builder: &tokens,
                    refs: &refs,
                    start: first,
                    ends: &ends[line_no..line_no + part.len()],
                };
                encode_block(&mut raw, &mut text, part, Some(block));
            }
        }
        line_no += part.len();
        let z = zstd::bulk::compress(&raw, 3).map_err(io)?;
        metas[si].push([
            base + out.len() as u64,
            z.len() as u64,
            part.len() as u64,
            zigzag(part[0].ts),
            zigzag(part[part.len() - 1].ts),
            raw.len() as u64,
            u64::from(crc32fast::hash(&z)),
            part.iter().map(|e| e.line.len() as u64).sum::<u64>(),
        ]);
        out.extend_from_slice(&z);
        if out.len() > 8 << 20 {
            f.write_all(&out)?;
            base += out.len() as u64;
            out.clear();
        }
    }
    for ((labels, _), blocks) in streams.iter().zip(metas) {
        put_labels(&mut index, labels);
        put_uvarint(&mut index, blocks.len() as u64);
        for fields in blocks {
            // offset, length, count, min ts (zigzag), max ts (zigzag), raw
            // length, crc, line bytes: all varints.
            for v in fields {
                put_uvarint(&mut index, v);
            }
        }
    }
    put_uvarint(&mut index, postings.len() as u64);
    put_bytes(&mut index, &dict);
    for p in &postings {
        put_uvarint(&mut index, p.len() as u64);
        let mut prev = 0u32;
        for (i, &b) in p.iter().enumerate() {
            put_uvarint(&mut index, u64::from(if i == 0 { b } else { b - prev }));
            prev = b;
        }
    }
    f.write_all(&out)?;
    let footer = zstd::bulk::compress(&index, 3).map_err(io)?;
    let footer_off = base + out.len() as u64;
    let (footer_len, footer_crc) = (footer.len(), crc32fast::hash(&footer));
    let mut tail = footer;
    tail.extend_from_slice(&footer_off.to_le_bytes());
    tail.extend_from_slice(&(footer_len as u64).to_le_bytes());
    tail.extend_from_slice(&footer_crc.to_le_bytes());
    tail.extend_from_slice(MAGIC);
    f.write_all(&tail)?;
    f.commit()?;
    Segment::open(&path)
}

impl Segment {
    pub(crate) fn open(path: &Path) -> Result<Segment, LogsError> {
        let file = File::open(path).map_err(|e| LogsError::io(path, e))?;
        let len = file.metadata().map_err(|e| LogsError::io(path, e))?.len();
        if len < 8 + 24 {
            return Err(corrupt(path, "too short for a segment"));
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| LogsError::io(path, e))?;
        let version = u32::from_le_bytes(head[4..].try_into().expect("4"));
        if &head[..4] != MAGIC || !(1..=VERSION).contains(&version) {
            return Err(corrupt(
                path,
                format!("not a log segment of version 1 to {VERSION}"),
            ));
        }
        let mut trailer = [0u8; 24];
        file.read_exact_at(&mut trailer, len - 24)
            .map_err(|e| LogsError::io(path, e))?;
        if &trailer[20..] != MAGIC {
            return Err(corrupt(path, "missing trailer"));
        }
        let off = u64::from_le_bytes(trailer[..8].try_into().expect("8"));
        let flen = u64::from_le_bytes(trailer[8..16].try_into().expect("8"));
        let crc = u32::from_le_bytes(trailer[16..20].try_into().expect("4"));
        if off.checked_add(flen) != Some(len - 24) {
            return Err(corrupt(path, "footer out of bounds"));
        }
        let mut footer = vec![0u8; flen as usize];
        file.read_exact_at(&mut footer, off)
            .map_err(|e| LogsError::io(path, e))?;
        if crc32fast::hash(&footer) != crc {
            return Err(corrupt(path, "footer checksum mismatch"));
        }
        let index =
            zstd::stream::decode_all(&footer[..]).map_err(|e| corrupt(path, e.to_string()))?;
        let mut r = Reader::new(&index);
        let bad = || corrupt(path, "malformed footer");
        // WAL segments have 8-digit numbers; a damaged footer claiming more
        // would overflow the next WAL number on open (found by fuzzing the
        // trace store, which has the same layout).
        let wal_upto = r.uvarint().filter(|&n| n <= 99_999_999).ok_or_else(bad)?;
        let n = r.len(index.len()).ok_or_else(bad)?;
        let mut streams = Vec::with_capacity(n);
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        let mut ordinal = 0u32;
        for _ in 0..n {
            let labels = read_labels(&mut r).ok_or_else(bad)?;
            let nb = r.len(index.len()).ok_or_else(bad)?;
            let mut blocks = Vec::with_capacity(nb);
            for _ in 0..nb {
                let b = BlockMeta {
                    ordinal,
                    offset: r.uvarint().ok_or_else(bad)?,
                    len: r.uvarint().ok_or_else(bad)?,
                    count: r.uvarint().ok_or_else(bad)?,
                    min_ts: r.varint().ok_or_else(bad)?,
                    max_ts: r.varint().ok_or_else(bad)?,
                    raw: r.uvarint().ok_or_else(bad)?,
                    crc: r.uvarint().ok_or_else(bad)? as u32,
                    line_bytes: r.uvarint().ok_or_else(bad)?,
                };
                if b.offset.checked_add(b.len).is_none_or(|e| e > off) {
                    return Err(bad());
                }
                min_ts = min_ts.min(b.min_ts);
                max_ts = max_ts.max(b.max_ts);
                blocks.push(b);
                ordinal += 1;
            }
            streams.push(StreamMeta { labels, blocks });
        }
        let ntokens = r.len(index.len()).ok_or_else(bad)?;
        let dict = r.len_bytes().ok_or_else(bad)?.to_vec();
        let mut postings = Vec::with_capacity(ntokens);
        for _ in 0..ntokens {
            let np = r.len(ordinal as usize).ok_or_else(bad)?;
            let mut p = Vec::with_capacity(np);
            let mut prev = 0u32;
            for i in 0..np {
                let d = u32::try_from(r.uvarint().ok_or_else(bad)?).map_err(|_| bad())?;
                let b = if i == 0 {
                    d
                } else {
                    prev.checked_add(d).ok_or_else(bad)?
                };
                if b >= ordinal {
                    return Err(bad());
                }
                p.push(b);
                prev = b;
            }
            postings.push(p);
        }
        if !r.is_empty() {
            return Err(bad());
        }
        let token_index = Index::new(dict, postings).ok_or_else(bad)?;
        Ok(Segment {
            path: path.to_path_buf(),
            file,
            version,
            wal_upto,
            streams,
            min_ts,
            max_ts,
            file_bytes: len,
            blocks: ordinal as usize,
            index: token_index,
        })
    }

    /// The entries of one block for which `keep(ts, line)` holds; the
    /// others are skipped without being copied out.
    pub(crate) fn read_block(
        &self,
        b: &BlockMeta,
        keep: &dyn Fn(i64, &str) -> bool,
    ) -> Result<Vec<LogEntry>, LogsError> {
        let mut z = vec![0u8; b.len as usize];
        self.file
            .read_exact_at(&mut z, b.offset)
            .map_err(|e| LogsError::io(&self.path, e))?;
        if crc32fast::hash(&z) != b.crc {
            return Err(corrupt(
                &self.path,
                format!("block at {} fails its checksum", b.offset),
            ));
        }
        let raw = decompress_declared(&z, b.raw).map_err(|e| corrupt(&self.path, e))?;
        let bad = || corrupt(&self.path, format!("block at {} is malformed", b.offset));
        if self.version >= 2 {
            return decode_block(&raw, b.count, &self.index, keep).ok_or_else(bad);
        }
        let mut r = Reader::new(&raw);
        let n = r.len(b.count as usize).ok_or_else(bad)?;
        if n as u64 != b.count {
            return Err(bad());
        }
        let mut out = Vec::new();
        for _ in 0..n {
            let ts = r.varint().ok_or_else(bad)?;
            let line = std::str::from_utf8(r.len_bytes().ok_or_else(bad)?).map_err(|_| bad())?;
            if keep(ts, line) {
                let metadata = read_labels(&mut r).ok_or_else(bad)?;
                out.push(LogEntry {
                    ts,
                    line: line.to_string(),
                    metadata,
                });
            } else {
                let labels = r.len(r.remaining()).ok_or_else(bad)?;
                for _ in 0..labels * 2 {
                    r.len_bytes().ok_or_else(bad)?;
                }
            }
        }
        if !r.is_empty() {
            return Err(bad());
        }
        Ok(out)
    }

    pub(crate) fn raw_bytes(&self) -> u64 {
        self.streams
            .iter()
            .flat_map(|s| &s.blocks)
            // Saturating: a damaged footer may declare anything.
            .fold(0u64, |a, b| a.saturating_add(b.raw))
    }

    pub(crate) fn entries(&self) -> u64 {
        self.streams
            .iter()
            .flat_map(|s| &s.blocks)
            // Saturating: a damaged footer may declare anything.
            .fold(0u64, |a, b| a.saturating_add(b.count))
    }
}
