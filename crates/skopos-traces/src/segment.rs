//! Immutable segments: a flushed head, one time partition per file, spans
//! grouped by trace in zstd blocks, with the trace-id table and the search
//! index in the footer.
//!
//! # Format (`segments/NNNNNNNNNNNN.seg`, version 1)
//!
//! ```text
//! header:  magic "SKTS" | version u32 LE (=1)
//! blocks:  zstd(block)*               traces in order of their first span
//! footer:  zstd(index)
//! trailer: footer offset u64 LE | footer length u64 LE | footer raw length u64 LE
//!          | crc32(footer) u32 LE | magic "SKTS"
//! block:   table (codec.rs) | ntraces v | per trace: id [16] | nspans v | bytes v
//!          | the traces' spans back to back, in that order
//! index:   wal_upto v | group v | nblocks v
//!          | per block: offset v | length v | crc32 v | raw length v | ntraces v
//!            | nspans v | min start z | max start z | max duration v
//!          | ntraces v | per trace, by id: id [16] | block v | nspans v | bytes v
//!            | min start z | max start z | split u8
//!          | nkeys v | per key: field u8 | key | overflow u8 | nvalues v
//!            | per value: text | kinds u8 | nblocks v | first block v | deltas v*
//!          | per block: nhashes v | first hash v | deltas v*   (block filters)
//! ```
//!
//! Every span of a trace that the head held sits in one block, so a lookup
//! by id is a binary search of the in-memory trace table and one block read.
//! `split` marks a trace that already had spans in older segments when this
//! one was written: searches assemble such traces whole rather than judging
//! them by one segment's part.
//!
//! The search index maps (field, key, value-as-text) to the blocks holding a
//! span with it: field `n` span name, `s` service, `t` status, `k` kind, `a`
//! span attribute, `r` resource attribute; `kinds` is a bit set of the value
//! types seen (so tag values come back typed). A key with a value longer
//! than [`MAX_INDEXED_TEXT`] or more values in the segment than
//! [`crate::Options::index_values_per_key`] in
//! the segment is marked `overflow`; for such keys each block lists the
//! 32-bit hashes of its values ([`value_hash`]), so a search for a rare
//! value of a high-cardinality attribute (a user id, a URL) still skips the
//! blocks that cannot hold it (a hash collision costs a block read, never a
//! wrong answer).
//!
//! A flush writes one segment per time partition; they share `wal_upto`
//! (the last WAL segment they cover) and record how many there are
//! (`group`), so that open can tell a flush cut short by a crash (some of
//! the group missing while its WAL is still there) from one completed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use skopos_model::codec::{put_bytes, put_uvarint, put_varint, zigzag, Reader};
use skopos_model::{AttrValue, Span, TraceId};
use skopos_storage::{decompress_declared, AtomicFile};

use crate::codec::{decode_table, put_span, read_span, Tables};
use crate::TracesError;

const MAGIC: &[u8; 4] = b"SKTS";
/// The largest WAL segment number (`wal/NNNNNNNN`).
const MAX_WAL_SEGMENT: u64 = 99_999_999;
const VERSION: u32 = 1;
const TRAILER: usize = 32;

/// Longest value text the search index holds.
pub(crate) const MAX_INDEXED_TEXT: usize = 256;

pub(crate) const FIELD_NAME: u8 = b'n';
pub(crate) const FIELD_SERVICE: u8 = b's';
pub(crate) const FIELD_STATUS: u8 = b't';
pub(crate) const FIELD_KIND: u8 = b'k';
pub(crate) const FIELD_SPAN: u8 = b'a';
pub(crate) const FIELD_RESOURCE: u8 = b'r';

const KIND_STR: u8 = 1;
const KIND_INT: u8 = 2;
const KIND_FLOAT: u8 = 4;
const KIND_BOOL: u8 = 8;

fn kind_bit(v: &AttrValue) -> u8 {
    match v {
        AttrValue::Int(_) => KIND_INT,
        AttrValue::Float(_) => KIND_FLOAT,
        AttrValue::Bool(_) => KIND_BOOL,
        _ => KIND_STR,
    }
}

