//! Trace ingestion: `POST /v1/traces` (OTLP/HTTP), the gRPC
//! `TraceService/Export` (see `grpc.rs`) and `POST /api/v2/spans` (Zipkin
//! v2 JSON) all end in [`AppState::append_spans`], which stores the spans
//! and feeds the span metrics and service graph processors. A loop
//! ([`derived_metrics_loop`]) collects those processors into the TSDB and
//! their exemplars into the TSDB's exemplar ring.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use prost::Message;
use skopos_ingest::otlp_traces::TranslatedSpans;
use skopos_spanmetrics::{ServiceGraph, SpanMetrics};
use skopos_units::now_ms;

use crate::state::AppState;

/// The processors that turn spans into metrics, behind one mutex each.
pub struct SpanDerived {
    pub span_metrics: Mutex<SpanMetrics>,
    pub service_graph: Mutex<ServiceGraph>,
}

/// What storing a request's spans did, for `partial_success`.
#[derive(Debug, Default)]
pub struct SpansOutcome {
    pub stored: usize,
    pub rejected: i64,
    pub message: String,
}

/// Storing spans failed as a whole: the store cannot take writes now.
pub struct TracesUnavailable(pub String);

impl AppState {
    /// Stores translated spans off the async runtime, then feeds the span
    /// metrics and service graph with them. Spans the decoder rejected and
    /// spans the store refused (per-trace limits) are counted together.
    pub async fn append_spans(
        &self,
        proto: &'static str,
        t: TranslatedSpans,
    ) -> Result<SpansOutcome, TracesUnavailable> {
        let mut out = SpansOutcome {
            rejected: t.rejected_spans,
            message: t.error_message,
            ..SpansOutcome::default()
        };
        if out.rejected > 0 {
            self.metrics
                .rejected(proto, "malformed", out.rejected as usize);
        }
        let mut batch = t.batch;
        let now = crate::state::now_ns();
        let before = batch.spans.len();
        let mut first = None;
        batch
            .spans
            .retain(|s| match self.traces_bounds.check(s.start_ns, now) {
                None => true,
                Some(why) => {
                    first.get_or_insert(why);
                    false
                }
            });
        let refused = before - batch.spans.len();
        if let Some(why) = first {
            self.metrics.rejected(proto, "out_of_bounds", refused);
            out.rejected += refused as i64;
            if !out.message.is_empty() {
                out.message.push_str("; ");
            }
            out.message
                .push_str(&format!("{refused} spans refused: {why}"));
        }
        if batch.spans.is_empty() {
            return Ok(out);
        }
        let store = self.traces.clone();
        let derived = self.derived.clone();
        let result = crate::http::panic::blocking_or_error("span append", move || {
            // The span metrics and service graph see what the store keeps,
            // once it is in the WAL: nothing a failed write or a retry would
            // count twice. They borrow the spans on their way into the head.
            match derived {
                None => store.append(batch),
                Some(derived) => store.append_observed(batch, &mut |kept| {
                    derived.span_metrics.lock().push(kept);
                    derived.service_graph.lock().push(kept, now_ms());
                }),
            }
        })
        .await
        .map_err(|e| TracesUnavailable(e.to_string()))?;
        match result {
            Ok(a) => {
                out.stored = a.spans;
                if a.rejected > 0 {
                    self.metrics.rejected(proto, "trace_limit", a.rejected);
                    out.rejected += a.rejected as i64;
                    if let Some(r) = a.reject_reason {
                        if !out.message.is_empty() {
                            out.message.push_str("; ");
                        }
                        out.message.push_str(&r);
                    }
                }
                Ok(out)
            }
            Err(e) => {
                self.metrics.rejected(proto, "unavailable", 1);
                Err(TracesUnavailable(e.to_string()))
            }
        }
    }
}

