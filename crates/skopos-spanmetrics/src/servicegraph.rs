//! The service graph, as Tempo's service graph processor builds it: a
//! request between two services is a client span and the server span whose
//! parent it is (or a producer span and its consumer span), matched by
//! (trace id, client span id) across batches. A side waits in a pending
//! store until its other half arrives or `wait_ms` passes; what expires
//! unpaired is counted, and what does not fit in the store is dropped and
//! counted.
//!
//! Virtual nodes, as in Tempo: a root server (or consumer) span was called
//! by someone uninstrumented, so it makes an edge at once from the node named
//! by its first peer attribute, or `user`; a client span that expires
//! without a server side but carries a peer attribute (`peer.service`, ...)
//! makes an edge to that node. A client span with `db.system`, `db.name` or
//! `db.namespace` whose database node can be named (see
//! `DATABASE_NAME_ATTRIBUTES`) is a database request and makes an edge at
//! once to that node; one that cannot be named pairs with its server span
//! (a database service that is itself traced). These
//! edges have `connection_type="virtual_node"` or `"database"`, and only the
//! side that was measured is observed in the latency histograms (a
//! database request's client duration is observed as both sides, the
//! database having no span of its own).

use std::collections::VecDeque;

use skopos_model::fxhash::FxHashMap;
use skopos_model::{
    find_attr, AttrValue, Labels, LabelsBuilder, Sample, SeriesExemplars, Span, SpanBatch, SpanId,
    SpanKind, StatusCode, TraceId, WriteBatch,
};

use crate::histogram::{named, ns_to_ms, seconds, Histogram};

/// Tempo's default service graph latency buckets, in seconds.
pub const DEFAULT_SERVICE_GRAPH_BUCKETS: &[f64] = &[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

/// Span attributes that name a database node, in the precedence Tempo's
/// metrics-generator documents (`peer.service`, `server.address`,
/// `network.peer.address:network.peer.port`, `db.name`), plus `db.namespace`,
/// `db.name`'s successor in the semantic conventions. `db.system` names the
/// kind of database, not the node: a client span that carries only it
/// waits for its server span like any other.
const DATABASE_NAME_ATTRIBUTES: &[&str] = &[
    "peer.service",
    "server.address",
    "network.peer.address",
    "db.name",
    "db.namespace",
];

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceGraphConfig {
    /// Upper bounds of the latency buckets in seconds (`+Inf` implied).
    pub histogram_buckets: Vec<f64>,
    /// How long a side waits for its other half (Tempo: 10s).
    pub wait_ms: i64,
    /// At most this many sides wait at once; past it new ones are dropped
    /// and counted in `traces_service_graph_dropped_spans_total`.
    pub max_items: usize,
    /// At most this many label combinations over all the metrics; updates
    /// that would make one more are dropped and counted in the stats.
    pub max_series: usize,
    /// Attributes naming an uninstrumented peer, first match wins.
    pub peer_attributes: Vec<String>,
    /// Whether to make virtual-node edges (see the module docs).
    pub virtual_nodes: bool,
}

impl Default for ServiceGraphConfig {
    fn default() -> Self {
        ServiceGraphConfig {
            histogram_buckets: DEFAULT_SERVICE_GRAPH_BUCKETS.to_vec(),
            wait_ms: 10_000,
            max_items: 10_000,
            max_series: 10_000,
            peer_attributes: vec!["peer.service".into(), "db.name".into(), "db.system".into()],
            virtual_nodes: true,
        }
    }
}

/// Tempo's `connection_type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ConnectionType {
    #[default]
    Unset,
    MessagingSystem,
    Database,
    VirtualNode,
}

impl ConnectionType {
    /// The label value; `""` (no label) when unset.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionType::Unset => "",
            ConnectionType::MessagingSystem => "messaging_system",
            ConnectionType::Database => "database",
            ConnectionType::VirtualNode => "virtual_node",
        }
    }
}

