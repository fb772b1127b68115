//! W3C Trace Context: which `traceparent` a caller sent is forwarded to
//! Didit, and the fresh one started when it sent none or a malformed one
//! (so that every upstream call carries a valid trace).
//!
//! The rules (<https://www.w3.org/TR/trace-context/#traceparent-header>):
//! `version-traceid-parentid-flags`, all lowercase hex; version 2 digits,
//! not `ff`; trace-id 32 digits, not all zero; parent-id 16 digits, not all
//! zero; flags 2 digits. Version `00` is exactly 55 characters; a later
//! version may append `-...` fields, which are dropped (it is forwarded as
//! version `00`, the one this code knows).

/// Length of a version-00 `traceparent`.
const LEN: usize = 55;

/// The `traceparent` to send upstream: the caller's when it is valid, else
/// a fresh one with random ids (sampled flag off).
pub fn upstream_traceparent(caller: Option<&str>) -> String {
    caller.and_then(parse).unwrap_or_else(fresh)
}

/// The caller's `traceparent` in version-00 form, if it is valid.
pub fn parse(value: &str) -> Option<String> {
    let head = value.get(..LEN).filter(|head| head.is_ascii())?;
    let bytes = head.as_bytes();
    let version = &head[..2];
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    if version == "00" && value.len() != LEN {
        return None;
    }
    if value.len() > LEN && !value[LEN..].starts_with('-') {
        return None;
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (trace_id, parent_id, flags) = (&head[3..35], &head[36..52], &head[53..55]);
    let valid = is_lower_hex(trace_id)
        && is_lower_hex(parent_id)
        && is_lower_hex(flags)
        && !all_zero(trace_id)
        && !all_zero(parent_id);
    valid.then(|| format!("00-{trace_id}-{parent_id}-{flags}"))
}

/// A new trace: random non-zero trace and parent ids, not sampled.
pub fn fresh() -> String {
    let trace_id = rand::random::<u128>().max(1);
    let parent_id = rand::random::<u64>().max(1);
    format!("00-{trace_id:032x}-{parent_id:016x}-00")
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_traceparents_are_kept() {
        assert_eq!(parse(VALID).as_deref(), Some(VALID));
        // A later version with an extra field: forwarded as version 00.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(parse(v1).as_deref(), Some(VALID));
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-not-a-trace-01",
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // Version ff.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero trace id, all-zero parent id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version 00 with trailing data.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            // A later version glued to more data without a dash.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // Wrong separators, non-hex flags.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            // Multi-byte characters where hex belongs must not panic.
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_fresh_trace_is_valid_and_new() {
        let a = fresh();
        assert_eq!(parse(&a).as_deref(), Some(a.as_str()));
        assert_ne!(a, fresh());
        assert_eq!(upstream_traceparent(Some(VALID)), VALID);
        let replaced = upstream_traceparent(Some("00-xyz-00f067aa0ba902b7-01"));
        assert!(parse(&replaced).is_some());
    }
}
