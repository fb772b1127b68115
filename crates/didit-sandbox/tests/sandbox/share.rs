//! `POST /v3/session/{id}/share/`: success per dialect, token claims, TTL
//! bounds, unknown/foreign sessions, unfinished sessions, bad targets.

use didit_sandbox::Dialect;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::common::{BOTH, Env, KYB_STATUSES, KYC_STATUSES, is_finished, jwt_part, seeded};

#[tokio::test]
async fn share_succeeds_with_the_dialects_status_and_body() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        for (kind, status) in [("user", "Approved"), ("business", "IN_REVIEW")] {
            let session = seeded(&env.x, kind, status);
            let reply = env
                .share(
                    &env.x.api_key,
                    session,
                    &json!({"for_application_id": env.y.application_id, "ttl_in_seconds": 600}),
                )
                .await;
            let expected = if dialect == Dialect::Seeds { 201 } else { 200 };
            assert_eq!(reply.status, expected, "{dialect:?} {:?}", reply.body);
            assert_eq!(reply.header("content-type"), Some("application/json"));
            let body = reply.body.as_object().expect("object");
            assert_eq!(body.len(), 3, "{body:?}");
            assert_eq!(body["for_application_id"], env.y.application_id.to_string());
            assert_eq!(body["session_kind"], kind);
            assert!(
                body["share_token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("eyJ"))
            );
        }
    }
}

#[tokio::test]
async fn token_is_an_hs256_jwt_with_the_documented_claims() {
    let env = Env::start(Dialect::Seeds).await;
    let session = seeded(&env.x, "business", "DECLINED");
    let now = env.advance_clock(0).await;
    let first = env.mint(&env.x, session, &env.y).await;
    let second = env.mint(&env.x, session, &env.y).await;

    assert_eq!(jwt_part(&first, 0), json!({"alg": "HS256", "typ": "JWT"}));
    let claims = jwt_part(&first, 1);
    let keys: Vec<&str> = claims
        .as_object()
        .expect("claims")
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "exp",
            "for_application_id",
            "from_application_id",
            "iat",
            "jti",
            "session_id",
            "session_kind"
        ]
    );
    assert_eq!(claims["session_id"], session.to_string());
    assert_eq!(
        claims["from_application_id"],
        env.x.application_id.to_string()
    );
    assert_eq!(
        claims["for_application_id"],
        env.y.application_id.to_string()
    );
    assert_eq!(claims["session_kind"], "business");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!((iat - now).abs() <= 2, "iat {iat} vs sandbox now {now}");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - iat,
        3600,
        "default ttl"
    );
    let jti = Uuid::parse_str(claims["jti"].as_str().expect("jti")).expect("jti uuid");
    assert_eq!(jti.get_version_num(), 4);

    let other = jwt_part(&second, 1);
    assert_ne!(
        other["jti"], claims["jti"],
        "every share mints a fresh token"
    );
    assert_ne!(first, second);
    assert_eq!(first.split('.').count(), 3);
}

#[tokio::test]
async fn token_times_follow_the_sandbox_clock() {
    let env = Env::start(Dialect::Seeds).await;
    let later = env.advance_clock(10 * 86_400).await;
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    let iat = jwt_part(&token, 1)["iat"].as_i64().expect("iat");
    assert!((iat - later).abs() <= 2, "iat {iat} vs {later}");
}

