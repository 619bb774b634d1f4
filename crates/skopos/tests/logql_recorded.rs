//! LogQL against recorded answers of a real Grafana Loki (2.9.9): the
//! dataset and a generated corpus of queries, each with Loki's answer or
//! error, were recorded by `scripts/record-loki-answers.py` (which needs a
//! running Loki; CI has none) into `logql_recorded/`. This test pushes the
//! same dataset into a fresh skopos server through the Loki push API, asks
//! every recorded request through the Loki query API and compares: log
//! results as streams (label set → entries with time and line, in order),
//! metric results as label sets → points within a relative 1e-6. Times in
//! the fixtures are relative to the dataset's base, so the test loads the
//! data just before now.
//!
//! The guards are the PromQL differential's: the pass rate is printed and
//! anything under 100% fails, except for the queries listed with a reason in
//! `logql_recorded/known_differences.txt`; a query that fails on both sides
//! must be in `logql_recorded/expected_errors.txt`; at most a tenth of the
//! answers may be empty.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/logql_recorded")
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

/// A result reduced to comparable form: label set → points or entries.
#[derive(Debug, PartialEq)]
enum Shape {
    Streams(BTreeMap<String, Vec<(i64, String)>>),
    Metric(String, BTreeMap<String, Vec<(f64, String)>>),
}

fn key(labels: &Value) -> String {
    let m: BTreeMap<String, String> = labels
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::to_string(&m).unwrap()
}

/// Shapes a `data` object whose times are relative to the base already.
fn shape(data: &Value) -> Result<Shape, String> {
    let kind = data["resultType"].as_str().ok_or("no resultType")?;
    let result = &data["result"];
    let point = |p: &Value| -> Result<(f64, String), String> {
        let t = p[0].as_f64().ok_or("point time")?;
        Ok((t, p[1].as_str().ok_or("point value")?.to_string()))
    };
    match kind {
        "streams" => {
            let mut out = BTreeMap::new();
            for s in result.as_array().ok_or("no result")? {
                let entries = s["values"]
                    .as_array()
                    .ok_or("no values")?
                    .iter()
                    .map(|e| {
                        Ok((
                            e[0].as_i64().ok_or("entry time")?,
                            e[1].as_str().ok_or("entry line")?.to_string(),
                        ))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                if out.insert(key(&s["stream"]), entries).is_some() {
                    return Err("the same stream twice".into());
                }
            }
            Ok(Shape::Streams(out))
        }
        "matrix" | "vector" => {
            let mut out = BTreeMap::new();
            for s in result.as_array().ok_or("no result")? {
                let points = if kind == "matrix" {
                    s["values"]
                        .as_array()
                        .ok_or("no values")?
                        .iter()
                        .map(point)
                        .collect::<Result<Vec<_>, _>>()?
                } else {
                    vec![point(&s["value"])?]
                };
                if out.insert(key(&s["metric"]), points).is_some() {
                    return Err("the same series twice".into());
                }
            }
            Ok(Shape::Metric(kind.to_string(), out))
        }
        "scalar" => Ok(Shape::Metric(
            kind.to_string(),
            BTreeMap::from([(String::new(), vec![point(result)?])]),
        )),
        other => Err(format!("unknown resultType {other}")),
    }
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_nan() && y.is_nan() => true,
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            (x - y).abs() <= 1e-6 * x.abs().max(y.abs()) || (x - y).abs() < 1e-12
        }
        _ => false,
    }
}

fn clip(s: &str) -> String {
    s.chars().take(240).collect()
}

