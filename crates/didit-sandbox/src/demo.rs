//! The fixed demo data every sandbox starts with: three applications
//! (`service-x`, `service-y` and `service-z`, unrelated to each other),
//! their API keys and workflows, and one seeded session per status per kind
//! for each, with ids derived deterministically so docs, demos and tests
//! can name them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{SessionKind, Status};

/// A demo application as `GET /_sandbox/applications` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DemoApplication {
    /// Human name, e.g. `service-x`.
    pub name: String,
    /// The Didit application uuid (`for_application_id` targets it).
    pub application_id: Uuid,
    /// A key holding `write:sessions`.
    pub api_key: String,
    /// A key without `write:sessions` (every write answers 403).
    pub read_only_api_key: String,
    /// The application's KYC and KYB workflow ids.
    pub workflows: Workflows,
    /// The sessions seeded at start, one per status per kind.
    pub sessions: Vec<SeededSession>,
}

/// One KYC and one KYB workflow id of an application.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Workflows {
    /// Imports of `user` (KYC) tokens must name this workflow.
    pub user: String,
    /// Imports of `business` (KYB) tokens must name this workflow.
    pub business: String,
}

/// A session that exists from start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeededSession {
    /// See [`seeded_session_id`] for how it is derived.
    pub session_id: Uuid,
    /// `user` or `business`.
    pub session_kind: String,
    /// The status in the kind's spelling (`Approved`, `APPROVED`, ...).
    pub status: String,
}

/// The demo applications, always the same.
pub fn demo_applications() -> Vec<DemoApplication> {
    [
        ("service-x", 0x1111_1111_1111_4111_8111_1111_1111_1111_u128),
        ("service-y", 0x2222_2222_2222_4222_8222_2222_2222_2222_u128),
        ("service-z", 0x3333_3333_3333_4333_8333_3333_3333_3333_u128),
    ]
    .into_iter()
    .map(|(name, id)| {
        let short = name.replace('-', "_");
        DemoApplication {
            name: name.to_owned(),
            application_id: Uuid::from_u128(id),
            api_key: format!("sandbox-{name}-key"),
            read_only_api_key: format!("sandbox-{name}-readonly-key"),
            workflows: Workflows {
                user: format!("wf_{short}_kyc"),
                business: format!("wf_{short}_kyb"),
            },
            sessions: seeded_sessions(name),
        }
    })
    .collect()
}

fn seeded_sessions(app_name: &str) -> Vec<SeededSession> {
    SessionKind::ALL
        .into_iter()
        .flat_map(|kind| {
            Status::ALL.into_iter().map(move |status| {
                let label = status.label(kind);
                SeededSession {
                    session_id: seeded_session_id(app_name, kind.as_str(), label),
                    session_kind: kind.as_str().to_owned(),
                    status: label.to_owned(),
                }
            })
        })
        .collect()
}

/// The id of a seeded session: the first 16 bytes of
/// `sha256("didit-sandbox:{app}:{kind}:{status}")` with the uuid version
/// set to 4 and the variant to RFC 4122.
pub(crate) fn seeded_session_id(app_name: &str, kind: &str, status: &str) -> Uuid {
    let digest = Sha256::digest(format!("didit-sandbox:{app_name}:{kind}:{status}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn demo_data_is_the_documented_fixed_data() {
        let apps = demo_applications();
        assert_eq!(apps.len(), 3);
        let x = &apps[0];
        assert_eq!(x.name, "service-x");
        assert_eq!(
            x.application_id.to_string(),
            "11111111-1111-4111-8111-111111111111"
        );
        assert_eq!(x.api_key, "sandbox-service-x-key");
        assert_eq!(x.read_only_api_key, "sandbox-service-x-readonly-key");
        assert_eq!(x.workflows.user, "wf_service_x_kyc");
        assert_eq!(x.workflows.business, "wf_service_x_kyb");
        let y = &apps[1];
        assert_eq!(
            y.application_id.to_string(),
            "22222222-2222-4222-8222-222222222222"
        );
        assert_eq!(y.api_key, "sandbox-service-y-key");
        assert_eq!(y.read_only_api_key, "sandbox-service-y-readonly-key");
        assert_eq!(y.workflows.business, "wf_service_y_kyb");
        let z = &apps[2];
        assert_eq!(z.name, "service-z");
        assert_eq!(
            z.application_id.to_string(),
            "33333333-3333-4333-8333-333333333333"
        );
        assert_eq!(z.api_key, "sandbox-service-z-key");
        assert_eq!(z.read_only_api_key, "sandbox-service-z-readonly-key");
        assert_eq!(z.workflows.user, "wf_service_z_kyc");
        assert_eq!(z.workflows.business, "wf_service_z_kyb");
    }

    #[test]
    fn seeded_ids_are_v4_shaped_unique_and_stable() {
        let apps = demo_applications();
        let ids: HashSet<Uuid> = apps
            .iter()
            .flat_map(|a| a.sessions.iter().map(|s| s.session_id))
            .collect();
        assert_eq!(ids.len(), 66);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
        assert_eq!(
            demo_applications()[1].sessions[13].session_id,
            apps[1].sessions[13].session_id
        );
        assert_eq!(apps[0].sessions[2].status, "Approved");
        assert_eq!(apps[0].sessions[13].status, "APPROVED");
        assert_eq!(apps[0].sessions[13].session_kind, "business");
    }
}