/// The typed values a dictionary entry stands for.
pub(crate) fn typed_values(text: &str, kinds: u8, out: &mut Vec<AttrValue>) {
    if kinds & KIND_STR != 0 {
        out.push(AttrValue::Str(text.to_string()));
    }
    if kinds & KIND_INT != 0 {
        if let Ok(i) = text.parse() {
            out.push(AttrValue::Int(i));
        }
    }
    if kinds & KIND_FLOAT != 0 {
        if let Ok(f) = text.parse() {
            out.push(AttrValue::Float(f));
        }
    }
    if kinds & KIND_BOOL != 0 {
        if let Ok(b) = text.parse() {
            out.push(AttrValue::Bool(b));
        }
    }
}

pub(crate) struct BlockMeta {
    offset: u64,
    len: u64,
    crc: u32,
    raw: u64,
    pub spans: u32,
    pub min_start: i64,
    pub max_start: i64,
    pub max_duration: i64,
}

pub(crate) struct TraceEntry {
    pub id: TraceId,
    pub block: u32,
    pub spans: u32,
    pub bytes: u64,
    pub min_start: i64,
    pub max_start: i64,
    pub split: bool,
}

#[derive(Default)]
pub(crate) struct KeyIndex {
    pub overflow: bool,
    /// Value text → (kinds, sorted block ordinals).
    pub values: HashMap<String, (u8, Vec<u32>)>,
}

/// An open segment: its tables in memory, its blocks read on demand.
pub(crate) struct Segment {
    pub path: PathBuf,
    file: File,
    pub wal_upto: u64,
    pub group: u64,
    pub blocks: Vec<BlockMeta>,
    /// Sorted by id.
    pub traces: Vec<TraceEntry>,
    /// Where `find` looks: see [`Fence`].
    fence: Fence,
    pub index: HashMap<(u8, String), KeyIndex>,
    /// Per block, the sorted value hashes of the keys marked `overflow`.
    pub filters: Vec<Vec<u32>>,
    /// Ids of the traces marked `split`.
    pub split: Vec<TraceId>,
    pub min_start: i64,
    pub max_start: i64,
    pub spans: u64,
    pub raw_bytes: u64,
    pub file_bytes: u64,
}

/// The traces of one segment, each `(id, spans, split)`, in the order they
/// go into blocks.
pub(crate) type Input<'a> = [(TraceId, &'a [Span], bool)];

/// A stable 64-bit hash (FxHash-style over 8-byte words, with a final
/// mix), part of the on-disk format: do not change it.
pub(crate) fn hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    h = (h.rotate_left(5) ^ u64::from_le_bytes(last) ^ (bytes.len() as u64) << 56).wrapping_mul(K);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The hash of a key, and of a value of it, as the block filters hold them.
pub(crate) fn key_hash(field: u8, key: &str) -> u64 {
    hash(hash(u64::from(field), key.as_bytes()), &[0xff])
}

pub(crate) fn value_hash(key_hash: u64, text: &str) -> u32 {
    let h = hash(key_hash, text.as_bytes());
    (h ^ (h >> 32)) as u32
}

#[derive(Default)]
struct IndexBuilder {
    max_values: usize,
    /// By field byte then key.
    keys: HashMap<String, (u64, KeyIndex)>,
    scratch: String,
    /// Per block: (key hash, value hash) of the values of overflowed keys.
    hashes: Vec<Vec<(u64, u32)>>,
}

