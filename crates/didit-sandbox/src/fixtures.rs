//! Realistic, obviously synthetic check arrays for seeded and created
//! sessions: the nine KYC arrays and the five KYB arrays, with nested
//! objects, arrays, floats, integers, nulls, booleans and non-ASCII text
//! so a gateway's lossless carrying gets exercised. Deterministic per
//! session id; serialized once, when the session is created.

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{SessionKind, Status};

/// The check arrays of a session as one serialized JSON object
/// (`{"id_verifications":[...],...}`).
pub(crate) fn checks(kind: SessionKind, status: Status, session_id: Uuid) -> Arc<str> {
    let seed = Seed::new(session_id);
    let value = match kind {
        SessionKind::User => kyc(&seed, status, SessionKind::User),
        SessionKind::Business => kyb(&seed, status),
    };
    Arc::from(value.to_string())
}

/// Deterministic choices drawn from a session id.
struct Seed {
    id: Uuid,
    bytes: [u8; 32],
}

impl Seed {
    fn new(id: Uuid) -> Seed {
        Seed {
            id,
            bytes: Sha256::digest(id.as_bytes()).into(),
        }
    }

    /// A derived seed, for the key people of a KYB session.
    fn child(&self, n: u8) -> Seed {
        let mut bytes = *self.id.as_bytes();
        bytes[0] ^= n.wrapping_add(1);
        Seed::new(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    fn byte(&self, i: usize) -> u8 {
        self.bytes[i % self.bytes.len()]
    }

    fn pick<'a, T>(&self, i: usize, items: &'a [T]) -> &'a T {
        &items[usize::from(self.byte(i)) % items.len()]
    }

    /// A score in `lo..lo+span` with two decimals.
    fn score(&self, i: usize, lo: f64, span: f64) -> f64 {
        let raw = lo + span * f64::from(self.byte(i)) / 255.0;
        (raw * 100.0).round() / 100.0
    }

    fn digits(&self, i: usize, n: usize) -> String {
        (0..n)
            .map(|k| char::from(b'0' + self.byte(i + k) % 10))
            .collect()
    }

    fn media(&self, name: &str) -> String {
        format!("https://sandbox.invalid/media/{}/{name}", self.id)
    }
}

struct Person {
    first: &'static str,
    last: &'static str,
    gender: &'static str,
    nationality: &'static str,
    country: &'static str,
    country_code: &'static str,
    city: &'static str,
    lat: f64,
    lon: f64,
}

const PEOPLE: [Person; 6] = [
    Person {
        first: "Jane",
        last: "Sample",
        gender: "F",
        nationality: "ESP",
        country: "Spain",
        country_code: "ES",
        city: "Madrid",
        lat: 40.4168,
        lon: -3.7038,
    },
    Person {
        first: "John",
        last: "Example",
        gender: "M",
        nationality: "GBR",
        country: "United Kingdom",
        country_code: "GB",
        city: "London",
        lat: 51.5072,
        lon: -0.1276,
    },
    Person {
        first: "María José",
        last: "Ejemplo",
        gender: "F",
        nationality: "MEX",
        country: "Mexico",
        country_code: "MX",
        city: "Ciudad de México",
        lat: 19.4326,
        lon: -99.1332,
    },
    Person {
        first: "Kenji",
        last: "Testcase",
        gender: "M",
        nationality: "JPN",
        country: "Japan",
        country_code: "JP",
        city: "Tōkyō",
        lat: 35.6762,
        lon: 139.6503,
    },
    Person {
        first: "Zoë",
        last: "Fixture",
        gender: "F",
        nationality: "FRA",
        country: "France",
        country_code: "FR",
        city: "Paris",
        lat: 48.8566,
        lon: 2.3522,
    },
    Person {
        first: "Alex",
        last: "Placeholder",
        gender: "X",
        nationality: "DEU",
        country: "Germany",
        country_code: "DE",
        city: "Berlin",
        lat: 52.52,
        lon: 13.405,
    },
];

