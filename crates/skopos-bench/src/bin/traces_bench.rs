//! Tracing benchmark (issue 5, section 6): realistic traces are generated in
//! memory (eight services calling each other, 3–20 spans a trace with proper
//! parent links, ~10 attributes a span, some events, ~2% errors, log-normal
//! durations, spread over the last hour), encoded as OTLP protobuf
//! `ExportTraceServiceRequest`s of ~1000 spans and written to a corpus file
//! before the clock starts. They are then posted to a fresh `skopos server`
//! over OTLP/HTTP with a few requests in flight.
//!
//! Figures: spans per server CPU second (from `/proc`) and per wall second;
//! stored bytes per span (the `traces/` directory after a clean stop); after
//! a restart, p50/p99 of trace-by-id over random stored ids (sequential,
//! client wall time); the median of a few TraceQL searches over the hour.
//! No incumbent runs here (Tempo and Jaeger are not packaged in Debian), so
//! the published reference is printed beside each figure where one exists.
//!
//! `scripts/bench-traces.sh` builds and runs it; `--help` lists the sizes.

#[path = "../procs.rs"]
#[allow(dead_code)]
mod procs;

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, SpanKind},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span, Status,
};
use procs::{dir_bytes, Kind, Programs, Server};
use prost::Message;

#[derive(Parser, Debug)]
#[command(about = "Trace ingestion over OTLP/HTTP, storage, trace by id and TraceQL search")]
struct Args {
    #[arg(long, default_value = "target/release/skopos")]
    skopos: PathBuf,
    /// Spans to generate and ingest (about 10 a trace).
    #[arg(long, default_value_t = 1_000_000)]
    spans: u64,
    /// Spans per OTLP export request (whole traces, so a little more).
    #[arg(long, default_value_t = 1000)]
    batch_spans: usize,
    /// Export requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Trace-by-id lookups after the restart (random stored ids, sequential).
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// Measured runs per TraceQL query (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Users (`user.id` values); each trace belongs to one.
    #[arg(long, default_value_t = 20_000)]
    users: u64,
    /// Where the corpus and the data directory go (a temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A deterministic pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // The low bits of an LCG are weak; mix the state before use.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    /// Log-normal with the given median (ns) and shape.
    fn log_normal(&mut self, median_ns: f64, sigma: f64) -> u64 {
        // Box–Muller.
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (median_ns * (sigma * z).exp()).max(1_000.0) as u64
    }
    fn span_id(&mut self) -> Vec<u8> {
        self.next().max(1).to_be_bytes().to_vec()
    }
}

/// One service of the generated system.
struct Service {
    name: &'static str,
    /// `(method, route)` of its server spans.
    routes: &'static [(&'static str, &'static str)],
    /// Services it calls (indices into `SERVICES`).
    calls: &'static [usize],
    /// Its database, if any: `(db.system, db.name, tables)`.
    db: Option<(&'static str, &'static str, &'static [&'static str])>,
    language: &'static str,
}

const FRONTEND: usize = 0;

const SERVICES: [Service; 8] = [
    Service {
        name: "frontend",
        routes: &[
            ("GET", "/"),
            ("GET", "/product/{id}"),
            ("GET", "/cart"),
            ("POST", "/cart/add"),
            ("POST", "/checkout"),
            ("GET", "/account"),
        ],
        calls: &[1, 2, 3, 4],
        db: None,
        language: "nodejs",
    },
    Service {
        name: "checkout",
        routes: &[("POST", "/api/checkout"), ("GET", "/api/orders/{id}")],
        calls: &[2, 3, 5, 6, 7],
        db: Some(("postgresql", "orders", &["orders", "order_items"])),
        language: "go",
    },
    Service {
        name: "cart",
        routes: &[
            ("GET", "/api/cart/{user}"),
            ("POST", "/api/cart/{user}/items"),
            ("DELETE", "/api/cart/{user}"),
        ],
        calls: &[],
        db: Some(("redis", "0", &["cart"])),
        language: "dotnet",
    },
    Service {
        name: "product-catalog",
        routes: &[
            ("GET", "/api/products"),
            ("GET", "/api/products/{id}"),
            ("GET", "/api/products/search"),
        ],
        calls: &[],
        db: Some((
            "postgresql",
            "catalog",
            &["products", "prices", "inventory"],
        )),
        language: "go",
    },
    Service {
        name: "user",
        routes: &[("GET", "/api/users/{id}"), ("POST", "/api/users/login")],
        calls: &[],
        db: Some(("postgresql", "users", &["users", "sessions"])),
        language: "java",
    },
    Service {
        name: "payment",
        routes: &[("POST", "/api/charge"), ("POST", "/api/refund")],
        calls: &[],
        db: None,
        language: "nodejs",
    },
    Service {
        name: "shipping",
        routes: &[("POST", "/api/quote"), ("POST", "/api/ship")],
        calls: &[],
        db: Some(("mysql", "shipping", &["shipments"])),
        language: "rust",
    },
    Service {
        name: "email",
        routes: &[("POST", "/api/send_confirmation")],
        calls: &[],
        db: None,
        language: "python",
    },
];

