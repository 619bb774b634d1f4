//! The file source: globs, tailing, rotation.
//!
//! Files are tracked by (device, inode), not by path. Every `poll_interval`
//! each tracked file is checked and read to its end:
//! - its path now names another inode, or nothing: it was rotated away by
//!   rename (or deleted). The open file is still read to its end, and kept
//!   for `rotate_wait` after it stops growing, before the file now at the
//!   path (found by the next glob scan) is read — so an old file's lines go
//!   out before the new file's;
//! - it is shorter than what was read: truncated in place (copytruncate);
//!   reading starts again at 0.
//!
//! Only complete lines (ending in `\n`; a `\r` before it is dropped) are
//! shipped; a partial last line waits for its newline, except in a file
//! that was rotated away, where it is shipped when the file is closed. A
//! line longer than `max_line_bytes` is truncated to that many bytes, the
//! rest up to its newline skipped, and counted.
//!
//! Globs are evaluated again every `refresh_interval`, and at once when
//! the directories they name report a created or renamed entry (inotify,
//! through `notify`), so a file created and rotated between two scans is
//! not missed; new files are read from their beginning, known ones from
//! their saved position. A tracked file renamed to a name the globs do not
//! match is followed through its open handle until it stops growing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skopos_units::now_ns;
use tokio::sync::{mpsc, watch};

use crate::config::FileSourceConfig;
use crate::metrics::{inc, SourceMetrics};
use crate::parse::LineParser;
use crate::positions::{Checkpoint, FileKey, Positions};
use crate::ship::{render_labels, Record};

/// Files tailed by all file sources, so pruning positions spares them.
pub type Tracking = Arc<Mutex<HashSet<FileKey>>>;

/// Most bytes read from one (not rotated) file per poll, so one busy file
/// does not starve the others.
const READ_BUDGET: u64 = 4 << 20;

/// How long the loop waits for a directory to fall quiet after a change
/// before it scans, so a create-then-rotate burst (a file created, renamed
/// away and replaced) is seen whole and the older file is read first.
const SETTLE: Duration = Duration::from_millis(100);
/// The longest a busy directory can hold a scan back.
const SETTLE_MAX: Duration = Duration::from_millis(500);

struct Tracked {
    path: Arc<Path>,
    file: File,
    /// Bytes consumed (complete lines plus `partial`).
    offset: u64,
    partial: Vec<u8>,
    partial_truncated: bool,
    /// When the file was found rotated away, and when it last grew since.
    rotated: Option<Instant>,
    labels: Arc<str>,
}

pub struct FileSource {
    cfg: FileSourceConfig,
    parser: LineParser,
    tx: mpsc::Sender<Record>,
    positions: Arc<Mutex<Positions>>,
    tracking: Tracking,
    metrics: Arc<SourceMetrics>,
    files: BTreeMap<FileKey, Tracked>,
    last_ts: i64,
    exclude: Vec<glob::Pattern>,
    /// Read buffer, reused across files and polls.
    buf: Vec<u8>,
    /// Files renamed from a name the globs match to one they do not, seen by
    /// the directory watcher before a scan found them: (old name, new name).
    renamed_away: Vec<(PathBuf, PathBuf)>,
}

/// What the directory watcher reports.
enum DirChange {
    /// Something appeared: scan now.
    Created,
    /// `from` (matched by a glob) is now `to` (not matched).
    RenamedAway(PathBuf, PathBuf),
}

fn key_of(m: &std::fs::Metadata) -> FileKey {
    (m.dev(), m.ino())
}

/// A line read from a file, with the offset just after it.
struct Line {
    bytes: Vec<u8>,
    end: u64,
    truncated: bool,
}

impl FileSource {
    pub fn new(
        cfg: FileSourceConfig,
        tx: mpsc::Sender<Record>,
        positions: Arc<Mutex<Positions>>,
        tracking: Tracking,
        metrics: Arc<SourceMetrics>,
    ) -> FileSource {
        FileSource {
            parser: LineParser::new(cfg.parse_config()),
            // Checked when the config was loaded.
            exclude: cfg
                .exclude
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect(),
            buf: vec![0; 64 << 10],
            cfg,
            tx,
            positions,
            tracking,
            metrics,
            files: BTreeMap::new(),
            last_ts: 0,
            renamed_away: Vec::new(),
        }
    }

