//! The `[state]` section: defaults, secrets read from files and env, and
//! one error per problem naming its key, never echoing a secret.

use std::time::Duration;

use base64::Engine as _;
use didit_share_gateway::state::{ResolvedState, StateConfig, StateConfigError};

fn parse(text: &str) -> Result<ResolvedState, StateConfigError> {
    let config: StateConfig = toml::from_str(text).map_err(|e| StateConfigError {
        key: "toml".into(),
        problem: e.to_string(),
    })?;
    config.resolve()
}

#[test]
fn memory_is_the_default() {
    assert!(matches!(parse("").unwrap(), ResolvedState::Memory));
    assert_eq!(StateConfig::default().key_prefix, "dsg");
}

#[test]
fn a_redis_section_reads_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("url");
    std::fs::write(&url, "redis://:hunter2@127.0.0.1:6379/0\n").unwrap();
    let key = dir.path().join("key");
    std::fs::write(
        &key,
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
    .unwrap();
    let text = format!(
        "backend = \"redis\"\nredis_url_file = {url:?}\nencryption_key_file = {key:?}\n\
         key_prefix = \"dsg:prod\"\nresponse_timeout = \"250ms\"\n"
    );
    let ResolvedState::Redis(settings) = parse(&text).unwrap() else {
        panic!("not redis");
    };
    assert_eq!(settings.key_prefix, "dsg:prod");
    assert_eq!(settings.response_timeout, Duration::from_millis(250));
    assert!(!format!("{settings:?}").contains("hunter2"));
}

#[test]
fn each_problem_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(
        &short,
        base64::engine::general_purpose::STANDARD.encode([1u8; 16]),
    )
    .unwrap();
    let good = dir.path().join("good");
    std::fs::write(
        &good,
        base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
    )
    .unwrap();
    let cases = [
        ("backend = \"etcd\"", "toml"),
        ("redis_url = \"redis://h\"", "state.redis_url"),
        ("key_prefix = \"a{b}\"", "state.key_prefix"),
        ("response_timeout = \"0s\"", "state.response_timeout"),
        ("backend = \"redis\"", "state.redis_url_file"),
        (
            "backend = \"redis\"\nredis_url = \"redis://h\"",
            "state.encryption_key_file",
        ),
        (
            &format!(
                "backend = \"redis\"\nredis_url = \"redis://:hunter2@h\"\nencryption_key_file = {good:?}"
            ),
            "state.redis_url",
        ),
        (
            &format!(
                "backend = \"redis\"\nredis_url = \"http://h\"\nencryption_key_file = {good:?}"
            ),
            "state.redis_url",
        ),
        (
            &format!(
                "backend = \"redis\"\nredis_url = \"redis://h\"\nencryption_key_file = {short:?}"
            ),
            "state.encryption_key_file",
        ),
        (
            "backend = \"redis\"\nredis_url_env = \"DSG_TEST_SURELY_UNSET\"",
            "state.redis_url_env",
        ),
        ("tls_ca_file = \"/ca.pem\"", "state.tls_ca_file"),
        (
            &format!(
                "backend = \"redis\"\nredis_url = \"redis://h\"\nencryption_key_file = {good:?}\ntls_ca_file = {good:?}"
            ),
            "state.tls_ca_file",
        ),
        (
            &format!(
                "backend = \"redis\"\nredis_url = \"rediss://h\"\nencryption_key_file = {good:?}\ntls_ca_file = {good:?}"
            ),
            "state.tls_ca_file",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).expect_err(want);
        assert_eq!(err.key, want, "{text}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
