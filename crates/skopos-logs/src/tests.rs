use std::path::Path;

use skopos_model::{Labels, LogBatch, LogEntry, LogSelect, LogStream, Matcher};

use crate::{DeleteRequest, LogsError, Options, Store};

fn labels(app: &str) -> Labels {
    Labels::from_pairs([("app", app), ("env", "prod")])
}

fn batch(app: &str, lines: &[(i64, &str)]) -> LogBatch {
    LogBatch {
        streams: vec![LogStream {
            labels: labels(app),
            entries: lines.iter().map(|(t, l)| LogEntry::new(*t, *l)).collect(),
        }],
    }
}

fn all(store: &Store, app: &str) -> Vec<(i64, String)> {
    select(store, app, i64::MIN, i64::MAX, &[])
}

fn select(store: &Store, app: &str, start: i64, end: i64, contains: &[&str]) -> Vec<(i64, String)> {
    let sel = LogSelect {
        matchers: vec![Matcher::equal("app", app)],
        start,
        end,
        contains: contains.iter().map(|s| s.to_string()).collect(),
        matches: Vec::new(),
    };
    let mut out = Vec::new();
    store
        .select(&sel, &mut |s| {
            out.extend(s.entries.into_iter().map(|e| (e.ts, e.line)));
            true
        })
        .unwrap();
    out
}

fn opts() -> Options {
    Options {
        fsync: false,
        ..Options::default()
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn lines_come_back_in_time_order_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store
        .append(batch("a", &[(30, "third"), (10, "first")]))
        .unwrap();
    // Out of order is accepted; an exact duplicate is dropped, the same
    // timestamp with another line is kept.
    let got = store
        .append(batch(
            "a",
            &[(20, "second"), (10, "first"), (10, "first too")],
        ))
        .unwrap();
    assert_eq!((got.entries, got.duplicates), (2, 1));
    assert_eq!(
        all(&store, "a"),
        vec![
            (10, "first".to_string()),
            (10, "first too".to_string()),
            (20, "second".to_string()),
            (30, "third".to_string())
        ]
    );
    // [start, end) and the substring hint.
    assert_eq!(select(&store, "a", 10, 30, &["ir"]).len(), 2);
    assert_eq!(select(&store, "a", 20, 31, &[]).len(), 2);
    assert!(all(&store, "b").is_empty());
}

#[test]
fn acknowledged_lines_survive_a_restart_and_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        store.append(batch("a", &[(1, "one"), (2, "two")])).unwrap();
        store.flush().unwrap();
        store.append(batch("a", &[(3, "three")])).unwrap();
        store.append(batch("b", &[(1, "bee")])).unwrap();
        // Dropped without a flush: the last two live only in the WAL.
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(
        all(&store, "a"),
        vec![
            (1, "one".to_string()),
            (2, "two".to_string()),
            (3, "three".to_string())
        ]
    );
    assert_eq!(all(&store, "b"), vec![(1, "bee".to_string())]);
    // The flushed WAL segment is gone and is not replayed a second time.
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&store, "a").len(), 3);
    let stats = store.stats();
    assert_eq!(stats.segments.len(), 2);
    assert_eq!(stats.head_entries, 0);
    assert_eq!(stats.segments.iter().map(|s| s.entries).sum::<u64>(), 4);
}

#[test]
fn a_torn_wal_tail_is_cut_and_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        store.append(batch("a", &[(1, "kept")])).unwrap();
        store.append(batch("a", &[(2, "torn")])).unwrap();
    }
    let wal = dir.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 2).unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&store, "a"), vec![(1, "kept".to_string())]);
}

