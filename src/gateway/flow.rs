//! One import run across replicas: in one store step, find the record or
//! take the shared lease of the import and mark it in doubt (or learn who
//! holds it and wait for them); call Didit; in one more step store the
//! replay record and release the lease. When Didit's answer is lost the
//! mark stays, and a later run that Didit answers "already imported" finds
//! the session through Didit ([`super::recover`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Core, ImportOutcome, recover};
use crate::didit::{CallContext, DiditError, Rejection};
use crate::error::GatewayError;
use crate::replay::StoredImport;
use crate::session::{ImportParams, ImportRequest, ImportedSession};
use crate::state::{
    Begin, ImportId, InDoubt, LeaseKeeper, LeaseOwner, Previous, StateError, WaitOutcome,
};
use crate::tenant::ApiKey;

/// How long a lease lives without an extension: a leader that dies holds
/// up its import's retries at most this long.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(5);

/// Runs the import `id` of `request` to an outcome: as the leader, or by
/// waiting for the leader on this or another replica.
pub(super) async fn run(
    core: Arc<Core>,
    id: ImportId,
    key: Arc<ApiKey>,
    request: ImportRequest,
    ctx: CallContext,
) -> Result<ImportOutcome, GatewayError> {
    let owner = LeaseOwner::random();
    let wait_until = Instant::now() + core.wait_cap;
    let mut check_record = true;
    loop {
        // One step: the record (another replica may have stored it since
        // the caller's lookup), or the lease with the in-doubt mark.
        let mark = new_mark(&request);
        let begun = if check_record {
            core.store
                .begin_import(&id, &owner, LEASE_TTL, &mark, core.window)
                .await
        } else {
            core.store
                .begin_import_ignoring_record(&id, &owner, LEASE_TTL, &mark, core.window)
                .await
        };
        match begun {
            Ok(Begin::Record(bytes)) => match decode(&bytes) {
                Some(stored) => return Ok(replayed(stored)),
                None => check_record = false,
            },
            // Once: what the store cannot open is the record; begin again
            // without it.
            Err(StateError::Corrupt(cause)) if check_record => {
                tracing::warn!(%cause, "an unreadable replay record is ignored");
                check_record = false;
            }
            Err(err) => return Err(err.into()),
            Ok(Begin::Leading(previous)) => {
                let keeper = LeaseKeeper::start(core.store.clone(), id.clone(), owner, LEASE_TTL);
                let mut lease = Some(keeper);
                let result = lead(&core, &id, &key, &request, &ctx, previous, &mut lease).await;
                // Not finished by a stored record: release it.
                if let Some(keeper) = lease
                    && let Err(err) = keeper.release().await
                {
                    // The lease expires by itself within its TTL.
                    tracing::warn!(error = %err, "could not release an import lease");
                }
                return result;
            }
            Ok(Begin::Busy) => {
                if Instant::now() >= wait_until {
                    return Err(GatewayError::DeadlineExceeded);
                }
                match core.store.wait_for_record(&id, wait_until).await? {
                    WaitOutcome::Record(bytes) => match decode(&bytes) {
                        Some(stored) => return Ok(replayed(stored)),
                        None => {
                            return Err(GatewayError::Internal("unreadable replay record".into()));
                        }
                    },
                    // The leader failed or died: try to lead.
                    WaitOutcome::LeaseGone => {}
                    WaitOutcome::TimedOut => return Err(GatewayError::DeadlineExceeded),
                }
            }
        }
    }
}

/// The in-doubt mark of `request`, sent now.
fn new_mark(request: &ImportRequest) -> InDoubt {
    InDoubt {
        source_session_id: crate::share_token::read_claims(request.share_token.expose())
            .map(|claims| claims.session_id.to_string())
            .unwrap_or_default(),
        workflow_id: request.params.workflow_id.clone(),
        vendor_data: request.params.vendor_data.clone(),
        sent_at: SystemTime::now(),
    }
}

