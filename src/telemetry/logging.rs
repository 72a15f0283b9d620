//! The tracing subscriber: text or JSON lines on stderr; `RUST_LOG` overrides `[log] level`.
//!
//! Both formats are flat: the fields of every enclosing span (`batch`, `key`, `action_id`,
//! `attempt` of the action span) sit beside the event's own fields, at the top level of a
//! JSON line, so a log pipeline can filter on `key` without knowing about spans.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::clock::timestamp;
use crate::config::LogFormat;

/// Noisy dependency targets kept at warn unless `RUST_LOG` says otherwise (the simulator's
/// deliberate connection drops make actix-http log errors).
const QUIET: &str = "actix_server=warn,actix_http=off,awc=warn";

/// Why a `[log] level` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// A directive names no level: a bare word is read as a target name, which would
    /// silently log nothing at all (`"verbose"`).
    #[error("{0:?} is not a level: expected error, warn, info, debug, trace or off, or a filter such as \"actionwarden=debug\" whose every part names a level")]
    NotALevel(String),
    /// The filter syntax itself is invalid.
    #[error("invalid filter: {0}")]
    Syntax(String),
}

/// Checks a `[log] level` (or `RUST_LOG`-style filter): a level, or comma-separated
/// directives that each end in a level (`info`, `actionwarden=debug`,
/// `actionwarden[action]=trace`).
pub fn check_filter(filter: &str) -> Result<(), FilterError> {
    if filter.trim().is_empty() {
        return Err(FilterError::NotALevel(filter.to_owned()));
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // The level follows the last `=`; span field filters (`[span{f=1}]`) hold `=` too.
        let level = directive.rsplit_once('=').map_or(directive, |(_, level)| level);
        if LevelFilter::from_str(level.trim()).is_err() {
            return Err(FilterError::NotALevel(directive.to_owned()));
        }
    }
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| FilterError::Syntax(e.to_string()))
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},{QUIET}")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(crate::report::LogWriter)
            .fmt_fields(SpanFields)
            .event_format(FlatText)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(crate::report::LogWriter)
            .fmt_fields(SpanFields)
            .event_format(FlatJson)
            .try_init(),
    };
}

/// How spans keep their fields: the text of a JSON object, a field recorded later
/// appended to it (`{"batch":"b","key":"k","attempt":1,"attempt":2}`). Every action
/// has a span and records its id and attempt into it, mostly while nothing is logged:
/// `JsonFields` parsed and re-serialized the whole object at each `record`; here a
/// record costs an append, and the parse happens only when a line is written
/// (`span_fields`, where the later value of a repeated field wins).
pub struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut members = String::from("{");
        fields.record(&mut JsonMembers(&mut members));
        members.push('}');
        writer.write_str(&members)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let text = &mut current.fields;
        match text.pop() {
            Some('}') => {}
            // Never written by `format_fields`: start a fresh object.
            _ => {
                text.clear();
                text.push('{');
            }
        }
        fields.record(&mut JsonMembers(text));
        text.push('}');
        Ok(())
    }
}

/// Appends fields as comma-separated JSON object members (`"name":value`) to the text of
/// an object being written (`{` or `{"a":1`), escaping as it writes: no value is built
/// or copied first (the span of every action records its fields here).
struct JsonMembers<'a>(&'a mut String);

impl JsonMembers<'_> {
    /// Starts a member: the separator if one is needed, the quoted name and the colon.
    fn name(&mut self, field: &Field) {
        if !self.0.ends_with('{') {
            self.0.push(',');
        }
        self.quoted(field.name());
        self.0.push(':');
    }

    /// `text` as a JSON string.
    fn quoted(&mut self, text: &str) {
        self.0.push('"');
        push_escaped(self.0, text);
        self.0.push('"');
    }
}

/// Appends `text` escaped for the inside of a JSON string.
fn push_escaped(out: &mut String, text: &str) {
    let needs = |c: char| c == '"' || c == '\\' || c < ' ';
    if !text.contains(needs) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A `fmt::Write` that escapes what is written into a JSON string's inside.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        push_escaped(self.0, text);
        Ok(())
    }
}

impl Visit for JsonMembers<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        self.quoted(value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        // As serde_json writes it (`null` for NaN and infinities).
        self.0.push_str(&Value::from(value).to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        self.0.push('"');
        let _ = write!(Escaping(self.0), "{value:?}");
        self.0.push('"');
    }
}

