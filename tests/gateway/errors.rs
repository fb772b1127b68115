//! The error table of the contract: each row, with its gRPC code and
//! ErrorInfo reason, in both sandbox dialects; invalid requests never reach
//! Didit.

use crate::env::{DIALECTS, READ_ONLY_TENANT, TestEnv, demo, error_metadata, reason, with_tenant};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::config::{KeySource, TenantConfig};
use didit_share_gateway::proto::ShareSessionRequest;
use didit_share_gateway::tenant::ApiKey;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

fn assert_status(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    want_reason: &str,
    context: &str,
) -> tonic::Status {
    let status = result.expect_err(context);
    assert_eq!(status.code(), code, "{context}: {status:?}");
    assert_eq!(reason(&status), want_reason, "{context}");
    status
}

#[tokio::test]
async fn invalid_requests_are_refused_before_any_upstream_call() {
    let env = TestEnv::start(Default::default()).await;
    let y = demo("service-y").application_id.to_string();
    let session = env.create_session("service-x", "user", "Approved").await;
    let before = env.stats();
    let cases: Vec<(&str, Result<_, tonic::Status>)> = vec![
        (
            "bad session uuid",
            env.share("service-x", "not-a-uuid", &y, None)
                .await
                .map(|_| ()),
        ),
        (
            "bad target uuid",
            env.share("service-x", &session, "partner-app", None)
                .await
                .map(|_| ()),
        ),
        (
            "ttl 59",
            env.share("service-x", &session, &y, Some(59))
                .await
                .map(|_| ()),
        ),
        (
            "ttl 86401",
            env.share("service-x", &session, &y, Some(86_401))
                .await
                .map(|_| ()),
        ),
        (
            "empty token",
            env.import("service-y", "", "wf", "", false)
                .await
                .map(|_| ()),
        ),
        (
            "oversized token",
            env.import("service-y", &"a".repeat(5000), "wf", "", false)
                .await
                .map(|_| ()),
        ),
        (
            "empty workflow",
            env.import("service-y", "a.b.c", "", "", false)
                .await
                .map(|_| ()),
        ),
        (
            "oversized vendor_data",
            env.import("service-y", "a.b.c", "wf", &"v".repeat(2000), false)
                .await
                .map(|_| ()),
        ),
    ];
    for (context, result) in cases {
        let status = assert_status(result, Code::InvalidArgument, "INVALID_REQUEST", context);
        let violations = status
            .get_details_bad_request()
            .expect(context)
            .field_violations;
        assert!(
            !violations.is_empty(),
            "{context}: BadRequest has violations"
        );
    }
    // TTL bounds themselves are accepted.
    for ttl in [60, 86_400] {
        env.share("service-x", &session, &y, Some(ttl))
            .await
            .unwrap();
    }
    let after = env.stats();
    assert_eq!(
        after.share_calls - before.share_calls,
        2,
        "only the two valid shares reached Didit"
    );
    assert_eq!(after.import_calls, before.import_calls);
    env.stop().await;
}

#[tokio::test]
async fn missing_or_unknown_tenants_are_unauthenticated() {
    let env = TestEnv::start(Default::default()).await;
    let y = demo("service-y").application_id.to_string();
    let session = env.create_session("service-x", "user", "Approved").await;
    let before = env.stats();
    let request = ShareSessionRequest {
        session_id: session.clone(),
        for_application_id: y.clone(),
        ttl_seconds: None,
    };
    let no_header = env
        .share_client
        .clone()
        .share_session(request.clone())
        .await;
    assert_status(
        no_header,
        Code::Unauthenticated,
        "UNKNOWN_TENANT",
        "no x-tenant-id",
    );
    let unknown = env
        .share_client
        .clone()
        .share_session(with_tenant("brand-z", request))
        .await;
    assert_status(
        unknown,
        Code::Unauthenticated,
        "UNKNOWN_TENANT",
        "unknown tenant",
    );
    assert_eq!(env.stats().share_calls, before.share_calls);
    env.stop().await;
}

