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

/// `--sandbox` mode: the in-process Didit sandbox and its demo tenants.
#[cfg(feature = "sandbox")]
mod sandbox_mode {
    use std::net::SocketAddr;
    use std::process::ExitCode;

    use didit_sandbox::{Dialect, RateLimit, Sandbox, SandboxConfig, demo_applications};
    use didit_share_gateway::state::{Backend, StateConfig};
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
        /// Where the gateway receives the sandbox's webhooks in --sandbox mode
        /// (it registers itself as the demo applications' destination).
        #[arg(
            long,
            env = "DSG_WEBHOOKS_LISTEN",
            value_name = "ADDR",
            default_value = "127.0.0.1:8788"
        )]
        webhooks_listen: SocketAddr,
        /// Where --sandbox mode keeps replay records, leases and budgets:
        /// `memory` (this process) or `redis` (needs --redis-url; run several
        /// gateways on one Redis). With redis a random encryption key is
        /// generated at start for this demo: records sealed by an earlier
        /// run cannot be read (they are treated as misses).
        #[arg(long = "state", env = "DSG_SANDBOX_STATE", value_enum, default_value_t = StateChoice::Memory)]
        state: StateChoice,
        /// The Redis URL for `--state redis` (`redis://host:6379/0`; a
        /// password in it is kept in a private temporary file, never logged).
        #[arg(long, env = "DSG_SANDBOX_REDIS_URL", value_name = "URL")]
        redis_url: Option<String>,
        /// The demo tenants' `rate_limit_per_minute` in --sandbox mode.
        #[arg(
            long,
            env = "DSG_RATE_LIMIT_PER_MINUTE",
            value_name = "N",
            default_value_t = didit_share_gateway::config::TenantConfig::DEFAULT_RATE_LIMIT_PER_MINUTE,
            value_parser = clap::value_parser!(u32).range(1..)
        )]
        rate_limit_per_minute: u32,
    }

    /// `--state`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
    pub enum StateChoice {
        /// In this process only.
        Memory,
        /// In Redis, shared by every gateway using it.
        Redis,
    }

    /// The running sandbox, and the temporary secrets of `--state redis`.
    pub struct Running(Sandbox, Option<std::path::PathBuf>);

    /// `[state]` for `--state redis --redis-url URL`: the URL and a random
    /// encryption key written to a private temporary directory.
    fn redis_state(url: &str) -> std::io::Result<(StateConfig, std::path::PathBuf)> {
        use base64::Engine as _;
        use std::io::Write as _;
        let dir =
            std::env::temp_dir().join(format!("dsg-sandbox-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir)?;
        let write = |name: &str, content: &str| -> std::io::Result<std::path::PathBuf> {
            let path = dir.join(name);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&path)?.write_all(content.as_bytes())?;
            Ok(path)
        };
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key[..]);
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let state = StateConfig {
            backend: Backend::Redis,
            redis_url_file: Some(write("redis-url", url)?),
            encryption_key_file: Some(write("state-key", &key)?),
            ..StateConfig::default()
        };
        Ok((state, dir))
    }

    /// Starts the sandbox on `--sandbox-listen`; the gateway's config has
    /// one tenant per demo application.
    pub async fn start(cli: &Cli) -> Result<(Running, Config), ExitCode> {
        let options = &cli.sandbox_options;
        let redis_url = match (options.state, &options.redis_url) {
            (StateChoice::Memory, None) => None,
            (StateChoice::Memory, Some(_)) => {
                eprintln!("--redis-url needs --state redis");
                return Err(ExitCode::from(super::EXIT_CONFIG));
            }
            (StateChoice::Redis, None) => {
                eprintln!("--state redis needs --redis-url URL");
                return Err(ExitCode::from(super::EXIT_CONFIG));
            }
            (StateChoice::Redis, Some(url)) => Some(url),
        };
        let listener = TcpListener::bind(options.sandbox_listen)
            .await
            .map_err(|err| {
                unavailable(&format!(
                    "cannot bind the sandbox on {}: {err}",
                    options.sandbox_listen
                ))
            })?;
        let sandbox_config = SandboxConfig {
            dialect: options.sandbox_dialect,
            rate_limit: options.sandbox_rate_limit.then(RateLimit::default),
        };
        let started = Sandbox::start(listener, sandbox_config)
            .await
            .map_err(|err| unavailable(&format!("cannot start the sandbox: {err}")))?;
        let mut config = app::sandbox_config(&started.base_url());
        for tenant in &mut config.tenants {
            tenant.rate_limit_per_minute = options.rate_limit_per_minute;
        }
        app::sandbox_webhooks(&mut config, options.webhooks_listen);
        let secrets = match redis_url {
            None => None,
            Some(url) => {
                let (state, dir) = redis_state(url).map_err(|err| {
                    unavailable(&format!("cannot write the demo's Redis secrets: {err}"))
                })?;
                config.state = state;
                Some(dir)
            }
        };
        Ok((Running(started, secrets), config))
    }

    impl Running {
        /// Makes the sandbox deliver the demo applications' webhooks to the
        /// gateway's webhook port.
        pub fn register_webhooks(&self, gateway: &app::Running) -> Result<(), ExitCode> {
            let Some(addr) = gateway.webhooks_addr else {
                return Ok(());
            };
            app::register_sandbox_webhooks(&self.0, &gateway.config(), addr)
                .map_err(|e| unavailable(&format!("cannot register the sandbox webhooks: {e}")))?;
            println!("webhooks: the sandbox delivers to http://{addr}/webhooks/didit/<tenant>");
            Ok(())
        }

        /// The demo tenants and a ready-to-paste first call.
        pub fn print_banner(&self, grpc_addr: SocketAddr) {
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
            println!(
                "partner policy: service-x and service-y are sister brands; service-z is in neither's agreements (docs/partner-policy.md)"
            );
            let port = grpc_addr.port();
            println!(
                "first call:  cargo run --example share_then_import -- --gateway http://127.0.0.1:{port} --sandbox {base}"
            );
            println!("sandbox API: curl -s {base}/_sandbox/applications");
        }

        /// Stops the sandbox and removes the demo's Redis secrets.
        pub async fn stop(self) {
            self.0.stop().await;
            if let Some(dir) = self.1 {
                let _ = std::fs::remove_dir_all(dir);
            }
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
