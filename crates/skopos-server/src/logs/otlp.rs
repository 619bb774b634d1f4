//! `POST /v1/logs` (and Loki's `/otlp/v1/logs`): OTLP/HTTP logs; the same
//! export path serves the gRPC `LogsService`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use crate::http::otlp::*;
use crate::state::AppState;

/// Why an OTLP logs export failed as a whole.
pub enum LogsExportError {
    /// The client's data is at fault (a limit); not retried.
    Client(String),
    /// Too many active streams; retried later (429 / RESOURCE_EXHAUSTED).
    Exhausted(String),
    /// The store cannot take the write now.
    Unavailable(String),
}

/// Translates and stores one OTLP logs request (both transports).
pub async fn export_logs(
    st: &AppState,
    req: &ExportLogsServiceRequest,
) -> Result<Option<ExportLogsPartialSuccess>, LogsExportError> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let t = skopos_ingest::otlp_logs::translate_logs(req, now_ns);
    if t.rejected_records > 0 {
        st.metrics
            .rejected("otlp_logs", "malformed", t.rejected_records as usize);
    }
    let stored = st
        .append_logs(t.batch)
        .await
        .map_err(|e| LogsExportError::Unavailable(e.to_string()))?;
    match stored {
        Ok(_) => Ok(
            (t.rejected_records > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: t.rejected_records,
                error_message: t.error_message,
            }),
        ),
        Err(skopos_logs::LogsError::Limit(m)) => Err(LogsExportError::Client(m)),
        Err(skopos_logs::LogsError::Streams(m)) => Err(LogsExportError::Exhausted(m)),
        Err(e) => Err(LogsExportError::Unavailable(e.to_string())),
    }
}

const RESOURCE_EXHAUSTED: i32 = 8;

/// `POST /v1/logs` (also `/otlp/v1/logs`, Loki's path).
pub async fn logs(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let (enc, req) = match read_request(
        &st,
        "otlp_logs",
        &headers,
        body,
        skopos_ingest::otlp_logs::decode_logs_request,
    )
    .await
    {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    match export_logs(&st, &req).await {
        Ok(partial) => {
            let rejected = partial.as_ref().map(|p| {
                (
                    "rejectedLogRecords",
                    p.rejected_log_records,
                    p.error_message.clone(),
                )
            });
            export_success(
                enc,
                || {
                    ExportLogsServiceResponse {
                        partial_success: partial,
                    }
                    .encode_to_vec()
                },
                rejected,
            )
        }
        Err(LogsExportError::Client(m)) => {
            status_response(StatusCode::BAD_REQUEST, enc, INVALID_ARGUMENT, m)
        }
        Err(LogsExportError::Exhausted(m)) => {
            status_response(StatusCode::TOO_MANY_REQUESTS, enc, RESOURCE_EXHAUSTED, m)
        }
        Err(LogsExportError::Unavailable(m)) => {
            status_response(StatusCode::SERVICE_UNAVAILABLE, enc, UNAVAILABLE, m)
        }
    }
}