/// The leader's part, holding the lease (`lease`, taken when a record is
/// stored). `previous` is the mark an earlier unanswered import left; when
/// there was none, `begin_import` stored this import's mark.
async fn lead(
    core: &Core,
    id: &ImportId,
    key: &ApiKey,
    request: &ImportRequest,
    ctx: &CallContext,
    previous: Previous,
    lease: &mut Option<LeaseKeeper>,
) -> Result<ImportOutcome, GatewayError> {
    let previous = match previous {
        Previous::Absent => None,
        Previous::Mark(mark) => Some(mark),
        Previous::Unreadable(cause) => {
            tracing::warn!(%cause, "an unreadable in-doubt mark is ignored");
            core.store
                .mark_in_doubt(id, &new_mark(request), core.window)
                .await?;
            None
        }
    };
    // Nothing was sent before this line: every state failure above left Didit untouched.
    match core.client.import(key, request, ctx).await {
        Ok(session) => {
            let stored = Arc::new(record(request.params.clone(), &session, false)?);
            store(core, id, &stored, lease).await;
            Ok(ImportOutcome {
                stored,
                replayed: false,
            })
        }
        Err(
            err @ DiditError::Rejected {
                rejection: Rejection::AlreadyImported,
                ..
            },
        ) => {
            if let Some(stored) = read_record(core, id).await? {
                return Ok(replayed(stored));
            }
            let Some(mark) = previous else {
                // Imported before this import was ever sent: not ours to recover.
                let _ = core.store.clear_in_doubt(id).await;
                return Err(err.into());
            };
            recover_lost(core, id, key, request, ctx, mark, lease).await
        }
        Err(
            err @ (DiditError::Rejected { .. }
            | DiditError::RateLimited { .. }
            | DiditError::BudgetExhausted { .. }
            | DiditError::StateUnavailable { .. }),
        ) => {
            // Definitely not imported by this send (the budget refuses
            // before anything is sent).
            if previous.is_none() {
                let _ = core.store.clear_in_doubt(id).await;
            }
            Err(err.into())
        }
        Err(
            err @ (DiditError::Unavailable { .. }
            | DiditError::Timeout
            | DiditError::Protocol { .. }),
        ) => {
            // The answer may be lost: the mark stays for the retry.
            tracing::warn!(error = %err, "the answer to an import may be lost; a retry will look the session up");
            Err(GatewayError::Upstream(DiditError::Unavailable {
                cause: format!("the answer to the import was lost ({err}); retry the same import"),
                reply: None,
            }))
        }
    }
}

/// Finds the session of an earlier lost import described by `mark`.
async fn recover_lost(
    core: &Core,
    id: &ImportId,
    key: &ApiKey,
    request: &ImportRequest,
    ctx: &CallContext,
    mark: InDoubt,
    lease: &mut Option<LeaseKeeper>,
) -> Result<ImportOutcome, GatewayError> {
    let found = recover::find_imported(&core.client, key, &mark, ctx).await?;
    let Some(session) = found else {
        return Err(GatewayError::AlreadyImported { session_id: None });
    };
    core.metrics.import_recoveries.inc();
    // What the lost import sent; the mark does not keep trust_review.
    let params = ImportParams {
        workflow_id: mark.workflow_id,
        vendor_data: mark.vendor_data,
        trust_review: request.params.trust_review,
    };
    let stored = Arc::new(record(params, &session, true)?);
    store(core, id, &stored, lease).await;
    Ok(replayed(stored))
}

/// The record of a session Didit created (its answer encoded once, here).
/// A body that does not map is an internal error; the in-doubt mark stays,
/// so a retry can still find the session.
fn record(
    params: ImportParams,
    session: &ImportedSession,
    recovered: bool,
) -> Result<StoredImport, GatewayError> {
    StoredImport::new(params, session, recovered).map_err(|err| {
        tracing::error!(error = %err, "an imported session's answer could not be built");
        GatewayError::Internal(format!(
            "the imported session's answer could not be built: {err}"
        ))
    })
}

/// Stores a record, and releases the lease with it in one step when it is
/// still held (`lease` is then taken); a failure only costs the replay (the
/// caller still gets its session, and the in-doubt mark lets a retry
/// recover it).
async fn store(core: &Core, id: &ImportId, stored: &StoredImport, lease: &mut Option<LeaseKeeper>) {
    let record = stored.encode();
    let stored = match lease.take() {
        Some(keeper) => keeper.finish(record, core.window).await.map(drop),
        None => core.store.put_record(id, record, core.window).await,
    };
    match stored {
        Ok(()) => {
            core.metrics.replay_stored.inc();
        }
        Err(err) => {
            tracing::warn!(error = %err, "an import result could not be stored for replay");
        }
    }
}

/// The stored record of `id`; an unreadable one is logged and treated as
/// absent, an unreachable store is an error.
pub(super) async fn read_record(
    core: &Core,
    id: &ImportId,
) -> Result<Option<Arc<StoredImport>>, GatewayError> {
    match core.store.get_record(id).await {
        Ok(Some(bytes)) => Ok(decode(&bytes)),
        Ok(None) => Ok(None),
        Err(StateError::Corrupt(cause)) => {
            tracing::warn!(%cause, "an unreadable replay record is ignored");
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

fn decode(bytes: &bytes::Bytes) -> Option<Arc<StoredImport>> {
    match StoredImport::decode(bytes) {
        Ok(stored) => Some(Arc::new(stored)),
        Err(err) => {
            tracing::warn!(error = %err, "an undecodable replay record is ignored");
            None
        }
    }
}

pub(super) fn replayed(stored: Arc<StoredImport>) -> ImportOutcome {
    ImportOutcome {
        stored,
        replayed: true,
    }
}
