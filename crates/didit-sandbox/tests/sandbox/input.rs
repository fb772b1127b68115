//! Bodies: Content-Type, malformed JSON, missing and mistyped fields are
//! 400s shaped like Django REST Framework's, never 500s.

use didit_sandbox::Dialect;
use reqwest::Method;
use serde_json::json;

use crate::common::{BOTH, Env, seeded};

fn paths(env: &Env) -> [(String, String); 3] {
    [
        (
            format!("/v3/session/{}/share/", seeded(&env.x, "user", "Approved")),
            env.x.api_key.clone(),
        ),
        (
            "/v3/session/import-shared/".to_owned(),
            env.y.api_key.clone(),
        ),
        (
            "/v3/webhook/destinations/".to_owned(),
            env.y.api_key.clone(),
        ),
    ]
}

#[tokio::test]
async fn content_type_must_be_json() {
    let env = Env::start(Dialect::Seeds).await;
    for (path, key) in paths(&env) {
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let reply = env
                .raw(Method::POST, &path, Some(&key), Some(ct), b"{}".to_vec())
                .await;
            assert_eq!(reply.status, 400, "{path} {ct}");
            assert_eq!(
                reply.body,
                json!({"detail": format!("Unsupported media type \"{ct}\" in request.")})
            );
        }
        let reply = env
            .raw(Method::POST, &path, Some(&key), None, b"{}".to_vec())
            .await;
        assert_eq!(
            reply.body,
            json!({"detail": "Unsupported media type \"\" in request."})
        );
        // A charset parameter is fine (then field validation speaks).
        let reply = env
            .raw(
                Method::POST,
                &path,
                Some(&key),
                Some("application/json; charset=utf-8"),
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(reply.status, 400);
        assert!(
            reply
                .body
                .as_object()
                .is_some_and(|o| o.values().all(|v| v == &json!(["This field is required."])))
        );
    }
}

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    let env = Env::start(Dialect::OpenApi).await;
    for (path, key) in paths(&env) {
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"nul",
            &[0xff, 0xfe, 0x00],
            b"{\"a\":1}}",
        ] {
            let reply = env
                .raw(
                    Method::POST,
                    &path,
                    Some(&key),
                    Some("application/json"),
                    bad.to_vec(),
                )
                .await;
            assert_eq!(reply.status, 400, "{path} {bad:?}");
            let detail = reply.body["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with("JSON parse error - "), "{detail}");
            assert!(detail.len() > "JSON parse error - ".len());
        }
        let reply = env
            .raw(
                Method::POST,
                &path,
                Some(&key),
                Some("application/json"),
                b"[1,2]".to_vec(),
            )
            .await;
        assert_eq!(
            (reply.status, reply.body),
            (
                400,
                json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
            )
        );
    }
}

#[tokio::test]
async fn missing_and_mistyped_fields_name_the_field() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let share = format!("/v3/session/{}/share/", seeded(&env.x, "user", "Approved"));
        let import = "/v3/session/import-shared/";
        let required = json!(["This field is required."]);
        let cases = [
            (
                &share,
                &env.x.api_key,
                json!({}),
                json!({"for_application_id": required}),
            ),
            (
                &share,
                &env.x.api_key,
                json!({"ttl_in_seconds": 600}),
                json!({"for_application_id": required}),
            ),
            (
                &share,
                &env.x.api_key,
                json!({"for_application_id": 5, "ttl_in_seconds": "soon"}),
                json!({"for_application_id": ["Must be a valid UUID."], "ttl_in_seconds": ["A valid integer is required."]}),
            ),
            (
                &share,
                &env.x.api_key,
                json!({"for_application_id": env.y.application_id, "ttl_in_seconds": 60.5}),
                json!({"ttl_in_seconds": ["A valid integer is required."]}),
            ),
            (
                &share,
                &env.x.api_key,
                json!({"for_application_id": null}),
                json!({"for_application_id": ["This field may not be null."]}),
            ),
            (
                &import.to_owned(),
                &env.y.api_key,
                json!({}),
                json!({"share_token": required, "workflow_id": required}),
            ),
            (
                &import.to_owned(),
                &env.y.api_key,
                json!({"share_token": "t"}),
                json!({"workflow_id": required}),
            ),
            (
                &import.to_owned(),
                &env.y.api_key,
                json!({"share_token": 1, "workflow_id": ["w"], "vendor_data": 7, "trust_review": "yes"}),
                json!({
                    "share_token": ["Not a valid string."],
                    "workflow_id": ["Not a valid string."],
                    "vendor_data": ["Not a valid string."],
                    "trust_review": ["Must be a valid boolean."],
                }),
            ),
            (
                &"/v3/webhook/destinations/".to_owned(),
                &env.y.api_key,
                json!({"url": "ftp://nope", "subscribed_events": []}),
                json!({"url": ["Enter a valid URL."], "subscribed_events": ["This list may not be empty."]}),
            ),
            (
                &"/v3/webhook/destinations/".to_owned(),
                &env.y.api_key,
                json!({"url": "https://ok.example/hook", "subscribed_events": "status.updated"}),
                json!({"subscribed_events": ["Expected a list of items but got type \"str\"."]}),
            ),
        ];
        for (path, key, body, expected) in cases {
            let reply = env.post(path, Some(key), &body).await;
            assert_eq!(reply.status, 400, "{dialect:?} {path} {body}");
            assert_eq!(reply.body, expected, "{dialect:?} {path} {body}");
        }
    }
}

#[tokio::test]
async fn hostile_input_never_yields_a_server_error() {
    for dialect in BOTH {
        let env = Env::start(dialect).await;
        let huge = vec![b'a'; 2 << 20];
        let bodies: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"null".to_vec(),
            b"\"str\"".to_vec(),
            b"1e999".to_vec(),
            br#"{"for_application_id": "00000000-0000-0000-0000-000000000000", "ttl_in_seconds": 1e308}"#.to_vec(),
            br#"{"share_token": "eyJ.eyJ.sig", "workflow_id": "\u0000"}"#.to_vec(),
            format!(r#"{{"share_token": "{}", "workflow_id": "w"}}"#, "a.".repeat(5000)).into_bytes(),
            huge,
        ];
        let mut paths = paths(&env).to_vec();
        paths.push(("/v3/session/%ZZ/share/".to_owned(), env.x.api_key.clone()));
        paths.push(("/v3/session/../share/".to_owned(), env.x.api_key.clone()));
        for (path, key) in &paths {
            for body in &bodies {
                for ct in [Some("application/json"), None] {
                    let reply = env
                        .raw(Method::POST, path, Some(key), ct, body.clone())
                        .await;
                    assert!(
                        (400..500).contains(&reply.status),
                        "{dialect:?} {path} -> {}",
                        reply.status
                    );
                    assert!(reply.body.is_object(), "DRF-shaped JSON: {:?}", reply.body);
                }
            }
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_drf_json() {
    let env = Env::start(Dialect::Seeds).await;
    let reply = env
        .raw(
            Method::GET,
            "/v3/nothing/",
            Some(&env.x.api_key),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.body),
        (404, json!({"detail": "Not found."}))
    );
    let reply = env
        .raw(
            Method::GET,
            "/v3/session/import-shared/",
            Some(&env.x.api_key),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.body),
        (405, json!({"detail": "Method \"GET\" not allowed."}))
    );
}