impl IndexBuilder {
    /// Indexes `text` as a value of `key` in `block`. A key's values are
    /// kept exactly until it has `max_values` of them or one longer than
    /// `MAX_INDEXED_TEXT`; from then on it overflows, and the block filters
    /// hold the hash of every value it had in every block (those indexed so
    /// far are added when it overflows, so a key that never does costs no
    /// hashes).
    fn add(&mut self, field: u8, key: &str, text: &str, kinds: u8, block: u32) {
        let IndexBuilder {
            max_values,
            keys,
            scratch,
            hashes,
        } = self;
        scratch.clear();
        scratch.push(field as char);
        scratch.push_str(key);
        let (kh, k) = match keys.get_mut(scratch.as_str()) {
            Some(k) => k,
            None => keys
                .entry(scratch.clone())
                .or_insert_with(|| (key_hash(field, key), KeyIndex::default())),
        };
        let kh = *kh;
        let mut overflows = text.len() > MAX_INDEXED_TEXT;
        if !overflows {
            let full = k.values.len() >= *max_values;
            match k.values.get_mut(text) {
                Some((kd, blocks)) => {
                    *kd |= kinds;
                    if blocks.last() != Some(&block) {
                        blocks.push(block);
                    }
                }
                None if full => overflows = true,
                None => {
                    k.values.insert(text.to_string(), (kinds, vec![block]));
                }
            }
        }
        let mut filter = |b: u32, h: u32| {
            while hashes.len() <= b as usize {
                hashes.push(Vec::new());
            }
            hashes[b as usize].push((kh, h));
        };
        if overflows && !k.overflow {
            k.overflow = true;
            for (t, (_, blocks)) in &k.values {
                let h = value_hash(kh, t);
                for &b in blocks {
                    filter(b, h);
                }
            }
        }
        if k.overflow {
            filter(block, value_hash(kh, text));
        }
    }

    fn add_span(&mut self, s: &Span, block: u32, resource_done: bool) {
        self.add(FIELD_NAME, "", &s.name, KIND_STR, block);
        self.add(FIELD_STATUS, "", s.status.name(), KIND_STR, block);
        self.add(FIELD_KIND, "", s.kind.name(), KIND_STR, block);
        for a in &s.attributes {
            self.add(
                FIELD_SPAN,
                &a.key,
                &a.value.text(),
                kind_bit(&a.value),
                block,
            );
        }
        if !resource_done {
            self.add(FIELD_SERVICE, "", s.service_name(), KIND_STR, block);
            for a in &s.resource.attributes {
                let text = a.value.text();
                self.add(FIELD_RESOURCE, &a.key, &text, kind_bit(&a.value), block);
            }
        }
    }

    fn encode(&self, buf: &mut Vec<u8>, nblocks: usize) {
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        put_uvarint(buf, keys.len() as u64);
        for (name, (_, k)) in &keys {
            buf.push(name.as_bytes()[0]);
            put_bytes(buf, &name.as_bytes()[1..]);
            buf.push(u8::from(k.overflow));
            put_uvarint(buf, k.values.len() as u64);
            for (text, (kinds, blocks)) in &k.values {
                put_bytes(buf, text.as_bytes());
                buf.push(*kinds);
                put_uvarint(buf, blocks.len() as u64);
                let mut prev = 0;
                for &b in blocks {
                    put_uvarint(buf, u64::from(b - prev));
                    prev = b;
                }
            }
        }
        // Block filters: the value hashes of overflowed keys (`hashes`
        // holds only theirs).
        for b in 0..nblocks {
            let mut hs: Vec<u32> = self
                .hashes
                .get(b)
                .into_iter()
                .flatten()
                .map(|(_, h)| *h)
                .collect();
            hs.sort_unstable();
            hs.dedup();
            put_uvarint(buf, hs.len() as u64);
            let mut prev = 0;
            for h in hs {
                put_uvarint(buf, u64::from(h - prev));
                prev = h;
            }
        }
    }
}

/// The value hashes of overflowed keys in each block, sorted.
fn decode_filters(r: &mut Reader, nblocks: usize) -> Option<Vec<Vec<u32>>> {
    let mut out = Vec::with_capacity(nblocks);
    for _ in 0..nblocks {
        let n = r.len(r.remaining())?;
        let mut hs = Vec::with_capacity(n);
        let mut prev = 0u32;
        for i in 0..n {
            let d = u32::try_from(r.uvarint()?).ok()?;
            if i > 0 && d == 0 {
                return None;
            }
            prev = prev.checked_add(d)?;
            hs.push(prev);
        }
        out.push(hs);
    }
    Some(out)
}

