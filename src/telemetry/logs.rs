//! Log lines as JSON, one object per line, for log collectors (the default when stderr is not
//! a terminal): time, level, target, message, the event's fields, the fields of the spans it
//! happened in (queue, message id, workflow id, step…), and the trace and span ids when the
//! span is traced, so a line leads to its trace. Fields hold what the code logs; nothing logs
//! a secret (configuration secrets are `SecretString`s, shown redacted).

use std::io::Write;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

#[derive(Default)]
pub struct JsonLines {
    /// The subscriber this layer is part of, to find a span's OpenTelemetry ids.
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

/// A span's fields, kept with the span for the lines logged in it: a short list under the
/// fields' own (static) names, without the `otel.*` ones — a span is made for every message,
/// run and step, and most never see a line.
#[derive(Default)]
struct SpanFields(Vec<(&'static str, Value)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, value: Value) {
        if !loggable(name) {
            return;
        }
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if loggable(field.name()) {
            self.set(field.name(), Value::from(format!("{value:?}")));
        }
    }
}

/// An event's fields, into its line.
struct Collect<'a>(&'a mut Map<String, Value>);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

/// `otel.*` fields steer the exporter; they are not worth a log line's room.
fn loggable(name: &str) -> bool {
    !name.starts_with("otel.")
}

impl<S> tracing_subscriber::Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(f) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(f);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(now_rfc3339()));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        let mut leaf = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &f.0 {
                        line.insert((*k).to_owned(), v.clone());
                    }
                }
                line.insert("span".into(), Value::from(span.name()));
                leaf = Some(span.id());
            }
        }
        let mut fields = Map::new();
        event.record(&mut Collect(&mut fields));
        line.extend(fields);
        if let (Some(id), Some(dispatch)) = (leaf, self.dispatch.get().and_then(|d| d.upgrade()))
            && let Some(cx) = tracing_opentelemetry::get_otel_context(&id, &dispatch)
        {
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                line.insert("trace_id".into(), Value::from(sc.trace_id().to_string()));
                line.insert("span_id".into(), Value::from(sc.span_id().to_string()));
            }
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // One write per line, so concurrent lines do not interleave.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
