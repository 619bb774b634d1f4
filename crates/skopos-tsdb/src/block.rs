//! Immutable blocks: one directory per time range under `dir/blocks/<id>/`.
//!
//! # Format (block format version 1)
//!
//! A block is written into `blocks/<id>.tmp/`, every file is fsynced, and the
//! directory is renamed to `blocks/<id>/` (then the parent is fsynced), so a
//! block is either complete or absent. Deletion renames to `<id>.deleted`
//! first. Leftover `.tmp` / `.deleted` directories are removed on open.
//!
//! * `meta.json` — JSON: `format` (`"skopos-tsdb-block"`), `version` (1),
//!   `id`, `min_time`/`max_time` (inclusive, ms), `stats` (series, samples,
//!   chunks, bytes), `compaction` (`level`, `sources`), `origin`
//!   (`head`/`backfill`/`compaction`), and `index_crc32` / `chunks_crc32` of
//!   the other two files. Being JSON it carries no binary magic; the
//!   `format`/`version` fields play that role.
//! * `chunks` — `"SKCH"`, version u32 LE, then frames. A frame is a zstd
//!   stream of concatenated chunks (see [`crate::chunk`]) of consecutive
//!   series, ~128 KiB uncompressed; the index holds each frame's offset,
//!   lengths and CRC32. Compressing runs of Gorilla chunks together with zstd
//!   saves a further 10–40% on typical data.
//! * `index` — `"SKIX"`, version u32 LE, body length u64 LE, zstd(body),
//!   CRC32 of all preceding bytes (u32 LE). The body, in LEB128 varints
//!   (`z` = zigzag):
//!   ```text
//!   nsymbols, (len, utf8 bytes)*                     sorted, unique
//!   nseries, per series (sorted by labels):
//!       nlabels, (name sym, value sym)*,
//!       nchunks, per chunk: min_t z (first: absolute; then minus previous max_t),
//!                           max_t - min_t, count, frame, offset in frame, len
//!   nframes, per frame: file offset, compressed len, raw len, crc32
//!   npostings, per (name, value): name sym, value sym, n, series id deltas
//!   ```
//! * `tombstones` (only once something was deleted) — a `skopos-storage`
//!   framed file (magic `"SKTB"`, version 1) of one record: repeated
//!   { series id v | mint z | maxt z }, the samples reads leave out
//!   (`delete_series`). Rewritten whole, atomically; compaction and
//!   `clean_tombstones` write blocks without what it names. A damaged file is
//!   ignored (with an error logged) and the block opens without it: the
//!   deleted samples come back rather than the block being lost.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use skopos_model::{Labels, Sample};

use crate::chunk::{self, BLOCK_CHUNK_SAMPLES};
use crate::encoding::{put_bytes, put_uvarint, put_varint, Reader};
use crate::index::{MemIndex, Symbols};
use crate::TsdbError;
use skopos_storage::{decompress_declared, sync_dir};

const INDEX_MAGIC: &[u8; 4] = b"SKIX";
const TOMBSTONES: skopos_storage::Format = skopos_storage::Format::new(*b"SKTB", 1);
const TOMBSTONES_FILE: &str = "tombstones";
const CHUNKS_MAGIC: &[u8; 4] = b"SKCH";
pub const FORMAT_VERSION: u32 = 1;
const FRAME_TARGET: usize = 128 * 1024;
const ZSTD_LEVEL: i32 = 9;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlockStats {
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Compaction {
    pub level: u32,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockMeta {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub min_time: i64,
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub origin: String,
    pub index_crc32: u32,
    pub chunks_crc32: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct ChunkMeta {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u32,
    pub frame: u32,
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    offset: u64,
    clen: u64,
    rlen: u64,
    crc: u32,
}

pub fn new_block_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:013}-{:05x}{:04x}",
        now.as_millis(),
        (now.subsec_nanos() >> 12) & 0xfffff,
        seq & 0xffff
    )
}

/// Streams series (added in label order) into a new block directory.
pub struct BlockWriter {
    blocks_dir: PathBuf,
    id: String,
    tmp: PathBuf,
    chunks: BufWriter<File>,
    chunks_hasher: crc32fast::Hasher,
    offset: u64,
    frame: Vec<u8>,
    frames: Vec<Frame>,
    symbols: Symbols,
    series: Vec<(Box<[u32]>, Vec<ChunkMeta>)>,
    min_t: i64,
    max_t: i64,
    samples: u64,
    chunk_count: u64,
}

