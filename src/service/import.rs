//! `didit.share.v1.ImportService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{AppState, run_call};
use crate::convert;
use crate::proto::import_service_server::ImportService;
use crate::proto::{ImportSharedSessionRequest, ImportSharedSessionResponse};

/// The ImportService implementation.
pub struct ImportApi {
    state: Arc<AppState>,
}

impl ImportApi {
    /// Serves `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ImportService for ImportApi {
    async fn import_shared_session(
        &self,
        request: Request<ImportSharedSessionRequest>,
    ) -> Result<Response<ImportSharedSessionResponse>, Status> {
        let peer_certs = request.peer_certs();
        let (metadata, _, message) = request.into_parts();
        run_call(
            &self.state,
            "ImportSharedSession",
            &metadata,
            peer_certs,
            |tenant, ctx| async move {
                let input = convert::import_request(message)?;
                let outcome = self.state.gateway.import(&tenant, input, ctx).await?;
                convert::import_response(&outcome)
            },
        )
        .await
    }
}
