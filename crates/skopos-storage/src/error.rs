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

/// The query engines see a storage failure through the model's type.
impl From<Error> for skopos_model::StorageError {
    fn from(e: Error) -> Self {
        use skopos_model::StorageError as S;
        match e {
            Error::Io { path, source } => S::Io { path, source },
            Error::Corrupt { path, detail } => S::Corrupt { path, detail },
            e @ (Error::Locked { .. } | Error::Closed { .. }) => S::Unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skopos_model::StorageError as S;

    #[test]
    fn the_engines_see_what_failed_and_where() {
        let e = S::from(Error::corrupt("/d/blocks/x/chunks", "checksum mismatch"));
        assert!(matches!(&e, S::Corrupt { path, .. } if path == Path::new("/d/blocks/x/chunks")));
        assert_eq!(
            e.to_string(),
            "/d/blocks/x/chunks: corrupt: checksum mismatch"
        );
        let e = S::from(Error::io("/d/wal", std::io::ErrorKind::NotFound.into()));
        assert!(
            matches!(&e, S::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        let e = S::from(Error::Closed {
            dir: "/d/wal".into(),
        });
        assert!(
            matches!(&e, S::Unavailable(m) if m.contains("closed")),
            "{e}"
        );
    }
}
