//! Section 6: `h2load` against the replay path and the echo, the same
//! shape as our own client's 64-in-flight row (4 connections × 16
//! streams), when h2load is installed.

use std::fmt::Write as _;

use prost::Message as _;

use crate::format::{ratio, shell_words};
use crate::harness::import_request;
use crate::measure;
use crate::results::{Better, Results};
use crate::{Env, Plan};

/// Section 6: h2load against the replay path and the echo, same shape as
/// our own client's 64-in-flight row (4 connections × 16 streams).
pub async fn run(out: &mut String, results: &mut Results, plan: &Plan, env: &Env, own_64: f64) {
    let _ = writeln!(
        out,
        "### 6. Cross-check with h2load (4 connections × 16 streams = 64 in flight)\n"
    );
    let body = write_h2load_body(&env.replay_token);
    if !measure::have_h2load() {
        let _ = writeln!(
            out,
            "h2load is not installed (`apt-get install nghttp2-client`, or run `benches/h2load.sh`); skipped.\n"
        );
        return;
    }
    let gateway_args =
        measure::h2load_args(env.gateway.grpc_addr, &body, plan.h2load_requests, 4, 16);
    let echo_args = measure::h2load_args(env.echo.addr, &body, plan.h2load_requests, 4, 16);
    let replays_before = env.gateway.state.metrics.replays.get();
    let gateway = measure::h2load(&gateway_args).await;
    let replayed = env.gateway.state.metrics.replays.get() - replays_before;
    let echo = measure::h2load(&echo_args).await;
    let (Some(gateway), Some(echo)) = (gateway, echo) else {
        let _ = writeln!(out, "h2load output could not be read; skipped.\n");
        return;
    };
    let _ = writeln!(
        out,
        "| target | h2load calls/s | mean latency | succeeded | our client at 64 (section 2) |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let _ = writeln!(
        out,
        "| gateway replay path | {:.0} | {} | {} ok, {} failed ({replayed} replays counted by the gateway) | {own_64:.0} |",
        gateway.per_second, gateway.mean_latency, gateway.succeeded, gateway.failed
    );
    let _ = writeln!(
        out,
        "| bare tonic echo | {:.0} | {} | {} ok, {} failed | |",
        echo.per_second, echo.mean_latency, echo.succeeded, echo.failed
    );
    let _ = writeln!(
        out,
        "| ratio gateway ÷ echo | {} | | | |",
        ratio(gateway.per_second, echo.per_second)
    );
    results.record(
        "h2load.64.ratio",
        gateway.per_second / echo.per_second.max(1e-9),
        "x",
        Better::Higher,
    );
    let _ = writeln!(
        out,
        "\nCommand (gateway run; the body file is a 5-byte gRPC frame header and the encoded request):\n\n```\nh2load {}\n```\n",
        shell_words(&gateway_args)
    );
}

/// Writes the h2load request body for an import of `token`: a 5-byte gRPC
/// frame header (uncompressed, big-endian length) and the encoded request.
pub fn write_h2load_body(token: &str) -> std::path::PathBuf {
    let body = std::env::temp_dir().join("dsg-bench-import-request.bin");
    let message = import_request(token).encode_to_vec();
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&message);
    std::fs::write(&body, &frame).expect("write the h2load body");
    body
}