#[tokio::test]
async fn ttl_bounds_and_default() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let session = seeded(&env.x, "user", "Approved");
        let target = env.y.application_id;
        for (ttl, ok) in [
            (59, false),
            (60, true),
            (86_400, true),
            (86_401, false),
            (-5, false),
            (1_i64 << 40, false),
        ] {
            let reply = env
                .share(
                    &env.x.api_key,
                    session,
                    &json!({"for_application_id": target, "ttl_in_seconds": ttl}),
                )
                .await;
            if ok {
                assert_eq!(reply.status, env.share_ok(), "ttl {ttl}: {:?}", reply.body);
                let claims = jwt_part(reply.body["share_token"].as_str().expect("token"), 1);
                assert_eq!(
                    claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
                    ttl
                );
            } else {
                assert_eq!(reply.status, 400, "ttl {ttl}");
                let message = if ttl < 60 {
                    "Ensure this value is greater than or equal to 60."
                } else {
                    "Ensure this value is less than or equal to 86400."
                };
                assert_eq!(
                    reply.body,
                    json!({"ttl_in_seconds": [message]}),
                    "ttl {ttl}"
                );
            }
        }
        let reply = env
            .share(
                &env.x.api_key,
                session,
                &json!({"for_application_id": target}),
            )
            .await;
        let claims = jwt_part(reply.body["share_token"].as_str().expect("token"), 1);
        assert_eq!(
            claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
            3600
        );
    }
}

#[tokio::test]
async fn unknown_foreign_or_malformed_session_ids_are_404() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let body = json!({"for_application_id": env.y.application_id});
        let foreign = seeded(&env.y, "user", "Approved"); // service-y's session
        for id in [
            Uuid::new_v4().to_string(),
            foreign.to_string(),
            "not-a-uuid".to_owned(),
            "1234".to_owned(),
        ] {
            let reply = env.share(&env.x.api_key, &id, &body).await;
            assert_eq!(reply.status, 404, "{dialect:?} {id}");
            assert_eq!(reply.body, json!({"detail": "Not found."}));
        }
        // A deleted session is unknown too.
        let session = seeded(&env.x, "user", "Approved");
        let deleted = env
            .admin(
                Method::DELETE,
                &format!("/_sandbox/sessions/{session}"),
                None,
            )
            .await;
        assert_eq!(deleted.status, 204);
        assert_eq!(env.share(&env.x.api_key, session, &body).await.status, 404);
    }
}

#[tokio::test]
async fn every_unfinished_status_of_each_kind_is_refused() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let message = "Only finished sessions (Approved, Declined, In Review) can be shared.";
        let expected = match dialect {
            Dialect::Seeds => json!({"detail": message}),
            Dialect::OpenApi => json!({"detail": [message]}),
        };
        for (kind, statuses) in [("user", KYC_STATUSES), ("business", KYB_STATUSES)] {
            for status in statuses {
                let reply = env.share_to_y(seeded(&env.x, kind, status)).await;
                if is_finished(status) {
                    assert_eq!(reply.status, env.share_ok(), "{kind} {status}");
                } else {
                    assert_eq!(reply.status, 400, "{dialect:?} {kind} {status}");
                    assert_eq!(reply.body, expected, "{dialect:?} {kind} {status}");
                }
            }
        }
    }
}

#[tokio::test]
async fn target_must_be_another_known_application() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let session = seeded(&env.x, "user", "Declined");
        let cases = [
            (Uuid::new_v4(), "Target application does not exist."),
            (
                env.x.application_id,
                "Cannot share a session with the same application.",
            ),
        ];
        for (target, message) in cases {
            let reply = env
                .share(
                    &env.x.api_key,
                    session,
                    &json!({"for_application_id": target}),
                )
                .await;
            assert_eq!(reply.status, 400);
            assert_eq!(reply.body, json!({"for_application_id": [message]}));
        }
        let reply = env
            .share(
                &env.x.api_key,
                session,
                &json!({"for_application_id": "not-a-uuid"}),
            )
            .await;
        assert_eq!(
            (reply.status, reply.body),
            (
                400,
                json!({"for_application_id": ["Must be a valid UUID."]})
            )
        );
    }
}

#[tokio::test]
async fn service_y_shares_its_own_sessions_with_service_x() {
    let env = Env::start(Dialect::Seeds).await;
    let token = env
        .mint(&env.y, seeded(&env.y, "business", "APPROVED"), &env.x)
        .await;
    let reply = env
        .import(
            &env.x.api_key,
            &json!({"share_token": token, "workflow_id": env.x.workflows.business}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "IN_REVIEW");
}
