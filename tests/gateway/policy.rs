//! Partner policies (data-sharing agreements): every refusal, each without
//! an upstream call (the sandbox's stats), the allowed paths unchanged,
//! replays refused once a reload revokes the agreement, calls in flight
//! finishing under the policy they started with, the start-up warning for
//! tenants without a policy, and `dsg_policy_refusals_total`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::env::{demo, error_metadata, eventually, metric_value, reason};
use crate::policy_setup::{X_OPEN, start, token};

/// Asserts `result` is refused with `code`/`reason`.
fn refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    want: &str,
    what: &str,
) -> tonic::Status {
    let status = result.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(reason(&status), want, "{what}");
    status
}

#[tokio::test]
async fn share_refusals_make_no_upstream_call() {
    let env = start().await;
    let (y, z) = (demo("service-y"), demo("service-z"));
    let session = env.create_session("service-x", "user", "Approved").await;
    let before = env.stats().share_calls;

    let status = refused(
        env.share(
            "service-x",
            &session,
            &z.application_id.to_string(),
            Some(600),
        )
        .await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "listed for import only",
    );
    assert_eq!(error_metadata(&status)["policy"], "share_not_agreed");
    let status = refused(
        env.share(
            "service-x",
            &session,
            &uuid::Uuid::new_v4().to_string(),
            None,
        )
        .await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "not listed",
    );
    assert_eq!(error_metadata(&status)["policy"], "partner_not_listed");
    for ttl in [Some(601), None] {
        let status = refused(
            env.share("service-x", &session, &y.application_id.to_string(), ttl)
                .await,
            Code::InvalidArgument,
            "INVALID_REQUEST",
            "ttl above the partner's maximum (unset is 3600)",
        );
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "ttl_seconds");
        assert!(violations[0].description.contains("600"), "{violations:?}");
    }
    assert_eq!(env.stats().share_calls, before, "no refusal reached Didit");

    // Allowed: the agreement's partner, kind and TTL.
    let shared = env
        .share(
            "service-x",
            &session,
            &y.application_id.to_string(),
            Some(600),
        )
        .await
        .unwrap();
    assert!(!shared.share_token.is_empty());
    // service-z has no policy: it shares with anyone, as before.
    let zs = env
        .create_session("service-z", "business", "APPROVED")
        .await;
    let status = refused(
        env.share("service-z", &zs, &uuid::Uuid::new_v4().to_string(), None)
            .await,
        Code::InvalidArgument,
        "INVALID_REQUEST",
        "Didit's own answer for an unknown application",
    );
    assert_eq!(error_metadata(&status)["upstream_status"], "400");
    env.stop().await;
}

#[tokio::test]
async fn a_share_of_a_kind_outside_the_agreement_never_reaches_the_caller() {
    let env = start().await;
    let y = demo("service-y").application_id.to_string();
    let kyb = env
        .create_session("service-x", "business", "APPROVED")
        .await;
    let before = env.stats();
    let status = refused(
        env.share("service-x", &kyb, &y, Some(600)).await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "KYB to a KYC-only partner",
    );
    let metadata = error_metadata(&status);
    assert_eq!(metadata["policy"], "kind_not_covered");
    assert_eq!(metadata["session_kind"], "business");
    // The kind is known only from Didit's answer: one token was minted,
    // and dropped by the gateway.
    let after = env.stats();
    assert_eq!(after.share_calls, before.share_calls + 1);
    assert_eq!(after.share_ok, before.share_ok + 1);
    env.stop().await;
}

#[tokio::test]
async fn import_refusals_make_no_upstream_call() {
    let env = start().await;
    let y = demo("service-y");
    let kyc = token(&env, X_OPEN, "service-x", "user", "service-y").await;
    let kyb = token(&env, X_OPEN, "service-x", "business", "service-y").await;
    let from_z = token(&env, "service-z", "service-z", "user", "service-y").await;
    let before = env.stats().import_calls;
    let import = |token: String, workflow: String, trust_review: bool| {
        let env = &env;
        async move {
            env.import("service-y", &token, &workflow, "v-1", trust_review)
                .await
        }
    };

    let status = refused(
        import(from_z, y.workflows.user.clone(), false).await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a source outside the agreements",
    );
    assert_eq!(error_metadata(&status)["policy"], "partner_not_listed");
    let status = refused(
        import(kyb, y.workflows.business.clone(), false).await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a kind outside the agreement",
    );
    assert_eq!(error_metadata(&status)["session_kind"], "business");
    refused(
        import(kyc.clone(), y.workflows.user.clone(), true).await,
        Code::PermissionDenied,
        "TRUST_REVIEW_NOT_ALLOWED",
        "trust_review from a partner without it",
    );
    refused(
        import(
            "eyJ9.bm90IGNsYWltcw.c2ln".into(),
            y.workflows.user.clone(),
            false,
        )
        .await,
        Code::FailedPrecondition,
        "SHARE_TOKEN_INVALID",
        "unreadable claims",
    );
    // Minted for service-y, imported by service-x: refused as Didit would.
    let status = refused(
        env.import(
            "service-x",
            &kyc,
            &demo("service-x").workflows.user,
            "",
            false,
        )
        .await,
        Code::PermissionDenied,
        "SHARE_TOKEN_WRONG_APPLICATION",
        "a token for another application",
    );
    assert_eq!(
        error_metadata(&status)["policy"],
        "token_for_another_application"
    );
    assert_eq!(env.stats().import_calls, before, "no refusal reached Didit");

    // Allowed: KYC from service-x, In Review.
    let imported = import(kyc, y.workflows.user.clone(), false).await.unwrap();
    assert!(!imported.replayed);
    assert_eq!(env.stats().import_calls, before + 1);
    // A tenant without a policy sends an unreadable token to Didit, as before.
    let z = demo("service-z");
    refused(
        env.import(
            "service-z",
            "eyJ9.bm90IGNsYWltcw.c2ln",
            &z.workflows.user,
            "",
            false,
        )
        .await,
        Code::FailedPrecondition,
        "SHARE_TOKEN_INVALID",
        "Didit's verdict",
    );
    assert_eq!(env.stats().import_calls, before + 2);
    env.stop().await;
}

