//! The logic of skopos' fuzz targets: one `pub fn <target>(data: &[u8])`
//! per decoder, parser, query engine or on-disk reader that takes outside
//! bytes. Each feeds the bytes to the real code and asserts what is cheap
//! to check (no panic; errors carry a message; parse → print → parse round
//! trips; two evaluation paths that must agree do agree).
//!
//! The one design decision to know: the targets live in this ordinary
//! workspace crate, not in the cargo-fuzz project. `fuzz/` (its own
//! workspace, built with nightly-only flags under `RUSTC_BOOTSTRAP=1`) only
//! wraps each function in `fuzz_target!`, and `tests/replay.rs` runs every
//! committed corpus file (`fuzz/corpus/<target>/`) and every kept crash
//! (`fuzz/regressions/<target>/`) through the same functions as a plain
//! stable test, so CI keeps a fixed crash fixed without a fuzzer.
//!
//! Map: `ingest.rs` (remote write, OTLP, Loki push, Zipkin, exposition,
//! NDJSON), `query.rs` (PromQL, LogQL, the LogQL parser stages and
//! templates, TraceQL, unit parameters), `storage.rs` (each store written
//! valid into a scratch directory, its files mangled by the input, then
//! opened and read), `input.rs` (a byte reader for structured inputs).
//! [`TARGETS`] lists them all; `scripts/fuzz.sh` and the replay test
//! iterate it through `fuzz/fuzz_targets/`.

mod ingest;
mod input;
mod query;
mod storage;

pub use ingest::{
    exposition, loki_push, ndjson, otlp_logs, otlp_metrics, otlp_traces, remote_write, zipkin,
};
pub use query::{logql, logql_parsers, promql, traceql, units};
pub use storage::{logs_segment, logs_wal, traces_segment, traces_wal, tsdb_block, tsdb_wal};

/// A fuzz target: any bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and of
/// its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("remote_write", remote_write),
    ("otlp_metrics", otlp_metrics),
    ("otlp_logs", otlp_logs),
    ("otlp_traces", otlp_traces),
    ("loki_push", loki_push),
    ("zipkin", zipkin),
    ("exposition", exposition),
    ("ndjson", ndjson),
    ("logql_parsers", logql_parsers),
    ("promql", promql),
    ("logql", logql),
    ("traceql", traceql),
    ("units", units),
    ("tsdb_wal", tsdb_wal),
    ("tsdb_block", tsdb_block),
    ("logs_wal", logs_wal),
    ("logs_segment", logs_segment),
    ("traces_wal", traces_wal),
    ("traces_segment", traces_segment),
];

/// An error must say what was wrong.
fn check_message(e: &dyn std::fmt::Display) {
    assert!(
        !e.to_string().trim().is_empty(),
        "an error without a message"
    );
}

/// `Labels` keeps its names sorted and unique (the model's invariant that
/// every decoder relies on when it builds them).
fn check_labels(l: &skopos_model::Labels) {
    for w in l.as_slice().windows(2) {
        assert!(
            w[0].name < w[1].name,
            "labels not sorted and unique: {:?}",
            l.as_slice()
        );
    }
}
