//! didit-share-gateway: a gRPC gateway in front of Didit's B2B Reusable KYC
//! API (share a finished KYC/KYB session with a partner application; import a
//! session a partner shared).
//!
//! # Layout
//! - [`proto`]: the generated `didit.share.v1` types and services.
//! - [`sandbox`]: a local stand-in for Didit's v3 share/import REST API.
#![forbid(unsafe_code)]

pub mod proto;
pub mod sandbox;
