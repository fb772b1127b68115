//! Behaviour both backends share, written once. Each test gets two stores
//! `a` and `b` standing for two replicas: two handles on one memory store,
//! or two Redis stores (own connections, own listeners) on one server.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use didit_share_gateway::state::{
    Begin, Budget, Charge, ImportId, InDoubt, LeaseOwner, Previous, StateStore, WaitOutcome,
};
use tokio::time::Instant;

use super::eventually;

const LONG: Duration = Duration::from_secs(60);

fn id(n: u8) -> ImportId {
    ImportId::new("brand-a", [n; 32])
}

fn mark() -> InDoubt {
    InDoubt {
        source_session_id: "11111111-1111-4111-8111-111111111111".into(),
        workflow_id: "wf-1".into(),
        vendor_data: "customer-42".into(),
        sent_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

async fn charges(
    stores: [&StateStore; 2],
    n: usize,
    budget: Budget,
    max_wait: Duration,
) -> Vec<Charge> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            stores[i % 2]
                .charge("brand-a", budget, max_wait)
                .await
                .unwrap(),
        );
    }
    out
}

pub async fn a_record_is_seen_by_every_replica_until_it_expires(a: StateStore, b: StateStore) {
    assert_eq!(b.get_record(&id(1)).await.unwrap(), None);
    a.put_record(&id(1), Bytes::from_static(b"answer one"), LONG)
        .await
        .unwrap();
    assert_eq!(
        b.get_record(&id(1)).await.unwrap().as_deref(),
        Some(&b"answer one"[..])
    );
    let other_tenant = ImportId::new("brand-b", [1; 32]);
    assert_eq!(b.get_record(&other_tenant).await.unwrap(), None);
    a.put_record(
        &id(2),
        Bytes::from_static(b"short-lived"),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "the record expires", || async {
        b.get_record(&id(2)).await.unwrap().is_none()
    })
    .await;
}

pub async fn a_lease_is_exclusive_across_replicas(a: StateStore, b: StateStore) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    assert!(a.try_lease(&id(1), &oa, LONG).await.unwrap());
    assert!(!b.try_lease(&id(1), &ob, LONG).await.unwrap());
    assert!(!a.try_lease(&id(1), &ob, LONG).await.unwrap());
    assert!(
        !a.try_lease(&id(1), &oa, LONG).await.unwrap(),
        "not re-entrant"
    );
    assert!(
        b.try_lease(&id(2), &ob, LONG).await.unwrap(),
        "another import is free"
    );
}

pub async fn only_the_owner_extends_or_releases_a_lease(a: StateStore, b: StateStore) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    assert!(a.try_lease(&id(1), &oa, LONG).await.unwrap());
    assert!(!b.extend_lease(&id(1), &ob, LONG).await.unwrap());
    assert!(!b.release_lease(&id(1), &ob).await.unwrap());
    assert!(!b.try_lease(&id(1), &ob, LONG).await.unwrap(), "still a's");
    assert!(a.extend_lease(&id(1), &oa, LONG).await.unwrap());
    assert!(a.release_lease(&id(1), &oa).await.unwrap());
    assert!(
        !a.release_lease(&id(1), &oa).await.unwrap(),
        "already released"
    );
    assert!(b.try_lease(&id(1), &ob, LONG).await.unwrap());
}

pub async fn an_extended_lease_outlives_its_first_ttl(a: StateStore, b: StateStore) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    assert!(
        a.try_lease(&id(1), &oa, Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert!(a.extend_lease(&id(1), &oa, LONG).await.unwrap());
    // Past the first TTL: only the extension can keep it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!b.try_lease(&id(1), &ob, LONG).await.unwrap());
}

pub async fn an_expired_lease_lets_the_next_caller_in(a: StateStore, b: StateStore) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    assert!(
        a.try_lease(&id(1), &oa, Duration::from_millis(100))
            .await
            .unwrap()
    );
    eventually(
        Duration::from_secs(5),
        "b takes the expired lease",
        || async { b.try_lease(&id(1), &ob, LONG).await.unwrap() },
    )
    .await;
    assert!(!a.extend_lease(&id(1), &oa, LONG).await.unwrap());
    assert!(
        !a.release_lease(&id(1), &oa).await.unwrap(),
        "b's lease is not a's to delete"
    );
    assert!(
        !a.try_lease(&id(1), &oa, LONG).await.unwrap(),
        "b still holds it"
    );
}

