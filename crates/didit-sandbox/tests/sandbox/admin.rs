//! `/_sandbox/` admin endpoints: applications, sessions, stats, clock,
//! webhook destinations; and the seeded data the docs promise.

use std::collections::BTreeMap;

use didit_sandbox::{Dialect, Stats, demo_applications};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, KYB_STATUSES, KYC_STATUSES, seeded};

#[tokio::test]
async fn applications_lists_the_fixed_demo_data() {
    let env = Env::start(Dialect::Seeds).await;
    let reply = env.admin(Method::GET, "/_sandbox/applications", None).await;
    assert_eq!(reply.status, 200);
    let apps = reply.body.as_array().expect("array");
    assert_eq!(apps.len(), 3);
    assert_eq!(
        apps[0]["application_id"],
        "11111111-1111-4111-8111-111111111111",
    );
    assert_eq!(apps[0]["name"], "service-x");
    assert_eq!(apps[0]["api_key"], "sandbox-service-x-key");
    assert_eq!(
        apps[0]["read_only_api_key"],
        "sandbox-service-x-readonly-key"
    );
    assert_eq!(
        apps[0]["workflows"],
        json!({"user": "wf_service_x_kyc", "business": "wf_service_x_kyb"})
    );
    assert_eq!(
        apps[1]["application_id"],
        "22222222-2222-4222-8222-222222222222"
    );
    assert_eq!(
        apps[1]["workflows"],
        json!({"user": "wf_service_y_kyc", "business": "wf_service_y_kyb"})
    );
    assert_eq!(apps[2]["name"], "service-z");
    assert_eq!(
        apps[2]["application_id"],
        "33333333-3333-4333-8333-333333333333"
    );
    assert_eq!(apps[2]["api_key"], "sandbox-service-z-key");
    assert_eq!(
        apps[2]["workflows"],
        json!({"user": "wf_service_z_kyc", "business": "wf_service_z_kyb"})
    );
    for app in apps {
        let sessions = app["sessions"].as_array().expect("sessions");
        assert_eq!(sessions.len(), 22);
        for (kind, statuses) in [("user", KYC_STATUSES), ("business", KYB_STATUSES)] {
            for status in statuses {
                let n = sessions
                    .iter()
                    .filter(|s| s["session_kind"] == kind && s["status"] == status)
                    .count();
                assert_eq!(n, 1, "{kind} {status}");
            }
        }
    }
    // Same as the library function, and deterministic across sandboxes.
    let typed: Vec<didit_sandbox::DemoApplication> =
        serde_json::from_value(reply.body.clone()).expect("typed");
    assert_eq!(
        typed[1].sessions[4].session_id,
        demo_applications()[1].sessions[4].session_id
    );
}

#[tokio::test]
async fn docs_list_every_seeded_session_id() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("crates/didit-sandbox/README.md");
    for app in demo_applications() {
        assert!(docs.contains(&app.application_id.to_string()));
        for s in &app.sessions {
            let row = format!(
                "| {} | {} | {} | `{}` |",
                app.name, s.session_kind, s.status, s.session_id
            );
            assert!(docs.contains(&row), "docs lack row {row}");
        }
    }
}