fn differs(loki: &Shape, sk: &Shape) -> Option<String> {
    match (loki, sk) {
        (Shape::Streams(l), Shape::Streams(s)) => {
            let lk: BTreeSet<_> = l.keys().collect();
            let sk: BTreeSet<_> = s.keys().collect();
            if lk != sk {
                let only_l: Vec<_> = lk.difference(&sk).take(2).collect();
                let only_s: Vec<_> = sk.difference(&lk).take(2).collect();
                return Some(format!(
                    "streams: {} vs {}; only loki {only_l:?}; only skopos {only_s:?}",
                    l.len(),
                    s.len()
                ));
            }
            for (k, le) in l {
                let se = &s[k];
                if le.len() != se.len() {
                    return Some(format!("{k}: {} entries vs {}", le.len(), se.len()));
                }
                if let Some((a, b)) = le.iter().zip(se).find(|(a, b)| a != b) {
                    return Some(clip(&format!("{k}: loki {a:?} / skopos {b:?}")));
                }
            }
            None
        }
        (Shape::Metric(lk, l), Shape::Metric(skind, s)) => {
            if lk != skind {
                return Some(format!("result type: loki {lk} / skopos {skind}"));
            }
            let lkeys: BTreeSet<_> = l.keys().collect();
            let skeys: BTreeSet<_> = s.keys().collect();
            if lkeys != skeys {
                let only_l: Vec<_> = lkeys.difference(&skeys).take(2).collect();
                let only_s: Vec<_> = skeys.difference(&lkeys).take(2).collect();
                return Some(clip(&format!(
                    "series: {} vs {}; only loki {only_l:?}; only skopos {only_s:?}",
                    l.len(),
                    s.len()
                )));
            }
            for (k, lp) in l {
                let sp = &s[k];
                if lp.len() != sp.len() {
                    return Some(clip(&format!("{k}: {} points vs {}", lp.len(), sp.len())));
                }
                for (a, b) in lp.iter().zip(sp) {
                    if (a.0 - b.0).abs() > 1e-3 || !close(&a.1, &b.1) {
                        return Some(clip(&format!("{k}: loki {a:?} / skopos {b:?}")));
                    }
                }
            }
            None
        }
        _ => Some("result type: streams against a metric result".into()),
    }
}

