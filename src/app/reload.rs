//! Reloading the config of a running gateway (SIGHUP, or
//! [`Running::reload`](super::Running::reload)): tenants, keys, allowed
//! callers, partner policies, the mesh policy and tenants' Didit budgets
//! (rate and burst) are replaced for every call from now on (a call in
//! flight keeps the tenant and policy it started with; a tenant's budget
//! state is keyed by its id, so an unchanged tenant gets no fresh burst);
//! every other section that changed is named in a warning and applies after
//! a restart. On any error the running config
//! stays.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{Config, ConfigError, Overrides};
use crate::service::AppState;

/// What a reload applied.
#[derive(Debug)]
pub struct Reloaded {
    /// How many tenants are configured now.
    pub tenants: usize,
    /// Sections that changed but apply only after a restart
    /// (see [`Config::needs_restart`]).
    pub needs_restart: Vec<&'static str>,
}

/// The config a gateway runs with, and how to replace it.
pub(super) struct Reloader {
    /// Where the new settings go.
    state: Arc<AppState>,
    /// The config in force; its `source` is the file a reload re-reads.
    running: Mutex<Config>,
    /// The command-line addresses, applied again to every reloaded file.
    overrides: Overrides,
}

impl Reloader {
    pub(super) fn new(state: Arc<AppState>, running: Config, overrides: Overrides) -> Self {
        Self {
            state,
            running: Mutex::new(running),
            overrides,
        }
    }

    /// A copy of the config in force.
    pub(super) fn running(&self) -> Config {
        self.lock().clone()
    }

    /// Re-reads the file the running config came from.
    pub(super) fn reload(&self) -> Result<Reloaded, ConfigError> {
        let path = self.lock().source.clone();
        self.reload_from(&path)
    }

    /// Reads `path` and applies it; `path` is what later reloads re-read.
    pub(super) fn reload_from(&self, path: &Path) -> Result<Reloaded, ConfigError> {
        // Held throughout, so that two reloads apply one after the other.
        let mut running = self.lock();
        let mut new = Config::load(path)?;
        self.overrides.apply(&mut new);
        let reloaded = apply(&self.state, &running, &new)?;
        *running = new;
        Ok(reloaded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Config> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Replaces what `new` may replace in `state`; `running` stays in force
/// for the rest.
fn apply(state: &AppState, running: &Config, new: &Config) -> Result<Reloaded, ConfigError> {
    if running.auth.is_mtls() != new.auth.is_mtls() {
        return Err(ConfigError {
            file: new.source.clone(),
            key: "auth.mode".into(),
            problem: "switching to or from mtls needs a restart; the running config stays".into(),
        });
    }
    let needs_restart = running.needs_restart(new);
    state.replace_settings(super::build::settings(new)?);
    super::warn_tenants_without_policy(new);
    if !needs_restart.is_empty() {
        tracing::warn!(settings = ?needs_restart, "config reloaded, but these settings apply only after a restart");
    }
    tracing::info!(
        tenants = new.tenants.len(),
        "config reloaded: tenants, keys and caller policy replaced"
    );
    Ok(Reloaded {
        tenants: new.tenants.len(),
        needs_restart,
    })
}

/// Reloads on every SIGHUP until aborted; a bad file is logged and the
/// running config stays.
pub(super) async fn on_sighup(reloader: Arc<Reloader>) {
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
            let path = reloader.lock().source.clone();
            tracing::info!(config = %path.display(), "SIGHUP received: reloading config");
            if let Err(err) = reloader.reload_from(&path) {
                tracing::error!(error = %err, "config reload rejected; the running config stays");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
    }
}
