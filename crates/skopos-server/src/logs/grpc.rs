//! OTLP/gRPC `LogsService/Export` (tonic), gzip accepted.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::{Request, Response, Status};

use crate::http::auth::check_token;
use crate::state::AppState;

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
        use crate::logs::otlp::LogsExportError as E;
        match crate::logs::otlp::export_logs(st, request.get_ref()).await {
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
