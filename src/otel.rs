//! OpenTelemetry tracing, off unless the standard environment asks for it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off).
//! Spans go over OTLP/gRPC through a batch processor on its own thread, so
//! an unreachable collector never fails nor slows a call: its spans are
//! dropped once the queue is full. The SDK reads the other standard
//! variables itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_EXPORTER_OTLP_HEADERS`).
//!
//! Each RPC is a server span (`rpc`) continuing the caller's `traceparent`;
//! each Didit attempt a client span (`upstream`) whose context is the
//! `traceparent` sent to Didit.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The service name when `OTEL_SERVICE_NAME` is not set.
const SERVICE_NAME: &str = "didit-share-gateway";

/// The installed tracer provider; [`shutdown`](Self::shutdown) flushes
/// the spans still queued.
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// Tracing was asked for but could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up OpenTelemetry tracing: {0}")]
pub struct TracingError(String);

impl Tracing {
    /// Tracing as the environment asks: `Ok(None)` when it does not. Call
    /// inside a Tokio runtime (the gRPC channel to the collector runs on
    /// it).
    pub fn from_env() -> Result<Option<Self>, TracingError> {
        if !enabled(|name| std::env::var(name).ok()) {
            return Ok(None);
        }
        Self::build(opentelemetry_otlp::SpanExporter::builder().with_tonic()).map(Some)
    }

    /// Tracing to the OTLP/gRPC collector at `endpoint` (other settings
    /// from the environment). Call inside a Tokio runtime.
    pub fn with_endpoint(endpoint: &str) -> Result<Self, TracingError> {
        use opentelemetry_otlp::WithExportConfig as _;
        Self::build(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint),
        )
    }

    fn build(
        builder: opentelemetry_otlp::SpanExporterBuilder<
            opentelemetry_otlp::TonicExporterBuilderSet,
        >,
    ) -> Result<Self, TracingError> {
        let exporter = builder
            .build()
            .map_err(|err| TracingError(err.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self { provider })
    }

    /// The tracer for the tracing-opentelemetry layer.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer(SERVICE_NAME)
    }

    /// Exports what is queued now (blocks until the collector answered or
    /// the export timed out).
    pub fn flush(&self) {
        if let Err(err) = self.provider.force_flush() {
            tracing::warn!(error = %err, "OpenTelemetry flush failed");
        }
    }

    /// Exports what is queued and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "OpenTelemetry shutdown failed");
        }
    }
}

/// Does this environment (`var` reads a variable) turn tracing on?
fn enabled(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Makes `span` continue the trace of a (validated) W3C `traceparent`.
/// Does nothing when tracing is off or there is none.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(parent);
}

/// The W3C `traceparent` naming `span`, when tracing is on.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// The trace and span ids of `span` (hex), when tracing is on.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    let context = span.context();
    let span_ref = context.span();
    let ids = span_ref.span_context();
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// `url` without its query and fragment (never secrets in a span).
pub fn url_without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Records `span`'s trace and span ids in its `trace_id` and `span_id`
/// fields (declared empty), so that [`WithTraceIds`] can put them on
/// every JSON log line written inside it. Nothing when tracing is off.
pub fn record_ids(span: &tracing::Span) {
    if let Some((trace_id, span_id)) = ids(span) {
        span.record("trace_id", trace_id.as_str());
        span.record("span_id", span_id.as_str());
    }
}

/// A JSON event format that adds the `trace_id` and `span_id` of the
/// innermost enclosing span that has them ([`record_ids`]) as top-level
/// fields of each line.
pub struct WithTraceIds<E>(pub E);

impl<S, N, E> FormatEvent<S, N> for WithTraceIds<E>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.event_scope().and_then(|scope| {
            scope.into_iter().find_map(|span| {
                let extensions = span.extensions();
                let fields = extensions.get::<FormattedFields<N>>()?;
                let fields: serde_json::Value =
                    serde_json::from_str(fields.fields.as_str()).ok()?;
                let trace_id = fields.get("trace_id")?.as_str()?.to_owned();
                let span_id = fields.get("span_id")?.as_str()?.to_owned();
                Some((trace_id, span_id))
            })
        });
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            // Ids are hex: nothing to escape.
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}

/// The server a client span names (`server.address`, `server.port`),
/// read once from the base URL rather than from every attempt's URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpPeer {
    /// The host of the URL.
    pub address: String,
    /// Its port, or the scheme's default.
    pub port: Option<u16>,
}

impl HttpPeer {
    /// The peer of `url`; empty when it does not parse.
    pub fn of(url: &str) -> Self {
        reqwest::Url::parse(url)
            .map(|u| Self {
                address: u.host_str().unwrap_or_default().to_owned(),
                port: u.port_or_known_default(),
            })
            .unwrap_or_default()
    }
}

/// The client span of one HTTP attempt (OpenTelemetry HTTP semantic
/// conventions): method, URL without query, server address; the status
/// is recorded when the answer arrives ([`record_http_outcome`]). Never a
/// key, token or body field.
pub fn http_client_span(
    method: &'static str,
    url: &str,
    peer: &HttpPeer,
    attempt: u32,
) -> tracing::Span {
    let url = url_without_query(url);
    let span = tracing::info_span!(
        "upstream",
        "otel.kind" = "client",
        "otel.name" = method,
        "otel.status_code" = tracing::field::Empty,
        "http.request.method" = method,
        "url.full" = url,
        "server.address" = %peer.address,
        "server.port" = peer.port.map(i64::from),
        "http.request.resend_count" = attempt.saturating_sub(1),
        "http.response.status_code" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    record_ids(&span);
    span
}

/// Records an attempt's outcome on its client span: the HTTP status, and
/// an error for 4xx/5xx or no answer (`None`).
pub fn record_http_outcome(span: &tracing::Span, status: Option<u16>) {
    match status {
        Some(status) => {
            span.record("http.response.status_code", i64::from(status));
            if status >= 400 {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", status.to_string());
            }
        }
        None => {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", "transport");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_is_the_base_urls_host_and_port() {
        let peer = HttpPeer::of("https://verification.didit.me");
        assert_eq!(
            (peer.address.as_str(), peer.port),
            ("verification.didit.me", Some(443))
        );
        let peer = HttpPeer::of("http://127.0.0.1:8787/base");
        assert_eq!(
            (peer.address.as_str(), peer.port),
            ("127.0.0.1", Some(8787))
        );
        assert_eq!(HttpPeer::of("not a url"), HttpPeer::default());
    }

    #[test]
    fn only_an_endpoint_turns_tracing_on() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(!enabled(env(&[])));
        assert!(!enabled(env(&[("OTEL_SERVICE_NAME", "x")])));
        assert!(enabled(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4317"
        )])));
        assert!(enabled(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4317"
        )])));
        assert!(!enabled(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true")
        ])));
        assert!(!enabled(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
    }

    #[test]
    fn urls_lose_their_query() {
        assert_eq!(
            url_without_query("https://x/v3/session/1/share/?key=s#f"),
            "https://x/v3/session/1/share/"
        );
    }

    #[test]
    fn without_tracing_there_is_no_context() {
        let span = tracing::info_span!("rpc");
        continue_trace(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent(&span), None);
        assert_eq!(ids(&span), None);
    }
}
