//! Write-ahead log segments: numbered files of framed records.
//!
//! # Layout
//!
//! `dir/NNNNNNNN` (8 decimal digits, more once past 99 999 999; increasing)
//! are segments. Each one is
//!
//! ```text
//! header:  magic[4] | version u32 LE
//! record:  len u32 LE | crc32 u32 LE | type u8 | payload[len]     (crate docs)
//! ```
//!
//! The magic and version are the store's ([`Format`]); a format may name
//! one older version read with the untyped framing ([`Legacy`]).
//!
//! # Reading and repair
//!
//! [`read_file`] hands each good record to a visitor and stops at the first
//! record that is short (a torn write), fails its CRC, or that the visitor
//! cannot decode. [`replay_file`] then repairs what it found, so the store
//! always boots:
//! * a file shorter than its header (torn as it was created) holds nothing
//!   and is removed;
//! * a file whose header is not this format, or a version this build does
//!   not read, is moved aside to `NNNNNNNN.corrupt` (kept, never replayed);
//! * a damaged tail is cut off at the end of the last good record.
//!
//! # Writing
//!
//! [`Wal`] appends already-framed records to the newest segment with one
//! `write(2)` per call, fsyncs them according to its [`FsyncPolicy`]
//! (concurrent `Always` appenders share one fsync), and starts the next
//! segment when one reaches its size or when asked to ([`Wal::rotate`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::fs::sync_dir;
use crate::record::{self, Framing, Stop};
use crate::{Error, Result};

/// Bytes of a segment's header.
pub const HEADER_LEN: u64 = 8;

/// Suffix of a segment set aside because its header is unreadable.
pub const CORRUPT_SUFFIX: &str = ".corrupt";

/// The header a store gives its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub magic: [u8; 4],
    /// The version written, whose records use the typed framing.
    pub version: u32,
    /// An older version still read.
    pub legacy: Option<Legacy>,
}

/// An older version whose records carry no type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legacy {
    pub version: u32,
    /// The type its records are reported with.
    pub record_type: u8,
}

impl Format {
    /// `magic` at `version`, reading no older version.
    pub const fn new(magic: [u8; 4], version: u32) -> Format {
        Format {
            magic,
            version,
            legacy: None,
        }
    }

    /// Also reads `version`, untyped, its records reported as `record_type`.
    pub const fn reading_untyped(self, version: u32, record_type: u8) -> Format {
        Format {
            legacy: Some(Legacy {
                version,
                record_type,
            }),
            ..self
        }
    }

    pub fn header(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[..4].copy_from_slice(&self.magic);
        h[4..].copy_from_slice(&self.version.to_le_bytes());
        h
    }

    fn framing(&self, magic: &[u8], version: u32) -> Option<Framing> {
        if magic != self.magic {
            return None;
        }
        if version == self.version {
            return Some(Framing::Typed);
        }
        self.legacy
            .filter(|l| l.version == version)
            .map(|l| Framing::Untyped {
                record_type: l.record_type,
            })
    }
}

/// The path of segment `n` in `dir`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// The number a segment file name stands for: only the names
/// [`segment_path`] makes (so `7`, `+0000007` or `00000007.tmp` are not).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    if name.len() < 8 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = name.parse::<u64>().ok()?;
    (format!("{n:08}") == name).then_some(n)
}

