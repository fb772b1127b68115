//! Integration tests for the Didit sandbox, over real HTTP against
//! `Sandbox::start` on 127.0.0.1:0, in both dialects where they differ.
//! One concern per module.

mod admin;
mod auth;
mod binary;
mod common;
mod decision;
mod faults;
mod import;
mod input;
mod lost_answers;
mod perf;
mod ratelimit;
mod sessions_list;
mod share;
mod webhooks;
