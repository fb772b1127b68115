//! The sandbox's state: applications, API keys, sessions, the one-time
//! import ledger, the user/business entities imports create, webhook
//! destinations. One mutex for the mutable parts, held for map operations
//! only (never across `.await`, never while serializing).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use uuid::Uuid;

use super::demo::{DemoApplication, Workflows};
use super::model::{SessionKind, Status, fresh_uuid};
use super::session::{ImportRecord, Session};

/// An application the sandbox knows (fixed at start).
#[derive(Clone, Debug)]
pub(crate) struct Application {
    pub(crate) id: Uuid,
    pub(crate) workflows: Workflows,
}

impl Application {
    /// The workflow an import of a `kind` token must name.
    pub(crate) fn workflow(&self, kind: SessionKind) -> &str {
        match kind {
            SessionKind::User => &self.workflows.user,
            SessionKind::Business => &self.workflows.business,
        }
    }
}

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The application the key belongs to.
    pub(crate) application_id: Uuid,
    /// Holds `write:sessions` (needed by every v3 POST).
    pub(crate) write_sessions: bool,
}

/// Why an import was refused at commit time, in the order checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ImportRefusal {
    AlreadyImported,
    OriginalGone,
    WorkflowMissing,
}

/// An import that passed the token checks.
pub(crate) struct ImportOrder<'a> {
    /// The token's `jti`; with `importer` it keys the one-time ledger.
    pub(crate) jti: Uuid,
    pub(crate) importer: Uuid,
    /// The session named by the token.
    pub(crate) original: Uuid,
    /// Whether `workflow_id` is the importer's workflow of the token's kind
    /// (decided by the caller, checked after the ledger and the original).
    pub(crate) workflow_ok: bool,
    pub(crate) trust_review: bool,
    pub(crate) vendor_data: Option<&'a str>,
    pub(crate) workflow_id: &'a str,
    pub(crate) now_ms: i64,
}

/// A registered webhook destination; session events of its application
/// are delivered to it, signed with its secret.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct WebhookDestination {
    pub(crate) uuid: Uuid,
    /// The application whose key registered it.
    pub(crate) application_id: Uuid,
    pub(crate) url: String,
    pub(crate) subscribed_events: Vec<String>,
    /// Random hex; Didit signs deliveries with it.
    pub(crate) secret_shared_key: String,
}

/// The mutable state.
#[derive(Default)]
struct Inner {
    sessions: HashMap<Uuid, Arc<Session>>,
    /// (token jti, importing application) pairs already imported.
    imported: HashSet<(Uuid, Uuid)>,
    /// Imports so far per application (the last `session_number`).
    import_counts: HashMap<Uuid, u64>,
    /// (application, kind, vendor_data) entities imports created.
    entities: HashSet<(Uuid, SessionKind, String)>,
    webhooks: Vec<WebhookDestination>,
    /// The last [`Session::seq`] handed out.
    seq: u64,
}

impl Inner {
    /// Stores `session` under a fresh insertion number.
    fn insert(&mut self, mut session: Session) -> Arc<Session> {
        self.seq += 1;
        session.seq = self.seq;
        let session = Arc::new(session);
        self.sessions.insert(session.id, Arc::clone(&session));
        session
    }
}

/// Entity and destination counts for the stats endpoint.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Counts {
    pub(crate) sessions: usize,
    pub(crate) users: usize,
    pub(crate) businesses: usize,
    pub(crate) webhook_destinations: usize,
}

/// The store.
pub(crate) struct Store {
    /// Fixed at start; looked up without locking.
    applications: Vec<Application>,
    /// Read on every request, written by the key-rotation admin calls.
    keys: RwLock<HashMap<String, Grant>>,
    inner: Mutex<Inner>,
}

/// Admin key changes that cannot be applied.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("Application does not exist.")]
    UnknownApplication,
    #[error("This API key already exists.")]
    Exists,
}