impl BlockWriter {
    pub fn new(blocks_dir: &Path) -> Result<Self, TsdbError> {
        let id = new_block_id();
        let tmp = blocks_dir.join(format!("{id}.tmp"));
        fs::create_dir_all(&tmp).map_err(|e| TsdbError::io(&tmp, e))?;
        let path = tmp.join("chunks");
        let f = File::create(&path).map_err(|e| TsdbError::io(&path, e))?;
        let mut w = BlockWriter {
            blocks_dir: blocks_dir.to_path_buf(),
            id,
            tmp,
            chunks: BufWriter::with_capacity(1 << 20, f),
            chunks_hasher: crc32fast::Hasher::new(),
            offset: 0,
            frame: Vec::with_capacity(FRAME_TARGET + 4096),
            frames: Vec::new(),
            symbols: Symbols::default(),
            series: Vec::new(),
            min_t: i64::MAX,
            max_t: i64::MIN,
            samples: 0,
            chunk_count: 0,
        };
        let mut header = CHUNKS_MAGIC.to_vec();
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        w.write_chunks(&header)?;
        Ok(w)
    }

    fn write_chunks(&mut self, b: &[u8]) -> Result<(), TsdbError> {
        self.chunks_hasher.update(b);
        self.offset += b.len() as u64;
        let path = self.tmp.join("chunks");
        self.chunks.write_all(b).map_err(|e| TsdbError::io(path, e))
    }

    fn flush_frame(&mut self) -> Result<(), TsdbError> {
        if self.frame.is_empty() {
            return Ok(());
        }
        let path = self.tmp.join("chunks");
        let c =
            zstd::bulk::compress(&self.frame, ZSTD_LEVEL).map_err(|e| TsdbError::io(&path, e))?;
        self.frames.push(Frame {
            offset: self.offset,
            clen: c.len() as u64,
            rlen: self.frame.len() as u64,
            crc: crc32fast::hash(&c),
        });
        self.frame.clear();
        self.write_chunks(&c)
    }

    /// Adds one series; `samples` must be sorted by time without duplicate
    /// timestamps. Series without samples are skipped.
    pub fn add_series(&mut self, labels: &Labels, samples: &[Sample]) -> Result<(), TsdbError> {
        if samples.is_empty() {
            return Ok(());
        }
        let syms: Box<[u32]> = labels
            .iter()
            .flat_map(|l| [l.name.as_str(), l.value.as_str()])
            .map(|s| self.symbols.intern(s))
            .collect();
        let mut metas = Vec::new();
        for part in samples.chunks(BLOCK_CHUNK_SAMPLES) {
            let bytes = chunk::encode(part);
            metas.push(ChunkMeta {
                min_t: part[0].t,
                max_t: part[part.len() - 1].t,
                count: part.len() as u32,
                frame: self.frames.len() as u32,
                offset: self.frame.len() as u32,
                len: bytes.len() as u32,
            });
            self.frame.extend_from_slice(&bytes);
        }
        self.min_t = self.min_t.min(samples[0].t);
        self.max_t = self.max_t.max(samples[samples.len() - 1].t);
        self.samples += samples.len() as u64;
        self.chunk_count += metas.len() as u64;
        self.series.push((syms, metas));
        if self.frame.len() >= FRAME_TARGET {
            self.flush_frame()?;
        }
        Ok(())
    }