/// The segments of `dir`, ascending by number; none when `dir` is missing.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        if let Some(n) = ent.file_name().to_str().and_then(parse_segment_name) {
            out.push((n, ent.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Deletes the segments numbered `upto` or less; returns how many.
pub fn delete_segments_upto(dir: &Path, upto: u64) -> Result<u64> {
    let mut n = 0;
    for (_, path) in list_segments(dir)?.into_iter().filter(|s| s.0 <= upto) {
        match fs::remove_file(&path) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    if n > 0 {
        sync_dir(dir)?;
    }
    Ok(n)
}

/// What [`replay_dir`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Segments replayed.
    pub segments: u64,
    pub records: u64,
    /// Segments found damaged (and repaired).
    pub damaged: u64,
    /// Segments deleted because a durable file already covers them.
    pub deleted: u64,
}

/// Replays, in order, the segments of `dir` numbered above `covered`
/// (repairing them, see [`replay_file`]), after deleting those at or below
/// it, whose records a durable file already holds (`None`: no segment is
/// covered).
pub fn replay_dir(
    dir: &Path,
    format: &Format,
    covered: Option<u64>,
    visit: &mut dyn FnMut(u8, &[u8]) -> bool,
) -> Result<Replayed> {
    let deleted = match covered {
        Some(upto) => delete_segments_upto(dir, upto)?,
        None => 0,
    };
    let mut out = Replayed {
        deleted,
        ..Replayed::default()
    };
    for (_, path) in list_segments(dir)? {
        let st = replay_file(&path, format, true, visit)?;
        out.segments += 1;
        out.records += st.records;
        out.damaged += u64::from(st.damage.is_some());
    }
    Ok(out)
}

/// What is wrong with a file, from where its good records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Shorter than a header: torn as it was created, it holds nothing.
    TornHeader,
    /// Not this format's magic, or a version this build does not read.
    Header { magic: [u8; 4], version: u32 },
    /// Ends inside a record (a torn write), or a record's length is absurd.
    TornRecord,
    /// A record fails its CRC.
    Checksum,
    /// A record passes its CRC but its payload does not decode.
    Undecodable,
}

/// What reading one file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRead {
    pub records: u64,
    /// Offset just past the last good record (0 for an unreadable header).
    pub good_len: u64,
    pub file_len: u64,
    pub damage: Option<Damage>,
}

impl FileRead {
    /// Bytes after the last good record.
    pub fn bad_bytes(&self) -> u64 {
        self.file_len - self.good_len
    }
}

/// Reads one file of `format`, passing each good record's type and payload
/// to `visit`, which answers whether it could decode it. A damaged file is
/// reported, not an error; only failing to read it is.
pub fn read_file(
    path: &Path,
    format: &Format,
    visit: &mut dyn FnMut(u8, &[u8]) -> bool,
) -> Result<FileRead> {
    let data = fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut st = FileRead {
        records: 0,
        good_len: 0,
        file_len: data.len() as u64,
        damage: None,
    };
    let Some(head) = data.get(..HEADER_LEN as usize) else {
        st.damage = Some(Damage::TornHeader);
        return Ok(st);
    };
    let version = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    let Some(framing) = format.framing(&head[..4], version) else {
        st.damage = Some(Damage::Header {
            magic: head[..4].try_into().expect("4 bytes"),
            version,
        });
        return Ok(st);
    };
    let parsed = record::parse(&data[HEADER_LEN as usize..], framing, visit);
    st.records = parsed.records;
    st.good_len = HEADER_LEN + parsed.good as u64;
    st.damage = parsed.stop.map(|s| match s {
        Stop::Torn => Damage::TornRecord,
        Stop::Checksum => Damage::Checksum,
        Stop::Undecodable => Damage::Undecodable,
    });
    Ok(st)
}

/// [`read_file`], then, when damaged, a warning and (with `repair`) the
/// repair the module docs describe.
pub fn replay_file(
    path: &Path,
    format: &Format,
    repair: bool,
    visit: &mut dyn FnMut(u8, &[u8]) -> bool,
) -> Result<FileRead> {
    let st = read_file(path, format, visit)?;
    let Some(damage) = st.damage else {
        return Ok(st);
    };
    match damage {
        Damage::TornHeader => {
            tracing::warn!(path = %path.display(), bytes = st.file_len, "WAL file shorter than its header; removed");
            if repair {
                fs::remove_file(path).map_err(|e| Error::io(path, e))?;
            }
        }
        Damage::Header { magic, version } => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(CORRUPT_SUFFIX);
            let aside = PathBuf::from(aside);
            tracing::error!(
                path = %path.display(),
                magic = ?magic,
                version,
                moved_to = %aside.display(),
                "WAL file of an unknown format or version; set aside, not replayed"
            );
            if repair {
                crate::fs::rename(path, &aside)?;
            }
        }
        Damage::TornRecord | Damage::Checksum | Damage::Undecodable => {
            tracing::warn!(
                path = %path.display(),
                ?damage,
                good_bytes = st.good_len,
                file_bytes = st.file_len,
                records = st.records,
                "WAL file has a torn or corrupt tail; truncated at the last good record"
            );
            if repair {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                f.set_len(st.good_len).map_err(|e| Error::io(path, e))?;
                f.sync_all().map_err(|e| Error::io(path, e))?;
            }
        }
    }
    Ok(st)
}

