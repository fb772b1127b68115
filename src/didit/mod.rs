//! Didit's v3 share/import REST API, as the gateway calls it: the HTTP
//! client with its retry policy, the wire types, and the classification of
//! every upstream answer.

mod classify;
mod failure;
mod retry;
mod transport;
mod wire;

pub use failure::{DiditError, Rejection, UpstreamReply};
pub use retry::{RetryBudget, RetryPolicy};
pub use transport::{CallContext, DiditClient, UpstreamConfig};