    /// Finishes the block; returns `None` (and removes the temporary
    /// directory) if no series were added.
    pub fn finish(
        mut self,
        level: u32,
        sources: Vec<String>,
        origin: &str,
    ) -> Result<Option<Block>, TsdbError> {
        if self.series.is_empty() {
            let _ = fs::remove_dir_all(&self.tmp);
            return Ok(None);
        }
        self.flush_frame()?;
        let chunks_path = self.tmp.join("chunks");
        self.chunks
            .flush()
            .map_err(|e| TsdbError::io(&chunks_path, e))?;
        self.chunks
            .get_ref()
            .sync_all()
            .map_err(|e| TsdbError::io(&chunks_path, e))?;
        let chunks_crc = self.chunks_hasher.clone().finalize();

        // Symbols sorted; remap ids.
        let mut order: Vec<(String, u32)> = self
            .symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i as u32))
            .collect();
        order.sort();
        let mut remap = vec![0u32; order.len()];
        for (new, (_, old)) in order.iter().enumerate() {
            remap[*old as usize] = new as u32;
        }
        let mut body = Vec::new();
        put_uvarint(&mut body, order.len() as u64);
        for (s, _) in &order {
            put_bytes(&mut body, s.as_bytes());
        }
        put_uvarint(&mut body, self.series.len() as u64);
        let mut postings: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
        for (sid, (syms, metas)) in self.series.iter().enumerate() {
            put_uvarint(&mut body, (syms.len() / 2) as u64);
            for p in syms.chunks_exact(2) {
                let (n, v) = (remap[p[0] as usize], remap[p[1] as usize]);
                put_uvarint(&mut body, n as u64);
                put_uvarint(&mut body, v as u64);
                postings.entry((n, v)).or_default().push(sid as u32);
            }
            put_uvarint(&mut body, metas.len() as u64);
            let mut prev = 0i64;
            for (i, m) in metas.iter().enumerate() {
                put_varint(
                    &mut body,
                    if i == 0 {
                        m.min_t
                    } else {
                        m.min_t.wrapping_sub(prev)
                    },
                );
                put_uvarint(&mut body, m.max_t.wrapping_sub(m.min_t) as u64);
                put_uvarint(&mut body, m.count as u64);
                put_uvarint(&mut body, m.frame as u64);
                put_uvarint(&mut body, m.offset as u64);
                put_uvarint(&mut body, m.len as u64);
                prev = m.max_t;
            }
        }
        put_uvarint(&mut body, self.frames.len() as u64);
        for f in &self.frames {
            put_uvarint(&mut body, f.offset);
            put_uvarint(&mut body, f.clen);
            put_uvarint(&mut body, f.rlen);
            put_uvarint(&mut body, f.crc as u64);
        }
        put_uvarint(&mut body, postings.len() as u64);
        for ((n, v), ids) in &postings {
            put_uvarint(&mut body, *n as u64);
            put_uvarint(&mut body, *v as u64);
            put_uvarint(&mut body, ids.len() as u64);
            let mut prev = 0u32;
            for id in ids {
                put_uvarint(&mut body, (id - prev) as u64);
                prev = *id;
            }
        }
        let index_path = self.tmp.join("index");
        let z =
            zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(|e| TsdbError::io(&index_path, e))?;
        let mut file = INDEX_MAGIC.to_vec();
        file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(&z);
        let crc = crc32fast::hash(&file);
        file.extend_from_slice(&crc.to_le_bytes());
        write_synced(&index_path, &file)?;

        let mut meta = BlockMeta {
            format: "skopos-tsdb-block".into(),
            version: FORMAT_VERSION,
            id: self.id.clone(),
            min_time: self.min_t,
            max_time: self.max_t,
            stats: BlockStats {
                series: self.series.len() as u64,
                samples: self.samples,
                chunks: self.chunk_count,
                bytes: 0,
            },
            compaction: Compaction { level, sources },
            origin: origin.to_string(),
            index_crc32: crc32fast::hash(&file),
            chunks_crc32: chunks_crc,
        };
        // `stats.bytes` counts all three files, meta.json included: iterate
        // until the number no longer changes the file's own length.
        let meta_path = self.tmp.join("meta.json");
        let files_len = self.offset + file.len() as u64;
        let mut json = Vec::new();
        for _ in 0..4 {
            json = serde_json::to_vec_pretty(&meta)
                .map_err(|e| TsdbError::io(&meta_path, e.into()))?;
            let total = files_len + json.len() as u64;
            if meta.stats.bytes == total {
                break;
            }
            meta.stats.bytes = total;
        }
        write_synced(&meta_path, &json)?;
        sync_dir(&self.tmp)?;
        let final_dir = self.blocks_dir.join(&self.id);
        skopos_storage::rename(&self.tmp, &final_dir)?;
        sync_dir(&self.blocks_dir)?;
        Block::open(&final_dir).map(Some)
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), TsdbError> {
    let mut f = File::create(path).map_err(|e| TsdbError::io(path, e))?;
    f.write_all(data).map_err(|e| TsdbError::io(path, e))?;
    f.sync_all().map_err(|e| TsdbError::io(path, e))
}

