//! Log lines as JSON for log collectors (`MLOPS_LOG_FORMAT=json`): one object a line with the
//! event's `timestamp` (RFC 3339, UTC), `level`, `target`, `message` and other `fields`, the `span`
//! it happened in (its name and fields) with the names of the enclosing `spans`, and the
//! OpenTelemetry `trace_id` of that span, so a log line is found from a trace and back.

use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

/// Writes every event as one JSON line to what `make_writer` makes.
pub(crate) struct JsonLayer<W> {
    make_writer: W,
    /// The subscriber this layer is part of, to ask the OpenTelemetry layer for a span's trace.
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> JsonLayer<W> {
    pub(crate) fn new(make_writer: W) -> Self {
        Self { make_writer, dispatch: OnceLock::new() }
    }

    /// The trace id of span `id`, when the OpenTelemetry layer gave it a valid one.
    fn trace_id(&self, id: &Id) -> Option<String> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span_context = cx.span().span_context().clone();
        span_context.is_valid().then(|| span_context.trace_id().to_string())
    }

    /// The JSON object of `event`, which happened in `span` (if any).
    fn line<S>(&self, event: &Event<'_>, span: Option<SpanRef<'_, S>>) -> Map<String, Value>
    where
        S: for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(message) = fields.remove("message") {
            line.insert("message".into(), message);
        }
        line.insert("fields".into(), fields.into());
        let Some(span) = span else { return line };
        // Cloned out, so the extensions are not held while the OpenTelemetry layer locks them.
        let mut span_fields = span.extensions().get::<SpanFields>().map(|f| f.0.clone()).unwrap_or_default();
        span_fields.insert("name".into(), span.name().into());
        line.insert("span".into(), span_fields.into());
        let names: Vec<Value> = span.scope().from_root().map(|s| s.name().into()).collect();
        line.insert("spans".into(), names.into());
        if let Some(trace_id) = self.trace_id(&span.id()) {
            line.insert("trace_id".into(), trace_id.into());
        }
        line
    }
}

/// A span's fields as recorded so far, kept in its extensions.
struct SpanFields(Map<String, Value>);

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Fields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = self.line(event, ctx.event_span(event));
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // One write a line, so lines from several threads do not interleave; a log that cannot
        // be written has nowhere to report it.
        let _ = self.make_writer.make_writer_for(event.metadata()).write_all(text.as_bytes());
    }
}

/// Records fields into a JSON object: numbers and booleans as such, everything else as text.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::super::LogFormat;
    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f` under the subscriber `init` installs for JSON logs, writing to a buffer, and
    /// returns what `f` returned and every line written, parsed.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<Map<String, Value>>) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let tracer = SdkTracerProvider::builder().build().tracer("test");
        let filter = tracing_subscriber::EnvFilter::new("info");
        let subscriber = super::super::subscriber(LogFormat::Json, false, filter, move || writer.clone(), tracer);
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).expect("UTF-8");
        assert!(text.ends_with('\n'), "{text:?}");
        let lines = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        (out, lines)
    }

    #[test]
    fn an_event_in_a_traced_span_carries_its_fields_span_and_trace_id() {
        let (trace_id, lines) = logged(|| {
            let outer = tracing::info_span!("handle", pipeline = "churn");
            let _outer = outer.enter();
            let span = tracing::info_span!(
                "request",
                path = "/mlops.v1.Registry/ApplyPipeline",
                status = tracing::field::Empty
            );
            span.record("status", 200);
            let _entered = span.enter();
            tracing::info!(rows = 3, ratio = 0.5, ok = true, name = %"churn", "pipeline applied");
            span.context().span().span_context().trace_id().to_string()
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert!(chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).is_ok(), "{line:?}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["message"], "pipeline applied");
        assert_eq!(line["fields"], serde_json::json!({"rows": 3, "ratio": 0.5, "ok": true, "name": "churn"}));
        let span = serde_json::json!({"name": "request", "path": "/mlops.v1.Registry/ApplyPipeline", "status": 200});
        assert_eq!(line["span"], span);
        assert_eq!(line["spans"], serde_json::json!(["handle", "request"]));
        assert_eq!(trace_id.len(), 32);
        assert_ne!(trace_id, "0".repeat(32));
        assert_eq!(line["trace_id"], trace_id.as_str());
    }

    #[test]
    fn an_event_outside_spans_has_no_trace_and_text_is_escaped() {
        let ((), lines) = logged(|| {
            tracing::warn!(error = "bad \"row\"\n\x1b[31mred", "rejected");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["error"], "bad \"row\"\n\x1b[31mred", "the text survives, escaped");
        for absent in ["span", "spans", "trace_id"] {
            assert!(!line.contains_key(absent), "{absent}: {line:?}");
        }
    }

    #[test]
    fn the_escape_byte_never_reaches_the_output() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || tracing::error!(detail = "\x1b[0m", "oops"));
        let bytes = buffer.0.lock().unwrap().clone();
        assert!(!bytes.contains(&0x1b), "{:?}", String::from_utf8_lossy(&bytes));
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1, "one line");
    }
}