#[tokio::test]
async fn share_errors_in_both_dialects() {
    for dialect in DIALECTS {
        let env = TestEnv::start(dialect).await;
        let y = demo("service-y").application_id.to_string();
        let ctx = |what: &str| format!("{dialect:?}: {what}");

        let unfinished = env.create_session("service-x", "user", "In Progress").await;
        let status = assert_status(
            env.share("service-x", &unfinished, &y, None).await,
            Code::FailedPrecondition,
            "SESSION_NOT_FINISHED",
            &ctx("unfinished"),
        );
        assert_eq!(error_metadata(&status)["upstream_status"], "400");

        let unfinished_kyb = env
            .create_session("service-x", "business", "NOT_STARTED")
            .await;
        assert_status(
            env.share("service-x", &unfinished_kyb, &y, None).await,
            Code::FailedPrecondition,
            "SESSION_NOT_FINISHED",
            &ctx("unfinished kyb"),
        );

        let unknown = uuid::Uuid::new_v4().to_string();
        assert_status(
            env.share("service-x", &unknown, &y, None).await,
            Code::NotFound,
            "SESSION_NOT_FOUND",
            &ctx("unknown session"),
        );

        let ys_session = env.create_session("service-y", "user", "Approved").await;
        let x = demo("service-x").application_id.to_string();
        assert_status(
            env.share("service-x", &ys_session, &x, None).await,
            Code::NotFound,
            "SESSION_NOT_FOUND",
            &ctx("another application's session"),
        );

        let finished = env.create_session("service-x", "user", "Approved").await;
        assert_status(
            env.share(READ_ONLY_TENANT, &finished, &y, None).await,
            Code::FailedPrecondition,
            "TENANT_CREDENTIALS_REJECTED",
            &ctx("read-only key"),
        );
        let status = assert_status(
            env.share(
                "service-x",
                &finished,
                &uuid::Uuid::new_v4().to_string(),
                None,
            )
            .await,
            Code::InvalidArgument,
            "INVALID_REQUEST",
            &ctx("unknown target application"),
        );
        assert_eq!(error_metadata(&status)["upstream_status"], "400");
        env.stop().await;
    }
}

#[tokio::test]
async fn a_tenant_with_a_wrong_key_is_told_its_credentials_were_rejected() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.tenants.push(TenantConfig {
            id: "revoked".into(),
            application_id: demo("service-x").application_id,
            key_source: KeySource::Inline(ApiKey::new("sk_revoked_key_value".into())),
            allowed_callers: vec!["*".into()],
            rate_limit_per_minute: 1000,
            webhook_secret: None,
            partners: None,
            rate_limit_burst: None,
        });
    })
    .await;
    let y = demo("service-y");
    let session = env.create_session("service-x", "user", "Approved").await;
    let status = assert_status(
        env.share("revoked", &session, &y.application_id.to_string(), None)
            .await,
        Code::FailedPrecondition,
        "TENANT_CREDENTIALS_REJECTED",
        "share with a revoked key",
    );
    assert!(!format!("{status:?}").contains("sk_revoked_key_value"));
    assert_status(
        env.import("revoked", "a.b.c", &y.workflows.user, "", false)
            .await,
        Code::FailedPrecondition,
        "TENANT_CREDENTIALS_REJECTED",
        "import with a revoked key",
    );
    env.stop().await;
}