/// Which part of a verification a check stands for; decides how the
/// session's status shows in it.
#[derive(Clone, Copy)]
enum Role {
    Document,
    Biometric,
    Screening,
    Other,
}

/// The status a check shows, given the session's status: Declined sessions
/// fail their biometrics, In Review ones have an AML screening in review.
fn verdict(session: Status, role: Role, kind: SessionKind) -> &'static str {
    let status = match (session, role) {
        (Status::Approved, _) => Status::Approved,
        (Status::Declined, Role::Biometric) => Status::Declined,
        (Status::InReview, Role::Screening) => Status::InReview,
        (
            Status::Declined | Status::InReview,
            Role::Document | Role::Biometric | Role::Screening | Role::Other,
        ) => Status::Approved,
        _ => Status::NotFinished,
    };
    status.label(kind)
}

fn kyc(seed: &Seed, status: Status, kind: SessionKind) -> Value {
    let p = seed.pick(0, &PEOPLE);
    let full_name = format!("{} {}", p.first, p.last);
    let birth_year = 1960 + u32::from(seed.byte(1) % 40);
    let dob = format!(
        "{birth_year}-{:02}-{:02}",
        1 + seed.byte(2) % 12,
        1 + seed.byte(3) % 28
    );
    let doc_number = format!("SBX{}", seed.digits(4, 6));
    let doc_status = verdict(status, Role::Document, kind);
    let bio_status = verdict(status, Role::Biometric, kind);
    let aml_status = verdict(status, Role::Screening, kind);
    let other_status = verdict(status, Role::Other, kind);
    let declined = status == Status::Declined;
    let liveness_score = if declined {
        seed.score(5, 8.0, 30.0)
    } else {
        seed.score(5, 88.0, 11.5)
    };
    let face_score = if declined {
        seed.score(6, 5.0, 35.0)
    } else {
        seed.score(6, 82.0, 17.0)
    };
    let ip = format!("192.0.2.{}", 1 + seed.byte(7) % 250);
    let email = format!(
        "{}.{}@example.com",
        p.first.to_lowercase().replace(' ', "-"),
        p.last.to_lowercase()
    );
    json!({
        "id_verifications": [{
            "status": doc_status,
            "document_type": seed.pick(8, &["Identity Card", "Passport", "Driver's License"]),
            "document_number": doc_number,
            "personal_number": null,
            "issuing_state": p.nationality,
            "issuing_state_name": p.country,
            "first_name": p.first,
            "last_name": p.last,
            "full_name": full_name,
            "gender": p.gender,
            "nationality": p.nationality,
            "date_of_birth": dob,
            "age": 2025 - birth_year,
            "date_of_issue": "2021-04-12",
            "expiration_date": "2031-04-11",
            "place_of_birth": p.city,
            "address": format!("{} Example Street, {}", 1 + seed.byte(9) % 120, p.city),
            "parsed_address": {
                "street_1": format!("{} Example Street", 1 + seed.byte(9) % 120),
                "street_2": null,
                "city": p.city,
                "postal_code": seed.digits(10, 5),
                "country": p.country_code,
                "document_location": {"latitude": p.lat, "longitude": p.lon},
            },
            "portrait_image": seed.media("portrait.jpg"),
            "front_image": seed.media("front.jpg"),
            "back_image": seed.media("back.jpg"),
            "front_video": null,
            "mrz": {
                "present": true,
                "valid_checksums": !declined,
                "lines": [format!("I<{}{doc_number}<<<<<<<<<<<<<<<", p.nationality), format!("{}<<{}", p.last.to_uppercase(), p.first.to_uppercase())],
            },
            "extra_fields": {"dl_categories": [], "blood_group": null},
            "warnings": [],
        }],
        "liveness_checks": [{
            "status": bio_status,
            "method": seed.pick(11, &["PASSIVE", "ACTIVE_3D", "FLASHING"]),
            "score": liveness_score,
            "age_estimation": seed.score(12, 25.0, 40.0),
            "reference_image": seed.media("liveness_reference.jpg"),
            "video_url": null,
            "warnings": if declined {
                json!([{"risk": "POSSIBLE_SPOOF", "short_description": "Possible presentation attack", "log_type": "warning"}])
            } else {
                json!([])
            },
        }],
        "face_matches": [{
            "status": bio_status,
            "score": face_score,
            "similarity": (face_score / 100.0 * 10_000.0).round() / 10_000.0,
            "source_image": seed.media("portrait.jpg"),
            "target_image": seed.media("liveness_reference.jpg"),
            "warnings": [],
        }],
        "aml_screenings": [aml_person(seed, &full_name, &dob, p, aml_status)],
        "database_validations": [{
            "status": other_status,
            "issuing_state": p.nationality,
            "validation_type": "one_by_one",
            "match_type": if declined { "partial" } else { "full" },
            "screened_data": {"full_name": full_name, "date_of_birth": dob, "document_number": doc_number},
            "validations": {"full_name": "full_match", "date_of_birth": "full_match", "identification_number": if declined { "no_match" } else { "full_match" }},
        }],
        "proof_of_address": [{
            "status": other_status,
            "document_type": "Utility Bill",
            "issuer": "Sample Energy Co.",
            "issue_date": "2025-01-15",
            "name_on_document": full_name,
            "address": format!("{} Example Street, {}", 1 + seed.byte(9) % 120, p.city),
            "poa_address_match": true,
            "name_match": true,
            "document_file": seed.media("proof_of_address.pdf"),
            "extra_fields": null,
            "warnings": [],
        }],
        "location_checks": [{
            "status": other_status,
            "ip_address": ip,
            "ip_country": p.country,
            "ip_country_code": p.country_code,
            "ip_city": p.city,
            "is_vpn_or_tor": false,
            "is_data_center": seed.byte(13).is_multiple_of(7),
            "latitude": p.lat,
            "longitude": p.lon,
            "distance_from_document_km": seed.score(14, 0.5, 20.0),
            "device": {"brand": "Sample", "model": "Phone 1", "os_family": "Android", "browser_family": "Chrome", "platform": "mobile"},
            "warnings": [],
        }],
        "phone_verifications": [{
            "status": other_status,
            "phone_number": format!("+1555555{}", seed.digits(15, 4)),
            "country_code": "US",
            "carrier": {"name": "Sample Mobile", "type": "mobile"},
            "is_disposable": false,
            "is_virtual": false,
            "verification_attempts": 1 + seed.byte(16) % 3,
            "verified_at": "2025-01-15T10:02:11Z",
        }],
        "email_verifications": [{
            "status": other_status,
            "email": email,
            "is_breached": seed.byte(17).is_multiple_of(4),
            "breaches": [],
            "is_disposable": false,
            "is_undeliverable": false,
            "verification_attempts": 1,
            "verified_at": "2025-01-15T10:03:40Z",
        }],
    })
}

