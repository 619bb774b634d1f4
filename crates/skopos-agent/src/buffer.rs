//! The bounded on-disk buffer of batches the server has not taken yet.
//!
//! One file per batch in `<state_dir>/buffer/`, named by a sequence number
//! (`<seq:016x>.batch`), replayed in sequence order, so the order of batches
//! is the order they were made. A file is written to `.tmp`, fsynced and
//! renamed (`skopos_storage::write_atomic`), so a batch is whole or absent. Layout:
//!
//! ```text
//! magic "SKAB" | version u8 = 1 | lines u32 LE | len u32 LE | crc32(payload) u32 LE | payload
//! ```
//!
//! The payload is the push body as sent (snappy-compressed protobuf). A file
//! that fails its checksum on replay is deleted and counted.
//!
//! The bound is on the sum of file sizes. When a batch does not fit, the
//! caller keeps it and stops reading its sources (backpressure): nothing is
//! dropped for lack of room. A single batch larger than the bound is still
//! accepted into an empty buffer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"SKAB";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 4 + 4 + 4;

#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    max_bytes: u64,
    /// (sequence, file size), oldest first.
    queue: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
}

/// A batch read back from the buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffered {
    pub seq: u64,
    pub lines: u32,
    pub body: Vec<u8>,
}

impl DiskBuffer {
    /// Opens (creating) `dir`; leftover `.tmp` files are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<DiskBuffer> {
        std::fs::create_dir_all(dir)?;
        skopos_storage::remove_leftover_tmp(dir).map_err(std::io::Error::other)?;
        let mut queue = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Some(seq) = name
                .strip_suffix(".batch")
                .and_then(|s| u64::from_str_radix(s, 16).ok())
            else {
                continue;
            };
            queue.push((seq, e.metadata()?.len()));
        }
        queue.sort_unstable();
        let bytes = queue.iter().map(|(_, n)| n).sum();
        let next_seq = queue.last().map_or(0, |(s, _)| s + 1);
        Ok(DiskBuffer {
            dir: dir.to_owned(),
            max_bytes,
            queue: queue.into(),
            bytes,
            next_seq,
        })
    }

    /// A buffer that holds nothing and refuses every batch (`--dry-run`).
    pub fn disabled() -> DiskBuffer {
        DiskBuffer {
            dir: PathBuf::new(),
            max_bytes: 0,
            queue: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether a batch of `len` payload bytes fits under the bound.
    pub fn fits(&self, len: usize) -> bool {
        self.is_empty() || self.bytes + (HEADER + len) as u64 <= self.max_bytes
    }

    fn file(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:016x}.batch"))
    }

    /// Appends a batch (durably) at the end. The caller checks [`fits`].
    ///
    /// [`fits`]: DiskBuffer::fits
    pub fn push(&mut self, lines: u32, body: &[u8]) -> std::io::Result<()> {
        if self.dir.as_os_str().is_empty() {
            return Err(std::io::Error::other("the disk buffer is disabled"));
        }
        let seq = self.next_seq;
        let path = self.file(seq);
        let mut data = Vec::with_capacity(HEADER + body.len());
        data.extend_from_slice(MAGIC);
        data.push(VERSION);
        data.extend_from_slice(&lines.to_le_bytes());
        data.extend_from_slice(&(body.len() as u32).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        data.extend_from_slice(body);
        skopos_storage::write_atomic(&path, &data).map_err(std::io::Error::other)?;
        self.next_seq += 1;
        self.queue.push_back((seq, data.len() as u64));
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// The oldest batch. Files that are unreadable or fail their checksum
    /// are deleted; `corrupt` is called for each.
    pub fn front(&mut self, mut corrupt: impl FnMut(&str)) -> std::io::Result<Option<Buffered>> {
        while let Some(&(seq, _)) = self.queue.front() {
            let path = self.file(seq);
            let data = std::fs::read(&path)?;
            match decode(&data) {
                Ok((lines, body)) => {
                    return Ok(Some(Buffered {
                        seq,
                        lines,
                        body: body.to_vec(),
                    }))
                }
                Err(why) => {
                    corrupt(&format!("{}: {why}", path.display()));
                    self.remove(seq)?;
                }
            }
        }
        Ok(None)
    }

    /// Deletes the oldest batch, which must be `seq`.
    pub fn remove(&mut self, seq: u64) -> std::io::Result<()> {
        let Some(&(front, size)) = self.queue.front() else {
            return Ok(());
        };
        debug_assert_eq!(front, seq);
        match std::fs::remove_file(self.file(seq)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.queue.pop_front();
        self.bytes -= size;
        Ok(())
    }
}

fn decode(data: &[u8]) -> Result<(u32, &[u8]), String> {
    if data.len() < HEADER || &data[..4] != MAGIC {
        return Err("not a buffered batch".into());
    }
    if data[4] != VERSION {
        return Err(format!("unknown version {}", data[4]));
    }
    let u32_at = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
    let (lines, len, crc) = (u32_at(5), u32_at(9) as usize, u32_at(13));
    let body = &data[HEADER..];
    if body.len() != len {
        return Err(format!("torn: {} of {len} bytes", body.len()));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    Ok((lines, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_in_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..20u32 {
            b.push(i, format!("batch {i}").as_bytes()).unwrap();
        }
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(b.len(), 20);
        for i in 0..5u32 {
            let f = b.front(|_| panic!()).unwrap().unwrap();
            assert_eq!((f.lines, f.body), (i, format!("batch {i}").into_bytes()));
            b.remove(f.seq).unwrap();
        }
        // New batches go after the old ones, also after a reopen.
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        b.push(99, b"later").unwrap();
        let mut seen = Vec::new();
        while let Some(f) = b.front(|_| panic!()).unwrap() {
            seen.push(f.lines);
            b.remove(f.seq).unwrap();
        }
        assert_eq!(seen, (5..20).chain([99]).collect::<Vec<_>>());
        assert_eq!(b.bytes(), 0);
        assert!(b.is_empty());
    }

    #[test]
    fn the_bound_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = DiskBuffer::open(dir.path(), 100).unwrap();
        // An empty buffer takes even an oversized batch, so nothing wedges.
        assert!(b.fits(500));
        b.push(1, &[0; 40]).unwrap();
        assert_eq!(b.bytes(), (HEADER + 40) as u64);
        assert!(b.fits(100 - HEADER * 2 - 40));
        assert!(!b.fits(100 - HEADER * 2 - 40 + 1));
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, b.bytes());
    }

    #[test]
    fn a_corrupt_batch_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        b.push(1, b"one").unwrap();
        b.push(2, b"two").unwrap();
        let first = dir.path().join(format!("{:016x}.batch", 0));
        let mut data = std::fs::read(&first).unwrap();
        *data.last_mut().unwrap() ^= 1;
        std::fs::write(&first, data).unwrap();
        std::fs::write(dir.path().join("0000000000000002.tmp"), b"half").unwrap();
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).unwrap();
        let mut bad = 0;
        let f = b.front(|_| bad += 1).unwrap().unwrap();
        assert_eq!((bad, f.body.as_slice()), (1, &b"two"[..]));
        assert!(!dir.path().join("0000000000000002.tmp").exists());
    }
}