fn decode_index(r: &mut Reader, nblocks: u32) -> Option<HashMap<(u8, String), KeyIndex>> {
    let n = r.len(r.remaining())?;
    let mut out = HashMap::with_capacity(n);
    for _ in 0..n {
        let field = r.bytes(1)?[0];
        let key = r.string()?;
        let overflow = r.bytes(1)?[0] != 0;
        let nv = r.len(r.remaining())?;
        let mut values = HashMap::with_capacity(nv);
        for _ in 0..nv {
            let text = r.string()?;
            let kinds = r.bytes(1)?[0];
            let nb = r.len(nblocks as usize)?;
            let mut blocks = Vec::with_capacity(nb);
            let mut prev = 0u32;
            for _ in 0..nb {
                prev = prev.checked_add(u32::try_from(r.uvarint()?).ok()?)?;
                if prev >= nblocks {
                    return None;
                }
                blocks.push(prev);
            }
            values.insert(text, (kinds, blocks));
        }
        out.insert((field, key), KeyIndex { overflow, values });
    }
    Some(out)
}

fn corrupt(path: &Path, message: impl Into<String>) -> TracesError {
    TracesError::corrupt(path, message)
}

/// Writes a segment of `traces` to `dir/<name>.tmp`, fsynced; the caller
/// renames it into place. Returns the temporary path and the final one.
pub(crate) fn write_tmp(
    dir: &Path,
    name: &str,
    wal_upto: u64,
    group: u64,
    traces: &Input,
    block_bytes: usize,
    max_values: usize,
) -> Result<(PathBuf, PathBuf), TracesError> {
    let mut f = AtomicFile::create(&dir.join(name))?;
    let tmp = f.tmp_path().to_path_buf();
    let io = |e| TracesError::io(&tmp, e);
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let mut base = 0u64;
    let mut index = IndexBuilder {
        max_values,
        ..IndexBuilder::default()
    };
    let mut blocks: Vec<[u64; 9]> = Vec::new();
    let mut entries: Vec<TraceEntry> = Vec::with_capacity(traces.len());
    let mut at = 0;
    let mut spans_buf = Vec::with_capacity(block_bytes * 2);
    let mut dir_buf = Vec::new();
    let mut raw = Vec::with_capacity(block_bytes * 2);
    while at < traces.len() {
        let ordinal = blocks.len() as u32;
        let mut tables = Tables::default();
        spans_buf.clear();
        dir_buf.clear();
        let (mut nspans, mut ntraces) = (0u64, 0u64);
        let (mut min_start, mut max_start, mut max_dur) = (i64::MAX, i64::MIN, 0i64);
        let mut last_resource: Option<*const skopos_model::Resource> = None;
        while at < traces.len() && (ntraces == 0 || spans_buf.len() < block_bytes) {
            let (id, spans, split) = &traces[at];
            let before = spans_buf.len();
            let (mut tmin, mut tmax) = (i64::MAX, i64::MIN);
            for s in spans.iter() {
                put_span(&mut spans_buf, &mut tables, s);
                let ptr = std::sync::Arc::as_ptr(&s.resource);
                index.add_span(s, ordinal, last_resource == Some(ptr));
                last_resource = Some(ptr);
                tmin = tmin.min(s.start_ns);
                tmax = tmax.max(s.start_ns);
                max_dur = max_dur.max(s.duration_ns());
            }
            let bytes = (spans_buf.len() - before) as u64;
            dir_buf.extend_from_slice(id);
            put_uvarint(&mut dir_buf, spans.len() as u64);
            put_uvarint(&mut dir_buf, bytes);
            entries.push(TraceEntry {
                id: *id,
                block: ordinal,
                spans: spans.len() as u32,
                bytes,
                min_start: tmin,
                max_start: tmax,
                split: *split,
            });
            min_start = min_start.min(tmin);
            max_start = max_start.max(tmax);
            nspans += spans.len() as u64;
            ntraces += 1;
            at += 1;
        }
        raw.clear();
        tables.encode(&mut raw);
        put_uvarint(&mut raw, ntraces);
        raw.extend_from_slice(&dir_buf);
        raw.extend_from_slice(&spans_buf);
        let z = zstd::bulk::compress(&raw, 3).map_err(io)?;
        blocks.push([
            base + out.len() as u64,
            z.len() as u64,
            u64::from(crc32fast::hash(&z)),
            raw.len() as u64,
            ntraces,
            nspans,
            zigzag(min_start),
            zigzag(max_start),
            max_dur.max(0) as u64,
        ]);
        out.extend_from_slice(&z);
        if out.len() > 8 << 20 {
            f.write_all(&out)?;
            base += out.len() as u64;
            out.clear();
        }
    }
    let mut footer = Vec::new();
    put_uvarint(&mut footer, wal_upto);
    put_uvarint(&mut footer, group);
    put_uvarint(&mut footer, blocks.len() as u64);
    for b in &blocks {
        for &v in b {
            put_uvarint(&mut footer, v);
        }
    }
    entries.sort_unstable_by_key(|e| e.id);
    put_uvarint(&mut footer, entries.len() as u64);
    for e in &entries {
        footer.extend_from_slice(&e.id);
        put_uvarint(&mut footer, u64::from(e.block));
        put_uvarint(&mut footer, u64::from(e.spans));
        put_uvarint(&mut footer, e.bytes);
        put_varint(&mut footer, e.min_start);
        put_varint(&mut footer, e.max_start);
        footer.push(u8::from(e.split));
    }
    index.encode(&mut footer, blocks.len());
    let z = zstd::bulk::compress(&footer, 3).map_err(io)?;
    let footer_at = base + out.len() as u64;
    out.extend_from_slice(&z);
    out.extend_from_slice(&footer_at.to_le_bytes());
    out.extend_from_slice(&(z.len() as u64).to_le_bytes());
    out.extend_from_slice(&(footer.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&z).to_le_bytes());
    out.extend_from_slice(MAGIC);
    f.write_all(&out)?;
    Ok(f.finish()?)
}

