//! Fault injection for the v3 endpoints, set through `/_sandbox/faults`:
//! latency, injected error statuses, 429s after n calls, and dropped
//! connections after the request was really processed.
//!
//! The top-level fields apply to the endpoints listed in `endpoints`;
//! `per_endpoint` sets faults of one endpoint alone (e.g. drop the next
//! import's answer while reads stay clean), on top of the top-level ones.
//!
//! Per call the order is: sleep (the endpoint's own `latency_ms`, else the
//! top-level one), then the endpoint's own `fail_next`, then the top-level
//! `fail_next`, `error_rate` and `rate_limit_after` (calls refused before
//! do not use up its allowance), then the request is processed and the
//! endpoint's own `drop_next` / `drop_rate`, then the top-level ones,
//! decide whether its connection is dropped instead of answered.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::api_error::Endpoint;

/// The `PUT /_sandbox/faults` body; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultSpec {
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    error_status: Option<u16>,
    fail_next: Option<u32>,
    rate_limit_after: Option<u32>,
    retry_after_seconds: Option<u32>,
    drop_rate: Option<f64>,
    drop_next: Option<u32>,
    endpoints: Option<Vec<Endpoint>>,
    per_endpoint: Option<BTreeMap<Endpoint, EndpointSpec>>,
}

/// One endpoint's own faults in a `PUT /_sandbox/faults` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSpec {
    latency_ms: Option<u64>,
    fail_next: Option<u32>,
    error_status: Option<u16>,
    drop_next: Option<u32>,
    drop_rate: Option<f64>,
}

/// One endpoint's own faults in force; counters count down.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct EndpointFaults {
    latency_ms: u64,
    fail_next: u32,
    error_status: u16,
    drop_next: u32,
    drop_rate: f64,
}

/// The faults in force (the PUT and GET answer); counters count down.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ActiveFaults {
    latency_ms: u64,
    error_rate: f64,
    error_status: u16,
    fail_next: u32,
    /// Calls still let through before every call answers 429; `None` = off.
    rate_limit_after: Option<u32>,
    retry_after_seconds: u32,
    drop_rate: f64,
    drop_next: u32,
    endpoints: Vec<Endpoint>,
    per_endpoint: BTreeMap<Endpoint, EndpointFaults>,
}

impl Default for ActiveFaults {
    fn default() -> ActiveFaults {
        ActiveFaults {
            latency_ms: 0,
            error_rate: 0.0,
            error_status: 503,
            fail_next: 0,
            rate_limit_after: None,
            retry_after_seconds: 1,
            drop_rate: 0.0,
            drop_next: 0,
            endpoints: vec![Endpoint::Share, Endpoint::Import],
            per_endpoint: BTreeMap::new(),
        }
    }
}

/// A rate in 0..=1 (absent = 0).
fn rate(name: &str, value: Option<f64>) -> Result<f64, String> {
    match value {
        None => Ok(0.0),
        Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Some(r) => Err(format!("{name} must be between 0 and 1, got {r}")),
    }
}

/// An error status in 400..=599 (absent = 503).
fn error_status(name: &str, value: Option<u16>) -> Result<u16, String> {
    let status = value.unwrap_or(503);
    if (400..=599).contains(&status) {
        Ok(status)
    } else {
        Err(format!("{name} must be 400..=599, got {status}"))
    }
}

impl EndpointSpec {
    fn validate(self, endpoint: Endpoint) -> Result<EndpointFaults, String> {
        let name = |field: &str| format!("per_endpoint.{}.{field}", endpoint.as_str());
        Ok(EndpointFaults {
            latency_ms: self.latency_ms.unwrap_or(0),
            fail_next: self.fail_next.unwrap_or(0),
            error_status: error_status(&name("error_status"), self.error_status)?,
            drop_next: self.drop_next.unwrap_or(0),
            drop_rate: rate(&name("drop_rate"), self.drop_rate)?,
        })
    }
}

