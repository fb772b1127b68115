//! `GET /v3/session/{id}/decision/`: the decision body of KYC and KYB
//! sessions (the same body the import answered), 404 for anything that is
//! not the caller's, counted apart from the writes.

use didit_sandbox::Dialect;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{BOTH, Env, KYB_ARRAYS, KYC_ARRAYS, seeded};

fn decision_path(id: impl std::fmt::Display) -> String {
    format!("/v3/session/{id}/decision/")
}

async fn decision(env: &Env, key: &str, id: impl std::fmt::Display) -> Value {
    let reply = env.get(&decision_path(id), Some(key)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.body
}

#[tokio::test]
async fn an_imported_session_reads_back_exactly_as_the_import_answered() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        for (kind, status, workflow, arrays) in [
            ("user", "Approved", &env.y.workflows.user, &KYC_ARRAYS[..]),
            (
                "business",
                "DECLINED",
                &env.y.workflows.business,
                &KYB_ARRAYS[..],
            ),
        ] {
            let original = seeded(&env.x, kind, status);
            let token = env.mint(&env.x, original, &env.y).await;
            let body = json!({"share_token": token, "workflow_id": workflow, "vendor_data": "acct-7", "trust_review": true});
            let imported = env.import(&env.y.api_key, &body).await;
            assert_eq!(imported.status, 201, "{:?}", imported.body);
            let id = imported.body["session_id"].as_str().expect("id").to_owned();

            let read = decision(&env, &env.y.read_only_api_key, &id).await;
            assert_eq!(read, imported.body, "{dialect:?} {kind}");
            assert_eq!(read["shared_from_session"], original.to_string());
            assert_eq!(read["session_kind"], kind);
            assert_eq!(read["status"], status, "trust_review keeps the status");
            assert_eq!(read["vendor_data"], "acct-7");
            assert_eq!(read["workflow_id"], workflow.as_str());
            assert!(
                read["created_at"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z'))
            );
            for array in arrays {
                assert!(read[*array].is_array(), "{kind} {array}");
            }
        }
    }
}

#[tokio::test]
async fn an_original_session_has_no_shared_from_and_its_kinds_arrays() {
    let env = Env::start(Dialect::Seeds).await;
    let kyc = decision(&env, &env.x.api_key, seeded(&env.x, "user", "In Review")).await;
    assert_eq!(kyc["shared_from_session"], Value::Null);
    assert_eq!(kyc["session_number"], Value::Null);
    assert_eq!(kyc["status"], "In Review");
    assert_eq!(kyc["workflow_id"], env.x.workflows.user.as_str());
    for array in KYC_ARRAYS {
        assert!(kyc[array].is_array(), "{array}");
    }
    for array in ["registry_checks", "key_people_checks", "questionnaires"] {
        assert!(kyc.get(array).is_none(), "{array}");
    }
    let kyb = decision(
        &env,
        &env.x.api_key,
        seeded(&env.x, "business", "NOT_STARTED"),
    )
    .await;
    assert_eq!(kyb["status"], "NOT_STARTED");
    assert_eq!(kyb["session_kind"], "business");
    for array in KYB_ARRAYS {
        assert!(kyb[array].is_array(), "{array}");
    }
    // The admin view shows the same body.
    let admin = env
        .admin(
            Method::GET,
            &format!(
                "/_sandbox/sessions/{}",
                seeded(&env.x, "business", "NOT_STARTED")
            ),
            None,
        )
        .await;
    assert_eq!(admin.body["session"], kyb);
}

#[tokio::test]
async fn anything_not_the_callers_is_not_found() {
    let env = Env::start(Dialect::OpenApi).await;
    let not_found = json!({"detail": "Not found."});
    let own = seeded(&env.x, "user", "Approved");
    let deleted = seeded(&env.x, "user", "Declined");
    let gone = env
        .admin(
            Method::DELETE,
            &format!("/_sandbox/sessions/{deleted}"),
            None,
        )
        .await;
    assert_eq!(gone.status, 204);
    for (key, id) in [
        (&env.y.api_key, own.to_string()),
        (&env.x.api_key, deleted.to_string()),
        (&env.x.api_key, Uuid::from_u128(9).to_string()),
        (&env.x.api_key, "not-a-uuid".to_owned()),
    ] {
        let reply = env.get(&decision_path(&id), Some(key)).await;
        assert_eq!((reply.status, &reply.body), (404, &not_found), "{id}");
    }
    let reply = env.get(&decision_path(own), None).await;
    assert_eq!(reply.status, 401);
    let stats = env.stats().await;
    assert_eq!(stats["decision_calls"], 5);
    assert_eq!(
        (stats["import_calls"].as_u64(), stats["list_calls"].as_u64()),
        (Some(0), Some(0))
    );
}
