//! Store-level tests: round trips through head, WAL and segments, lookups
//! across parts, hinted against unhinted search, limits, faults.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use skopos_model::{
    AttrValue, Attribute, Resource, Scope, Span, SpanBatch, SpanField, SpanKind, StatusCode, Trace,
    TraceId, TraceQueryable, TraceSelect,
};

use crate::codec::tests::full_span;
use crate::query::trace_matches;
use crate::{Options, Store};

fn opts() -> Options {
    Options {
        fsync: false,
        block_bytes: 4 << 10,
        // Small, so that `user` (50 values) overflows to the block filters.
        index_values_per_key: 20,
        ..Options::default()
    }
}

fn batch(spans: Vec<Span>) -> SpanBatch {
    SpanBatch { spans }
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| (s.start_ns, s.span_id));
    spans
}

fn everything() -> TraceSelect {
    TraceSelect {
        start: i64::MIN,
        end: i64::MAX,
        ..TraceSelect::default()
    }
}

fn all_traces(store: &Store, sel: &TraceSelect) -> Vec<Trace> {
    let mut out = Vec::new();
    store
        .search(sel, &mut |t| {
            out.push(t);
            true
        })
        .unwrap();
    out
}

#[test]
fn every_field_round_trips_through_head_wal_replay_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spans: Vec<Span> = (1..=4u8)
        .flat_map(|t| {
            (1..=5u8).map(move |s| full_span(t, s, 1_000_000 * i64::from(t) + i64::from(s)))
        })
        .collect();
    let want = |t: u8| {
        sorted(
            spans
                .iter()
                .filter(|s| s.trace_id == [t; 16])
                .cloned()
                .collect(),
        )
    };
    let check = |store: &Store, stage: &str| {
        for t in 1..=4u8 {
            let got = store.trace(&[t; 16]).unwrap().expect(stage);
            assert_eq!(got.spans, want(t), "{stage}: trace {t}");
        }
        assert!(store.trace(&[99; 16]).unwrap().is_none());
    };
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        let a = store.append(batch(spans.clone())).unwrap();
        assert_eq!(a.spans, spans.len());
        assert_eq!((a.rejected, a.duplicates, a.truncated), (0, 0, 0));
        check(&store, "head");
    }
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        check(&store, "WAL replay");
        store.flush().unwrap();
        assert_eq!(store.stats().head_spans, 0);
        assert_eq!(store.stats().segment_spans(), spans.len() as u64);
        check(&store, "segments");
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    check(&store, "segments after reopen");
    // Searching finds the same whole traces.
    let found = all_traces(&store, &everything());
    assert_eq!(found.len(), 4);
    for t in found {
        assert_eq!(t.spans, want(t.trace_id[0]));
    }
}

#[test]
fn trace_by_id_merges_head_and_several_segments_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let mut want = Vec::new();
    for round in 0..4u8 {
        let spans: Vec<Span> = (0..3u8)
            .map(|i| full_span(5, round * 10 + i + 1, i64::from(round) * 100 + i64::from(i)))
            .collect();
        want.extend(spans.clone());
        // Other traces around it.
        store
            .append(batch(vec![
                full_span(round + 20, 1, 7),
                full_span(round + 20, 2, 8),
            ]))
            .unwrap();
        store.append(batch(spans)).unwrap();
        if round < 3 {
            store.flush().unwrap();
        }
    }
    assert_eq!(store.stats().segments.len(), 3);
    // A retried export of a span already in a segment is not doubled.
    store.append(batch(vec![want[0].clone()])).unwrap();
    let got = store.trace(&[5; 16]).unwrap().unwrap();
    assert_eq!(got.spans, sorted(want.clone()));
    let blocks_before = store.stats().blocks_read;
    store.trace(&[5; 16]).unwrap();
    assert_eq!(
        store.stats().blocks_read - blocks_before,
        3,
        "one block per segment"
    );
    // Search hands the split trace out once, whole, whatever part matched.
    let sel = TraceSelect {
        equals: vec![(SpanField::Name, "op-31".into())],
        ..everything()
    };
    let found = all_traces(&store, &sel);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].spans, sorted(want.clone()));
    let all = all_traces(&store, &everything());
    assert_eq!(all.len(), 5);
    assert_eq!(all.iter().filter(|t| t.trace_id == [5; 16]).count(), 1);
    // And after a restart, with the WAL replayed over the segments.
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.trace(&[5; 16]).unwrap().unwrap().spans, sorted(want));
}

