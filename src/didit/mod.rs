//! Didit's v3 share/import REST API, as the gateway calls it: one file per
//! endpoint (`share`, `import`: its URL, JSON bodies and answer), over a
//! shared `transport` (the pooled HTTP client, retries, metrics), with
//! `classify` reading every refusal into a [`DiditError`] (`failure`) and
//! `retry` deciding which failed attempts are sent again, and how soon.

mod classify;
mod failure;
mod import;
mod retry;
mod share;
mod transport;

pub use failure::{DiditError, Rejection, UpstreamReply};
pub use retry::{RetryBudget, RetryPolicy};
pub use transport::{CallContext, DiditClient};
