//! OTLP/gRPC `MetricsService/Export`, `LogsService/Export` and
//! `TraceService/Export` (tonic), with
//! gzip accepted.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::server::{AppState, StoreError};

pub struct OtlpMetrics {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl MetricsService for OtlpMetrics {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let st = &self.state;
        check_token(st, &request)?;
        match crate::otlp_http::export(st, request.get_ref()).await {
            Ok(partial) => Ok(Response::new(ExportMetricsServiceResponse {
                partial_success: partial,
            })),
            Err(StoreError::Client(msg)) => Err(Status::invalid_argument(msg)),
            Err(StoreError::Unavailable(msg)) => Err(Status::unavailable(msg)),
        }
    }
}

pub fn service(state: Arc<AppState>, max_bytes: usize) -> MetricsServiceServer<OtlpMetrics> {
    MetricsServiceServer::new(OtlpMetrics { state })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}

fn check_token<T>(st: &AppState, request: &Request<T>) -> Result<(), Status> {
    if let Some(token) = &st.auth_token {
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !crate::auth::authorized(token, given) {
            return Err(Status::unauthenticated("missing or wrong bearer token"));
        }
    }
    Ok(())
}

pub struct OtlpLogs {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl LogsService for OtlpLogs {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let st = &self.state;
        check_token(st, &request)?;
        use crate::otlp_http::LogsExportError as E;
        match crate::otlp_http::export_logs(st, request.get_ref()).await {
            Ok(partial) => Ok(Response::new(ExportLogsServiceResponse {
                partial_success: partial,
            })),
            Err(E::Client(m)) => Err(Status::invalid_argument(m)),
            Err(E::Exhausted(m)) => Err(Status::resource_exhausted(m)),
            Err(E::Unavailable(m)) => Err(Status::unavailable(m)),
        }
    }
}

pub fn logs_service(state: Arc<AppState>, max_bytes: usize) -> LogsServiceServer<OtlpLogs> {
    LogsServiceServer::new(OtlpLogs { state })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}

pub struct OtlpTraces {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl TraceService for OtlpTraces {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let st = &self.state;
        check_token(st, &request)?;
        match crate::traces::export_traces(st, request.get_ref()).await {
            Ok(partial) => Ok(Response::new(ExportTraceServiceResponse {
                partial_success: partial,
            })),
            Err(crate::traces::TracesUnavailable(m)) => Err(Status::unavailable(m)),
        }
    }
}

pub fn traces_service(state: Arc<AppState>, max_bytes: usize) -> TraceServiceServer<OtlpTraces> {
    TraceServiceServer::new(OtlpTraces { state })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}
