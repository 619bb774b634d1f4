//! OTLP/gRPC `MetricsService/Export` (tonic), gzip accepted.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::http::auth::check_token;
use crate::state::{AppState, StoreError};

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
        match crate::metrics::otlp::export(st, request.get_ref()).await {
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
