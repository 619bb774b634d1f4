//! Faults: the server is killed with SIGKILL while a writer streams samples,
//! and restarted on the same data directory; every acknowledged sample must
//! be there. A WAL segment cut mid-record must not stop the server booting.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{start as start_with, stop, Server};
use skopos_model::{Labels, Matcher, Sample, SeriesSamples, WriteBatch};

fn start(dir: &Path) -> Server {
    start_with(dir, &["--wal-fsync", "never"])
}

fn batch(i: i64, series: usize) -> WriteBatch {
    WriteBatch {
        series: (0..series)
            .map(|s| SeriesSamples {
                labels: Labels::from_pairs([
                    ("__name__", "crash_test"),
                    ("series", &s.to_string()),
                ]),
                samples: vec![Sample::new(1_700_000_000_000 + i * 1000, i as f64)],
            })
            .collect(),
    }
}

fn stored_timestamps(dir: &Path) -> std::collections::BTreeMap<String, Vec<Sample>> {
    let db = skopos_tsdb::Db::open(&dir.join("metrics"), skopos_tsdb::Options::default()).unwrap();
    let out = db
        .select(
            &[Matcher::equal("__name__", "crash_test")],
            i64::MIN / 2,
            i64::MAX / 2,
        )
        .unwrap()
        .into_iter()
        .map(|s| (s.labels.get("series").unwrap().to_string(), s.samples))
        .collect();
    db.close().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = start(&dir);
    let url = format!("{}/api/v1/write", server.url);
    let client = reqwest::Client::new();
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..100_000i64 {
            let body = skopos_ingest::remote_write::encode(&batch(i, 20));
            match client
                .post(&url)
                .header("Content-Type", "application/x-protobuf")
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status().as_u16() == 204 => acked.push(i),
                Ok(r) => panic!("unexpected status {}", r.status()),
                Err(_) => break,
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let acked = writer.await.unwrap();
    assert!(
        acked.len() > 10,
        "the writer should have had time to write, got {}",
        acked.len()
    );

    // The server boots on the same directory and keeps everything acknowledged.
    let restarted = start(&dir);
    stop(restarted);
    let stored = stored_timestamps(&dir);
    assert_eq!(stored.len(), 20);
    for (series, samples) in &stored {
        let have: std::collections::HashSet<i64> = samples.iter().map(|s| s.t).collect();
        for i in &acked {
            assert!(
                have.contains(&(1_700_000_000_000 + i * 1000)),
                "series {series} lost acknowledged batch {i}"
            );
        }
    }
}

#[test]
fn truncated_wal_segment_is_repaired_on_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let db = skopos_tsdb::Db::open(&dir.join("metrics"), skopos_tsdb::Options::default()).unwrap();
    for i in 0..50 {
        db.append(&batch(i, 5)).unwrap();
    }
    db.close().unwrap();
    let wal = dir.join("metrics").join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    segments.sort();
    let last = segments.last().expect("a WAL segment with data");
    let len = std::fs::metadata(last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 7).unwrap(); // cut the last record in the middle
    drop(f);

    let s = start(&dir);
    stop(s);
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(
        log.to_lowercase().contains("wal"),
        "the repair should be logged:\n{log}"
    );
    let stored = stored_timestamps(&dir);
    assert_eq!(stored.len(), 5);
    for samples in stored.values() {
        // Every batch but the torn last one survives.
        assert!(samples.len() >= 49, "kept {} of 50", samples.len());
        assert!(samples
            .iter()
            .enumerate()
            .all(|(i, s)| s.t == 1_700_000_000_000 + i as i64 * 1000));
    }
}
