//! Telemetry: logs, traces and metrics, set up once and kept apart from the request path.
//!
//! * Logs go through `tracing-subscriber`, JSON or pretty, filtered by `RUST_LOG`.
//! * Audit events ([`audit`]) have a layer of their own: always JSON, always recorded, to
//!   `SESSIOND_AUDIT_LOG` (a file, appended to) or standard error, and never in the diagnostic
//!   log as well.
//! * Traces go over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (standard `OTEL_*`
//!   variables for service name and sampler); without it there is no exporter and no
//!   OpenTelemetry layer at all, so tracing costs nothing.
//! * Metrics ([`metrics::Metrics`]) are per application and served on the admin listener.
//!
//! Nothing secret is ever recorded: spans and log lines name a session by its public id.

pub mod audit;
pub mod http;
pub(crate) mod log_budget;
pub mod metrics;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::config::{Config, LogFormat};

static TRACING_ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`init`] installed an OpenTelemetry pipeline in this process.
#[must_use]
pub fn tracing_enabled() -> bool {
    TRACING_ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keeps the trace pipeline alive; dropping it flushes pending spans.
#[must_use = "dropping the guard shuts tracing down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: flushing traces failed: {error}");
            }
        }
    }
}

/// Install logging and, when configured, trace export. Call once, before the runtime starts
/// (the OTLP client is blocking and runs on its own thread).
///
/// # Errors
/// When the audit log file (`SESSIOND_AUDIT_LOG`) cannot be opened for appending.
pub fn init(config: &Config) -> Result<TelemetryGuard, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = match format!("{}=off", audit::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let audit_writer = match &config.audit_log {
        Some(path) => {
            let file =
                std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|error| {
                    format!("error: SESSIOND_AUDIT_LOG: cannot append to {}: {error}", path.display())
                })?;
            BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let audit = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(audit_writer)
        .with_filter(Targets::new().with_target(audit::TARGET, tracing::Level::INFO));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.log_format {
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).with_span_list(true).boxed(),
        LogFormat::Pretty => fmt.boxed(),
    }
    .with_filter(filter);

    let provider = otlp_provider();
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("sessiond")).with_filter(LevelFilter::INFO)
    });
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    if tracing_subscriber::registry().with(fmt).with(audit).with(otel).try_init().is_err() {
        eprintln!("warning: a logger was already installed");
    }
    if provider.is_some() {
        TRACING_ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    Ok(TelemetryGuard { provider })
}

fn otlp_provider() -> Option<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .ok()
        .filter(|e| !e.trim().is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("warning: OTLP endpoint {endpoint:?} unusable, traces disabled: {error}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("sessiond");
    }
    Some(SdkTracerProvider::builder().with_resource(resource.build()).with_batch_exporter(exporter).build())
}