/// Pods per service; each is one OTLP resource.
const PODS: usize = 3;

const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15",
    "okhttp/4.12.0",
];
const FUNCTIONS: [&str; 6] = [
    "validate_request",
    "render_template",
    "compute_total",
    "serialize_response",
    "load_feature_flags",
    "apply_discounts",
];
const EXCEPTIONS: [(&str, &str); 4] = [
    ("TimeoutError", "upstream request timed out after 2000 ms"),
    ("ConnectionResetError", "connection reset by peer"),
    ("ValueError", "invalid quantity: -1"),
    ("SQLException", "deadlock detected"),
];

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}
fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}
fn b(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

fn resource(svc: usize, pod: usize) -> Resource {
    let sv = &SERVICES[svc];
    Resource {
        attributes: vec![
            s("service.name", sv.name),
            s("service.namespace", "shop"),
            s("service.version", format!("1.{}.{}", 4 + svc % 3, pod % 2)),
            s("deployment.environment", "production"),
            s("host.name", format!("node-{}", (svc * PODS + pod) % 5)),
            s(
                "k8s.pod.name",
                format!("{}-7d9f8b{}c-x{pod}q2", sv.name, svc),
            ),
            s("k8s.namespace.name", "shop"),
            s("telemetry.sdk.language", sv.language),
            s("telemetry.sdk.name", "opentelemetry"),
        ],
        ..Default::default()
    }
}

/// The generated corpus: length-prefixed encoded requests in a file, and
/// what the lookups and searches need to know about it.
struct Corpus {
    path: PathBuf,
    requests: u64,
    spans: u64,
    proto_bytes: u64,
    /// Every trace id with its span count.
    traces: Vec<([u8; 16], u32)>,
    start_ns: u64,
    end_ns: u64,
    needle_user: String,
    needle_traces: u64,
    errors: u64,
    events: u64,
    attributes: u64,
}

/// A span under construction: its resource and the OTLP span.
struct GenSpan {
    res: usize,
    span: Span,
}

struct Gen {
    r: Rng,
}

impl Gen {
    /// One trace starting at `t0`, of the user `user`.
    fn trace(&mut self, t0: u64, user: &str) -> Vec<GenSpan> {
        let r = &mut self.r;
        // 3..=20 spans, skewed towards small traces (mean about 9).
        let n = 3 + (17.0 * r.unit().powf(1.6)).round() as usize;
        let mut tid = [0u8; 16];
        tid[..8].copy_from_slice(&r.next().to_be_bytes());
        tid[8..].copy_from_slice(&r.next().to_be_bytes());
        let mut spans: Vec<GenSpan> = Vec::with_capacity(n + 1);
        // Indices of the server spans: where further work hangs.
        let mut servers: Vec<usize> = Vec::new();
        let root_dur = r.log_normal(60e6, 1.1);
        let root = self.server_span(&tid, Vec::new(), FRONTEND, t0, root_dur, user, "");
        spans.push(root);
        servers.push(0);
        while spans.len() < n {
            let r = &mut self.r;
            let caller = *r.pick(&servers);
            let svc = spans[caller].res / PODS;
            let (p_start, p_end) = (
                spans[caller].span.start_time_unix_nano,
                spans[caller].span.end_time_unix_nano,
            );
            let p_dur = p_end - p_start;
            let start = p_start + (r.unit() * 0.6 * p_dur as f64) as u64;
            let dur = r
                .log_normal(p_dur as f64 * 0.25, 0.8)
                .min(p_end - start)
                .max(1_000);
            let parent = spans[caller].span.span_id.clone();
            let pod = spans[caller].res % PODS;
            let sv = &SERVICES[svc];
            let roll = r.unit();
            if !sv.calls.is_empty() && roll < 0.55 && spans.len() + 2 <= n {
                let target = *r.pick(sv.calls);
                let client = self.client_span(&tid, parent, svc, pod, target, start, dur);
                let client_id = client.span.span_id.clone();
                let hop = 200_000.min(dur / 4);
                let server = self.server_span(
                    &tid,
                    client_id,
                    target,
                    start + hop,
                    dur - 2 * hop,
                    user,
                    sv.name,
                );
                spans.push(client);
                servers.push(spans.len());
                spans.push(server);
            } else if sv.db.is_some() && roll < 0.85 {
                spans.push(self.db_span(&tid, parent, svc, pod, start, dur));
            } else {
                spans.push(self.internal_span(&tid, parent, svc, pod, start, dur, user));
            }
        }
        spans
    }

    fn base_span(
        &mut self,
        tid: &[u8; 16],
        parent: Vec<u8>,
        name: String,
        kind: SpanKind,
        start: u64,
        dur: u64,
    ) -> Span {
        Span {
            trace_id: tid.to_vec(),
            span_id: self.r.span_id(),
            parent_span_id: parent,
            name,
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            ..Default::default()
        }
    }

    /// Marks about 2% of spans as failed, with an exception event; returns
    /// whether it did.
    fn maybe_fail(&mut self, span: &mut Span) -> bool {
        if !self.r.chance(0.02) {
            return false;
        }
        let (ty, msg) = *self.r.pick(&EXCEPTIONS);
        span.status = Some(Status {
            message: msg.to_string(),
            code: StatusCode::Error as i32,
        });
        span.events.push(Event {
            time_unix_nano: span.end_time_unix_nano - 1_000,
            name: "exception".to_string(),
            attributes: vec![
                s("exception.type", ty),
                s("exception.message", msg),
                s(
                    "exception.stacktrace",
                    format!(
                        "{ty}: {msg}\n  at handler (src/handler.rs:{})",
                        40 + ty.len()
                    ),
                ),
            ],
            ..Default::default()
        });
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn server_span(
        &mut self,
        tid: &[u8; 16],
        parent: Vec<u8>,
        svc: usize,
        start: u64,
        dur: u64,
        user: &str,
        peer: &str,
    ) -> GenSpan {
        let pod = self.r.below(PODS as u64) as usize;
        let (method, route) = *self.r.pick(SERVICES[svc].routes);
        let mut span = self.base_span(
            tid,
            parent,
            format!("{method} {route}"),
            SpanKind::Server,
            start,
            dur,
        );
        let failed = self.maybe_fail(&mut span);
        let r = &mut self.r;
        let code = if failed {
            *r.pick(&[500, 500, 502, 503])
        } else if r.chance(0.03) {
            *r.pick(&[400, 401, 404, 404, 409])
        } else if method == "POST" {
            201
        } else {
            200
        };
        let target = route
            .replace("{id}", &r.below(5_000).to_string())
            .replace("{user}", user);
        span.attributes = vec![
            s("http.method", method),
            s("http.route", route),
            s("http.target", target),
            s("http.scheme", "http"),
            s("http.flavor", "1.1"),
            i("http.status_code", code),
            if peer.is_empty() {
                // The browser or app: a client address.
                s("net.peer.name", format!("198.51.100.{}", r.below(250)))
            } else {
                s("net.peer.name", peer)
            },
            i("net.peer.port", 30_000 + r.below(30_000) as i64),
            s("user.id", user),
            s("user_agent.original", *r.pick(&AGENTS)),
            i("http.response_content_length", r.below(20_000) as i64),
        ];
        if r.chance(0.05) {
            span.events.push(Event {
                time_unix_nano: start + dur / 2,
                name: "cache.miss".to_string(),
                attributes: vec![s("cache.key", format!("k{}", r.below(1000)))],
                ..Default::default()
            });
        }
        GenSpan {
            res: svc * PODS + pod,
            span,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn client_span(
        &mut self,
        tid: &[u8; 16],
        parent: Vec<u8>,
        svc: usize,
        pod: usize,
        target: usize,
        start: u64,
        dur: u64,
    ) -> GenSpan {
        let method = if self.r.chance(0.7) { "GET" } else { "POST" };
        let tname = SERVICES[target].name;
        let mut span = self.base_span(
            tid,
            parent,
            format!("{method} {tname}"),
            SpanKind::Client,
            start,
            dur,
        );
        let failed = self.maybe_fail(&mut span);
        let r = &mut self.r;
        span.attributes = vec![
            s("http.method", method),
            s(
                "http.url",
                format!("http://{tname}:8080/api/v1/{}", r.below(10_000)),
            ),
            i("http.status_code", if failed { 503 } else { 200 }),
            s("http.flavor", "1.1"),
            s("net.peer.name", tname),
            i("net.peer.port", 8080),
            s("peer.service", tname),
            i("thread.id", r.below(64) as i64),
            i("http.request_content_length", r.below(4_000) as i64),
            s("rpc.system", "http"),
        ];
        if r.chance(0.03) {
            span.events.push(Event {
                time_unix_nano: start + dur / 3,
                name: "retry".to_string(),
                attributes: vec![i("retry.attempt", 1)],
                ..Default::default()
            });
        }
        GenSpan {
            res: svc * PODS + pod,
            span,
        }
    }

    fn db_span(
        &mut self,
        tid: &[u8; 16],
        parent: Vec<u8>,
        svc: usize,
        pod: usize,
        start: u64,
        dur: u64,
    ) -> GenSpan {
        let (system, db, tables) = SERVICES[svc].db.expect("service with a database");
        let table = *self.r.pick(tables);
        let (op, stmt) = if system == "redis" {
            let op = *self.r.pick(&["GET", "HGETALL", "SET", "DEL"]);
            (op, format!("{op} {table}:?"))
        } else {
            let op = *self
                .r
                .pick(&["SELECT", "SELECT", "SELECT", "INSERT", "UPDATE"]);
            let stmt = match op {
                "SELECT" => format!("SELECT * FROM {table} WHERE id = $1"),
                "INSERT" => format!("INSERT INTO {table} VALUES ($1, $2, $3)"),
                _ => format!("UPDATE {table} SET updated_at = now() WHERE id = $1"),
            };
            (op, stmt)
        };
        let mut span = self.base_span(
            tid,
            parent,
            format!("{op} {db}.{table}"),
            SpanKind::Client,
            start,
            dur,
        );
        self.maybe_fail(&mut span);
        let r = &mut self.r;
        span.attributes = vec![
            s("db.system", system),
            s("db.name", db),
            s("db.statement", stmt),
            s("db.operation", op),
            s("db.sql.table", table),
            s("db.user", format!("{}_app", SERVICES[svc].name)),
            s("net.peer.name", format!("{system}-{}.shop.svc", r.below(2))),
            i("net.peer.port", if system == "redis" { 6379 } else { 5432 }),
            i("thread.id", r.below(64) as i64),
            i("db.rows_affected", r.below(50) as i64),
        ];
        GenSpan {
            res: svc * PODS + pod,
            span,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn internal_span(
        &mut self,
        tid: &[u8; 16],
        parent: Vec<u8>,
        svc: usize,
        pod: usize,
        start: u64,
        dur: u64,
        user: &str,
    ) -> GenSpan {
        let func = *self.r.pick(&FUNCTIONS);
        let mut span = self.base_span(
            tid,
            parent,
            func.to_string(),
            SpanKind::Internal,
            start,
            dur,
        );
        self.maybe_fail(&mut span);
        let r = &mut self.r;
        span.attributes = vec![
            s("code.function", func),
            s("code.namespace", format!("shop.{}", SERVICES[svc].name)),
            i("code.lineno", 10 + r.below(400) as i64),
            i("thread.id", r.below(64) as i64),
            s("thread.name", format!("worker-{}", r.below(16))),
            s("user.id", user),
            b("cache.hit", r.chance(0.8)),
            i("items.count", r.below(12) as i64),
            s(
                "feature.flag",
                *r.pick(&["new-cart", "none", "none", "fast-checkout"]),
            ),
            s("component", "app"),
        ];
        GenSpan {
            res: svc * PODS + pod,
            span,
        }
    }
}

/// Generates `spans` spans over the hour ending now, writes the encoded
/// requests to `path` as `u32 length, bytes` records.
fn generate(path: PathBuf, spans: u64, batch_spans: usize, users: u64) -> anyhow::Result<Corpus> {
    let end_ns = now_ns() - 5_000_000_000;
    let start_ns = end_ns - 3_600_000_000_000;
    let mut g = Gen {
        r: Rng(0x5eed_7ace),
    };
    let resources: Vec<Resource> = (0..SERVICES.len() * PODS)
        .map(|k| resource(k / PODS, k % PODS))
        .collect();
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    let mut c = Corpus {
        path,
        requests: 0,
        spans: 0,
        proto_bytes: 0,
        traces: Vec::new(),
        start_ns,
        end_ns,
        needle_user: String::new(),
        needle_traces: 0,
        errors: 0,
        events: 0,
        attributes: 0,
    };
    let mut by_res: Vec<Vec<Span>> = (0..resources.len()).map(|_| Vec::new()).collect();
    let mut pending = 0usize;
    // Estimated trace count, so start times rise evenly over the hour.
    let est_traces = (spans / 9).max(1);
    let mut k = 0u64;
    let mut trace_users: Vec<u32> = Vec::new();
    while c.spans < spans {
        // Ingested in about time order, as a live system sends them.
        let t0 = start_ns
            + ((k.min(est_traces) as f64 / est_traces as f64) * 3_590e9) as u64
            + g.r.below(1_000_000_000);
        k += 1;
        let uid = g.r.below(users);
        trace_users.push(uid as u32);
        let trace = g.trace(t0, &format!("user-{uid}"));
        let tid: [u8; 16] = trace[0].span.trace_id[..].try_into()?;
        c.traces.push((tid, trace.len() as u32));
        for gs in trace {
            c.spans += 1;
            pending += 1;
            c.attributes += gs.span.attributes.len() as u64;
            c.events += gs.span.events.len() as u64;
            if gs
                .span
                .status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32)
            {
                c.errors += 1;
            }
            by_res[gs.res].push(gs.span);
        }
        if pending >= batch_spans || c.spans >= spans {
            let req = ExportTraceServiceRequest {
                resource_spans: by_res
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| ResourceSpans {
                        resource: Some(resources[k].clone()),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: format!("shop.{}", SERVICES[k / PODS].name),
                                version: "1.0.0".to_string(),
                                ..Default::default()
                            }),
                            spans: std::mem::take(v),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            };
            let body = req.encode_to_vec();
            w.write_all(&(body.len() as u32).to_le_bytes())?;
            w.write_all(&body)?;
            c.proto_bytes += body.len() as u64;
            c.requests += 1;
            pending = 0;
        }
    }
    w.flush()?;
    // The rare-attribute needle: the user of the middle trace.
    let needle = trace_users[trace_users.len() / 2];
    c.needle_user = format!("user-{needle}");
    c.needle_traces = trace_users.iter().filter(|&&u| u == needle).count() as u64;
    Ok(c)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let k = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Spans in a Tempo `{"batches": [...]}` trace body.
fn count_spans(v: &serde_json::Value) -> usize {
    let mut n = 0;
    for rs in v["batches"].as_array().into_iter().flatten() {
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            n += ss["spans"].as_array().map_or(0, Vec::len);
        }
    }
    n
}

/// Posts every request of the corpus with `concurrency` in flight; returns
/// the spans the server rejected.
async fn ingest(
    client: &reqwest::Client,
    base: &str,
    c: &Corpus,
    concurrency: usize,
) -> anyhow::Result<u64> {
    let mut rd = BufReader::with_capacity(4 << 20, File::open(&c.path)?);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut rejected = 0u64;
    let url = format!("{base}/v1/traces");
    for _ in 0..c.requests {
        let mut len = [0u8; 4];
        rd.read_exact(&mut len)?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        rd.read_exact(&mut body)?;
        while in_flight.len() >= concurrency {
            rejected += in_flight.join_next().await.context("join")???;
        }
        let (client, url) = (client.clone(), url.clone());
        in_flight.spawn(async move {
            let resp = client
                .post(url)
                .header("Content-Type", "application/x-protobuf")
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            let bytes = resp.bytes().await?;
            if !status.is_success() {
                bail!("export: {status}: {}", String::from_utf8_lossy(&bytes));
            }
            let out = ExportTraceServiceResponse::decode(bytes)?;
            Ok::<_, anyhow::Error>(out.partial_success.map_or(0, |p| p.rejected_spans as u64))
        });
    }
    while let Some(r) = in_flight.join_next().await {
        rejected += r??;
    }
    Ok(rejected)
}

/// One row of the results table.
struct Row {
    figure: String,
    value: String,
    goal: String,
    reference: String,
}

fn row(figure: impl Into<String>, value: String, goal: &str, reference: &str) -> Row {
    Row {
        figure: figure.into(),
        value,
        goal: goal.to_string(),
        reference: reference.to_string(),
    }
}

fn print_table(rows: &[Row]) {
    let w = |f: fn(&Row) -> &str, head: &str| {
        rows.iter()
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
            .max(head.len())
    };
    let (w0, w1, w2) = (
        w(|r| &r.figure, "figure"),
        w(|r| &r.value, "skopos"),
        w(|r| &r.goal, "goal"),
    );
    println!(
        "{:<w0$}  {:>w1$}  {:<w2$}  reference",
        "figure", "skopos", "goal"
    );
    println!("{}", "-".repeat(w0 + w1 + w2 + 6 + 9));
    for r in rows {
        println!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}",
            r.figure, r.value, r.goal, r.reference
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp;
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    fs::create_dir_all(&work)?;
    println!("generating {} spans over the last hour", args.spans);
    let t = Instant::now();
    let corpus = generate(
        work.join("traces.otlp"),
        args.spans,
        args.batch_spans,
        args.users,
    )?;
    println!(
        "corpus: {} traces, {} spans in {} requests, {:.1} attributes a span, {} events, {:.2}% errors, {:.0} B a span as OTLP protobuf ({:.1} s)",
        corpus.traces.len(),
        corpus.spans,
        corpus.requests,
        corpus.attributes as f64 / corpus.spans as f64,
        corpus.events,
        100.0 * corpus.errors as f64 / corpus.spans as f64,
        corpus.proto_bytes as f64 / corpus.spans as f64,
        t.elapsed().as_secs_f64()
    );
    let programs = Programs {
        skopos: args.skopos.clone(),
        prometheus: PathBuf::from("prometheus"),
        promtool: PathBuf::from("promtool"),
    };
    let data = work.join("skopos-traces");
    let _ = fs::remove_dir_all(&data);
    let client = reqwest::Client::new();
    let mut server = Server::start(&programs, Kind::Skopos, &data, "traces")?;
    server
        .wait_ready(&client, Instant::now(), Duration::from_secs(60))
        .await?;
    let base = server.base_url();

    // Ingestion.
    let cpu0 = server.cpu_seconds()?;
    let t0 = Instant::now();
    let rejected = ingest(&client, &base, &corpus, args.concurrency).await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds()? - cpu0;
    let hwm = server.memory()?.hwm;
    if rejected > 0 {
        bail!(
            "the server rejected {rejected} spans; see {}",
            server.log_tail()
        );
    }
    let n = corpus.spans as f64;
    println!(
        "ingestion: {} spans in {wall:.1} s wall, {cpu:.1} s server CPU: {:.0} spans/s per core, {:.0} spans/s wall; peak RSS {:.0} MB",
        corpus.spans,
        n / cpu,
        n / wall,
        hwm as f64 / 1e6
    );
    // A clean stop flushes what is in memory.
    let stop = server.stop(Duration::from_secs(600)).await?;
    let stored = dir_bytes(&data.join("traces"))?;
    println!(
        "stored: {:.1} MB in traces/ ({:.0} B a span; OTLP protobuf was {:.0} B a span); stop took {:.1} s",
        stored as f64 / 1e6,
        stored as f64 / n,
        corpus.proto_bytes as f64 / n,
        stop.as_secs_f64()
    );

    let mut server = Server::start(&programs, Kind::Skopos, &data, "traces2")?;
    let ready = server
        .wait_ready(&client, Instant::now(), Duration::from_secs(300))
        .await?;
    println!("restart: ready in {:.2} s", ready.as_secs_f64());
    let base = server.base_url();

    // Trace by id: random stored ids, one at a time.
    let mut r = Rng(0xb1d);
    let mut lat = Vec::with_capacity(args.lookups);
    let mut wrong = 0usize;
    for _ in 0..args.lookups {
        let (tid, want) = corpus.traces[r.below(corpus.traces.len() as u64) as usize];
        let t = Instant::now();
        let resp = client
            .get(format!("{base}/api/traces/{}", hex(&tid)))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        lat.push(t.elapsed().as_secs_f64());
        if !status.is_success() {
            bail!(
                "trace {}: {status}: {}",
                hex(&tid),
                String::from_utf8_lossy(&body)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if count_spans(&v) != want as usize {
            wrong += 1;
        }
    }
    lat.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        quantile(&lat, 0.5) * 1e3,
        quantile(&lat, 0.99) * 1e3,
        lat[lat.len() - 1] * 1e3,
    );
    println!(
        "trace by id ({} lookups, {wrong} with a wrong span count): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        args.lookups
    );
    if wrong > 0 {
        bail!("{wrong} traces came back with a different span count than was sent");
    }

    // TraceQL search over the hour.
    let start = (corpus.start_ns / 1_000_000_000 - 60).to_string();
    let end = (corpus.end_ns / 1_000_000_000 + 60).to_string();
    let queries: Vec<(&str, String)> = vec![
        (
            "service and error",
            r#"{ resource.service.name = "checkout" && status = error }"#.into(),
        ),
        ("attribute (int)", "{ span.http.status_code = 500 }".into()),
        ("duration", "{ duration > 2s }".into()),
        (
            "structural >>",
            r#"{ resource.service.name = "frontend" } >> { span.db.system = "postgresql" }"#.into(),
        ),
        (
            "rare attribute",
            format!(r#"{{ span.user.id = "{}" }}"#, corpus.needle_user),
        ),
        (
            "no match",
            r#"{ span.http.route = "/no/such/route" }"#.into(),
        ),
    ];
    let mut searches = Vec::new();
    for (label, q) in &queries {
        let mut times = Vec::new();
        let (mut found, mut inspected) = (0usize, String::new());
        for run in 0..=args.runs {
            let t = Instant::now();
            let resp = client
                .get(format!("{base}/api/search"))
                .query(&[
                    ("q", q.as_str()),
                    ("start", start.as_str()),
                    ("end", end.as_str()),
                    ("limit", "20"),
                ])
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            let secs = t.elapsed().as_secs_f64();
            if !status.is_success() {
                bail!("search {q}: {status}: {}", String::from_utf8_lossy(&body));
            }
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            found = v["traces"].as_array().map_or(0, Vec::len);
            inspected = v["metrics"]["inspectedSpans"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v["metrics"]["inspectedSpans"].to_string());
            if run > 0 {
                times.push(secs);
            }
        }
        let m = median(times);
        println!(
            "search {label}: {q}: {found} traces (limit 20), {inspected} spans inspected, median {:.1} ms",
            m * 1e3
        );
        // The two queries whose answer is known from the generator.
        let want = match *label {
            "rare attribute" => Some((corpus.needle_traces as usize).min(20)),
            "no match" => Some(0),
            _ => None,
        };
        if let Some(want) = want.filter(|&w| w != found) {
            bail!("search {q}: {found} traces, but {want} were sent");
        }
        searches.push((label, q.clone(), found, m));
    }
    server.stop(Duration::from_secs(60)).await?;

    println!();
    println!(
        "{} spans ({} traces), {} in flight, batches of ~{} spans; the needle user has {} traces.",
        corpus.spans,
        corpus.traces.len(),
        args.concurrency,
        args.batch_spans,
        corpus.needle_traces
    );
    println!("No incumbent runs here: Tempo and Jaeger are not packaged in Debian and no registry is reachable, so the published figures stand in.");
    let tempo = "Tempo sizing: a few thousand spans/s per core (ingester 2.5 cores per 3-5 MB/s + distributor 2 cores per 10 MB/s, at ~500 B a span)";
    let mut rows = vec![
        row(
            "ingestion, spans / server CPU s",
            format!("{:.0}", n / cpu),
            ">= 100000",
            tempo,
        ),
        row(
            "ingestion, spans / wall s",
            format!("{:.0}", n / wall),
            "",
            "",
        ),
        row(
            "server peak RSS during ingestion",
            format!("{:.0} MB", hwm as f64 / 1e6),
            "",
            "",
        ),
        row(
            "stored bytes / span",
            format!("{:.0} B", stored as f64 / n),
            "reported",
            &format!(
                "OTLP protobuf input: {:.0} B a span",
                corpus.proto_bytes as f64 / n
            ),
        ),
        row(
            "trace by id p50",
            format!("{p50:.2} ms"),
            "",
            "no published figure",
        ),
        row(
            "trace by id p99",
            format!("{p99:.2} ms"),
            "<= 10 ms at 10M spans",
            "no published figure",
        ),
    ];
    for (label, _, found, m) in &searches {
        rows.push(row(
            format!("TraceQL {label} ({found} found)"),
            format!("{:.1} ms", m * 1e3),
            "< 1 s",
            "no published figure",
        ));
    }
    print_table(&rows);
    Ok(())
}
