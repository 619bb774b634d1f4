//! The history of delete requests: one file, `dir/delete_requests`, in the
//! shared record framing (magic `SKDR`, version 1), appended to and never
//! rewritten.
//!
//! A request is logged twice: as received, before any line is removed
//! (query, range, when), then as processed, with what the delete removed.
//! A crash between the two leaves the request listed as `received`, which
//! is what it is: the segments it rewrote are each either the old or the
//! new one. A torn or damaged tail (a crash inside an append) is cut off
//! when the store opens, so later appends follow a good record.

use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use skopos_model::codec::{put_bytes, put_uvarint, put_varint, Reader};
use skopos_storage::frame;
use skopos_storage::wal::{self, Format};

use crate::{Deleted, LogsError};

/// The file's name in the store's directory.
pub const FILE: &str = "delete_requests";

const FORMAT: Format = Format::new(*b"SKDR", 1);
/// `id, created, start, end, query`.
const REC_RECEIVED: u8 = 1;
/// `id, processed, entries, segments rewritten, segments removed, bytes freed`.
const REC_PROCESSED: u8 = 2;

/// One delete request as the history holds it. Times are Unix ns; `end` is
/// exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Unique in one store: the creation time, made strictly increasing.
    pub id: u64,
    /// The request's query as the client wrote it.
    pub query: String,
    pub start: i64,
    pub end: i64,
    pub created: i64,
    /// When it finished and what it removed; `None` while (or if a crash
    /// left it) only received.
    pub processed: Option<(i64, Deleted)>,
}

impl DeleteRequest {
    /// Loki's status word for it.
    pub fn status(&self) -> &'static str {
        if self.processed.is_some() {
            "processed"
        } else {
            "received"
        }
    }
}

/// The open history file.
pub(crate) struct History {
    path: PathBuf,
    /// The highest id handed out, so ids stay unique when the clock does
    /// not move between two requests.
    last_id: Mutex<u64>,
}

impl History {
    /// Opens the history in `dir`, cutting off a damaged tail.
    pub(crate) fn open(dir: &Path) -> Result<History, LogsError> {
        let path = dir.join(FILE);
        let mut last = 0u64;
        if path.exists() {
            for r in read(&path, true)? {
                last = last.max(r.id);
            }
        }
        Ok(History {
            path,
            last_id: Mutex::new(last),
        })
    }

    /// Logs `query` over `[start, end)` as received at `now`; its id.
    pub(crate) fn received(
        &self,
        query: &str,
        start: i64,
        end: i64,
        now: i64,
    ) -> Result<u64, LogsError> {
        let mut last = self.last_id.lock();
        let id = (now.max(0) as u64).max(*last + 1);
        let mut buf = Vec::new();
        frame(&mut buf, REC_RECEIVED, |b| {
            put_uvarint(b, id);
            put_varint(b, now);
            put_varint(b, start);
            put_varint(b, end);
            put_bytes(b, query.as_bytes());
        });
        self.append(&buf)?;
        *last = id;
        Ok(id)
    }

    /// Logs request `id` as processed at `now`, having removed `d`.
    pub(crate) fn processed(&self, id: u64, now: i64, d: &Deleted) -> Result<(), LogsError> {
        let mut buf = Vec::new();
        processed_record(&mut buf, id, now, d);
        let _one = self.last_id.lock();
        self.append(&buf)
    }

    /// Appends `reqs` (from an older history) as they are, leaving out
    /// those whose id the history has already (an import repeated after a
    /// crash).
    pub(crate) fn import(&self, reqs: &[DeleteRequest]) -> Result<(), LogsError> {
        let have: std::collections::HashSet<u64> = self.list()?.iter().map(|r| r.id).collect();
        let mut last = self.last_id.lock();
        let mut buf = Vec::new();
        for r in reqs.iter().filter(|r| !have.contains(&r.id)) {
            frame(&mut buf, REC_RECEIVED, |b| {
                put_uvarint(b, r.id);
                put_varint(b, r.created);
                put_varint(b, r.start);
                put_varint(b, r.end);
                put_bytes(b, r.query.as_bytes());
            });
            if let Some((at, d)) = &r.processed {
                processed_record(&mut buf, r.id, *at, d);
            }
            *last = (*last).max(r.id);
        }
        self.append(&buf)
    }

    /// Every request, oldest first.
    pub(crate) fn list(&self) -> Result<Vec<DeleteRequest>, LogsError> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        read(&self.path, false)
    }

    /// One `write(2)` of framed records, then an fsync: deletes are rare
    /// and their history should not be lost to a power cut.
    fn append(&self, records: &[u8]) -> Result<(), LogsError> {
        let io = |e| LogsError::io(&self.path, e);
        let mut f = if self.path.exists() {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(io)?
        } else {
            let f = wal::create_file(&self.path, &FORMAT)?;
            if let Some(dir) = self.path.parent() {
                skopos_storage::sync_dir(dir)?;
            }
            f
        };
        let before = f.metadata().map_err(io)?.len();
        if let Err(e) = f.write_all(records).and_then(|()| f.sync_data()) {
            // A part written (the disk full) would stop every later read
            // there: take it back.
            let _ = f.set_len(before);
            return Err(io(e));
        }
        Ok(())
    }
}

fn processed_record(buf: &mut Vec<u8>, id: u64, at: i64, d: &Deleted) {
    frame(buf, REC_PROCESSED, |b| {
        put_uvarint(b, id);
        put_varint(b, at);
        put_uvarint(b, d.entries);
        put_uvarint(b, d.segments_rewritten as u64);
        put_uvarint(b, d.segments_removed as u64);
        put_varint(b, d.bytes_freed);
    });
}

/// The requests of the file at `path`; with `repair`, a damaged tail is
/// cut off (and a file of another format set aside) as WAL replay does.
fn read(path: &Path, repair: bool) -> Result<Vec<DeleteRequest>, LogsError> {
    let mut out: Vec<DeleteRequest> = Vec::new();
    let mut visit = |typ: u8, payload: &[u8]| -> bool {
        let mut r = Reader::new(payload);
        match typ {
            REC_RECEIVED => {
                let req = (|| {
                    Some(DeleteRequest {
                        id: r.uvarint()?,
                        created: r.varint()?,
                        start: r.varint()?,
                        end: r.varint()?,
                        query: String::from_utf8(r.len_bytes()?.to_vec()).ok()?,
                        processed: None,
                    })
                })();
                match req {
                    Some(req) => {
                        out.push(req);
                        true
                    }
                    None => false,
                }
            }
            REC_PROCESSED => {
                let done = (|| {
                    let id = r.uvarint()?;
                    let at = r.varint()?;
                    let d = Deleted {
                        entries: r.uvarint()?,
                        segments_rewritten: usize::try_from(r.uvarint()?).ok()?,
                        segments_removed: usize::try_from(r.uvarint()?).ok()?,
                        bytes_freed: r.varint()?,
                    };
                    Some((id, at, d))
                })();
                let Some((id, at, d)) = done else {
                    return false;
                };
                // A processed record names a request received earlier.
                match out.iter_mut().rev().find(|q| q.id == id) {
                    Some(q) => {
                        q.processed = Some((at, d));
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    };
    if repair {
        wal::replay_file(path, &FORMAT, true, &mut visit)?;
    } else {
        wal::read_file(path, &FORMAT, &mut visit)?;
    }
    Ok(out)
}
