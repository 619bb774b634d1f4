//! Metrics derived from spans, as Tempo's metrics-generator makes them:
//! [`SpanMetrics`] (RED metrics per service, span name, kind and status)
//! and [`ServiceGraph`] (request counts and latencies between services,
//! from client/server and producer/consumer span pairs).
//!
//! The one design decision to know: both processors are sans-I/O state
//! machines. They are fed `&SpanBatch`es as the trace store accepts them,
//! keep cumulative counters in memory, and `collect(now_ms)` hands back a
//! [`WriteBatch`](skopos_model::WriteBatch) of every series at `now_ms`
//! plus the exemplars (`trace_id`) gathered since the last collect; the
//! caller appends those to the TSDB on a timer. Memory is bounded: each
//! processor caps its series (label combinations), and the service graph
//! caps the edges waiting for their other half; what does not fit is
//! dropped and counted. Names, label values and defaults follow Tempo's
//! documentation so dashboards written for Tempo work unchanged.

mod histogram;
mod servicegraph;
mod spanmetrics;
#[cfg(test)]
mod testutil;

pub use servicegraph::{
    ConnectionType, ServiceGraph, ServiceGraphConfig, ServiceGraphStats,
    DEFAULT_SERVICE_GRAPH_BUCKETS,
};
pub use spanmetrics::{
    span_kind_label, status_code_label, SpanMetrics, SpanMetricsConfig, SpanMetricsStats,
    DEFAULT_LATENCY_BUCKETS,
};
