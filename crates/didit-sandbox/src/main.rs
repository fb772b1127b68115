//! `didit-sandbox`: runs the local stand-in for Didit's v3 share/import
//! API alone (the gateway's `--sandbox` mode runs the same thing in-process).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use didit_sandbox::{Dialect, RateLimit, Sandbox, SandboxConfig, demo_applications};

/// A faithful local stand-in for Didit's v3 share/import REST API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "DIDIT_SANDBOX_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Which description of Didit's API to follow where they differ.
    #[arg(long, env = "DIDIT_SANDBOX_DIALECT", value_enum, default_value_t = Dialect::Seeds)]
    dialect: Dialect,
    /// Enforce Didit's write rate limit (300 per minute per API key).
    #[arg(long, env = "DIDIT_SANDBOX_RATE_LIMIT")]
    rate_limit: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("didit-sandbox: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(69); // EX_UNAVAILABLE
        }
    };
    let config = SandboxConfig {
        dialect: args.dialect,
        rate_limit: args.rate_limit.then(RateLimit::default),
    };
    let sandbox = match Sandbox::start(listener, config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("didit-sandbox: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_banner(&sandbox.base_url(), args.dialect);
    shutdown_signal().await;
    tracing::info!("shutting down");
    sandbox.stop().await;
    ExitCode::SUCCESS
}

/// The listen line, the demo applications and a ready-to-paste call. The
/// keys shown are the fixed, public demo keys.
fn print_banner(base_url: &str, dialect: Dialect) {
    let apps = demo_applications();
    let dialect = dialect
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    println!("didit-sandbox listening on {base_url} (dialect {dialect})");
    println!(
        "{:<10} {:<38} {:<18} {:<18} api key",
        "name", "application id", "kyc workflow", "kyb workflow"
    );
    for app in &apps {
        println!(
            "{:<10} {:<38} {:<18} {:<18} {}",
            app.name, app.application_id, app.workflows.user, app.workflows.business, app.api_key
        );
    }
    let (Some(x), Some(y)) = (apps.first(), apps.get(1)) else {
        return;
    };
    if let Some(approved) = x.sessions.iter().find(|s| s.status == "Approved") {
        println!(
            "try: curl -s -X POST {base_url}/v3/session/{}/share/ \\",
            approved.session_id
        );
        println!(
            "       -H 'x-api-key: {}' -H 'Content-Type: application/json' \\",
            x.api_key
        );
        println!(
            "       -d '{{\"for_application_id\": \"{}\", \"ttl_in_seconds\": 3600}}'",
            y.application_id
        );
    }
    println!(
        "then: curl -s '{base_url}/v3/sessions/?limit=5' -H 'x-api-key: {}'",
        x.read_only_api_key
    );
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
