//! `--check-config PATH [--json]`: the gateway's own verdict on a file, for
//! people and for deploy tooling, with exit 0 or 64.

use std::process::{Command, Output};

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_didit-share-gateway"))
        .args(args)
        .env_remove("DSG_CONFIG")
        .output()
        .unwrap()
}

fn write_config(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let key = dir.join("brand-a.key");
    std::fs::write(&key, "sk_live_never_printed\n").unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "{server}[upstream]\nbase_url = \"https://verification.didit.me\"\n[auth]\nmode = \"mesh\"\n[[tenants]]\nid = \"brand-a\"\napplication_id = \"11111111-1111-4111-8111-111111111111\"\napi_key_file = \"{}\"\nallowed_callers = [\"spiffe://cluster.local/ns/payments/sa/api\"]\n",
            key.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_valid_file_prints_its_sections_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[server]\nshutdown_grace = \"1m 30s\"\n");
    let out = check(&["--check-config", path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("sk_live_never_printed"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["file"], path.display().to_string());
    assert_eq!(json["server"]["listen"], "0.0.0.0:50051");
    assert_eq!(json["server"]["admin_listen"], "0.0.0.0:9090");
    assert_eq!(json["server"]["shutdown_grace_ms"], 90_000);
    assert_eq!(json["upstream"]["max_attempts"], 3);
    assert_eq!(json["auth"]["mode"], "mesh");
    assert_eq!(json["tenants"][0]["id"], "brand-a");
    assert_eq!(
        json["tenants"][0]["allowed_callers"][0],
        "spiffe://cluster.local/ns/payments/sa/api"
    );
    assert_eq!(
        json["tenants"][0]["api_key_file"],
        dir.path().join("brand-a.key").display().to_string()
    );
}

#[test]
fn an_invalid_file_exits_64_with_the_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[server]\nshutdown_grace = \"soon\"\n");
    let out = check(&["--check-config", path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["file"], path.display().to_string());
    assert_eq!(json["error"]["key"], "server.shutdown_grace");
    let problem = json["error"]["problem"].as_str().unwrap();
    assert!(problem.contains("\"soon\" is not a duration"), "{problem}");
    // The one line of today's --check-config is still on stderr.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        format!(
            "didit-share-gateway: {}",
            json["error"]["message"].as_str().unwrap()
        )
    );
}

#[test]
fn without_json_the_summary_is_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let out = check(&["--check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(&format!("config {} is valid\n", path.display())));
    assert!(stdout.contains("  tenant brand-a "), "{stdout}");

    let missing = check(&["--check-config", "/nonexistent/gateway.toml"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(missing.stdout.is_empty());
}

#[test]
fn json_alone_is_a_usage_error() {
    let out = check(&["--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