#[test]
fn limits_refuse_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            max_line_bytes: 10,
            max_active_streams: 2,
            max_labels_per_stream: 2,
            ..opts()
        },
    )
    .unwrap();
    let mut b = batch("a", &[(1, "ok")]);
    b.streams.push(LogStream {
        labels: labels("b"),
        entries: vec![LogEntry::new(1, "far too long a line")],
    });
    let err = store.append(b).unwrap_err();
    assert!(matches!(err, LogsError::Limit(_)));
    assert!(
        err.to_string().contains("longer than the limit of 10"),
        "{err}"
    );
    assert!(all(&store, "a").is_empty());
    store.append(batch("a", &[(1, "ok")])).unwrap();
    store.append(batch("b", &[(1, "ok")])).unwrap();
    let err = store.append(batch("c", &[(1, "ok")])).unwrap_err();
    assert!(matches!(err, LogsError::Streams(_)));
    assert!(err.to_string().contains("active streams"), "{err}");
    let wide = LogBatch {
        streams: vec![LogStream {
            labels: Labels::from_pairs([("a", "1"), ("b", "2"), ("c", "3")]),
            entries: vec![LogEntry::new(1, "x")],
        }],
    };
    assert!(store
        .append(wide)
        .unwrap_err()
        .to_string()
        .contains("3 labels"));
}

#[test]
fn retention_deletes_segments_and_frees_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            retention_ns: Some(1_000),
            ..opts()
        },
    )
    .unwrap();
    let line = "x".repeat(1000);
    let old: Vec<(i64, &str)> = (0..2000).map(|i| (i, line.as_str())).collect();
    store.append(batch("a", &old)).unwrap();
    store.flush().unwrap();
    store.append(batch("a", &[(10_000, "new")])).unwrap();
    store.flush().unwrap();
    let before = dir_bytes(dir.path());
    assert_eq!(store.apply_retention(10_500).unwrap().segments_deleted, 1);
    let after = dir_bytes(dir.path());
    assert!(after < before, "{after} >= {before}");
    assert_eq!(all(&store, "a"), vec![(10_000, "new".to_string())]);
}

#[test]
fn many_lines_round_trip_through_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            head_max_bytes: 200_000,
            ..opts()
        },
    )
    .unwrap();
    let lines: Vec<String> = (0..20_000)
        .map(|i| format!("line {i} req={:x}", i * 7919))
        .collect();
    for (k, chunk) in lines.chunks(1000).enumerate() {
        let b: Vec<(i64, &str)> = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| ((k * 1000 + i) as i64, l.as_str()))
            .collect();
        store.append(batch("a", &b)).unwrap();
    }
    assert!(store.stats().segments.len() > 1);
    let got = all(&store, "a");
    assert_eq!(got.len(), lines.len());
    assert!(got.iter().zip(&lines).all(|(g, l)| &g.1 == l));
    assert_eq!(
        select(&store, "a", 0, i64::MAX, &["req=1e"]).len(),
        lines.iter().filter(|l| l.contains("req=1e")).count()
    );
}

#[test]
fn needles_read_only_the_blocks_that_can_hold_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    // About 40 blocks of 256 KiB, each request id in one line.
    let lines: Vec<String> = (0..100_000)
        .map(|i| {
            format!(
                "GET /api/items/{} 200 {}ms request_id=r{:08x}-{}",
                i % 97,
                i % 13,
                i * 2_654_435_761u64 % (1 << 32),
                "x".repeat(60)
            )
        })
        .collect();
    let b: Vec<(i64, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as i64, l.as_str()))
        .collect();
    store.append(batch("a", &b)).unwrap();
    store.flush().unwrap();
    let blocks = |store: &Store| store.stats().blocks_read;
    let before = blocks(&store);
    assert_eq!(all(&store, "a").len(), lines.len());
    let full = blocks(&store) - before;
    assert!(full > 20, "{full} blocks");
    let needle = lines[54_321]
        .split("request_id=")
        .nth(1)
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    let before = blocks(&store);
    let got = select(&store, "a", i64::MIN, i64::MAX, &[&needle]);
    assert_eq!(got, vec![(54_321, lines[54_321].clone())]);
    assert_eq!(blocks(&store) - before, 1, "a needle reads one block");
    // A needle with separators, and one that is only part of a token.
    let part = &needle[2..7];
    let want: Vec<(i64, String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(part))
        .map(|(i, l)| (i as i64, l.clone()))
        .collect();
    assert_eq!(select(&store, "a", i64::MIN, i64::MAX, &[part]), want);
    let spaced = format!("200 {}ms request_id=r", 54_321 % 13);
    let n = lines.iter().filter(|l| l.contains(&spaced)).count();
    assert_eq!(select(&store, "a", i64::MIN, i64::MAX, &[&spaced]).len(), n);
}

