//! Didit's v3 share/import REST API, as the gateway calls it: one file per
//! endpoint (`share`, `import`, the reads `decision` and `sessions`: its
//! URL, JSON bodies and answer), over a
//! shared `transport` (the pooled HTTP client, retries, metrics), with
//! `classify` reading every refusal into a [`DiditError`] (`failure`) and
//! `retry` deciding which failed attempts are sent again, and how soon.

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