#[tokio::test]
async fn import_errors_in_both_dialects() {
    for dialect in DIALECTS {
        let env = TestEnv::start(dialect).await;
        let x = demo("service-x");
        let y = demo("service-y");
        let ctx = |what: &str| format!("{dialect:?}: {what}");
        let session = env.create_session("service-x", "user", "Approved").await;

        // A real token with a broken signature.
        let mut tampered = env.token_for_y(&session).await;
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let status = assert_status(
            env.import("service-y", &tampered, &y.workflows.user, "", false)
                .await,
            Code::FailedPrecondition,
            "SHARE_TOKEN_INVALID",
            &ctx("tampered token"),
        );
        assert!(
            !format!("{status:?}").contains(&tampered),
            "the token never appears in an error"
        );

        // Expired: a 60 s token and a sandbox clock moved 2 minutes on.
        let short = env
            .share(
                "service-x",
                &session,
                &y.application_id.to_string(),
                Some(60),
            )
            .await
            .unwrap();
        env.advance_clock(120).await;
        assert_status(
            env.import(
                "service-y",
                &short.share_token,
                &y.workflows.user,
                "",
                false,
            )
            .await,
            Code::FailedPrecondition,
            "SHARE_TOKEN_EXPIRED",
            &ctx("expired token"),
        );
        env.advance_clock(-120).await;

        // A token for service-y imported by service-x.
        let token = env.token_for_y(&session).await;
        assert_status(
            env.import("service-x", &token, &x.workflows.user, "", false)
                .await,
            Code::PermissionDenied,
            "SHARE_TOKEN_WRONG_APPLICATION",
            &ctx("token for another application"),
        );

        // Unknown workflow, and a KYC token with the KYB workflow.
        assert_status(
            env.import("service-y", &token, "wf_does_not_exist", "", false)
                .await,
            Code::NotFound,
            "WORKFLOW_NOT_FOUND",
            &ctx("unknown workflow"),
        );
        assert_status(
            env.import("service-y", &token, &y.workflows.business, "", false)
                .await,
            Code::NotFound,
            "WORKFLOW_NOT_FOUND",
            &ctx("wrong-kind workflow"),
        );

        // The original deleted after sharing.
        let doomed = env.create_session("service-x", "user", "Declined").await;
        let token = env.token_for_y(&doomed).await;
        env.delete_session(&doomed).await;
        assert_status(
            env.import("service-y", &token, &y.workflows.user, "", false)
                .await,
            Code::NotFound,
            "SOURCE_SESSION_NOT_FOUND",
            &ctx("deleted original"),
        );

        // Imported directly (not through the gateway): Didit's 403 and no
        // stored result to replay.
        let token = env.token_for_y(&session).await;
        let direct = env
            .http
            .post(format!("{}/v3/session/import-shared/", env.sandbox.base_url()))
            .header("x-api-key", &y.api_key)
            .json(&json!({"share_token": token, "workflow_id": y.workflows.user, "trust_review": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(direct.status().as_u16(), 201);
        let status = assert_status(
            env.import("service-y", &token, &y.workflows.user, "", false)
                .await,
            Code::AlreadyExists,
            "ALREADY_IMPORTED",
            &ctx("imported elsewhere"),
        );
        assert_eq!(error_metadata(&status)["upstream_status"], "403");

        // A key without write:sessions.
        let y_session = env.create_session("service-y", "user", "Approved").await;
        let token_for_x = env
            .share("service-y", &y_session, &x.application_id.to_string(), None)
            .await
            .unwrap();
        assert_status(
            env.import(
                READ_ONLY_TENANT,
                &token_for_x.share_token,
                &x.workflows.user,
                "",
                false,
            )
            .await,
            Code::FailedPrecondition,
            "TENANT_CREDENTIALS_REJECTED",
            &ctx("read-only key import"),
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn upstream_rate_limits_and_outages() {
    for dialect in DIALECTS {
        let env = TestEnv::start(dialect).await;
        let y = demo("service-y");
        let session = env.create_session("service-x", "user", "Approved").await;
        let token = env.token_for_y(&session).await;

        env.faults(json!({"fail_next": 1, "error_status": 503, "endpoints": ["import"]}))
            .await;
        let status = assert_status(
            env.import("service-y", &token, &y.workflows.user, "", false)
                .await,
            Code::Unavailable,
            "UPSTREAM_UNAVAILABLE",
            "503",
        );
        assert!(status.get_details_retry_info().is_some());

        // Last: Didit's 429 pauses the tenant's budget (see budget.rs).
        env.faults(
            json!({"rate_limit_after": 0, "retry_after_seconds": 7, "endpoints": ["import"]}),
        )
        .await;
        let status = assert_status(
            env.import("service-y", &token, &y.workflows.user, "", false)
                .await,
            Code::ResourceExhausted,
            "UPSTREAM_RATE_LIMITED",
            "429",
        );
        let retry = status
            .get_details_retry_info()
            .expect("RetryInfo")
            .retry_delay
            .unwrap();
        assert_eq!(retry.as_secs(), 7, "RetryInfo carries Retry-After");
        env.stop().await;
    }
}

#[tokio::test]
async fn an_unreachable_didit_is_unavailable() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.base_url = format!("http://{closed}");
    })
    .await;
    let y = demo("service-y").application_id.to_string();
    assert_status(
        env.share("service-x", &uuid::Uuid::new_v4().to_string(), &y, None)
            .await,
        Code::Unavailable,
        "UPSTREAM_UNAVAILABLE",
        "connect refused",
    );
    env.stop().await;
}
