//! Didit's three signature headers and the `X-Timestamp` window, with
//! vectors computed outside Rust. The payload and its vectors:
//!
//! ```text
//! python3 -c 'import hmac,hashlib,json
//! s=b"whsec_test_secret"
//! raw=open("body.json","rb").read()              # BODY below, byte for byte
//! def sh(d):
//!   if isinstance(d,dict): return {k:sh(v) for k,v in d.items()}
//!   if isinstance(d,list): return [sh(v) for v in d]
//!   return int(d) if isinstance(d,float) and d.is_integer() else d
//! v=sh(json.loads(raw)); h=lambda m: hmac.new(s,m,hashlib.sha256).hexdigest()
//! print(h(raw))                                                                   # RAW_SIG
//! print(h(json.dumps(v,sort_keys=True,separators=(",",":"),ensure_ascii=False).encode()))  # V2_SIG
//! print(h(json.dumps(v,sort_keys=True,separators=(",",":"),ensure_ascii=True).encode()))   # V2_ASCII_SIG
//! print(h(b"1700000000:11111111-2222-4333-8444-555555555555:Approved:status.updated"))     # SIMPLE_SIG'
//! ```
//!
//! V2_SIG was also computed with the seeds' algorithm in JavaScript:
//! `node -e 'const c=require("crypto");const sk=v=>Array.isArray(v)?v.map(sk):(v&&typeof v==="object")?Object.fromEntries(Object.keys(v).sort().map(k=>[k,sk(v[k])])):v;console.log(c.createHmac("sha256","whsec_test_secret").update(JSON.stringify(sk(JSON.parse(BODY))),"utf8").digest("hex"))'`.

use super::{Harness, Headers, NOW, SECRET, hmac_hex};
use didit_share_gateway::webhooks::WebhooksConfig;
use didit_share_gateway::webhooks::memory::MemoryLimits;

/// Pretty, unsorted, with `1.0`, `1.50`, `2.0`, non-ASCII and nesting.
const BODY: &str = r#"{"webhook_type": "status.updated", "session_id": "11111111-2222-4333-8444-555555555555", "status": "Approved", "created_at": 1700000000, "timestamp": 1700000000, "vendor_data": "user-42", "decision": {"score": 1.0, "name": "José Müller 日本", "nested": {"b": [1.50, 2.0, {"z": 0, "a": "x"}], "a": true}}}"#;
const RAW_SIG: &str = "b12c90d3ddd8d22b3fdfdfe2b4ec813d2db5842324e496162f545dd025f0e131";
const V2_SIG: &str = "ec6d28b67bef23e66476001f2404cf4acc5bcec9dda86d90499912375397118c";
const V2_ASCII_SIG: &str = "861e8d9b7e7b487d58b8f24de70058f1000bbb7ade4a9ed89e9a3e20e141d5b3";
const SIMPLE_SIG: &str = "f6821650b244e2f2808c26a557f8ab58bfbf74c2b457b33702e2f6e7f9c6eab9";

/// Tiny floats, where JavaScript (`0.00001`, `1.5e-7`) and Python
/// (`1e-05`, `1.5e-07`) write different canonical text.
const TINY_BODY: &str = r#"{"webhook_type":"status.updated","session_id":"s-1","score":0.00001,"tiny":1.5e-7,"n":10.0}"#;
/// `hmac(json.dumps(sh(v), sort_keys=True, separators=(",",":")))` in Python.
const TINY_PYTHON_SIG: &str = "942f160d37786cb73ec2f7038cfdebb0f73ca0922b1acbcb7075a4a6f551441b";
/// The node command above over TINY_BODY.
const TINY_JS_SIG: &str = "4aa4a9f7faa611223205b88859abd70fb8ae44150e9457e7f32040342dc8bfe4";

