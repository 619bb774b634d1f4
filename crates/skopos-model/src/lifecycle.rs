//! One lifecycle shape for the three stores, so the server drives them
//! the same way (the trait describes no I/O; the stores do it).
//!
//! Each store is opened with `Store::open(dir, options)` (the TSDB:
//! `Db::open`) and takes writes through its own `append` (the batch and
//! outcome types are the store's); the rest of its life is this trait.

/// The part of a store's life that is the same for every store.
pub trait Lifecycle: Send + Sync + 'static {
    /// What one [`Lifecycle::maintenance`] pass did; the default value
    /// means it did nothing.
    type Report: std::fmt::Debug + Default + PartialEq + Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;
    /// What the store holds, for logs: "metrics", "logs", "traces".
    const KIND: &'static str;

    /// Writes what the in-memory head holds to immutable files now.
    fn flush(&self) -> Result<(), Self::Error>;

    /// The periodic work: cutting the head, compaction, retention relative
    /// to `now_ns` (Unix nanoseconds).
    fn maintenance(&self, now_ns: i64) -> Result<Self::Report, Self::Error>;

    /// What the store does before the process exits: everything
    /// acknowledged is made durable (the log and trace stores also write
    /// their head to segments, so a restart need not replay it; the TSDB's
    /// head is replayed from its WAL), then writes are refused. The
    /// directory lock is released when the store is dropped.
    fn close(&self) -> Result<(), Self::Error>;
}

/// What retention removed from a store of segment files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub segments_deleted: usize,
    pub bytes_freed: u64,
}