/// What the processor has done, for its own metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceGraphStats {
    /// Client/server (or producer/consumer) pairs matched.
    pub paired: u64,
    /// Edges to or from a virtual node (including databases).
    pub virtual_edges: u64,
    /// Sides that expired without their other half (and no virtual node).
    pub unpaired: u64,
    /// Sides dropped because `max_items` were waiting.
    pub dropped_spans: u64,
    /// Updates dropped because they would pass `max_series`.
    pub dropped_series_updates: u64,
    /// Sides waiting now.
    pub pending: usize,
}

/// One side of a request.
#[derive(Debug, Clone)]
struct Side {
    service: String,
    duration_s: f64,
    failed: bool,
    trace_id: TraceId,
    end_ms: i64,
    /// The first peer attribute's value, for a virtual node.
    peer: Option<String>,
}

#[derive(Debug)]
struct Pending {
    client: Option<Side>,
    server: Option<Side>,
    connection: ConnectionType,
    deadline_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct EdgeKey {
    client: String,
    server: String,
    connection: ConnectionType,
}

impl EdgeKey {
    fn labels(&self) -> Labels {
        let mut b = LabelsBuilder::new();
        b.set("client", self.client.as_str())
            .set("server", self.server.as_str())
            .set("connection_type", self.connection.label());
        b.build()
    }
}

#[derive(Debug)]
struct EdgeSeries {
    labels: Labels,
    requests: u64,
    failed: u64,
    client: Histogram,
    server: Histogram,
}

/// The service graph processor. Not thread-safe by itself: wrap it in a
/// mutex. Pairing needs both sides of a request to reach the same
/// processor.
#[derive(Debug)]
pub struct ServiceGraph {
    cfg: ServiceGraphConfig,
    pending: FxHashMap<(TraceId, SpanId), Pending>,
    /// Keys in insertion order with their deadlines; entries whose key has
    /// since been paired are skipped when they come up.
    queue: VecDeque<(i64, (TraceId, SpanId))>,
    edges: FxHashMap<EdgeKey, EdgeSeries>,
    unpaired: FxHashMap<EdgeKey, u64>,
    dropped: FxHashMap<EdgeKey, u64>,
    stats: ServiceGraphStats,
}

fn attr_text(span: &Span, key: &str) -> Option<String> {
    find_attr(&span.attributes, key)
        .map(|v| v.to_text())
        .filter(|s| !s.is_empty())
}

impl ServiceGraph {
    pub fn new(mut cfg: ServiceGraphConfig) -> Self {
        cfg.histogram_buckets.retain(|b| b.is_finite());
        cfg.histogram_buckets.sort_by(f64::total_cmp);
        cfg.histogram_buckets.dedup();
        ServiceGraph {
            cfg,
            pending: FxHashMap::default(),
            queue: VecDeque::new(),
            edges: FxHashMap::default(),
            unpaired: FxHashMap::default(),
            dropped: FxHashMap::default(),
            stats: ServiceGraphStats::default(),
        }
    }

    pub fn config(&self) -> &ServiceGraphConfig {
        &self.cfg
    }

    pub fn stats(&self) -> ServiceGraphStats {
        ServiceGraphStats {
            pending: self.pending.len(),
            ..self.stats
        }
    }

    fn side(&self, span: &Span) -> Side {
        Side {
            service: span.service_name().to_string(),
            duration_s: seconds(span.duration_ns()),
            failed: span.status == StatusCode::Error,
            trace_id: span.trace_id,
            end_ms: ns_to_ms(span.end_ns),
            peer: self
                .cfg
                .peer_attributes
                .iter()
                .find_map(|k| attr_text(span, k)),
        }
    }

    /// The database node a client span calls, if it is a database request.
    fn database(span: &Span) -> Option<String> {
        if !["db.system", "db.name", "db.namespace"]
            .iter()
            .any(|k| find_attr(&span.attributes, k).is_some())
        {
            return None;
        }
        DATABASE_NAME_ATTRIBUTES.iter().find_map(|&k| {
            let v = attr_text(span, k)?;
            Some(if k == "network.peer.address" {
                match attr_text(span, "network.peer.port") {
                    Some(port) => format!("{v}:{port}"),
                    None => v,
                }
            } else {
                v
            })
        })
    }

