//! Unit tests of the store: the one-time import ledger and key rotation.

use super::*;
use crate::demo::demo_applications;

fn order(original: Uuid, importer: Uuid) -> ImportOrder<'static> {
    ImportOrder {
        jti: Uuid::from_u128(42),
        importer,
        original,
        workflow_ok: true,
        trust_review: false,
        vendor_data: Some("user-1"),
        workflow_id: "wf",
        now_ms: 0,
    }
}

#[test]
fn import_is_one_time_per_pair_and_checks_in_order() {
    let demo = demo_applications();
    let store = Store::new(&demo, 0);
    let original = demo[0].sessions[2].session_id; // Approved KYC
    let y = demo[1].application_id;
    let first = store.import(&order(original, y));
    let copy = first.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(copy.status, Status::InReview);
    let source = store
        .session(original)
        .unwrap_or_else(|| panic!("original missing"));
    assert!(Arc::ptr_eq(&copy.checks, &source.checks));
    assert_eq!(copy.import.as_ref().map(|i| i.session_number), Some(1));
    assert_eq!(
        store.import(&order(original, y)).err(),
        Some(ImportRefusal::AlreadyImported)
    );

    let mut other = order(original, y);
    other.jti = Uuid::from_u128(43);
    other.workflow_ok = false;
    assert_eq!(
        store.import(&other).err(),
        Some(ImportRefusal::WorkflowMissing)
    );
    assert!(store.delete_session(original));
    assert_eq!(
        store.import(&other).err(),
        Some(ImportRefusal::OriginalGone)
    );
    assert_eq!(store.counts().users, 1);
}

#[test]
fn keys_add_and_remove() {
    let demo = demo_applications();
    let store = Store::new(&demo, 0);
    assert_eq!(
        store
            .grant(b"sandbox-service-x-readonly-key")
            .map(|g| g.write_sessions),
        Some(false)
    );
    let grant = Grant {
        application_id: demo[0].application_id,
        write_sessions: true,
    };
    assert_eq!(store.add_key("new".into(), grant), Ok(()));
    assert_eq!(store.add_key("new".into(), grant), Err(KeyError::Exists));
    let stray = Grant {
        application_id: Uuid::nil(),
        write_sessions: true,
    };
    assert_eq!(
        store.add_key("other".into(), stray),
        Err(KeyError::UnknownApplication)
    );
    assert_eq!(store.grant(b"new"), Some(grant));
    assert!(store.remove_key("new"));
    assert!(!store.remove_key("new"));
    assert_eq!(store.grant(b"new"), None);
}
