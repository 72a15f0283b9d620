//! Durations written as strings such as `"250ms"`, `"5s"`, `"1h"` or `"1m 30s"`.
//!
//! Use as `#[serde(with = "crate::config::duration")]` on a `Duration` field. Bare
//! numbers are refused on purpose: `timeout = 5` could mean seconds or milliseconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Why a duration string is refused; the text is what the config loader shows the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("expected a duration such as \"250ms\", \"5s\" or \"1h\", found an empty string")]
    Empty,
    /// Not a duration.
    #[error("expected a duration such as \"250ms\", \"5s\" or \"1h\", found {text:?} ({reason})")]
    Invalid {
        /// What was written.
        text: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Longer than deadlines computed from now can hold.
    #[error("expected a duration of at most 10 years, found {text:?}")]
    TooLong {
        /// What was written.
        text: String,
    },
}

/// Parses a duration string.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let duration = humantime::parse_duration(trimmed).map_err(|e| DurationError::Invalid {
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    if duration > MAX {
        return Err(DurationError::TooLong { text: text.to_owned() });
    }
    Ok(duration)
}

/// Longest duration accepted: beyond it, deadlines computed from now would overflow.
const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Formats a duration the way it is written in the config (`"1m 30s"`, `"250ms"`).
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(duration).to_string()
}

/// Serde deserializer for a duration string.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration string such as \"250ms\", \"5s\" or \"1h\"")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
            parse(value).map_err(E::custom)
        }
    }

    deserializer.deserialize_str(DurationVisitor)
}

/// Serde serializer writing the same string form `deserialize` reads.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// Serde glue for an optional duration: absent or `""` reads as `None`.
pub mod optional {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer, Serializer};

    /// Writes `None` as `""`.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => super::serialize(duration, s),
            None => s.serialize_str(""),
        }
    }

    /// Reads absent or `""` as `None`, else a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .filter(|text| !text.is_empty())
            .map(|text| super::parse(&text).map_err(de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_of_the_spec() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1m 30s").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn refuses_text_without_a_unit() {
        assert!(parse("5").is_err());
        assert!(parse("").is_err());
        assert!(parse("fast").unwrap_err().to_string().contains("\"fast\""));
        assert!(parse("400000000000y").is_err(), "no deadline overflow later");
    }

    #[test]
    fn formats_what_it_parses() {
        for text in ["250ms", "5s", "1h", "1m 30s"] {
            assert_eq!(parse(&format(parse(text).unwrap())).unwrap(), parse(text).unwrap());
        }
    }
}