impl FaultSpec {
    /// Validates the body into the faults to put in force.
    pub(crate) fn validate(self) -> Result<ActiveFaults, String> {
        let defaults = ActiveFaults::default();
        let error_status = error_status("error_status", self.error_status)?;
        let per_endpoint = self
            .per_endpoint
            .unwrap_or_default()
            .into_iter()
            .map(|(endpoint, spec)| Ok((endpoint, spec.validate(endpoint)?)))
            .collect::<Result<_, String>>()?;
        let endpoints = self.endpoints.unwrap_or(defaults.endpoints);
        if endpoints.is_empty() {
            return Err("endpoints must not be empty".to_owned());
        }
        Ok(ActiveFaults {
            latency_ms: self.latency_ms.unwrap_or(0),
            error_rate: rate("error_rate", self.error_rate)?,
            error_status,
            fail_next: self.fail_next.unwrap_or(0),
            rate_limit_after: self.rate_limit_after,
            retry_after_seconds: self
                .retry_after_seconds
                .unwrap_or(defaults.retry_after_seconds),
            drop_rate: rate("drop_rate", self.drop_rate)?,
            drop_next: self.drop_next.unwrap_or(0),
            endpoints,
            per_endpoint,
        })
    }
}

/// What to do with one call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Sleep this long first.
    pub(crate) latency: Option<Duration>,
    pub(crate) action: Action,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Process the request; when `drop`, drop the connection afterwards.
    Proceed { drop: bool },
    /// Answer `status` with `{"detail":"Injected fault."}` unprocessed.
    Fail {
        status: StatusCode,
        retry_after: u32,
    },
    /// Answer 429 (rate limit body and headers) unprocessed.
    RateLimit { retry_after: u32 },
}

/// The fault injector.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    active: Mutex<ActiveFaults>,
}

