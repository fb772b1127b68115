//! `POST /v3/session/import-shared/`: the cloned shapes, trust_review,
//! the one-time rule, every token error in both dialects, deleted
//! originals, workflows, counters and entities.

use std::collections::BTreeSet;

use didit_sandbox::Dialect;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{BOTH, Env, KYB_ARRAYS, KYC_ARRAYS, seeded, token_error};

const HEAD: [&str; 8] = [
    "session_id",
    "session_number",
    "session_kind",
    "status",
    "shared_from_session",
    "vendor_data",
    "workflow_id",
    "created_at",
];

fn keys(body: &Value) -> BTreeSet<String> {
    body.as_object().expect("object").keys().cloned().collect()
}

/// The original session as the admin endpoint shows it.
async fn original(env: &Env, id: Uuid) -> Value {
    let reply = env
        .admin(Method::GET, &format!("/_sandbox/sessions/{id}"), None)
        .await;
    assert_eq!(reply.status, 200);
    reply.body["session"].clone()
}

#[tokio::test]
async fn kyc_import_returns_a_new_session_with_a_deep_copy_of_the_checks() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let source = seeded(&env.x, "user", "Approved");
        let token = env.mint(&env.x, source, &env.y).await;
        let reply = env.import(&env.y.api_key, &env.y_import(&token)).await;
        assert_eq!(reply.status, 201, "{dialect:?} {:?}", reply.body);
        let body = &reply.body;

        let expected: BTreeSet<String> = HEAD
            .iter()
            .chain(KYC_ARRAYS.iter())
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(keys(body), expected);
        let id = Uuid::parse_str(body["session_id"].as_str().expect("id")).expect("uuid");
        assert_ne!(id, source);
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(body["session_number"], 1);
        assert_eq!(body["session_kind"], "user");
        assert_eq!(body["status"], "In Review", "trust_review absent");
        assert_eq!(body["shared_from_session"], source.to_string());
        assert_eq!(body["vendor_data"], "partner-user-42");
        assert_eq!(body["workflow_id"], "wf_service_y_kyc");
        let created = body["created_at"].as_str().expect("created_at");
        assert!(
            created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "{created}"
        );

        let source_body = original(&env, source).await;
        for array in KYC_ARRAYS {
            assert!(
                body[array].as_array().is_some_and(|a| !a.is_empty()),
                "{array}"
            );
            assert_eq!(body[array], source_body[array], "{array} cloned losslessly");
        }
        let portrait = body["id_verifications"][0]["portrait_image"]
            .as_str()
            .expect("portrait");
        assert!(portrait.starts_with("https://sandbox.invalid/"));

        // The copy belongs to service-y now (visible to the admin endpoint).
        let copy = env
            .admin(Method::GET, &format!("/_sandbox/sessions/{id}"), None)
            .await;
        assert_eq!(
            copy.body["application_id"],
            env.y.application_id.to_string()
        );
        assert_eq!(copy.body["session"], *body);
    }
}