impl Store {
    /// A store holding the demo applications, their keys and seeded sessions.
    pub(crate) fn new(demo: &[DemoApplication], now_ms: i64) -> Store {
        let mut keys = HashMap::new();
        let mut inner = Inner::default();
        for app in demo {
            let grant = |write_sessions| Grant {
                application_id: app.application_id,
                write_sessions,
            };
            keys.insert(app.api_key.clone(), grant(true));
            keys.insert(app.read_only_api_key.clone(), grant(false));
            for seeded in &app.sessions {
                let Some(kind) = SessionKind::parse(&seeded.session_kind) else {
                    continue;
                };
                let Some(status) = Status::parse(kind, &seeded.status) else {
                    continue;
                };
                let workflow = match kind {
                    SessionKind::User => &app.workflows.user,
                    SessionKind::Business => &app.workflows.business,
                };
                inner.insert(Session::new(
                    seeded.session_id,
                    app.application_id,
                    kind,
                    status,
                    workflow,
                    now_ms,
                ));
            }
        }
        Store {
            applications: demo
                .iter()
                .map(|a| Application {
                    id: a.application_id,
                    workflows: a.workflows.clone(),
                })
                .collect(),
            keys: RwLock::new(keys),
            inner: Mutex::new(inner),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; recover anyway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn application(&self, id: Uuid) -> Option<&Application> {
        self.applications.iter().find(|a| a.id == id)
    }

    /// What `api_key` may do, if it is known.
    pub(crate) fn grant(&self, api_key: &[u8]) -> Option<Grant> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        std::str::from_utf8(api_key)
            .ok()
            .and_then(|k| keys.get(k).copied())
    }

    pub(crate) fn add_key(&self, api_key: String, grant: Grant) -> Result<(), KeyError> {
        if self.application(grant.application_id).is_none() {
            return Err(KeyError::UnknownApplication);
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.contains_key(&api_key) {
            return Err(KeyError::Exists);
        }
        keys.insert(api_key, grant);
        Ok(())
    }

    /// Removes a key; false when it did not exist.
    pub(crate) fn remove_key(&self, api_key: &str) -> bool {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.remove(api_key).is_some()
    }

    pub(crate) fn session(&self, id: Uuid) -> Option<Arc<Session>> {
        self.inner().sessions.get(&id).cloned()
    }

    /// Creates a session with fresh fixtures; `None` if the application is unknown.
    pub(crate) fn create_session(
        &self,
        application_id: Uuid,
        kind: SessionKind,
        status: Status,
        now_ms: i64,
    ) -> Option<Uuid> {
        let workflow = self.application(application_id)?.workflow(kind);
        let session = Session::new(fresh_uuid(), application_id, kind, status, workflow, now_ms);
        Some(self.inner().insert(session).id)
    }

    /// Every session of `application_id`, in no particular order.
    pub(crate) fn sessions_of(&self, application_id: Uuid) -> Vec<Arc<Session>> {
        self.inner()
            .sessions
            .values()
            .filter(|s| s.application_id == application_id)
            .cloned()
            .collect()
    }

    /// Replaces the status of session `id` (keeping its place in the
    /// list order); `None` when it does not exist.
    pub(crate) fn set_status(&self, id: Uuid, status: Status) -> Option<Arc<Session>> {
        let mut inner = self.inner();
        let entry = inner.sessions.get_mut(&id)?;
        let mut changed = Session::clone(entry);
        changed.status = status;
        *entry = Arc::new(changed);
        Some(Arc::clone(entry))
    }

    /// Deletes a session; false when it did not exist.
    pub(crate) fn delete_session(&self, id: Uuid) -> bool {
        self.inner().sessions.remove(&id).is_some()
    }

    /// Checks the ledger, the original and the workflow (in that order)
    /// and stores the copy, all under one lock so concurrent imports of
    /// one token cannot both succeed.
    pub(crate) fn import(&self, order: &ImportOrder<'_>) -> Result<Arc<Session>, ImportRefusal> {
        let new_id = fresh_uuid();
        let mut inner = self.inner();
        let ledger_key = (order.jti, order.importer);
        if inner.imported.contains(&ledger_key) {
            return Err(ImportRefusal::AlreadyImported);
        }
        let original = inner
            .sessions
            .get(&order.original)
            .cloned()
            .ok_or(ImportRefusal::OriginalGone)?;
        if !order.workflow_ok {
            return Err(ImportRefusal::WorkflowMissing);
        }
        let number = inner.import_counts.entry(order.importer).or_insert(0);
        *number += 1;
        let session_number = *number;
        inner.imported.insert(ledger_key);
        if let Some(vendor_data) = order.vendor_data.filter(|v| !v.is_empty()) {
            let entity = (order.importer, original.kind, vendor_data.to_owned());
            inner.entities.insert(entity);
        }
        let copy = Session {
            id: new_id,
            application_id: order.importer,
            kind: original.kind,
            status: if order.trust_review {
                original.status
            } else {
                Status::InReview
            },
            checks: Arc::clone(&original.checks),
            created_at_ms: order.now_ms,
            seq: 0,
            workflow_id: order.workflow_id.to_owned(),
            import: Some(ImportRecord {
                session_number,
                shared_from: original.id,
                vendor_data: order.vendor_data.map(str::to_owned),
            }),
        };
        Ok(inner.insert(copy))
    }

    pub(crate) fn add_webhook(&self, destination: WebhookDestination) {
        self.inner().webhooks.push(destination);
    }

    pub(crate) fn webhooks(&self) -> Vec<WebhookDestination> {
        self.inner().webhooks.clone()
    }

    /// The destinations of `application_id` subscribed to `webhook_type`.
    pub(crate) fn subscribers(
        &self,
        application_id: Uuid,
        webhook_type: &str,
    ) -> Vec<WebhookDestination> {
        self.inner()
            .webhooks
            .iter()
            .filter(|d| d.application_id == application_id)
            .filter(|d| d.subscribed_events.iter().any(|e| e == webhook_type))
            .cloned()
            .collect()
    }

    pub(crate) fn counts(&self) -> Counts {
        let inner = self.inner();
        let users = inner
            .entities
            .iter()
            .filter(|e| e.1 == SessionKind::User)
            .count();
        Counts {
            sessions: inner.sessions.len(),
            users,
            businesses: inner.entities.len() - users,
            webhook_destinations: inner.webhooks.len(),
        }
    }
}

#[cfg(test)]
mod tests;
