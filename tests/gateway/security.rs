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

/// A gRPC ShareSession call on a raw HTTP/2 connection: its `grpc-status`.
async fn raw_share(
    client: h2::client::SendRequest<bytes::Bytes>,
    authority: &str,
    session_id: &str,
) -> Result<String, h2::Error> {
    use prost::Message as _;
    let message = ShareSessionRequest {
        session_id: session_id.into(),
        for_application_id: demo("service-y").application_id.to_string(),
        ttl_seconds: None,
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut client = client.ready().await?;
    let (response, mut send) = client.send_request(grpc_post(authority), false)?;
    send.send_data(body.into(), true)?;
    let mut body = response.await?.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    Ok(trailers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default())
}

fn grpc_post(authority: &str) -> http::Request<()> {
    http::Request::post(format!(
        "http://{authority}/didit.share.v1.ShareService/ShareSession"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("x-tenant-id", "service-x")
    .body(())
    .unwrap()
}

/// A client that opens and at once cancels thousands of calls on one
/// connection (HEADERS then RST_STREAM, the "rapid reset" pattern) must not
/// get that connection closed with a GOAWAY: a call in flight on it, and
/// one on another connection, both succeed.
#[tokio::test]
async fn a_burst_of_cancelled_calls_does_not_fail_other_calls() {
    let env = TestEnv::start(Dialect::Seeds).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    // Every upstream call is slow, so the long calls span the burst.
    env.faults(serde_json::json!({"latency_ms": 1000})).await;
    let authority = env.grpc_addr.to_string();
    let tcp = tokio::net::TcpStream::connect(env.grpc_addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let long_a = tokio::spawn({
        let (client, authority, session) = (client.clone(), authority.clone(), session.clone());
        async move { raw_share(client, &authority, &session).await }
    });
    let long_b = tokio::spawn({
        let mut other = env.share_client.clone();
        let request = share_request("service-x", &session);
        async move { other.share_session(request).await }
    });
    // 3,000 calls on connection A, each reset as soon as it is sent.
    let mut burst = client.clone();
    for _ in 0..3_000 {
        burst = burst.ready().await.unwrap();
        let (_response, mut send) = burst.send_request(grpc_post(&authority), false).unwrap();
        send.send_reset(h2::Reason::CANCEL);
    }
    let long_a = long_a.await.unwrap();
    assert_eq!(
        long_a.as_ref().map(String::as_str).ok(),
        Some("0"),
        "the call in flight on the resetting connection: {long_a:?}"
    );
    let long_b = long_b.await.unwrap();
    assert!(long_b.is_ok(), "the call on another connection: {long_b:?}");
    // The resetting connection still serves new calls.
    let after = raw_share(client, &authority, &session).await;
    assert_eq!(
        after.as_ref().map(String::as_str).ok(),
        Some("0"),
        "{after:?}"
    );
    connection.abort();
    env.faults(serde_json::json!({})).await;
    env.stop().await;
}

/// A request message over the 64 KiB decoding limit: RESOURCE_EXHAUSTED
/// (tonic's codec says OUT_OF_RANGE), before any service code runs.
#[tokio::test]
async fn an_oversized_message_is_resource_exhausted() {
    let env = TestEnv::start(Dialect::Seeds).await;
    let y = demo("service-y");
    let status = env
        .import(
            "service-y",
            &"t".repeat(100 * 1024),
            &y.workflows.user,
            "",
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("65536"), "{status:?}");
    assert_eq!(env.stats().import_calls, 0);
    env.stop().await;
}

/// Metadata over the 16 KiB HTTP/2 header list limit never reaches the
/// gateway's code: h2 answers HTTP 431, which the client reports as a
/// non-gRPC answer; a call under the limit on the same channel still works.
#[tokio::test]
async fn oversized_metadata_is_refused_by_http2() {
    let env = TestEnv::start(Dialect::Seeds).await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let mut request = share_request("service-x", &session);
    request
        .metadata_mut()
        .insert("x-padding", "p".repeat(20 * 1024).parse().unwrap());
    let status = env
        .share_client
        .clone()
        .share_session(request)
        .await
        .unwrap_err();
    // tonic: "grpc-status header missing, mapped from HTTP status code 431".
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert!(status.message().contains("431"), "{status:?}");
    assert_eq!(env.stats().share_calls, 0);
    let mut request = share_request("service-x", &session);
    request
        .metadata_mut()
        .insert("x-padding", "p".repeat(8 * 1024).parse().unwrap());
    env.share_client
        .clone()
        .share_session(request)
        .await
        .unwrap();
    env.stop().await;
}
