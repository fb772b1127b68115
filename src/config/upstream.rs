//! `[upstream]`: how the gateway reaches Didit.

use std::time::Duration;

use serde::Deserialize;

use super::{FieldError, parse_duration, positive};
use crate::didit::RetryPolicy;

/// Longest per-attempt timeout allowed.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest `upstream.budget_wait` allowed.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(60);

/// The `[upstream]` section, as [`crate::didit::DiditClient::new`] takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// `https://verification.didit.me`, without a trailing slash.
    pub base_url: String,
    /// Longest time one attempt may take (also capped by the caller's deadline).
    pub timeout: Duration,
    /// Longest time to establish a connection.
    pub connect_timeout: Duration,
    /// Attempts in all (`upstream.max_attempts`) and the backoff between them.
    pub retry: RetryPolicy,
    /// Longest time an attempt waits for a slot of its tenant's Didit
    /// budget (also capped by the caller's deadline); a slot further away
    /// is refused with `TENANT_RATE_LIMITED`. Zero: never wait.
    pub budget_wait: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: "https://verification.didit.me".into(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            retry: RetryPolicy::default(),
            budget_wait: Duration::from_secs(2),
        }
    }
}

impl UpstreamConfig {
    /// Didit at `base_url` (a trailing slash is dropped), defaults otherwise.
    pub fn at(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            ..Self::default()
        }
    }

    /// A base URL, timeouts above zero (the attempt's at most 120 s),
    /// 1 to 10 attempts, a budget wait of at most 60 s.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_base_url(&self.base_url).map_err(|p| FieldError::new("upstream.base_url", p))?;
        positive("upstream.timeout", self.timeout)?;
        if self.timeout > MAX_TIMEOUT {
            return Err(FieldError::new("upstream.timeout", "must be at most 120s"));
        }
        positive("upstream.connect_timeout", self.connect_timeout)?;
        if !(1..=10).contains(&self.retry.max_attempts) {
            return Err(FieldError::new(
                "upstream.max_attempts",
                "must be between 1 and 10",
            ));
        }
        if self.budget_wait > MAX_BUDGET_WAIT {
            return Err(FieldError::new(
                "upstream.budget_wait",
                "must be at most 60s (0s: never wait for a budget slot)",
            ));
        }
        Ok(())
    }
}

/// `[upstream]` as written; `base_url` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamSection {
    base_url: String,
    timeout: Option<String>,
    connect_timeout: Option<String>,
    max_attempts: Option<u32>,
    budget_wait: Option<String>,
}

impl UpstreamSection {
    /// Parses the durations; unset keys take the defaults.
    pub(super) fn into_config(self) -> Result<UpstreamConfig, FieldError> {
        let defaults = UpstreamConfig::at(&self.base_url);
        let at = |key: &'static str| move |problem| FieldError::new(key, problem);
        Ok(UpstreamConfig {
            timeout: parse_duration(self.timeout.as_deref(), defaults.timeout)
                .map_err(at("upstream.timeout"))?,
            connect_timeout: parse_duration(
                self.connect_timeout.as_deref(),
                defaults.connect_timeout,
            )
            .map_err(at("upstream.connect_timeout"))?,
            budget_wait: parse_duration(self.budget_wait.as_deref(), defaults.budget_wait)
                .map_err(at("upstream.budget_wait"))?,
            retry: RetryPolicy {
                max_attempts: self.max_attempts.unwrap_or(defaults.retry.max_attempts),
                ..defaults.retry
            },
            ..defaults
        })
    }
}

fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("must be an http:// or https:// URL".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || parsed.host_str().is_none() {
        return Err("must be a base URL like https://verification.didit.me".into());
    }
    Ok(())
}
