//! Read positions: for each file, the byte offset after the last line the
//! server acknowledged (or the disk buffer holds); for each container, the
//! timestamp of the last line shipped.
//!
//! Stored as JSON in `<state_dir>/positions.json`:
//! `{"version":1,"files":[{"path":..,"dev":..,"inode":..,"offset":..}],"containers":{"<id>":<unix ns>}}`,
//! replaced atomically (`skopos_storage::write_atomic`: write
//! `positions.json.tmp`, fsync, rename, fsync the directory). A file entry
//! is keyed by (device, inode) and records the path it was last seen at; it
//! is used only when the file is at least `offset` bytes long (otherwise
//! the inode was reused or the file truncated).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// (device, inode) of a file.
pub type FileKey = (u64, u64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileEntry {
    path: PathBuf,
    dev: u64,
    inode: u64,
    offset: u64,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<FileEntry>,
    #[serde(default)]
    containers: BTreeMap<String, i64>,
}

/// What a shipped line lets the agent remember once its batch is safe.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    File {
        key: FileKey,
        path: std::sync::Arc<Path>,
        offset: u64,
    },
    Container {
        id: std::sync::Arc<str>,
        ts_ns: i64,
    },
}

#[derive(Debug)]
pub struct Positions {
    path: PathBuf,
    files: HashMap<FileKey, FileEntry>,
    containers: HashMap<String, i64>,
    dirty: bool,
}

impl Positions {
    /// Loads `path`; a missing file is an empty set. A file that cannot be
    /// parsed is moved aside to `.corrupt` with a warning (lines may then be
    /// sent again: at-least-once, never refusing to start).
    pub fn load(path: &Path) -> std::io::Result<Positions> {
        let mut p = Positions {
            path: path.to_owned(),
            files: HashMap::new(),
            containers: HashMap::new(),
            dirty: false,
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<OnDisk>(&text) {
            Ok(d) if d.version == 1 => {
                p.files = d.files.into_iter().map(|e| ((e.dev, e.inode), e)).collect();
                p.containers = d.containers.into_iter().collect();
            }
            other => {
                let why = match other {
                    Ok(d) => format!("unknown version {}", d.version),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(path = %path.display(), "positions file unreadable ({why}); moved aside, starting over");
                std::fs::rename(path, path.with_extension("json.corrupt"))?;
            }
        }
        Ok(p)
    }

    /// Where to resume reading the file `key`, if it is still at least as
    /// long as the remembered offset.
    pub fn file_offset(&self, key: FileKey, size: u64) -> Option<u64> {
        self.files
            .get(&key)
            .map(|e| e.offset)
            .filter(|&o| o <= size)
    }

    pub fn container(&self, id: &str) -> Option<i64> {
        self.containers.get(id).copied()
    }

    /// Records checkpoints of a batch that is now safe, in order (a later
    /// checkpoint of the same file replaces an earlier one even when it is
    /// smaller: the file was truncated in between).
    pub fn apply(&mut self, cps: &[Checkpoint]) {
        for c in cps {
            match c {
                Checkpoint::File { key, path, offset } => {
                    self.files.insert(
                        *key,
                        FileEntry {
                            path: path.to_path_buf(),
                            dev: key.0,
                            inode: key.1,
                            offset: *offset,
                        },
                    );
                }
                Checkpoint::Container { id, ts_ns } => {
                    self.containers.insert(id.to_string(), *ts_ns);
                }
            }
            self.dirty = true;
        }
    }

    /// Forgets files for which `keep` says no (gone from disk and no longer
    /// tailed).
    pub fn retain_files(&mut self, mut keep: impl FnMut(FileKey, &Path) -> bool) {
        let before = self.files.len();
        self.files.retain(|k, e| keep(*k, &e.path));
        self.dirty |= self.files.len() != before;
    }

    /// Forgets containers that no longer exist.
    pub fn retain_containers(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.containers.len();
        self.containers.retain(|k, _| keep(k));
        self.dirty |= self.containers.len() != before;
    }

    /// Writes the file if anything changed since the last save.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut files: Vec<FileEntry> = self.files.values().cloned().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path).then(a.inode.cmp(&b.inode)));
        let d = OnDisk {
            version: 1,
            files,
            containers: self.containers.clone().into_iter().collect(),
        };
        let body = serde_json::to_vec_pretty(&d).map_err(std::io::Error::other)?;
        skopos_storage::write_atomic(&self.path, &body).map_err(std::io::Error::other)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cp(key: FileKey, path: &str, offset: u64) -> Checkpoint {
        Checkpoint::File {
            key,
            path: Arc::from(Path::new(path)),
            offset,
        }
    }

    #[test]
    fn positions_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let mut p = Positions::load(&path).unwrap();
        assert_eq!(p.file_offset((1, 2), 100), None);
        p.apply(&[
            cp((1, 2), "/a.log", 10),
            cp((1, 2), "/a.log", 20),
            cp((1, 3), "/b.log", 5),
            Checkpoint::Container {
                id: Arc::from("c1"),
                ts_ns: 42,
            },
        ]);
        p.save().unwrap();
        assert!(!path.with_extension("json.tmp").exists());
        let p = Positions::load(&path).unwrap();
        assert_eq!(p.file_offset((1, 2), 100), Some(20));
        assert_eq!(p.file_offset((1, 3), 100), Some(5));
        assert_eq!(p.container("c1"), Some(42));
        // Shorter than the offset: reused inode or truncated; not trusted.
        assert_eq!(p.file_offset((1, 2), 19), None);
    }

    #[test]
    fn a_later_smaller_offset_wins_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Positions::load(&dir.path().join("p.json")).unwrap();
        p.apply(&[cp((1, 2), "/a", 500), cp((1, 2), "/a", 7)]);
        assert_eq!(p.file_offset((1, 2), 1000), Some(7));
    }

    #[test]
    fn retain_forgets_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let mut p = Positions::load(&path).unwrap();
        p.apply(&[cp((1, 2), "/a", 1), cp((1, 3), "/b", 1)]);
        p.save().unwrap();
        p.retain_files(|k, _| k == (1, 3));
        p.save().unwrap();
        let p = Positions::load(&path).unwrap();
        assert_eq!(p.file_offset((1, 2), 10), None);
        assert_eq!(p.file_offset((1, 3), 10), Some(1));
    }

    #[test]
    fn a_corrupt_positions_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        std::fs::write(&path, b"{not json").unwrap();
        let p = Positions::load(&path).unwrap();
        assert_eq!(p.file_offset((1, 2), 10), None);
        assert!(dir.path().join("positions.json.corrupt").exists());
    }
}
