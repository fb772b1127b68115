use std::path::Path;

use crate::config::{CheckReport, Config, ConfigError};
use crate::policy::PartnerPolicy;
use crate::session::SessionKind;

const SISTER: &str = "22222222-2222-4222-8222-222222222222";
const NEWCOMER: &str = "33333333-3333-4333-8333-333333333333";

/// A valid file with one tenant `a` (key file in `dir`) and `partners`
/// (TOML appended after the tenant).
fn file(dir: &Path, partners: &str) -> String {
    let key = dir.join("key");
    std::fs::write(&key, "sk_test\n").unwrap();
    format!(
        "[upstream]\nbase_url = \"https://x.example\"\n[auth]\nmode = \"none\"\n[[tenants]]\nid = \"a\"\napplication_id = \"11111111-1111-4111-8111-111111111111\"\napi_key_file = \"{}\"\n{partners}",
        key.display()
    )
}

fn partner(id: &str, extra: &str) -> String {
    format!(
        "[[tenants.partners]]\napplication_id = \"{id}\"\nname = \"p\"\nagreement = \"DSA-1\"\nsession_kinds = [\"user\"]\n{extra}"
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("gateway.toml"), text)
}

#[test]
fn the_contract_example_parses() {
    let dir = tempfile::tempdir().unwrap();
    let text = file(
        dir.path(),
        &format!(
            r#"
[[tenants.partners]]
application_id = "{SISTER}"
name = "service-y"
agreement = "DSA-2026-014"
share = true
import = true
trust_review = false
max_ttl_seconds = 3600
session_kinds = ["user", "business"]

[[tenants.partners]]
application_id = "{NEWCOMER}"
name = "newcomer"
agreement = "DSA-2026-020"
import = true
session_kinds = ["user"]
"#
        ),
    );
    let config = parse(&text).unwrap();
    let partners = config.tenants[0].partners.as_ref().unwrap();
    assert_eq!(partners.len(), 2);
    let y = &partners[0];
    assert_eq!(
        (y.name.as_str(), y.agreement.as_str()),
        ("service-y", "DSA-2026-014")
    );
    assert!(y.share && y.import && !y.trust_review);
    assert_eq!(y.session_kinds, [SessionKind::User, SessionKind::Business]);
    // Defaults: nothing allowed that is not written, Didit's default TTL.
    let new = &partners[1];
    assert!(!new.share && new.import && !new.trust_review);
    assert_eq!(new.max_ttl_seconds, 3600);
    assert!(config.tenants_without_policy().is_empty());
    let tenants = config.build_tenants().unwrap();
    assert!(matches!(tenants[0].policy, PartnerPolicy::Agreements(ref p) if p.len() == 2));
}

#[test]
fn a_tenant_without_partners_has_no_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse(&file(dir.path(), "")).unwrap();
    assert_eq!(config.tenants[0].partners, None);
    assert_eq!(config.tenants_without_policy(), ["a"]);
    let tenants = config.build_tenants().unwrap();
    assert!(matches!(tenants[0].policy, PartnerPolicy::Open));
}

#[test]
fn problems_name_the_partner_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let cases = [
        (
            format!("{}{}", partner(SISTER, ""), partner(SISTER, "")),
            "tenants[0].partners[1].application_id",
            "duplicate partner application id",
        ),
        (
            partner("nope", ""),
            "tenants[0].partners[0].application_id",
            "must be a uuid",
        ),
        (
            partner(SISTER, "").replace("[\"user\"]", "[\"user\", \"person\"]"),
            "tenants[0].partners[0].session_kinds[1]",
            "unknown session kind \"person\"",
        ),
        (
            partner(SISTER, "").replace("[\"user\"]", "[\"user\", \"user\"]"),
            "tenants[0].partners[0].session_kinds[1]",
            "listed twice",
        ),
        (
            partner(SISTER, "").replace("[\"user\"]", "[]"),
            "tenants[0].partners[0].session_kinds",
            "at least one",
        ),
        (
            partner(SISTER, "max_ttl_seconds = 59\n"),
            "tenants[0].partners[0].max_ttl_seconds",
            "between 60 and 86400",
        ),
        (
            partner(SISTER, "max_ttl_seconds = 86401\n"),
            "tenants[0].partners[0].max_ttl_seconds",
            "between 60 and 86400",
        ),
        (
            partner(SISTER, "").replace("name = \"p\"", "name = \" \""),
            "tenants[0].partners[0].name",
            "must not be empty",
        ),
        (
            partner(SISTER, "").replace("agreement = \"DSA-1\"", "agreement = \"\""),
            "tenants[0].partners[0].agreement",
            "must not be empty",
        ),
        (partner(SISTER, "shares = true\n"), "line", "unknown field"),
    ];
    for (partners, key, problem) in cases {
        let err = parse(&file(dir, &partners)).expect_err(key);
        let line = err.to_string();
        assert!(err.key.starts_with(key), "{key}: {line}");
        assert!(err.problem.contains(problem), "{problem}: {line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }
}

#[test]
fn check_config_prints_each_tenants_partners() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let mut text = file(dir.path(), &partner(SISTER, "share = true\n"));
    text.push_str(&format!(
        "[[tenants]]\nid = \"open\"\napplication_id = \"{NEWCOMER}\"\napi_key_file = \"{}\"\n",
        dir.path().join("key").display()
    ));
    std::fs::write(&path, text).unwrap();
    let report = CheckReport::run(&path);
    let json = report.json();
    assert_eq!(json["ok"], true, "{json}");
    let p = &json["tenants"][0]["partners"][0];
    assert_eq!(p["application_id"], SISTER);
    assert_eq!(p["name"], "p");
    assert_eq!(p["agreement"], "DSA-1");
    assert_eq!(p["share"], true);
    assert_eq!(p["import"], false);
    assert_eq!(p["max_ttl_seconds"], 3600);
    assert_eq!(p["session_kinds"], serde_json::json!(["user"]));
    assert!(json["tenants"][1]["partners"].is_null());
    let text = report.text();
    assert!(
        text.contains(&format!(
            "partner p              application {SISTER}  agreement DSA-1  allows [share]  max ttl 3600s  kinds [user]"
        )),
        "{text}"
    );
    assert!(
        text.contains("no policy: any partner application is allowed"),
        "{text}"
    );
}
