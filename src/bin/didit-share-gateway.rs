//! `didit-share-gateway`: parse flags, load and validate the config (or
//! start the in-process sandbox), bind, serve, drain on SIGTERM/SIGINT.
//!
//! `--sandbox` needs the `sandbox` cargo feature (on by default). A build
//! without it (`--no-default-features`, the container image) has no sandbox
//! code: `--sandbox` then stops at start with one line and exit code 64, and
//! the `--sandbox-*` flags do not exist.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use didit_share_gateway::config::{AuthConfig, Config, KeySource};
use didit_share_gateway::telemetry::{self, LogFormat};
use didit_share_gateway::{app, metrics::Metrics, secrets, server};
use tokio::net::TcpListener;

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
        return check_config(path);
    }
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("didit-share-gateway: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> ExitCode {
    let mut sandbox = None;
    let config = if cli.sandbox {
        let listen = cli
            .listen
            .unwrap_or_else(|| default_addr(didit_share_gateway::config::defaults::LISTEN));
        let admin_listen = cli
            .admin_listen
            .unwrap_or_else(|| default_addr(didit_share_gateway::config::defaults::ADMIN_LISTEN));
        match sandbox_mode::start(&cli, listen, admin_listen).await {
            Ok((started, config)) => {
                sandbox = Some(started);
                config
            }
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
            Ok(mut config) => {
                config.listen = cli.listen.unwrap_or(config.listen);
                config.admin_listen = cli.admin_listen.unwrap_or(config.admin_listen);
                config
            }
            Err(err) => {
                eprintln!("didit-share-gateway: {err}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    };

    let (state, options) = match app::build(&config, Metrics::new()) {
        Ok(built) => built,
        Err(err) => {
            eprintln!("didit-share-gateway: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let grpc = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(err) => return unavailable(&format!("cannot bind gRPC on {}: {err}", config.listen)),
    };
    let admin = match TcpListener::bind(config.admin_listen).await {
        Ok(l) => l,
        Err(err) => {
            return unavailable(&format!(
                "cannot bind admin on {}: {err}",
                config.admin_listen
            ));
        }
    };
    let grpc_addr = grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let admin_addr = admin
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        grpc = %grpc_addr,
        admin = %admin_addr,
        upstream = %config.upstream_base_url,
        tenants = config.tenants.len(),
        "didit-share-gateway listening"
    );
    if let Some(sandbox) = &sandbox {
        sandbox.print_banner(&grpc_addr);
    }
    if config.auth == AuthConfig::None {
        tracing::warn!(
            "auth mode none: any caller that can reach this port may act for any tenant"
        );
    }
    let watcher = secrets::spawn_key_watcher(&state, config.key_reload_interval);
    let reloader = cli
        .config
        .clone()
        .map(|path| tokio::spawn(reload_on_sighup(state.clone(), config.clone(), path)));
    let result = server::run(grpc, admin, state, options, shutdown_signal()).await;
    watcher.abort();
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    if let Some(sandbox) = sandbox {
        sandbox.stop().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => unavailable(&err.to_string()),
    }
}

fn default_addr(raw: &str) -> SocketAddr {
    // The defaults are constants known to parse.
    raw.parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn unavailable(message: &str) -> ExitCode {
    tracing::error!("{message}");
    eprintln!("didit-share-gateway: {message}");
    ExitCode::from(EXIT_UNAVAILABLE)
}

/// Re-reads the config on every SIGHUP; a bad one is logged and ignored.
async fn reload_on_sighup(
    state: std::sync::Arc<didit_share_gateway::service::AppState>,
    mut running: Config,
    path: PathBuf,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; config reload disabled");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP received: reloading config");
            match app::reload(&state, &running, &path) {
                Ok(new) => running = new,
                Err(err) => {
                    tracing::error!(error = %err, "config reload rejected; the running config stays")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (state, running, path);
    }
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

/// `--sandbox` mode: the in-process Didit sandbox and its demo tenants.
#[cfg(feature = "sandbox")]
mod sandbox_mode {
    use std::net::SocketAddr;
    use std::process::ExitCode;

    use didit_sandbox::{Dialect, RateLimit, Sandbox, SandboxConfig, demo_applications};
    use didit_share_gateway::{app, config::Config};
    use tokio::net::TcpListener;

    use super::{Cli, unavailable};

    /// The `--sandbox-*` flags.
    #[derive(Debug, clap::Args)]
    pub struct Options {
        /// Where the in-process sandbox's REST API listens in --sandbox mode.
        #[arg(
            long,
            env = "DSG_SANDBOX_LISTEN",
            value_name = "ADDR",
            default_value = "127.0.0.1:8787"
        )]
        sandbox_listen: SocketAddr,
        /// The sandbox's dialect: the seeds' status codes or the published OpenAPI's.
        #[arg(long, env = "DSG_SANDBOX_DIALECT", value_enum, default_value_t = Dialect::Seeds)]
        sandbox_dialect: Dialect,
        /// Make the sandbox enforce Didit's 300 writes per minute per key.
        #[arg(long, env = "DSG_SANDBOX_RATE_LIMIT")]
        sandbox_rate_limit: bool,
    }

    /// The running sandbox.
    pub struct Running(Sandbox);

    /// Starts the sandbox; the gateway's config has one tenant per demo application.
    pub async fn start(
        cli: &Cli,
        listen: SocketAddr,
        admin_listen: SocketAddr,
    ) -> Result<(Running, Config), ExitCode> {
        let options = &cli.sandbox_options;
        let listener = match TcpListener::bind(options.sandbox_listen).await {
            Ok(l) => l,
            Err(err) => {
                return Err(unavailable(&format!(
                    "cannot bind the sandbox on {}: {err}",
                    options.sandbox_listen
                )));
            }
        };
        let sandbox_config = SandboxConfig {
            dialect: options.sandbox_dialect,
            rate_limit: options.sandbox_rate_limit.then(RateLimit::default),
        };
        let started = match Sandbox::start(listener, sandbox_config).await {
            Ok(s) => s,
            Err(err) => return Err(unavailable(&format!("cannot start the sandbox: {err}"))),
        };
        let config = app::sandbox_config(&started.base_url(), listen, admin_listen);
        Ok((Running(started), config))
    }

    impl Running {
        /// The demo tenants and a ready-to-paste first call.
        pub fn print_banner(&self, grpc_addr: &str) {
            let base = self.0.base_url();
            println!(
                "didit-share-gateway --sandbox: gRPC on {grpc_addr}, Didit sandbox REST API on {base}"
            );
            println!("demo tenants (send one in x-tenant-id):");
            for app in demo_applications() {
                println!(
                    "  {:<10} application_id={}  workflows: user={} business={}",
                    app.name, app.application_id, app.workflows.user, app.workflows.business
                );
            }
            let port = grpc_addr.rsplit(':').next().unwrap_or("50051");
            println!(
                "first call:  cargo run --example share_then_import -- --gateway http://127.0.0.1:{port} --sandbox {base}"
            );
            println!("sandbox API: curl -s {base}/_sandbox/applications");
        }

        pub async fn stop(self) {
            self.0.stop().await;
        }
    }
}

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
    pub async fn start(
        _cli: &Cli,
        _listen: SocketAddr,
        _admin_listen: SocketAddr,
    ) -> Result<(Running, Config), ExitCode> {
        eprintln!(
            "didit-share-gateway: --sandbox is not available: this binary was built without the `sandbox` cargo feature; give --config PATH"
        );
        Err(ExitCode::from(EXIT_CONFIG))
    }

    impl Running {
        pub fn print_banner(&self, _grpc_addr: &str) {
            match *self {}
        }

        pub async fn stop(self) {
            match self {}
        }
    }
}

/// `--check-config`: validate, print a summary, exit 0 or 64.
fn check_config(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("didit-share-gateway: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!("config {} is valid", path.display());
    println!("  grpc listen     {}", config.listen);
    println!("  admin listen    {}", config.admin_listen);
    println!(
        "  upstream        {} (timeout {:?}, {} attempts)",
        config.upstream_base_url, config.upstream_timeout, config.upstream_max_attempts
    );
    println!(
        "  replay          window {:?}, max {} bytes",
        config.replay.window, config.replay.max_bytes
    );
    println!(
        "  limits          {} concurrent calls, shutdown grace {:?}",
        config.max_concurrent_requests, config.shutdown_grace
    );
    let auth = match &config.auth {
        AuthConfig::None => "none (any caller may act for any tenant)".to_owned(),
        AuthConfig::Mesh {
            trusted_proxy_identity,
        } => format!(
            "mesh (identity from x-forwarded-client-cert{})",
            trusted_proxy_identity
                .as_ref()
                .map(|by| format!(", By= must be {by}"))
                .unwrap_or_default()
        ),
        AuthConfig::Mtls { client_ca_file, .. } => {
            format!(
                "mtls (client certificates from {})",
                client_ca_file.display()
            )
        }
    };
    println!("  auth            {auth}");
    for t in &config.tenants {
        let key = match &t.key_source {
            KeySource::File(p) => format!("key file {}", p.display()),
            KeySource::Env(name) => format!("key env {name}"),
            KeySource::Inline(_) => "inline key".to_owned(),
        };
        println!(
            "  tenant {:<16} application {}  {key}  {}/min  callers {:?}",
            t.id, t.application_id, t.rate_limit_per_minute, t.allowed_callers
        );
    }
    ExitCode::SUCCESS
}