    /// Tails until `stop`; with `once`, returns when every file has been
    /// read to its end.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, once: bool) {
        let mut next_scan = Instant::now();
        let (changed_tx, mut changed) = mpsc::channel::<DirChange>(1024);
        // Kept alive for the loop; without it, the periodic scan remains.
        let _watcher = (!once).then(|| self.watch_dirs(changed_tx)).flatten();
        loop {
            let mut woken = false;
            while let Ok(c) = changed.try_recv() {
                self.note(c);
                woken = true;
            }
            if woken {
                self.settle(&mut changed).await;
                next_scan = Instant::now();
            }
            if Instant::now() >= next_scan {
                self.scan();
                next_scan = Instant::now() + self.cfg.refresh_interval;
            }
            let rotations = self.metrics.rotations.load(Relaxed);
            let read = match self.poll(once).await {
                Ok(n) => n,
                Err(Closed) => break, // the shipper is gone: stopping
            };
            if self.metrics.rotations.load(Relaxed) != rotations {
                // Look for the file that replaced it right away.
                next_scan = Instant::now();
            }
            if once && read == 0 {
                break;
            }
            if once {
                continue;
            }
            tokio::select! {
                _ = crate::stopped(&mut stop) => break,
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                Some(c) = changed.recv() => {
                    self.note(c);
                    self.settle(&mut changed).await;
                    next_scan = Instant::now();
                }
            }
        }
        let mut t = self.tracking.lock().unwrap();
        for k in self.files.keys() {
            t.remove(k);
        }
    }

    /// Watches the directories the include globs start from; an entry
    /// created or renamed there wakes the loop for a scan. `None` (logged)
    /// when the platform refuses, leaving the periodic scan.
    fn watch_dirs(&self, changed: mpsc::Sender<DirChange>) -> Option<notify::RecommendedWatcher> {
        use notify::event::{ModifyKind, RenameMode};
        use notify::{EventKind, Watcher};
        let globs: Vec<glob::Pattern> = self
            .cfg
            .include
            .iter()
            .filter_map(|g| glob::Pattern::new(g).ok())
            .collect();
        let handler = move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            let change = match (&ev.kind, ev.paths.as_slice()) {
                (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), [from, to])
                    if globs.iter().any(|g| g.matches_path(from))
                        && !globs.iter().any(|g| g.matches_path(to)) =>
                {
                    DirChange::RenamedAway(from.clone(), to.clone())
                }
                (EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)), _) => {
                    DirChange::Created
                }
                _ => return,
            };
            // Full means scans are already due; a rename lost here is found
            // by the periodic scan's rotation handling when it was tracked.
            let _ = changed.try_send(change);
        };
        let mut w = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "cannot watch directories ({e}); new files are found every refresh_interval"
                );
                return None;
            }
        };
        for pattern in &self.cfg.include {
            let dir = glob_base(pattern);
            if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::debug!(dir = %dir.display(), "not watched: {e}");
            }
        }
        Some(w)
    }

    /// Takes the changes that follow within [`SETTLE`] of each other, up to
    /// [`SETTLE_MAX`].
    async fn settle(&mut self, changed: &mut mpsc::Receiver<DirChange>) {
        let deadline = tokio::time::Instant::now() + SETTLE_MAX;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(SETTLE.min(left), changed.recv()).await {
                Ok(Some(c)) => self.note(c),
                Ok(None) | Err(_) => return,
            }
        }
    }

    fn note(&mut self, c: DirChange) {
        if let DirChange::RenamedAway(from, to) = c {
            self.renamed_away.push((from, to));
        }
    }

    fn excluded(&self, path: &Path) -> bool {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        self.exclude
            .iter()
            .any(|p| p.matches_path(path) || name.as_deref().is_some_and(|n| p.matches(n)))
    }

    fn labels_for(&self, path: &Path) -> Arc<str> {
        let filename = path.to_string_lossy();
        let mut pairs: Vec<(&str, &str)> = self
            .cfg
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push(("filename", &filename));
        Arc::from(render_labels(pairs))
    }

    /// Evaluates the globs: new files start being tailed, renamed tracked
    /// files get their new path.
    pub fn scan(&mut self) {
        // Files renamed away before any scan saw them: tracked under the
        // name they had, which no longer names them, so the next poll takes
        // them as rotated — read to their end, then closed.
        for (from, to) in std::mem::take(&mut self.renamed_away) {
            let Ok(meta) = std::fs::metadata(&to) else {
                continue;
            };
            let key = key_of(&meta);
            if self.files.contains_key(&key) || self.excluded(&from) {
                continue;
            }
            let Ok(file) = File::open(&to) else { continue };
            tracing::info!(path = %from.display(), now = %to.display(), "renamed before it was scanned; reading it");
            let labels = self.labels_for(&from);
            let offset = self
                .positions
                .lock()
                .unwrap()
                .file_offset(key, meta.len())
                .unwrap_or(0);
            self.files.insert(
                key,
                Tracked {
                    path: Arc::from(from.as_path()),
                    file,
                    offset,
                    partial: Vec::new(),
                    partial_truncated: false,
                    rotated: None,
                    labels,
                },
            );
        }
        let mut found = BTreeSet::new();
        for pattern in &self.cfg.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for p in paths.flatten() {
                if p.is_file() && !self.excluded(&p) {
                    found.insert(p);
                }
            }
        }
        for path in found {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let key = key_of(&meta);
            if let Some(t) = self.files.get_mut(&key) {
                if *t.path != *path && t.rotated.is_some() {
                    // Renamed to a name the globs also match: keep following
                    // it under that name.
                    t.path = Arc::from(path.as_path());
                    t.rotated = None;
                    let labels = self.labels_for(&path);
                    self.files.get_mut(&key).unwrap().labels = labels;
                }
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot open: {e}");
                    continue;
                }
            };
            let offset = self
                .positions
                .lock()
                .unwrap()
                .file_offset(key, meta.len())
                .unwrap_or(0);
            tracing::info!(path = %path.display(), offset, "tailing");
            let labels = self.labels_for(&path);
            self.files.insert(
                key,
                Tracked {
                    path: Arc::from(path.as_path()),
                    file,
                    offset,
                    partial: Vec::new(),
                    partial_truncated: false,
                    rotated: None,
                    labels,
                },
            );
        }
        self.metrics
            .files_tailed
            .store(self.files.len() as u64, Relaxed);
        {
            let mut t = self.tracking.lock().unwrap();
            t.extend(self.files.keys().copied());
        }
        let tracking = self.tracking.lock().unwrap().clone();
        self.positions.lock().unwrap().retain_files(|k, path| {
            tracking.contains(&k) || std::fs::metadata(path).is_ok_and(|m| key_of(&m) == k)
        });
    }

    /// Checks every tracked file for rotation and truncation, reads each to
    /// its end (rotated ones first) and sends the lines. Returns the bytes
    /// read.
    pub async fn poll(&mut self, once: bool) -> Result<u64, Closed> {
        let max_line = self.cfg.max_line_bytes as usize;
        let mut total = 0;
        // Rotated files first: their lines are older.
        let mut keys: Vec<FileKey> = self.files.keys().copied().collect();
        for k in &keys {
            let t = self.files.get_mut(k).unwrap();
            if t.rotated.is_none() {
                let moved = match std::fs::metadata(&t.path) {
                    Ok(m) => key_of(&m) != *k,
                    Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                };
                if moved {
                    tracing::info!(path = %t.path.display(), "rotated away; reading it to its end");
                    t.rotated = Some(Instant::now());
                    inc(&self.metrics.rotations, 1);
                }
            }
            if let Ok(m) = t.file.metadata() {
                if m.len() < t.offset {
                    tracing::info!(path = %t.path.display(), "truncated; reading from the start");
                    t.offset = 0;
                    t.partial.clear();
                    t.partial_truncated = false;
                    inc(&self.metrics.truncations, 1);
                }
            }
        }
        keys.sort_by_key(|k| self.files[k].rotated.is_none());
        for k in keys {
            let t = self.files.get_mut(&k).unwrap();
            let budget = if t.rotated.is_some() {
                u64::MAX
            } else {
                READ_BUDGET
            };
            let mut lines = Vec::new();
            let n = match read_lines(t, &mut self.buf, max_line, budget, &mut lines) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), "read failed: {e}");
                    0
                }
            };
            total += n;
            let close = match t.rotated {
                Some(since) if n == 0 => once || since.elapsed() >= self.cfg.rotate_wait,
                Some(_) => {
                    t.rotated = Some(Instant::now());
                    false
                }
                None => false,
            };
            if close && !t.partial.is_empty() {
                lines.push(Line {
                    bytes: std::mem::take(&mut t.partial),
                    end: t.offset,
                    truncated: t.partial_truncated,
                });
            }
            let (path, labels) = (t.path.clone(), t.labels.clone());
            for l in lines {
                self.emit(k, &path, &labels, l).await?;
            }
            if close {
                tracing::info!(path = %path.display(), "closed rotated file");
                self.files.remove(&k);
                self.tracking.lock().unwrap().remove(&k);
                self.metrics
                    .files_tailed
                    .store(self.files.len() as u64, Relaxed);
            }
        }
        Ok(total)
    }

    async fn emit(
        &mut self,
        key: FileKey,
        path: &Arc<Path>,
        labels: &Arc<str>,
        l: Line,
    ) -> Result<(), Closed> {
        let m = &self.metrics;
        inc(&m.lines_read, 1);
        inc(&m.bytes_read, l.bytes.len() as u64);
        if l.truncated {
            inc(&m.lines_truncated, 1);
        }
        let line = String::from_utf8(l.bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let parsed = self.parser.parse(&line);
        if parsed.error {
            inc(&m.parse_errors, 1);
        }
        let ts_ns = parsed.ts_ns.unwrap_or_else(|| {
            // Read time, strictly increasing so equal lines stay distinct.
            let t = now_ns().max(self.last_ts + 1);
            self.last_ts = t;
            t
        });
        let labels = if parsed.labels.is_empty() {
            labels.clone()
        } else {
            let filename = path.to_string_lossy();
            let mut pairs: BTreeMap<&str, &str> = self
                .cfg
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            pairs.insert("filename", &filename);
            for (k, v) in &parsed.labels {
                pairs.insert(k, v);
            }
            Arc::from(render_labels(pairs))
        };
        let rec = Record {
            labels,
            ts_ns,
            line,
            metadata: parsed.metadata,
            checkpoint: Some(Checkpoint::File {
                key,
                path: path.clone(),
                offset: l.end,
            }),
        };
        self.tx.send(rec).await.map_err(|_| Closed)
    }

    /// Files currently tailed (for tests).
    pub fn tailed(&self) -> Vec<PathBuf> {
        self.files.values().map(|t| t.path.to_path_buf()).collect()
    }

    /// Sets how long rotated files are kept (for tests).
    pub fn set_rotate_wait(&mut self, d: Duration) {
        self.cfg.rotate_wait = d;
    }
}

