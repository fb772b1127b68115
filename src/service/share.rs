//! `didit.share.v1.ShareService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{AppState, run_call};
use crate::convert;
use crate::proto::share_service_server::ShareService;
use crate::proto::{ShareSessionRequest, ShareSessionResponse};

/// The ShareService implementation.
pub struct ShareApi {
    state: Arc<AppState>,
}

impl ShareApi {
    /// Serves `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ShareService for ShareApi {
    async fn share_session(
        &self,
        request: Request<ShareSessionRequest>,
    ) -> Result<Response<ShareSessionResponse>, Status> {
        let peer_certs = request.peer_certs();
        let (metadata, _, message) = request.into_parts();
        run_call(
            &self.state,
            "ShareSession",
            &metadata,
            peer_certs,
            |tenant, ctx| async move {
                let input = convert::share_request(message)?;
                let outcome = self.state.gateway.share(&tenant, input, ctx).await?;
                Ok(convert::share_response(outcome))
            },
        )
        .await
    }
}
