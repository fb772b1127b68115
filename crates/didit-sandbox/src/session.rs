//! A session and the two shapes Didit returns it in: the full decision
//! body (the import answer and `GET /v3/session/{id}/decision/`) and the
//! short row of `GET /v3/sessions/`.

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::clock::rfc3339;
use super::fixtures;
use super::model::{SessionKind, Status};

/// A session. Immutable once stored (a status change stores a new value);
/// its check arrays are serialized once and shared by every copy an import
/// makes.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) id: Uuid,
    /// The owning application.
    pub(crate) application_id: Uuid,
    pub(crate) kind: SessionKind,
    pub(crate) status: Status,
    /// The serialized check arrays (`{"id_verifications":[...],...}`).
    pub(crate) checks: Arc<str>,
    /// Sandbox clock, Unix ms.
    pub(crate) created_at_ms: i64,
    /// Store insertion order: breaks `created_at` ties, newest first.
    pub(crate) seq: u64,
    /// The workflow it ran in: the application's workflow of its kind, or
    /// the one an import named.
    pub(crate) workflow_id: String,
    /// Set on imported sessions: where they came from.
    pub(crate) import: Option<ImportRecord>,
}

/// What an import adds to the session it creates.
#[derive(Clone, Debug)]
pub(crate) struct ImportRecord {
    /// Per-application counter of imports, from 1.
    pub(crate) session_number: u64,
    pub(crate) shared_from: Uuid,
    pub(crate) vendor_data: Option<String>,
}

impl Session {
    /// A session with fresh fixtures (seeded or admin-created).
    pub(crate) fn new(
        id: Uuid,
        application_id: Uuid,
        kind: SessionKind,
        status: Status,
        workflow_id: &str,
        now_ms: i64,
    ) -> Session {
        Session {
            id,
            application_id,
            kind,
            status,
            checks: fixtures::checks(kind, status, id),
            created_at_ms: now_ms,
            seq: 0,
            workflow_id: workflow_id.to_owned(),
            import: None,
        }
    }

    /// The status as Didit spells it for this session's kind.
    pub(crate) fn status_label(&self) -> &'static str {
        self.status.label(self.kind)
    }

    pub(crate) fn vendor_data(&self) -> Option<&str> {
        self.import.as_ref().and_then(|r| r.vendor_data.as_deref())
    }

    /// The short row `GET /v3/sessions/` lists.
    pub(crate) fn row(&self) -> SessionRow<'_> {
        SessionRow {
            session_id: self.id,
            session_number: self.import.as_ref().map(|r| r.session_number),
            session_kind: self.kind,
            status: self.status_label(),
            vendor_data: self.vendor_data(),
            workflow_id: &self.workflow_id,
            created_at: rfc3339(self.created_at_ms),
        }
    }

    /// The decision body, as the import answers it: the head fields, then
    /// the check arrays spliced in from their pre-serialized form.
    pub(crate) fn render(&self) -> String {
        let record = self.import.as_ref();
        let head = SessionHead {
            session_id: self.id,
            session_number: record.map(|r| r.session_number),
            session_kind: self.kind,
            status: self.status_label(),
            shared_from_session: record.map(|r| r.shared_from),
            vendor_data: self.vendor_data(),
            workflow_id: &self.workflow_id,
            created_at: rfc3339(self.created_at_ms),
        };
        // A struct of strings, uuids and integers always serializes.
        let head = serde_json::to_string(&head).unwrap_or_else(|_| String::from("{}"));
        splice(&head, &self.checks)
    }
}

/// One result of `GET /v3/sessions/`.
#[derive(Debug, Serialize)]
pub(crate) struct SessionRow<'a> {
    session_id: Uuid,
    session_number: Option<u64>,
    session_kind: SessionKind,
    status: &'static str,
    vendor_data: Option<&'a str>,
    workflow_id: &'a str,
    created_at: String,
}

/// The fields of a decision body before its check arrays.
#[derive(Serialize)]
struct SessionHead<'a> {
    session_id: Uuid,
    session_number: Option<u64>,
    session_kind: SessionKind,
    status: &'static str,
    shared_from_session: Option<Uuid>,
    vendor_data: Option<&'a str>,
    workflow_id: &'a str,
    created_at: String,
}

/// Joins two serialized JSON objects into one (`{a},{b}` -> `{a,b}`).
fn splice(head: &str, tail: &str) -> String {
    match (head.strip_suffix('}'), tail.strip_prefix('{')) {
        (Some(h), Some(t)) if h != "{" && t != "}" => {
            let mut out = String::with_capacity(head.len() + tail.len());
            out.push_str(h);
            out.push(',');
            out.push_str(t);
            out
        }
        (Some("{"), _) => tail.to_owned(),
        _ => head.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_joins_objects() {
        assert_eq!(splice(r#"{"a":1}"#, r#"{"b":[2]}"#), r#"{"a":1,"b":[2]}"#);
        assert_eq!(splice(r#"{"a":1}"#, "{}"), r#"{"a":1}"#);
        assert_eq!(splice("{}", r#"{"b":2}"#), r#"{"b":2}"#);
        assert_eq!(splice(r#"{"a":1}"#, ""), r#"{"a":1}"#);
    }

    #[test]
    fn render_and_row_agree_on_the_head() {
        let session = Session::new(
            Uuid::from_u128(7),
            Uuid::from_u128(1),
            SessionKind::Business,
            Status::Approved,
            "wf_b",
            0,
        );
        let full: serde_json::Value = serde_json::from_str(&session.render()).unwrap_or_default();
        let row = serde_json::to_value(session.row()).unwrap_or_default();
        for field in [
            "session_id",
            "session_kind",
            "status",
            "workflow_id",
            "created_at",
        ] {
            assert_eq!(full[field], row[field], "{field}");
        }
        assert_eq!(full["status"], "APPROVED");
        assert_eq!(full["shared_from_session"], serde_json::Value::Null);
        assert!(full["registry_checks"].is_array());
        assert!(row.get("registry_checks").is_none());
    }
}