pub async fn a_waiter_gets_the_record_the_leader_stores(a: StateStore, b: StateStore) {
    let owner = LeaseOwner::random();
    assert!(a.try_lease(&id(1), &owner, LONG).await.unwrap());
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for_record(&id(1), Instant::now() + LONG).await }
    });
    a.put_record(&id(1), Bytes::from_static(b"the session"), LONG)
        .await
        .unwrap();
    a.release_lease(&id(1), &owner).await.unwrap();
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        WaitOutcome::Record(bytes::Bytes::from_static(b"the session"))
    );
}

pub async fn a_waiter_learns_that_the_leader_gave_up(a: StateStore, b: StateStore) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    assert!(a.try_lease(&id(1), &oa, LONG).await.unwrap());
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for_record(&id(1), Instant::now() + LONG).await }
    });
    assert!(a.release_lease(&id(1), &oa).await.unwrap());
    assert_eq!(waiter.await.unwrap().unwrap(), WaitOutcome::LeaseGone);
    assert!(b.try_lease(&id(1), &ob, LONG).await.unwrap());
}

pub async fn a_waiter_learns_that_the_leader_died(a: StateStore, b: StateStore) {
    let owner = LeaseOwner::random();
    assert!(
        a.try_lease(&id(1), &owner, Duration::from_millis(200))
            .await
            .unwrap()
    );
    let outcome = b
        .wait_for_record(&id(1), Instant::now() + LONG)
        .await
        .unwrap();
    assert_eq!(outcome, WaitOutcome::LeaseGone);
}

