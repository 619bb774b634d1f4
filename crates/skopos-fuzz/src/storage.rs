//! Targets for the on-disk readers. Each store is written once, valid and
//! small, into a scratch directory and its files are kept in memory (the
//! template). Every input is then a program of edits to some of those files
//! (bit flips, overwrites, truncations, insertions, appended records whose
//! checksum is right, edits inside a compressed footer or index that are
//! compressed and checksummed again), the edited files are written into a
//! fresh directory, and the store is inspected, opened, read in full,
//! closed, and opened and read once more (what one open repaired, the next
//! must open). Errors are fine; a panic is a finding.
//!
//! The edits that keep checksums right know the framing of each format
//! (documented in the module docs of `skopos-tsdb/src/wal.rs`, `block.rs`,
//! `skopos-logs/src/wal.rs`, `segment.rs`, `skopos-traces/src/wal.rs`,
//! `segment.rs`): without them, nearly every mutation would stop at a CRC
//! and the decoders behind it would go unfuzzed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use skopos_model::{
    AttrValue, Attribute, Labels, LogBatch, LogEntry, LogSelect, LogStream, MatchOp, Matcher,
    Resource, Sample, Scope, SeriesSamples, Span, SpanBatch, SpanEvent, SpanField, SpanKind,
    StatusCode, TraceSelect, WriteBatch,
};

use crate::input::Input;

/// How the files of one store are framed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// `len u32 | crc u32 | type u8 | payload`, after an 8-byte header
    /// (`skopos-storage`'s framing, which all three WALs use).
    Wal,
    /// `header 8 | blocks | zstd(footer) | trailer`; the trailer is
    /// `offset u64 | length u64 | [raw length u64] | crc32 u32 | magic 4`.
    Segment { raw_len: bool },
    /// The TSDB block index: `"SKIX" | version | body length u64 |
    /// zstd(body) | crc32 of all before`.
    TsdbIndex,
    /// No checksum the harness knows (meta.json, the chunks file).
    Plain,
}

struct Template {
    files: Vec<(PathBuf, Vec<u8>, Framing)>,
}

static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A directory of its own for this process and call, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("skopos-fuzz-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read template dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(root, &p, out);
        } else if p.file_name().is_some_and(|n| n != "lock") {
            let rel = p.strip_prefix(root).expect("under root").to_path_buf();
            out.push((rel, std::fs::read(&p).expect("read template file")));
        }
    }
}

