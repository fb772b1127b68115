//! Log set-up: JSON lines when stdout is not a terminal (collectors parse
//! them), human-readable text on one. `RUST_LOG` filters, default `info`.
//!
//! Audit events (target [`crate::audit::TARGET`]) take a layer of their own:
//! always one JSON object per line with `"target":"audit"`, whatever the log
//! format and `RUST_LOG`, so a pipeline can route them to a SIEM by target.

use std::io::IsTerminal as _;

use crate::otel::{Tracing, TracingError};

use opentelemetry_sdk::trace::SdkTracer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The log format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON unless stdout is a terminal.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// True when this format writes JSON to stdout as it is now.
    pub fn is_json(self) -> bool {
        match self {
            Self::Auto => !std::io::stdout().is_terminal(),
            Self::Json => true,
            Self::Text => false,
        }
    }
}

/// Installs the global subscriber (and routes `log` records into it),
/// with OpenTelemetry tracing when the environment asks for it
/// ([`crate::otel`]). Call once, first thing in `main`, inside the Tokio
/// runtime's context; shut the returned tracing down at exit.
pub fn init(format: LogFormat) -> Result<Option<Tracing>, TracingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not for `--log-format text`
    // redirected to a file.
    let ansi = std::io::stdout().is_terminal();
    let tracing = Tracing::from_env()?;
    let tracer = tracing.as_ref().map(Tracing::tracer);
    subscriber_with_tracer(format.is_json(), ansi, filter, std::io::stdout, tracer).init();
    Ok(tracing)
}

/// The subscriber [`init`] installs, writing to `writer` instead of
/// stdout (`ansi` colours the text format); tests capture the gateway's
/// real log lines with it.
pub fn subscriber<W>(
    json: bool,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    subscriber_with_tracer(json, ansi, filter, writer, None)
}

/// [`subscriber`], plus spans to `tracer` when there is one: the gateway's
/// own spans only (target `didit_share_gateway`, not audit events).
pub fn subscriber_with_tracer<W>(
    json: bool,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
    tracer: Option<SdkTracer>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    let not_audit = filter_fn(|meta| meta.target() != crate::audit::TARGET);
    let operational = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(writer.clone());
    let operational = if json {
        operational
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .map_event_format(crate::otel::WithTraceIds)
            .with_filter(not_audit)
            .with_filter(filter)
            .boxed()
    } else {
        operational
            .compact()
            .with_ansi(ansi)
            .with_filter(not_audit)
            .with_filter(filter)
            .boxed()
    };
    let audit = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_writer(writer)
        .with_filter(Targets::new().with_target(crate::audit::TARGET, tracing::Level::INFO));
    let otel = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                Targets::new()
                    .with_target(
                        crate::audit::TARGET,
                        tracing::level_filters::LevelFilter::OFF,
                    )
                    .with_target("didit_share_gateway", tracing::Level::INFO),
            )
    });
    Box::new(
        tracing_subscriber::registry()
            .with(operational)
            .with(audit)
            .with(otel),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;
    use crate::audit::AuditEvent;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[test]
    fn audit_events_are_json_lines_of_their_own_whatever_the_format() {
        for json in [false, true] {
            let captured = Captured::default();
            // Operational logs filtered down to errors: audit still flows.
            let subscriber = subscriber(json, false, EnvFilter::new("error"), captured.clone());
            tracing::subscriber::with_default(subscriber, || {
                tracing::info!("operational line");
                AuditEvent {
                    request_id: "r-1".into(),
                    rpc: "ShareSession",
                    code: "OK",
                    session_id: Some("s-1".into()),
                    ..AuditEvent::default()
                }
                .emit();
            });
            let bytes = captured.0.lock().unwrap().clone();
            let text = String::from_utf8(bytes).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 1, "{text}");
            let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(event["target"], "audit");
            assert_eq!(event["request_id"], "r-1");
            assert_eq!(event["session_id"], "s-1");
            assert_eq!(event["replayed"], false);
            assert!(event.get("new_session_id").is_none());
            assert!(event["timestamp"].is_string());
        }
    }
}
