//! Directory lock, directory fsync, and files replaced atomically.
//!
//! A file that must appear whole or not at all is written as
//! `<name>.tmp`, fsynced, renamed over `<name>`, and the directory is
//! fsynced: a crash leaves the old content or the new one, never a mix, and
//! at worst a `.tmp` that [`remove_leftover_tmp`] clears on the next open.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Suffix of a file (or directory) being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// An exclusive `flock` on `dir/lock`, held while this value lives: one
/// store per data directory, across processes and within one.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, or answers [`Error::Locked`] at once if it is held.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a valid file descriptor that `file` owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(DirLock { _file: file })
    }
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// `rename(2)`, with the error naming the destination.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(to, e))
}

/// `path` with [`TMP_SUFFIX`] appended.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    PathBuf::from(tmp)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A file written under `<path>.tmp` and put in place by [`commit`]; until
/// then `path` keeps its old content (or stays absent). Dropped without a
/// commit, the `.tmp` is removed.
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates (truncating) `<path>.tmp`.
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let tmp = tmp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The temporary file being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .as_mut()
            .expect("not finished")
            .write_all(bytes)
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// Flushes and fsyncs the `.tmp`, leaving it in place for the caller
    /// to rename (several files put in place together: all written first,
    /// then renamed, then one [`sync_dir`]). Returns `(tmp, path)`.
    pub fn finish(mut self) -> Result<(PathBuf, PathBuf)> {
        let out = self.out.take().expect("not finished");
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        Ok((
            std::mem::take(&mut self.tmp),
            std::mem::take(&mut self.path),
        ))
    }

    /// Fsyncs the `.tmp`, renames it over the file and fsyncs the directory.
    pub fn commit(self) -> Result<()> {
        let (tmp, path) = self.finish()?;
        rename(&tmp, &path)?;
        sync_dir(parent(&path))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `path` with `bytes` atomically (see [`AtomicFile`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Removes what interrupted writes left in `dir`: every entry whose name
/// ends in `.tmp` (a file, or a directory with its contents). Returns how
/// many were removed; a missing `dir` has none.
pub fn remove_leftover_tmp(dir: &Path) -> Result<usize> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut n = 0;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        if !ent.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            continue;
        }
        let path = ent.path();
        let is_dir = ent.file_type().is_ok_and(|t| t.is_dir());
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    if n > 0 {
        tracing::info!(dir = %dir.display(), files = n, "removed what interrupted writes left");
    }
    Ok(n)
}