fn template(dir: &Path, frame: impl Fn(&Path) -> Framing) -> Template {
    let mut files = Vec::new();
    read_tree(dir, dir, &mut files);
    Template {
        files: files
            .into_iter()
            .map(|(p, b)| {
                let f = frame(&p);
                (p, b, f)
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// Edits

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn trailer_len(raw_len: bool) -> usize {
    if raw_len {
        32
    } else {
        24
    }
}

/// Where the compressed footer of a segment is, by its trailer.
fn footer_range(b: &[u8], raw_len: bool) -> Option<(usize, usize)> {
    let t = b.len().checked_sub(trailer_len(raw_len))?;
    let off = usize::try_from(u64_at(b, t)?).ok()?;
    let len = usize::try_from(u64_at(b, t + 8)?).ok()?;
    (off.checked_add(len)? <= t && off >= 8).then_some((off, len))
}

/// Recomputes every checksum the framing allows: each whole WAL record's
/// CRC, a segment trailer's footer CRC, the index file's CRC.
fn reseal(b: &mut [u8], framing: Framing) {
    match framing {
        Framing::Wal => {
            let hdr = skopos_storage::RECORD_HEADER;
            let mut pos = 8usize;
            while pos + hdr <= b.len() {
                let len = u32::from_le_bytes(b[pos..pos + 4].try_into().expect("4")) as usize;
                let Some(end) = (pos + hdr).checked_add(len).filter(|&e| e <= b.len()) else {
                    break;
                };
                let crc = crc32fast::hash(&b[pos + 8..end]);
                b[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
                pos = end;
            }
        }
        Framing::Segment { raw_len } => {
            if let Some((off, len)) = footer_range(b, raw_len) {
                let crc = crc32fast::hash(&b[off..off + len]);
                let at = b.len() - trailer_len(raw_len) + if raw_len { 24 } else { 16 };
                b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
            }
        }
        Framing::TsdbIndex => {
            if b.len() >= 20 {
                let (content, crc) = b.split_at_mut(b.len() - 4);
                crc.copy_from_slice(&crc32fast::hash(content).to_le_bytes());
            }
        }
        Framing::Plain => {}
    }
}

/// The plain text of a file's compressed part (segment footer, index
/// body), to edit and put back with [`put_inner`].
fn take_inner(b: &[u8], framing: Framing) -> Option<Vec<u8>> {
    match framing {
        Framing::Segment { raw_len } => {
            let (off, len) = footer_range(b, raw_len)?;
            zstd::bulk::decompress(&b[off..off + len], 16 << 20).ok()
        }
        Framing::TsdbIndex => {
            let len = usize::try_from(u64_at(b, 8)?).ok()?.min(16 << 20);
            zstd::bulk::decompress(b.get(16..b.len().checked_sub(4)?)?, len).ok()
        }
        _ => None,
    }
}

fn put_inner(b: &mut Vec<u8>, framing: Framing, plain: &[u8]) {
    let z = zstd::bulk::compress(plain, 1).expect("zstd of a buffer");
    match framing {
        Framing::Segment { raw_len } => {
            let (off, magic) = match footer_range(b, raw_len) {
                Some((off, _)) => (off, b[b.len() - 4..].to_vec()),
                None => return,
            };
            b.truncate(off);
            b.extend_from_slice(&z);
            b.extend_from_slice(&(off as u64).to_le_bytes());
            b.extend_from_slice(&(z.len() as u64).to_le_bytes());
            if raw_len {
                b.extend_from_slice(&(plain.len() as u64).to_le_bytes());
            }
            b.extend_from_slice(&crc32fast::hash(&z).to_le_bytes());
            b.extend_from_slice(&magic);
        }
        Framing::TsdbIndex => {
            if b.len() < 16 {
                return;
            }
            b.truncate(16);
            b[8..16].copy_from_slice(&(plain.len() as u64).to_le_bytes());
            b.extend_from_slice(&z);
            b.extend_from_slice(&[0; 4]);
            reseal(b, framing);
        }
        _ => {}
    }
}

/// One byte-level edit of `b`.
fn edit_bytes(b: &mut Vec<u8>, op: u8, inp: &mut Input) {
    let pos = |inp: &mut Input, len: usize| (inp.u32() as usize) % (len + 1);
    match op % 5 {
        0 => {
            if !b.is_empty() {
                let at = pos(inp, b.len() - 1);
                b[at] ^= 1 << (inp.u8() % 8);
            }
        }
        1 => {
            let at = pos(inp, b.len());
            let n = inp.u8() as usize % 17;
            let bytes = inp.take(n);
            for (i, &x) in bytes.iter().enumerate() {
                match b.get_mut(at + i) {
                    Some(slot) => *slot = x,
                    None => b.push(x),
                }
            }
        }
        2 => {
            let at = pos(inp, b.len());
            b.truncate(at);
        }
        3 => {
            let at = pos(inp, b.len());
            let n = inp.u8() as usize % 33;
            let bytes = inp.take(n).to_vec();
            b.splice(at..at, bytes);
        }
        _ => {
            let at = pos(inp, b.len());
            let n = (inp.u16() as usize).min(b.len() - at);
            b.drain(at..at + n);
        }
    }
}

/// Applies the edit program in `data` to the files `which` selects, and
/// writes the result under `dir`.
fn materialize(t: &Template, which: &dyn Fn(&Path) -> bool, data: &[u8], dir: &Path) {
    let mut files: Vec<(PathBuf, Option<Vec<u8>>, Framing)> = t
        .files
        .iter()
        .map(|(p, b, f)| (p.clone(), Some(b.clone()), *f))
        .collect();
    let targets: Vec<usize> = (0..files.len()).filter(|&i| which(&files[i].0)).collect();
    let mut inp = Input::new(data);
    let mut ops = 0;
    while !inp.is_empty() && !targets.is_empty() && ops < 64 {
        ops += 1;
        let op = inp.u8();
        let i = targets[inp.u8() as usize % targets.len()];
        let framing = files[i].2;
        let Some(b) = files[i].1.as_mut() else {
            continue;
        };
        match op % 10 {
            0..=4 => edit_bytes(b, op, &mut inp),
            5 => reseal(b, framing),
            6 => {
                // A well-framed record with a payload of the fuzzer's making.
                let n = inp.u16() as usize % 4096;
                let payload = inp.take(n);
                if framing == Framing::Wal {
                    let (typ, body) = payload.split_first().unwrap_or((&1, payload));
                    skopos_storage::frame(b, *typ, |r| r.extend_from_slice(body));
                } else {
                    put_inner(b, framing, payload);
                }
            }
            7 | 8 => {
                // An edit inside the compressed part, compressed again.
                if let Some(mut plain) = take_inner(b, framing) {
                    let sub = inp.u8();
                    edit_bytes(&mut plain, sub, &mut inp);
                    put_inner(b, framing, &plain);
                } else {
                    let sub = inp.u8();
                    edit_bytes(b, sub, &mut inp);
                    reseal(b, framing);
                }
            }
            _ => {
                if inp.u8().is_multiple_of(4) {
                    files[i].1 = None;
                } else {
                    edit_bytes(b, 3, &mut inp);
                    reseal(b, framing);
                }
            }
        }
    }
    for (p, b, _) in files {
        if let Some(b) = b {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b).expect("write mangled file");
        }
    }
}

// ---------------------------------------------------------------------------
// TSDB

const T0: i64 = 1_700_000_000_000;

fn tsdb_options() -> skopos_tsdb::Options {
    skopos_tsdb::Options {
        wal_fsync: skopos_tsdb::FsyncPolicy::Never,
        retention_time: None,
        block_duration_ms: 60_000,
        wal_segment_size: 4096,
        ..Default::default()
    }
}

fn tsdb_template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let s = Scratch::new("tsdb-template");
        let db = skopos_tsdb::Db::open(&s.0, tsdb_options()).expect("open tsdb");
        let batch = |from: i64, to: i64| {
            let mut b = WriteBatch::default();
            for (i, job) in ["api", "db", "web"].iter().enumerate() {
                b.series.push(SeriesSamples {
                    labels: Labels::from_pairs([
                        ("__name__", "up"),
                        ("job", *job),
                        ("instance", "host:9090"),
                    ]),
                    samples: (from..to)
                        .map(|k| Sample::new(T0 + k * 5_000, (k * (i as i64 + 1)) as f64 / 3.0))
                        .collect(),
                });
            }
            b
        };
        // Four minutes: the first cut writes blocks and a checkpoint.
        db.append(&batch(0, 48)).expect("append");
        db.maintenance(T0 + 240_000).expect("maintenance");
        db.append(&batch(48, 60)).expect("append");
        db.close().expect("close");
        let t = template(&s.0, |p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.starts_with("wal") {
                Framing::Wal
            } else if name == "index" {
                Framing::TsdbIndex
            } else {
                Framing::Plain
            }
        });
        assert!(
            t.files.iter().any(|f| f.0.starts_with("blocks")),
            "no block"
        );
        assert!(t.files.iter().any(|f| f.0.starts_with("wal")), "no wal");
        t
    })
}

