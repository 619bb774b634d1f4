//! The span store on its own (issue 5, section 6): appends N spans of a
//! realistic shape (a handful of services, 3–20 spans per trace, ~10
//! attributes per span, batches the size of an OTLP export) straight into
//! a `Store`, then reports append throughput per core, stored bytes per
//! span, trace-by-id latency over random ids and search latencies.
//!
//! `cargo bench -p skopos-traces --bench store -- [--spans N] [--batch N]
//! [--fsync] [--dir PATH]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skopos_model::{
    AttrValue, Attribute, Resource, Scope, Span, SpanBatch, SpanEvent, SpanField, SpanKind,
    StatusCode, TraceId, TraceSelect,
};
use skopos_traces::{Options, Store};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SERVICES: [&str; 6] = [
    "frontend", "checkout", "cart", "payment", "shipping", "users",
];
const ROUTES: [&str; 8] = [
    "/api/cart",
    "/api/checkout",
    "/api/products/{id}",
    "/api/users/{id}",
    "/api/orders",
    "/healthz",
    "/api/shipping/quote",
    "/api/payment/charge",
];
const DB_OPS: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

fn resource(service: &str, host: usize) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            Attribute::str("service.name", service),
            Attribute::str("service.version", "1.4.2"),
            Attribute::str("deployment.environment", "production"),
            Attribute::str("host.name", format!("node-{host:02}")),
            Attribute::str("telemetry.sdk.language", "python"),
            Attribute::str("telemetry.sdk.name", "opentelemetry"),
        ],
        dropped_attributes: 0,
    })
}

