//! `x-api-key`: missing, unknown and read-only keys on every endpoint, in
//! both dialects, and key rotation through `/_sandbox/api-keys`.

use didit_sandbox::Dialect;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{BOTH, Env, seeded};

const BAD_CREDENTIALS: &str = "Authentication credentials were not provided or are invalid.";
const NO_PERMISSION: &str = "You do not have permission to perform this action.";

async fn call(env: &Env, endpoint: &str, key: Option<&str>) -> (u16, Value) {
    let (path, body) = match endpoint {
        "share" => (
            format!("/v3/session/{}/share/", seeded(&env.x, "user", "Approved")),
            json!({"for_application_id": env.y.application_id}),
        ),
        "import" => (
            "/v3/session/import-shared/".to_owned(),
            json!({"share_token": "x.y.z", "workflow_id": env.y.workflows.user}),
        ),
        _ => (
            "/v3/webhook/destinations/".to_owned(),
            json!({"url": "https://partner.example/hook", "subscribed_events": ["status.updated"]}),
        ),
    };
    let reply = env.post(&path, key, &body).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn missing_or_unknown_keys_per_endpoint_and_dialect() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        for key in [None, Some("nope"), Some("")] {
            let share = call(&env, "share", key).await;
            assert_eq!(
                share,
                (401, json!({"detail": BAD_CREDENTIALS})),
                "{dialect:?} {key:?}"
            );
            let webhook = call(&env, "webhook", key).await;
            assert_eq!(
                webhook,
                (401, json!({"detail": BAD_CREDENTIALS})),
                "{dialect:?} {key:?}"
            );
            let import = call(&env, "import", key).await;
            let expected = match dialect {
                Dialect::Seeds => (401, json!({"detail": BAD_CREDENTIALS})),
                Dialect::OpenApi => (403, json!({"detail": NO_PERMISSION})),
            };
            assert_eq!(import, expected, "{dialect:?} {key:?}");
        }
    }
}

#[tokio::test]
async fn read_only_keys_are_forbidden_everywhere() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        for endpoint in ["share", "import", "webhook"] {
            let reply = call(&env, endpoint, Some(&env.x.read_only_api_key)).await;
            assert_eq!(
                reply,
                (403, json!({"detail": NO_PERMISSION})),
                "{dialect:?} {endpoint}"
            );
        }
    }
}

#[tokio::test]
async fn authentication_comes_before_body_validation() {
    let env = Env::start(Dialect::Seeds).await;
    let reply = env
        .raw(
            Method::POST,
            "/v3/session/import-shared/",
            Some("nope"),
            Some("text/plain"),
            b"{".to_vec(),
        )
        .await;
    assert_eq!(reply.status, 401);
    let reply = env
        .raw(
            Method::POST,
            "/v3/session/import-shared/",
            Some(&env.y.read_only_api_key),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn api_keys_can_be_added_and_removed() {
    let env = Env::start(Dialect::Seeds).await;
    let add = |key: &str, write: bool| json!({"application_id": env.y.application_id, "api_key": key, "write_sessions": write});
    let reply = env
        .admin(
            Method::POST,
            "/_sandbox/api-keys",
            Some(add("rotated-y-key", true)),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let reply = env
        .admin(
            Method::POST,
            "/_sandbox/api-keys",
            Some(add("rotated-y-key", true)),
        )
        .await;
    assert_eq!(reply.status, 409, "duplicate key");
    let reply = env
        .admin(
            Method::POST,
            "/_sandbox/api-keys",
            Some(add("ro-y-key", false)),
        )
        .await;
    assert_eq!(reply.status, 201);
    let stray = json!({"application_id": uuid::Uuid::new_v4(), "api_key": "k"});
    assert_eq!(
        env.admin(Method::POST, "/_sandbox/api-keys", Some(stray))
            .await
            .status,
        400
    );
    let blank = json!({"application_id": env.y.application_id, "api_key": " "});
    assert_eq!(
        env.admin(Method::POST, "/_sandbox/api-keys", Some(blank))
            .await
            .status,
        400
    );

    // The new key acts for service-y; the read-only one is refused.
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    assert_eq!(
        env.import("ro-y-key", &env.y_import(&token)).await.status,
        403
    );
    assert_eq!(
        env.import("rotated-y-key", &env.y_import(&token))
            .await
            .status,
        201
    );

    // Retire the old key: it stops working, the new one keeps working.
    let reply = env
        .admin(
            Method::DELETE,
            "/_sandbox/api-keys",
            Some(json!({"api_key": env.y.api_key})),
        )
        .await;
    assert_eq!(reply.status, 204);
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    assert_eq!(
        env.import(&env.y.api_key, &env.y_import(&token))
            .await
            .status,
        401
    );
    assert_eq!(
        env.import("rotated-y-key", &env.y_import(&token))
            .await
            .status,
        201
    );
    let reply = env
        .admin(
            Method::DELETE,
            "/_sandbox/api-keys",
            Some(json!({"api_key": env.y.api_key})),
        )
        .await;
    assert_eq!(reply.status, 404);
}
