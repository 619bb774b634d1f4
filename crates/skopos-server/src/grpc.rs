//! OTLP/gRPC `MetricsService/Export` (tonic), with gzip accepted.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
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
        let translation = st.otlp.translate(request.get_ref());
        if translation.rejected_points > 0 {
            st.metrics.rejected(
                "otlp",
                "untranslatable",
                translation.rejected_points as usize,
            );
        }
        match st.store("otlp", translation.batch).await {
            Ok(outcome) => {
                let mut rejected = translation.rejected_points;
                let mut message = translation.error_message;
                if let Some(r) = outcome.first_rejection.clone() {
                    rejected += outcome.rejected() as i64;
                    if !message.is_empty() {
                        message.push_str("; ");
                    }
                    message.push_str(&r);
                }
                let partial =
                    (rejected > 0 || !message.is_empty()).then_some(ExportMetricsPartialSuccess {
                        rejected_data_points: rejected,
                        error_message: message,
                    });
                Ok(Response::new(ExportMetricsServiceResponse {
                    partial_success: partial,
                }))
            }
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
