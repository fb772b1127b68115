//! Turns a non-2xx Didit answer into a [`DiditError`], by status and body.
//!
//! Didit speaks two dialects (see `DIDIT-API-NOTES.md`): the seeds' (401 for
//! a bad token, 403 for another application, 404 for a deleted original)
//! and the published OpenAPI's (400 keyed by `share_token` for all of
//! those). Bodies are Django REST Framework shaped: `{"detail": "..."}`,
//! `{"detail": [...]}`, `{"field": ["..."]}` or `{"error": "..."}`.

use std::time::Duration;

use serde_json::Value;

use super::failure::{DiditError, Rejection, UpstreamReply};

/// Which endpoint answered: the same status means different things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Share,
    Import,
    /// `GET /v3/sessions/`.
    List,
    /// `GET /v3/session/{id}/decision/`.
    Decision,
}

impl Endpoint {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Share => "share",
            Self::Import => "import",
            Self::List => "list",
            Self::Decision => "decision",
        }
    }
}

/// Longest upstream detail carried into errors and logs.
const MAX_DETAIL_CHARS: usize = 300;

/// The messages of a DRF error body.
struct Messages {
    /// The field a field-keyed body names first (`share_token`, ...).
    field: Option<String>,
    /// All messages, in body order.
    text: Vec<String>,
}

impl Messages {
    fn parse(body: &[u8]) -> Self {
        let mut out = Messages {
            field: None,
            text: Vec::new(),
        };
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            if !body.is_empty() {
                out.text.push(String::from_utf8_lossy(body).into_owned());
            }
            return out;
        };
        for (key, value) in map {
            if key != "detail" && key != "error" && key != "non_field_errors" && out.field.is_none()
            {
                out.field = Some(key.clone());
            }
            collect_strings(&value, &mut out.text);
        }
        out
    }

    fn lower(&self) -> String {
        self.text.join(" ").to_lowercase()
    }
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// What a detail or field says instead when Didit's raw answer holds a
/// secret of the request: a JSON escape may split the secret there (`\n`
/// before it decodes to a newline), so no scrubbing of the decoded text
/// could be trusted.
const ECHOED: &str = "[REDACTED: Didit's answer echoed a secret of the request]";

/// The request's secrets worth looking for: shorter ones would match
/// ordinary text (and no real key or token is that short).
fn searched<'a>(secrets: &'a [&'a str]) -> impl Iterator<Item = &'a str> {
    secrets.iter().copied().filter(|s| s.len() >= 4)
}

/// True when `body` holds one of `secrets` as is.
fn echoes_secret(body: &[u8], secrets: &[&str]) -> bool {
    searched(secrets).any(|s| body.windows(s.len()).any(|w| w == s.as_bytes()))
}

/// Removes every secret of the request from `text` and bounds its length.
/// Control characters become spaces first, so that no escape a log or a
/// `Debug` adds (`\n`, `\t`) can join letters into a secret.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    for secret in searched(secrets) {
        out = out.replace(secret, "[REDACTED]");
    }
    match out.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

/// Parses `Retry-After` in seconds (Didit sends seconds; an HTTP date is
/// treated as absent).
pub(crate) fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Time until `X-RateLimit-Reset` (Unix seconds), for a 429 without a
/// `Retry-After`; at most an hour (a wrong clock must not stop a tenant).
pub(crate) fn reset_after(headers: &http::HeaderMap) -> Option<Duration> {
    let reset: u64 = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let wait = Duration::from_secs(reset).checked_sub(now)?;
    (!wait.is_zero()).then(|| wait.min(Duration::from_secs(3600)))
}