/// A deterministic pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const SERVICES: [&str; 4] = ["api", "db", "cache", "auth"];
const NAMES: [&str; 5] = ["GET /a", "GET /b", "query", "set", "login"];

/// `n` traces of 3–8 spans with unique start times, the i-th starting at
/// `base + i * 1000`.
fn generate(n: usize, seed: u64) -> Vec<Vec<Span>> {
    let mut rng = Rng(seed);
    let resources: Vec<Arc<Resource>> = (0..SERVICES.len() * 3)
        .map(|i| {
            Arc::new(Resource {
                attributes: vec![
                    Attribute::str("service.name", SERVICES[i % SERVICES.len()]),
                    Attribute::str("host.name", format!("h{}", i / SERVICES.len())),
                ],
                dropped_attributes: 0,
            })
        })
        .collect();
    let scope = Arc::new(Scope::default());
    (0..n)
        .map(|i| {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(seed * 1_000_000 + i as u64 + 1).to_be_bytes());
            trace_id[8] = 0xab;
            let len = 3 + rng.below(6) as usize;
            (0..len)
                .map(|j| {
                    let start = 1_000_000 + i as i64 * 1000 + j as i64 * 10;
                    let mut span_id = [0u8; 8];
                    span_id[..4].copy_from_slice(&(i as u32).to_be_bytes());
                    span_id[4] = j as u8 + 1;
                    Span {
                        trace_id,
                        span_id,
                        parent_span_id: None,
                        trace_state: String::new(),
                        flags: 1,
                        name: NAMES[rng.below(5) as usize].into(),
                        kind: SpanKind::from_i32(rng.below(6) as i32).unwrap(),
                        start_ns: start,
                        end_ns: start + 1 + rng.below(1_000_000) as i64,
                        attributes: vec![
                            Attribute::new(
                                "http.status_code",
                                AttrValue::Int([200, 404, 500][rng.below(3) as usize]),
                            ),
                            Attribute::str("user", format!("u{}", rng.below(50))),
                        ],
                        dropped_attributes: 0,
                        events: Vec::new(),
                        dropped_events: 0,
                        links: Vec::new(),
                        dropped_links: 0,
                        status: StatusCode::from_i32(rng.below(3) as i32).unwrap(),
                        status_message: String::new(),
                        resource: resources[rng.below(resources.len() as u64) as usize].clone(),
                        scope: scope.clone(),
                    }
                })
                .map(|mut s: Span| {
                    if i % 60 == 7 && s.span_id[4] == 2 {
                        s.attributes.push(Attribute::str("rare", "yes"));
                    }
                    if i % 40 == 3 {
                        let long = format!("{}{}", "x".repeat(300), i % 3);
                        s.attributes.push(Attribute::str("long", long));
                    }
                    s
                })
                .collect()
        })
        .collect()
}