#[tokio::test]
async fn refusals_are_counted_by_tenant_and_reason() {
    let env = start().await;
    let session = env.create_session("service-x", "user", "Approved").await;
    let stranger = uuid::Uuid::new_v4().to_string();
    for _ in 0..2 {
        let _ = env.share("service-x", &session, &stranger, None).await;
    }
    let y = demo("service-y");
    let _ = env
        .import("service-y", "a.b.c", &y.workflows.user, "", false)
        .await;
    let text = env
        .http
        .get(format!("http://{}/metrics", env.admin_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |tenant: &str, reason: &str| {
        metric_value(
            &text,
            &format!("dsg_policy_refusals_total{{tenant=\"{tenant}\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(series("service-x", "partner_not_listed"), 2.0, "{text}");
    assert_eq!(series("service-y", "token_unreadable"), 1.0, "{text}");
    assert_eq!(metric_value(&text, "dsg_policy_refusals_total"), 3.0);
    env.stop().await;
}

/// A config file for the sandbox at `base_url` with service-y, whose
/// agreement with service-x allows `allows`, and service-x without policy.
fn reload_file(dir: &std::path::Path, base_url: &str, allows: &[&str]) -> std::path::PathBuf {
    let mut text = format!("[upstream]\nbase_url = \"{base_url}\"\n[auth]\nmode = \"none\"\n");
    for id in ["service-x", "service-y"] {
        let app = demo(id);
        let key = dir.join(format!("{id}.key"));
        std::fs::write(&key, &app.api_key).unwrap();
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\napplication_id = \"{}\"\napi_key_file = \"{}\"\nrate_limit_per_minute = 100000\n",
            app.application_id,
            key.display()
        ));
    }
    let x = demo("service-x").application_id;
    text.push_str(&format!(
        "[[tenants.partners]]\napplication_id = \"{x}\"\nname = \"service-x\"\nagreement = \"DSA-service-x\"\nimport = {}\nsession_kinds = [\"user\"]\n",
        allows.contains(&"import")
    ));
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_reload_that_revokes_the_agreement_stops_replays() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let y = demo("service-y");
    let token = token(&env, X_OPEN, "service-x", "user", "service-y").await;
    let import = || env.import("service-y", &token, &y.workflows.user, "v-1", false);
    assert!(!import().await.unwrap().replayed);
    assert!(import().await.unwrap().replayed);

    let path = reload_file(dir.path(), &env.sandbox.base_url(), &["import"]);
    env.gateway().reload_from(&path).unwrap();
    assert!(
        import().await.unwrap().replayed,
        "still agreed after a reload"
    );

    let calls = env.stats().import_calls;
    let path = reload_file(dir.path(), &env.sandbox.base_url(), &[]);
    env.gateway().reload_from(&path).unwrap();
    let status = refused(
        import().await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a replay after the agreement was revoked",
    );
    assert_eq!(error_metadata(&status)["policy"], "import_not_agreed");
    assert_eq!(env.stats().import_calls, calls);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_finish_under_the_policy_they_started_with() {
    const IN_FLIGHT: usize = 4;
    let env = Arc::new(start().await);
    let dir = tempfile::tempdir().unwrap();
    let y = demo("service-y");
    let mut tokens = Vec::new();
    for _ in 0..=IN_FLIGHT {
        tokens.push(token(&env, X_OPEN, "service-x", "user", "service-y").await);
    }
    let late = tokens.pop().unwrap();
    // Imports wait in the sandbox long enough for the reload to land.
    env.faults(json!({"latency_ms": 1500, "endpoints": ["import"]}))
        .await;
    let before = env.stats().import_calls;
    let calls: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (env, workflow) = (Arc::clone(&env), y.workflows.user.clone());
            tokio::spawn(async move { env.import("service-y", &token, &workflow, "", false).await })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "every import reached Didit",
        || {
            let env = Arc::clone(&env);
            async move { env.stats().import_calls == before + IN_FLIGHT as u64 }
        },
    )
    .await;

    let path = reload_file(dir.path(), &env.sandbox.base_url(), &[]);
    env.gateway().reload_from(&path).unwrap();
    refused(
        env.import("service-y", &late, &y.workflows.user, "", false)
            .await,
        Code::PermissionDenied,
        "PARTNER_NOT_ALLOWED",
        "a call that started after the reload",
    );
    for call in calls {
        let imported = call.await.unwrap().expect("started before the reload");
        assert!(!imported.session_id.is_empty());
    }
    assert_eq!(env.stats().import_calls, before + IN_FLIGHT as u64);
    env.faults(json!({})).await;
    match Arc::try_unwrap(env) {
        Ok(env) => env.stop().await,
        Err(_) => panic!("the test env is still shared"),
    }
}
