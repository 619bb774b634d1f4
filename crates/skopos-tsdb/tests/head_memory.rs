//! The head's memory, measured: this test binary's global allocator counts
//! the bytes live on the heap, so the figures below are what the head
//! really holds (series, interned labels, postings, chunks, the WAL's
//! buffers), not an estimate the store computes about itself. The
//! benchmark (BENCHMARKS.md, "resident memory per active series") measures
//! the same through the server's RSS, allocator overhead included.
//!
//! One test in this binary, so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use skopos_model::{Labels, Matcher, Sample, WriteBatch};
use skopos_tsdb::{Db, FsyncPolicy, Options};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const T0: i64 = 1_700_000_000_000;

fn opts() -> Options {
    Options {
        wal_fsync: FsyncPolicy::Never,
        retention_time: None,
        max_exemplars: 0,
        ..Options::default()
    }
}

/// 2 000 node-exporter-like series (10 labels) with 240 samples each (an
/// hour at 15 s): mostly counters, some fractional gauges.
fn node_series(db: &Db) -> usize {
    let n_series = 2000;
    for step in 0..240i64 {
        let mut b = WriteBatch::default();
        for s in 0..n_series {
            let labels = Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("instance", format!("10.0.{}.{}:9100", s / 250, s % 250)),
                ("job", "node".into()),
                ("cpu", (s % 16).to_string()),
                ("mode", ["idle", "user", "system", "iowait"][s % 4].into()),
                ("region", "eu-west-1".into()),
                ("zone", "eu-west-1a".into()),
                ("env", "production".into()),
                ("team", "platform".into()),
                ("cluster", "main".into()),
            ]);
            let v = if s % 5 == 0 {
                ((step * 7 + s as i64) % 50) as f64 * 0.25
            } else {
                (step * (s as i64 % 13 + 1) * 10 + (step * step) % 7) as f64
            };
            b.push(labels, Sample::new(T0 + step * 15_000 + (s as i64 % 3), v));
        }
        db.append(&b).unwrap();
    }
    n_series
}

#[test]
fn head_memory_measured_on_the_heap() {
    // Per series: under a kilobyte for 10 labels and an hour of samples
    // (the label strings are interned, the samples compressed); 999 bytes
    // when this was written.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let before = live();
    let n = node_series(&db);
    let per_series = (live() - before) / n as isize;
    eprintln!("head heap: {per_series} bytes per series (10 labels, 240 samples)");
    assert!(
        (100..1024).contains(&per_series),
        "{per_series} bytes per series"
    );
    drop(db);

    // 1 000 samples of one series, arriving out of order, end up sealed
    // into compressed chunks: fewer bytes than the 16 000 they would take
    // as plain `Sample`s in a buffer (11 966 when this was written: the
    // scrambled order leaves irregular time deltas in every chunk).
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let before = live();
    let l = Labels::from_pairs([("__name__", "late")]);
    let mut b = WriteBatch::default();
    b.push(l.clone(), Sample::new(T0 + 600_000, -1.0));
    db.append(&b).unwrap();
    let one = live();
    eprintln!(
        "the series and its first sample: {} heap bytes",
        one - before
    );
    let order: Vec<i64> = (0..1000).map(|i| (i * 7919) % 1000).collect();
    for chunk in order.chunks(50) {
        let mut b = WriteBatch::default();
        for i in chunk {
            b.push(l.clone(), Sample::new(T0 + i * 500, *i as f64 / 10.0));
        }
        db.append(&b).unwrap();
    }
    let bytes = live() - one;
    eprintln!("1000 more out-of-order samples: {bytes} heap bytes");
    assert!(bytes < 14_000, "{bytes} bytes for 1000 samples");
    let got = db
        .select(&[Matcher::equal("__name__", "late")], T0, T0 + 600_000)
        .unwrap();
    assert_eq!(got[0].samples.len(), 1001);
}