#[tokio::test]
async fn kyb_import_has_the_kyb_shape_and_upper_snake_statuses() {
    let env = Env::start(Dialect::Seeds).await;
    let source = seeded(&env.x, "business", "APPROVED");
    let token = env.mint(&env.x, source, &env.y).await;
    let reply = env
        .import(
            &env.y.api_key,
            &json!({"share_token": token, "workflow_id": env.y.workflows.business, "vendor_data": "biz-7", "trust_review": true}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let body = &reply.body;
    let expected: BTreeSet<String> = HEAD
        .iter()
        .chain(KYB_ARRAYS.iter())
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(keys(body), expected);
    assert_eq!(body["session_kind"], "business");
    assert_eq!(body["status"], "APPROVED");
    assert_eq!(body["registry_checks"][0]["status"], "APPROVED");
    let person = &body["key_people_checks"][0]["kyc"];
    assert!(
        person["id_verifications"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "nested KYC"
    );
    assert!(person["liveness_checks"][0]["score"].is_number());
    assert_eq!(
        original(&env, source).await["key_people_checks"],
        body["key_people_checks"]
    );
    assert!(
        serde_json::to_string(body).expect("json").len() > 4000,
        "a few KB"
    );
}

#[tokio::test]
async fn trust_review_keeps_or_resets_the_status_for_every_finished_status() {
    let env = Env::start(Dialect::Seeds).await;
    let cases = [
        ("user", "Approved", "In Review"),
        ("user", "Declined", "In Review"),
        ("user", "In Review", "In Review"),
        ("business", "APPROVED", "IN_REVIEW"),
        ("business", "DECLINED", "IN_REVIEW"),
        ("business", "IN_REVIEW", "IN_REVIEW"),
    ];
    for (kind, status, in_review) in cases {
        let workflow = if kind == "user" {
            &env.y.workflows.user
        } else {
            &env.y.workflows.business
        };
        for trust in [Some(true), Some(false), None] {
            let token = env.mint(&env.x, seeded(&env.x, kind, status), &env.y).await;
            let mut body = json!({"share_token": token, "workflow_id": workflow});
            if let Some(trust) = trust {
                body["trust_review"] = json!(trust);
            }
            let reply = env.import(&env.y.api_key, &body).await;
            assert_eq!(reply.status, 201, "{kind} {status} {trust:?}");
            let want = if trust == Some(true) {
                status
            } else {
                in_review
            };
            assert_eq!(
                reply.body["status"], want,
                "{kind} {status} trust_review {trust:?}"
            );
            assert_eq!(reply.body["vendor_data"], Value::Null);
        }
    }
}

#[tokio::test]
async fn import_is_one_time_per_token_and_application() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let source = seeded(&env.x, "user", "Approved");
        let token = env.mint(&env.x, source, &env.y).await;
        assert_eq!(
            env.import(&env.y.api_key, &env.y_import(&token))
                .await
                .status,
            201
        );
        let again = env.import(&env.y.api_key, &env.y_import(&token)).await;
        assert_eq!(again.status, 403, "{dialect:?}");
        assert_eq!(
            again.body,
            json!({"detail": "This session has already been shared with your application."})
        );

        // A fresh token for the same session imports again (new jti).
        let fresh = env.mint(&env.x, source, &env.y).await;
        let reply = env.import(&env.y.api_key, &env.y_import(&fresh)).await;
        assert_eq!(reply.status, 201);
        assert_eq!(reply.body["session_number"], 2);

        // The imported copy is service-y's session: it can be shared on, and
        // service-x imports it with its own token.
        let copy = reply.body["session_id"].as_str().expect("id").to_owned();
        let back = env
            .mint(&env.y, Uuid::parse_str(&copy).expect("uuid"), &env.x)
            .await;
        let reply = env
            .import(&env.x.api_key, &json!({"share_token": back, "workflow_id": env.x.workflows.user, "trust_review": true}))
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        assert_eq!(reply.body["shared_from_session"], copy);
        assert_eq!(reply.body["session_number"], 1, "per-application counter");
        assert_eq!(reply.body["status"], "In Review", "the copy was In Review");
    }
}

#[tokio::test]
async fn concurrent_imports_of_one_token_succeed_once() {
    let env = Env::start(Dialect::Seeds).await;
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    let body = env.y_import(&token);
    let replies =
        futures::future::join_all((0..16).map(|_| env.import(&env.y.api_key, &body))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let refused = replies.iter().filter(|r| r.status == 403).count();
    assert_eq!((created, refused), (1, 15));
}

#[tokio::test]
async fn invalid_tokens_are_refused_per_dialect() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let token = env
            .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
            .await;
        let (h, p, s) = {
            let mut parts = token.split('.');
            (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            )
        };
        // Claims re-targeted without re-signing, and plain junk.
        let mut claims = crate::common::jwt_part(&token, 1);
        claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 100_000);
        use base64::Engine;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        let bad_sig = format!("{h}.{p}.{}", &s[..s.len() - 4]);
        let forged_token = format!("{h}.{forged}.{s}");
        let none_alg = format!("eyJhbGciOiJub25lIn0.{p}.");
        for bad in [
            "garbage",
            "a.b.c",
            "",
            ".",
            bad_sig.as_str(),
            forged_token.as_str(),
            none_alg.as_str(),
        ] {
            let reply = env.import(&env.y.api_key, &env.y_import(bad)).await;
            if bad.is_empty() {
                assert_eq!(
                    (reply.status, reply.body),
                    (
                        400,
                        json!({"share_token": ["This field may not be blank."]})
                    )
                );
                continue;
            }
            let (status, body) = token_error(dialect, 401, "Invalid share token.");
            assert_eq!(reply.status, status, "{dialect:?} {bad:?}");
            assert_eq!(reply.body, body);
        }
        // The genuine token still works.
        assert_eq!(
            env.import(&env.y.api_key, &env.y_import(&token))
                .await
                .status,
            201
        );
    }
}

