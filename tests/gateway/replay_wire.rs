//! Replays as bytes: the import answer is encoded once, when its record is
//! stored, and every answer (the first one included) is those bytes with
//! `replayed`/`recovered` appended. Checked with the generated client on
//! both state backends: the replay decodes to the first answer with
//! `replayed = true`, the record holds the first answer's encoding, and a
//! record written by the earlier format (Didit's JSON) still replays.

use std::time::Duration;

use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::proto::{self, ImportSharedSessionResponse};
use didit_share_gateway::replay::{StoredImport, import_id};
use didit_share_gateway::session::ShareToken;
use didit_share_gateway::state::{Backend, StateConfig};
use prost::Message as _;
use serde_json::json;
use tonic::Code;

use crate::env::{TestEnv, demo, reason};
use crate::state::server::RedisServer;

/// The gateway on the memory store, or on a fresh Redis (`None` when
/// redis-server is missing: skipped).
struct Backed {
    env: TestEnv,
    _redis: Option<(RedisServer, tempfile::TempDir)>,
}

async fn memory() -> Backed {
    Backed {
        env: TestEnv::start_with(SandboxConfig::default(), |_| {}).await,
        _redis: None,
    }
}

async fn redis() -> Option<Backed> {
    let server = RedisServer::start()?;
    let secrets = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
    std::fs::write(secrets.path().join("state-key"), key).unwrap();
    let (url, key_file) = (server.url(), secrets.path().join("state-key"));
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.state = StateConfig {
            backend: Backend::Redis,
            redis_url: Some(url),
            encryption_key_file: Some(key_file),
            key_prefix: "wire".into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(500),
            ..StateConfig::default()
        };
    })
    .await;
    Some(Backed {
        env,
        _redis: Some((server, secrets)),
    })
}

/// An import by service-y of a fresh session of service-x: the first
/// answer, then the retry's, and the stored record.
async fn first_then_replay(env: &TestEnv) {
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    let import = || env.import("service-y", &token, &y.workflows.user, "u-7", true);
    let first = import().await.unwrap();
    assert!(!first.replayed && !first.recovered, "{first:?}");
    assert!(!first.id_verifications.is_empty() && !first.raw_json.is_empty());
    let before = env.stats().import_calls;
    let again = import().await.unwrap();
    assert_eq!(
        env.stats().import_calls,
        before,
        "the retry never reaches Didit"
    );
    assert_eq!(
        again,
        ImportSharedSessionResponse {
            replayed: true,
            ..first.clone()
        }
    );
    // The record keeps the first answer's encoding, as prost writes it.
    let id = import_id("service-y", &ShareToken::new(token.clone()));
    let record = env
        .state
        .gateway
        .store()
        .get_record(&id)
        .await
        .unwrap()
        .expect("a stored record");
    let stored = StoredImport::decode(&record).unwrap();
    assert_eq!(stored.answer, Bytes::from(first.encode_to_vec()));
    assert_eq!(stored.session_id, first.session_id);
    // Other parameters are still refused.
    let other = env
        .import("service-y", &token, &y.workflows.user, "u-8", true)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    assert_eq!(reason(&other), "ALREADY_IMPORTED");
}

#[tokio::test]
async fn a_replay_is_the_first_answer_flagged_replayed_memory() {
    let backed = memory().await;
    first_then_replay(&backed.env).await;
    backed.env.stop().await;
}

#[tokio::test]
async fn a_replay_is_the_first_answer_flagged_replayed_redis() {
    let Some(backed) = redis().await else { return };
    first_then_replay(&backed.env).await;
    backed.env.stop().await;
}

/// A record as the first format wrote it (version 1): a length, a JSON
/// head with the session's kind and status, then Didit's exact JSON.
fn version_1_record(body: &str, recovered: bool) -> Bytes {
    let head = json!({
        "v": 1,
        "workflow_id": "wf_service_y_kyc",
        "vendor_data": "u-old",
        "trust_review": true,
        "session_id": "0b6f4c52-7e53-4d8a-9d58-5f3c2b1a0e99",
        "session_kind": "user",
        "status": "In Review",
        "recovered": recovered,
    })
    .to_string();
    let mut out = BytesMut::new();
    out.put_u32(u32::try_from(head.len()).unwrap());
    out.put_slice(head.as_bytes());
    out.put_slice(body.as_bytes());
    out.freeze()
}

/// A version 1 record put in the store replays: the answer is built from
/// its JSON, flagged replayed (and recovered), Didit is not called.
async fn an_old_record_replays(env: &TestEnv) {
    let body = r#"{"session_id":"0b6f4c52-7e53-4d8a-9d58-5f3c2b1a0e99","session_number":41,
        "status":"In Review","vendor_data":"u-old","shared_from_session":"orig-1",
        "id_verifications":[{"status":"Approved","document_type":"Passport"}]}"#;
    for (n, recovered) in [(0, false), (1, true)] {
        let token = format!("old.record.token-{n}");
        let id = import_id("service-y", &ShareToken::new(token.clone()));
        env.state
            .gateway
            .store()
            .put_record(
                &id,
                version_1_record(body, recovered),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let before = env.stats().import_calls;
        let answer = env
            .import("service-y", &token, "wf_service_y_kyc", "u-old", true)
            .await
            .unwrap();
        assert_eq!(env.stats().import_calls, before);
        assert!(answer.replayed);
        assert_eq!(answer.recovered, recovered);
        assert_eq!(answer.session_id, "0b6f4c52-7e53-4d8a-9d58-5f3c2b1a0e99");
        assert_eq!(answer.session_number, 41);
        assert_eq!(answer.session_kind, proto::SessionKind::User as i32);
        assert_eq!(answer.status, proto::SessionStatus::InReview as i32);
        assert_eq!(answer.shared_from_session, "orig-1");
        assert_eq!(answer.raw_json, body.as_bytes());
        assert_eq!(answer.id_verifications.len(), 1);
        let refused = env
            .import(
                "service-y",
                &token,
                "wf_service_y_kyc",
                "someone-else",
                true,
            )
            .await
            .unwrap_err();
        assert_eq!(reason(&refused), "ALREADY_IMPORTED");
    }
}

#[tokio::test]
async fn a_record_of_the_first_format_still_replays_memory() {
    let backed = memory().await;
    an_old_record_replays(&backed.env).await;
    backed.env.stop().await;
}

#[tokio::test]
async fn a_record_of_the_first_format_still_replays_redis() {
    let Some(backed) = redis().await else { return };
    an_old_record_replays(&backed.env).await;
    backed.env.stop().await;
}

/// The hand-written ImportService answers an unknown method of its own
/// service as the generated one did: UNIMPLEMENTED.
#[tokio::test]
async fn an_unknown_import_method_is_unimplemented() {
    let env = TestEnv::start_with(SandboxConfig::default(), |_| {}).await;
    let mut grpc = tonic::client::Grpc::new(env.channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<
        proto::ImportSharedSessionRequest,
        ImportSharedSessionResponse,
    >::default();
    let path = http::uri::PathAndQuery::from_static("/didit.share.v1.ImportService/NoSuchMethod");
    let request =
        crate::env::with_tenant("service-y", proto::ImportSharedSessionRequest::default());
    let status = grpc.unary(request, path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    env.stop().await;
}
