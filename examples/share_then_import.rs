//! The README's first call: against `didit-share-gateway --sandbox`, share a
//! finished KYC session of tenant `service-x` with `service-y`'s application,
//! import it as `service-y`, and print what came back; then watch
//! service-y's session events while the sandbox's reviewer approves the
//! imported session, and read the decision.
//!
//! ```text
//! cargo run --example share_then_import -- --gateway http://127.0.0.1:50051 --sandbox http://127.0.0.1:8787
//! ```

use std::error::Error;

use std::time::Duration;

use didit_share_gateway::proto::import_service_client::ImportServiceClient;
use didit_share_gateway::proto::session_service_client::SessionServiceClient;
use didit_share_gateway::proto::share_service_client::ShareServiceClient;
use didit_share_gateway::proto::{
    GetSessionRequest, ImportSharedSessionRequest, SessionKind, SessionStatus, ShareSessionRequest,
    WatchSessionEventsRequest,
};
use serde_json::Value;
use tonic::Request;
use tonic_types::StatusExt as _;

fn arg(name: &str, default: &str) -> String {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.nth(1).unwrap_or_else(|| default.to_owned())
}

fn with_tenant<T>(tenant: &str, message: T) -> Result<Request<T>, Box<dyn Error>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-tenant-id", tenant.parse()?);
    request.set_timeout(std::time::Duration::from_secs(10));
    Ok(request)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    didit_share_gateway::install_crypto_provider();
    let gateway = arg("--gateway", "http://127.0.0.1:50051");
    let sandbox = arg("--sandbox", "http://127.0.0.1:8787");
    let kind = arg("--kind", "user");

    // The sandbox's admin API: which applications exist, and a fresh
    // finished session of service-x to share.
    let http = reqwest::Client::new();
    let apps: Value = http
        .get(format!("{sandbox}/_sandbox/applications"))
        .send()
        .await?
        .json()
        .await?;
    let app = |name: &str| -> Result<Value, Box<dyn Error>> {
        apps.as_array()
            .and_then(|a| a.iter().find(|app| app["name"] == name))
            .cloned()
            .ok_or_else(|| format!("the sandbox has no application {name}").into())
    };
    let (x, y) = (app("service-x")?, app("service-y")?);
    let status = if kind == "business" {
        "APPROVED"
    } else {
        "Approved"
    };
    let created: Value = http
        .post(format!("{sandbox}/_sandbox/sessions"))
        .json(&serde_json::json!({"application_id": x["application_id"], "session_kind": kind, "status": status}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let session_id = created["session_id"]
        .as_str()
        .ok_or("no session_id")?
        .to_owned();
    println!("service-x has a finished {kind} session {session_id} ({status})");

    // 1. service-x shares it with service-y's application.
    let mut share = ShareServiceClient::connect(gateway.clone()).await?;
    let shared = share
        .share_session(with_tenant(
            "service-x",
            ShareSessionRequest {
                session_id: session_id.clone(),
                for_application_id: y["application_id"].as_str().unwrap_or_default().to_owned(),
                ttl_seconds: Some(3600),
            },
        )?)
        .await?
        .into_inner();
    println!(
        "ShareSession   -> token of {} bytes for {}, kind {:?}, expires at {}",
        shared.share_token.len(),
        shared.for_application_id,
        SessionKind::try_from(shared.session_kind).unwrap_or_default(),
        shared.expires_at.map(|t| t.seconds).unwrap_or_default(),
    );

    // 2. service-y imports it into its own workflow, for its own review.
    let mut import = ImportServiceClient::connect(gateway.clone()).await?;
    let request = ImportSharedSessionRequest {
        share_token: shared.share_token.clone(),
        workflow_id: y["workflows"][kind.as_str()]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        vendor_data: "partner-user-42".into(),
        trust_review: false,
    };
    let imported = import
        .import_shared_session(with_tenant("service-y", request.clone())?)
        .await?
        .into_inner();
    println!(
        "ImportSharedSession -> session {} (#{}) in service-y, status {:?} ({:?}), shared from {}",
        imported.session_id,
        imported.session_number,
        SessionStatus::try_from(imported.status).unwrap_or_default(),
        imported.status_raw,
        imported.shared_from_session,
    );
    println!(
        "  checks: {} id verifications, {} liveness, {} face matches, {} AML screenings, {} registry checks, {} key people; raw_json {} bytes",
        imported.id_verifications.len(),
        imported.liveness_checks.len(),
        imported.face_matches.len(),
        imported.aml_screenings.len(),
        imported.registry_checks.len(),
        imported.key_people_checks.len(),
        imported.raw_json.len(),
    );

    // 3. A retry (say, after a timeout) gets the same session back.
    let again = import
        .import_shared_session(with_tenant("service-y", request)?)
        .await?
        .into_inner();
    println!(
        "retry          -> session {} replayed={}",
        again.session_id, again.replayed
    );

    // 4. The token is scoped to service-y: service-x cannot import it.
    let refused = import
        .import_shared_session(with_tenant(
            "service-x",
            ImportSharedSessionRequest {
                share_token: shared.share_token,
                workflow_id: x["workflows"][kind.as_str()]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                vendor_data: String::new(),
                trust_review: false,
            },
        )?)
        .await
        .expect_err("a token for service-y must not import into service-x");
    let reason = refused
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default();
    println!("wrong tenant   -> {:?} {reason}", refused.code());

    // 5. service-y watches its session events; the sandbox's reviewer
    //    approves the imported session; the signed webhook Didit sends
    //    arrives on the stream. Then service-y reads the decision.
    let mut sessions = SessionServiceClient::connect(gateway).await?;
    let mut watch = with_tenant(
        "service-y",
        WatchSessionEventsRequest {
            after_event_id: String::new(),
            webhook_types: vec!["status.updated".into()],
        },
    )?;
    watch.set_timeout(Duration::from_secs(30));
    let mut events = sessions.watch_session_events(watch).await?.into_inner();
    let decided = if kind == "business" {
        "APPROVED"
    } else {
        "Approved"
    };
    http.patch(format!(
        "{sandbox}/_sandbox/sessions/{}",
        imported.session_id
    ))
    .json(&serde_json::json!({ "status": decided }))
    .send()
    .await?
    .error_for_status()?;
    let event = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .map_err(|_| "no session event within 10 s")??
            .ok_or("the event stream ended")?;
        if event.session_id == imported.session_id {
            break event;
        }
    };
    println!(
        "WatchSessionEvents -> {} {} {:?} ({:?}), cursor {}",
        event.webhook_type,
        event.session_id,
        SessionStatus::try_from(event.status).unwrap_or_default(),
        event.status_raw,
        event.event_id,
    );
    let decision = sessions
        .get_session(with_tenant(
            "service-y",
            GetSessionRequest {
                session_id: imported.session_id,
            },
        )?)
        .await?
        .into_inner();
    println!(
        "GetSession     -> {:?} ({:?}), vendor_data {:?}",
        SessionStatus::try_from(decision.status).unwrap_or_default(),
        decision.status_raw,
        decision.vendor_data,
    );
    Ok(())
}