#[test]
fn hinted_search_returns_what_unhinted_search_does_and_reads_fewer_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let traces = generate(600, 1);
    let mut expected: BTreeMap<TraceId, Vec<Span>> = BTreeMap::new();
    // Four flushes; every seventh trace sends its last span one flush later
    // (split over segments), and the last 50 traces stay in the head.
    let mut late: Vec<Span> = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        expected.insert(t[0].trace_id, sorted(t.clone()));
        let mut spans = t.clone();
        if i % 7 == 0 {
            late.push(spans.pop().unwrap());
        }
        store.append(batch(spans)).unwrap();
        if i % 150 == 149 && i < 550 {
            store.append(batch(std::mem::take(&mut late))).unwrap();
            store.flush().unwrap();
        }
    }
    store.append(batch(late)).unwrap();
    assert!(store.stats().segments.len() >= 3);
    // `user` and `long` are searched through the block filters.
    for seg in &store.parts.read().segments {
        assert!(seg.index[&(b'a', "user".to_string())].overflow);
        assert!(seg.index[&(b'a', "long".to_string())].overflow);
        assert!(!seg.index[&(b'a', "http.status_code".to_string())].overflow);
    }
    assert!(
        store
            .stats()
            .segments
            .iter()
            .map(|s| s.blocks)
            .sum::<usize>()
            > 30
    );
    let full =
        |start: i64, end: i64, equals: Vec<(SpanField, &str)>, min: Option<i64>| TraceSelect {
            start,
            end,
            equals: equals
                .into_iter()
                .map(|(f, v)| (f, v.to_string()))
                .collect(),
            min_span_duration_ns: min,
        };
    let (lo, hi) = (i64::MIN, i64::MAX);
    let long = format!("{}1", "x".repeat(300));
    let cases = vec![
        full(lo, hi, vec![], None),
        full(lo, hi, vec![(SpanField::Name, "login")], None),
        full(
            lo,
            hi,
            vec![
                (SpanField::ServiceName, "auth"),
                (SpanField::SpanAttr("http.status_code".into()), "500"),
            ],
            None,
        ),
        full(
            lo,
            hi,
            vec![(SpanField::ResourceAttr("host.name".into()), "h1")],
            None,
        ),
        full(
            lo,
            hi,
            vec![(SpanField::AnyAttr("host.name".into()), "h2")],
            None,
        ),
        full(
            lo,
            hi,
            vec![(SpanField::AnyAttr("user".into()), "u7")],
            None,
        ),
        full(
            lo,
            hi,
            vec![
                (SpanField::SpanAttr("user".into()), "u7"),
                (SpanField::Kind, "client"),
            ],
            None,
        ),
        full(
            lo,
            hi,
            vec![(SpanField::Status, "error"), (SpanField::Name, "set")],
            None,
        ),
        full(lo, hi, vec![], Some(999_000)),
        full(lo, hi, vec![(SpanField::Name, "no such span")], None),
        full(
            lo,
            hi,
            vec![(SpanField::SpanAttr("rare".into()), "yes")],
            None,
        ),
        full(
            lo,
            hi,
            vec![(SpanField::SpanAttr("long".into()), &long)],
            None,
        ),
        full(
            lo,
            hi,
            vec![
                (SpanField::AnyAttr("rare".into()), "yes"),
                (SpanField::Name, "query"),
            ],
            None,
        ),
        full(
            lo,
            hi,
            vec![(SpanField::SpanAttr("no.such.key".into()), "x")],
            None,
        ),
        full(
            1_200_000,
            1_350_000,
            vec![(SpanField::SpanAttr("user".into()), "u3")],
            None,
        ),
        full(1_100_000, 1_500_000, vec![], Some(900_000)),
    ];
    for sel in &cases {
        let plain_sel = TraceSelect {
            equals: Vec::new(),
            min_span_duration_ns: None,
            ..sel.clone()
        };
        let before = store.stats().blocks_read;
        let plain: Vec<Trace> = all_traces(&store, &plain_sel)
            .into_iter()
            .filter(|t| trace_matches(&t.spans, sel))
            .collect();
        let plain_blocks = store.stats().blocks_read - before;
        let before = store.stats().blocks_read;
        let hinted = all_traces(&store, sel);
        let hinted_blocks = store.stats().blocks_read - before;
        assert_eq!(hinted, plain, "{sel:?}");
        // Both agree with the generated data.
        let mut want: Vec<(i64, &Vec<Span>)> = expected
            .values()
            .filter(|s| trace_matches(s, sel))
            .filter_map(|s| {
                s.iter()
                    .map(|x| x.start_ns)
                    .filter(|&t| t >= sel.start && t < sel.end)
                    .min()
                    .map(|k| (k, s))
            })
            .collect();
        want.sort_by_key(|w| std::cmp::Reverse(w.0));
        let want: Vec<&Vec<Span>> = want.into_iter().map(|w| w.1).collect();
        let got: Vec<&Vec<Span>> = hinted.iter().map(|t| &t.spans).collect();
        assert_eq!(got, want, "{sel:?}");
        assert!(hinted_blocks <= plain_blocks, "{sel:?}");
        if sel
            .equals
            .iter()
            .any(|(_, v)| v == "yes" || v == "no such span" || v == &long)
        {
            assert!(
                hinted_blocks * 2 < plain_blocks,
                "{sel:?}: {hinted_blocks} blocks read with hints, {plain_blocks} without"
            );
        }
    }
    // A search that stops early reads only the newest blocks.
    let before = store.stats().blocks_read;
    let mut n = 0;
    store
        .search(&everything(), &mut |_| {
            n += 1;
            n < 5
        })
        .unwrap();
    assert_eq!(n, 5);
    assert!(store.stats().blocks_read - before <= 3);
}

