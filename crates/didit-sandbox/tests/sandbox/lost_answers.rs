//! Per-endpoint faults (`per_endpoint` in `PUT /_sandbox/faults`) and the
//! "lost answer" a gateway must recover from: an import Didit made whose
//! answer never arrived. A retry is refused as already imported, and the
//! list and decision reads find the session.

use didit_sandbox::Dialect;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{BOTH, Env, seeded};

/// A request whose answer must not arrive (the connection is dropped).
async fn lost(env: &Env, method: Method, path: &str, key: &str, body: Option<&Value>) {
    let result = async {
        let mut request = env
            .client
            .request(method, env.url(path))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await?.bytes().await
    }
    .await;
    assert!(
        result.is_err(),
        "{path}: expected a dropped connection, got {result:?}"
    );
}

#[tokio::test]
async fn a_dropped_import_was_made_and_is_found_through_the_reads() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let original = seeded(&env.x, "user", "Approved");
        let token = env.mint(&env.x, original, &env.y).await;
        let active = env
            .set_faults(json!({"per_endpoint": {"import": {"drop_next": 1}}}))
            .await;
        assert_eq!(active.body["per_endpoint"]["import"]["drop_next"], 1);
        assert_eq!(active.body["endpoints"], json!(["share", "import"]));

        env.sandbox
            .add_webhook_destination(env.y.application_id, "http://127.0.0.1:9/hooks", "s")
            .expect("destination");
        let body = env.y_import(&token);
        let path = "/v3/session/import-shared/";
        lost(&env, Method::POST, path, &env.y.api_key, Some(&body)).await;

        // The retry learns nothing but "already imported".
        let retry = env.import(&env.y.api_key, &body).await;
        assert_eq!(
            (retry.status, &retry.body),
            (
                403,
                &json!({"detail": "This session has already been shared with your application."})
            )
        );
        let faults = env.admin(Method::GET, "/_sandbox/faults", None).await;
        assert_eq!(faults.body["per_endpoint"]["import"]["drop_next"], 0);

        // The reads find it: by vendor_data and workflow, then its decision.
        let query = format!(
            "vendor_data=partner-user-42&workflow_id={}",
            env.y.workflows.user
        );
        let page = env.list(&env.y.api_key, &query).await;
        assert_eq!(page["count"], 1, "{dialect:?}");
        let id = page["results"][0]["session_id"]
            .as_str()
            .expect("id")
            .to_owned();
        let decision = env
            .get(&format!("/v3/session/{id}/decision/"), Some(&env.y.api_key))
            .await;
        assert_eq!(decision.status, 200);
        assert_eq!(decision.body["shared_from_session"], original.to_string());
        assert_eq!(decision.body["session_number"], 1);
        // Its webhook was fired all the same.
        let fired = env.sandbox.webhook_deliveries();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].session_id.to_string(), id);
        assert_eq!(fired[0].webhook_type, "status.updated");

        let stats = env.stats().await;
        assert_eq!(
            (stats["import_ok"].as_u64(), stats["dropped"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(
            (
                stats["list_calls"].as_u64(),
                stats["decision_calls"].as_u64()
            ),
            (Some(1), Some(1))
        );
    }
}

#[tokio::test]
async fn reads_can_lose_answers_and_fail_on_their_own() {
    let env = Env::start(Dialect::Seeds).await;
    let key = env.x.api_key.clone();
    let id = seeded(&env.x, "business", "APPROVED");
    let path = format!("/v3/session/{id}/decision/");
    env.set_faults(json!({
        "per_endpoint": {
            "decision": {"drop_next": 1},
            "list": {"fail_next": 1, "error_status": 502}
        }
    }))
    .await;
    lost(&env, Method::GET, &path, &key, None).await;
    assert_eq!(
        env.get(&path, Some(&key)).await.status,
        200,
        "only the next one"
    );

    let failed = env.get("/v3/sessions/", Some(&key)).await;
    assert_eq!(
        (failed.status, &failed.body),
        (502, &json!({"detail": "Injected fault."}))
    );
    assert_eq!(env.list(&key, "").await["count"], 22);

    // The writes were never touched.
    let share = env.share_to_y(seeded(&env.x, "user", "Approved")).await;
    assert_eq!(share.status, 201);
    let stats = env.stats().await;
    assert_eq!(
        (stats["dropped"].as_u64(), stats["faults_injected"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn top_level_faults_can_target_reads_and_keep_their_old_meaning() {
    let env = Env::start(Dialect::OpenApi).await;
    let key = env.x.read_only_api_key.clone();
    env.set_faults(json!({"drop_next": 1, "endpoints": ["list"]}))
        .await;
    lost(&env, Method::GET, "/v3/sessions/", &key, None).await;
    assert_eq!(env.list(&key, "limit=1").await["count"], 22);

    env.set_faults(json!({"rate_limit_after": 0, "endpoints": ["decision"]}))
        .await;
    let id = seeded(&env.x, "user", "Approved");
    let limited = env
        .get(&format!("/v3/session/{id}/decision/"), Some(&key))
        .await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.body,
        json!({"detail": "Read request rate limit exceeded. You can make up to 600 requests per minute."})
    );
    assert_eq!(limited.header_num("x-ratelimit-limit"), 600);

    let reset = env.admin(Method::DELETE, "/_sandbox/faults", None).await;
    assert_eq!(reset.body["per_endpoint"], json!({}));
    let bad = env
        .admin(
            Method::PUT,
            "/_sandbox/faults",
            Some(json!({"per_endpoint": {"import": {"drop_rate": 1.5}}})),
        )
        .await;
    assert_eq!(bad.status, 400);
}
