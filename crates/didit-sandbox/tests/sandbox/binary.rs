//! The `didit-sandbox` binary: clean clap errors, and a real start that
//! prints the banner and serves.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_didit-sandbox");

#[test]
fn bad_flags_are_clean_usage_errors() {
    let out = Command::new(BIN)
        .args(["--dialect", "klingon"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'klingon'") && stderr.contains("openapi"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .args(["--listen", "not-an-addr"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    // Its env vars have their own prefix.
    let out = Command::new(BIN)
        .env("DIDIT_SANDBOX_DIALECT", "klingon")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid value 'klingon'"),
        "DIDIT_SANDBOX_DIALECT is read"
    );
    let out = Command::new(BIN).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--rate-limit") && help.contains("DIDIT_SANDBOX_LISTEN"),
        "{help}"
    );
}

#[tokio::test]
async fn binary_prints_banner_and_serves() {
    let mut child = Command::new(BIN)
        .args(["--dialect", "openapi"])
        // Its own env prefix is read; the gateway's DSG_* are not.
        .env("DIDIT_SANDBOX_LISTEN", "127.0.0.1:0")
        .env("DSG_LISTEN", "not-an-addr")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<String> = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout).lines();
        let banner = reader
            .by_ref()
            .take(6)
            .map(|l| l.unwrap_or_default())
            .collect();
        // Keep draining: a closed pipe would kill the sandbox on its next print.
        std::thread::spawn(move || reader.for_each(drop));
        banner
    })
    .await
    .expect("read banner");
    let first = &lines[0];
    assert!(
        first.starts_with("didit-sandbox listening on http://127.0.0.1:")
            && first.ends_with("(dialect openapi)")
            && !first.contains(":8787 "),
        "{first}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("11111111-1111-4111-8111-111111111111")
                && l.contains("wf_service_x_kyc"))
    );
    assert!(lines.iter().any(|l| l.contains("curl")), "{lines:?}");
    let base = first
        .trim_start_matches("didit-sandbox listening on ")
        .split(' ')
        .next()
        .expect("url")
        .to_owned();

    let client = crate::common::client();
    let apps = client
        .get(format!("{base}/_sandbox/applications"))
        .send()
        .await;
    let _ = child.kill();
    let _ = child.wait();
    let apps: serde_json::Value = apps.expect("get").json().await.expect("json");
    assert_eq!(apps[1]["name"], "service-y");
}
