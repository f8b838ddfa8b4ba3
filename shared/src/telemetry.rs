//! Logs, traces and metrics. Logs go to stderr (`RUST_LOG` filters them) as text, coloured only on
//! a terminal, or as JSON lines with `MLOPS_LOG_FORMAT=json` ([`LogFormat`]); spans are exported over
//! OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; W3C trace context crosses NATS headers and
//! gRPC metadata through one injector/extractor pair, so one trace spans the whole cascade.
//! Prometheus metrics are rendered by [`prometheus`].

mod json;

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

use anyhow::bail;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

/// Flushes spans when dropped; keep it alive for the life of `main`.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// How log lines are written to stderr, from `MLOPS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default), coloured only when stderr is a terminal and
    /// `NO_COLOR` is unset, so a log file or a pipe never gets escape codes.
    Text,
    /// One JSON object a line for log collectors: `timestamp`, `level`, `target`, `message`,
    /// `fields`, `span`, `spans` and, inside a traced span, `trace_id`.
    Json,
}

impl LogFormat {
    /// The format `MLOPS_LOG_FORMAT` names: `text` (also when unset or empty) or `json`.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("MLOPS_LOG_FORMAT") {
            Ok(value) => Self::parse(&value),
            Err(std::env::VarError::NotPresent) => Ok(Self::Text),
            Err(std::env::VarError::NotUnicode(v)) => bail!("MLOPS_LOG_FORMAT must be `text` or `json`, not {v:?}"),
        }
    }

    fn parse(value: &str) -> anyhow::Result<Self> {
        match value.trim() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => bail!("MLOPS_LOG_FORMAT must be `text` or `json`, not `{other}`"),
        }
    }
}

/// Installs the global subscriber for `service`, logging as `MLOPS_LOG_FORMAT` says. Spans always
/// get trace ids (so context propagates); they are exported only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(service: &str) -> anyhow::Result<TelemetryGuard> {
    let format = LogFormat::from_env()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned()).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let exporting = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty());
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service.to_owned());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn,h2=warn,tower=warn"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    subscriber(format, colour, filter, std::io::stderr, tracer).try_init()?;
    if exporting {
        tracing::info!("exporting traces over otlp");
    }
    // The metrics recorder from the start, so nothing counted before the first scrape is lost.
    prometheus();
    Ok(TelemetryGuard { provider })
}

/// The subscriber [`init`] installs: `filter`, then log lines in `format` to `writer` (text
/// coloured when `colour`), then spans with trace ids from `tracer`.
fn subscriber<W>(
    format: LogFormat,
    colour: bool,
    filter: EnvFilter,
    writer: W,
    tracer: SdkTracer,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // Boxed rather than optional: an `Option` layer does not pass on the dispatcher the JSON
    // layer needs to look up trace ids.
    let logs = match format {
        LogFormat::Text => fmt::layer().with_writer(writer).with_target(false).with_ansi(colour).boxed(),
        LogFormat::Json => json::JsonLayer::new(writer).boxed(),
    };
    tracing_subscriber::registry().with(filter).with(logs).with(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// The W3C `traceparent` of the current span, if it has a valid trace context.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// `message` as a gRPC request carrying the current span's W3C trace context (`traceparent`
/// metadata), so that the service it goes to continues the same trace ([`crate::http::serve`]
/// picks it up).
pub fn traced<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(tp) = current_traceparent().and_then(|tp| tp.parse().ok()) {
        req.metadata_mut().insert("traceparent", tp);
    }
    req
}

/// Makes the trace in `traceparent` the parent of `span`. Invalid values are ignored.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Histograms, not summaries, so dashboards can aggregate across replicas.
        let buckets =
            [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
        let recorder =
            PrometheusBuilder::new().set_buckets(&buckets).expect("the bucket list is not empty").build_recorder();
        let handle = recorder.handle();
        // Histogram samples wait in the recorder until they are folded into buckets, which
        // `build_recorder` leaves to each scrape: with nobody scraping, every request's sample
        // stayed (about 18 B a request, found by `just soak`). Fold them every 5 s regardless.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        // Another recorder may already be installed (several services in one test process);
        // this handle then renders only what it records, which is still valid output.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_is_text_or_json_and_anything_else_is_named() {
        assert_eq!(LogFormat::parse("").unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse("text").unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(" json ").unwrap(), LogFormat::Json);
        let e = LogFormat::parse("JSONL").unwrap_err().to_string();
        assert_eq!(e, "MLOPS_LOG_FORMAT must be `text` or `json`, not `JSONL`");
    }
}
