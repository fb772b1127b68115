//! The gateway's integration tests, one binary: a module per concern, all
//! sharing [`env::TestEnv`] (the sandbox and `app::start` on 127.0.0.1:0).
//! The log tests (`tests/logs.rs`) and the webhook tests (`tests/webhooks`)
//! are binaries of their own because they install a global subscriber.

mod env;

mod auth;
mod budget;
mod check_config;
mod deadlines;
mod errors;
mod health;
mod idempotency;
mod limits;
mod metrics;
mod policy;
mod policy_setup;
mod propagation;
#[path = "../support/recorder.rs"]
mod recorder;
mod recovery;
mod reflection;
mod reload;
mod replay_wire;
mod replicas;
mod retries;
mod security;
mod sessions;
mod sessions_redis;
mod share_import;
mod shutdown;
mod state;