#[test]
fn late_batches_merge_in_order_and_duplicates_inside_them_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store
        .append(batch("a", &[(10, "a"), (20, "b"), (30, "c")]))
        .unwrap();
    // A late batch, itself unsorted, overlapping the stream and repeating
    // an old line, a line of its own, and an equal time with another line.
    let got = store
        .append(batch(
            "a",
            &[(25, "x"), (15, "y"), (20, "b"), (15, "y"), (20, "b2")],
        ))
        .unwrap();
    assert_eq!((got.entries, got.duplicates), (3, 2));
    let lines: Vec<String> = all(&store, "a")
        .into_iter()
        .map(|(t, l)| format!("{t}{l}"))
        .collect();
    assert_eq!(lines, ["10a", "15y", "20b", "20b2", "25x", "30c"]);
}

#[test]
fn regex_hints_narrow_what_is_read_from_segments_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store
        .append(batch(
            "a",
            &[(1, "GET / 200"), (2, "GET / 503"), (3, "POST / 500")],
        ))
        .unwrap();
    store.flush().unwrap();
    store.append(batch("a", &[(4, "GET / 502")])).unwrap();
    let sel = |matches: &[&str], contains: &[&str]| LogSelect {
        matchers: vec![Matcher::equal("app", "a")],
        start: i64::MIN,
        end: i64::MAX,
        contains: contains.iter().map(|s| s.to_string()).collect(),
        matches: matches.iter().map(|s| s.to_string()).collect(),
    };
    let run = |s: LogSelect| {
        let mut out = Vec::new();
        store
            .select(&s, &mut |st| {
                out.extend(st.entries.into_iter().map(|e| e.ts));
                true
            })
            .unwrap();
        out
    };
    assert_eq!(run(sel(&[" 5[0-9]{2}$"], &[])), vec![2, 3, 4]);
    assert_eq!(run(sel(&[" 5[0-9]{2}$"], &["GET"])), vec![2, 4]);
    // A pattern the store cannot compile narrows nothing.
    assert_eq!(run(sel(&["(unclosed"], &[])).len(), 4);
}

#[test]
fn inspect_reads_segments_and_wal_without_changing_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let line = "GET /index.html 200 ".repeat(10);
    let lines: Vec<(i64, &str)> = (0..1000)
        .map(|i| (1_700_000_000_000_000_000 + i, line.as_str()))
        .collect();
    store.append(batch("a", &lines)).unwrap();
    store.flush().unwrap();
    store.append(batch("b", &[(5, "in the WAL")])).unwrap();
    let before = dir_bytes(dir.path());
    let r = crate::inspect(dir.path()).unwrap();
    assert_eq!(dir_bytes(dir.path()), before);
    assert_eq!(r.segments.len(), 1);
    let s = &r.segments[0];
    assert_eq!((s.streams, s.entries), (1, 1000));
    assert_eq!(s.line_bytes, 1000 * line.len() as u64);
    assert!(
        s.file_bytes < s.line_bytes / 10,
        "{} of {}",
        s.file_bytes,
        s.line_bytes
    );
    assert_eq!(r.streams, 1);
    assert!(r.wal_bytes > 0);
    let text = r.to_string();
    assert!(text.contains("2023-11-14T22:13:20Z"), "{text}");
    assert!(text.contains("1 segments, 1 streams"), "{text}");
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let err = Store::open(dir.path(), opts())
        .err()
        .expect("second open must fail");
    assert!(
        matches!(
            err,
            LogsError::Storage(skopos_storage::Error::Locked { .. })
        ),
        "{err}"
    );
    drop(store);
    Store::open(dir.path(), opts()).unwrap();
}