/// The fields of every span enclosing `event`, outermost first, later values winning
/// (a field recorded twice, an action's `attempt`, is in its span's text twice).
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
            timestamp(time::OffsetDateTime::now_utc()),
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
        map.insert("timestamp".into(), timestamp(time::OffsetDateTime::now_utc()).into());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T22:02:53Z.
    fn sample_time() -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_795_816_973).unwrap()
    }

    #[test]
    fn timestamps_have_six_fractional_digits() {
        let base = sample_time();
        for (nanos, expected) in [
            (0, "2026-11-27T22:02:53.000000Z"),
            (123_456_789, "2026-11-27T22:02:53.123456Z"),
            (759_660_560, "2026-11-27T22:02:53.759660Z"),
            (5_000, "2026-11-27T22:02:53.000005Z"),
        ] {
            let at = base.replace_nanosecond(nanos).unwrap();
            assert_eq!(timestamp(at), expected);
        }
    }

    /// A writer into a shared buffer, to read what the formatters write.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// Whether `text` starts with `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    fn starts_with_six_digit_timestamp(text: &str) -> bool {
        let shape = "0000-00-00T00:00:00.000000Z";
        text.len() >= shape.len()
            && text.chars().zip(shape.chars()).all(|(c, s)| match s {
                '0' => c.is_ascii_digit(),
                other => c == other,
            })
    }

    #[test]
    fn text_and_json_lines_carry_six_digit_timestamps() {
        let text = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(text.clone())
            .fmt_fields(SpanFields)
            .event_format(FlatText)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..50 {
                tracing::info!(n = 1, "Something happened.");
            }
        });
        let json = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(json.clone())
            .fmt_fields(SpanFields)
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::info!(n = 1, "Something happened."));

        let text = String::from_utf8(text.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 50);
        for line in text.lines() {
            assert!(starts_with_six_digit_timestamp(line), "{line}");
            assert!(line.ends_with(" INFO Something happened. n=1"), "{line}");
        }
        let json = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(json.trim()).unwrap();
        let stamp = line["timestamp"].as_str().unwrap();
        assert!(starts_with_six_digit_timestamp(stamp) && stamp.len() == 27, "{stamp}");
    }

    #[test]
    fn span_fields_recorded_later_replace_earlier_ones() {
        let json = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(json.clone())
            .fmt_fields(SpanFields)
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!(
                "action",
                batch = "b \"1\"",
                key = %"k1",
                action_id = tracing::field::Empty,
                attempt = tracing::field::Empty
            );
            span.record("attempt", 1);
            span.record("action_id", "id-1");
            span.record("attempt", 2);
            span.in_scope(|| tracing::warn!(n = 3, "Inside."));
        });
        let json = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(line["batch"], "b \"1\"", "{line}");
        assert_eq!(line["key"], "k1", "{line}");
        assert_eq!(line["action_id"], "id-1", "{line}");
        assert_eq!(line["attempt"], 2, "the later value wins: {line}");
        assert_eq!(line["n"], 3, "{line}");
        assert_eq!(line["message"], "Inside.", "{line}");
    }

    #[test]
    fn span_fields_keep_quotes_backslashes_and_control_characters() {
        let json = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(json.clone())
            .fmt_fields(SpanFields)
            .event_format(FlatJson)
            .finish();
        let odd = "a\"b\\c\nd\u{1}e\u{e9}";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!("action", batch = odd, key = %odd, attempt = tracing::field::Empty);
            span.record("attempt", 3u32);
            span.in_scope(|| tracing::warn!(flag = true, "Inside."));
        });
        let json = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(line["batch"], odd, "{line}");
        assert_eq!(line["key"], odd, "{line}");
        assert_eq!(line["attempt"], 3, "{line}");
        assert_eq!(line["flag"], true, "{line}");
    }

    #[test]
    fn timestamps_are_utc() {
        let at = sample_time().to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(timestamp(at), "2026-11-27T22:02:53.000000Z");
    }

    #[test]
    fn accepts_levels_and_filters_whose_parts_name_levels() {
        for ok in [
            "info",
            "WARN",
            "off",
            "trace",
            "actionwarden=debug",
            "info,actionwarden=debug,awc=warn",
            "actionwarden[action]=trace",
            "[action{key=k1}]=debug",
        ] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bare_words_and_unknown_levels() {
        assert!(matches!(check_filter("verbose"), Err(FilterError::NotALevel(d)) if d == "verbose"));
        assert!(matches!(
            check_filter("info,actionwarden"),
            Err(FilterError::NotALevel(_))
        ));
        assert!(matches!(
            check_filter("actionwarden=loud"),
            Err(FilterError::NotALevel(_))
        ));
        assert!(matches!(check_filter(" "), Err(FilterError::NotALevel(_))));
    }
}