/// Classifies a non-2xx answer. `secrets` are the request's API key and
/// share token, scrubbed from anything kept.
pub(crate) fn classify(
    endpoint: Endpoint,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    request_id: Option<String>,
    secrets: &[&str],
) -> DiditError {
    let messages = Messages::parse(body);
    let text = messages.lower();
    let echoed = echoes_secret(body, secrets);
    let reply = UpstreamReply {
        status,
        detail: if echoed {
            ECHOED.to_owned()
        } else {
            scrub(&messages.text.join(" "), secrets)
        },
        // A key of Didit's body is echoed to the caller as `upstream_field`:
        // scrubbed and bounded like the detail (found by tests/fuzz.rs).
        field: if echoed {
            None
        } else {
            messages.field.as_deref().map(|f| scrub(f, secrets))
        },
        request_id,
    };
    if status == 429 {
        return DiditError::RateLimited { retry_after, reply };
    }
    if status >= 500 {
        return DiditError::Unavailable {
            cause: format!("HTTP {status}"),
            reply: Some(reply),
        };
    }
    let has = |needle: &str| text.contains(needle);
    let credentials =
        has("credential") || has("authenticat") || has("permission") || has("api key");
    let field = messages.field.as_deref();
    let rejection = match (endpoint, status) {
        (_, 401) if credentials => Rejection::CredentialsRejected,
        (_, 403) if credentials => Rejection::CredentialsRejected,

        (Endpoint::Share, 401 | 403) => Rejection::CredentialsRejected,
        (Endpoint::Share, 404) => Rejection::SessionNotFound,
        (Endpoint::Share, 400) if field.is_some() => Rejection::InvalidRequest,
        (Endpoint::Share, 400) if has("finished") || has("status") => Rejection::SessionNotFinished,
        (Endpoint::Share, 400) => Rejection::InvalidRequest,

        (Endpoint::Import, 400 | 401 | 403 | 404) => import_rejection(status, field, &text),

        (Endpoint::List | Endpoint::Decision, 401 | 403) => Rejection::CredentialsRejected,
        (Endpoint::Decision, 404) => Rejection::SessionNotFound,
        (Endpoint::List | Endpoint::Decision, 400) => Rejection::InvalidRequest,
        _ => Rejection::Other,
    };
    DiditError::Rejected { rejection, reply }
}