#[tokio::test]
async fn expiry_follows_the_sandbox_clock() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let session = seeded(&env.x, "user", "Approved");
        let short = env
            .share(
                &env.x.api_key,
                session,
                &json!({"for_application_id": env.y.application_id, "ttl_in_seconds": 60}),
            )
            .await;
        let short = short.body["share_token"]
            .as_str()
            .expect("token")
            .to_owned();
        let long = env.mint(&env.x, session, &env.y).await; // 3600 s

        env.advance_clock(58).await;
        let reply = env.import(&env.y.api_key, &env.y_import(&short)).await;
        assert_eq!(reply.status, 201, "still valid at +58 s: {:?}", reply.body);

        let third = env
            .share(
                &env.x.api_key,
                session,
                &json!({"for_application_id": env.y.application_id, "ttl_in_seconds": 60}),
            )
            .await;
        let third = third.body["share_token"]
            .as_str()
            .expect("token")
            .to_owned();
        env.advance_clock(60).await;
        let reply = env.import(&env.y.api_key, &env.y_import(&third)).await;
        let (status, body) = token_error(dialect, 401, "Share token has expired.");
        assert_eq!((reply.status, reply.body), (status, body), "{dialect:?}");

        // Back to wall time: the long token is fine; far ahead it is not.
        let reset = env.admin(Method::DELETE, "/_sandbox/clock", None).await;
        assert_eq!(reset.status, 200);
        env.advance_clock(3600).await;
        let reply = env.import(&env.y.api_key, &env.y_import(&long)).await;
        assert_eq!(reply.status, token_error(dialect, 401, "").0);
        env.advance_clock(-3600).await;
        assert_eq!(
            env.import(&env.y.api_key, &env.y_import(&long))
                .await
                .status,
            201
        );
    }
}

#[tokio::test]
async fn token_for_another_application_is_refused() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let token = env
            .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
            .await;
        // service-x presents a token meant for service-y.
        let reply = env
            .import(
                &env.x.api_key,
                &json!({"share_token": token, "workflow_id": env.x.workflows.user}),
            )
            .await;
        let (status, body) = token_error(
            dialect,
            403,
            "This token is not valid for this application.",
        );
        assert_eq!((reply.status, reply.body), (status, body), "{dialect:?}");
    }
}

#[tokio::test]
async fn service_z_is_an_application_of_its_own() {
    let env = Env::start(Dialect::Seeds).await;
    let z = didit_sandbox::demo_applications()
        .into_iter()
        .find(|a| a.name == "service-z")
        .expect("service-z");
    // z shares its own seeded session with service-x; x imports it.
    let token = env
        .mint(&z, seeded(&z, "business", "APPROVED"), &env.x)
        .await;
    let imported = env
        .import(
            &env.x.api_key,
            &json!({"share_token": token, "workflow_id": env.x.workflows.business, "trust_review": true}),
        )
        .await;
    assert_eq!(imported.status, 201, "{:?}", imported.body);
    assert_eq!(imported.body["status"], "APPROVED");
    // A token for service-y is not z's to import, and z's workflows are not y's.
    let for_y = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    let reply = env
        .import(
            &z.api_key,
            &json!({"share_token": for_y, "workflow_id": z.workflows.user}),
        )
        .await;
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    let reply = env
        .import(
            &env.y.api_key,
            &json!({"share_token": for_y, "workflow_id": z.workflows.user}),
        )
        .await;
    assert_eq!(reply.status, 404, "{:?}", reply.body);
    // z imports what y shares with it, into its own workflow.
    let for_z = env
        .mint(&env.y, seeded(&env.y, "user", "Declined"), &z)
        .await;
    let reply = env
        .import(
            &z.api_key,
            &json!({"share_token": for_z, "workflow_id": z.workflows.user}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["workflow_id"], "wf_service_z_kyc");
}

#[tokio::test]
async fn deleted_original_is_404_in_seeds_and_400_in_openapi() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let session = seeded(&env.x, "business", "DECLINED");
        let token = env.mint(&env.x, session, &env.y).await;
        let deleted = env
            .admin(
                Method::DELETE,
                &format!("/_sandbox/sessions/{session}"),
                None,
            )
            .await;
        assert_eq!(deleted.status, 204);
        let reply = env
            .import(
                &env.y.api_key,
                &json!({"share_token": token, "workflow_id": env.y.workflows.business}),
            )
            .await;
        let (status, body) = token_error(dialect, 404, "Original session does not exist.");
        assert_eq!((reply.status, reply.body), (status, body), "{dialect:?}");
        let again = env
            .admin(
                Method::DELETE,
                &format!("/_sandbox/sessions/{session}"),
                None,
            )
            .await;
        assert_eq!(again.status, 404);
    }
}

