//! The Redis key layout. Every per-import key carries the Redis Cluster
//! hash tag `{tenant:hash}`, so one import's record, lease, in-doubt mark
//! (and its channel name) live in one slot and scripts may touch them
//! together; budget keys carry `{tenant}`.
//!
//! ```text
//! {prefix}:record:{tenant:sha256hex}    sealed replay record       PX replay window
//! {prefix}:lease:{tenant:sha256hex}     lease owner token           PX lease ttl
//! {prefix}:indoubt:{tenant:sha256hex}   sealed in-doubt mark        PX replay window
//! {prefix}:done:{tenant:sha256hex}      pub/sub channel: "record" or "released"
//! {prefix}:budget:{tenant}              GCRA theoretical arrival time, µs since the epoch
//! {prefix}:pause:{tenant}               budget paused until, µs since the epoch
//! {prefix}:events:{tenant}...           the session event log (`webhooks::redis`), sealed
//! ```
//!
//! A tenant id is written as is when it is made of `A-Z a-z 0-9 - _ .`
//! (config validation allows nothing else); any other byte is
//! percent-encoded, so no tenant can break out of its hash tag.

use std::fmt::Write as _;

use super::ImportId;

/// Builds key names under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    fn import(&self, kind: &str, id: &ImportId) -> String {
        let mut key = format!("{}:{kind}:{{", self.prefix);
        push_tenant(&mut key, id.tenant());
        key.push(':');
        for byte in id.token_sha256() {
            let _ = write!(key, "{byte:02x}");
        }
        key.push('}');
        key
    }

    /// The sealed replay record.
    pub fn record(&self, id: &ImportId) -> String {
        self.import("record", id)
    }

    /// The in-flight lease.
    pub fn lease(&self, id: &ImportId) -> String {
        self.import("lease", id)
    }

    /// The sealed in-doubt mark.
    pub fn in_doubt(&self, id: &ImportId) -> String {
        self.import("indoubt", id)
    }

    /// The channel announcing a stored record or a released lease.
    pub fn done_channel(&self, id: &ImportId) -> String {
        self.import("done", id)
    }

    /// The pattern matching every done channel under this prefix.
    pub fn done_pattern(&self) -> String {
        format!("{}:done:*", self.prefix)
    }

    /// The tenant's budget (GCRA state).
    pub fn budget(&self, tenant: &str) -> String {
        self.tenant("budget", tenant)
    }

    /// The tenant's budget pause.
    pub fn pause(&self, tenant: &str) -> String {
        self.tenant("pause", tenant)
    }

    fn tenant(&self, kind: &str, tenant: &str) -> String {
        let mut key = format!("{}:{kind}:{{", self.prefix);
        push_tenant(&mut key, tenant);
        key.push('}');
        key
    }
}

fn push_tenant(key: &mut String, tenant: &str) {
    for byte in tenant.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.') {
            key.push(char::from(byte));
        } else {
            let _ = write!(key, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_import_keys_share_one_hash_tag() {
        let keys = Keys::new("dsg");
        let id = ImportId::new("brand-a", [0xab; 32]);
        let tag = format!("{{brand-a:{}}}", "ab".repeat(32));
        assert_eq!(keys.record(&id), format!("dsg:record:{tag}"));
        assert_eq!(keys.lease(&id), format!("dsg:lease:{tag}"));
        assert_eq!(keys.in_doubt(&id), format!("dsg:indoubt:{tag}"));
        assert_eq!(keys.done_channel(&id), format!("dsg:done:{tag}"));
        assert_eq!(keys.budget("brand-a"), "dsg:budget:{brand-a}");
        assert_eq!(keys.pause("brand-a"), "dsg:pause:{brand-a}");
    }

    #[test]
    fn a_tenant_cannot_escape_its_tag() {
        let keys = Keys::new("dsg");
        assert_eq!(keys.budget("a}b{c:d"), "dsg:budget:{a%7Db%7Bc%3Ad}");
    }
}
