//! Hand-built spans and a text rendering of written series, for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use skopos_model::{
    Attribute, Resource, Scope, SeriesExemplars, Span, SpanKind, StatusCode, TraceId, WriteBatch,
};

/// Trace id number `n`.
pub fn tid(n: u8) -> TraceId {
    let mut id = [0xa0; 16];
    id[15] = n;
    id
}

/// One resource per service name, shared like a decoder shares it.
fn resource(service: &str) -> Arc<Resource> {
    static RESOURCES: OnceLock<Mutex<HashMap<String, Arc<Resource>>>> = OnceLock::new();
    let mut m = RESOURCES.get_or_init(Default::default).lock().unwrap();
    m.entry(service.to_string())
        .or_insert_with(|| {
            Arc::new(Resource {
                attributes: vec![Attribute::str("service.name", service)],
                dropped_attributes: 0,
            })
        })
        .clone()
}

/// A span of `service` in trace `trace` with span id `id` (and parent id
/// `parent`), starting at `start_ms` and lasting `dur_ms`.
#[allow(clippy::too_many_arguments)]
pub fn span(
    service: &str,
    name: &str,
    kind: SpanKind,
    trace: u8,
    id: u8,
    parent: Option<u8>,
    start_ms: i64,
    dur_ms: i64,
) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: [0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent.map(|p| [0, 0, 0, 0, 0, 0, 0, p]),
        trace_state: String::new(),
        flags: 1,
        name: name.into(),
        kind,
        start_ns: start_ms * 1_000_000,
        end_ns: (start_ms + dur_ms) * 1_000_000,
        attributes: Vec::new(),
        dropped_attributes: 0,
        events: Vec::new(),
        dropped_events: 0,
        links: Vec::new(),
        dropped_links: 0,
        status: StatusCode::Unset,
        status_message: String::new(),
        resource: resource(service),
        scope: Arc::new(Scope::default()),
    }
}

/// `name{labels} value` per series, one a line, in the order written.
pub fn render(wb: &WriteBatch) -> String {
    let mut s = String::new();
    for series in &wb.series {
        for sample in &series.samples {
            s.push_str(&format!("{} {}\n", series.labels, sample.v));
        }
    }
    s
}

/// `series trace_id=... value @ts` per exemplar, one a line.
pub fn render_exemplars(ex: &[SeriesExemplars]) -> String {
    let mut s = String::new();
    for se in ex {
        for e in &se.exemplars {
            s.push_str(&format!(
                "{} trace_id={} {} @{}\n",
                se.series,
                e.labels.get("trace_id").unwrap_or(""),
                e.value,
                e.ts_ms
            ));
        }
    }
    s
}
