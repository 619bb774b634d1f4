//! The layering rules ARCHITECTURE.md states, checked from `cargo metadata`
//! so they cannot rot: storage and query engines know nothing of HTTP or
//! gRPC, engines read storage only through `skopos-model`'s traits, the
//! stores share `skopos-storage` (which knows none of them), and the model
//! depends on no other skopos crate.

use std::collections::BTreeMap;
use std::process::Command;

/// Each workspace crate's normal (non-dev, non-build) dependencies.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for p in v["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        map.insert(p["name"].as_str().unwrap().to_string(), deps);
    }
    map
}

const NETWORK: &[&str] = &[
    "axum",
    "axum-server",
    "hyper",
    "tonic",
    "reqwest",
    "http",
    "tower",
    "tokio",
];
const STORAGE: &[&str] = &[
    "skopos-storage",
    "skopos-tsdb",
    "skopos-logs",
    "skopos-traces",
];
const ENGINES: &[&str] = &[
    "skopos-promql",
    "skopos-logql",
    "skopos-traceql",
    "skopos-spanmetrics",
];

#[test]
fn storage_and_engines_know_no_network_crate() {
    let deps = dependencies();
    for krate in STORAGE
        .iter()
        .chain(ENGINES)
        .chain(&["skopos-model", "skopos-units"])
    {
        let d = deps
            .get(*krate)
            .unwrap_or_else(|| panic!("{krate} is not in the workspace"));
        for n in NETWORK {
            assert!(
                !d.iter().any(|x| x == n),
                "{krate} depends on {n}: only the edges know the network"
            );
        }
    }
}

#[test]
fn engines_read_storage_only_through_the_model() {
    let deps = dependencies();
    for krate in ENGINES {
        for s in STORAGE {
            assert!(
                !deps[*krate].iter().any(|x| x == s),
                "{krate} depends on {s}"
            );
        }
        assert!(
            deps[*krate].iter().any(|x| x == "skopos-model"),
            "{krate} should read through skopos-model"
        );
    }
}

#[test]
fn the_model_and_units_depend_on_no_other_skopos_crate() {
    let deps = dependencies();
    for krate in ["skopos-model", "skopos-units"] {
        let own: Vec<_> = deps[krate]
            .iter()
            .filter(|d| d.starts_with("skopos"))
            .collect();
        assert!(own.is_empty(), "{krate} depends on {own:?}");
    }
    // Storage crates do not know the query languages either.
    for s in STORAGE {
        for e in ENGINES.iter().filter(|e| **e != "skopos-spanmetrics") {
            assert!(!deps[*s].iter().any(|x| x == e), "{s} depends on {e}");
        }
    }
}

#[test]
fn the_stores_share_one_framing_crate_that_knows_no_store() {
    let deps = dependencies();
    for s in STORAGE.iter().filter(|s| **s != "skopos-storage") {
        assert!(
            deps[*s].iter().any(|x| x == "skopos-storage"),
            "{s} should frame its files through skopos-storage"
        );
    }
    let own: Vec<_> = deps["skopos-storage"]
        .iter()
        .filter(|d| d.starts_with("skopos") && *d != "skopos-model")
        .collect();
    assert!(own.is_empty(), "skopos-storage depends on {own:?}");
}