#[tokio::test]
async fn created_sessions_validate_kind_status_and_application() {
    let env = Env::start(Dialect::Seeds).await;
    let create = |app: Value, kind: &str, status: &str| json!({"application_id": app, "session_kind": kind, "status": status});
    let x = json!(env.x.application_id);

    let reply = env
        .admin(
            Method::POST,
            "/_sandbox/sessions",
            Some(create(x.clone(), "business", "APPROVED")),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let id = reply.body["session_id"]
        .as_str()
        .expect("session_id")
        .to_owned();
    let token = env.mint(&env.x, id.parse().expect("uuid"), &env.y).await;
    let imported = env
        .import(&env.y.api_key, &json!({"share_token": token, "workflow_id": env.y.workflows.business, "trust_review": true}))
        .await;
    assert_eq!(imported.status, 201);
    assert_eq!(imported.body["status"], "APPROVED");
    assert!(imported.body["registry_checks"][0]["company_name"].is_string());

    let reply = env
        .admin(
            Method::POST,
            "/_sandbox/sessions",
            Some(create(x.clone(), "user", "APPROVED")),
        )
        .await;
    assert_eq!(reply.status, 400, "KYB spelling on a KYC session");
    let detail = reply.body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("Not Started") && detail.contains("Awaiting User"),
        "{detail}"
    );
    let reply = env
        .admin(
            Method::POST,
            "/_sandbox/sessions",
            Some(create(x.clone(), "business", "Approved")),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body["detail"]
            .as_str()
            .expect("detail")
            .contains("IN_REVIEW")
    );
    let reply = env
        .admin(
            Method::POST,
            "/_sandbox/sessions",
            Some(create(x.clone(), "company", "APPROVED")),
        )
        .await;
    assert_eq!(reply.status, 400);
    let stray = create(json!(uuid::Uuid::new_v4()), "user", "Approved");
    assert_eq!(
        env.admin(Method::POST, "/_sandbox/sessions", Some(stray))
            .await
            .status,
        400
    );
    assert_eq!(
        env.admin(
            Method::POST,
            "/_sandbox/sessions",
            Some(json!({"session_kind": "user"}))
        )
        .await
        .status,
        400
    );

    for status in KYC_STATUSES {
        let reply = env
            .admin(
                Method::POST,
                "/_sandbox/sessions",
                Some(create(x.clone(), "user", status)),
            )
            .await;
        assert_eq!(reply.status, 201, "{status}");
    }
    assert_eq!(
        env.admin(Method::DELETE, &format!("/_sandbox/sessions/{id}"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        env.admin(Method::DELETE, &format!("/_sandbox/sessions/{id}"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        env.admin(Method::DELETE, "/_sandbox/sessions/not-a-uuid", None)
            .await
            .status,
        404
    );
    assert_eq!(
        env.admin(Method::GET, &format!("/_sandbox/sessions/{id}"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn stats_count_calls_successes_and_keys_without_revealing_them() {
    let env = Env::start(Dialect::Seeds).await;
    let session = seeded(&env.x, "user", "Approved");
    let token = env.mint(&env.x, session, &env.y).await;
    env.share_to_y(seeded(&env.x, "user", "Expired")).await;
    env.import(&env.y.api_key, &env.y_import(&token)).await;
    env.import(&env.y.api_key, &env.y_import(&token)).await; // 403
    env.import("unknown-key", &env.y_import(&token)).await; // 401
    env.post("/v3/session/import-shared/", None, &json!({}))
        .await; // no key
    let hook = json!({"url": "https://partner.example/didit", "subscribed_events": ["status.updated", "data.updated"]});
    let reply = env
        .post("/v3/webhook/destinations/", Some(&env.y.api_key), &hook)
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["url"], "https://partner.example/didit");
    assert_eq!(
        reply.body["subscribed_events"],
        json!(["status.updated", "data.updated"])
    );
    assert!(
        reply.body["uuid"]
            .as_str()
            .is_some_and(|u| u.parse::<uuid::Uuid>().is_ok())
    );
    assert_eq!(
        reply.body["secret_shared_key"].as_str().map(str::len),
        Some(64)
    );
    let stored = env
        .admin(Method::GET, "/_sandbox/webhook-destinations", None)
        .await;
    assert_eq!(stored.body[0]["uuid"], reply.body["uuid"]);

    let json = env.stats().await;
    let typed: Stats = serde_json::from_value(json.clone()).expect("Stats deserializes");
    assert_eq!(typed, env.sandbox.stats(), "HTTP and Rust stats agree");
    assert_eq!((typed.share_calls, typed.share_ok), (2, 1));
    assert_eq!((typed.import_calls, typed.import_ok), (4, 1));
    assert_eq!(typed.webhook_calls, 1);
    assert_eq!(
        (typed.faults_injected, typed.rate_limited, typed.dropped),
        (0, 0, 0)
    );
    assert_eq!(json["users"], 1);
    assert_eq!(json["webhook_destinations"], 1);

    let key_id = |key: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))[..12].to_owned()
    };
    let expected = BTreeMap::from([
        (key_id(&env.x.api_key), 2),
        (key_id(&env.y.api_key), 3),
        (key_id("unknown-key"), 1),
    ]);
    assert_eq!(typed.calls_by_key, expected);
    let text = json.to_string();
    assert!(!text.contains("sandbox-service"), "no key in stats: {text}");
}

#[tokio::test]
async fn clock_advances_resets_and_refuses_nonsense() {
    let env = Env::start(Dialect::Seeds).await;
    let now = env.admin(Method::GET, "/_sandbox/clock", None).await.body["now"]
        .as_i64()
        .expect("now");
    let later = env.advance_clock(86_400).await;
    assert!((later - now - 86_400).abs() <= 2);
    let reset = env.admin(Method::DELETE, "/_sandbox/clock", None).await;
    assert!((reset.body["now"].as_i64().expect("now") - now).abs() <= 2);
    for bad in [
        json!({"advance_seconds": i64::MAX}),
        json!({"advance_seconds": -now - 100}),
        json!({"advance_seconds": "1"}),
        json!({}),
    ] {
        let reply = env
            .admin(Method::POST, "/_sandbox/clock", Some(bad.clone()))
            .await;
        assert_eq!(reply.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn stop_shuts_the_server_down() {
    let env = Env::start(Dialect::Seeds).await;
    let url = env.url("/_sandbox/stats");
    let client = env.client.clone();
    assert!(client.get(&url).send().await.is_ok());
    env.sandbox.stop().await;
    assert!(
        client.get(&url).send().await.is_err(),
        "nothing listens after stop"
    );
}