pub struct BlockSeries {
    pub syms: Box<[u32]>,
    pub chunks: Vec<ChunkMeta>,
}

/// A loaded, read-only block: index in memory, chunks read with pread.
pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub index: MemIndex<u32>,
    pub series: Vec<BlockSeries>,
    frames: Vec<Frame>,
    chunks: File,
    pub disk_bytes: u64,
    /// Deleted time ranges by series id (see the module doc).
    tombstones: parking_lot::RwLock<HashMap<u32, Vec<(i64, i64)>>>,
    /// Whether `tombstones` is non-empty (reads skip the lock without).
    any_tombstones: std::sync::atomic::AtomicBool,
}

/// Holds the last decompressed frame, so reading consecutive series of one
/// block decompresses each frame once.
#[derive(Default)]
pub struct FrameCache {
    key: Option<(usize, u32)>,
    data: Vec<u8>,
}

fn corrupt(path: &Path, message: impl ToString) -> TsdbError {
    TsdbError::corrupt(path, message.to_string())
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block, TsdbError> {
        let meta_path = dir.join("meta.json");
        let raw = fs::read(&meta_path).map_err(|e| TsdbError::io(&meta_path, e))?;
        let meta: BlockMeta =
            serde_json::from_slice(&raw).map_err(|e| corrupt(&meta_path, e.to_string()))?;
        if meta.format != "skopos-tsdb-block" || meta.version != FORMAT_VERSION {
            return Err(corrupt(
                &meta_path,
                format!(
                    "unsupported block format {} version {}",
                    meta.format, meta.version
                ),
            ));
        }
        let index_path = dir.join("index");
        let data = fs::read(&index_path).map_err(|e| TsdbError::io(&index_path, e))?;
        if data.len() < 20 || &data[..4] != INDEX_MAGIC {
            return Err(corrupt(&index_path, "bad magic"));
        }
        let version = u32::from_le_bytes(data[4..8].try_into().expect("4"));
        if version != FORMAT_VERSION {
            return Err(corrupt(
                &index_path,
                format!("unsupported index version {version}"),
            ));
        }
        let (content, crc) = data.split_at(data.len() - 4);
        if crc32fast::hash(content) != u32::from_le_bytes(crc.try_into().expect("4")) {
            return Err(corrupt(&index_path, "checksum mismatch"));
        }
        let body_len = u64::from_le_bytes(content[8..16].try_into().expect("8"));
        if body_len > 1 << 34 {
            return Err(corrupt(&index_path, "implausible body length"));
        }
        let body =
            decompress_declared(&content[16..], body_len).map_err(|e| corrupt(&index_path, e))?;
        let (index, series, frames) =
            parse_index(&body).ok_or_else(|| corrupt(&index_path, "malformed index body"))?;
        let chunks_path = dir.join("chunks");
        let chunks = File::open(&chunks_path).map_err(|e| TsdbError::io(&chunks_path, e))?;
        let mut header = [0u8; 8];
        chunks
            .read_exact_at(&mut header, 0)
            .map_err(|e| TsdbError::io(&chunks_path, e))?;
        if &header[..4] != CHUNKS_MAGIC
            || u32::from_le_bytes(header[4..].try_into().expect("4")) != FORMAT_VERSION
        {
            return Err(corrupt(&chunks_path, "bad magic or version"));
        }
        // A frame must lie inside the chunks file: its length becomes a
        // read buffer.
        let chunks_len = chunks
            .metadata()
            .map_err(|e| TsdbError::io(&chunks_path, e))?
            .len();
        if frames.iter().any(|f| {
            f.offset
                .checked_add(f.clen)
                .is_none_or(|end| end > chunks_len)
        }) {
            return Err(corrupt(
                &chunks_path,
                "a frame lies beyond the end of the file",
            ));
        }
        let tombstones = read_tombstones(dir, series.len())?;
        let disk_bytes = dir_bytes(dir);
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            series,
            frames,
            chunks,
            disk_bytes,
            any_tombstones: std::sync::atomic::AtomicBool::new(!tombstones.is_empty()),
            tombstones: parking_lot::RwLock::new(tombstones),
        })
    }

    /// Whether anything of this block was deleted.
    pub fn has_tombstones(&self) -> bool {
        self.any_tombstones.load(Ordering::Acquire)
    }

    /// Marks `[mint, maxt]` of each series id deleted: the tombstones file
    /// is rewritten (atomically) before reads leave the samples out.
    pub fn add_tombstones(&self, deleted: &[(u32, i64, i64)]) -> Result<(), TsdbError> {
        if deleted.is_empty() {
            return Ok(());
        }
        let mut t = self.tombstones.write();
        let mut next = t.clone();
        for &(sid, mint, maxt) in deleted {
            next.entry(sid).or_default().push((mint, maxt));
        }
        let mut body = TOMBSTONES.header().to_vec();
        let mut sids: Vec<&u32> = next.keys().collect();
        sids.sort();
        skopos_storage::frame(&mut body, 1, |b| {
            for sid in sids {
                for &(mint, maxt) in &next[sid] {
                    put_uvarint(b, u64::from(*sid));
                    put_varint(b, mint);
                    put_varint(b, maxt);
                }
            }
        });
        skopos_storage::write_atomic(&self.dir.join(TOMBSTONES_FILE), &body)?;
        *t = next;
        self.any_tombstones.store(true, Ordering::Release);
        Ok(())
    }

    fn deleted(&self, sid: u32) -> Option<Vec<(i64, i64)>> {
        if !self.has_tombstones() {
            return None;
        }
        self.tombstones.read().get(&sid).cloned()
    }

    pub fn id(&self) -> &str {
        &self.meta.id
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time >= mint
    }

    pub fn labels(&self, sid: u32) -> Labels {
        self.index.symbols.labels(&self.series[sid as usize].syms)
    }

    /// Whether series `sid` has a chunk overlapping `[mint, maxt]` that no
    /// single tombstone covers (at chunk granularity, so a read may still
    /// find nothing).
    pub fn has_data_in(&self, sid: u32, mint: i64, maxt: i64) -> bool {
        let gone = self.deleted(sid).unwrap_or_default();
        self.series[sid as usize].chunks.iter().any(|c| {
            c.max_t >= mint
                && c.min_t <= maxt
                && !gone
                    .iter()
                    .any(|&(a, b)| a <= c.min_t.max(mint) && b >= c.max_t.min(maxt))
        })
    }

    /// Samples of series `sid` in `[mint, maxt]`, sorted.
    pub fn samples(
        &self,
        sid: u32,
        mint: i64,
        maxt: i64,
        cache: &mut FrameCache,
        block_no: usize,
    ) -> Result<Vec<Sample>, TsdbError> {
        let mut out = Vec::new();
        let chunks_path = || self.dir.join("chunks");
        for c in self.series[sid as usize]
            .chunks
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
        {
            if cache.key != Some((block_no, c.frame)) {
                let f = *self
                    .frames
                    .get(c.frame as usize)
                    .ok_or_else(|| corrupt(&chunks_path(), "chunk refers to a missing frame"))?;
                let mut buf = vec![0u8; f.clen as usize];
                self.chunks
                    .read_exact_at(&mut buf, f.offset)
                    .map_err(|e| TsdbError::io(chunks_path(), e))?;
                if crc32fast::hash(&buf) != f.crc {
                    return Err(corrupt(
                        &chunks_path(),
                        format!("checksum mismatch in frame at offset {}", f.offset),
                    ));
                }
                cache.data =
                    decompress_declared(&buf, f.rlen).map_err(|e| corrupt(&chunks_path(), e))?;
                cache.key = Some((block_no, c.frame));
            }
            let bytes = cache
                .data
                .get(c.offset as usize..c.offset as usize + c.len as usize)
                .ok_or_else(|| corrupt(&chunks_path(), "chunk outside its frame"))?;
            chunk::decode(bytes, c.count as usize, &mut out)
                .map_err(|e| corrupt(&chunks_path(), e.to_string()))?;
        }
        out.retain(|s| s.t >= mint && s.t <= maxt);
        if let Some(gone) = self.deleted(sid) {
            out.retain(|s| !gone.iter().any(|&(a, b)| a <= s.t && s.t <= b));
        }
        Ok(out)
    }
}