    /// Feeds the spans of `batch`; `now_ms` starts the wait of new sides.
    pub fn push(&mut self, batch: &SpanBatch, now_ms: i64) {
        for span in &batch.spans {
            let messaging = matches!(span.kind, SpanKind::Producer | SpanKind::Consumer);
            let connection = if messaging {
                ConnectionType::MessagingSystem
            } else {
                ConnectionType::Unset
            };
            match span.kind {
                SpanKind::Client | SpanKind::Producer => {
                    let side = self.side(span);
                    if span.kind == SpanKind::Client && self.cfg.virtual_nodes {
                        if let Some(db) = Self::database(span) {
                            let server = Side {
                                service: db,
                                ..side.clone()
                            };
                            self.stats.virtual_edges += 1;
                            self.record(Some(&side), Some(&server), ConnectionType::Database);
                            continue;
                        }
                    }
                    self.upsert(
                        (span.trace_id, span.span_id),
                        Some(side),
                        None,
                        connection,
                        now_ms,
                    );
                }
                SpanKind::Server | SpanKind::Consumer => {
                    let side = self.side(span);
                    // A Zipkin shared span (B3 single-id RPC) is the server
                    // half under the client span's own id.
                    let shared = matches!(
                        find_attr(&span.attributes, "zipkin.shared"),
                        Some(AttrValue::Bool(true))
                    );
                    let client_id = if shared {
                        Some(span.span_id)
                    } else {
                        span.parent_span_id
                    };
                    match client_id {
                        Some(parent) => self.upsert(
                            (span.trace_id, parent),
                            None,
                            Some(side),
                            connection,
                            now_ms,
                        ),
                        None if self.cfg.virtual_nodes => {
                            let client = side.peer.clone().unwrap_or_else(|| "user".into());
                            self.stats.virtual_edges += 1;
                            self.record_virtual(client, None, Some(&side), side.service.clone());
                        }
                        None => {}
                    }
                }
                SpanKind::Internal | SpanKind::Unspecified => {}
            }
        }
    }

    fn upsert(
        &mut self,
        key: (TraceId, SpanId),
        client: Option<Side>,
        server: Option<Side>,
        connection: ConnectionType,
        now_ms: i64,
    ) {
        if let Some(p) = self.pending.get_mut(&key) {
            // The first of each side wins; a repeat is ignored.
            if p.client.is_none() {
                p.client = client;
            }
            if p.server.is_none() {
                p.server = server;
            }
            if connection != ConnectionType::Unset {
                p.connection = connection;
            }
            if p.client.is_some() && p.server.is_some() {
                let p = self.pending.remove(&key).expect("present");
                self.stats.paired += 1;
                self.record(p.client.as_ref(), p.server.as_ref(), p.connection);
            }
            return;
        }
        if self.pending.len() >= self.cfg.max_items {
            self.stats.dropped_spans += 1;
            let k = EdgeKey {
                client: client.map(|s| s.service).unwrap_or_default(),
                server: server.map(|s| s.service).unwrap_or_default(),
                connection,
            };
            self.bump(Counter::Dropped, k);
            return;
        }
        let deadline_ms = now_ms.saturating_add(self.cfg.wait_ms);
        self.pending.insert(
            key,
            Pending {
                client,
                server,
                connection,
                deadline_ms,
            },
        );
        self.queue.push_back((deadline_ms, key));
        // Paired keys leave their queue entries behind; keep the queue in
        // proportion to what is really waiting.
        if self.queue.len() > 2 * self.cfg.max_items.max(1024) {
            let pending = &self.pending;
            self.queue
                .retain(|(d, k)| pending.get(k).is_some_and(|p| p.deadline_ms == *d));
        }
    }