#[test]
fn spans_past_the_trace_limit_are_rejected_and_the_trace_keeps_what_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        max_spans_per_trace: 5,
        ..opts()
    };
    let store = Store::open(dir.path(), o.clone()).unwrap();
    let a = store
        .append(batch(
            (1..=3).map(|i| full_span(1, i, i64::from(i))).collect(),
        ))
        .unwrap();
    assert_eq!((a.spans, a.rejected), (3, 0));
    store.flush().unwrap();
    let mut spans: Vec<Span> = (4..=7).map(|i| full_span(1, i, i64::from(i))).collect();
    spans.push(full_span(2, 1, 1));
    spans.push(full_span(0, 1, 1)); // an all-zero trace id
                                    // A span twice in the batch too; the observer sees only what is kept.
    spans.push(full_span(1, 4, 4));
    let mut observed = Vec::new();
    let a = store
        .append_observed(batch(spans), &mut |kept| {
            observed.extend(kept.spans.iter().map(|s| (s.trace_id[0], s.span_id[0])));
        })
        .unwrap();
    assert_eq!((a.spans, a.rejected, a.duplicates), (3, 3, 1), "{a:?}");
    assert_eq!(observed, [(1, 4), (1, 5), (2, 1)]);
    let why = a.reject_reason.unwrap();
    assert!(why.contains("limit of 5 spans per trace"), "{why}");
    assert!(why.contains(&"01".repeat(16)), "{why}");
    let got = store.trace(&[1; 16]).unwrap().unwrap();
    assert_eq!(
        got.spans.iter().map(|s| s.span_id[0]).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // The limit holds over a restart too (segments and replayed WAL).
    drop(store);
    let store = Store::open(dir.path(), o).unwrap();
    let a = store.append(batch(vec![full_span(1, 9, 9)])).unwrap();
    assert_eq!((a.spans, a.rejected), (0, 1));
    assert_eq!(store.trace(&[1; 16]).unwrap().unwrap().spans.len(), 5);
    // A byte limit works the same way.
    let dir = tempfile::tempdir().unwrap();
    let one = crate::codec::encoded_len(&full_span(3, 1, 0));
    let store = Store::open(
        dir.path(),
        Options {
            max_bytes_per_trace: one * 2 + 10,
            ..opts()
        },
    )
    .unwrap();
    let a = store
        .append(batch((1..=4).map(|i| full_span(3, i, 0)).collect()))
        .unwrap();
    assert_eq!((a.spans, a.rejected), (2, 2));
    assert!(a.reject_reason.unwrap().contains("bytes per trace"));
}

