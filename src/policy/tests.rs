use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

const SISTER: &str = "22222222-2222-4222-8222-222222222222";
const NEWCOMER: &str = "33333333-3333-4333-8333-333333333333";
const STRANGER: &str = "44444444-4444-4444-8444-444444444444";
const US: &str = "11111111-1111-4111-8111-111111111111";

fn id(raw: &str) -> Uuid {
    Uuid::parse_str(raw).unwrap()
}

fn policy() -> PartnerPolicy {
    PartnerPolicy::new(Some(&[
        Partner {
            application_id: id(SISTER),
            name: "sister".into(),
            agreement: "DSA-1".into(),
            share: true,
            import: true,
            trust_review: true,
            max_ttl_seconds: 3600,
            session_kinds: vec![SessionKind::User, SessionKind::Business],
        },
        Partner {
            application_id: id(NEWCOMER),
            name: "newcomer".into(),
            agreement: "DSA-2".into(),
            share: false,
            import: true,
            trust_review: false,
            max_ttl_seconds: 600,
            session_kinds: vec![SessionKind::User],
        },
    ]))
}

/// An unsigned token with Didit's claims, minted by `from`.
fn token(from: &str, kind: &str) -> String {
    let claims = format!(
        r#"{{"session_id":"{US}","from_application_id":"{from}","for_application_id":"{US}","session_kind":"{kind}","iat":1,"exp":2}}"#
    );
    format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
}

fn sister() -> Option<PartnerRef> {
    Some(PartnerRef {
        name: "sister".into(),
        agreement: "DSA-1".into(),
    })
}

#[test]
fn an_open_policy_allows_everything_without_reading_the_token() {
    let open = PartnerPolicy::new(None);
    let grant = open.check_share(id(STRANGER), 86_400).unwrap();
    assert_eq!(
        grant.check_kind(SessionKind::Business).unwrap().partner,
        None
    );
    assert_eq!(
        open.check_import(id(US), "not a token", true)
            .unwrap()
            .partner,
        None
    );
    assert!(open.partners().is_none());
}

#[test]
fn shares_follow_the_agreement() {
    let policy = policy();
    let grant = policy.check_share(id(SISTER), 3600).unwrap();
    assert_eq!(
        grant.check_kind(SessionKind::Business).unwrap().partner,
        sister()
    );
    assert_eq!(
        policy.check_share(id(SISTER), 3601).unwrap_err(),
        Refusal::TtlAboveMaximum { max: 3600 }
    );
    assert_eq!(
        policy.check_share(id(NEWCOMER), 60).unwrap_err(),
        Refusal::ShareNotAgreed
    );
    assert_eq!(
        policy.check_share(id(STRANGER), 60).unwrap_err(),
        Refusal::PartnerNotListed
    );
}

#[test]
fn a_share_of_a_kind_outside_the_agreement_is_refused_after_the_answer() {
    let mut partners: Vec<Partner> = policy().partners().unwrap().cloned().collect();
    for p in &mut partners {
        p.share = true;
    }
    let policy = PartnerPolicy::new(Some(&partners));
    let grant = policy.check_share(id(NEWCOMER), 600).unwrap();
    assert!(grant.check_kind(SessionKind::User).is_ok());
    assert_eq!(
        grant.check_kind(SessionKind::Business).unwrap_err(),
        Refusal::KindNotCovered {
            kind: SessionKind::Business
        }
    );
}

#[test]
fn imports_follow_the_agreement() {
    let policy = policy();
    let allowed = policy
        .check_import(id(US), &token(SISTER, "business"), true)
        .unwrap();
    assert_eq!(allowed.partner, sister());
    assert!(
        policy
            .check_import(id(US), &token(NEWCOMER, "user"), false)
            .is_ok()
    );
    for (token, trust, why) in [
        (token(NEWCOMER, "user"), true, Refusal::TrustReviewNotAgreed),
        (
            token(NEWCOMER, "business"),
            false,
            Refusal::KindNotCovered {
                kind: SessionKind::Business,
            },
        ),
        (token(STRANGER, "user"), false, Refusal::PartnerNotListed),
        (
            "a.b".to_owned(),
            false,
            Refusal::TokenUnreadable(ClaimsError::NotJwt),
        ),
    ] {
        assert_eq!(policy.check_import(id(US), &token, trust).unwrap_err(), why);
    }
}

#[test]
fn a_token_for_another_application_is_refused_before_any_partner() {
    let claims = format!(
        r#"{{"session_id":"{US}","from_application_id":"{SISTER}","for_application_id":"{STRANGER}","session_kind":"user","iat":1,"exp":2}}"#
    );
    let token = format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims));
    assert_eq!(
        policy().check_import(id(US), &token, false).unwrap_err(),
        Refusal::TokenForAnotherApplication
    );
    assert!(
        PartnerPolicy::Open
            .check_import(id(US), &token, false)
            .is_ok()
    );
}

#[test]
fn import_not_agreed_is_refused() {
    let mut partners: Vec<Partner> = policy().partners().unwrap().cloned().collect();
    for p in &mut partners {
        p.import = false;
    }
    let policy = PartnerPolicy::new(Some(&partners));
    assert_eq!(
        policy
            .check_import(id(US), &token(SISTER, "user"), false)
            .unwrap_err(),
        Refusal::ImportNotAgreed
    );
}

#[test]
fn an_empty_list_allows_nobody() {
    let policy = PartnerPolicy::new(Some(&[]));
    assert_eq!(
        policy.check_share(id(SISTER), 60).unwrap_err(),
        Refusal::PartnerNotListed
    );
    assert_eq!(
        policy
            .check_import(id(US), &token(SISTER, "user"), false)
            .unwrap_err(),
        Refusal::PartnerNotListed
    );
}

#[test]
fn refusals_are_counted_by_tenant_and_reason() {
    let metrics = Metrics::new();
    let _ = Refusal::PartnerNotListed.record(&metrics, "brand-a");
    let _ = Refusal::PartnerNotListed.record(&metrics, "brand-a");
    let text = metrics.encode();
    assert!(
        text.contains(
            "dsg_policy_refusals_total{tenant=\"brand-a\",reason=\"partner_not_listed\"} 2"
        ),
        "{text}"
    );
}

#[test]
fn refusal_messages_never_carry_the_token() {
    let token = "secret-token-value";
    let err = policy().check_import(id(US), token, false).unwrap_err();
    assert!(!err.to_string().contains(token));
}