/// The block's tombstones (see the module doc); none when the file is
/// absent or damaged.
fn read_tombstones(
    dir: &Path,
    n_series: usize,
) -> Result<HashMap<u32, Vec<(i64, i64)>>, TsdbError> {
    let path = dir.join(TOMBSTONES_FILE);
    let mut out: HashMap<u32, Vec<(i64, i64)>> = HashMap::new();
    if !path.exists() {
        return Ok(out);
    }
    let read = skopos_storage::read_file(&path, &TOMBSTONES, &mut |typ, payload| {
        let mut r = Reader::new(payload);
        let mut got = Vec::new();
        while !r.is_empty() {
            let (Some(sid), Some(a), Some(b)) = (r.uvarint(), r.varint(), r.varint()) else {
                return false;
            };
            match u32::try_from(sid) {
                Ok(sid) if (sid as usize) < n_series => got.push((sid, a, b)),
                _ => return false,
            }
        }
        if typ != 1 {
            return false;
        }
        for (sid, a, b) in got {
            out.entry(sid).or_default().push((a, b));
        }
        true
    })?;
    if read.damage.is_some() || read.records != 1 {
        tracing::error!(
            path = %path.display(),
            "block tombstones unreadable; ignored, the deleted samples are visible again"
        );
        return Ok(HashMap::new());
    }
    Ok(out)
}

