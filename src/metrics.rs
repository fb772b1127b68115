//! The gateway's Prometheus metrics: one registry, typed label sets, and
//! small recording helpers the rest of the code calls. Labels never carry a
//! key, a token or personal data; the tenant label is a configured tenant id
//! (or `unknown`), so cardinality is bounded by the config.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `ShareSession` or `ImportSharedSession`.
    pub method: &'static str,
    /// A configured tenant id, or `unknown`.
    pub tenant: String,
    /// The gRPC code name (`OK`, `NOT_FOUND`, ...).
    pub code: &'static str,
}

/// Labels of a latency observation of a gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLatencyLabels {
    /// `ShareSession` or `ImportSharedSession`.
    pub method: &'static str,
    /// A configured tenant id, or `unknown`.
    pub tenant: String,
}

/// Labels of an upstream HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `share` or `import`.
    pub endpoint: &'static str,
    /// The HTTP status, or `error` when no response arrived.
    pub status: String,
}

/// Labels naming an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `share` or `import`.
    pub endpoint: &'static str,
}

/// Labels naming a tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// A configured tenant id.
    pub tenant: String,
}

/// Labels of a partner-policy refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyRefusalLabels {
    /// A configured tenant id.
    pub tenant: String,
    /// The refusal's name ([`crate::policy::Refusal::name`]).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the gateway exports. Cheap to clone (all handles are Arcs).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// gRPC calls by method, tenant and code.
    pub rpcs: Family<RpcLabels, Counter>,
    /// gRPC call latency by method and tenant (seconds).
    pub rpc_latency: HistogramFamily<RpcLatencyLabels>,
    /// gRPC calls being served now.
    pub rpcs_in_flight: Gauge,
    /// Upstream requests by endpoint and HTTP status.
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    /// Upstream request latency by endpoint (seconds).
    pub upstream_latency: HistogramFamily<EndpointLabels>,
    /// Upstream requests in flight now.
    pub upstream_in_flight: Gauge,
    /// Upstream retries by endpoint.
    pub upstream_retries: Family<EndpointLabels, Counter>,
    /// Retries the retry budget refused.
    pub retry_budget_exhausted: Family<EndpointLabels, Counter>,
    /// Calls that joined an identical call already in flight.
    pub coalesced_waiters: Family<EndpointLabels, Counter>,
    /// Imports answered from the replay store.
    pub replays: Counter,
    /// Imports refused because a stored import had other parameters.
    pub replay_mismatches: Counter,
    /// Import results written to the replay store.
    pub replay_stored: Counter,
    /// Replay entries evicted for size (expiry is not counted).
    pub replay_evictions: Counter,
    /// Imports whose lost answer was found again through Didit.
    pub import_recoveries: Counter,
    /// 1 while the shared state store is reachable, else 0.
    pub state_available: Gauge,
    /// Import tasks running upstream work detached from their callers.
    pub detached_in_flight: Gauge,
    /// Calls shed by the concurrency limit.
    pub shed: Counter,
    /// Requests to Didit refused by the tenant's Didit budget.
    pub tenant_rate_limited: Family<TenantLabels, Counter>,
    /// Requests to Didit that waited for a slot of the tenant's budget.
    pub budget_waits: Family<TenantLabels, Counter>,
    /// Seconds spent waiting for slots of the tenant's budget.
    pub budget_wait_seconds: Family<TenantLabels, Counter<f64>>,
    /// API key file reloads that failed (the last good key stays in use).
    pub key_reload_failures: Family<TenantLabels, Counter>,
    /// Calls refused by a tenant's partner policy, by tenant and reason.
    pub policy_refusals: Family<PolicyRefusalLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under `dsg_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dsg");
        let rpcs = Family::default();
        registry.register(
            "grpc_requests",
            "gRPC calls by method, tenant and code",
            rpcs.clone(),
        );
        let rpc_latency: HistogramFamily<RpcLatencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency",
            rpc_latency.clone(),
        );
        let rpcs_in_flight = Gauge::default();
        registry.register(
            "grpc_requests_in_flight",
            "gRPC calls being served",
            rpcs_in_flight.clone(),
        );
        let upstream_requests = Family::default();
        registry.register(
            "upstream_requests",
            "Requests to Didit by endpoint and HTTP status",
            upstream_requests.clone(),
        );
        let upstream_latency: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_request_duration_seconds",
            "Didit request latency",
            upstream_latency.clone(),
        );
        let upstream_in_flight = Gauge::default();
        registry.register(
            "upstream_requests_in_flight",
            "Requests to Didit in flight",
            upstream_in_flight.clone(),
        );
        let upstream_retries = Family::default();
        registry.register(
            "upstream_retries",
            "Retried Didit requests",
            upstream_retries.clone(),
        );
        let retry_budget_exhausted = Family::default();
        registry.register(
            "upstream_retry_budget_exhausted",
            "Retries refused by the retry budget",
            retry_budget_exhausted.clone(),
        );
        let coalesced_waiters = Family::default();
        registry.register(
            "coalesced_waiters",
            "Calls that joined an identical call in flight",
            coalesced_waiters.clone(),
        );
        let replays = Counter::default();
        registry.register(
            "import_replays",
            "Imports answered from the replay store",
            replays.clone(),
        );
        let replay_mismatches = Counter::default();
        registry.register(
            "import_replay_mismatches",
            "Imports refused because the stored import had other parameters",
            replay_mismatches.clone(),
        );
        let replay_stored = Counter::default();
        registry.register(
            "import_replay_stored",
            "Import results stored for replay",
            replay_stored.clone(),
        );
        let replay_evictions = Counter::default();
        registry.register(
            "import_replay_evictions",
            "Replay entries evicted by the byte bound",
            replay_evictions.clone(),
        );
        let import_recoveries = Counter::default();
        registry.register(
            "import_recoveries",
            "Imports whose lost answer was found again through Didit",
            import_recoveries.clone(),
        );
        let state_available = Gauge::default();
        registry.register(
            "state_available",
            "1 while the shared state store is reachable, else 0",
            state_available.clone(),
        );
        let detached_in_flight = Gauge::default();
        registry.register(
            "upstream_detached_in_flight",
            "Import tasks doing upstream work detached from their callers",
            detached_in_flight.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "shed_requests",
            "Calls shed by the concurrency limit",
            shed.clone(),
        );
        let tenant_rate_limited = Family::default();
        registry.register(
            "tenant_rate_limited",
            "Requests to Didit refused by the tenant's Didit budget",
            tenant_rate_limited.clone(),
        );
        let budget_waits = Family::default();
        registry.register(
            "budget_waits",
            "Requests to Didit that waited for a slot of the tenant's budget",
            budget_waits.clone(),
        );
        let budget_wait_seconds = Family::<TenantLabels, Counter<f64>>::default();
        registry.register(
            "budget_wait_seconds",
            "Seconds spent waiting for slots of the tenant's Didit budget",
            budget_wait_seconds.clone(),
        );
        let key_reload_failures = Family::default();
        registry.register(
            "api_key_reload_failures",
            "API key reloads that failed; the last good key stays in use",
            key_reload_failures.clone(),
        );
        let policy_refusals = Family::default();
        registry.register(
            "policy_refusals",
            "Calls refused by a tenant's partner policy (data-sharing agreements)",
            policy_refusals.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information", build_info);
        // Export the per-endpoint counters at 0 from the start: a series that
        // appears only on its first event reads as "absent", not "0", to
        // rate() and to alerts.
        for endpoint in ["share", "import"] {
            let label = EndpointLabels { endpoint };
            let _ = upstream_retries.get_or_create(&label);
            let _ = retry_budget_exhausted.get_or_create(&label);
            let _ = coalesced_waiters.get_or_create(&label);
        }
        Self {
            registry: Arc::new(registry),
            rpcs,
            rpc_latency,
            rpcs_in_flight,
            upstream_requests,
            upstream_latency,
            upstream_in_flight,
            upstream_retries,
            retry_budget_exhausted,
            coalesced_waiters,
            replays,
            replay_mismatches,
            replay_stored,
            replay_evictions,
            import_recoveries,
            state_available,
            detached_in_flight,
            shed,
            tenant_rate_limited,
            budget_waits,
            budget_wait_seconds,
            key_reload_failures,
            policy_refusals,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
