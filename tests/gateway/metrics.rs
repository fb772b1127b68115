//! Prometheus metrics on the admin port: every series the operations guide
//! lists, with the labels it documents, after driving the paths that feed
//! them; and no secret in any label.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::env::{READ_ONLY_TENANT, TestEnv, demo, reason, with_tenant};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::proto::ShareSessionRequest;
use serde_json::json;

/// One sample line: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus/OpenMetrics text (label values here never hold
/// `,` `"` or `}`).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include `labels`; None
/// when there is no such series at all.
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = all
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().map(|s| s.value).sum())
}

async fn scrape(env: &TestEnv) -> (String, String) {
    let response = env
        .http
        .get(format!("http://{}/metrics", env.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

fn share_request(tenant: &str, session_id: &str) -> tonic::Request<ShareSessionRequest> {
    with_tenant(
        tenant,
        ShareSessionRequest {
            session_id: session_id.into(),
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        },
    )
}

#[tokio::test]
async fn every_documented_series_is_exported() {
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.server.max_concurrent_requests = 3;
        for tenant in &mut config.tenants {
            if tenant.id == READ_ONLY_TENANT {
                tenant.rate_limit_per_minute = 10; // a burst of 1
            }
        }
    })
    .await;
    let y = demo("service-y");

    // Share, import, an identical import (replayed), one with other
    // parameters (mismatch), a share retried after a 503.
    let session = env.create_session("service-x", "user", "Approved").await;
    let token = env.token_for_y(&session).await;
    env.import("service-y", &token, &y.workflows.user, "", false)
        .await
        .unwrap();
    let again = env
        .import("service-y", &token, &y.workflows.user, "", false)
        .await
        .unwrap();
    assert!(again.replayed);
    let mismatch = env
        .import("service-y", &token, &y.workflows.user, "other", false)
        .await
        .unwrap_err();
    assert_eq!(reason(&mismatch), "ALREADY_IMPORTED");
    env.faults(json!({"fail_next": 1, "error_status": 503, "endpoints": ["share"]}))
        .await;
    env.token_for_y(&session).await;

    // Three identical shares at once: each mints its own token.
    env.faults(json!({"latency_ms": 300, "endpoints": ["share"]}))
        .await;
    let mut identical = Vec::new();
    for _ in 0..3 {
        let mut client = env.share_client.clone();
        let request = share_request("service-x", &session);
        identical.push(tokio::spawn(
            async move { client.share_session(request).await },
        ));
    }
    for call in identical {
        call.await.unwrap().unwrap();
    }

    // A flood over the limit of 3 is shed.
    let mut flood = Vec::new();
    for _ in 0..12 {
        let mut client = env.share_client.clone();
        let request = share_request("service-x", &uuid::Uuid::new_v4().to_string());
        flood.push(tokio::spawn(
            async move { client.share_session(request).await },
        ));
    }
    for call in flood {
        let _ = call.await.unwrap();
    }
    env.faults(json!({})).await;

    // A tenant over its rate (and whose key Didit rejects), an unknown tenant.
    for _ in 0..2 {
        let _ = env
            .share(
                READ_ONLY_TENANT,
                &session,
                &y.application_id.to_string(),
                None,
            )
            .await;
    }
    let _ = env
        .share("nobody", &session, &y.application_id.to_string(), None)
        .await;

    let (content_type, text) = scrape(&env).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let all = samples(&text);
    let at_least = |name: &str, labels: &[(&str, &str)], min: f64| {
        let v =
            value(&all, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        assert!(v >= min, "{name} {labels:?} = {v}, expected at least {min}");
    };

    // gRPC calls by method, tenant and code, with latency histograms.
    let share_ok = [
        ("method", "ShareSession"),
        ("tenant", "service-x"),
        ("code", "OK"),
    ];
    at_least("dsg_grpc_requests_total", &share_ok, 5.0);
    let import_ok = [
        ("method", "ImportSharedSession"),
        ("tenant", "service-y"),
        ("code", "OK"),
    ];
    at_least("dsg_grpc_requests_total", &import_ok, 2.0);
    at_least(
        "dsg_grpc_requests_total",
        &[("tenant", "service-y"), ("code", "ALREADY_EXISTS")],
        1.0,
    );
    at_least(
        "dsg_grpc_requests_total",
        &[
            ("tenant", READ_ONLY_TENANT),
            ("code", "FAILED_PRECONDITION"),
        ],
        1.0,
    );
    at_least(
        "dsg_grpc_requests_total",
        &[("tenant", "unknown"), ("code", "UNAUTHENTICATED")],
        1.0,
    );
    for suffix in ["_bucket", "_count", "_sum"] {
        at_least(
            &format!("dsg_grpc_request_duration_seconds{suffix}"),
            &[("method", "ShareSession"), ("tenant", "service-x")],
            0.0,
        );
    }
    at_least(
        "dsg_grpc_request_duration_seconds_count",
        &[("method", "ImportSharedSession"), ("tenant", "service-y")],
        3.0,
    );
    assert_eq!(value(&all, "dsg_grpc_requests_in_flight", &[]), Some(0.0));

    // Upstream requests by endpoint and status, with latency histograms.
    at_least(
        "dsg_upstream_requests_total",
        &[("endpoint", "share"), ("status", "201")],
        3.0,
    );
    at_least(
        "dsg_upstream_requests_total",
        &[("endpoint", "share"), ("status", "503")],
        1.0,
    );
    at_least(
        "dsg_upstream_requests_total",
        &[("endpoint", "import"), ("status", "201")],
        1.0,
    );
    at_least(
        "dsg_upstream_requests_total",
        &[("endpoint", "share"), ("status", "404")],
        1.0,
    );
    for endpoint in ["share", "import"] {
        at_least(
            "dsg_upstream_request_duration_seconds_count",
            &[("endpoint", endpoint)],
            1.0,
        );
        at_least(
            "dsg_upstream_request_duration_seconds_bucket",
            &[("endpoint", endpoint), ("le", "+Inf")],
            1.0,
        );
    }
    assert_eq!(
        value(&all, "dsg_upstream_requests_in_flight", &[]),
        Some(0.0)
    );
    at_least("dsg_upstream_retries_total", &[("endpoint", "share")], 1.0);

    // Admission control.
    at_least("dsg_shed_requests_total", &[], 1.0);
    assert_eq!(
        value(
            &all,
            "dsg_tenant_rate_limited_total",
            &[("tenant", READ_ONLY_TENANT)]
        ),
        Some(1.0)
    );

    // De-duplication and replay.
    assert_eq!(
        value(
            &all,
            "dsg_coalesced_waiters_total",
            &[("endpoint", "share")]
        )
        .unwrap_or(0.0),
        0.0,
        "shares are never coalesced"
    );
    assert_eq!(value(&all, "dsg_import_replays_total", &[]), Some(1.0));
    assert_eq!(
        value(&all, "dsg_import_replay_mismatches_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&all, "dsg_import_replay_stored_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&all, "dsg_import_replay_evictions_total", &[]),
        Some(0.0)
    );
    // Series that had no event yet are exported at 0, not left absent.
    for endpoint in ["share", "import"] {
        assert_eq!(
            value(
                &all,
                "dsg_upstream_retry_budget_exhausted_total",
                &[("endpoint", endpoint)]
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        value(
            &all,
            "dsg_upstream_retries_total",
            &[("endpoint", "import")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &all,
            "dsg_coalesced_waiters_total",
            &[("endpoint", "import")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &all,
            "dsg_tenant_rate_limited_total",
            &[("tenant", "service-y")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&all, "dsg_budget_waits_total", &[("tenant", "service-y")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &all,
            "dsg_budget_wait_seconds_total",
            &[("tenant", "service-y")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &all,
            "dsg_api_key_reload_failures_total",
            &[("tenant", "service-x")]
        ),
        Some(0.0)
    );

    // Build information.
    assert_eq!(
        value(
            &all,
            "dsg_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // No secret in any label.
    for app in didit_sandbox::demo_applications() {
        assert!(!text.contains(&app.api_key));
        assert!(!text.contains(&app.read_only_api_key));
    }
    assert!(!text.contains(&token));
    env.stop().await;
}

#[tokio::test]
async fn a_caller_that_goes_away_is_not_counted_in_flight_forever() {
    let env = TestEnv::start(Default::default()).await;
    env.faults(json!({"latency_ms": 1000, "endpoints": ["share"]}))
        .await;
    let session = env.create_session("service-x", "user", "Approved").await;
    // No deadline sent: the caller just stops waiting and resets the stream.
    let mut client = env.share_client.clone();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        client.share_session(share_request("service-x", &session)),
    )
    .await;
    assert!(gave_up.is_err(), "the call was still running");

    let give_up = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (_, text) = scrape(&env).await;
        let in_flight = value(&samples(&text), "dsg_grpc_requests_in_flight", &[]);
        let cancelled = value(
            &samples(&text),
            "dsg_grpc_requests_total",
            &[
                ("method", "ShareSession"),
                ("tenant", "service-x"),
                ("code", "CANCELLED"),
            ],
        );
        if in_flight == Some(0.0) && cancelled == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "dsg_grpc_requests_in_flight stuck at {in_flight:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.stop().await;
}