/// Where in a sorted trace table the ids with the same leading bits start:
/// trace ids are random, so about two entries share a prefix and a lookup
/// (one per new trace an append sees, in every segment) is a short search
/// instead of a binary search over the whole table, most of whose steps
/// miss the cache. Ids that are not random (leading zeros) fall into few
/// prefixes and cost what a plain binary search does.
struct Fence {
    bits: u32,
    /// `starts[p]`: the first entry whose prefix is at least `p`; one more
    /// than there are prefixes.
    starts: Vec<u32>,
}

impl Fence {
    fn new(traces: &[TraceEntry]) -> Fence {
        // About two entries a prefix; at most 2^20 prefixes (4 MiB).
        let bits = (usize::BITS - traces.len().leading_zeros())
            .saturating_sub(2)
            .min(20);
        let n = 1usize << bits;
        let mut starts = Vec::with_capacity(n + 1);
        let mut i = 0usize;
        for p in 0..n {
            while i < traces.len() && Self::prefix(bits, &traces[i].id) < p as u64 {
                i += 1;
            }
            starts.push(i as u32);
        }
        starts.push(traces.len() as u32);
        Fence { bits, starts }
    }

    fn prefix(bits: u32, id: &TraceId) -> u64 {
        if bits == 0 {
            return 0;
        }
        u64::from_be_bytes(id[..8].try_into().expect("8 bytes")) >> (64 - bits)
    }

    /// The entries that can hold `id`.
    fn range(&self, id: &TraceId) -> std::ops::Range<usize> {
        let p = Self::prefix(self.bits, id) as usize;
        self.starts[p] as usize..self.starts[p + 1] as usize
    }
}

