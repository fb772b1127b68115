//! The gateway's core: share and import for a tenant, with in-flight
//! de-duplication and import replay. It knows nothing of gRPC; the services
//! in [`crate::service`] translate to and from it.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::coalesce::Coalescer;
use crate::config::ReplayConfig;
use crate::didit::{CallContext, DiditClient, DiditError, Rejection};
use crate::error::GatewayError;
use crate::metrics::{EndpointLabels, Metrics};
use crate::replay::{ImportKey, ReplayStore, StoredImport};
use crate::session::{ImportRequest, ShareOutcome, ShareRequest};
use crate::tenant::Tenant;

/// Identical share requests of one tenant that overlap in time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ShareKey {
    tenant: Arc<str>,
    session_id: Uuid,
    for_application_id: Uuid,
    ttl_seconds: u32,
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct ImportOutcome {
    /// The session Didit created, with the request that created it.
    pub stored: Arc<StoredImport>,
    /// True when the answer came from the replay store, not a new import.
    pub replayed: bool,
}

/// Share and import, shared by every connection.
pub struct Gateway {
    client: DiditClient,
    replay: ReplayStore,
    imports: Coalescer<ImportKey, ImportOutcome>,
    shares: Coalescer<ShareKey, ShareOutcome>,
    tasks: TaskTracker,
    metrics: Metrics,
}

impl Gateway {
    /// A gateway calling Didit through `client`.
    pub fn new(client: DiditClient, replay: ReplayConfig, metrics: Metrics) -> Self {
        let tasks = TaskTracker::new();
        Self {
            client,
            replay: ReplayStore::new(replay, &metrics),
            imports: Coalescer::new(tasks.clone()),
            shares: Coalescer::new(tasks.clone()),
            tasks,
            metrics,
        }
    }

    /// Mints a share token. Overlapping identical requests share one
    /// upstream call; a later request mints a fresh token.
    pub async fn share(
        &self,
        tenant: &Tenant,
        request: ShareRequest,
        ctx: CallContext,
    ) -> Result<ShareOutcome, GatewayError> {
        let key = ShareKey {
            tenant: Arc::from(tenant.id.as_str()),
            session_id: request.session_id,
            for_application_id: request.for_application_id,
            ttl_seconds: request.ttl_seconds,
        };
        let client = self.client.clone();
        let api_key = tenant.api_key();
        let deadline = ctx.deadline;
        let work = async move {
            client
                .share(&api_key, &request, &ctx)
                .await
                .map_err(GatewayError::from)
        };
        let (task, leader) = self.shares.join(key, work).await;
        if !leader {
            self.metrics
                .coalesced_waiters
                .get_or_create(&EndpointLabels { endpoint: "share" })
                .inc();
        }
        until(deadline, task).await
    }

    /// Imports a shared session, at most once per (tenant, token): a repeat
    /// within the replay window gets the stored session (`replayed`), or
    /// `ALREADY_IMPORTED` when its parameters differ.
    pub async fn import(
        &self,
        tenant: &Tenant,
        request: ImportRequest,
        ctx: CallContext,
    ) -> Result<ImportOutcome, GatewayError> {
        let key = ImportKey::new(&tenant.id, &request.share_token);
        if let Some(stored) = self.replay.get(&key).await {
            return self.answer(
                &request,
                ImportOutcome {
                    stored,
                    replayed: true,
                },
            );
        }
        let deadline = ctx.deadline;
        // The import runs detached with no caller deadline: a caller that
        // gives up must not leave an import Didit made but nobody stored.
        let ctx = CallContext {
            deadline: None,
            ..ctx
        };
        let (client, replay, metrics) = (
            self.client.clone(),
            self.replay.clone(),
            self.metrics.clone(),
        );
        let api_key = tenant.api_key();
        let params = request.params.clone();
        let task_key = key.clone();
        let task_request = request.clone();
        let work = async move {
            let session = match client.import(&api_key, &task_request, &ctx).await {
                Ok(session) => session,
                // Didit says "already imported": if the import that did it
                // was ours and finished just before this call joined (a
                // narrow race between the lookup above and the join), its
                // result is in the store. Checking only here keeps the
                // common miss path to one store lookup.
                Err(
                    err @ DiditError::Rejected {
                        rejection: Rejection::AlreadyImported,
                        ..
                    },
                ) => {
                    return match replay.get(&task_key).await {
                        Some(stored) => Ok(ImportOutcome {
                            stored,
                            replayed: true,
                        }),
                        None => Err(err.into()),
                    };
                }
                Err(err) => return Err(err.into()),
            };
            let stored = Arc::new(StoredImport { params, session });
            replay.insert(task_key, Arc::clone(&stored)).await;
            metrics.replay_stored.inc();
            Ok(ImportOutcome {
                stored,
                replayed: false,
            })
        };
        let (task, leader) = self.imports.join(key, work).await;
        if !leader {
            self.metrics
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
            self.metrics.replay_mismatches.inc();
            return Err(GatewayError::AlreadyImported {
                session_id: Some(outcome.stored.session.session_id.clone()),
            });
        }
        if outcome.replayed {
            self.metrics.replays.inc();
        }
        Ok(outcome)
    }

    /// The replay store, for tests and the admin view.
    pub fn replay_store(&self) -> &ReplayStore {
        &self.replay
    }

    /// Detached upstream tasks still running (share and import).
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The Didit client, for the reads (GetSession), which need neither
    /// replay nor coalescing.
    pub fn client(&self) -> &DiditClient {
        &self.client
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
