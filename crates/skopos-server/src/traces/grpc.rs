//! OTLP/gRPC `TraceService/Export` (tonic), gzip accepted.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::http::auth::check_token;
use crate::state::AppState;

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
        match crate::traces::ingest::export_traces(st, request.into_inner()).await {
            Ok(partial) => Ok(Response::new(ExportTraceServiceResponse {
                partial_success: partial,
            })),
            Err(crate::traces::ingest::TracesUnavailable(m)) => Err(Status::unavailable(m)),
        }
    }
}

pub fn traces_service(state: Arc<AppState>, max_bytes: usize) -> TraceServiceServer<OtlpTraces> {
    TraceServiceServer::new(OtlpTraces { state })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}