    /// Ends the wait of sides whose time is up at `now_ms`: a client side
    /// with a peer attribute becomes an edge to a virtual node, anything
    /// else is counted unpaired.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some(&(deadline, key)) = self.queue.front() {
            if deadline > now_ms {
                break;
            }
            self.queue.pop_front();
            if self
                .pending
                .get(&key)
                .is_none_or(|p| p.deadline_ms != deadline)
            {
                continue;
            }
            let p = self.pending.remove(&key).expect("present");
            match (&p.client, &p.server) {
                (Some(c), None) if self.cfg.virtual_nodes && c.peer.is_some() => {
                    self.stats.virtual_edges += 1;
                    let server = c.peer.clone().expect("checked");
                    self.record_virtual(c.service.clone(), Some(c), None, server);
                }
                _ => {
                    self.stats.unpaired += 1;
                    let k = EdgeKey {
                        client: p.client.map(|s| s.service).unwrap_or_default(),
                        server: p.server.map(|s| s.service).unwrap_or_default(),
                        connection: p.connection,
                    };
                    self.bump(Counter::Unpaired, k);
                }
            }
        }
    }

    fn series_count(&self) -> usize {
        self.edges.len() + self.unpaired.len() + self.dropped.len()
    }

    fn bump(&mut self, which: Counter, key: EdgeKey) {
        let full = self.series_count() >= self.cfg.max_series;
        let map = match which {
            Counter::Unpaired => &mut self.unpaired,
            Counter::Dropped => &mut self.dropped,
        };
        match map.get_mut(&key) {
            Some(n) => *n += 1,
            None if full => self.stats.dropped_series_updates += 1,
            None => {
                map.insert(key, 1);
            }
        }
    }

    fn record_virtual(
        &mut self,
        client_name: String,
        client: Option<&Side>,
        server: Option<&Side>,
        server_name: String,
    ) {
        let key = EdgeKey {
            client: client_name,
            server: server_name,
            connection: ConnectionType::VirtualNode,
        };
        self.observe(key, client, server);
    }

    /// Counts a request between the two sides.
    fn record(&mut self, client: Option<&Side>, server: Option<&Side>, connection: ConnectionType) {
        let key = EdgeKey {
            client: client.map(|s| s.service.clone()).unwrap_or_default(),
            server: server.map(|s| s.service.clone()).unwrap_or_default(),
            connection,
        };
        self.observe(key, client, server);
    }

    fn observe(&mut self, key: EdgeKey, client: Option<&Side>, server: Option<&Side>) {
        if !self.edges.contains_key(&key) && self.series_count() >= self.cfg.max_series {
            self.stats.dropped_series_updates += 1;
            return;
        }
        let bounds = &self.cfg.histogram_buckets;
        let e = self.edges.entry(key).or_insert_with_key(|k| EdgeSeries {
            labels: k.labels(),
            requests: 0,
            failed: 0,
            client: Histogram::new(bounds),
            server: Histogram::new(bounds),
        });
        e.requests += 1;
        if client.is_some_and(|s| s.failed) || server.is_some_and(|s| s.failed) {
            e.failed += 1;
        }
        if let Some(c) = client {
            e.client
                .observe(bounds, c.duration_s, Some((&c.trace_id, c.end_ms)));
        }
        if let Some(s) = server {
            e.server
                .observe(bounds, s.duration_s, Some((&s.trace_id, s.end_ms)));
        }
    }

    /// Expires what is due at `now_ms`, then writes every series at
    /// `now_ms` (ordered by client, server, connection type) with the
    /// exemplars gathered since the last collect:
    /// `traces_service_graph_request_total`, `..._request_failed_total`,
    /// the `..._request_client_seconds` and `..._request_server_seconds`
    /// histograms (once they have an observation),
    /// `traces_service_graph_unpaired_spans_total` and
    /// `traces_service_graph_dropped_spans_total`.
    pub fn collect(&mut self, now_ms: i64) -> (WriteBatch, Vec<SeriesExemplars>) {
        self.expire(now_ms);
        let bounds = &self.cfg.histogram_buckets;
        let mut out = WriteBatch::default();
        let mut exemplars = Vec::new();
        let mut keys: Vec<&EdgeKey> = self.edges.keys().collect();
        keys.sort();
        let keys: Vec<EdgeKey> = keys.into_iter().cloned().collect();
        for k in &keys {
            let e = self.edges.get_mut(k).expect("present");
            out.push(
                named(&e.labels, "traces_service_graph_request_total"),
                Sample::new(now_ms, e.requests as f64),
            );
            out.push(
                named(&e.labels, "traces_service_graph_request_failed_total"),
                Sample::new(now_ms, e.failed as f64),
            );
            for (h, name) in [
                (&mut e.client, "traces_service_graph_request_client_seconds"),
                (&mut e.server, "traces_service_graph_request_server_seconds"),
            ] {
                if h.count() > 0 {
                    h.write(bounds, name, &e.labels, now_ms, &mut out, &mut exemplars);
                }
            }
        }
        for (map, name) in [
            (&self.unpaired, "traces_service_graph_unpaired_spans_total"),
            (&self.dropped, "traces_service_graph_dropped_spans_total"),
        ] {
            let mut entries: Vec<(&EdgeKey, &u64)> = map.iter().collect();
            entries.sort();
            for (k, n) in entries {
                out.push(named(&k.labels(), name), Sample::new(now_ms, *n as f64));
            }
        }
        (out, exemplars)
    }
}

