//! didit-share-gateway: a gRPC gateway in front of Didit's B2B Reusable KYC
//! API (share a finished KYC/KYB session with a partner application; import
//! a session a partner shared). Internal services call one gRPC API and
//! name a tenant; the gateway holds the tenants' Didit API keys, validates,
//! de-duplicates, replays, retries and observes.
//!
//! # Layout
//! - [`config`]: the TOML config, one type per section, and its validation.
//! - [`tenant`]: tenants, their (redacted) API keys, `x-tenant-id` lookup.
//! - [`message_limits`]: oversized request messages answered RESOURCE_EXHAUSTED.
//! - [`trace_context`]: which W3C `traceparent` goes upstream (valid or fresh).
//! - [`audit`]: the one audit event per RPC, on the tracing target `audit`.
//! - [`audit_edge`]: audit events of calls answered before a service (shed, limited, oversized).
//! - [`auth`]: caller identity (mtls, mesh XFCC, none) and `allowed_callers`.
//! - [`secrets`]: API key files re-read on change.
//! - [`session`]: the plain-Rust domain: share/import requests and results.
//! - [`policy`]: partner policies (data-sharing agreements) for share and import.
//! - [`share_token`]: reading a share token's claims (unverified) for policy and recovery.
//! - [`gateway`]: the core: share and import with de-duplication and replay.
//! - [`coalesce`]: in-flight de-duplication of identical calls.
//! - [`replay`]: replay records: an import's parameters and its encoded answer.
//! - [`state`]: shared state (memory or Redis): replay records, leases, budgets.
//! - [`didit`]: the upstream REST API: one file per endpoint (`share`,
//!   `import`) over the `transport` (HTTP client, retries, classification).
//! - [`error`]: the gateway's error enum and its one mapping to `tonic::Status`.
//! - [`service`]: the tonic services, one file per gRPC service (`share`,
//!   `import`: validation, mapping, a thin handler) over `call`, the
//!   per-call wrapper; [`service::checks`] lists the check arrays once;
//!   ImportService is served by hand so that answers go out as encoded bytes.
//! - [`limits`]: admission control (shedding beyond the concurrency limit).
//! - [`budget`]: each tenant's Didit write budget, charged per upstream attempt.
//! - [`grpc`]: the gRPC server, health, reflection, the drain sequence;
//!   [`grpc_codec`] the protobuf codec of the generated services.
//! - [`admin_http`]: the admin port: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the Prometheus registry.
//! - [`app`]: `start(config)`: assembles, binds and runs all of the above;
//!   the [`app::Running`] handle reloads and drains it; with the `sandbox`
//!   feature also the `--sandbox` config (a tenant per demo application of
//!   the `didit_sandbox` crate).
//! - [`telemetry`]: log set-up.
//! - [`webhooks`]: webhook ingress, signature checks and the session event log.
//! - [`proto`]: the generated `didit.share.v1` types and services.
#![forbid(unsafe_code)]

pub mod admin_http;
pub mod app;
pub mod audit;
pub mod audit_edge;
pub mod auth;
pub mod budget;
pub mod coalesce;
pub mod config;
pub mod didit;
pub mod error;
pub mod exposition;
pub mod gateway;
pub mod grpc;
pub mod grpc_codec;
pub mod limits;
pub mod message_limits;
pub mod metrics;
pub mod otel;
pub mod policy;
pub mod process_metrics;
pub mod proto;
pub mod replay;
pub mod secrets;
pub mod service;
pub mod session;
pub mod share_token;
pub mod state;
pub mod state_watch;
pub mod telemetry;
pub mod tenant;
pub mod trace_context;
pub mod webhooks;

/// Installs rustls' ring provider as the process default (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