fn aml_person(seed: &Seed, full_name: &str, dob: &str, p: &Person, status: &str) -> Value {
    json!({
        "status": status,
        "entity_type": "person",
        "total_hits": 1,
        "score": seed.score(18, 5.0, 40.0),
        "screened_data": {"full_name": full_name, "date_of_birth": dob, "nationality": p.nationality, "document_number": null},
        "hits": [{
            "id": format!("sbx-hit-{}", seed.digits(19, 8)),
            "caption": format!("{} {} (synthetic namesake)", p.first, p.last),
            "match": false,
            "score": seed.score(20, 0.2, 0.5),
            "datasets": ["sandbox-sanctions", "sandbox-pep"],
            "properties": {"name": [full_name], "birthDate": ["1950-01-01"], "country": [p.country_code.to_lowercase()]},
            "pep_matches": [],
            "sanction_matches": [{"list": "SANDBOX-CONSOLIDATED", "listed_on": "2019-01-01", "reason": null}],
            "adverse_media_matches": [],
            "review_status": if status == "In Review" || status == "IN_REVIEW" { Value::Null } else { json!("False Positive") },
        }],
        "warnings": [],
    })
}

struct Company {
    name: &'static str,
    jurisdiction: &'static str,
    company_type: &'static str,
    currency: &'static str,
}

