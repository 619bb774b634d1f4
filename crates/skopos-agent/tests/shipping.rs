//! The agent against an in-process fake receiver: outages, restarts,
//! rotation, refused batches and `--once`.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use skopos_agent::{Agent, RunOptions};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_buffered_to_disk_and_replayed_in_order() {
    let rx = receiver().await;
    rx.set_failing(true);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let agent = start(file_config(&rx.url, &state, &log.display().to_string(), "")).await;
    let mut want = Vec::new();
    for chunk in 0..5 {
        let lines = numbered(&format!("chunk {chunk}"), 0..20);
        append(&log, lines.clone());
        want.extend(lines);
        // Let each chunk become its own batch.
        let m = agent.metrics().clone();
        wait_until(
            WAIT,
            || m.batches_buffered.load(Relaxed) > chunk,
            || "batch not buffered".into(),
        )
        .await;
    }
    // Everything read is safe on disk and the positions moved on.
    let m = agent.metrics().clone();
    assert!(m.buffer_batches.load(Relaxed) >= 5);
    assert!(m.buffer_bytes.load(Relaxed) > 0);
    assert!(m.send_failures.load(Relaxed) >= 5);
    let size = std::fs::metadata(&log).unwrap().len();
    let positions = || std::fs::read_to_string(state.join("positions.json")).unwrap_or_default();
    wait_until(
        WAIT,
        || positions().contains(&format!("\"offset\": {size}")),
        positions,
    )
    .await;
    assert!(rx.lines().is_empty());

    rx.set_failing(false);
    let got = rx.wait_lines(want.len(), WAIT).await;
    assert_eq!(got, want, "every line once, in order");
    wait_until(
        WAIT,
        || m.buffer_batches.load(Relaxed) == 0,
        || "buffer not drained".into(),
    )
    .await;
    assert_eq!(m.lines_shipped.load(Relaxed), want.len() as u64);
    assert!(m.send_retries.load(Relaxed) >= 5);
    // Lines written after the outage follow the replayed ones.
    append(&log, vec!["after".to_string()]);
    let got = rx.wait_lines(want.len() + 1, WAIT).await;
    assert_eq!(got.last().unwrap(), "after");
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_survives_a_restart_and_a_restart_resends_nothing() {
    let rx = receiver().await;
    rx.set_failing(true);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let glob = log.display().to_string();

    let first = numbered("before restart", 0..30);
    append(&log, first.clone());
    let agent = start(file_config(&rx.url, &state, &glob, "")).await;
    let m = agent.metrics().clone();
    wait_until(
        WAIT,
        || m.lines_read_total() == 30 && m.batches_buffered.load(Relaxed) > 0,
        || "not buffered".into(),
    )
    .await;
    let report = agent.stop().await.unwrap();
    assert!(report.ship.undelivered_batches > 0);
    let buffered = std::fs::read_dir(state.join("buffer")).unwrap().count();
    assert!(buffered > 0, "the disk buffer is on disk");

    // The server is back; a new agent replays the buffer, then new lines.
    rx.set_failing(false);
    let second = numbered("after restart", 0..10);
    append(&log, second.clone());
    let agent = start(file_config(&rx.url, &state, &glob, "")).await;
    let want: Vec<String> = first.iter().chain(&second).cloned().collect();
    let got = rx.wait_lines(want.len(), WAIT).await;
    assert_eq!(got, want);
    agent.stop().await.unwrap();

    // A third start has nothing to send.
    let agent = start(file_config(&rx.url, &state, &glob, "")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop().await.unwrap();
    assert_eq!(rx.lines(), want, "no line sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_resends_at_most_the_unacknowledged_lines() {
    // Positions are saved on each acknowledgement: a crash (abort, no
    // flush) resumes from the last acknowledged line.
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let glob = log.display().to_string();
    let first = numbered("one", 0..50);
    append(&log, first.clone());
    let agent = start(file_config(&rx.url, &state, &glob, "")).await;
    rx.wait_lines(50, WAIT).await;
    // Give the positions save after the ack a moment.
    let m = agent.metrics().clone();
    wait_until(
        WAIT,
        || m.lines_shipped.load(Relaxed) == 50,
        || "not acked".into(),
    )
    .await;
    agent.abort(); // no flush, no final save
    let second = numbered("two", 0..5);
    append(&log, second.clone());
    let agent = start(file_config(&rx.url, &state, &glob, "")).await;
    let got = rx.wait_lines(55, WAIT).await;
    agent.stop().await.unwrap();
    assert_eq!(
        got,
        first.iter().chain(&second).cloned().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_during_tailing_loses_nothing() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let agent = start(file_config(&rx.url, &state, &log.display().to_string(), "")).await;
    let mut want = Vec::new();
    let mut n = 0;
    for gen in 0..4 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for i in 0..50 {
            writeln!(f, "line {n:04}").unwrap();
            want.push(format!("line {n:04}"));
            n += 1;
            if i == 10 {
                // The new file has been found before it is rotated in turn
                // (a file created and rotated away between two glob scans
                // is never seen, by any tailer).
                rx.wait_lines(want.len(), WAIT).await;
            }
        }
        // Rotate by rename; the writer still finishes a few lines into the
        // old file before it reopens.
        std::fs::rename(&log, dir.path().join(format!("app.log.{gen}"))).unwrap();
        for _ in 0..5 {
            writeln!(f, "line {n:04}").unwrap();
            want.push(format!("line {n:04}"));
            n += 1;
        }
    }
    let got = rx.wait_lines(want.len(), WAIT).await;
    assert_eq!(got, want);
    assert_eq!(agent.metrics().sources[0].rotations.load(Relaxed), 4);
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_during_tailing_restarts_at_zero() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let agent = start(file_config(&rx.url, &state, &log.display().to_string(), "")).await;
    let before = numbered("a rather long line before the truncation", 0..20);
    append(&log, before.clone());
    rx.wait_lines(20, WAIT).await;
    // copytruncate: copy elsewhere, truncate in place, keep writing.
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    let after = numbered("short", 0..3);
    append(&log, after.clone());
    let got = rx.wait_lines(23, WAIT).await;
    assert_eq!(
        got,
        before.iter().chain(&after).cloned().collect::<Vec<_>>()
    );
    assert_eq!(agent.metrics().sources[0].truncations.load(Relaxed), 1);
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_dropped_and_counted_not_retried_forever() {
    let rx = receiver().await;
    *rx.state.poison.lock().unwrap() = Some("poison".into());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let glob = log.display().to_string();
    append(&log, vec!["poison".to_string()]);
    let agent = start(file_config(&rx.url, &state, &glob, "")).await;
    let m = agent.metrics().clone();
    wait_until(
        WAIT,
        || m.batches_dropped.load(Relaxed) == 1,
        || "not dropped".into(),
    )
    .await;
    append(&log, vec!["fine".to_string()]);
    assert_eq!(rx.wait_lines(1, WAIT).await, ["fine"]);
    assert_eq!(m.lines_dropped.load(Relaxed), 1);
    assert_eq!(m.buffer_batches.load(Relaxed), 0);
    agent.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_ships_everything_or_says_it_could_not() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for f in ["a", "b"] {
        append(&dir.path().join(format!("{f}.log")), numbered(f, 0..100));
    }
    append(&dir.path().join("a.log.gz"), vec!["excluded".into()]);
    std::fs::write(
        dir.path().join("b.log"),
        format!("{}\npartial", numbered("b", 0..100).join("\n")),
    )
    .unwrap();
    let glob = format!("{}/*.log*", dir.path().display());
    let cfg = || file_config(&rx.url, &state, &glob, "    exclude: ['*.gz']\n");
    let once = RunOptions {
        once: true,
        once_timeout: Duration::from_secs(2),
        ..RunOptions::default()
    };
    let report = Agent::start(cfg(), once.clone())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    let got = rx.lines();
    assert_eq!(got.len(), 200, "{got:?}");
    for f in ["a", "b"] {
        let mine: Vec<String> = got.iter().filter(|l| l.starts_with(f)).cloned().collect();
        assert_eq!(mine, numbered(f, 0..100));
    }
    // Labels: static + filename.
    let g = rx.got();
    let a = g.iter().find(|g| g.line == "a 0000").unwrap();
    assert_eq!(
        a.labels,
        format!(
            "{{filename=\"{}\", job=\"test\"}}",
            dir.path().join("a.log").display()
        )
    );

    // Again: nothing new, nothing resent (the partial line still waits).
    let report = Agent::start(cfg(), once.clone())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(report.ok());
    assert_eq!(rx.lines().len(), 200);

    // The server is down: --once gives up after its timeout and says so;
    // the batch is kept in the disk buffer for next time.
    rx.set_failing(true);
    append(&dir.path().join("a.log"), vec!["late".into()]);
    let report = Agent::start(cfg(), once.clone())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(!report.ok());
    assert_eq!(report.ship.undelivered_batches, 1);
    rx.set_failing(false);
    let report = Agent::start(cfg(), once)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(rx.lines().last().unwrap(), "late");
    assert_eq!(rx.lines().len(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_and_json_parsing_reach_the_wire() {
    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let log = dir.path().join("app.log");
    append(
        &log,
        vec![
            r#"{"ts":"2024-05-01T12:00:00Z","level":"error","trace_id":"abc","msg":"boom"}"#.into(),
            "not json".into(),
        ],
    );
    let mut cfg = file_config(
        &rx.url,
        &state,
        &log.display().to_string(),
        "    format: json\n    fields_to_labels: [level]\n    fields_to_metadata: [trace_id]\n",
    );
    cfg.auth_token_file = Some(token);
    let agent = start(cfg).await;
    rx.wait_lines(2, WAIT).await;
    let m = agent.metrics().clone();
    agent.stop().await.unwrap();
    let g = rx.got();
    assert_eq!(g[0].ts_ns, 1_714_564_800_000_000_000);
    assert!(g[0].labels.contains("level=\"error\""), "{}", g[0].labels);
    assert_eq!(
        g[0].metadata,
        vec![("trace_id".to_string(), "abc".to_string())]
    );
    assert_eq!(g[1].line, "not json");
    assert!(!g[1].labels.contains("level="));
    assert_eq!(m.sources[0].parse_errors.load(Relaxed), 1);
    assert!(rx
        .state
        .auth
        .lock()
        .unwrap()
        .iter()
        .all(|a| a.as_deref() == Some("Bearer s3cret")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_buffer_stops_reading_instead_of_dropping() {
    let rx = receiver().await;
    rx.set_failing(true);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let mut cfg = file_config(&rx.url, &state, &log.display().to_string(), "");
    cfg.buffer_max_bytes = 8192;
    cfg.batch.max_bytes = 4096;
    let want = numbered("a line that takes some room in the buffer", 0..4000);
    append(&log, want.clone());
    let agent = start(cfg).await;
    let m = agent.metrics().clone();
    wait_until(
        WAIT,
        || m.buffer_full_waits.load(Relaxed) > 0,
        || "buffer never full".into(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        m.buffer_bytes.load(Relaxed) <= 8192,
        "bounded: {}",
        m.buffer_bytes.load(Relaxed)
    );
    let read = m.lines_read_total();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        read < 4000 && m.lines_read_total() == read,
        "reading paused at {read}"
    );
    rx.set_failing(false);
    let got = rx.wait_lines(4000, WAIT).await;
    assert_eq!(got, want);
    agent.stop().await.unwrap();
}