/// Creates (truncating) `path` with `format`'s header, not yet fsynced.
pub fn create_file(path: &Path, format: &Format) -> Result<File> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(&format.header())
        .map_err(|e| Error::io(path, e))?;
    Ok(f)
}

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before an append returns.
    Always,
    /// By a background thread at this interval.
    Interval(Duration),
    /// Never explicitly (the OS decides; a `kill -9` still loses nothing).
    Never,
}

impl FsyncPolicy {
    /// `Always` if `fsync`, else `Never`: for stores with an on/off switch.
    pub fn always_if(fsync: bool) -> FsyncPolicy {
        if fsync {
            FsyncPolicy::Always
        } else {
            FsyncPolicy::Never
        }
    }
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// How a [`Wal`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    pub fsync: FsyncPolicy,
    /// A segment that would grow past this is closed first (at least 4 KiB).
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            fsync: FsyncPolicy::default(),
            segment_size: 128 << 20,
        }
    }
}

struct Active {
    file: Arc<File>,
    seg: u64,
    size: u64,
    dirty: bool,
    closed: bool,
    /// Appends so far (for group commit).
    seq: u64,
}

struct Shared {
    active: Mutex<Active>,
    /// Highest `seq` known to be fsynced; held while fsyncing, so
    /// concurrent `Always` appenders share one fsync (group commit).
    synced: Mutex<u64>,
    stop: Mutex<bool>,
    wake: Condvar,
    fsyncs: AtomicU64,
}

