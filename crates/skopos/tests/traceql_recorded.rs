//! TraceQL against recorded answers of a real Grafana Tempo (2.2.4): the
//! traces and a generated corpus of queries, each with Tempo's answer or
//! error, were recorded by `scripts/record-tempo-answers.py` (which needs a
//! running Tempo; CI has none) into `traceql_recorded/`. This test exports
//! the same traces to a fresh skopos server as OTLP/HTTP JSON, asks every
//! query through `/api/search` and compares the set of matching trace ids
//! and, per trace, the spansets: their spans (written as the span's
//! position among its trace's spans in the dataset), `matched` and the
//! spanset attributes `by()` adds — not Tempo's exact JSON.
//!
//! Tempo 2.2 returns some spans of some spansets without their id (all
//! zeros, and no start or duration to recognise them by); the recorder
//! counts those as `unknown_spans`. For such a trace the spans Tempo did
//! name must be among skopos' and the `matched` totals must agree.
//!
//! The guards are the PromQL differential's: the pass rate is printed and
//! anything under 100% fails, except for the queries listed with a reason in
//! `traceql_recorded/known_differences.txt`; a query that fails on both sides
//! must be in `traceql_recorded/expected_errors.txt`; at most a tenth of the
//! answers may be empty.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traceql_recorded")
        .join(name)
}