fn tsdb_read(dir: &Path) -> bool {
    let _ = skopos_tsdb::inspect(dir);
    let Ok(db) = skopos_tsdb::Db::open(dir, tsdb_options()) else {
        return false;
    };
    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").expect("matcher");
    let _ = db.select(std::slice::from_ref(&all), i64::MIN, i64::MAX);
    let _ = db.select(&[Matcher::equal("job", "api")], T0 + 60_000, T0 + 200_000);
    let _ = db.label_names(&[], i64::MIN, i64::MAX);
    let _ = db.label_values("job", &[], i64::MIN, i64::MAX);
    let _ = db.series(&[all], i64::MIN, i64::MAX);
    let _ = db.stats();
    let _ = db.close();
    true
}

fn tsdb_run(data: &[u8], which: &dyn Fn(&Path) -> bool) {
    let s = Scratch::new("tsdb");
    materialize(tsdb_template(), which, data, &s.0);
    if tsdb_read(&s.0) {
        assert!(
            tsdb_read(&s.0),
            "a TSDB that opened once does not open again"
        );
    }
}

/// The TSDB's WAL and checkpoint, mangled, replayed on open.
pub fn tsdb_wal(data: &[u8]) {
    tsdb_run(data, &|p| p.starts_with("wal"));
}