#[test]
fn delete_removes_matching_lines_for_good_and_frees_disk() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<(i64, String)> = (0..20_000)
        .map(|i| (i, format!("request {i} secret={:08x} done", i * 7919)))
        .collect();
    let lines: Vec<(i64, &str)> = big.iter().map(|(t, l)| (*t, l.as_str())).collect();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        store.append(batch("a", &lines)).unwrap();
        store.append(batch("b", &[(5, "bee secret")])).unwrap();
        store.flush().unwrap();
        // Still in the head and the WAL when the delete comes.
        store
            .append(batch("a", &[(30_000, "late secret")]))
            .unwrap();
        store.append(batch("c", &[(1, "only c")])).unwrap();
        let before = dir_bytes(&dir.path().join("segments"));
        let a = [Matcher::equal("app", "a")];
        // Nothing matches: nothing is rewritten.
        let none = store
            .delete(&a, 0, i64::MAX, &|e| e.line.contains("absent"))
            .unwrap();
        assert_eq!(none.entries, 0);
        assert_eq!(none.segments_rewritten, 0);
        let got = store
            .delete(&a, 10_000, i64::MAX, &|e| e.line.contains("secret"))
            .unwrap();
        assert_eq!(got.entries, 10_001);
        assert!(got.bytes_freed > 0, "{got:?}");
        assert!(dir_bytes(&dir.path().join("segments")) < before);
        let left = all(&store, "a");
        assert_eq!(left.len(), 10_000);
        assert!(left.iter().all(|(t, _)| *t < 10_000));
        // Other streams and the lines outside the range are untouched.
        assert_eq!(all(&store, "b"), vec![(5, "bee secret".to_string())]);
        assert_eq!(all(&store, "c"), vec![(1, "only c".to_string())]);
        // A stream deleted whole leaves no segment behind for it.
        let gone = store
            .delete(&[Matcher::equal("app", "c")], 0, i64::MAX, &|_| true)
            .unwrap();
        assert_eq!(gone.entries, 1);
        assert!(all(&store, "c").is_empty());
    }
    // Nothing comes back from the WAL or an old segment after a restart.
    let store = Store::open(dir.path(), opts()).unwrap();
    let left = all(&store, "a");
    assert_eq!(left.len(), 10_000);
    assert_eq!(left[9_999], big[9_999]);
    assert!(all(&store, "c").is_empty());
    assert_eq!(all(&store, "b").len(), 1);
    assert!(select(&store, "a", 0, i64::MAX, &["late"]).is_empty());
}

#[test]
fn delete_requests_are_kept_in_the_store_across_restarts_and_torn_appends() {
    let dir = tempfile::tempdir().unwrap();
    let a = [Matcher::equal("app", "a")];
    let history = dir.path().join("delete_requests");
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        assert!(store.delete_requests().unwrap().is_empty());
        store
            .append(batch("a", &[(1, "x secret"), (2, "y"), (3, "z secret")]))
            .unwrap();
        let first = store
            .delete_request(
                r#"{app="a"} |= "secret""#,
                &a,
                0,
                10,
                &|e| e.line.contains("secret"),
                100,
            )
            .unwrap();
        assert_eq!(first.processed.as_ref().unwrap().1.entries, 2);
        // The clock did not move: the id still does.
        let second = store
            .delete_request(r#"{app="a"}"#, &a, 5, 6, &|_| true, 100)
            .unwrap();
        assert!(second.id > first.id, "{second:?} after {first:?}");
        assert_eq!(all(&store, "a"), vec![(2, "y".to_string())]);
    }
    let good_len = std::fs::metadata(&history).unwrap().len();
    // A crash inside the next append leaves half a record.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&history)
        .unwrap();
    std::io::Write::write_all(&mut f, &[40, 0, 0, 0, 1, 2]).unwrap();
    drop(f);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(
        std::fs::metadata(&history).unwrap().len(),
        good_len,
        "torn tail not cut"
    );
    let listed = store.delete_requests().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].query, r#"{app="a"} |= "secret""#);
    assert_eq!(
        (listed[0].start, listed[0].end, listed[0].created),
        (0, 10, 100)
    );
    assert_eq!(listed[0].status(), "processed");
    assert_eq!(listed[1].processed.as_ref().unwrap().1.entries, 0);
    // An imported request and one a crash left received only.
    let imported = DeleteRequest {
        id: 7,
        query: "{app=\"old\"}".into(),
        start: 1,
        end: 2,
        created: 3,
        processed: None,
    };
    // Imported twice (a crash before the old file was removed): kept once.
    for _ in 0..2 {
        store
            .import_delete_requests(std::slice::from_ref(&imported))
            .unwrap();
    }
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    let listed = store.delete_requests().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], imported);
    assert_eq!(listed[2].status(), "received");
    let next = store
        .delete_request("{app=\"a\"}", &a, 0, 1, &|_| false, 1)
        .unwrap();
    assert!(next.id > listed[1].id, "ids stay unique after a restart");
}