/// Translates and stores one OTLP traces request (both transports).
pub async fn export_traces(
    st: &AppState,
    req: ExportTraceServiceRequest,
) -> Result<Option<ExportTracePartialSuccess>, TracesUnavailable> {
    let t = skopos_ingest::otlp_traces::translate_traces(req);
    let out = st.append_spans("otlp_traces", t).await?;
    Ok(
        (out.rejected > 0 || !out.message.is_empty()).then_some(ExportTracePartialSuccess {
            rejected_spans: out.rejected,
            error_message: out.message,
        }),
    )
}

/// `POST /v1/traces`: protobuf or JSON, optionally gzip.
pub async fn otlp_traces(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (enc, req) = match crate::http::otlp::read_request(
        &st,
        "otlp_traces",
        &headers,
        body,
        skopos_ingest::otlp_traces::decode_traces_request,
    )
    .await
    {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match export_traces(&st, req).await {
        Ok(partial) => {
            let rejected = partial
                .as_ref()
                .map(|p| ("rejectedSpans", p.rejected_spans, p.error_message.clone()));
            crate::http::otlp::export_success(
                enc,
                || {
                    ExportTraceServiceResponse {
                        partial_success: partial,
                    }
                    .encode_to_vec()
                },
                rejected,
            )
        }
        Err(TracesUnavailable(m)) => crate::http::otlp::status_response(
            StatusCode::SERVICE_UNAVAILABLE,
            enc,
            crate::http::otlp::UNAVAILABLE,
            m,
        ),
    }
}

/// `POST /api/v2/spans`: Zipkin v2 JSON (gzip allowed). 202 as Zipkin
/// answers; a body that is not a span list is a 400 with the reason, and
/// nothing of it is stored. Spans refused one by one are named in the
/// (otherwise empty) 202 body, Zipkin having no partial-success field.
pub async fn zipkin_spans(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    if !base.is_empty() && base != "application/json" {
        st.metrics.rejected("zipkin", "content_type", 1);
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {ct:?}: skopos takes Zipkin v2 JSON (application/json)\n"
            ),
        )
            .into_response();
    }
    let raw = match crate::http::body::read_body(&headers, body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            st.metrics.rejected("zipkin", "body", 1);
            return (e.status, format!("{}\n", e.message)).into_response();
        }
    };
    let t = match skopos_ingest::zipkin::decode_zipkin_v2(&raw) {
        Ok(t) => t,
        Err(e) => {
            st.metrics.rejected("zipkin", "malformed", 1);
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let all_bad = t.batch.spans.is_empty() && t.rejected_spans > 0;
    match st.append_spans("zipkin", t).await {
        Ok(out) if all_bad => {
            (StatusCode::BAD_REQUEST, format!("{}\n", out.message)).into_response()
        }
        Ok(out) if out.rejected > 0 => {
            (StatusCode::ACCEPTED, format!("{}\n", out.message)).into_response()
        }
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(TracesUnavailable(m)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{m}\n")).into_response()
        }
    }
}

/// Collects the span metrics and the service graph every `every`, appends
/// the series to the TSDB and the exemplars to the TSDB's exemplar ring.
pub async fn derived_metrics_loop(st: Arc<AppState>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        collect_derived(&st).await;
    }
}

/// One collection of the span-derived metrics.
pub async fn collect_derived(st: &AppState) {
    let Some(derived) = st.derived.clone() else {
        return;
    };
    let collected = tokio::task::spawn_blocking(move || {
        let now = now_ms();
        let (mut wb, mut ex) = derived.span_metrics.lock().collect(now);
        let mut g = derived.service_graph.lock();
        g.expire(now);
        let (wb2, ex2) = g.collect(now);
        wb.series.extend(wb2.series);
        ex.extend(ex2);
        (wb, ex)
    })
    .await;
    let (wb, ex) = match collected {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "span metrics collection panicked");
            return;
        }
    };
    if let Err(e) = st.db.exemplars().add(&ex) {
        tracing::warn!(error = %e, "storing span metric exemplars failed");
    }
    match st.store("spanmetrics", wb).await {
        Ok(_) => {}
        Err(crate::state::StoreError::Client(m) | crate::state::StoreError::Unavailable(m)) => {
            tracing::warn!(error = %m, "storing span metrics failed")
        }
    }
}