fn headers(signature: (&'static str, &str), timestamp: u64) -> Headers {
    vec![
        ("x-timestamp", timestamp.to_string()),
        (signature.0, signature.1.to_owned()),
    ]
}

#[tokio::test]
async fn every_didit_signature_form_verifies() {
    let h = Harness::with(MemoryLimits::from(&WebhooksConfig::default()), true).await;
    assert_eq!(hmac_hex(SECRET, BODY.as_bytes()), RAW_SIG, "vector sanity");
    for (sig, body) in [
        (("x-signature", RAW_SIG), BODY),
        (("x-signature-v2", V2_SIG), BODY),
        (("x-signature-v2", V2_ASCII_SIG), BODY),
        (("x-signature-simple", SIMPLE_SIG), BODY),
        (("x-signature-v2", TINY_PYTHON_SIG), TINY_BODY),
        (("x-signature-v2", TINY_JS_SIG), TINY_BODY),
    ] {
        let (status, answer) = h.post("tenant-a", body, &headers(sig, NOW)).await;
        assert_eq!(status, 200, "{sig:?}: {answer}");
    }
    assert_eq!(h.log.stats("tenant-a").events, 2, "two distinct payloads");
}

#[tokio::test]
async fn v2_survives_a_proxy_that_re_encodes_the_body() {
    let h = Harness::start().await;
    let value: serde_json::Value = serde_json::from_str(BODY).unwrap();
    // What a middleware might forward: compact, keys reordered, `1.0` → `1`.
    let re_encoded = serde_json::to_vec(&value).unwrap();
    assert_ne!(re_encoded, BODY.as_bytes());
    let (status, _) = h
        .post(
            "tenant-a",
            re_encoded.clone(),
            &headers(("x-signature", RAW_SIG), NOW),
        )
        .await;
    assert_eq!(status, 401, "the raw-body signature no longer matches");
    let (status, answer) = h
        .post(
            "tenant-a",
            re_encoded,
            &headers(("x-signature-v2", V2_SIG), NOW),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // A Python middleware would escape the non-ASCII characters instead.
    let escaped = BODY.replace("José Müller 日本", r"Jos\u00e9 M\u00fcller \u65e5\u672c");
    let (status, answer) = h
        .post(
            "tenant-a",
            escaped,
            &headers(("x-signature-v2", V2_SIG), NOW),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("\"duplicate\":true"),
        "same content: {answer}"
    );
}

#[tokio::test]
async fn tampered_misdated_or_unsigned_deliveries_are_401_and_not_stored() {
    let h = Harness::with(MemoryLimits::from(&WebhooksConfig::default()), false).await;
    let tampered = BODY.replace("Approved", "Declined");
    let wrong_secret = hmac_hex("whsec_other", BODY.as_bytes());
    let cases: Vec<(&str, String, Headers)> = vec![
        (
            "tampered, raw",
            tampered.clone(),
            headers(("x-signature", RAW_SIG), NOW),
        ),
        (
            "tampered, v2",
            tampered.clone(),
            headers(("x-signature-v2", V2_SIG), NOW),
        ),
        (
            "wrong secret",
            BODY.into(),
            headers(("x-signature", &wrong_secret), NOW),
        ),
        (
            "stale",
            BODY.into(),
            headers(("x-signature", RAW_SIG), NOW - 301),
        ),
        (
            "future",
            BODY.into(),
            headers(("x-signature", RAW_SIG), NOW + 301),
        ),
        (
            "no signature",
            BODY.into(),
            vec![("x-timestamp", NOW.to_string())],
        ),
        (
            "no timestamp",
            BODY.into(),
            vec![("x-signature", RAW_SIG.into())],
        ),
        ("not hex", BODY.into(), headers(("x-signature", "zz"), NOW)),
        (
            "simple not accepted",
            BODY.into(),
            headers(("x-signature-simple", SIMPLE_SIG), NOW),
        ),
    ];
    for (what, body, headers) in cases {
        let (status, _) = h.post("tenant-a", body, &headers).await;
        assert_eq!(status, 401, "{what}");
    }
    assert_eq!(h.log.stats("tenant-a").events, 0);
    // The edges of the window are inside it.
    for at in [NOW - 300, NOW + 300] {
        let (status, _) = h
            .post("tenant-a", BODY, &headers(("x-signature", RAW_SIG), at))
            .await;
        assert_eq!(status, 200, "X-Timestamp {at}");
    }
}