/// Makes a skopos `data` object's times relative to the base, as the
/// recorder did for Loki's.
fn relative(data: &Value, base_ns: i64) -> Value {
    let rel_s = |t: &Value| {
        let t = t
            .as_f64()
            .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(f64::NAN);
        json!(((t - base_ns as f64 / 1e9) * 1000.0).round() / 1000.0)
    };
    let result = &data["result"];
    let out = match data["resultType"].as_str() {
        Some("streams") => json!(result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| json!({
                "stream": s["stream"],
                "values": s["values"].as_array().into_iter().flatten().map(|e| {
                    let t: i64 = e[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(i64::MIN);
                    json!([t.wrapping_sub(base_ns), e[1]])
                }).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()),
        Some("matrix") => json!(result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| json!({
                "metric": s["metric"],
                "values": s["values"].as_array().into_iter().flatten()
                    .map(|p| json!([rel_s(&p[0]), p[1]])).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()),
        Some("vector") => json!(result
            .as_array()
            .into_iter()
            .flatten()
            .map(
                |s| json!({"metric": s["metric"], "value": [rel_s(&s["value"][0]), s["value"][1]]})
            )
            .collect::<Vec<_>>()),
        Some("scalar") => json!([rel_s(&result[0]), result[1]]),
        _ => result.clone(),
    };
    json!({"resultType": data["resultType"], "result": out})
}

async fn push(client: &reqwest::Client, url: &str, base_ns: i64) -> usize {
    let text = std::fs::read_to_string(fixture("dataset.jsonl")).unwrap();
    let mut entries = 0;
    for line in text.lines() {
        let s: Value = serde_json::from_str(line).unwrap();
        let values: Vec<Value> = s["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| json!([(e[0].as_i64().unwrap() + base_ns).to_string(), e[1]]))
            .collect();
        entries += values.len();
        for chunk in values.chunks(500) {
            let body = json!({"streams": [{"stream": s["labels"], "values": chunk}]});
            let r = client
                .post(format!("{url}/loki/api/v1/push"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert!(
                status.is_success(),
                "push refused: {status} {}",
                r.text().await.unwrap()
            );
        }
    }
    entries
}

async fn ask(client: &reqwest::Client, url: &str, path: &str, form: &[(String, String)]) -> Value {
    let r = client
        .get(format!("{url}{path}"))
        .query(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if status.is_success() && v["status"] == "success" => v,
        _ => json!({"status": "error", "error": body}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logql_agrees_with_recorded_loki_answers() {
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
    // The recorded base's time of day, on the last day that has it before
    // now: Loki aligns range queries to multiples of the step since the
    // epoch, so the replay must sit on the same grid.
    let day = 86_400;
    let rec = head["base_s"].as_i64().unwrap().rem_euclid(day);
    let mut base_s = (now_s - 60).div_euclid(day) * day + rec;
    if base_s > now_s - 60 {
        base_s -= day;
    }
    let base_ns = base_s * 1_000_000_000;
    let entries = push(&client, &sk.url, base_ns).await;
    assert!(entries >= 3000, "the dataset has {entries} entries");

    // Every request of a query must agree for the query to pass.
    let mut order: Vec<String> = Vec::new();
    let mut problems: BTreeMap<String, Option<String>> = BTreeMap::new();
    let (mut both_failed, mut empty) = (BTreeSet::new(), 0usize);
    for r in &records {
        let q = r["query"].as_str().unwrap().to_string();
        if !problems.contains_key(&q) {
            order.push(q.clone());
            problems.insert(q.clone(), None);
        }
        let path = r["path"].as_str().unwrap();
        let mut form = vec![("query".to_string(), q.clone())];
        for (k, v) in r["params"].as_object().unwrap() {
            let v = match k.as_str() {
                "start" | "end" | "time" => {
                    (v.as_i64().unwrap() * 1_000_000_000 + base_ns).to_string()
                }
                _ => v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            };
            form.push((k.clone(), v));
        }
        let s = ask(&client, &sk.url, path, &form).await;
        let what = format!("{path} {}", r["params"]);
        let problem = match (r["status"].as_str(), s["status"].as_str()) {
            (Some("error"), Some("error")) => {
                both_failed.insert(q.clone());
                None
            }
            (Some("success"), Some("success")) => {
                if r["data"]["result"].as_array().is_some_and(|a| a.is_empty()) {
                    empty += 1;
                }
                match (shape(&r["data"]), shape(&relative(&s["data"], base_ns))) {
                    (Ok(l), Ok(k)) => differs(&l, &k),
                    (Err(e), _) => Some(format!("loki answer unreadable: {e}")),
                    (_, Err(e)) => Some(format!("skopos answer unreadable: {e}")),
                }
            }
            _ => Some(clip(&format!(
                "status: loki {} / skopos {}",
                r.get("error")
                    .map_or("success".to_string(), |e| e.to_string()),
                s.get("error")
                    .map_or("success".to_string(), |e| e.to_string())
            ))),
        };
        let slot = problems.get_mut(&q).unwrap();
        if slot.is_none() {
            *slot = problem.map(|p| format!("{what}: {p}"));
        }
    }
    common::stop(sk);

    let (mut pass, mut excused, mut fail) = (0usize, 0usize, Vec::new());
    for q in &order {
        match (&problems[q], known.contains_key(q)) {
            (None, _) => pass += 1,
            (Some(_), true) => excused += 1,
            (Some(d), false) => fail.push(format!("{q}\n    {d}")),
        }
    }
    let total = order.len();
    println!(
        "LogQL against Loki {}: {pass}/{total} queries agree ({:.1}%), {excused} known differences, {} failures; \
         {} are errors in both, {empty} of {} answers empty",
        head["version"],
        100.0 * pass as f64 / total as f64,
        fail.len(),
        both_failed.len(),
        records.len(),
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
        empty * 10 <= records.len(),
        "{empty} of {} answers are empty: the corpus proves little",
        records.len()
    );
    let stale: Vec<_> = known
        .keys()
        .filter(|q| problems.get(*q).is_some_and(|p| p.is_none()))
        .collect();
    assert!(
        stale.is_empty(),
        "known differences that agree now (remove them): {stale:?}"
    );
    assert!(
        fail.is_empty(),
        "{} queries disagree with the recorded Loki answers:\n{}",
        fail.len(),
        fail.join("\n")
    );
}
