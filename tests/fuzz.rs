//! Property ("fuzz") targets over the parsers that read untrusted input:
//! the XFCC header parser, the share-token claims reader and the
//! classifier of Didit's error answers. Each is seeded from a corpus of
//! real-looking inputs in `tests/corpus/<target>/` (one input per file):
//! every entry is checked as documented by its name (`ok-*` accepted,
//! `bad-*` refused; classify entries name their expected reason), then
//! proptest mutates the entries (byte inserts, deletions, replacements,
//! splices) and checks that nothing panics and the invariants hold.
//!
//! Cases per target: `DSG_FUZZ_CASES` (default 256 for `cargo test`;
//! `.ci/run` sets more, bounded to a few seconds per target). Cargo-fuzz
//! needs nightly; these run on stable. A failing case prints its input;
//! add it to the corpus once fixed.

use std::path::Path;

use didit_share_gateway::auth::xfcc;
use didit_share_gateway::didit::{DiditError, classify_answer};
use didit_share_gateway::error::GatewayError;
use didit_share_gateway::share_token::{self, read_claims};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per target.
fn cases() -> u32 {
    std::env::var("DSG_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// The corpus of `target`: (file name, bytes), sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    entries.sort();
    assert!(entries.len() >= 4, "corpus {target} is nearly empty");
    entries
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    /// Copies a slice of the input elsewhere (duplicates separators,
    /// quotes, segments).
    Splice {
        from: usize,
        len: usize,
        to: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes biased toward the ones the grammars care about.
    let byte = prop_oneof![
        3 => prop::sample::select(b"\",;=\\.-_ {}[]:0aA/\t\x00\xff".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), 1..64usize, any::<usize>()).prop_map(|(from, len, to)| Edit::Splice {
            from,
            len,
            to
        }),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let n = bytes.len();
        match *edit {
            Edit::Insert(i, b) => bytes.insert(i % (n + 1), b),
            Edit::Delete(i) if n > 0 => {
                bytes.remove(i % n);
            }
            Edit::Replace(i, b) if n > 0 => bytes[i % n] = b,
            Edit::Splice { from, len, to } if n > 0 => {
                let from = from % n;
                let piece = bytes[from..(from + len).min(n)].to_vec();
                let to = to % (n + 1);
                bytes.splice(to..to, piece);
            }
            Edit::Delete(_) | Edit::Replace(..) | Edit::Splice { .. } => {}
        }
    }
    bytes
}

/// A corpus entry with a few edits.
fn mutated(entries: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(entries),
        prop::collection::vec(edit(), 0..8),
    )
        .prop_map(|(entry, edits)| apply(entry, &edits))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn xfcc_corpus_parses_as_named_and_mutations_never_panic() {
    let entries = corpus("xfcc");
    for (name, bytes) in &entries {
        let parsed = xfcc::parse(&text(bytes));
        assert_eq!(
            parsed.is_ok(),
            name.starts_with("ok-"),
            "{name}: {parsed:?}"
        );
    }
    let inputs = entries.into_iter().map(|(_, b)| b).collect();
    runner()
        .run(&mutated(inputs), |bytes| {
            let header = text(&bytes);
            if let Ok(elements) = xfcc::parse(&header) {
                // What is accepted was in the grammar: printable ASCII,
                // bounded, at least one element.
                prop_assert!(header.len() <= xfcc::MAX_LEN);
                prop_assert!(
                    header
                        .bytes()
                        .all(|b| b.is_ascii() && !b.is_ascii_control())
                );
                prop_assert!(!elements.is_empty());
                // A value cannot contain an unescaped element separator
                // unless quoted: re-parsing is stable.
                prop_assert_eq!(xfcc::parse(&header).ok(), Some(elements));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn share_token_corpus_reads_as_named_and_mutations_never_panic() {
    let entries = corpus("share_token");
    for (name, bytes) in &entries {
        let claims = read_claims(text(bytes).trim_end());
        assert_eq!(
            claims.is_ok(),
            name.starts_with("ok-"),
            "{name}: {claims:?}"
        );
    }
    let inputs = entries.into_iter().map(|(_, b)| b).collect();
    runner()
        .run(&mutated(inputs), |bytes| {
            let token = text(&bytes);
            match read_claims(&token) {
                Ok(_) => {
                    prop_assert!(token.len() <= share_token::MAX_TOKEN_LEN);
                    prop_assert_eq!(token.split('.').count(), 3);
                }
                // Errors never carry the token.
                Err(err) => prop_assert!(token.len() < 8 || !err.to_string().contains(&token)),
            }
            Ok(())
        })
        .unwrap();
}

/// A classify corpus entry: `key: value` head lines, a blank line, the body.
struct Answer {
    expect: String,
    share: bool,
    status: u16,
    retry_after: Option<String>,
    request_id: Option<String>,
    body: Vec<u8>,
}

fn answer(name: &str, bytes: &[u8]) -> Answer {
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("{name}: no blank line after the head"));
    let head = text(&bytes[..split]);
    let field = |key: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": ").map(str::to_owned))
    };
    Answer {
        expect: field("expect").unwrap_or_else(|| panic!("{name}: no expect")),
        share: field("endpoint").as_deref() == Some("share"),
        status: field("status").and_then(|s| s.parse().ok()).unwrap(),
        retry_after: field("retry-after"),
        request_id: field("x-request-id"),
        body: bytes[split + 2..].to_vec(),
    }
}

/// What the classifier made of an answer, as the caller sees it.
fn classified_reason(err: DiditError) -> &'static str {
    GatewayError::Upstream(err).code_and_reason().1
}

#[test]
fn classify_corpus_classifies_as_documented_and_arbitrary_answers_never_panic() {
    let entries = corpus("classify");
    for (name, bytes) in &entries {
        let a = answer(name, bytes);
        let err = classify_answer(
            a.share,
            a.status,
            &a.body,
            a.retry_after.as_deref(),
            a.request_id.as_deref(),
            &[],
        );
        assert_eq!(classified_reason(err), a.expect, "{name}");
    }
    let bodies: Vec<Vec<u8>> = entries
        .iter()
        .map(|(name, bytes)| answer(name, bytes).body)
        .collect();
    let secret = "[a-z0-9]{8,24}";
    let strategy = (
        any::<bool>(),
        prop_oneof![300..600u16, any::<u16>()],
        mutated(bodies),
        proptest::option::of(".{0,40}"),
        proptest::option::of(".{0,300}"),
        secret,
        any::<usize>(),
    );
    runner()
        .run(
            &strategy,
            |(share, status, body, retry_after, request_id, secret, at)| {
                // The request's secret, echoed somewhere in Didit's body.
                let mut body = body;
                let at = at % (body.len() + 1);
                body.splice(at..at, secret.bytes());
                let err = classify_answer(
                    share,
                    status,
                    &body,
                    retry_after.as_deref(),
                    request_id.as_deref(),
                    &[&secret],
                );
                let shown = format!("{err} {err:?}");
                prop_assert!(!shown.contains(&secret), "the secret is kept: {shown}");
                let _ = classified_reason(err);
                Ok(())
            },
        )
        .unwrap();
}
