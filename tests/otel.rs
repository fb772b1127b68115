//! OpenTelemetry tracing end to end: a real OTLP/gRPC receiver (the
//! collector's `TraceService`) on 127.0.0.1:0, the gateway's own
//! subscriber with the OTel layer, one share call carrying a W3C
//! `traceparent`. The server span continues the caller's trace, the
//! client span of the Didit attempt has the HTTP attributes, and its
//! context is the `traceparent` Didit receives. A binary of its own: it
//! installs a global subscriber.

#[path = "support/captured.rs"]
mod captured;
#[path = "gateway/env.rs"]
mod common;
#[path = "support/recorder.rs"]
mod recorder;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use captured::Captured;
use common::{TestEnv, demo, reason, with_tenant};
use didit_sandbox::SandboxConfig;
use didit_share_gateway::otel::Tracing;
use didit_share_gateway::proto::ShareSessionRequest;
use didit_share_gateway::telemetry;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use recorder::Recorder;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The spans the receiver got.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_and_the_trace_reaches_didit() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let tracing = Tracing::with_endpoint(&format!("http://{collector}")).unwrap();
    let logs = Captured::default();
    telemetry::subscriber_with_tracer(
        true,
        false,
        EnvFilter::new("info"),
        logs.clone(),
        Some(tracing.tracer()),
    )
    .init();

    let recorder = Recorder::default();
    let didit = recorder.start().await;
    let env = TestEnv::start_with(SandboxConfig::default(), |config| {
        config.upstream.base_url = didit.clone();
    })
    .await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = with_tenant(
        "service-x",
        ShareSessionRequest {
            session_id: uuid::Uuid::new_v4().to_string(),
            for_application_id: demo("service-y").application_id.to_string(),
            ttl_seconds: None,
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{caller_trace}-{caller_span}-01")
            .parse()
            .unwrap(),
    );
    let status = env
        .share_client
        .clone()
        .share_session(request)
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "SESSION_NOT_FOUND");

    // The batch processor exports on its own thread; wait for both spans.
    let flushing = tokio::task::spawn_blocking(move || {
        tracing.flush();
        tracing
    });
    let tracing = flushing.await.unwrap();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    let (server, client) = loop {
        let spans = receiver
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let server = spans.iter().find(|s| s.name == "ShareSession").cloned();
        let client = spans.iter().find(|s| s.name == "POST").cloned();
        if let (Some(server), Some(client)) = (server, client) {
            break (server, client);
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "spans did not arrive: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The server span continues the caller's trace.
    assert_eq!(hex(&server.trace_id), caller_trace);
    assert_eq!(hex(&server.parent_span_id), caller_span);
    assert_eq!(server.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attribute(&server, "rpc.grpc.status_code"),
        Some(Value::IntValue(5)),
        "NOT_FOUND"
    );
    // The client span is its child, with the HTTP attributes.
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(client.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(
        attribute(&client, "http.request.method"),
        Some(Value::StringValue("POST".into()))
    );
    assert_eq!(
        attribute(&client, "http.response.status_code"),
        Some(Value::IntValue(404))
    );
    assert_eq!(
        attribute(&client, "server.address"),
        Some(Value::StringValue("127.0.0.1".into()))
    );
    match attribute(&client, "url.full") {
        Some(Value::StringValue(url)) => {
            assert!(url.starts_with(&didit) && !url.contains('?'), "{url}")
        }
        other => panic!("url.full: {other:?}"),
    }
    // Didit's parent is the client span.
    let seen = recorder.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["traceparent"].to_str().unwrap(),
        format!("00-{caller_trace}-{}-01", hex(&client.span_id))
    );
    // The call's log line names the trace and the server span.
    let text = logs.text();
    let call: serde_json::Value = logs
        .lines()
        .into_iter()
        .find(|l| l["message"] == "call failed")
        .unwrap_or_else(|| panic!("no call line in\n{text}"));
    assert_eq!(call["trace_id"], caller_trace, "{call}");
    assert_eq!(call["span_id"], hex(&server.span_id), "{call}");
    assert_eq!(call["reason"], "SESSION_NOT_FOUND");
    // No key in any span.
    let exported = format!("{server:?}{client:?}");
    for app in didit_sandbox::demo_applications() {
        assert!(!exported.contains(&app.api_key));
    }
    env.stop().await;
    tokio::task::spawn_blocking(move || tracing.shutdown())
        .await
        .unwrap();
}