pub async fn a_wait_ends_at_its_deadline_while_the_lease_is_held(a: StateStore, b: StateStore) {
    assert!(
        a.try_lease(&id(1), &LeaseOwner::random(), LONG)
            .await
            .unwrap()
    );
    let outcome = b
        .wait_for_record(&id(1), Instant::now() + Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(outcome, WaitOutcome::TimedOut);
    assert_eq!(
        b.wait_for_record(&id(2), Instant::now() + LONG)
            .await
            .unwrap(),
        WaitOutcome::LeaseGone,
        "nobody leads an import nobody started"
    );
}

pub async fn an_in_doubt_mark_is_shared_and_cleared_by_the_answer(a: StateStore, b: StateStore) {
    assert_eq!(b.in_doubt(&id(1)).await.unwrap(), None);
    a.mark_in_doubt(&id(1), &mark(), LONG).await.unwrap();
    assert_eq!(b.in_doubt(&id(1)).await.unwrap(), Some(mark()));
    b.put_record(&id(1), Bytes::from_static(b"answer"), LONG)
        .await
        .unwrap();
    assert_eq!(
        a.in_doubt(&id(1)).await.unwrap(),
        None,
        "storing the answer clears it"
    );
    a.mark_in_doubt(&id(2), &mark(), LONG).await.unwrap();
    b.clear_in_doubt(&id(2)).await.unwrap();
    assert_eq!(a.in_doubt(&id(2)).await.unwrap(), None);
    assert!(!format!("{:?}", mark()).contains("customer-42"));
}

/// Burst 5 at one per minute: exactly 5 of 10 charges pass, from either replica.
pub async fn two_replicas_share_one_budget(a: StateStore, b: StateStore) {
    let budget = Budget::new(1, 5).unwrap();
    let got = charges([&a, &b], 10, budget, Duration::ZERO).await;
    assert_eq!(
        got.iter().filter(|c| **c == Charge::Now).count(),
        5,
        "{got:?}"
    );
    assert!(got[..5].iter().all(|c| *c == Charge::Now), "{got:?}");
    for refused in &got[5..] {
        let Charge::Refused { retry_after } = refused else {
            panic!("{got:?}");
        };
        // The next slot is one interval (60 s) after the first charge.
        assert!(
            *retry_after > Duration::from_secs(50) && *retry_after <= LONG,
            "{got:?}"
        );
    }
    let other = a.charge("brand-b", budget, Duration::ZERO).await.unwrap();
    assert_eq!(other, Charge::Now, "tenants have their own budgets");
}

/// The highest rate a config can hold (u32::MAX a minute, an interval
/// under 1 µs) charges like an unlimited budget, on either backend.
pub async fn the_highest_rate_charges_without_refusing(a: StateStore, b: StateStore) {
    let budget = Budget::new(u32::MAX, 1).unwrap();
    let got = charges([&a, &b], 20, budget, Duration::from_secs(1)).await;
    assert!(
        got.iter()
            .all(|c| matches!(c, Charge::Now | Charge::After(_))),
        "{got:?}"
    );
}

/// 60/min, burst 2, waiting up to 5 s: two now, then reserved slots about
/// 1 s apart, then refusals that reserve nothing.
pub async fn a_charge_waits_for_its_slot_within_max_wait(a: StateStore, b: StateStore) {
    let budget = Budget::new(60, 2).unwrap();
    let got = charges([&a, &b], 9, budget, Duration::from_secs(5)).await;
    assert_eq!(&got[..2], &[Charge::Now, Charge::Now], "{got:?}");
    let mut last = Duration::ZERO;
    for (k, charge) in got[2..7].iter().enumerate() {
        let Charge::After(wait) = charge else {
            panic!("{got:?}");
        };
        let bound = Duration::from_secs(k as u64 + 1);
        assert!(*wait > last && *wait <= bound, "{got:?}");
        last = *wait;
    }
    for charge in &got[7..] {
        let Charge::Refused { retry_after } = charge else {
            panic!("{got:?}");
        };
        assert!(
            *retry_after > Duration::from_secs(5) && *retry_after <= Duration::from_secs(6),
            "a refusal reserves nothing: {got:?}"
        );
    }
}

pub async fn a_pause_holds_the_budget_on_every_replica(a: StateStore, b: StateStore) {
    let budget = Budget::new(60, 5).unwrap();
    a.pause("brand-a", Duration::from_secs(30)).await.unwrap();
    a.pause("brand-a", Duration::from_secs(1)).await.unwrap();
    let in_pause = |c: Charge| match c {
        Charge::Refused { retry_after } | Charge::After(retry_after) => {
            retry_after > Duration::from_secs(25) && retry_after <= Duration::from_secs(30)
        }
        Charge::Now => false,
    };
    let refused = b.charge("brand-a", budget, Duration::ZERO).await.unwrap();
    assert!(
        matches!(refused, Charge::Refused { .. }) && in_pause(refused),
        "{refused:?}"
    );
    let waits = b.charge("brand-a", budget, LONG).await.unwrap();
    assert!(
        matches!(waits, Charge::After(_)) && in_pause(waits),
        "{waits:?}"
    );
    assert_eq!(
        a.charge("brand-b", budget, Duration::ZERO).await.unwrap(),
        Charge::Now,
        "other tenants are not paused"
    );
}

fn older_mark() -> InDoubt {
    InDoubt {
        source_session_id: "22222222-2222-4222-8222-222222222222".into(),
        workflow_id: "wf-0".into(),
        vendor_data: "customer-41".into(),
        sent_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
    }
}

pub async fn begin_import_returns_a_stored_record_and_takes_nothing(a: StateStore, b: StateStore) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    a.put_record(&id(1), Bytes::from_static(b"answer one"), LONG)
        .await
        .unwrap();
    assert_eq!(
        b.begin_import(&id(1), &ob, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Record(bytes::Bytes::from_static(b"answer one"))
    );
    assert_eq!(b.in_doubt(&id(1)).await.unwrap(), None, "no mark written");
    assert!(
        a.try_lease(&id(1), &oa, LONG).await.unwrap(),
        "no lease taken"
    );
    // After an unreadable record, the caller goes on without it.
    a.put_record(&id(2), Bytes::from_static(b"unreadable"), LONG)
        .await
        .unwrap();
    assert_eq!(
        b.begin_import_ignoring_record(&id(2), &ob, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Leading(Previous::Absent)
    );
    assert_eq!(a.in_doubt(&id(2)).await.unwrap(), Some(mark()));
}

pub async fn begin_import_takes_a_free_lease_and_keeps_an_earlier_mark(
    a: StateStore,
    b: StateStore,
) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    // Nothing in doubt: the lease is taken and the new mark stored.
    assert_eq!(
        a.begin_import(&id(1), &oa, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Leading(Previous::Absent)
    );
    assert_eq!(b.in_doubt(&id(1)).await.unwrap(), Some(mark()));
    assert!(!b.try_lease(&id(1), &ob, LONG).await.unwrap(), "a's lease");
    assert!(a.extend_lease(&id(1), &oa, LONG).await.unwrap());
    // An earlier unanswered import: its mark is returned and kept as it was.
    a.mark_in_doubt(&id(2), &older_mark(), LONG).await.unwrap();
    assert_eq!(
        b.begin_import(&id(2), &ob, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Leading(Previous::Mark(older_mark()))
    );
    assert_eq!(a.in_doubt(&id(2)).await.unwrap(), Some(older_mark()));
    assert!(!a.try_lease(&id(2), &oa, LONG).await.unwrap(), "b's lease");
    assert!(b.release_lease(&id(2), &ob).await.unwrap());
}

pub async fn begin_import_while_the_lease_is_held_is_busy(a: StateStore, b: StateStore) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    assert!(a.try_lease(&id(1), &oa, LONG).await.unwrap());
    assert_eq!(
        b.begin_import(&id(1), &ob, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Busy
    );
    assert_eq!(
        b.begin_import(&id(1), &oa, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Busy,
        "not re-entrant"
    );
    assert_eq!(a.in_doubt(&id(1)).await.unwrap(), None, "no mark written");
    assert!(a.release_lease(&id(1), &oa).await.unwrap());
    assert_eq!(
        b.begin_import(&id(1), &ob, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Leading(Previous::Absent)
    );
}

pub async fn finish_import_stores_wakes_clears_and_releases_only_its_own_lease(
    a: StateStore,
    b: StateStore,
) {
    let (oa, ob) = (LeaseOwner::random(), LeaseOwner::random());
    assert_eq!(
        a.begin_import(&id(1), &oa, LONG, &mark(), LONG)
            .await
            .unwrap(),
        Begin::Leading(Previous::Absent)
    );
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for_record(&id(1), Instant::now() + LONG).await }
    });
    assert!(
        a.finish_import(&id(1), Bytes::from_static(b"the session"), LONG, &oa)
            .await
            .unwrap(),
        "released"
    );
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        WaitOutcome::Record(bytes::Bytes::from_static(b"the session"))
    );
    assert_eq!(
        b.get_record(&id(1)).await.unwrap().as_deref(),
        Some(&b"the session"[..])
    );
    assert_eq!(b.in_doubt(&id(1)).await.unwrap(), None, "mark cleared");
    assert!(b.try_lease(&id(1), &ob, LONG).await.unwrap(), "lease free");
    assert!(b.release_lease(&id(1), &ob).await.unwrap());

    // A lease lost to another caller is not released by the finish.
    assert!(b.try_lease(&id(2), &ob, LONG).await.unwrap());
    assert!(
        !a.finish_import(&id(2), Bytes::from_static(b"late"), LONG, &oa)
            .await
            .unwrap(),
        "not a's lease"
    );
    assert_eq!(
        b.get_record(&id(2)).await.unwrap().as_deref(),
        Some(&b"late"[..]),
        "the record is stored all the same"
    );
    assert!(!a.try_lease(&id(2), &oa, LONG).await.unwrap(), "b's lease");
    assert!(b.release_lease(&id(2), &ob).await.unwrap());
}