#[derive(Clone, Copy)]
enum Counter {
    Unpaired,
    Dropped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{render, render_exemplars, span, tid};
    use skopos_model::Attribute;

    fn graph() -> ServiceGraph {
        ServiceGraph::new(ServiceGraphConfig {
            histogram_buckets: vec![0.1, 1.0],
            ..Default::default()
        })
    }

    /// frontend (root server) → checkout → payments (error), in trace 1.
    fn three_services() -> Vec<Span> {
        let mut pay = span(
            "payments",
            "POST /pay",
            SpanKind::Server,
            1,
            5,
            Some(4),
            30,
            500,
        );
        pay.status = StatusCode::Error;
        vec![
            span("frontend", "GET /", SpanKind::Server, 1, 1, None, 0, 1_000),
            span(
                "frontend",
                "POST /checkout",
                SpanKind::Client,
                1,
                2,
                Some(1),
                10,
                800,
            ),
            span(
                "checkout",
                "POST /checkout",
                SpanKind::Server,
                1,
                3,
                Some(2),
                20,
                700,
            ),
            span(
                "checkout",
                "POST /pay",
                SpanKind::Client,
                1,
                4,
                Some(3),
                25,
                600,
            ),
            pay,
            span(
                "payments",
                "compute",
                SpanKind::Internal,
                1,
                6,
                Some(5),
                40,
                10,
            ),
        ]
    }

    const THREE_SERVICES: &str = r#"
traces_service_graph_request_total{client="checkout", server="payments"} 1
traces_service_graph_request_failed_total{client="checkout", server="payments"} 1
traces_service_graph_request_client_seconds_bucket{client="checkout", le="0.1", server="payments"} 0
traces_service_graph_request_client_seconds_bucket{client="checkout", le="1", server="payments"} 1
traces_service_graph_request_client_seconds_bucket{client="checkout", le="+Inf", server="payments"} 1
traces_service_graph_request_client_seconds_sum{client="checkout", server="payments"} 0.6
traces_service_graph_request_client_seconds_count{client="checkout", server="payments"} 1
traces_service_graph_request_server_seconds_bucket{client="checkout", le="0.1", server="payments"} 0
traces_service_graph_request_server_seconds_bucket{client="checkout", le="1", server="payments"} 1
traces_service_graph_request_server_seconds_bucket{client="checkout", le="+Inf", server="payments"} 1
traces_service_graph_request_server_seconds_sum{client="checkout", server="payments"} 0.5
traces_service_graph_request_server_seconds_count{client="checkout", server="payments"} 1
traces_service_graph_request_total{client="frontend", server="checkout"} 1
traces_service_graph_request_failed_total{client="frontend", server="checkout"} 0
traces_service_graph_request_client_seconds_bucket{client="frontend", le="0.1", server="checkout"} 0
traces_service_graph_request_client_seconds_bucket{client="frontend", le="1", server="checkout"} 1
traces_service_graph_request_client_seconds_bucket{client="frontend", le="+Inf", server="checkout"} 1
traces_service_graph_request_client_seconds_sum{client="frontend", server="checkout"} 0.8
traces_service_graph_request_client_seconds_count{client="frontend", server="checkout"} 1
traces_service_graph_request_server_seconds_bucket{client="frontend", le="0.1", server="checkout"} 0
traces_service_graph_request_server_seconds_bucket{client="frontend", le="1", server="checkout"} 1
traces_service_graph_request_server_seconds_bucket{client="frontend", le="+Inf", server="checkout"} 1
traces_service_graph_request_server_seconds_sum{client="frontend", server="checkout"} 0.7
traces_service_graph_request_server_seconds_count{client="frontend", server="checkout"} 1
traces_service_graph_request_total{client="user", connection_type="virtual_node", server="frontend"} 1
traces_service_graph_request_failed_total{client="user", connection_type="virtual_node", server="frontend"} 0
traces_service_graph_request_server_seconds_bucket{client="user", connection_type="virtual_node", le="0.1", server="frontend"} 0
traces_service_graph_request_server_seconds_bucket{client="user", connection_type="virtual_node", le="1", server="frontend"} 1
traces_service_graph_request_server_seconds_bucket{client="user", connection_type="virtual_node", le="+Inf", server="frontend"} 1
traces_service_graph_request_server_seconds_sum{client="user", connection_type="virtual_node", server="frontend"} 1
traces_service_graph_request_server_seconds_count{client="user", connection_type="virtual_node", server="frontend"} 1
"#;

