//! API key rotation: key files (Kubernetes Secret volumes, which are
//! updated by swapping a symlink) are re-read periodically; a changed,
//! valid key is used from the next call on. An unreadable or empty new file
//! keeps the last good key and raises an error log and a metric.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::KeySource;
use crate::metrics::{Metrics, TenantLabels};
use crate::service::AppState;
use crate::tenant::Tenant;

/// Checks every tenant's key file every `interval`, until the task is
/// aborted or the state is dropped.
pub fn spawn_key_watcher(state: &Arc<AppState>, interval: Duration) -> tokio::task::JoinHandle<()> {
    // Each configured tenant's reload failures are exported at 0 from the
    // start (the rate-limit layer does the same for its counter).
    for tenant in state.settings().tenants.iter() {
        let _ = state
            .metrics
            .key_reload_failures
            .get_or_create(&TenantLabels {
                tenant: tenant.id.to_string(),
            });
    }
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(state) = state.upgrade() else { return };
            let settings = state.settings();
            for tenant in settings.tenants.iter() {
                reload_key(tenant, &state.metrics).await;
            }
        }
    })
}

/// Re-reads one tenant's key file; returns true when the key changed.
pub async fn reload_key(tenant: &Tenant, metrics: &Metrics) -> bool {
    let Some(path) = tenant.key_file().map(ToOwned::to_owned) else {
        return false;
    };
    let source = KeySource::File(path);
    let loaded = tokio::task::spawn_blocking(move || source.load()).await;
    let result = match loaded {
        Ok(result) => result,
        Err(err) => Err(format!("key reload task failed: {err}")),
    };
    match result {
        Ok(key) => {
            let was_failing = tenant.key_reload_failing.swap(false, Ordering::Relaxed);
            if was_failing {
                tracing::info!(tenant = %tenant.id, "API key file readable again");
            }
            if key.expose() == tenant.api_key().expose() {
                return false;
            }
            tenant.replace_api_key(key);
            tracing::info!(tenant = %tenant.id, "API key rotated: the new key is used from the next call on");
            true
        }
        Err(problem) => {
            metrics
                .key_reload_failures
                .get_or_create(&TenantLabels {
                    tenant: tenant.id.to_string(),
                })
                .inc();
            if !tenant.key_reload_failing.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    tenant = %tenant.id,
                    %problem,
                    "cannot reload the API key file; keeping the last good key"
                );
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::ApiKey;

    #[tokio::test]
    async fn a_rotated_file_replaces_the_key_and_a_broken_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "old-key\n").unwrap();
        let tenant = Tenant::new(
            "t".into(),
            uuid::Uuid::nil(),
            ApiKey::new("old-key".into()),
            vec![],
            300,
        )
        .with_key_file(path.clone());
        let metrics = Metrics::new();
        assert!(!reload_key(&tenant, &metrics).await, "unchanged");

        std::fs::write(&path, "new-key\n").unwrap();
        assert!(reload_key(&tenant, &metrics).await);
        assert_eq!(tenant.api_key().expose(), "new-key");

        std::fs::write(&path, "   \n").unwrap();
        assert!(!reload_key(&tenant, &metrics).await);
        assert_eq!(
            tenant.api_key().expose(),
            "new-key",
            "an empty file keeps the last good key"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(!reload_key(&tenant, &metrics).await);
        assert_eq!(
            tenant.api_key().expose(),
            "new-key",
            "a missing file keeps the last good key"
        );
        assert!(
            metrics
                .encode()
                .contains("dsg_api_key_reload_failures_total{tenant=\"t\"} 2")
        );
    }
}