const COMPANIES: [Company; 3] = [
    Company {
        name: "Sample Widgets Ltd",
        jurisdiction: "GB",
        company_type: "Private Limited Company",
        currency: "GBP",
    },
    Company {
        name: "Example Holdings S.L.",
        jurisdiction: "ES",
        company_type: "Sociedad Limitada",
        currency: "EUR",
    },
    Company {
        name: "Placeholder Trading GmbH",
        jurisdiction: "DE",
        company_type: "Gesellschaft mit beschränkter Haftung",
        currency: "EUR",
    },
];

fn kyb(seed: &Seed, status: Status) -> Value {
    let kind = SessionKind::Business;
    let c = seed.pick(0, &COMPANIES);
    let reg = format!("SBX-{}", seed.digits(1, 7));
    let doc_status = verdict(status, Role::Document, kind);
    let aml_status = verdict(status, Role::Screening, kind);
    let other_status = verdict(status, Role::Other, kind);
    let people: Vec<Value> = [
        ("Director", false, Value::Null),
        ("Ultimate Beneficial Owner", true, json!(62.5)),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (role, is_ubo, ownership))| {
        let person_seed = seed.child(u8::try_from(i).unwrap_or(0));
        let mut nested = kyc(&person_seed, status, SessionKind::User);
        let name = nested["id_verifications"][0]["full_name"].clone();
        if let Some(map) = nested.as_object_mut() {
            // A key person's KYC carries the identity subset of the arrays.
            map.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "id_verifications" | "liveness_checks" | "face_matches" | "aml_screenings"
                )
            });
            map.insert(
                "status".to_owned(),
                json!(verdict(status, Role::Biometric, SessionKind::User)),
            );
            map.insert("session_id".to_owned(), json!(person_seed.id));
        }
        json!({
            "status": verdict(status, Role::Biometric, kind),
            "role": role,
            "full_name": name,
            "is_ubo": is_ubo,
            "ownership_percentage": ownership,
            "appointed_on": "2018-06-01",
            "kyc": nested,
        })
    })
    .collect();
    json!({
        "registry_checks": [{
            "status": doc_status,
            "company_name": c.name,
            "registration_number": reg,
            "jurisdiction": c.jurisdiction,
            "company_type": c.company_type,
            "company_status": "Active",
            "incorporation_date": format!("20{:02}-03-14", 5 + seed.byte(2) % 15),
            "registered_address": {"street_1": "10 Sample Square", "city": "Sampletown", "postal_code": seed.digits(3, 5), "country": c.jurisdiction},
            "industry_codes": [{"scheme": "NACE", "code": "62.01", "description": "Computer programming activities"}],
            "officers_count": 2,
            "source": "Sandbox Companies Registry",
            "retrieved_at": "2025-01-15T09:58:00Z",
            "raw_registry_data": {
                "share_capital": {"currency": c.currency, "amount": 1000.5, "shares": 1000},
                "filing_history": [
                    {"date": "2024-03-31", "type": "AA", "description": "Annual accounts", "pages": 12},
                    {"date": "2023-06-30", "type": "CS01", "description": "Confirmation statement", "pages": null},
                ],
                "dissolved": false,
            },
        }],
        "key_people_checks": people,
        "document_verifications": [
            {
                "status": doc_status,
                "document_type": "Certificate of Incorporation",
                "file_url": seed.media("certificate_of_incorporation.pdf"),
                "issue_date": "2018-06-01",
                "extracted_data": {"company_name": c.name, "registration_number": reg, "matches_registry": true},
                "warnings": [],
            },
            {
                "status": other_status,
                "document_type": "Articles of Association",
                "file_url": seed.media("articles.pdf"),
                "issue_date": null,
                "extracted_data": {"pages": 14, "signed": true, "signatories": ["Jane Sample", "John Example"]},
                "warnings": [],
            },
        ],
        "aml_screenings": [{
            "status": aml_status,
            "entity_type": "company",
            "total_hits": 0,
            "score": seed.score(4, 0.0, 10.0),
            "screened_data": {"company_name": c.name, "registration_number": reg, "jurisdiction": c.jurisdiction},
            "hits": [],
            "warnings": [],
        }],
        "questionnaires": [{
            "status": other_status,
            "questionnaire_id": "q_sandbox_kyb_activity",
            "title": "Business activity",
            "submitted_at": "2025-01-15T10:05:00Z",
            "answers": [
                {"question": "Describe your main business activity", "type": "text", "answer": "Synthetic widgets for integration tests"},
                {"question": "Expected monthly volume (EUR)", "type": "number", "answer": 25_000 + u32::from(seed.byte(5)) * 100},
                {"question": "Do you handle crypto assets?", "type": "boolean", "answer": false},
                {"question": "Countries of operation", "type": "multi_choice", "answer": [c.jurisdiction, "PT"]},
                {"question": "Additional notes", "type": "text", "answer": null},
            ],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The KYC check arrays, in Didit's order.
    const KYC_ARRAYS: [&str; 9] = [
        "id_verifications",
        "liveness_checks",
        "face_matches",
        "aml_screenings",
        "database_validations",
        "proof_of_address",
        "location_checks",
        "phone_verifications",
        "email_verifications",
    ];

    /// The KYB check arrays, in Didit's order.
    const KYB_ARRAYS: [&str; 5] = [
        "registry_checks",
        "key_people_checks",
        "document_verifications",
        "aml_screenings",
        "questionnaires",
    ];

    fn parse(kind: SessionKind, status: Status, id: u128) -> serde_json::Map<String, Value> {
        let text = checks(kind, status, Uuid::from_u128(id));
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn kyc_has_exactly_the_nine_arrays_with_content() {
        let map = parse(SessionKind::User, Status::Approved, 7);
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        let mut want = KYC_ARRAYS.to_vec();
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        for name in KYC_ARRAYS {
            assert!(
                map[name].as_array().is_some_and(|a| !a.is_empty()),
                "{name}"
            );
            assert_eq!(map[name][0]["status"], "Approved", "{name}");
        }
        let text = checks(SessionKind::User, Status::Approved, Uuid::from_u128(7));
        assert!(text.len() > 2000, "a few KB, got {}", text.len());
        assert!(text.contains("https://sandbox.invalid/"));
    }

    #[test]
    fn kyb_has_exactly_the_five_arrays_and_nested_kyc() {
        let map = parse(SessionKind::Business, Status::InReview, 9);
        let mut got: Vec<&str> = map.keys().map(String::as_str).collect();
        got.sort_unstable();
        let mut want = KYB_ARRAYS.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(map["aml_screenings"][0]["status"], "IN_REVIEW");
        let person = &map["key_people_checks"][1]["kyc"];
        assert!(person["id_verifications"][0]["full_name"].is_string());
        assert!(person["liveness_checks"][0]["score"].is_f64());
        assert!(person.get("email_verifications").is_none());
    }

    #[test]
    fn declined_shows_in_biometrics_and_fixtures_are_deterministic() {
        let map = parse(SessionKind::User, Status::Declined, 3);
        assert_eq!(map["face_matches"][0]["status"], "Declined");
        assert_eq!(map["id_verifications"][0]["status"], "Approved");
        let a = checks(SessionKind::User, Status::Declined, Uuid::from_u128(3));
        let b = checks(SessionKind::User, Status::Declined, Uuid::from_u128(3));
        assert_eq!(a, b);
        assert_ne!(
            a,
            checks(SessionKind::User, Status::Declined, Uuid::from_u128(4))
        );
        let unfinished = parse(SessionKind::Business, Status::AwaitingUser, 3);
        assert_eq!(unfinished["registry_checks"][0]["status"], "NOT_FINISHED");
    }
}