#[tokio::test]
async fn workflow_must_be_the_importers_and_of_the_tokens_kind() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let kyc = env
            .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
            .await;
        let kyb = env
            .mint(&env.x, seeded(&env.x, "business", "APPROVED"), &env.y)
            .await;
        let wrong = [
            (&kyc, env.y.workflows.business.clone()), // KYB workflow for a KYC token
            (&kyb, env.y.workflows.user.clone()),     // and the reverse
            (&kyc, env.x.workflows.user.clone()),     // another application's workflow
            (&kyc, "wf_nope".to_owned()),
        ];
        for (token, workflow) in wrong {
            let reply = env
                .import(
                    &env.y.api_key,
                    &json!({"share_token": token, "workflow_id": workflow}),
                )
                .await;
            assert_eq!(reply.status, 404, "{dialect:?} {workflow}");
            assert_eq!(
                reply.body,
                json!({"detail": "Workflow does not exist for this application."})
            );
        }
        // Failed attempts do not use the token up.
        let reply = env
            .import(
                &env.y.api_key,
                &json!({"share_token": kyc, "workflow_id": env.y.workflows.user}),
            )
            .await;
        assert_eq!(reply.status, 201);
    }
}

#[tokio::test]
async fn checks_run_in_the_documented_order() {
    let env = Env::start(Dialect::Seeds).await;
    let session = seeded(&env.x, "user", "Approved");
    let token = env.mint(&env.x, session, &env.y).await;
    assert_eq!(
        env.import(&env.y.api_key, &env.y_import(&token))
            .await
            .status,
        201
    );
    env.admin(
        Method::DELETE,
        &format!("/_sandbox/sessions/{session}"),
        None,
    )
    .await;
    // Already imported (4) wins over original gone (5) and bad workflow (6).
    let reply = env
        .import(
            &env.y.api_key,
            &json!({"share_token": token, "workflow_id": "wf_nope"}),
        )
        .await;
    assert_eq!(reply.status, 403);
    // Wrong application (3) wins over already imported (4).
    let reply = env
        .import(
            &env.x.api_key,
            &json!({"share_token": token, "workflow_id": "x"}),
        )
        .await;
    assert_eq!(
        reply.body["detail"],
        "This token is not valid for this application."
    );
    // Expired (2) wins over wrong application (3).
    env.advance_clock(4000).await;
    let reply = env
        .import(
            &env.x.api_key,
            &json!({"share_token": token, "workflow_id": "x"}),
        )
        .await;
    assert_eq!(reply.body["detail"], "Share token has expired.");
}

#[tokio::test]
async fn imports_create_one_entity_per_vendor_data() {
    let env = Env::start(Dialect::Seeds).await;
    for vendor in ["u-1", "u-1", "u-2"] {
        let token = env
            .mint(&env.x, seeded(&env.x, "user", "Declined"), &env.y)
            .await;
        let body = json!({"share_token": token, "workflow_id": env.y.workflows.user, "vendor_data": vendor});
        assert_eq!(env.import(&env.y.api_key, &body).await.status, 201);
    }
    let token = env
        .mint(&env.x, seeded(&env.x, "business", "IN_REVIEW"), &env.y)
        .await;
    let body = json!({"share_token": token, "workflow_id": env.y.workflows.business, "vendor_data": "u-1"});
    assert_eq!(env.import(&env.y.api_key, &body).await.status, 201);
    let stats = env.stats().await;
    assert_eq!(
        (stats["users"].as_u64(), stats["businesses"].as_u64()),
        (Some(2), Some(1))
    );
}