impl Segment {
    pub fn open(path: &Path) -> Result<Segment, TracesError> {
        let io = |e| TracesError::io(path, e);
        let file = File::open(path).map_err(io)?;
        let file_bytes = file.metadata().map_err(io)?.len();
        if file_bytes < (8 + TRAILER) as u64 {
            return Err(corrupt(path, "shorter than header and trailer"));
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        if &head[..4] != MAGIC {
            return Err(corrupt(path, "not a trace segment (bad magic)"));
        }
        let version = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(corrupt(
                path,
                format!("unsupported trace segment version {version}"),
            ));
        }
        let mut t = [0u8; TRAILER];
        file.read_exact_at(&mut t, file_bytes - TRAILER as u64)
            .map_err(io)?;
        let u64_at = |i: usize| u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"));
        let (at, len, raw_len) = (u64_at(0), u64_at(8), u64_at(16));
        let crc = u32::from_le_bytes(t[24..28].try_into().expect("4 bytes"));
        if &t[28..] != MAGIC || at.checked_add(len) != Some(file_bytes - TRAILER as u64) {
            return Err(corrupt(path, "bad trailer"));
        }
        let mut z = vec![0u8; len as usize];
        file.read_exact_at(&mut z, at).map_err(io)?;
        if crc32fast::hash(&z) != crc {
            return Err(corrupt(path, "footer checksum mismatch"));
        }
        if raw_len > 1 << 34 {
            return Err(corrupt(path, "footer too large"));
        }
        let footer =
            decompress_declared(&z, raw_len).map_err(|e| corrupt(path, format!("footer: {e}")))?;
        Self::decode(path, file, file_bytes, &footer, at)
            .ok_or_else(|| corrupt(path, "footer does not decode"))
    }

    fn decode(
        path: &Path,
        file: File,
        file_bytes: u64,
        footer: &[u8],
        blocks_end: u64,
    ) -> Option<Segment> {
        let mut r = Reader::new(footer);
        // WAL segments have 8-digit numbers; a damaged footer claiming more
        // made open overflow the next WAL number (found by fuzzing).
        let wal_upto = r.uvarint().filter(|&n| n <= MAX_WAL_SEGMENT)?;
        let group = r.uvarint()?;
        let nb = r.len(footer.len())?;
        let mut blocks = Vec::with_capacity(nb);
        let (mut spans, mut raw_bytes) = (0u64, 0u64);
        for _ in 0..nb {
            let offset = r.uvarint()?;
            let len = r.uvarint()?;
            if offset.checked_add(len)? > blocks_end {
                return None;
            }
            let crc = u32::try_from(r.uvarint()?).ok()?;
            let raw = r.uvarint()?;
            let _traces = r.uvarint()?;
            let b = BlockMeta {
                offset,
                len,
                crc,
                raw,
                spans: u32::try_from(r.uvarint()?).ok()?,
                min_start: r.varint()?,
                max_start: r.varint()?,
                max_duration: i64::try_from(r.uvarint()?).ok()?,
            };
            spans += u64::from(b.spans);
            // A damaged footer may declare anything (found by fuzzing).
            raw_bytes = raw_bytes.checked_add(b.raw)?;
            blocks.push(b);
        }
        let nt = r.len(footer.len())?;
        let mut traces = Vec::with_capacity(nt);
        for _ in 0..nt {
            let id: TraceId = r.bytes(16)?.try_into().ok()?;
            let block = u32::try_from(r.uvarint()?).ok()?;
            if block as usize >= blocks.len() {
                return None;
            }
            traces.push(TraceEntry {
                id,
                block,
                spans: u32::try_from(r.uvarint()?).ok()?,
                bytes: r.uvarint()?,
                min_start: r.varint()?,
                max_start: r.varint()?,
                split: r.bytes(1)?[0] != 0,
            });
        }
        if !traces.windows(2).all(|w| w[0].id < w[1].id) {
            return None;
        }
        let index = decode_index(&mut r, blocks.len() as u32)?;
        let filters = decode_filters(&mut r, blocks.len())?;
        if !r.is_empty() {
            return None;
        }
        let split = traces.iter().filter(|t| t.split).map(|t| t.id).collect();
        Some(Segment {
            path: path.to_path_buf(),
            split,
            filters,
            file,
            wal_upto,
            group,
            min_start: blocks.iter().map(|b| b.min_start).min().unwrap_or(0),
            max_start: blocks.iter().map(|b| b.max_start).max().unwrap_or(0),
            blocks,
            fence: Fence::new(&traces),
            traces,
            index,
            spans,
            raw_bytes,
            file_bytes,
        })
    }