/// The shipper has gone away.
#[derive(Debug)]
pub struct Closed;

/// The deepest directory of a glob without pattern characters
/// (`/var/log/app/*.log` → `/var/log/app`).
fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for part in Path::new(pattern).components() {
        let s = part.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(part);
    }
    if base == Path::new(pattern) {
        base.pop(); // a plain file name: watch its directory
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

fn append_capped(t: &mut Tracked, piece: &[u8], max: usize) {
    let room = max.saturating_sub(t.partial.len());
    if piece.len() > room {
        t.partial.extend_from_slice(&piece[..room]);
        t.partial_truncated = true;
    } else {
        t.partial.extend_from_slice(piece);
    }
}

/// Reads from `t.offset` to the end of the file (or `budget` bytes),
/// collecting complete lines.
fn read_lines(
    t: &mut Tracked,
    buf: &mut [u8],
    max_line: usize,
    budget: u64,
    out: &mut Vec<Line>,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    while total < budget {
        let n = t.file.read_at(buf, t.offset)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut start = 0;
        while let Some(i) = chunk[start..].iter().position(|&b| b == b'\n') {
            let end = start + i;
            append_capped(t, &chunk[start..end], max_line);
            let mut bytes = std::mem::take(&mut t.partial);
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            out.push(Line {
                bytes,
                end: t.offset + end as u64 + 1,
                truncated: std::mem::take(&mut t.partial_truncated),
            });
            start = end + 1;
        }
        append_capped(t, &chunk[start..], max_line);
        t.offset += n as u64;
        total += n as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::Write;

    struct Fixture {
        dir: tempfile::TempDir,
        src: FileSource,
        rx: mpsc::Receiver<Record>,
        positions: Arc<Mutex<Positions>>,
    }

    fn fixture_with(
        extra: &str,
        dir: tempfile::TempDir,
        positions: Option<Arc<Mutex<Positions>>>,
    ) -> Fixture {
        let yaml = format!(
            "server: http://x\nsources:\n  - type: file\n    include: ['{}/*.log']\n    labels: {{job: t}}\n    rotate_wait: 0s\n{extra}",
            dir.path().display()
        );
        let cfg = Config::parse(&yaml).unwrap();
        let crate::config::SourceConfig::File(f) = cfg.sources[0].clone() else {
            panic!()
        };
        let positions = positions.unwrap_or_else(|| {
            Arc::new(Mutex::new(
                Positions::load(&dir.path().join("positions.json")).unwrap(),
            ))
        });
        let (tx, rx) = mpsc::channel(10_000);
        let src = FileSource::new(
            f,
            tx,
            positions.clone(),
            Tracking::default(),
            Arc::new(SourceMetrics::default()),
        );
        Fixture {
            dir,
            src,
            rx,
            positions,
        }
    }

    fn fixture(extra: &str) -> Fixture {
        fixture_with(extra, tempfile::tempdir().unwrap(), None)
    }

    impl Fixture {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn append(&self, name: &str, data: &str) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(name))
                .unwrap();
            f.write_all(data.as_bytes()).unwrap();
        }
        async fn step(&mut self) -> Vec<String> {
            self.src.scan();
            self.src.poll(false).await.unwrap();
            let mut out = Vec::new();
            while let Ok(r) = self.rx.try_recv() {
                out.push(r.line);
            }
            out
        }
    }

    #[tokio::test]
    async fn only_complete_lines_and_a_partial_line_waits() {
        let mut f = fixture("");
        f.append("a.log", "one\r\ntwo\npar");
        assert_eq!(f.step().await, ["one", "two"]);
        assert_eq!(f.step().await, Vec::<String>::new());
        f.append("a.log", "tial\n");
        assert_eq!(f.step().await, ["partial"]);
    }

    #[tokio::test]
    async fn rename_rotation_drains_the_old_file_first() {
        let mut f = fixture("");
        f.append("app.log", "a\nb\n");
        assert_eq!(f.step().await, ["a", "b"]);
        // The writer keeps its handle across the rename, as a logger does
        // until it reopens.
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(f.path("app.log"))
            .unwrap();
        old.write_all(b"c\n").unwrap();
        std::fs::rename(f.path("app.log"), f.path("app.log.1")).unwrap();
        old.write_all(b"d\nlast-partial").unwrap();
        f.append("app.log", "e\n");
        // The old file's lines before the new file's; its partial last line
        // goes out when it is closed (it stopped growing).
        assert_eq!(f.step().await, ["c", "d", "e"]);
        assert_eq!(f.step().await, ["last-partial"]);
        assert_eq!(f.src.metrics.rotations.load(Relaxed), 1);
        assert_eq!(f.src.tailed(), [f.path("app.log")]);
    }

    /// Regression: a file created and rotated away between two glob scans
    /// was never read. The directory watcher sees both the creation and the
    /// rename, so the lines of the first file go out, then the new one's.
    #[tokio::test]
    async fn a_file_created_and_rotated_between_scans_is_read_whole() {
        let f = fixture("    refresh_interval: 1h\n    poll_interval: 20ms\n");
        let Fixture {
            dir, src, mut rx, ..
        } = f;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(src.run(stop_rx, false));
        // The first scan finds nothing; the next periodic one is an hour off.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (log, old) = (dir.path().join("app.log"), dir.path().join("app.log.1"));
        std::fs::write(&log, "first\nsecond\n").unwrap();
        std::fs::rename(&log, &old).unwrap();
        std::fs::write(&log, "third\n").unwrap();
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while lines.len() < 3 && Instant::now() < deadline {
            if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                lines.push(r.line);
            }
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(lines, ["first", "second", "third"]);
    }

    #[tokio::test]
    async fn copytruncate_restarts_at_zero() {
        let mut f = fixture("");
        f.append("app.log", "first line\nsecond line\n");
        assert_eq!(f.step().await, ["first line", "second line"]);
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(f.path("app.log"))
            .unwrap();
        f.append("app.log", "new\n");
        assert_eq!(f.step().await, ["new"]);
        assert_eq!(f.src.metrics.truncations.load(Relaxed), 1);
        f.append("app.log", "more\n");
        assert_eq!(f.step().await, ["more"]);
    }

    #[tokio::test]
    async fn long_lines_are_truncated_and_counted() {
        let mut f = fixture("    max_line_bytes: 4\n");
        f.append("a.log", "abcdefgh\nxy\nlonger-than-four");
        assert_eq!(f.step().await, ["abcd", "xy"]);
        f.append("a.log", "-still\nz\n");
        assert_eq!(f.step().await, ["long", "z"]);
        assert_eq!(f.src.metrics.lines_truncated.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn excludes_and_new_files_are_honoured() {
        let mut f = fixture("    exclude: ['*skip*']\n");
        f.append("a.log", "a\n");
        f.append("skip-me.log", "no\n");
        assert_eq!(f.step().await, ["a"]);
        f.append("b.log", "b\n");
        assert_eq!(f.step().await, ["b"]);
    }

    #[tokio::test]
    async fn resumes_from_acknowledged_position() {
        let mut f = fixture("");
        f.append("a.log", "one\ntwo\nthree\n");
        f.src.scan();
        f.src.poll(false).await.unwrap();
        let mut recs = Vec::new();
        while let Ok(r) = f.rx.try_recv() {
            recs.push(r);
        }
        // Only the first two lines' batch was acknowledged.
        let cps: Vec<_> = recs[..2]
            .iter()
            .filter_map(|r| r.checkpoint.clone())
            .collect();
        f.positions.lock().unwrap().apply(&cps);
        f.positions.lock().unwrap().save().unwrap();
        let Fixture { dir, .. } = f;
        let mut f = fixture_with("", dir, None);
        assert_eq!(f.step().await, ["three"]);
    }

    #[tokio::test]
    async fn labels_include_filename_and_promoted_fields() {
        let mut f = fixture("    format: logfmt\n    fields_to_labels: [level]\n    fields_to_metadata: [trace_id]\n");
        f.append(
            "a.log",
            "level=warn trace_id=t1 msg=x ts=1714564800\nnot logfmt\n",
        );
        f.src.scan();
        f.src.poll(false).await.unwrap();
        let a = f.rx.try_recv().unwrap();
        let p = f.path("a.log");
        assert_eq!(
            &*a.labels,
            format!(
                "{{filename=\"{}\", job=\"t\", level=\"warn\"}}",
                p.display()
            )
        );
        assert_eq!(a.metadata, vec![("trace_id".to_string(), "t1".to_string())]);
        assert_eq!(a.ts_ns, 1_714_564_800_000_000_000);
        let b = f.rx.try_recv().unwrap();
        assert_eq!(b.line, "not logfmt");
        assert_eq!(
            &*b.labels,
            format!("{{filename=\"{}\", job=\"t\"}}", p.display())
        );
        assert_eq!(f.src.metrics.parse_errors.load(Relaxed), 1);
    }
}