#[test]
fn older_segment_versions_still_read_beside_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<LogEntry> = (0..3000)
        .map(|i| {
            let mut e = LogEntry::new(
                1_000 + i * 7,
                format!("old line {i} id=ab{i:04}cdef0123456789 naïve-crème-brûlée-longer"),
            );
            if i % 100 == 0 {
                e.metadata = Labels::from_pairs([("trace_id", format!("t{i}"))]);
            }
            e
        })
        .collect();
    let l = labels("a");
    std::fs::create_dir_all(dir.path().join("segments")).unwrap();
    crate::segment::write_version(
        &dir.path().join("segments"),
        "000000000001.seg",
        0,
        &[(&l, &lines)],
        1,
    )
    .unwrap();
    let c = labels("c");
    crate::segment::write_version(
        &dir.path().join("segments"),
        "000000000002.seg",
        0,
        &[(&c, &lines)],
        2,
    )
    .unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store.append(batch("a", &[(5, "new line")])).unwrap();
    store.flush().unwrap();
    let got = all(&store, "a");
    assert_eq!(got.len(), 3001);
    assert_eq!(got[0], (5, "new line".to_string()));
    assert_eq!(
        got[1],
        (
            1_000,
            "old line 0 id=ab0000cdef0123456789 naïve-crème-brûlée-longer".to_string()
        )
    );
    // The token index and the metadata of the old layout work too.
    assert_eq!(select(&store, "a", 0, i64::MAX, &["ab2999cd"]).len(), 1);
    let sel = LogSelect {
        matchers: vec![Matcher::equal("app", "a")],
        start: 0,
        end: i64::MAX,
        contains: Vec::new(),
        matches: Vec::new(),
    };
    let entries = |sel: &LogSelect| {
        let mut out = Vec::new();
        store
            .select(sel, &mut |s| {
                out.extend(s.entries);
                true
            })
            .unwrap();
        out
    };
    let old = entries(&sel);
    assert_eq!(old.iter().filter(|e| !e.metadata.is_empty()).count(), 30);
    // The same entries through today's layout come back identical,
    // metadata included.
    store
        .append(LogBatch {
            streams: vec![LogStream {
                labels: labels("b"),
                entries: lines.clone(),
            }],
        })
        .unwrap();
    store.flush().unwrap();
    let new = entries(&LogSelect {
        matchers: vec![Matcher::equal("app", "b")],
        ..sel.clone()
    });
    assert_eq!(new, lines);
    assert_eq!(&old[1..], &lines[..]);
    let v2 = entries(&LogSelect {
        matchers: vec![Matcher::equal("app", "c")],
        ..sel.clone()
    });
    assert_eq!(v2, lines);
}

#[test]
fn close_flushes_the_head_to_a_segment_and_refuses_later_appends() {
    use skopos_model::Lifecycle;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store.append(batch("a", &[(1, "one"), (2, "two")])).unwrap();
    Lifecycle::close(&store).unwrap();
    assert_eq!(store.stats().head_entries, 0);
    assert_eq!(store.stats().segments.len(), 1);
    let err = store.append(batch("a", &[(3, "late")])).unwrap_err();
    assert!(
        matches!(
            err,
            LogsError::Storage(skopos_storage::Error::Closed { .. })
        ),
        "{err}"
    );
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&store, "a").len(), 2);
    assert_eq!(store.maintenance(i64::MAX).unwrap(), Default::default());
}