    /// The trace table entry of `id`.
    pub fn find(&self, id: &TraceId) -> Option<&TraceEntry> {
        let range = self.fence.range(id);
        let part = &self.traces[range.clone()];
        part.binary_search_by(|e| e.id.cmp(id))
            .ok()
            .map(|i| &part[i])
    }

    /// Reads, checks and decompresses block `i`.
    pub fn read_block(&self, i: usize) -> Result<Vec<u8>, TracesError> {
        let b = &self.blocks[i];
        let mut z = vec![0u8; b.len as usize];
        self.file
            .read_exact_at(&mut z, b.offset)
            .map_err(|e| TracesError::io(&self.path, e))?;
        if crc32fast::hash(&z) != b.crc {
            return Err(corrupt(&self.path, format!("block {i} checksum mismatch")));
        }
        decompress_declared(&z, b.raw).map_err(|e| corrupt(&self.path, format!("block {i}: {e}")))
    }

    /// The traces of a decompressed block (only `only`, when given), each
    /// with its spans in stored order.
    pub fn decode_block(
        &self,
        raw: &[u8],
        only: Option<&TraceId>,
    ) -> Result<Vec<(TraceId, Vec<Span>)>, TracesError> {
        decode_block(raw, only).ok_or_else(|| corrupt(&self.path, "block does not decode"))
    }
}

fn decode_block(raw: &[u8], only: Option<&TraceId>) -> Option<Vec<(TraceId, Vec<Span>)>> {
    let mut r = Reader::new(raw);
    let table = decode_table(&mut r)?;
    let n = r.len(raw.len())?;
    let mut dir = Vec::with_capacity(n);
    for _ in 0..n {
        let id: TraceId = r.bytes(16)?.try_into().ok()?;
        let nspans = r.len(raw.len())?;
        let bytes = r.len(raw.len())?;
        dir.push((id, nspans, bytes));
    }
    let mut out = Vec::new();
    for (id, nspans, bytes) in dir {
        let part = r.bytes(bytes)?;
        if only.is_some_and(|o| *o != id) {
            continue;
        }
        let mut pr = Reader::new(part);
        let mut spans = Vec::with_capacity(nspans);
        for _ in 0..nspans {
            spans.push(read_span(&mut pr, &table)?);
        }
        if !pr.is_empty() {
            return None;
        }
        out.push((id, spans));
    }
    Some(out)
}

/// Removes a `.tmp` left by a flush that did not finish.
pub(crate) fn remove_tmp(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a temporary segment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: TraceId) -> TraceEntry {
        TraceEntry {
            id,
            block: 0,
            spans: 1,
            bytes: 1,
            min_start: 0,
            max_start: 0,
            split: false,
        }
    }

    /// The fence finds every id of a table and no other, for random ids,
    /// ids with leading zero bytes (64-bit ids padded), one id and none.
    #[test]
    fn the_fence_finds_every_stored_trace_and_nothing_else() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let random: Vec<TraceId> = (0..5000)
            .map(|_| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&next().to_be_bytes());
                id[8..].copy_from_slice(&next().to_be_bytes());
                id
            })
            .collect();
        let padded: Vec<TraceId> = random
            .iter()
            .map(|r| {
                let mut id = [0u8; 16];
                id[8..].copy_from_slice(&r[8..]);
                id
            })
            .collect();
        for ids in [random, padded, vec![[7u8; 16]], vec![]] {
            let (stored, absent) = ids.split_at(ids.len() / 2 + ids.len() % 2);
            let mut table: Vec<TraceEntry> = stored.iter().copied().map(entry).collect();
            table.sort_by_key(|e| e.id);
            table.dedup_by(|a, b| a.id == b.id);
            let fence = Fence::new(&table);
            assert_eq!(fence.starts.len(), (1 << fence.bits) + 1);
            let find = |id: &TraceId| {
                let r = fence.range(id);
                table[r.clone()].binary_search_by(|e| e.id.cmp(id)).is_ok()
            };
            for id in stored {
                assert!(find(id), "{id:?} stored but not found");
            }
            for id in absent.iter().chain([&[0u8; 16], &[0xff; 16]]) {
                assert_eq!(find(id), stored.contains(id), "{id:?}");
            }
        }
    }
}