pub fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

type ParsedIndex = (MemIndex<u32>, Vec<BlockSeries>, Vec<Frame>);

fn parse_index(body: &[u8]) -> Option<ParsedIndex> {
    let mut r = Reader::new(body);
    let max = body.len();
    let nsyms = r.len(max)?;
    let mut index = MemIndex::<u32>::default();
    for i in 0..nsyms {
        let s = std::str::from_utf8(r.len_bytes()?).ok()?;
        if index.symbols.intern(s) != i as u32 {
            return None;
        }
    }
    let sym = |v: u64| (v < nsyms as u64).then_some(v as u32);
    let nseries = r.len(max)?;
    let mut series = Vec::with_capacity(nseries);
    for _ in 0..nseries {
        let nl = r.len(max)?;
        let mut syms = Vec::with_capacity(nl * 2);
        for _ in 0..nl * 2 {
            syms.push(sym(r.uvarint()?)?);
        }
        let nc = r.len(max)?;
        let mut chunks = Vec::with_capacity(nc);
        let mut prev = 0i64;
        for i in 0..nc {
            let d = r.varint()?;
            let min_t = if i == 0 { d } else { prev.wrapping_add(d) };
            let max_t = min_t.wrapping_add(r.uvarint()? as i64);
            chunks.push(ChunkMeta {
                min_t,
                max_t,
                count: r.uvarint()? as u32,
                frame: r.uvarint()? as u32,
                offset: r.uvarint()? as u32,
                len: r.uvarint()? as u32,
            });
            prev = max_t;
        }
        series.push(BlockSeries {
            syms: syms.into_boxed_slice(),
            chunks,
        });
    }
    let nframes = r.len(max)?;
    let mut frames = Vec::with_capacity(nframes);
    for _ in 0..nframes {
        frames.push(Frame {
            offset: r.uvarint()?,
            clen: r.uvarint()?,
            rlen: r.uvarint()?,
            crc: r.uvarint()? as u32,
        });
    }
    let np = r.len(max)?;
    let mut postings: HashMap<u32, HashMap<u32, Vec<u32>>> = HashMap::new();
    for _ in 0..np {
        let n = sym(r.uvarint()?)?;
        let v = sym(r.uvarint()?)?;
        let k = r.len(max)?;
        let mut ids = Vec::with_capacity(k);
        let mut prev = 0u32;
        for _ in 0..k {
            prev = prev.checked_add(r.uvarint()? as u32)?;
            if prev as usize >= nseries {
                return None;
            }
            ids.push(prev);
        }
        postings.entry(n).or_default().insert(v, ids);
    }
    index.postings = postings;
    Some((index, series, frames))
}