#[test]
fn attribute_limits_cut_values_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options {
            max_attributes_per_span: 2,
            max_attribute_value_bytes: 8,
            ..opts()
        },
    )
    .unwrap();
    let mut s = full_span(4, 1, 0);
    s.attributes
        .insert(0, Attribute::str("long", "x".repeat(100)));
    let a = store.append(batch(vec![s, full_span(4, 2, 0)])).unwrap();
    assert_eq!((a.spans, a.truncated), (2, 2));
    let got = store.trace(&[4; 16]).unwrap().unwrap();
    assert_eq!(got.spans[0].attributes.len(), 2);
    assert_eq!(
        got.spans[0].attributes[0].value,
        AttrValue::Str("x".repeat(8))
    );
    assert_eq!(got.spans[0].dropped_attributes, 3 + 6);
}

#[test]
fn tag_names_and_values_come_from_head_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let traces = generate(40, 2);
    for t in &traces[..20] {
        store.append(batch(t.clone())).unwrap();
    }
    store.flush().unwrap();
    let mut s = traces[20][0].clone();
    s.attributes
        .push(Attribute::new("only.in.head", AttrValue::Bool(true)));
    store.append(batch(vec![s])).unwrap();
    let names = store.tag_names(i64::MIN, i64::MAX);
    assert_eq!(
        names.span,
        ["http.status_code", "long", "only.in.head", "rare", "user"]
    );
    assert_eq!(names.resource, ["host.name", "service.name"]);
    let mut codes = store.tag_values(
        &SpanField::SpanAttr("http.status_code".into()),
        i64::MIN,
        i64::MAX,
        100,
    );
    codes.sort_by_key(|v| v.to_text());
    assert_eq!(
        codes,
        [
            AttrValue::Int(200),
            AttrValue::Int(404),
            AttrValue::Int(500)
        ]
    );
    let services = store.tag_values(&SpanField::ServiceName, i64::MIN, i64::MAX, 100);
    assert_eq!(services.len(), 4);
    assert_eq!(
        store
            .tag_values(&SpanField::AnyAttr("user".into()), i64::MIN, i64::MAX, 5)
            .len(),
        5
    );
    assert_eq!(
        store.tag_values(
            &SpanField::AnyAttr("only.in.head".into()),
            i64::MIN,
            i64::MAX,
            5
        ),
        [AttrValue::Bool(true)]
    );
    // Outside every span's time, nothing.
    assert!(store.tag_values(&SpanField::Name, 0, 10, 5).is_empty());
    assert!(store.tag_names(0, 10).span.is_empty());
}

fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn torn_wal_tail_is_truncated_and_the_store_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        for i in 1..=10u8 {
            store.append(batch(vec![full_span(i, 1, 0)])).unwrap();
        }
    }
    let last = wal_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let store = Store::open(dir.path(), opts()).unwrap();
    for i in 1..=9u8 {
        assert!(store.trace(&[i; 16]).unwrap().is_some(), "trace {i}");
    }
    assert!(store.trace(&[10; 16]).unwrap().is_none());
    // And it takes writes again.
    store.append(batch(vec![full_span(10, 1, 0)])).unwrap();
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(store.trace(&[10; 16]).unwrap().is_some());
}

#[test]
fn flush_cut_short_between_renames_is_undone_and_its_wal_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000_000_000i64;
    let spans: Vec<Span> = (1..=3u8)
        .map(|i| full_span(i, 1, i64::from(i) * hour))
        .collect();
    let saved = tempfile::tempdir().unwrap();
    let segs = {
        let store = Store::open(dir.path(), opts()).unwrap();
        store.append(batch(spans.clone())).unwrap();
        for f in wal_files(dir.path()) {
            std::fs::copy(&f, saved.path().join(f.file_name().unwrap())).unwrap();
        }
        store.flush().unwrap();
        assert_eq!(store.stats().segments.len(), 3, "one segment per hour");
        store.stats().segments
    };
    // As if the crash came after the first rename: the WAL is still there,
    // one segment of the group is missing.
    for f in std::fs::read_dir(saved.path()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join("wal").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::remove_file(&segs[2].file).unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let st = store.stats();
    assert_eq!((st.segments.len(), st.head_spans), (0, 3));
    for s in &spans {
        let t = store.trace(&s.trace_id).unwrap().unwrap();
        assert_eq!(t.spans, vec![s.clone()]);
    }
}

