//! `POST /api/v1/write`: Prometheus remote write 1.0.
//!
//! Status codes follow the spec: 204 when stored; 400 for data the sender
//! must not retry (malformed snappy or protobuf, a label limit, samples
//! refused as too old or conflicting — the rest of the request is stored,
//! as Prometheus does); 413 for an oversized body; 503 when storage cannot
//! take the write, which the sender retries.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::{AppState, StoreError};

pub async fn write(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    const PROTO: &str = "remote_write";
    let raw = match crate::http::body::read_body(&headers, body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            st.metrics.rejected(PROTO, "body", 1);
            return (e.status, e.message).into_response();
        }
    };
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        if !ct.is_empty() && !ct.starts_with("application/x-protobuf") {
            st.metrics.rejected(PROTO, "content_type", 1);
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type {ct:?}: remote write 1.0 is application/x-protobuf\n"
                ),
            )
                .into_response();
        }
    }
    let decoded = match skopos_ingest::remote_write::decode(&raw, st.max_body_bytes) {
        Ok(d) => d,
        Err(e) => {
            st.metrics.rejected(PROTO, "malformed", 1);
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    st.metadata.record(&decoded.metadata);
    // Exemplar problems never fail the request (as in Prometheus); the
    // samples decide the answer.
    if !decoded.exemplars.is_empty() {
        let db = st.db.clone();
        let ex = decoded.exemplars;
        match tokio::task::spawn_blocking(move || db.exemplars().add(&ex)).await {
            Ok(Ok(o)) if o.out_of_order + o.too_long > 0 => tracing::debug!(
                out_of_order = o.out_of_order,
                too_long = o.too_long,
                "remote write exemplars dropped"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "storing remote write exemplars failed"),
            Err(e) => tracing::error!(error = %e, "storing exemplars panicked"),
        }
    }
    match st.store(PROTO, decoded.batch).await {
        Ok(outcome) => match outcome.first_rejection.clone() {
            Some(msg) => (
                StatusCode::BAD_REQUEST,
                format!("{} samples refused: {msg}\n", outcome.rejected()),
            )
                .into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
        Err(StoreError::Client(msg)) => {
            (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
        }
        Err(StoreError::Unavailable(msg)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{msg}\n")).into_response()
        }
    }
}
