//! Log set-up: JSON lines when stdout is not a terminal (collectors parse
//! them), human-readable text on one. `RUST_LOG` filters, default `info`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
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

/// Installs the global subscriber (and routes `log` records into it).
/// Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not for `--log-format text`
    // redirected to a file.
    let ansi = std::io::stdout().is_terminal();
    subscriber(format.is_json(), ansi, filter, std::io::stdout).init();
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
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        )
    } else {
        Box::new(builder.compact().with_ansi(ansi).finish())
    }
}