#[test]
fn retention_by_time_and_by_size_frees_disk() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000_000_000i64;
    let disk = |p: &Path| -> u64 {
        std::fs::read_dir(p.join("segments"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let fill = |store: &Store| {
        for h in 0..6i64 {
            let spans: Vec<Span> = generate(30, h as u64 + 10)
                .into_iter()
                .flatten()
                .map(|mut s| {
                    s.start_ns += h * hour;
                    s.end_ns += h * hour;
                    s
                })
                .collect();
            store.append(batch(spans)).unwrap();
            store.flush().unwrap();
        }
    };
    let store = Store::open(
        dir.path(),
        Options {
            retention_ns: Some(3 * hour),
            ..opts()
        },
    )
    .unwrap();
    fill(&store);
    assert_eq!(store.stats().segments.len(), 6);
    let before = disk(dir.path());
    let r = store.apply_retention(6 * hour).unwrap();
    assert_eq!(r.segments_deleted, 3);
    let after = disk(dir.path());
    assert!(
        after < before && before - after == r.bytes_freed,
        "{before} {after} {r:?}"
    );
    assert!(store
        .stats()
        .segments
        .iter()
        .all(|s| s.min_start >= 3 * hour));
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    fill(&store);
    let total = disk(dir.path());
    drop(store);
    let store = Store::open(
        dir.path(),
        Options {
            retention_bytes: Some(total / 2),
            ..opts()
        },
    )
    .unwrap();
    let r = store.apply_retention(0).unwrap();
    assert!(r.segments_deleted >= 3);
    assert!(disk(dir.path()) <= total / 2);
    // The newest survive.
    assert!(store
        .stats()
        .segments
        .iter()
        .any(|s| s.max_start >= 5 * hour));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let err = Store::open(dir.path(), opts()).err().expect("refused");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(store);
    Store::open(dir.path(), opts()).unwrap();
}

const CRASH_DIR: &str = "SKOPOS_TRACES_CRASH_DIR";

/// The spans of batch `i` of the crash test: two new traces, and one span
/// of a trace that runs over many batches (and so over flushes).
fn crash_batch(i: u32) -> Vec<Span> {
    let mut spans = Vec::new();
    for t in 0..2u32 {
        let mut trace = [0u8; 16];
        trace[..4].copy_from_slice(&(i * 2 + t + 1).to_be_bytes());
        for s in 1..=4u8 {
            let mut span = full_span(1, s, i64::from(i) * 1000 + i64::from(s));
            span.trace_id = trace;
            spans.push(span);
        }
    }
    let mut long = full_span(0xee, 1, i64::from(i) * 1000);
    long.span_id[..4].copy_from_slice(&(i + 1).to_be_bytes());
    spans.push(long);
    spans
}

/// Not a test by itself: the child process of the SIGKILL test, which runs
/// this with `SKOPOS_TRACES_CRASH_DIR` set and appends until killed,
/// printing each acknowledged batch.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let store = Store::open(
        Path::new(&dir),
        Options {
            fsync: false,
            head_max_bytes: 200 << 10,
            ..opts()
        },
    )
    .unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        store.append(batch(crash_batch(i))).unwrap();
        writeln!(out, "acked {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_mid_ingest_loses_no_acknowledged_span() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "tests::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut last = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("acked ") {
                last = Some(n.trim().parse::<u32>().unwrap());
            }
        }
        last
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let last = reader
        .join()
        .unwrap()
        .expect("the child acknowledged batches");
    assert!(last > 20, "the child had time to write only {last} batches");
    let t0 = std::time::Instant::now();
    let store = Store::open(dir.path(), opts()).unwrap();
    eprintln!("last {last}, open took {:?}", t0.elapsed());
    assert!(
        !store.stats().segments.is_empty(),
        "the child should have flushed at least once"
    );
    let t0 = std::time::Instant::now();
    let mut stored: std::collections::HashMap<(TraceId, skopos_model::SpanId), Span> =
        std::collections::HashMap::new();
    for t in all_traces(&store, &everything()) {
        for s in t.spans {
            stored.insert((s.trace_id, s.span_id), s);
        }
    }
    eprintln!("search of {} spans took {:?}", stored.len(), t0.elapsed());
    for i in 0..=last {
        for s in crash_batch(i) {
            assert_eq!(
                stored.get(&(s.trace_id, s.span_id)),
                Some(&s),
                "batch {i}: span lost"
            );
        }
    }
    // The long trace, over many segments, is whole by id too.
    let long = store.trace(&[0xee; 16]).unwrap().unwrap();
    assert!(
        long.spans.len() > last as usize,
        "{} spans",
        long.spans.len()
    );
}