/// A TSDB block (meta.json, index, chunks), mangled, loaded and read.
pub fn tsdb_block(data: &[u8]) {
    tsdb_run(data, &|p| p.starts_with("blocks"));
}

// ---------------------------------------------------------------------------
// Log store

const NS0: i64 = 1_700_000_000_000_000_000;

fn logs_options() -> skopos_logs::Options {
    skopos_logs::Options {
        fsync: false,
        ..Default::default()
    }
}

fn log_batch(from: i64, to: i64) -> LogBatch {
    let mut b = LogBatch::default();
    for app in ["api", "web"] {
        let entries = (from..to)
            .map(|i| {
                let mut e = LogEntry::new(
                    NS0 + i * 1_000_000_000,
                    format!(
                        "level=info app={app} n={i} trace_id=4bf92f3577b34da6a3ce929d0e0e{i:04} msg=\"request served\""
                    ),
                );
                if i % 3 == 0 {
                    e.metadata = Labels::from_pairs([("trace_id", format!("abc{i}"))]);
                }
                e
            })
            .collect();
        b.streams.push(LogStream {
            labels: Labels::from_pairs([("app", app), ("env", "prod")]),
            entries,
        });
    }
    b
}

fn logs_template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let s = Scratch::new("logs-template");
        let store = skopos_logs::Store::open(&s.0, logs_options()).expect("open logs");
        store.append(log_batch(0, 40)).expect("append");
        store.flush().expect("flush");
        store.append(log_batch(40, 50)).expect("append");
        drop(store);
        let t = template(&s.0, |p| {
            if p.starts_with("wal") {
                Framing::Wal
            } else if p.extension().is_some_and(|e| e == "seg") {
                Framing::Segment { raw_len: false }
            } else {
                Framing::Plain
            }
        });
        assert!(
            t.files.iter().any(|f| f.0.starts_with("segments")),
            "no segment"
        );
        assert!(t.files.iter().any(|f| f.0.starts_with("wal")), "no wal");
        t
    })
}

fn logs_read(dir: &Path) -> bool {
    let _ = skopos_logs::inspect(dir);
    let Ok(store) = skopos_logs::Store::open(dir, logs_options()) else {
        return false;
    };
    for (matchers, contains) in [
        (vec![], vec![]),
        (
            vec![Matcher::equal("app", "api")],
            vec!["4bf92f3577b34da6a3ce929d0e0e0012".to_string()],
        ),
        (vec![], vec!["request".to_string(), "n=3".to_string()]),
    ] {
        let sel = LogSelect {
            matchers,
            start: i64::MIN,
            end: i64::MAX,
            contains,
            matches: vec!["n=1.".into()],
        };
        let _ = store.select(&sel, &mut |_| true);
    }
    let _ = store.streams(&[], i64::MIN, i64::MAX);
    let _ = store.index_stats(&[], i64::MIN, i64::MAX);
    let _ = store.stats();
    true
}

fn logs_run(data: &[u8], which: &dyn Fn(&Path) -> bool) {
    let s = Scratch::new("logs");
    materialize(logs_template(), which, data, &s.0);
    if logs_read(&s.0) {
        assert!(
            logs_read(&s.0),
            "a log store that opened once does not open again"
        );
    }
}

/// The log store's WAL, mangled, replayed on open.
pub fn logs_wal(data: &[u8]) {
    logs_run(data, &|p| p.starts_with("wal"));
}

/// A log segment (blocks, footer with the block and token index),
/// mangled, opened and read with and without `|=` hints.
pub fn logs_segment(data: &[u8]) {
    logs_run(data, &|p| p.starts_with("segments"));
}

// ---------------------------------------------------------------------------
// Trace store

fn traces_options() -> skopos_traces::Options {
    skopos_traces::Options {
        fsync: false,
        block_bytes: 2048,
        index_values_per_key: 4,
        ..Default::default()
    }
}

