//! The gateway's core: share and import for a tenant. It knows nothing of
//! gRPC; the services in [`crate::service`] translate to and from it.
//!
//! Imports are de-duplicated at two levels: identical calls (same tenant,
//! token and parameters) in this process share one run ([`Coalescer`]),
//! and runs on every replica share one lease and one replay record in the
//! [`StateStore`] (`flow`). Shares are not de-duplicated: a share token is
//! a one-time secret, so every call mints its own.
//!
//! # Layout
//! - `flow`: one import run (lease, in-doubt mark, Didit, record).
//! - `recover`: finding a lost import's session through Didit.
//! - `detached`: bounds on import work running without its caller.

mod detached;
mod flow;
mod recover;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub use detached::DetachedLimits;

use crate::coalesce::Coalescer;
use crate::config::ReplayConfig;
use crate::didit::{CallContext, DiditClient};
use crate::error::GatewayError;
use crate::metrics::{EndpointLabels, Metrics};
use crate::replay::{StoredImport, import_id};
use crate::session::{ImportParams, ImportRequest, ShareOutcome, ShareRequest};
use crate::state::{ImportId, StateStore};
use crate::tenant::Tenant;

/// The result of an import.
#[derive(Clone, Debug)]
pub struct ImportOutcome {
    /// The session Didit created, with the request that created it.
    pub stored: Arc<StoredImport>,
    /// True when the answer came from the replay store (or a recovery),
    /// not a new import.
    pub replayed: bool,
}

/// What every import run needs, shared with the detached tasks.
struct Core {
    client: DiditClient,
    store: StateStore,
    metrics: Metrics,
    /// The replay window: how long records and in-doubt marks live.
    window: Duration,
    /// How long a run waits for another replica's leader.
    wait_cap: Duration,
    limits: DetachedLimits,
}

/// Share and import, shared by every connection.
pub struct Gateway {
    core: Arc<Core>,
    imports: Coalescer<(ImportId, ImportParams), ImportOutcome>,
    tasks: TaskTracker,
}

impl Gateway {
    /// A gateway calling Didit through `client`, keeping replay records,
    /// leases and in-doubt marks in `store`, running at most
    /// `max_detached` imports at once (half of them for one tenant).
    pub fn new(
        client: DiditClient,
        replay: ReplayConfig,
        store: StateStore,
        max_detached: usize,
        metrics: Metrics,
    ) -> Self {
        let tasks = TaskTracker::new();
        let wait_cap = client.upstream_timeout() + 2 * flow::LEASE_TTL;
        let limits = DetachedLimits::new(
            max_detached,
            max_detached.div_ceil(2),
            metrics.detached_in_flight.clone(),
        );
        Self {
            core: Arc::new(Core {
                client,
                store,
                metrics,
                window: replay.window,
                wait_cap,
                limits,
            }),
            imports: Coalescer::new(tasks.clone()),
            tasks,
        }
    }

    /// Mints a share token. Never de-duplicated: two calls, even
    /// concurrent identical ones, get two tokens (a token is a one-time
    /// secret for one partner hand-over).
    pub async fn share(
        &self,
        tenant: &Tenant,
        request: ShareRequest,
        ctx: CallContext,
    ) -> Result<ShareOutcome, GatewayError> {
        let deadline = ctx.deadline;
        let api_key = tenant.api_key();
        let work = async {
            self.core
                .client
                .share(&api_key, &request, &ctx)
                .await
                .map_err(GatewayError::from)
        };
        until(deadline, work).await
    }

    /// Imports a shared session, at most once per (tenant, token) across
    /// replicas: a repeat within the replay window gets the stored session
    /// (`replayed`), or `ALREADY_IMPORTED` when its parameters differ.
    pub async fn import(
        &self,
        tenant: &Tenant,
        request: ImportRequest,
        ctx: CallContext,
    ) -> Result<ImportOutcome, GatewayError> {
        let id = import_id(Arc::clone(&tenant.id), &request.share_token);
        if let Some(stored) = flow::read_record(&self.core, &id).await? {
            return self.answer(&request, flow::replayed(stored));
        }
        let deadline = ctx.deadline;
        // The run is detached with no caller deadline: a caller that gives
        // up must not leave an import Didit made but nobody stored.
        let ctx = CallContext {
            deadline: None,
            ..ctx
        };
        let core = Arc::clone(&self.core);
        let api_key = tenant.api_key();
        let tenant_id = tenant.id.clone();
        let task_id = id.clone();
        let task_request = request.clone();
        let work = async move {
            let _permit = core.limits.acquire(&tenant_id).await?;
            flow::run(core, task_id, api_key, task_request, ctx).await
        };
        // Only calls with equal parameters share a run: another caller's
        // parameter-specific error is not theirs to see.
        let (task, leader) = self.imports.join((id, request.params.clone()), work).await;
        if !leader {
            self.core
                .metrics
                .coalesced_waiters
                .get_or_create(&EndpointLabels { endpoint: "import" })
                .inc();
        }
        let outcome = until(deadline, task).await?;
        self.answer(&request, outcome)
    }

    /// Gives a stored or fresh result to a caller whose parameters match it.
    fn answer(
        &self,
        request: &ImportRequest,
        outcome: ImportOutcome,
    ) -> Result<ImportOutcome, GatewayError> {
        if outcome.stored.params != request.params {
            self.core.metrics.replay_mismatches.inc();
            return Err(GatewayError::AlreadyImported {
                session_id: Some(outcome.stored.session_id.clone()),
            });
        }
        if outcome.replayed {
            self.core.metrics.replays.inc();
        }
        Ok(outcome)
    }

    /// The shared state store (replay records, leases, in-doubt marks,
    /// budgets), for the budget, the health watch, tests and admin views.
    pub fn store(&self) -> &StateStore {
        &self.core.store
    }

    /// Detached upstream tasks still running (imports).
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The Didit client, for the reads (GetSession), which need neither
    /// replay nor coalescing.
    pub fn client(&self) -> &DiditClient {
        &self.core.client
    }
}

/// Awaits `task` until the caller's deadline.
async fn until<T>(
    deadline: Option<Instant>,
    task: impl std::future::Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, task)
            .await
            .unwrap_or(Err(GatewayError::DeadlineExceeded)),
        None => task.await,
    }
}