/// One trace of 3–20 spans starting at `start`.
fn trace(rng: &mut Rng, start: i64, resources: &[Arc<Resource>], scope: &Arc<Scope>) -> Vec<Span> {
    let mut id: TraceId = [0; 16];
    id[..8].copy_from_slice(&rng.next().to_le_bytes());
    id[8..].copy_from_slice(&rng.next().to_le_bytes());
    let n = 3 + rng.below(18) as usize;
    let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
    let user = format!("user-{}", rng.below(100_000));
    let mut spans: Vec<Span> = Vec::with_capacity(n);
    let total = 1_000_000 + rng.below(200_000_000) as i64;
    for j in 0..n {
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&rng.next().to_le_bytes());
        let parent = if j == 0 {
            None
        } else {
            Some(spans[rng.below(j as u64) as usize].span_id)
        };
        let offset = if j == 0 {
            0
        } else {
            rng.below(total as u64 / 2) as i64
        };
        let dur = if j == 0 {
            total
        } else {
            1 + rng.below((total - offset) as u64) as i64
        };
        let svc = if j == 0 {
            0
        } else {
            rng.below(SERVICES.len() as u64) as usize
        };
        let error = rng.below(50) == 0;
        let code = if error {
            500
        } else {
            [200, 200, 200, 201, 404][rng.below(5) as usize]
        };
        let (name, kind, attributes) = if j == 0 || rng.below(3) == 0 {
            (
                format!("GET {route}"),
                if j == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                },
                vec![
                    Attribute::str("http.request.method", "GET"),
                    Attribute::str("http.route", route),
                    Attribute::new("http.response.status_code", AttrValue::Int(code)),
                    Attribute::str("url.scheme", "http"),
                    Attribute::str("server.address", SERVICES[svc]),
                    Attribute::new("server.port", AttrValue::Int(8080)),
                    Attribute::str("user_agent.original", "python-requests/2.31.0"),
                    Attribute::str("enduser.id", user.clone()),
                    Attribute::str("network.protocol.version", "1.1"),
                    Attribute::new(
                        "http.request.body.size",
                        AttrValue::Int(rng.below(4096) as i64),
                    ),
                ],
            )
        } else {
            let op = DB_OPS[rng.below(4) as usize];
            (
                format!("{op} shop.orders"),
                SpanKind::Client,
                vec![
                    Attribute::str("db.system", "postgresql"),
                    Attribute::str("db.name", "shop"),
                    Attribute::str("db.operation", op),
                    Attribute::str("db.sql.table", "orders"),
                    Attribute::str(
                        "db.statement",
                        format!(
                            "{op} * FROM orders WHERE user_id = $1 LIMIT {}",
                            rng.below(100)
                        ),
                    ),
                    Attribute::str("server.address", "db-primary"),
                    Attribute::new("server.port", AttrValue::Int(5432)),
                    Attribute::str("db.user", "app"),
                    Attribute::new("db.rows", AttrValue::Int(rng.below(500) as i64)),
                    Attribute::str("enduser.id", user.clone()),
                ],
            )
        };
        let events = if error {
            vec![SpanEvent {
                time_ns: start + offset + dur / 2,
                name: "exception".into(),
                attributes: vec![
                    Attribute::str("exception.type", "TimeoutError"),
                    Attribute::str("exception.message", "upstream timed out after 5s"),
                ],
                dropped_attributes: 0,
            }]
        } else {
            Vec::new()
        };
        spans.push(Span {
            trace_id: id,
            span_id,
            parent_span_id: parent,
            trace_state: String::new(),
            flags: 1,
            name,
            kind,
            start_ns: start + offset,
            end_ns: start + offset + dur,
            attributes,
            dropped_attributes: 0,
            events,
            dropped_events: 0,
            links: Vec::new(),
            dropped_links: 0,
            status: if error {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: if error {
                "timeout".into()
            } else {
                String::new()
            },
            resource: resources[svc * 4 + rng.below(4) as usize].clone(),
            scope: scope.clone(),
        });
    }
    spans
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() {
    let mut spans_wanted = 1_000_000usize;
    let mut batch_spans = 1000usize;
    let mut fsync = false;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--spans" => {
                spans_wanted = args.next().and_then(|v| v.parse().ok()).expect("--spans N")
            }
            "--batch" => batch_spans = args.next().and_then(|v| v.parse().ok()).expect("--batch N"),
            "--fsync" => fsync = true,
            "--dir" => dir = args.next().map(PathBuf::from),
            _ => {} // cargo bench passes --bench
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir.unwrap_or_else(|| tmp.path().join("traces"));
    let store = Store::open(
        &dir,
        Options {
            fsync,
            ..Options::default()
        },
    )
    .expect("open");
    let mut rng = Rng(42);
    let resources: Vec<Arc<Resource>> = (0..SERVICES.len() * 4)
        .map(|i| resource(SERVICES[i / 4], i))
        .collect();
    let scope = Arc::new(Scope {
        name: "opentelemetry.instrumentation.requests".into(),
        version: "0.45b0".into(),
        attributes: Vec::new(),
    });
    // One hour of traffic, evenly spread.
    let t0 = 1_700_000_000_000_000_000i64;
    let hour = 3_600_000_000_000i64;
    let per_trace = 11.5;
    let traces_expected = (spans_wanted as f64 / per_trace) as i64;
    let step = hour / traces_expected.max(1);
    let mut ids: Vec<TraceId> = Vec::new();
    let (mut appended, mut gen_traces) = (0usize, 0i64);
    let mut append_time = Duration::ZERO;
    let cpu0 = cpu_time();
    let mut gen_cpu = Duration::ZERO;
    while appended < spans_wanted {
        let g = cpu_time();
        let mut spans = Vec::with_capacity(batch_spans + 20);
        while spans.len() < batch_spans {
            let t = trace(&mut rng, t0 + gen_traces * step, &resources, &scope);
            if gen_traces % 97 == 0 {
                ids.push(t[0].trace_id);
            }
            gen_traces += 1;
            spans.extend(t);
        }
        gen_cpu += cpu_time() - g;
        let n = spans.len();
        let at = Instant::now();
        let a = store.append(SpanBatch { spans }).expect("append");
        append_time += at.elapsed();
        assert_eq!(a.spans, n, "{a:?}");
        appended += n;
    }
    let at = Instant::now();
    store.flush().expect("flush");
    append_time += at.elapsed();
    let store_cpu = cpu_time() - cpu0 - gen_cpu;
    let stats = store.stats();
    println!(
        "appended {appended} spans ({gen_traces} traces) in batches of ~{batch_spans}, fsync {fsync}"
    );
    println!(
        "append: {:.0} spans/s wall, {:.0} spans/s per CPU second ({:.2}s wall, {:.2}s CPU)",
        appended as f64 / append_time.as_secs_f64(),
        appended as f64 / store_cpu.as_secs_f64(),
        append_time.as_secs_f64(),
        store_cpu.as_secs_f64()
    );
    println!(
        "stored: {} segments, {} bytes, {:.1} bytes/span (raw encoded {:.1} bytes/span)",
        stats.segments.len(),
        stats.segment_bytes(),
        stats.bytes_per_span(),
        stats.segments.iter().map(|s| s.raw_bytes).sum::<u64>() as f64
            / stats.segment_spans().max(1) as f64
    );
    // Reopen, so lookups read from disk-backed segments as after a restart.
    drop(store);
    let at = Instant::now();
    let store = Store::open(&dir, Options::default()).expect("reopen");
    println!("reopen: {:.1} ms", at.elapsed().as_secs_f64() * 1e3);
    let mut lat = Vec::new();
    for _ in 0..2000 {
        let id = ids[rng.below(ids.len() as u64) as usize];
        let at = Instant::now();
        let t = store.trace_by_id(&id).expect("trace").expect("found");
        lat.push(at.elapsed());
        assert!(t.spans.len() >= 3);
    }
    lat.sort();
    println!(
        "trace by id ({} lookups): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        lat.len(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    let whole = TraceSelect {
        start: t0,
        end: t0 + hour,
        ..TraceSelect::default()
    };
    let searches: Vec<(&str, TraceSelect, usize)> = vec![
        (
            "service=payment name=\"GET /api/payment/charge\", limit 20",
            TraceSelect {
                equals: vec![
                    (SpanField::ServiceName, "payment".into()),
                    (SpanField::Name, "GET /api/payment/charge".into()),
                ],
                ..whole.clone()
            },
            20,
        ),
        (
            "status=error, limit 20",
            TraceSelect {
                equals: vec![(SpanField::Status, "error".into())],
                ..whole.clone()
            },
            20,
        ),
        (
            "span.enduser.id=user-4242 (rare), limit 20, over the hour",
            TraceSelect {
                equals: vec![(SpanField::SpanAttr("enduser.id".into()), "user-4242".into())],
                ..whole.clone()
            },
            20,
        ),
        (
            "no match (name=\"nope\"), over the hour",
            TraceSelect {
                equals: vec![(SpanField::Name, "nope".into())],
                ..whole.clone()
            },
            20,
        ),
        (
            "duration > 195ms, limit 20",
            TraceSelect {
                min_span_duration_ns: Some(195_000_000),
                ..whole.clone()
            },
            20,
        ),
        (
            "every trace in the last 5 minutes, limit 1000",
            TraceSelect {
                start: t0 + hour - 300_000_000_000,
                ..whole.clone()
            },
            1000,
        ),
    ];
    for (what, sel, limit) in searches {
        let mut runs = Vec::new();
        let mut found = 0;
        let mut blocks = 0;
        for _ in 0..5 {
            let b = store.stats().blocks_read;
            let at = Instant::now();
            found = 0;
            store
                .search(&sel, &mut |_| {
                    found += 1;
                    found < limit
                })
                .expect("search");
            runs.push(at.elapsed());
            blocks = store.stats().blocks_read - b;
        }
        runs.sort();
        println!(
            "search {what}: {found} traces, {blocks} blocks read, median {:.2} ms",
            runs[runs.len() / 2].as_secs_f64() * 1e3
        );
    }
}
