//! The one error type of the shared storage mechanics.

use std::path::{Path, PathBuf};

/// What failed, and on which file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on `path` failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path` holds bytes that fail their checks (checksum, bounds, format)
    /// and cannot be repaired by cutting a tail.
    #[error("{path}: corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// Another process (or another store in this one) holds `dir/lock`.
    #[error("{dir} is in use by another process: flock on {dir}/lock: {source}")]
    Locked {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The write-ahead log in `dir` was closed; nothing more is written.
    #[error("{dir}: the write-ahead log is closed")]
    Closed { dir: PathBuf },
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn corrupt(path: impl AsRef<Path>, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.as_ref().to_path_buf(),
            detail: detail.into(),
        }
    }

    /// Whether this is an I/O error of kind `NotFound` (a file another
    /// thread removed between a listing and an open).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}
