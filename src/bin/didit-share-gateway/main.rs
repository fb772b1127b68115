//! `didit-share-gateway`: parse flags, build the config (a file, or the
//! in-process sandbox's), `app::start` it, wait for SIGTERM/SIGINT, drain.
//!
//! `--sandbox` needs the `sandbox` cargo feature (on by default). A build
//! without it (`--no-default-features`, the container image) has no sandbox
//! code: `--sandbox` then stops at start with one line and exit code 64, and
//! the `--sandbox-*` flags do not exist.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use didit_share_gateway::app::{self, StartError, StartOptions};
use didit_share_gateway::config::{CheckReport, Config, Overrides};
use didit_share_gateway::telemetry::{self, LogFormat};

/// mimalloc when the `mimalloc` feature is on (see benches/README.md for
/// what it changes).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// EX_USAGE: bad flags or config.
const EXIT_CONFIG: u8 = 64;
/// EX_UNAVAILABLE: a port could not be bound or the server failed.
const EXIT_UNAVAILABLE: u8 = 69;

/// gRPC gateway for Didit's B2B Reusable KYC share/import API.
#[derive(Debug, Parser)]
#[command(name = "didit-share-gateway", version, about)]
struct Cli {
    /// Serve with this config file (TOML).
    #[arg(long, env = "DSG_CONFIG", value_name = "PATH", conflicts_with_all = ["sandbox", "check_config"])]
    config: Option<PathBuf>,
    /// Serve against an in-process Didit sandbox with demo tenants `service-x`, `service-y` and `service-z`.
    #[cfg_attr(
        not(feature = "sandbox"),
        arg(help = "Not in this build (built without the `sandbox` feature): stops with an error")
    )]
    #[arg(long, env = "DSG_SANDBOX")]
    sandbox: bool,
    /// Validate a config file and the key files it references, print what it would serve, exit.
    #[arg(
        long,
        env = "DSG_CHECK_CONFIG",
        value_name = "PATH",
        conflicts_with = "sandbox"
    )]
    check_config: Option<PathBuf>,
    /// With --check-config: print the result as one JSON object (the sections, or the error's file, key and problem).
    #[arg(long, env = "DSG_JSON", requires = "check_config")]
    json: bool,
    /// gRPC address [default: 0.0.0.0:50051, or the config's server.listen].
    #[arg(long, env = "DSG_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin HTTP address for /metrics /healthz /readyz [default: 0.0.0.0:9090, or the config's].
    #[arg(long, env = "DSG_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// The `--sandbox-*` flags.
    #[cfg(feature = "sandbox")]
    #[command(flatten)]
    sandbox_options: sandbox_mode::Options,
    /// Log format.
    #[arg(long, env = "DSG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        return check_config(path, cli.json);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("didit-share-gateway: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    // The OTLP exporter's gRPC channel runs on the runtime.
    let tracing = match runtime.block_on(async { telemetry::init(cli.log_format) }) {
        Ok(tracing) => tracing,
        Err(err) => {
            eprintln!("didit-share-gateway: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = runtime.block_on(run(cli));
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    code
}

async fn run(cli: Cli) -> ExitCode {
    let (config, sandbox) = if cli.sandbox {
        match sandbox_mode::start(&cli).await {
            Ok((sandbox, config)) => (config, Some(sandbox)),
            Err(code) => return code,
        }
    } else {
        let Some(path) = &cli.config else {
            eprintln!(
                "didit-share-gateway: give --config PATH (or DSG_CONFIG), or --sandbox for a local demo"
            );
            return ExitCode::from(EXIT_CONFIG);
        };
        match Config::load(path) {
            Ok(config) => (config, None),
            Err(err) => {
                eprintln!("didit-share-gateway: {err}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    };
    let options = StartOptions {
        overrides: Overrides {
            listen: cli.listen,
            admin_listen: cli.admin_listen,
        },
        reload_on_sighup: cli.config.is_some(),
        drain_delay: None,
        state_store: None,
    };
    let running = match app::start(config, options).await {
        Ok(running) => running,
        Err(err @ (StartError::Config(_) | StartError::Http(_))) => {
            eprintln!("didit-share-gateway: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(err @ StartError::Bind { .. }) => return unavailable(&err.to_string()),
    };
    if let Some(sandbox) = &sandbox {
        if let Err(code) = sandbox.register_webhooks(&running) {
            let _ = running.shutdown().await;
            return code;
        }
        sandbox.print_banner(running.grpc_addr);
    }
    let result = running.run_until(shutdown_signal()).await;
    if let Some(sandbox) = sandbox {
        sandbox.stop().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => unavailable(&err.to_string()),
    }
}

fn unavailable(message: &str) -> ExitCode {
    tracing::error!("{message}");
    eprintln!("didit-share-gateway: {message}");
    ExitCode::from(EXIT_UNAVAILABLE)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = interrupt => tracing::info!("SIGINT received"),
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; SIGINT only");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(feature = "sandbox")]
mod sandbox_mode;

/// A build without the `sandbox` feature: `--sandbox` is refused at start.
#[cfg(not(feature = "sandbox"))]
mod sandbox_mode {
    use std::net::SocketAddr;
    use std::process::ExitCode;

    use didit_share_gateway::config::Config;

    use super::{Cli, EXIT_CONFIG};

    /// No sandbox can run in this build.
    pub enum Running {}

    /// Always refuses, with one line.
    pub async fn start(_cli: &Cli) -> Result<(Running, Config), ExitCode> {
        eprintln!(
            "didit-share-gateway: --sandbox is not available: this binary was built without the `sandbox` cargo feature; give --config PATH"
        );
        Err(ExitCode::from(EXIT_CONFIG))
    }

    impl Running {
        pub fn register_webhooks(
            &self,
            _gateway: &didit_share_gateway::app::Running,
        ) -> Result<(), ExitCode> {
            match *self {}
        }

        pub fn print_banner(&self, _grpc_addr: SocketAddr) {
            match *self {}
        }

        pub async fn stop(self) {
            match self {}
        }
    }
}

/// `--check-config`: validate as start-up does, print the summary (or,
/// with `--json`, the result as JSON), exit 0 or 64.
fn check_config(path: &Path, json: bool) -> ExitCode {
    let report = CheckReport::run(path);
    if json {
        println!("{:#}", report.json());
    } else if report.result.is_ok() {
        println!("{}", report.text());
    }
    match &report.result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("didit-share-gateway: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
