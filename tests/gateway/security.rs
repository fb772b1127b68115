//! Attacks from the security review and what a caller sees: tenant ids
//! that are not exactly a configured one, HTTP/2 reset floods, oversized
//! messages and metadata.

use crate::env::{TestEnv, demo, reason, with_tenant};
use didit_sandbox::Dialect;
use didit_share_gateway::proto::ShareSessionRequest;
use tonic::Code;

/// A share of a real session, for `tenant` as sent in `x-tenant-id`.
fn share_request(tenant: &str, session_id: &str) -> tonic::Request<ShareSessionRequest> {
    with_tenant(
        tenant,
        ShareSessionRequest {
            session_id: session_id.into(),
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        },
    )
}

/// `"service-x "` and friends are not service-x: refused before Didit,
/// whatever the limiter or the lookup would have made of them.
#[tokio::test]
async fn tenant_ids_with_whitespace_or_other_bytes_are_refused_not_trimmed() {
    let env = TestEnv::start(Dialect::Seeds).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    for tenant in ["service-x ", " service-x", "service-x\t", "service-x."] {
        let status = env
            .share_client
            .clone()
            .share_session(share_request(tenant, &session))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{tenant:?}");
        assert_eq!(reason(&status), "UNKNOWN_TENANT", "{tenant:?}");
    }
    assert_eq!(env.stats().share_calls, 0, "nothing reached Didit");
    // The exact id still works.
    env.share_client
        .clone()
        .share_session(share_request("service-x", &session))
        .await
        .unwrap();
    assert_eq!(env.stats().share_calls, 1);
    env.stop().await;
}
