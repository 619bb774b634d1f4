//! `POST /v1/metrics`: OTLP/HTTP metrics, protobuf or JSON, optionally
//! gzip; the same export path serves the gRPC `MetricsService`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use skopos_ingest::otlp::Encoding;

use crate::http::otlp::*;
use crate::state::{AppState, StoreError};

pub async fn export(
    st: &AppState,
    req: &ExportMetricsServiceRequest,
) -> Result<Option<ExportMetricsPartialSuccess>, StoreError> {
    let translation = st.otlp.translate(req);
    st.metadata.record(&translation.metadata);
    if translation.rejected_points > 0 {
        st.metrics.rejected(
            "otlp",
            "untranslatable",
            translation.rejected_points as usize,
        );
    }
    let outcome = st.store("otlp", translation.batch).await?;
    let mut rejected = translation.rejected_points;
    let mut message = translation.error_message;
    if let Some(r) = &outcome.first_rejection {
        rejected += outcome.rejected() as i64;
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(r);
    }
    Ok(
        (rejected > 0 || !message.is_empty()).then_some(ExportMetricsPartialSuccess {
            rejected_data_points: rejected,
            error_message: message,
        }),
    )
}

fn success(enc: Encoding, partial: Option<ExportMetricsPartialSuccess>) -> Response {
    let rejected = partial.as_ref().map(|p| {
        (
            "rejectedDataPoints",
            p.rejected_data_points,
            p.error_message.clone(),
        )
    });
    export_success(
        enc,
        || {
            ExportMetricsServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec()
        },
        rejected,
    )
}

/// The success answer of an OTLP/HTTP export (metrics, logs, traces): the
/// protobuf response `proto` encodes, or its JSON form, whose
/// `partialSuccess` names the rejected count under `rejected.0`.
pub async fn metrics(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (enc, req) = match read_request(
        &st,
        "otlp",
        &headers,
        body,
        skopos_ingest::otlp::decode_metrics_request,
    )
    .await
    {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match export(&st, &req).await {
        Ok(partial) => success(enc, partial),
        Err(StoreError::Client(msg)) => {
            status_response(StatusCode::BAD_REQUEST, enc, INVALID_ARGUMENT, msg)
        }
        Err(StoreError::Unavailable(msg)) => {
            status_response(StatusCode::SERVICE_UNAVAILABLE, enc, UNAVAILABLE, msg)
        }
    }
}
