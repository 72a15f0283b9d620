//! The tracing subscriber: text or JSON lines on stderr; `RUST_LOG` overrides `[log] level`.
//!
//! Both formats are flat: the fields of every enclosing span (`batch`, `key`, `action_id`,
//! `attempt` of the action span) sit beside the event's own fields, at the top level of a
//! JSON line, so a log pipeline can filter on `key` without knowing about spans.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Noisy dependency targets kept at warn unless `RUST_LOG` says otherwise (the simulator's
/// deliberate connection drops make actix-http log errors).
const QUIET: &str = "actix_server=warn,actix_http=off,awc=warn";

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},{QUIET}")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(crate::report::LogWriter)
            .fmt_fields(JsonFields::new())
            .event_format(FlatText)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(crate::report::LogWriter)
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
    };
}

/// The fields of every span enclosing `event`, outermost first, later values winning.
/// Spans store their fields as JSON (`JsonFields`), so a field recorded twice (an action's
/// `attempt`) is replaced, not repeated.
fn span_fields<S, N>(ctx: &FmtContext<'_, S, N>) -> Map<String, Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut map = Map::new();
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(fields.as_str()) {
                    map.extend(object);
                }
            }
        }
    }
    map
}

/// One human-readable line per event: time, level, the action's fields, the message,
/// then the event's own fields.
struct FlatText;

impl<S, N> FormatEvent<S, N> for FlatText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let message = match fields.remove("message") {
            Some(Value::String(text)) => text,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        write!(
            writer,
            "{} {:>5}",
            crate::audit::rfc3339_now(),
            event.metadata().level()
        )?;
        let mut spans = span_fields(ctx);
        for name in ["batch", "key", "action_id", "attempt"] {
            if let Some(value) = spans.remove(name) {
                write!(writer, " {name}={}", plain(&value))?;
            }
        }
        for (name, value) in &spans {
            write!(writer, " {name}={}", plain(value))?;
        }
        write!(writer, " {message}")?;
        for (name, value) in &fields {
            write!(writer, " {name}={}", plain(value))?;
        }
        writeln!(writer)
    }
}

/// A JSON value as text: strings bare unless they need quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('=') => s.clone(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// One JSON object per event, span fields flattened in.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::new();
        map.insert("timestamp".into(), crate::audit::rfc3339_now().into());
        map.insert("level".into(), meta.level().as_str().into());
        map.insert("target".into(), meta.target().into());
        map.extend(span_fields(ctx));
        event.record(&mut JsonVisitor(&mut map));
        let line = serde_json::to_string(&Value::Object(map)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields into a JSON map.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}