impl Faults {
    pub(crate) fn set(&self, faults: ActiveFaults) {
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    pub(crate) fn snapshot(&self) -> ActiveFaults {
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Decides the fate of one call to `endpoint` (and counts it down).
    pub(crate) fn plan(&self, endpoint: Endpoint) -> Plan {
        let mut guard = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let f = &mut *guard;
        let targeted = f.endpoints.contains(&endpoint);
        let mut own = f.per_endpoint.get_mut(&endpoint);
        let latency_ms = match own.as_ref().map_or(0, |o| o.latency_ms) {
            0 if targeted => f.latency_ms,
            own => own,
        };
        let latency = (latency_ms > 0).then(|| Duration::from_millis(latency_ms));
        let retry_after = f.retry_after_seconds;
        let fail = |status: u16| Action::Fail {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            retry_after,
        };
        let refused = match own.as_deref_mut() {
            Some(o) if o.fail_next > 0 => {
                o.fail_next -= 1;
                Some(fail(o.error_status))
            }
            _ if !targeted => None,
            _ if f.fail_next > 0 => {
                f.fail_next -= 1;
                Some(fail(f.error_status))
            }
            _ if chance(f.error_rate) => Some(fail(f.error_status)),
            _ if f.rate_limit_after == Some(0) => Some(Action::RateLimit { retry_after }),
            _ => {
                if let Some(n) = f.rate_limit_after.as_mut() {
                    *n -= 1;
                }
                None
            }
        };
        if let Some(action) = refused {
            return Plan { latency, action };
        }
        let drop = own.is_some_and(|o| count_down_or_chance(&mut o.drop_next, o.drop_rate))
            || (targeted && count_down_or_chance(&mut f.drop_next, f.drop_rate));
        Plan {
            latency,
            action: Action::Proceed { drop },
        }
    }
}

/// True while `next` counts down, then with probability `rate`.
fn count_down_or_chance(next: &mut u32, rate: f64) -> bool {
    if *next > 0 {
        *next -= 1;
        true
    } else {
        chance(rate)
    }
}

fn chance(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

/// `response`'s head with a body that fails at once, so hyper aborts the
/// connection instead of completing the answer.
pub(crate) fn dropped(response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let failure = io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "sandbox dropped the connection",
    );
    let body = Body::from_stream(tokio_stream::once(Err::<Bytes, io::Error>(failure)));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<ActiveFaults, String> {
        serde_json::from_str::<FaultSpec>(json)
            .map_err(|e| e.to_string())
            .and_then(FaultSpec::validate)
    }

    #[test]
    fn validation_refuses_out_of_range_and_unknown_fields() {
        assert!(spec(r#"{"error_rate": 1.5}"#).is_err());
        assert!(spec(r#"{"drop_rate": -0.1}"#).is_err());
        assert!(spec(r#"{"error_status": 200}"#).is_err());
        assert!(spec(r#"{"endpoints": []}"#).is_err());
        assert!(spec(r#"{"endpoints": ["delete"]}"#).is_err());
        assert!(spec(r#"{"latency": 5}"#).is_err());
        assert_eq!(spec("{}"), Ok(ActiveFaults::default()));
    }

    #[test]
    fn counters_run_in_the_documented_order() {
        let faults = Faults::default();
        let active =
            spec(r#"{"fail_next": 1, "rate_limit_after": 1, "drop_next": 1, "error_status": 500}"#);
        faults.set(active.unwrap_or_default());
        let fail = Action::Fail {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            retry_after: 1,
        };
        assert_eq!(faults.plan(Endpoint::Import).action, fail);
        assert_eq!(
            faults.plan(Endpoint::Import).action,
            Action::Proceed { drop: true }
        );
        assert_eq!(
            faults.plan(Endpoint::Share).action,
            Action::RateLimit { retry_after: 1 }
        );
        assert_eq!(
            faults.plan(Endpoint::Webhook).action,
            Action::Proceed { drop: false }
        );
        assert_eq!(faults.snapshot().rate_limit_after, Some(0));
    }

    #[test]
    fn endpoints_and_latency_apply_only_where_asked() {
        let faults = Faults::default();
        faults.set(
            spec(r#"{"latency_ms": 25, "error_rate": 1.0, "endpoints": ["share"]}"#)
                .unwrap_or_default(),
        );
        let plan = faults.plan(Endpoint::Share);
        assert_eq!(plan.latency, Some(Duration::from_millis(25)));
        assert!(matches!(
            plan.action,
            Action::Fail {
                status: StatusCode::SERVICE_UNAVAILABLE,
                ..
            }
        ));
        assert_eq!(
            faults.plan(Endpoint::Import),
            Plan {
                latency: None,
                action: Action::Proceed { drop: false }
            }
        );
    }

    #[test]
    fn per_endpoint_faults_apply_to_their_endpoint_alone() {
        let faults = Faults::default();
        let active = spec(
            r#"{"endpoints": ["share"], "drop_next": 1, "per_endpoint": {
                "import": {"drop_next": 1, "latency_ms": 5},
                "decision": {"fail_next": 1, "error_status": 500}}}"#,
        );
        faults.set(active.unwrap_or_default());
        let import = faults.plan(Endpoint::Import);
        assert_eq!(import.latency, Some(Duration::from_millis(5)));
        assert_eq!(import.action, Action::Proceed { drop: true });
        assert_eq!(
            faults.plan(Endpoint::Import).action,
            Action::Proceed { drop: false }
        );
        assert!(matches!(
            faults.plan(Endpoint::Decision).action,
            Action::Fail {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                ..
            }
        ));
        assert_eq!(
            faults.plan(Endpoint::Decision).action,
            Action::Proceed { drop: false }
        );
        assert_eq!(
            faults.plan(Endpoint::List).action,
            Action::Proceed { drop: false }
        );
        // The top-level drop still targets share.
        assert_eq!(
            faults.plan(Endpoint::Share).action,
            Action::Proceed { drop: true }
        );
        let left = serde_json::to_value(faults.snapshot()).unwrap_or_default();
        assert_eq!(left["per_endpoint"]["import"]["drop_next"], 0);
        assert_eq!(left["per_endpoint"]["decision"]["fail_next"], 0);
    }

    #[test]
    fn per_endpoint_validation() {
        assert!(spec(r#"{"per_endpoint": {"delete": {}}}"#).is_err());
        assert!(spec(r#"{"per_endpoint": {"import": {"drop": 1}}}"#).is_err());
        let bad_rate = spec(r#"{"per_endpoint": {"list": {"drop_rate": 2}}}"#);
        assert_eq!(
            bad_rate,
            Err("per_endpoint.list.drop_rate must be between 0 and 1, got 2".to_owned())
        );
        assert!(spec(r#"{"per_endpoint": {"import": {"error_status": 302}}}"#).is_err());
    }
}