#[test]
fn spans_are_readable_the_moment_append_returns_even_while_flushing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            dir.path(),
            Options {
                head_max_bytes: 48 << 10,
                ..opts()
            },
        )
        .unwrap(),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searcher = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut searches = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let mut keys = Vec::new();
                let mut ids = std::collections::HashSet::new();
                store
                    .search(&everything(), &mut |t| {
                        assert!(ids.insert(t.trace_id), "a trace handed out twice");
                        keys.push(t.spans[0].start_ns);
                        keys.len() < 50
                    })
                    .unwrap();
                assert!(keys.windows(2).all(|w| w[0] >= w[1]), "not newest first");
                searches += 1;
            }
            searches
        })
    };
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..150u32 {
                    let mut spans = crash_batch(w * 100_000 + i);
                    spans.pop(); // the long trace, shared between writers
                    store.append(batch(spans.clone())).unwrap();
                    for s in &spans {
                        let t = store.trace(&s.trace_id).unwrap().expect("readable at once");
                        assert!(t.spans.contains(s), "writer {w} batch {i}");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(searcher.join().unwrap() > 0);
    let st = store.stats();
    assert!(st.segments.len() >= 2, "flushes happened: {st:?}");
    assert_eq!(st.segment_spans() + st.head_spans as u64, 2 * 150 * 8);
}

#[test]
fn a_corrupt_segment_block_is_an_error_naming_the_file_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store
        .append(batch((1..=5).map(|i| full_span(1, i, 0)).collect()))
        .unwrap();
    store.flush().unwrap();
    let file = store.stats().segments[0].file.clone();
    drop(store);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 0x55; // inside the first block
    std::fs::write(&file, &bytes).unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let err = store.trace(&[1; 16]).unwrap_err().to_string();
    assert!(err.contains("checksum") && err.contains(".seg"), "{err}");
    drop(store);
    // A damaged footer is refused on open, with the file named.
    let n = bytes.len();
    bytes[n - 40] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let err = Store::open(dir.path(), opts())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains(".seg") && err.contains("corrupt"), "{err}");
}

#[test]
fn close_flushes_the_head_to_segments_and_refuses_later_appends() {
    use skopos_model::Lifecycle;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store
        .append(batch(vec![full_span(1, 1, 10), full_span(1, 2, 20)]))
        .unwrap();
    Lifecycle::close(&store).unwrap();
    assert_eq!(store.stats().head_spans, 0);
    assert_eq!(store.stats().segments.len(), 1);
    assert!(store.append(batch(vec![full_span(2, 1, 30)])).is_err());
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    let id = full_span(1, 1, 10).trace_id;
    let trace = skopos_model::TraceQueryable::trace(&store, &id).unwrap();
    assert_eq!(trace.unwrap().spans.len(), 2);
}
