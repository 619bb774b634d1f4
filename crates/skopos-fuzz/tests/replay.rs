//! Replays every committed fuzz input as an ordinary test, on stable and
//! without a fuzzer: each file of `fuzz/corpus/<target>/` (what the fuzzer
//! found worth keeping, minimised) and of `fuzz/regressions/<target>/`
//! (inputs that once crashed, kept so the fix stays) goes through the same
//! function the fuzz target calls. A target whose corpus is missing or
//! empty fails, so that the replay can never pass by testing nothing.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    out.sort();
    out
}

fn replay(name: &str) {
    let f = skopos_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is not in skopos_fuzz::TARGETS"))
        .1;
    let corpus = files(&fuzz_dir().join("corpus").join(name));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{name}/ is missing or empty: seed it (see FUZZING.md)"
    );
    let regressions = files(&fuzz_dir().join("regressions").join(name));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read corpus file");
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {name} panic:\n{}",
        failed.len(),
        corpus.len() + regressions.len(),
        failed.join("\n")
    );
}

macro_rules! replay_tests {
    ($($name:ident)*) => {
        $(#[test]
        fn $name() {
            replay(stringify!($name));
        })*

        /// Every target has a test here and a `fuzz/fuzz_targets/<name>.rs`,
        /// and nothing else is there.
        #[test]
        fn every_target_is_replayed_and_built() {
            let tested = [$(stringify!($name)),*];
            let mut listed: Vec<&str> = skopos_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            listed.sort();
            let mut tested_sorted = tested.to_vec();
            tested_sorted.sort();
            assert_eq!(listed, tested_sorted, "TARGETS and the replay tests differ");
            let mut built: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
                .iter()
                .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
                .collect();
            built.sort();
            assert_eq!(listed, built, "TARGETS and fuzz/fuzz_targets/ differ");
        }
    };
}

replay_tests! {
    remote_write otlp_metrics otlp_logs otlp_traces loki_push zipkin exposition ndjson
    logql_parsers promql logql traceql units
    tsdb_wal tsdb_block logs_wal logs_segment traces_wal traces_segment
}