fn trace_spans(from: u8, to: u8) -> SpanBatch {
    let mut spans = Vec::new();
    let resource = Arc::new(Resource {
        attributes: vec![
            Attribute::str("service.name", "api"),
            Attribute::new("pid", AttrValue::Int(7)),
        ],
        dropped_attributes: 0,
    });
    let scope = Arc::new(Scope {
        name: "lib".into(),
        version: "1".into(),
        attributes: vec![],
    });
    for t in from..to {
        for s in 1..=3u8 {
            let mut trace_id = [0u8; 16];
            trace_id[0] = 0xab;
            trace_id[15] = t;
            let start = NS0 + i64::from(t) * 1_000_000_000 + i64::from(s) * 1000;
            spans.push(Span {
                trace_id,
                span_id: [t, s, 0, 0, 0, 0, 0, 1],
                parent_span_id: (s > 1).then_some([t, s - 1, 0, 0, 0, 0, 0, 1]),
                trace_state: String::new(),
                flags: 1,
                name: format!("op{s}"),
                kind: SpanKind::Server,
                start_ns: start,
                end_ns: start + 1_000_000 * i64::from(s),
                attributes: vec![
                    Attribute::str("http.route", format!("/r/{t}")),
                    Attribute::new("n", AttrValue::Int(i64::from(t))),
                    Attribute::new("f", AttrValue::Float(0.5)),
                    Attribute::new("b", AttrValue::Bool(s == 2)),
                    Attribute::new("raw", AttrValue::Bytes(vec![t, s])),
                    Attribute::new(
                        "arr",
                        AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("x".into())]),
                    ),
                ],
                dropped_attributes: 0,
                events: vec![SpanEvent {
                    time_ns: start + 1,
                    name: "ev".into(),
                    attributes: vec![Attribute::str("k", "v")],
                    dropped_attributes: 0,
                }],
                dropped_events: 0,
                links: vec![],
                dropped_links: 0,
                status: if t % 2 == 0 {
                    StatusCode::Ok
                } else {
                    StatusCode::Error
                },
                status_message: String::new(),
                resource: resource.clone(),
                scope: scope.clone(),
            });
        }
    }
    SpanBatch { spans }
}

fn traces_template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let s = Scratch::new("traces-template");
        let store = skopos_traces::Store::open(&s.0, traces_options()).expect("open traces");
        store.append(trace_spans(0, 12)).expect("append");
        store.flush().expect("flush");
        store.append(trace_spans(12, 16)).expect("append");
        drop(store);
        let t = template(&s.0, |p| {
            if p.starts_with("wal") {
                Framing::Wal
            } else if p.extension().is_some_and(|e| e == "seg") {
                Framing::Segment { raw_len: true }
            } else {
                Framing::Plain
            }
        });
        assert!(
            t.files.iter().any(|f| f.0.starts_with("segments")),
            "no segment"
        );
        assert!(t.files.iter().any(|f| f.0.starts_with("wal")), "no wal");
        t
    })
}

fn traces_read(dir: &Path) -> bool {
    let Ok(store) = skopos_traces::Store::open(dir, traces_options()) else {
        return false;
    };
    for t in [0u8, 5, 13] {
        let mut id = [0u8; 16];
        id[0] = 0xab;
        id[15] = t;
        let _ = store.trace_by_id(&id);
    }
    for equals in [
        vec![],
        vec![(SpanField::SpanAttr("http.route".into()), "/r/3".to_string())],
        vec![
            (SpanField::ServiceName, "api".to_string()),
            (SpanField::Name, "op2".to_string()),
        ],
    ] {
        let sel = TraceSelect {
            start: i64::MIN,
            end: i64::MAX,
            equals,
            min_span_duration_ns: Some(1_500_000),
        };
        let _ = store.search(&sel, &mut |_| true);
    }
    let _ = store.tag_names(i64::MIN, i64::MAX);
    for f in [SpanField::Name, SpanField::SpanAttr("http.route".into())] {
        let _ = store.tag_values(&f, i64::MIN, i64::MAX, 100);
    }
    let _ = store.stats();
    true
}

fn traces_run(data: &[u8], which: &dyn Fn(&Path) -> bool) {
    let s = Scratch::new("traces");
    materialize(traces_template(), which, data, &s.0);
    if traces_read(&s.0) {
        assert!(
            traces_read(&s.0),
            "a trace store that opened once does not open again"
        );
    }
}

/// The trace store's WAL, mangled, replayed on open.
pub fn traces_wal(data: &[u8]) {
    traces_run(data, &|p| p.starts_with("wal"));
}

/// A trace segment (blocks, footer with the trace table and search index),
/// mangled, opened and read by id, search and tags.
pub fn traces_segment(data: &[u8]) {
    traces_run(data, &|p| p.starts_with("segments"));
}
