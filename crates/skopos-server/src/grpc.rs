//! OTLP/gRPC `MetricsService/Export` (tonic), with gzip accepted.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
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
        if let Some(token) = &st.auth_token {
            let given = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if !crate::auth::authorized(token, given) {
                return Err(Status::unauthenticated("missing or wrong bearer token"));
            }
        }
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
