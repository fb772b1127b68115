//! `GET /v3/sessions/`: only the caller's sessions, newest first, every
//! filter, DRF pagination, read-only keys, counters and the read limit.

use std::collections::HashSet;
use std::time::Duration;

use didit_sandbox::{Dialect, RateLimit, SandboxConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, KYB_STATUSES, KYC_STATUSES, seeded};

fn ids(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["session_id"].as_str().expect("session_id").to_owned())
        .collect()
}

async fn create(env: &Env, kind: &str, status: &str) -> String {
    let body =
        json!({"application_id": env.x.application_id, "session_kind": kind, "status": status});
    let reply = env
        .admin(Method::POST, "/_sandbox/sessions", Some(body))
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["session_id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn lists_only_the_callers_sessions_newest_first_with_read_only_keys() {
    let env = Env::start(Dialect::Seeds).await;
    let newest = create(&env, "user", "Approved").await;
    let page = env.list(&env.x.read_only_api_key, "").await;
    assert_eq!(page["count"], 23);
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["previous"], Value::Null);
    let listed = ids(&page);
    assert_eq!(listed[0], newest, "newest first");
    let own: HashSet<String> = env
        .x
        .sessions
        .iter()
        .map(|s| s.session_id.to_string())
        .chain([newest.clone()])
        .collect();
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), own);
    let row = &page["results"][0];
    let mut keys: Vec<&str> = row
        .as_object()
        .expect("row")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "session_id",
            "session_kind",
            "session_number",
            "status",
            "vendor_data",
            "workflow_id"
        ]
    );
    assert_eq!(row["status"], "Approved");
    assert_eq!(row["session_kind"], "user");
    assert_eq!(row["workflow_id"], env.x.workflows.user.as_str());
    assert!(row.get("id_verifications").is_none(), "rows are short");

    // service-y sees none of them.
    let y = env.list(&env.y.api_key, "limit=100").await;
    assert_eq!(y["count"], 22);
    assert!(ids(&y).iter().all(|id| !own.contains(id)));
}