/// The writable end of a WAL directory: one active segment.
pub struct Wal {
    dir: PathBuf,
    format: Format,
    opts: WalOptions,
    shared: Arc<Shared>,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Wal {
    /// Opens `dir` for writing, after replay has repaired it: continues the
    /// newest segment if it is numbered `first` or more, is in the current
    /// version and has room; otherwise starts a segment numbered after every
    /// existing one and at least `first`.
    pub fn open(dir: &Path, format: Format, opts: WalOptions, first: u64) -> Result<Wal> {
        let opts = WalOptions {
            segment_size: opts.segment_size.max(4096),
            ..opts
        };
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let newest = list_segments(dir)?.pop();
        let reuse = newest
            .as_ref()
            .filter(|(n, _)| *n >= first)
            .and_then(|(n, p)| {
                let len = fs::metadata(p).ok()?.len();
                let mut head = [0u8; HEADER_LEN as usize];
                let f = File::open(p).ok()?;
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0).ok()?;
                (head == format.header() && len < opts.segment_size).then_some((*n, len))
            });
        let (seg, file, size) = match reuse {
            Some((n, len)) => {
                let path = segment_path(dir, n);
                let f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                (n, f, len)
            }
            None => {
                let seg = newest.map_or(first, |(n, _)| (n + 1).max(first));
                let path = segment_path(dir, seg);
                let file = create_file(&path, &format)?;
                file.sync_all().map_err(|e| Error::io(&path, e))?;
                sync_dir(dir)?;
                (seg, file, HEADER_LEN)
            }
        };
        let shared = Arc::new(Shared {
            active: Mutex::new(Active {
                file: Arc::new(file),
                seg,
                size,
                dirty: false,
                seq: 0,
                closed: false,
            }),
            synced: Mutex::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            fsyncs: AtomicU64::new(0),
        });
        let syncer = match opts.fsync {
            FsyncPolicy::Interval(every) => {
                let shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("skopos-wal-fsync".into())
                        .spawn(move || fsync_loop(shared, every))
                        .map_err(|e| Error::io(dir, e))?,
                )
            }
            _ => None,
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            format,
            opts,
            shared,
            syncer: Mutex::new(syncer),
        })
    }

    /// Recovery at open, for a store whose segments are numbered from 1 and
    /// whose durable files record the last segment they hold (`covered`, 0
    /// for none): [`replay_dir`] past `covered`, then [`Wal::open`] at
    /// `covered + 1` or later.
    pub fn recover(
        dir: &Path,
        format: Format,
        opts: WalOptions,
        covered: u64,
        visit: &mut dyn FnMut(u8, &[u8]) -> bool,
    ) -> Result<(Wal, Replayed)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let replayed = replay_dir(dir, &format, (covered > 0).then_some(covered), visit)?;
        Ok((Wal::open(dir, format, opts, covered + 1)?, replayed))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The number of the segment being written.
    pub fn segment(&self) -> u64 {
        self.shared.active.lock().seg
    }

    /// fsyncs done so far.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Writes already-framed records with one `write(2)`, after closing the
    /// active segment if they would take it past its size; fsyncs before
    /// returning if the policy is `Always`. A failed write is cut off the
    /// segment, and the next append goes to a fresh one.
    pub fn log(&self, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut a = self.shared.active.lock();
        if a.closed {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        if a.size > HEADER_LEN && a.size + buf.len() as u64 > self.opts.segment_size {
            self.rotate_locked(&mut a)?;
        }
        if let Err(e) = (&*a.file).write_all(buf) {
            // A partial record would hide every later record of this segment
            // from replay: cut it off and continue in a fresh segment.
            let path = segment_path(&self.dir, a.seg);
            let _ = a.file.set_len(a.size);
            let _ = self.rotate_locked(&mut a);
            return Err(Error::io(path, e));
        }
        a.size += buf.len() as u64;
        a.seq += 1;
        a.dirty = true;
        if self.opts.fsync != FsyncPolicy::Always {
            return Ok(());
        }
        let (mine, my_file) = (a.seq, a.file.clone());
        drop(a);
        let mut synced = self.shared.synced.lock();
        if *synced >= mine {
            return Ok(()); // another appender's fsync covered this record
        }
        let (file, target, seg) = {
            let a = self.shared.active.lock();
            (a.file.clone(), a.seq, a.seg)
        };
        if !Arc::ptr_eq(&file, &my_file) {
            // The segment was rotated since, and rotation fsyncs it.
            return Ok(());
        }
        file.sync_data()
            .map_err(|e| Error::io(segment_path(&self.dir, seg), e))?;
        *synced = target;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn rotate_locked(&self, a: &mut Active) -> Result<u64> {
        let old = a.seg;
        a.file
            .sync_data()
            .map_err(|e| Error::io(segment_path(&self.dir, old), e))?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        let path = segment_path(&self.dir, old + 1);
        a.file = Arc::new(create_file(&path, &self.format)?);
        // The new name must survive a crash as surely as the records
        // fsynced into it later.
        sync_dir(&self.dir)?;
        a.seg = old + 1;
        a.size = HEADER_LEN;
        a.dirty = true;
        Ok(old)
    }

    /// Closes the active segment (fsynced) and starts the next; returns the
    /// closed segment's number. Everything logged so far is in segments up
    /// to and including it.
    pub fn rotate(&self) -> Result<u64> {
        let mut a = self.shared.active.lock();
        if a.closed {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        self.rotate_locked(&mut a)
    }

    /// Stops the fsync thread, fsyncs, and refuses further writes.
    pub fn close(&self) -> Result<()> {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.syncer.lock().take() {
            let _ = h.join();
        }
        let mut a = self.shared.active.lock();
        if a.closed {
            return Ok(());
        }
        a.closed = true;
        a.file
            .sync_all()
            .map_err(|e| Error::io(segment_path(&self.dir, a.seg), e))?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn fsync_loop(shared: Arc<Shared>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    loop {
        {
            let mut stop = shared.stop.lock();
            if *stop {
                return;
            }
            shared.wake.wait_for(&mut stop, every);
            if *stop {
                return;
            }
        }
        let file = {
            let mut a = shared.active.lock();
            if !a.dirty || a.closed {
                continue;
            }
            a.dirty = false;
            a.file.clone()
        };
        // fsync outside the lock so appends are not blocked by it.
        if file.sync_data().is_ok() {
            shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
    }
}
