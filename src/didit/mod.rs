//! Didit's v3 share/import REST API, as the gateway calls it: the HTTP
//! client with its retry policy, the wire types, and the classification of
//! every upstream answer.

mod classify;
mod client;
mod error;
mod retry;
mod wire;

pub use client::{CallContext, DiditClient};
pub use error::{DiditError, Rejection, UpstreamReply};
pub use retry::{RetryBudget, RetryPolicy};
