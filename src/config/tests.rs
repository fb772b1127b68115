use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("gateway.toml"), text)
}

/// A valid minimal file with one tenant whose key file lives in `dir`.
fn minimal(dir: &Path) -> String {
    let key = dir.join("key");
    std::fs::write(&key, "sk_test\n").unwrap();
    format!(
        "[upstream]\nbase_url = \"https://x.example\"\n[auth]\nmode = \"none\"\n[[tenants]]\nid = \"a\"\napplication_id = \"11111111-1111-4111-8111-111111111111\"\napi_key_file = \"{}\"\n",
        key.display()
    )
}

#[test]
fn a_good_file_gets_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("brand-a");
    std::fs::write(&key, "sk_test\n").unwrap();
    let text = format!(
        r#"
        [upstream]
        base_url = "https://verification.didit.me/"
        timeout = "5s"
        [auth]
        mode = "none"
        [[tenants]]
        id = "brand-a"
        application_id = "11111111-1111-4111-8111-111111111111"
        api_key_file = "{}"
        allowed_callers = ["spiffe://cluster.local/ns/payments/*"]
        "#,
        key.display()
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.upstream.base_url, "https://verification.didit.me");
    assert_eq!(config.upstream.timeout, Duration::from_secs(5));
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.server.listen.port(), 50051);
    assert_eq!(config.tenants[0].rate_limit_per_minute, 300);
    assert_eq!(config.tenants[0].rate_limit_burst, None);
    assert_eq!(config.upstream.budget_wait, Duration::from_secs(2));
    assert_eq!(config.replay, ReplayConfig::default());
    assert_eq!(config.replay.max_bytes, 64 * 1024 * 1024);
    let tenants = config.build_tenants().unwrap();
    assert_eq!(tenants[0].api_key().expose(), "sk_test");
}

#[test]
fn the_defaults_of_each_section_are_valid() {
    ServerConfig::default().validate().unwrap();
    UpstreamConfig::default().validate().unwrap();
    ReplayConfig::default().validate().unwrap();
    AuthConfig::None.validate().unwrap();
}

#[test]
fn problems_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = minimal(dir.path());
    let key = dir.path().join("key");
    assert!(parse(&base).is_ok());
    let cases = [
        (
            base.replace("mode = \"none\"", "mode = \"open\""),
            "auth.mode",
        ),
        (base.replace("[auth]\nmode = \"none\"\n", ""), "auth"),
        (
            base.replace("11111111-1111-4111-8111-111111111111", "nope"),
            "tenants[0].application_id",
        ),
        (
            base.replace("https://x.example", "ftp://x"),
            "upstream.base_url",
        ),
        (
            base.replace(&key.display().to_string(), "/nonexistent/key"),
            "tenants[0].api_key_file",
        ),
        (
            format!("{base}api_key = \"sk_inline\"\n"),
            "tenants[0].api_key",
        ),
        (
            format!(
                "{base}[[tenants]]\nid = \"a\"\napplication_id = \"11111111-1111-4111-8111-111111111111\"\napi_key_file = \"{}\"\n",
                key.display()
            ),
            "tenants[1].id",
        ),
        (
            format!("[replay]\nwindow = \"48h\"\n{base}"),
            "replay.window",
        ),
        (
            format!("[server]\nlisten = \"nowhere\"\n{base}"),
            "server.listen",
        ),
        (
            format!("[server]\nkey_reload_interval = \"0s\"\n{base}"),
            "server.key_reload_interval",
        ),
        (
            format!("[server]\nmax_concurrent_requests = 0\n{base}"),
            "server.max_concurrent_requests",
        ),
        (
            base.replace("x.example\"", "x.example\"\ntimeout = \"3m\""),
            "upstream.timeout",
        ),
        (
            base.replace("x.example\"", "x.example\"\nbudget_wait = \"2m\""),
            "upstream.budget_wait",
        ),
        (
            format!("{base}rate_limit_per_minute = 60\nrate_limit_burst = 61\n"),
            "tenants[0].rate_limit_burst",
        ),
        (
            format!("{base}rate_limit_burst = 0\n"),
            "tenants[0].rate_limit_burst",
        ),
        (format!("{base}colour = \"blue\"\n"), "line"),
    ];
    for (text, want_key) in cases {
        let err = parse(&text).expect_err(want_key);
        assert!(err.key.starts_with(want_key), "{want_key}: {err}");
        assert!(!err.to_string().contains("sk_inline"), "{err}");
        let line = err.to_string();
        assert!(line.starts_with("invalid config gateway.toml: "), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }
}

#[test]
fn configs_built_in_code_are_validated_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = parse(&minimal(dir.path())).unwrap();
    config.source = "<sandbox>".into();
    config.upstream.timeout = Duration::from_secs(600);
    let err = config.validate().unwrap_err();
    assert_eq!(err.key, "upstream.timeout");
    assert_eq!(
        err.to_string(),
        "invalid config <sandbox>: upstream.timeout: must be at most 120s"
    );
}

