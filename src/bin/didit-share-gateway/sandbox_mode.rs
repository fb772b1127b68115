//! `--sandbox` mode: the in-process Didit sandbox and its demo tenants,
//! the gateway configured for them (and registered as their webhook
//! destination), optionally over a Redis state.

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
    let dir = std::env::temp_dir().join(format!("dsg-sandbox-{}", uuid::Uuid::new_v4().simple()));
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
