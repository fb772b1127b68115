//! Didit's v3 share/import REST API, as the gateway calls it: one file per
//! endpoint (`share`, `import`, the reads `decision` and `sessions`: its
//! URL, JSON bodies and answer), over a
//! shared `transport` (the pooled HTTP client, retries, metrics), with
//! `classify` reading every refusal into a [`DiditError`] (`failure`) and
//! `retry` deciding which failed attempts are sent again, and how soon.

mod answer;
mod classify;
mod decision;
mod failure;
mod import;
mod read;
mod retry;
mod sessions;
mod share;
mod transport;

pub use decision::Decision;
pub use failure::{DiditError, Rejection, UpstreamReply};
pub use retry::{RetryBudget, RetryPolicy};
pub use sessions::{SessionFilter, SessionRow};
pub use transport::{CallContext, DiditClient};

/// Classifies a non-2xx answer of the share (`share = true`) or import
/// endpoint from its status, body and the two headers the transport reads
/// (`Retry-After`, `x-request-id`), exactly as the transport does; `secrets`
/// are scrubbed from the detail kept. For the property tests
/// (`tests/fuzz.rs`); the transport calls the classifier itself.
#[doc(hidden)]
pub fn classify_answer(
    share: bool,
    status: u16,
    body: &[u8],
    retry_after: Option<&str>,
    request_id: Option<&str>,
    secrets: &[&str],
) -> DiditError {
    let endpoint = if share {
        classify::Endpoint::Share
    } else {
        classify::Endpoint::Import
    };
    classify::classify(
        endpoint,
        status,
        body,
        classify::parse_retry_after(retry_after),
        request_id.map(|id| id.chars().take(128).collect()),
        secrets,
    )
}