#[tokio::test]
async fn filters_by_kind_status_workflow_and_vendor_data() {
    let env = Env::start(Dialect::OpenApi).await;
    let key = env.x.api_key.as_str();
    let business = env.list(key, "session_kind=business").await;
    assert_eq!(business["count"], 11);
    let statuses: HashSet<&str> = business["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, KYB_STATUSES.into_iter().collect());
    assert_eq!(env.list(key, "session_kind=all").await["count"], 22);
    assert_eq!(
        env.list(key, "session_kind=user").await["count"],
        KYC_STATUSES.len()
    );

    let approved = env.list(key, "status=Approved").await;
    assert_eq!(
        ids(&approved),
        [seeded(&env.x, "user", "Approved").to_string()]
    );
    let kyb = env
        .list(key, "status=IN_REVIEW&session_kind=business")
        .await;
    assert_eq!(
        ids(&kyb),
        [seeded(&env.x, "business", "IN_REVIEW").to_string()]
    );
    assert_eq!(
        env.list(key, "status=APPROVED&session_kind=user").await["count"],
        0
    );
    assert_eq!(
        env.list(key, "status=Nope").await["count"],
        0,
        "unknown values match nothing"
    );
    let wf = format!("workflow_id={}", env.x.workflows.business);
    assert_eq!(env.list(key, &wf).await["count"], 11);

    // An import into service-y is found by its vendor_data and workflow.
    let token = env
        .mint(&env.x, seeded(&env.x, "user", "Approved"), &env.y)
        .await;
    let imported = env.import(&env.y.api_key, &env.y_import(&token)).await;
    assert_eq!(imported.status, 201);
    let query = format!(
        "vendor_data=partner-user-42&workflow_id={}",
        env.y.workflows.user
    );
    let found = env.list(&env.y.read_only_api_key, &query).await;
    assert_eq!(found["count"], 1);
    let row = &found["results"][0];
    assert_eq!(row["session_id"], imported.body["session_id"]);
    assert_eq!(row["session_number"], 1);
    assert_eq!(row["vendor_data"], "partner-user-42");
    assert_eq!(row["status"], "In Review");
    assert_eq!(row["created_at"], imported.body["created_at"]);
    assert_eq!(
        env.list(&env.y.api_key, "vendor_data=partner-user-4").await["count"],
        0
    );
    assert_eq!(
        env.list(&env.x.api_key, "vendor_data=partner-user-42")
            .await["count"],
        0
    );
}

#[tokio::test]
async fn date_filters_take_dates_and_date_times() {
    let env = Env::start(Dialect::Seeds).await;
    let key = env.x.api_key.as_str();
    let seeded_at = env.list(key, "limit=1").await["results"][0]["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    let seeded_day = &seeded_at[..10];
    env.advance_clock(3 * 86_400).await;
    let later = create(&env, "business", "APPROVED").await;
    let later_at = env.list(key, "limit=1").await["results"][0]["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();

    let q = |name: &str, value: &str| format!("{name}={}", value.replace('+', "%2B"));
    assert_eq!(
        ids(&env.list(key, &q("date_from", &later_at)).await),
        [later]
    );
    assert_eq!(
        env.list(key, &q("date_to", &later_at)).await["count"],
        23,
        "inclusive"
    );
    assert_eq!(
        env.list(key, &q("date_to", seeded_day)).await["count"],
        22,
        "the whole day"
    );
    assert_eq!(
        env.list(key, &q("date_from", seeded_day)).await["count"],
        23
    );
    let same_day = format!("date_from={seeded_day}&date_to={seeded_day}");
    assert_eq!(env.list(key, &same_day).await["count"], 22);
    // The same instant with an offset, and without a `Z`.
    let local = later_at.trim_end_matches('Z');
    assert_eq!(env.list(key, &q("date_from", local)).await["count"], 1);
    let hour: u32 = local[11..13].parse().expect("hour");
    if hour < 23 {
        let shifted = format!("{}{:02}{}+01:00", &local[..11], hour + 1, &local[13..]);
        assert_eq!(
            env.list(key, &q("date_from", &shifted)).await["count"],
            1,
            "{shifted}"
        );
    }

    let bad = env
        .get(
            "/v3/sessions/?date_from=last%20week&session_kind=people",
            Some(key),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body,
        json!({
            "date_from": ["Enter a valid date."],
            "session_kind": ["Select a valid choice. people is not one of the available choices."]
        })
    );
}

#[tokio::test]
async fn pages_with_limit_and_offset_and_absolute_links() {
    let env = Env::start(Dialect::Seeds).await;
    let key = env.x.api_key.as_str();
    let all = ids(&env.list(key, "limit=100").await);
    assert_eq!(all.len(), 22);

    let first = env.list(key, "session_kind=all&limit=5").await;
    assert_eq!(first["count"], 22);
    assert_eq!(ids(&first), all[..5]);
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().expect("next");
    let base = env.sandbox.base_url();
    assert_eq!(
        next,
        format!("{base}/v3/sessions/?session_kind=all&limit=5&offset=5")
    );
    let second = env.list(key, next.split_once('?').expect("query").1).await;
    assert_eq!(ids(&second), all[5..10]);
    assert_eq!(
        second["previous"],
        format!("{base}/v3/sessions/?session_kind=all&limit=5")
    );

    let last = env.list(key, "limit=5&offset=20").await;
    assert_eq!(ids(&last), all[20..]);
    assert_eq!(last["next"], Value::Null);
    assert_eq!(
        last["previous"],
        format!("{base}/v3/sessions/?limit=5&offset=15")
    );
    let beyond = env.list(key, "offset=40").await;
    assert_eq!(
        (beyond["count"].as_u64(), ids(&beyond).len()),
        (Some(22), 0)
    );
    // Bad numbers fall back to the defaults, as DRF does.
    assert_eq!(ids(&env.list(key, "limit=abc&offset=-3").await), all);
    assert_eq!(ids(&env.list(key, "limit=0").await), all);
}

#[tokio::test]
async fn needs_a_known_key_and_is_counted() {
    let env = Env::start(Dialect::OpenApi).await;
    let unauthorized =
        json!({"detail": "Authentication credentials were not provided or are invalid."});
    for key in [None, Some("nope")] {
        let reply = env.get("/v3/sessions/", key).await;
        assert_eq!((reply.status, &reply.body), (401, &unauthorized), "{key:?}");
    }
    // Without the trailing slash: Django's 301 (not counted: it never reached the endpoint).
    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (path, location) in [
        ("/v3/sessions?limit=5", "/v3/sessions/?limit=5"),
        ("/v3/session/abc/decision", "/v3/session/abc/decision/"),
    ] {
        let reply = manual
            .get(env.url(path))
            .header("x-api-key", &env.x.api_key)
            .send()
            .await
            .expect("send");
        assert_eq!(reply.status().as_u16(), 301, "{path}");
        let got = reply
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok());
        assert_eq!(got, Some(location));
    }
    env.list(&env.x.read_only_api_key, "").await;
    let stats = env.stats().await;
    assert_eq!(
        stats["list_calls"], 3,
        "the redirects never reached the endpoint"
    );
    assert_eq!(stats["share_calls"], 0);
    assert_eq!(
        stats["calls_by_key"]
            .as_object()
            .map(|m| m.values().map(|v| v.as_u64().unwrap_or(0)).sum::<u64>()),
        Some(2),
        "keyed calls: the unknown key and the read-only key"
    );
}

#[tokio::test]
async fn reads_have_their_own_limit_twice_the_write_limit() {
    let env = Env::start_with(SandboxConfig {
        dialect: Dialect::Seeds,
        rate_limit: Some(RateLimit {
            max_writes: 2,
            window: Duration::from_secs(60),
        }),
    })
    .await;
    let key = env.x.api_key.as_str();
    for remaining in (0..4).rev() {
        let reply = env.get("/v3/sessions/", Some(key)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header_num("x-ratelimit-limit"), 4);
        assert_eq!(reply.header_num("x-ratelimit-remaining"), remaining);
    }
    let limited = env.get("/v3/sessions/", Some(key)).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.body,
        json!({"detail": "Read request rate limit exceeded. You can make up to 4 requests per minute."})
    );
    assert!(limited.header_num("retry-after") >= 1);
    // The write budget is untouched.
    let share = env.share_to_y(seeded(&env.x, "user", "Approved")).await;
    assert_eq!(share.status, 201, "{:?}", share.body);
    assert_eq!(share.header_num("x-ratelimit-remaining"), 1);
    env.advance_clock(61).await;
    assert_eq!(env.get("/v3/sessions/", Some(key)).await.status, 200);
}