#[test]
fn a_reload_names_every_changed_section_but_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let running = parse(&minimal(dir.path())).unwrap();
    let same = running.clone();
    assert!(running.needs_restart(&same).is_empty());

    let mut tenants = running.clone();
    tenants.tenants[0].rate_limit_per_minute = 1;
    tenants.tenants[0].id = "b".into();
    assert!(running.needs_restart(&tenants).is_empty());

    let mut mesh = running.clone();
    mesh.auth = AuthConfig::Mesh {
        trusted_proxy_identity: None,
    };
    assert!(running.needs_restart(&mesh).is_empty(), "none -> mesh");

    // Every field of [server], the key reload interval included.
    let server_changes: [fn(&mut ServerConfig); 5] = [
        |s| s.listen.set_port(1),
        |s| s.admin_listen.set_port(1),
        |s| s.shutdown_grace = Duration::from_secs(1),
        |s| s.max_concurrent_requests = 1,
        |s| s.key_reload_interval = Duration::from_secs(60),
    ];
    for change in server_changes {
        let mut new = running.clone();
        change(&mut new.server);
        assert_eq!(running.needs_restart(&new), ["server"], "{:?}", new.server);
    }

    let mut new = running.clone();
    new.upstream.retry.max_attempts = 1;
    new.replay.max_bytes *= 2;
    assert_eq!(running.needs_restart(&new), ["upstream", "replay"]);
}

#[test]
fn the_json_report_carries_the_sections_or_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nshutdown_grace = \"1m 30s\"\n{}",
            minimal(dir.path())
        ),
    )
    .unwrap();
    let ok = CheckReport::run(&path).json();
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["server"]["shutdown_grace_ms"], 90_000);
    assert_eq!(ok["server"]["listen"], "0.0.0.0:50051");
    assert_eq!(ok["auth"]["mode"], "none");
    assert_eq!(ok["tenants"][0]["id"], "a");
    assert_eq!(
        ok["tenants"][0]["api_key_file"],
        dir.path().join("key").display().to_string()
    );
    assert!(!ok.to_string().contains("sk_test"), "no key: {ok}");

    std::fs::write(&path, "[upstream]\nbase_url = 42\n").unwrap();
    let bad = CheckReport::run(&path);
    let json = bad.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["file"], path.display().to_string());
    assert_eq!(json["error"]["key"], "line 2");
    assert_eq!(json["error"]["message"], bad.text());
}

#[test]
fn empty_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "  \n").unwrap();
    let err = KeySource::File(key).load().unwrap_err();
    assert!(err.contains("empty"));
}

#[test]
fn webhook_secrets_and_the_webhooks_section() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook");
    std::fs::write(&secret, "whsec_do_not_print\n").unwrap();
    let base = minimal(dir.path());

    // Without [webhooks] nothing is served; a tenant may still hold a secret.
    let with_secret = format!("{base}webhook_secret_file = \"{}\"\n", secret.display());
    let config = parse(&with_secret).unwrap();
    assert_eq!(config.webhooks, None);
    let tenants = config.build_tenants().unwrap();
    let loaded = tenants[0].webhook_secret().expect("the secret is loaded");
    assert_eq!(loaded.hmac_key(), b"whsec_do_not_print");
    assert!(!format!("{config:?} {tenants:?}").contains("whsec_do_not_print"));

    let served = format!("{with_secret}[webhooks]\nlisten = \"127.0.0.1:0\"\n");
    let config = parse(&served).unwrap();
    assert_eq!(
        config.webhooks.as_ref().map(|w| w.retention),
        Some(Duration::from_secs(24 * 3600))
    );

    let both = format!("{with_secret}webhook_secret_env = \"X\"\n");
    assert_eq!(
        parse(&both).unwrap_err().key,
        "tenants[0].webhook_secret_file"
    );
    let missing = format!(
        "{base}webhook_secret_file = \"{}\"\n",
        dir.path().join("nope").display()
    );
    assert_eq!(
        parse(&missing).unwrap_err().key,
        "tenants[0].webhook_secret_file"
    );
    let unset = format!("{base}webhook_secret_env = \"DSG_TEST_SURELY_UNSET_HOOK\"\n");
    assert_eq!(
        parse(&unset).unwrap_err().key,
        "tenants[0].webhook_secret_env"
    );
    let zero = format!("{with_secret}[webhooks]\nretention = \"0s\"\n");
    let err = parse(&zero).unwrap_err();
    assert_eq!(err.key, "webhooks.retention");

    // A changed [webhooks] needs a restart; a changed secret does not.
    let running = parse(&with_secret).unwrap();
    assert_eq!(
        running.needs_restart(&parse(&served).unwrap()),
        ["webhooks"]
    );
}

#[test]
fn the_state_section_defaults_to_memory_and_is_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let base = minimal(dir.path());
    let config = parse(&base).unwrap();
    assert_eq!(config.state, crate::state::StateConfig::default());
    assert_eq!(config.state.backend, crate::state::Backend::Memory);

    let err = parse(&format!(
        "{base}[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/\"\n"
    ))
    .unwrap_err();
    assert_eq!(err.key, "state.encryption_key_file", "{err}");
    let err = parse(&format!(
        "{base}[state]\nbackend = \"memory\"\nkey_prefix = \"x\"\nredis_url = \"redis://h/\"\n"
    ))
    .unwrap_err();
    assert!(err.key.starts_with("state."), "{err}");
    let err = parse(&format!(
        "{base}[state]\nbackend = \"redis\"\nredis_url = \"redis://:hunter2@h/\"\n"
    ))
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let key = dir.path().join("state-key");
    std::fs::write(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    let redis = parse(&format!(
        "{base}[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/\"\nencryption_key_file = \"{}\"\n",
        key.display()
    ))
    .unwrap();
    assert_eq!(redis.state.backend, crate::state::Backend::Redis);
    assert_eq!(config.needs_restart(&redis), ["state"]);
}
