//! `POST /v1/metrics` and `POST /v1/logs`: OTLP/HTTP, binary protobuf or
//! JSON, optionally gzip.
//!
//! Answers in the request's encoding: `ExportMetricsServiceResponse` with
//! `partial_success` when some points were refused, or a `google.rpc.Status`
//! with a 4xx when the request as a whole is bad (never retried by SDKs), or
//! 503 when storage is unavailable (retried).

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use skopos_ingest::otlp::Encoding;

use crate::state::AppState;

/// `google.rpc.Status`, the error body OTLP/HTTP specifies.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

pub(crate) const INVALID_ARGUMENT: i32 = 3;
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
    let raw = crate::http::body::read_body(headers, body, st.max_body_bytes)
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
