//! Shared test harness: start a sandbox, call it, decode tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use didit_sandbox::{DemoApplication, Dialect, Sandbox, SandboxConfig, demo_applications};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use uuid::Uuid;

pub const KYC_STATUSES: [&str; 11] = [
    "Not Started",
    "In Progress",
    "Approved",
    "Declined",
    "In Review",
    "Expired",
    "Abandoned",
    "Kyc Expired",
    "Resubmitted",
    "Awaiting User",
    "Not Finished",
];
pub const KYB_STATUSES: [&str; 11] = [
    "NOT_STARTED",
    "IN_PROGRESS",
    "APPROVED",
    "DECLINED",
    "IN_REVIEW",
    "EXPIRED",
    "ABANDONED",
    "KYC_EXPIRED",
    "RESUBMITTED",
    "AWAITING_USER",
    "NOT_FINISHED",
];
pub const KYC_ARRAYS: [&str; 9] = [
    "id_verifications",
    "liveness_checks",
    "face_matches",
    "aml_screenings",
    "database_validations",
    "proof_of_address",
    "location_checks",
    "phone_verifications",
    "email_verifications",
];
pub const KYB_ARRAYS: [&str; 5] = [
    "registry_checks",
    "key_people_checks",
    "document_verifications",
    "aml_screenings",
    "questionnaires",
];

pub fn is_finished(status: &str) -> bool {
    matches!(
        status,
        "Approved" | "Declined" | "In Review" | "APPROVED" | "DECLINED" | "IN_REVIEW"
    )
}

pub const BOTH: [Dialect; 2] = [Dialect::Seeds, Dialect::OpenApi];

/// A running sandbox plus a client and the two demo applications.
pub struct Env {
    pub sandbox: Sandbox,
    pub client: reqwest::Client,
    pub dialect: Dialect,
    pub x: DemoApplication,
    pub y: DemoApplication,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header that must hold an integer.
    pub fn header_num(&self, name: &str) -> i64 {
        self.header(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("header {name} missing or not a number: {:?}", self.headers))
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

impl Env {
    pub async fn start(dialect: Dialect) -> Env {
        Env::start_with(SandboxConfig {
            dialect,
            rate_limit: None,
        })
        .await
    }

    pub async fn start_with(config: SandboxConfig) -> Env {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dialect = config.dialect;
        let sandbox = Sandbox::start(listener, config)
            .await
            .expect("start sandbox");
        let mut apps = demo_applications().into_iter();
        let x = apps.next().expect("service-x");
        let y = apps.next().expect("service-y");
        Env {
            sandbox,
            client: client(),
            dialect,
            x,
            y,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    /// Any request; `content_type` None sends no Content-Type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path)).body(body);
        if let Some(key) = api_key {
            req = req.header("x-api-key", key);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    /// A GET with an optional `x-api-key` (`path` may carry a query).
    pub async fn get(&self, path: &str, api_key: Option<&str>) -> Reply {
        self.raw(Method::GET, path, api_key, None, Vec::new()).await
    }

    /// `GET /v3/sessions/?{query}` with `api_key`; asserts 200.
    pub async fn list(&self, api_key: &str, query: &str) -> Value {
        let reply = self
            .get(&format!("/v3/sessions/?{query}"), Some(api_key))
            .await;
        assert_eq!(reply.status, 200, "{query}: {:?}", reply.body);
        reply.body
    }

    pub async fn post(&self, path: &str, api_key: Option<&str>, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("json");
        self.raw(Method::POST, path, api_key, Some("application/json"), bytes)
            .await
    }

    pub async fn share(
        &self,
        api_key: &str,
        session: impl std::fmt::Display,
        body: &Value,
    ) -> Reply {
        self.post(
            &format!("/v3/session/{session}/share/"),
            Some(api_key),
            body,
        )
        .await
    }

    /// service-x shares `session` with service-y (default TTL).
    pub async fn share_to_y(&self, session: Uuid) -> Reply {
        let body = json!({ "for_application_id": self.y.application_id });
        self.share(&self.x.api_key, session, &body).await
    }

    pub async fn import(&self, api_key: &str, body: &Value) -> Reply {
        self.post("/v3/session/import-shared/", Some(api_key), body)
            .await
    }

    /// An admin call with an optional JSON body.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).expect("json"))
            .unwrap_or_default();
        self.raw(method, path, None, Some("application/json"), bytes)
            .await
    }

    pub async fn stats(&self) -> Value {
        let reply = self.admin(Method::GET, "/_sandbox/stats", None).await;
        assert_eq!(reply.status, 200);
        reply.body
    }

    pub async fn advance_clock(&self, seconds: i64) -> i64 {
        let reply = self
            .admin(
                Method::POST,
                "/_sandbox/clock",
                Some(json!({ "advance_seconds": seconds })),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body["now"].as_i64().expect("now")
    }

    pub async fn set_faults(&self, faults: Value) -> Reply {
        let reply = self
            .admin(Method::PUT, "/_sandbox/faults", Some(faults))
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply
    }

    /// The status a successful share answers in this dialect.
    pub fn share_ok(&self) -> u16 {
        match self.dialect {
            Dialect::Seeds => 201,
            Dialect::OpenApi => 200,
        }
    }

    /// Shares `session` of `from` with `to`; asserts success.
    pub async fn mint(
        &self,
        from: &DemoApplication,
        session: Uuid,
        to: &DemoApplication,
    ) -> String {
        let reply = self
            .share(
                &from.api_key,
                session,
                &json!({ "for_application_id": to.application_id }),
            )
            .await;
        assert_eq!(reply.status, self.share_ok(), "{:?}", reply.body);
        reply.body["share_token"]
            .as_str()
            .expect("share_token")
            .to_owned()
    }

    /// A KYC import body for service-y.
    pub fn y_import(&self, token: &str) -> Value {
        json!({ "share_token": token, "workflow_id": self.y.workflows.user, "vendor_data": "partner-user-42" })
    }
}

/// The seeded session of `app` with that kind and status.
pub fn seeded(app: &DemoApplication, kind: &str, status: &str) -> Uuid {
    app.sessions
        .iter()
        .find(|s| s.session_kind == kind && s.status == status)
        .map(|s| s.session_id)
        .unwrap_or_else(|| panic!("no seeded {kind} {status} session"))
}

/// Decodes one JWT part (header or claims).
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("jwt part");
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("jwt json")
}

/// The expected single-message body for a token error in `dialect`.
pub fn token_error(dialect: Dialect, seeds_status: u16, message: &str) -> (u16, Value) {
    match dialect {
        Dialect::Seeds => (seeds_status, json!({ "detail": message })),
        Dialect::OpenApi => (400, json!({ "share_token": [message] })),
    }
}