/// Import answers: the token problems share one vocabulary across dialects,
/// so the message decides, and the status only breaks ties.
fn import_rejection(status: u16, field: Option<&str>, text: &str) -> Rejection {
    let has = |needle: &str| text.contains(needle);
    let about_token = field.is_none() || field == Some("share_token");
    if has("already") {
        Rejection::AlreadyImported
    } else if has("workflow") {
        Rejection::WorkflowNotFound
    } else if about_token && has("expired") {
        Rejection::TokenExpired
    } else if about_token
        && (has("not valid for this application")
            || has("another application")
            || has("not intended")
            || has("different application"))
    {
        Rejection::TokenWrongApplication
    } else if about_token && (has("original") || has("no longer exists")) {
        Rejection::SourceSessionNotFound
    } else {
        match (status, field) {
            (400, Some("share_token")) | (401, _) => Rejection::TokenInvalid,
            (400, _) => Rejection::InvalidRequest,
            // The seeds: 403 is "another application" unless it says "already".
            (403, _) => Rejection::TokenWrongApplication,
            // The seeds: 404 is "original session gone" unless it names the workflow.
            _ => Rejection::SourceSessionNotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(endpoint: Endpoint, status: u16, body: &str) -> Rejection {
        match classify(endpoint, status, body.as_bytes(), None, None, &[]) {
            DiditError::Rejected { rejection, .. } => rejection,
            other => panic!("not a rejection: {other:?}"),
        }
    }

    fn assert_rejections(endpoint: Endpoint, cases: &[(u16, &str, Rejection)]) {
        for &(status, body, want) in cases {
            assert_eq!(rejection(endpoint, status, body), want, "{status} {body}");
        }
    }

    #[test]
    fn seeds_dialect_import_errors() {
        use Rejection::*;
        let cases = [
            (401, r#"{"detail":"Invalid share token."}"#, TokenInvalid),
            (
                401,
                r#"{"detail":"Share token has expired."}"#,
                TokenExpired,
            ),
            (
                401,
                r#"{"detail":"Authentication credentials were not provided or are invalid."}"#,
                CredentialsRejected,
            ),
            (
                403,
                r#"{"detail":"This token is not valid for this application."}"#,
                TokenWrongApplication,
            ),
            (
                403,
                r#"{"detail":"This session has already been shared with your application."}"#,
                AlreadyImported,
            ),
            (
                403,
                r#"{"detail":"You do not have permission to perform this action."}"#,
                CredentialsRejected,
            ),
            (
                404,
                r#"{"detail":"Original session does not exist."}"#,
                SourceSessionNotFound,
            ),
            (
                404,
                r#"{"detail":"Workflow does not exist for this application."}"#,
                WorkflowNotFound,
            ),
            (401, "", TokenInvalid),
            (403, "", TokenWrongApplication),
            (404, "", SourceSessionNotFound),
        ];
        assert_rejections(Endpoint::Import, &cases);
    }

    #[test]
    fn openapi_dialect_import_errors() {
        use Rejection::*;
        let cases = [
            (
                400,
                r#"{"share_token":["Invalid share token."]}"#,
                TokenInvalid,
            ),
            (
                400,
                r#"{"share_token":["Share token has expired."]}"#,
                TokenExpired,
            ),
            (
                400,
                r#"{"share_token":["This token is not valid for this application."]}"#,
                TokenWrongApplication,
            ),
            (
                400,
                r#"{"share_token":["Original session does not exist."]}"#,
                SourceSessionNotFound,
            ),
            (
                400,
                r#"{"workflow_id":["This field is required."]}"#,
                InvalidRequest,
            ),
            (402, r#"{"error":"Insufficient credits."}"#, Other),
        ];
        assert_rejections(Endpoint::Import, &cases);
    }

    #[test]
    fn share_errors_in_both_dialects() {
        use Rejection::*;
        let cases = [
            (
                401,
                r#"{"detail":"Authentication credentials were not provided or are invalid."}"#,
                CredentialsRejected,
            ),
            (
                403,
                r#"{"detail":"You do not have permission to perform this action."}"#,
                CredentialsRejected,
            ),
            (404, r#"{"detail":"Not found."}"#, SessionNotFound),
            (
                400,
                r#"{"detail":"Only finished sessions (Approved, Declined, In Review) can be shared."}"#,
                SessionNotFinished,
            ),
            (
                400,
                r#"{"detail":["Only finished sessions (Approved, Declined, In Review) can be shared."]}"#,
                SessionNotFinished,
            ),
            (
                400,
                r#"{"for_application_id":["Target application does not exist."]}"#,
                InvalidRequest,
            ),
            (
                400,
                r#"{"ttl_in_seconds":["Ensure this value is less than or equal to 86400."]}"#,
                InvalidRequest,
            ),
        ];
        assert_rejections(Endpoint::Share, &cases);
    }

    #[test]
    fn read_errors() {
        use Rejection::*;
        assert_rejections(
            Endpoint::Decision,
            &[
                (404, r#"{"detail":"Not found."}"#, SessionNotFound),
                (
                    401,
                    r#"{"detail":"Authentication credentials were not provided."}"#,
                    CredentialsRejected,
                ),
                (403, "", CredentialsRejected),
            ],
        );
        assert_rejections(
            Endpoint::List,
            &[
                (
                    400,
                    r#"{"date_from":["Enter a valid date."]}"#,
                    InvalidRequest,
                ),
                (403, "", CredentialsRejected),
                (404, "", Other),
            ],
        );
    }

    #[test]
    fn rate_limits_and_outages_are_not_rejections() {
        let err = classify(
            Endpoint::Share,
            429,
            b"{}",
            Some(Duration::from_secs(7)),
            None,
            &[],
        );
        assert!(
            matches!(err, DiditError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 7)
        );
        let err = classify(Endpoint::Import, 503, b"<html>", None, None, &[]);
        assert!(matches!(err, DiditError::Unavailable { .. }));
    }

    #[test]
    fn a_secret_split_by_a_json_escape_never_shows() {
        let secret = "naaaa0aa";
        for body in [
            // Raw: the secret after a backslash; decoded: a newline, then 7 of its 8.
            r#"{"et\naaaa0aail":"Not found."}"#,
            // Decoded only: an escaped first letter.
            r#"{"detail":"key \u006eaaaa0aa refused"}"#,
            // A newline that a Debug or a JSON log would write as `\n`.
            r#"{"detail":"x\u000aaaaa0aa"}"#,
        ] {
            let err = classify(
                Endpoint::Import,
                400,
                body.as_bytes(),
                None,
                None,
                &[secret],
            );
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(secret), "{body}: {shown}");
        }
    }

    #[test]
    fn secrets_are_scrubbed_and_details_bounded() {
        let body = r#"{"detail":"token eyJ.secret.sig for key sk_live_123 is bad"}"#;
        let err = classify(
            Endpoint::Import,
            401,
            body.as_bytes(),
            None,
            None,
            &["eyJ.secret.sig", "sk_live_123"],
        );
        let DiditError::Rejected { reply, .. } = err else {
            panic!()
        };
        assert!(!reply.detail.contains("eyJ.secret.sig") && !reply.detail.contains("sk_live_123"));
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(5000));
        let err = classify(Endpoint::Import, 404, long.as_bytes(), None, None, &[]);
        let DiditError::Rejected { reply, .. } = err else {
            panic!()
        };
        assert!(reply.detail.chars().count() <= MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn a_429_without_retry_after_waits_until_the_reset() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let headers = |reset: String| {
            let mut h = http::HeaderMap::new();
            h.insert("x-ratelimit-reset", reset.parse().unwrap());
            h
        };
        let wait = reset_after(&headers((now + 30).to_string())).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));
        assert_eq!(reset_after(&headers((now - 5).to_string())), None);
        assert_eq!(reset_after(&headers("soon".into())), None);
        assert_eq!(
            reset_after(&headers((now + 86_400).to_string())),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(reset_after(&http::HeaderMap::new()), None);
    }
}
