//! didit-share-gateway: a gRPC gateway in front of Didit's B2B Reusable KYC
//! API (share a finished KYC/KYB session with a partner application; import
//! a session a partner shared). Internal services call one gRPC API and
//! name a tenant; the gateway holds the tenants' Didit API keys, validates,
//! de-duplicates, replays, retries and observes.
//!
//! # Layout
//! - [`config`]: the TOML config and its validation.
//! - [`tenant`]: tenants, their (redacted) API keys, `x-tenant-id` lookup.
//! - [`auth`]: caller identity (mtls, mesh XFCC, none) and `allowed_callers`.
//! - [`secrets`]: API key files re-read on change.
//! - [`session`]: the plain-Rust domain: share/import requests and results.
//! - [`gateway`]: the core: share and import with de-duplication and replay.
//! - [`coalesce`]: in-flight de-duplication of identical calls.
//! - [`replay`]: the bounded store of successful imports.
//! - [`state`]: shared state (memory or Redis): replay records, leases, budgets.
//! - [`didit`]: the upstream REST client, retries, error classification.
//! - [`error`]: the gateway's error enum and its one mapping to `tonic::Status`.
//! - [`convert`]: proto validation and mapping.
//! - [`service`]: the thin tonic services.
//! - [`limits`]: admission control layers (shedding, per-tenant rate).
//! - [`server`]: the gRPC server, health, reflection, shutdown sequence.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the Prometheus registry.
//! - [`app`]: assembling all of the above from a config.
//! - [`telemetry`]: log set-up.
//! - [`sandbox`]: a local stand-in for Didit's v3 share/import REST API.
//! - [`proto`]: the generated `didit.share.v1` types and services.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod coalesce;
pub mod config;
pub mod convert;
pub mod didit;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod metrics;
pub mod proto;
pub mod replay;
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod service;
pub mod session;
pub mod state;
pub mod telemetry;
pub mod tenant;

/// Installs rustls' ring provider as the process default (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