/// Bytes of all files below `dir`.
#[cfg(test)]
pub fn dir_bytes_recursive(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes_recursive(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// Suffix of a block directory set aside because it failed its checksums.
pub const QUARANTINE_SUFFIX: &str = ".corrupt";

/// Loads every complete block under `blocks_dir`, removing leftovers of
/// interrupted writes/deletions when `cleanup` is set.
pub fn load_all(blocks_dir: &Path, cleanup: bool) -> Result<Vec<Block>, TsdbError> {
    let mut out = Vec::new();
    if cleanup {
        skopos_storage::remove_leftover_tmp(blocks_dir)?;
    }
    let rd = match fs::read_dir(blocks_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(TsdbError::io(blocks_dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| TsdbError::io(blocks_dir, e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let path = ent.path();
        if name.ends_with(skopos_storage::TMP_SUFFIX) || name.ends_with(".deleted") {
            if cleanup {
                let _ = fs::remove_dir_all(&path);
            }
            continue;
        }
        if name.ends_with(QUARANTINE_SUFFIX) {
            continue;
        }
        if path.is_dir() {
            match Block::open(&path) {
                Ok(b) => out.push(b),
                // Read-only callers (inspect) race with compaction/retention
                // deleting blocks; a vanished block is not an error for them.
                Err(TsdbError::Storage(e)) if !cleanup && e.is_not_found() => {}
                // A damaged block must not keep the server from booting: it is
                // moved aside (kept for forensics, never served or deleted)
                // and the rest of the data stays available.
                Err(e @ TsdbError::Storage(skopos_storage::Error::Corrupt { .. })) if cleanup => {
                    let mut aside = path.as_os_str().to_owned();
                    aside.push(QUARANTINE_SUFFIX);
                    fs::rename(&path, &aside).map_err(|err| TsdbError::io(&path, err))?;
                    tracing::error!(error = %e, moved_to = %PathBuf::from(aside).display(), "corrupt block quarantined");
                }
                Err(e) => return Err(e),
            }
        }
    }
    out.sort_by(|a, b| (a.meta.min_time, &a.meta.id).cmp(&(b.meta.min_time, &b.meta.id)));
    Ok(out)
}

/// Removes a block directory (rename first, so a crash leaves no half block).
pub fn delete(dir: &Path) -> Result<(), TsdbError> {
    let mut gone = dir.as_os_str().to_owned();
    gone.push(".deleted");
    let gone = PathBuf::from(gone);
    fs::rename(dir, &gone).map_err(|e| TsdbError::io(dir, e))?;
    fs::remove_dir_all(&gone).map_err(|e| TsdbError::io(&gone, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn index_parser_never_panics_on_garbage(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_index(&body);
        }

        #[test]
        fn chunk_decoder_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..256), n in 0usize..600) {
            let mut out = Vec::new();
            let _ = chunk::decode(&bytes, n, &mut out);
        }
    }

    #[test]
    fn written_block_reads_back_with_stats() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(dir.path()).unwrap();
        let a = Labels::from_pairs([("__name__", "a"), ("x", "1")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        let sa: Vec<Sample> = (0..1000).map(|i| Sample::new(i * 10, i as f64)).collect();
        let sb: Vec<Sample> = (0..3).map(|i| Sample::new(5 + i, 0.5)).collect();
        w.add_series(&a, &sa).unwrap();
        w.add_series(&b, &sb).unwrap();
        w.add_series(&Labels::from_pairs([("__name__", "empty")]), &[])
            .unwrap();
        let blk = w.finish(1, vec![], "head").unwrap().unwrap();
        assert_eq!(blk.meta.stats.series, 2);
        assert_eq!(blk.meta.stats.samples, 1003);
        assert_eq!(
            blk.meta.stats.chunks, 4,
            "1000 samples make 3 chunks of at most 480, plus one for the other series"
        );
        assert_eq!((blk.meta.min_time, blk.meta.max_time), (0, 9990));
        let reopened = Block::open(&blk.dir).unwrap();
        let mut cache = FrameCache::default();
        assert_eq!(reopened.labels(0), a);
        assert_eq!(
            reopened.samples(0, 100, 199, &mut cache, 0).unwrap().len(),
            10
        );
        assert_eq!(
            reopened
                .samples(1, i64::MIN, i64::MAX, &mut cache, 0)
                .unwrap(),
            sb
        );
        assert_eq!(reopened.index.label_values("x"), vec!["1".to_string()]);
        assert!(!dir.path().join(format!("{}.tmp", blk.meta.id)).exists());
    }
}