    #[test]
    fn three_services_make_exact_edges_in_one_batch() {
        let mut g = graph();
        g.push(
            &SpanBatch {
                spans: three_services(),
            },
            0,
        );
        let (wb, ex) = g.collect(100);
        assert_eq!(
            render(&wb).trim(),
            THREE_SERVICES.trim(),
            "\n{}",
            render(&wb)
        );
        assert!(wb.series.iter().all(|s| s.samples[0].t == 100));
        assert_eq!(
            g.stats(),
            ServiceGraphStats {
                paired: 2,
                virtual_edges: 1,
                ..Default::default()
            }
        );
        // One exemplar per histogram observation, pointing at trace 1.
        let ex_text = render_exemplars(&ex);
        let t1 = skopos_model::to_hex(&tid(1));
        assert_eq!(ex.len(), 5, "{ex_text}");
        assert!(ex_text.contains(&format!(
            r#"traces_service_graph_request_server_seconds_bucket{{client="checkout", le="1", server="payments"}} trace_id={t1} 0.5 @530"#
        )), "{ex_text}");
        // Exemplars are handed over once; counters stay.
        let (wb2, ex2) = g.collect(200);
        assert!(ex2.is_empty());
        assert_eq!(wb2.series.len(), wb.series.len());
    }

    #[test]
    fn pairs_form_across_two_batches_in_either_order() {
        for reverse in [false, true] {
            let spans = three_services();
            let (mut first, mut second): (Vec<Span>, Vec<Span>) = spans
                .into_iter()
                .partition(|s| matches!(s.kind, SpanKind::Client));
            if reverse {
                std::mem::swap(&mut first, &mut second);
            }
            let mut g = graph();
            g.push(&SpanBatch { spans: first }, 0);
            assert_eq!(g.stats().pending, 2);
            // Not yet due: the waiting sides are kept.
            g.expire(9_999);
            assert_eq!(g.stats().pending, 2);
            g.push(&SpanBatch { spans: second }, 5_000);
            assert_eq!(g.stats().pending, 0);
            let (wb, _) = g.collect(20_000);
            assert_eq!(
                render(&wb).trim(),
                THREE_SERVICES.trim(),
                "reverse={reverse}"
            );
            assert_eq!(g.stats().unpaired, 0);
        }
    }

