//! `POST /v1/metrics` and `POST /v1/logs`: OTLP/HTTP, binary protobuf or
//! JSON, optionally gzip.
//!
//! Answers in the request's encoding: `ExportMetricsServiceResponse` with
//! `partial_success` when some points were refused, or a `google.rpc.Status`
//! with a 4xx when the request as a whole is bad (never retried by SDKs), or
//! 503 when storage is unavailable (retried).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use skopos_ingest::otlp::Encoding;

use crate::server::{AppState, StoreError};

/// `google.rpc.Status`, the error body OTLP/HTTP specifies.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

const INVALID_ARGUMENT: i32 = 3;
pub(crate) const UNAVAILABLE: i32 = 14;

fn encoding(headers: &HeaderMap) -> Result<Encoding, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(format!(
            "unsupported Content-Type {ct:?}: OTLP/HTTP takes application/x-protobuf or application/json"
        )),
    }
}

pub(crate) fn status_response(
    status: StatusCode,
    enc: Encoding,
    code: i32,
    message: String,
) -> Response {
    match enc {
        Encoding::Protobuf => {
            let body = RpcStatus { code, message }.encode_to_vec();
            (
                status,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                body,
            )
                .into_response()
        }
        Encoding::Json => {
            let body = serde_json::json!({"code": code, "message": message}).to_string();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}

/// Translates and stores one OTLP metrics request (both transports). Points
/// that could not be translated or stored are reported in the partial
/// success, as OTLP specifies; the rest are stored.
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
    if let Some(r) = outcome.first_rejection {
        rejected += (outcome.too_old + outcome.conflicts) as i64;
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&r);
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
pub(crate) fn export_success(
    enc: Encoding,
    proto: impl FnOnce() -> Vec<u8>,
    rejected: Option<(&'static str, i64, String)>,
) -> Response {
    match enc {
        Encoding::Protobuf => {
            ([(header::CONTENT_TYPE, "application/x-protobuf")], proto()).into_response()
        }
        Encoding::Json => {
            let body = match rejected {
                Some((field, n, message)) => serde_json::json!({"partialSuccess": {
                    field: n.to_string(),
                    "errorMessage": message}}),
                None => serde_json::json!({}),
            };
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// The encoding and decoded request of an OTLP/HTTP export, or the error
/// response (counted as rejected under `proto`).
pub(crate) async fn read_request<T>(
    st: &AppState,
    proto: &'static str,
    headers: &HeaderMap,
    body: Body,
    decode: fn(&[u8], Encoding) -> Result<T, skopos_ingest::DecodeError>,
) -> Result<(Encoding, T), Box<Response>> {
    let enc = encoding(headers).map_err(|msg| {
        st.metrics.rejected(proto, "content_type", 1);
        Box::new((StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).into_response())
    })?;
    let raw = crate::body::read_body(headers, body, st.max_body_bytes)
        .await
        .map_err(|e| {
            st.metrics.rejected(proto, "body", 1);
            Box::new(status_response(e.status, enc, INVALID_ARGUMENT, e.message))
        })?;
    let req = decode(&raw, enc).map_err(|e| {
        st.metrics.rejected(proto, "malformed", 1);
        Box::new(status_response(
            StatusCode::BAD_REQUEST,
            enc,
            INVALID_ARGUMENT,
            e.to_string(),
        ))
    })?;
    Ok((enc, req))
}

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