fn listed(name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once("\t#") {
            Some((q, reason)) => (q.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// trace id → span id → position among the trace's spans in the dataset.
type Index = HashMap<String, HashMap<String, u64>>;

/// Shifts the recorded exports to `base_ns` and indexes their spans.
fn exports(base_ns: i64) -> (Vec<Value>, Index) {
    let text = std::fs::read_to_string(fixture("dataset.json")).unwrap();
    let mut data: Value = serde_json::from_str(&text).unwrap();
    let mut index: Index = HashMap::new();
    let bodies = data["exports"].as_array_mut().unwrap();
    for b in bodies.iter_mut() {
        for rs in b["resourceSpans"].as_array_mut().unwrap() {
            for ss in rs["scopeSpans"].as_array_mut().unwrap() {
                for s in ss["spans"].as_array_mut().unwrap() {
                    for k in ["startTimeUnixNano", "endTimeUnixNano"] {
                        let t: i64 = s[k].as_str().unwrap().parse().unwrap();
                        s[k] = json!((t + base_ns).to_string());
                    }
                    let t = index
                        .entry(s["traceId"].as_str().unwrap().to_string())
                        .or_default();
                    let pos = t.len() as u64;
                    t.insert(s["spanId"].as_str().unwrap().to_string(), pos);
                }
            }
        }
    }
    (bodies.clone(), index)
}

/// A search answer as the recorder wrote Tempo's: trace id → spansets.
fn normal(resp: &Value, index: &Index) -> Value {
    let mut traces = BTreeMap::new();
    for t in resp["traces"].as_array().into_iter().flatten() {
        let id = format!(
            "{:0>32}",
            t["traceID"].as_str().unwrap_or("").to_lowercase()
        );
        let positions = index.get(&id);
        let sets = match t["spanSets"].as_array() {
            Some(a) if !a.is_empty() => a.clone(),
            _ => t
                .get("spanSet")
                .map(|s| vec![s.clone()])
                .unwrap_or_default(),
        };
        let mut out: Vec<Value> = sets
            .iter()
            .map(|ss| {
                let mut spans: Vec<u64> = Vec::new();
                let mut unknown = 0;
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let sid = format!("{:0>16}", s["spanID"].as_str().unwrap_or("").to_lowercase());
                    match positions.and_then(|p| p.get(&sid)) {
                        Some(p) => spans.push(*p),
                        None => unknown += 1,
                    }
                }
                spans.sort_unstable();
                let mut e = json!({"spans": spans, "matched": ss["matched"].as_u64().unwrap_or(0)});
                if unknown > 0 {
                    e["unknown_spans"] = json!(unknown);
                }
                let mut attrs: Vec<(String, Value)> = ss["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        (
                            a["key"].as_str().unwrap_or("").to_string(),
                            a["value"].clone(),
                        )
                    })
                    .collect();
                attrs.sort_by_key(|(k, v)| (k.clone(), v.to_string()));
                if !attrs.is_empty() {
                    e["attributes"] =
                        json!(attrs.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>());
                }
                e
            })
            .collect();
        out.sort_by_key(|e| e.to_string());
        traces.insert(id, Value::Array(out));
    }
    json!(traces)
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Compares skopos' spansets of one trace with Tempo's.
fn trace_differs(id: &str, tempo: &[Value], sk: &[Value]) -> Option<String> {
    let partial = tempo.iter().any(|e| e.get("unknown_spans").is_some());
    if !partial {
        if tempo != sk {
            return Some(clip(&format!(
                "trace {id}: tempo {} / skopos {}",
                Value::from(tempo.to_vec()),
                Value::from(sk.to_vec())
            )));
        }
        return None;
    }
    let spans = |v: &[Value]| -> BTreeSet<u64> {
        v.iter()
            .flat_map(|e| e["spans"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s.as_u64())
            .collect()
    };
    let matched =
        |v: &[Value]| -> u64 { v.iter().map(|e| e["matched"].as_u64().unwrap_or(0)).sum() };
    if !spans(tempo).is_subset(&spans(sk)) || matched(tempo) != matched(sk) {
        return Some(clip(&format!(
            "trace {id} (Tempo named only some spans): tempo {} / skopos {}",
            Value::from(tempo.to_vec()),
            Value::from(sk.to_vec())
        )));
    }
    None
}

fn differs(tempo: &Value, sk: &Value) -> Option<String> {
    let (t, s) = (tempo.as_object()?, sk.as_object()?);
    let tk: BTreeSet<_> = t.keys().collect();
    let sk_keys: BTreeSet<_> = s.keys().collect();
    if tk != sk_keys {
        let only_t: Vec<_> = tk.difference(&sk_keys).take(2).collect();
        let only_s: Vec<_> = sk_keys.difference(&tk).take(2).collect();
        return Some(format!(
            "traces: {} vs {}; only tempo {only_t:?}; only skopos {only_s:?}",
            t.len(),
            s.len()
        ));
    }
    for (id, tv) in t {
        let sv = &s[id];
        if let Some(d) = trace_differs(
            id,
            tv.as_array().map(Vec::as_slice).unwrap_or_default(),
            sv.as_array().map(Vec::as_slice).unwrap_or_default(),
        ) {
            return Some(d);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceql_agrees_with_recorded_tempo_answers() {
    let answers = std::fs::read_to_string(fixture("answers.jsonl")).unwrap();
    let mut lines = answers.lines();
    let head: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let records: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let known = listed("known_differences.txt");
    let expected_errors = listed("expected_errors.txt");

    let tmp = tempfile::tempdir().unwrap();
    let sk = common::start(&tmp.path().join("skopos"), &[]);
    let client = reqwest::Client::new();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let base_s = now_s / 60 * 60 - 60;
    let (bodies, index) = exports(base_s * 1_000_000_000);
    assert!(index.len() >= 100, "the dataset has {} traces", index.len());
    for b in &bodies {
        let r = client
            .post(format!("{}/v1/traces", sk.url))
            .json(b)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "export refused: {status} {text}");
        assert!(!text.contains("rejected"), "spans refused: {text}");
    }

    let search = &head["search"];
    let (start, end) = (
        base_s + search["start"].as_i64().unwrap(),
        base_s + search["end"].as_i64().unwrap(),
    );
    let (mut pass, mut excused, mut fail) = (0usize, 0usize, Vec::new());
    let (mut both_failed, mut empty, mut stale) = (Vec::new(), 0usize, Vec::new());
    for r in &records {
        let q = r["query"].as_str().unwrap();
        let resp = client
            .get(format!("{}/api/search", sk.url))
            .query(&[
                ("q", q.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("limit", search["limit"].to_string()),
                ("spss", search["spss"].to_string()),
            ])
            .send()
            .await
            .unwrap();
        let ok = resp.status().is_success();
        let body = resp.text().await.unwrap();
        let problem = match (r["status"].as_str(), ok) {
            (Some("error"), false) => {
                both_failed.push(q.to_string());
                None
            }
            (Some("success"), true) => {
                let v: Value = serde_json::from_str(&body).unwrap();
                if r["traces"].as_object().is_some_and(|t| t.is_empty()) {
                    empty += 1;
                }
                differs(&r["traces"], &normal(&v, &index))
            }
            (Some("error"), true) => {
                Some(format!("tempo refused ({}), skopos answered", r["error"]))
            }
            _ => Some(clip(&format!("tempo answered, skopos refused: {body}"))),
        };
        match (problem, known.contains_key(q)) {
            (None, true) => {
                stale.push(q.to_string());
                pass += 1
            }
            (None, false) => pass += 1,
            (Some(_), true) => excused += 1,
            (Some(d), false) => fail.push(format!("{q}\n    {d}")),
        }
    }
    common::stop(sk);
    let total = records.len();
    println!(
        "TraceQL against Tempo {}: {pass}/{total} queries agree ({:.1}%), {excused} known differences, {} failures; \
         {} are errors in both, {empty} empty",
        head["version"],
        100.0 * pass as f64 / total as f64,
        fail.len(),
        both_failed.len(),
    );
    for f in &fail {
        println!("DIFF {f}");
    }
    assert!(total >= 300, "the corpus has {total} queries");
    let unexpected: Vec<_> = both_failed
        .iter()
        .filter(|q| !expected_errors.contains_key(*q))
        .collect();
    assert!(
        unexpected.is_empty(),
        "queries that fail on both sides but are not in expected_errors.txt: {unexpected:?}"
    );
    assert!(
        empty * 10 <= total,
        "{empty} of {total} queries are empty: the corpus proves little"
    );
    assert!(
        stale.is_empty(),
        "known differences that agree now (remove them): {stale:?}"
    );
    assert!(
        fail.is_empty(),
        "{} queries disagree with the recorded Tempo answers:\n{}",
        fail.len(),
        fail.join("\n")
    );
}
