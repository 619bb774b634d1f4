//! skopos-storage: the on-disk mechanics the three stores (`skopos-tsdb`,
//! `skopos-logs`, `skopos-traces`) share, so that each store keeps only its
//! own record types and payload encodings.
//!
//! * [`wal`]: numbered segment files of CRC-framed records — the writer
//!   ([`Wal`]: append, fsync policy, rotation at a size), the reader
//!   ([`read_file`]) that stops at a torn tail or a bad CRC, and the repair
//!   on replay ([`replay_file`]) that cuts the file back to its last good
//!   record; listing ([`list_segments`]) and deletion up to a number
//!   ([`delete_segments_upto`]).
//! * [`fs`]: the exclusive directory lock ([`DirLock`], `flock` on
//!   `dir/lock`), [`sync_dir`], and write-to-`.tmp`-then-rename
//!   ([`AtomicFile`], [`write_atomic`], [`remove_leftover_tmp`]).
//! * [`decompress_declared`]: a zstd frame read back with the length a file
//!   declares for it, without trusting that length as an allocation size.
//!
//! The one design decision to know: **there is one record framing**,
//! `len u32 LE | crc32 u32 LE | type u8 | payload[len]` (the CRC covers the
//! type byte and the payload), behind an 8-byte header `magic[4] | version
//! u32 LE` that each store chooses. A [`Format`] may name one older version
//! whose records carry no type byte (`len | crc | payload`, the framing the
//! log and trace WALs were written with before this crate), so a data
//! directory written by an older skopos still replays; new files are always
//! written in the one framing.
//!
//! This crate knows nothing about samples, log lines, spans, query
//! languages or HTTP.

mod error;
pub mod fs;
mod record;
pub mod wal;
mod zstd_frame;

pub use error::Error;
pub use fs::{
    remove_leftover_tmp, rename, sync_dir, tmp_path, write_atomic, AtomicFile, DirLock, TMP_SUFFIX,
};
pub use record::{frame, Framing, MAX_RECORD, RECORD_HEADER};
pub use wal::{
    create_file, delete_segments_upto, list_segments, parse_segment_name, read_file, replay_dir,
    replay_file, segment_path, Damage, FileRead, Format, FsyncPolicy, Legacy, Replayed, Wal,
    WalOptions, CORRUPT_SUFFIX, HEADER_LEN,
};
pub use zstd_frame::{decompress_declared, FrameError};

/// What this crate's functions return.
pub type Result<T, E = Error> = std::result::Result<T, E>;