    #[test]
    fn sides_left_waiting_expire_as_unpaired_or_as_virtual_nodes() {
        let mut g = graph();
        let lone_client = span("frontend", "GET /x", SpanKind::Client, 2, 1, None, 0, 50);
        let lone_server = span("checkout", "GET /y", SpanKind::Server, 3, 7, Some(6), 0, 50);
        let mut to_peer = span("checkout", "call", SpanKind::Client, 4, 1, None, 0, 300);
        to_peer
            .attributes
            .push(Attribute::str("peer.service", "stripe"));
        to_peer.status = StatusCode::Error;
        g.push(
            &SpanBatch {
                spans: vec![lone_client, lone_server, to_peer],
            },
            1_000,
        );
        g.expire(10_999);
        assert_eq!(g.stats().pending, 3);
        let (wb, _) = g.collect(11_000);
        assert_eq!(g.stats().pending, 0);
        let expected = r#"
traces_service_graph_request_total{client="checkout", connection_type="virtual_node", server="stripe"} 1
traces_service_graph_request_failed_total{client="checkout", connection_type="virtual_node", server="stripe"} 1
traces_service_graph_request_client_seconds_bucket{client="checkout", connection_type="virtual_node", le="0.1", server="stripe"} 0
traces_service_graph_request_client_seconds_bucket{client="checkout", connection_type="virtual_node", le="1", server="stripe"} 1
traces_service_graph_request_client_seconds_bucket{client="checkout", connection_type="virtual_node", le="+Inf", server="stripe"} 1
traces_service_graph_request_client_seconds_sum{client="checkout", connection_type="virtual_node", server="stripe"} 0.3
traces_service_graph_request_client_seconds_count{client="checkout", connection_type="virtual_node", server="stripe"} 1
traces_service_graph_unpaired_spans_total{server="checkout"} 1
traces_service_graph_unpaired_spans_total{client="frontend"} 1
"#;
        assert_eq!(render(&wb).trim(), expected.trim(), "\n{}", render(&wb));
        assert_eq!(
            g.stats(),
            ServiceGraphStats {
                virtual_edges: 1,
                unpaired: 2,
                ..Default::default()
            }
        );
        // A server side arriving after its client expired waits anew.
        g.push(
            &SpanBatch {
                spans: vec![span("api", "GET /x", SpanKind::Server, 2, 9, Some(1), 0, 5)],
            },
            12_000,
        );
        assert_eq!(g.stats().pending, 1);
    }

    #[test]
    fn db_system_client_span_with_a_traced_server_pairs_as_a_plain_edge() {
        // Regression: `db.system` alone named a virtual database node
        // (`postgresql`) instead of the edge api→db Jaeger's dependencies show.
        let mut g = graph();
        let mut client = span("api", "query", SpanKind::Client, 7, 2, Some(1), 0, 40);
        client
            .attributes
            .push(Attribute::str("db.system", "postgresql"));
        let server = span("db", "execute", SpanKind::Server, 7, 3, Some(2), 5, 30);
        g.push(
            &SpanBatch {
                spans: vec![client, server],
            },
            0,
        );
        let (wb, _) = g.collect(0);
        let text = render(&wb);
        assert!(
            text.contains(r#"traces_service_graph_request_total{client="api", server="db"} 1"#),
            "{text}"
        );
        assert!(!text.contains("postgresql"), "{text}");
        assert_eq!(g.stats().pending, 0);
    }

    #[test]
    fn producer_consumer_and_database_edges_have_their_connection_type() {
        let mut g = graph();
        let mut db = span("checkout", "SELECT", SpanKind::Client, 5, 3, Some(1), 0, 40);
        db.attributes
            .push(Attribute::str("db.system", "postgresql"));
        db.attributes.push(Attribute::str("db.name", "orders"));
        let mut db2 = span("checkout", "SET", SpanKind::Client, 5, 4, Some(1), 0, 20);
        db2.attributes.push(Attribute::str("db.system", "redis"));
        db2.attributes
            .push(Attribute::str("network.peer.address", "10.0.0.9"));
        db2.attributes
            .push(Attribute::new("network.peer.port", AttrValue::Int(6379)));
        g.push(
            &SpanBatch {
                spans: vec![
                    span(
                        "consumer",
                        "process",
                        SpanKind::Consumer,
                        5,
                        2,
                        Some(1),
                        100,
                        30,
                    ),
                    span("producer", "publish", SpanKind::Producer, 5, 1, None, 0, 10),
                    db,
                    db2,
                ],
            },
            0,
        );
        let (wb, _) = g.collect(0);
        let text = render(&wb);
        for want in [
            r#"traces_service_graph_request_total{client="producer", connection_type="messaging_system", server="consumer"} 1"#,
            r#"traces_service_graph_request_server_seconds_sum{client="producer", connection_type="messaging_system", server="consumer"} 0.03"#,
            r#"traces_service_graph_request_total{client="checkout", connection_type="database", server="orders"} 1"#,
            r#"traces_service_graph_request_client_seconds_sum{client="checkout", connection_type="database", server="orders"} 0.04"#,
            r#"traces_service_graph_request_server_seconds_sum{client="checkout", connection_type="database", server="orders"} 0.04"#,
            r#"traces_service_graph_request_total{client="checkout", connection_type="database", server="10.0.0.9:6379"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
        assert_eq!(g.stats().pending, 0);
    }

    #[test]
    fn a_zipkin_shared_server_span_pairs_with_the_client_of_the_same_id() {
        let mut g = graph();
        let client = span("web", "get", SpanKind::Client, 9, 2, Some(1), 0, 300);
        let mut server = span("api", "get", SpanKind::Server, 9, 2, Some(1), 10, 200);
        server
            .attributes
            .push(Attribute::new("zipkin.shared", AttrValue::Bool(true)));
        g.push(
            &SpanBatch {
                spans: vec![server, client],
            },
            0,
        );
        assert_eq!(g.stats().paired, 1);
        let text = render(&g.collect(0).0);
        assert!(
            text.contains(
                r#"traces_service_graph_request_server_seconds_sum{client="web", server="api"} 0.2"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_full_store_drops_and_counts_new_sides() {
        let mut g = ServiceGraph::new(ServiceGraphConfig {
            max_items: 2,
            ..Default::default()
        });
        let spans = (1..=4)
            .map(|i| span("frontend", "call", SpanKind::Client, 7, i, None, 0, 1))
            .collect();
        g.push(&SpanBatch { spans }, 0);
        assert_eq!(g.stats().pending, 2);
        assert_eq!(g.stats().dropped_spans, 2);
        // The waiting ones still pair.
        g.push(
            &SpanBatch {
                spans: vec![span("api", "call", SpanKind::Server, 7, 10, Some(1), 0, 1)],
            },
            0,
        );
        let (wb, _) = g.collect(0);
        let text = render(&wb);
        assert!(
            text.contains(r#"traces_service_graph_dropped_spans_total{client="frontend"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"traces_service_graph_request_total{client="frontend", server="api"} 1"#
            ),
            "{text}"
        );
        assert_eq!(g.stats().pending, 1);
    }

    #[test]
    fn series_past_the_limit_are_dropped_and_counted() {
        let mut g = ServiceGraph::new(ServiceGraphConfig {
            max_series: 2,
            ..Default::default()
        });
        // Three root servers: three virtual edges user → svcN; two fit.
        let spans = (1..=3)
            .map(|i| span(&format!("svc{i}"), "op", SpanKind::Server, 8, i, None, 0, 1))
            .collect();
        g.push(&SpanBatch { spans }, 0);
        g.push(
            &SpanBatch {
                spans: vec![span("svc1", "op", SpanKind::Server, 8, 9, None, 0, 1)],
            },
            0,
        );
        let (wb, _) = g.collect(0);
        let text = render(&wb);
        assert!(text.contains(r#"traces_service_graph_request_total{client="user", connection_type="virtual_node", server="svc1"} 2"#), "{text}");
        assert!(text.contains(r#"server="svc2""#));
        assert!(!text.contains(r#"server="svc3""#));
        assert_eq!(g.stats().dropped_series_updates, 1);
    }

    #[test]
    fn the_expiry_queue_stays_bounded_when_sides_pair_quickly() {
        let mut g = ServiceGraph::new(ServiceGraphConfig {
            max_items: 10,
            ..Default::default()
        });
        for i in 0..10_000u32 {
            let t = (i % 250) as u8;
            let id = (i / 250) as u8 + 1;
            let mut c = span("a", "x", SpanKind::Client, t, id, None, 0, 1);
            c.trace_id[0] = (i >> 8) as u8;
            let mut s = span("b", "x", SpanKind::Server, t, 200, Some(id), 0, 1);
            s.trace_id[0] = (i >> 8) as u8;
            g.push(&SpanBatch { spans: vec![c, s] }, 0);
        }
        assert_eq!(g.stats().paired, 10_000);
        assert!(g.queue.len() <= 2 * 1024 + 1, "{}", g.queue.len());
    }
}
