//! Audit records as data: the JSON Lines written to `audit.path` (one object per line,
//! with `event_id`, `event_type`, `timestamp`, `batch`, `key` and the event's own fields),
//! and the clock helpers that stamp them. The `AuditActor` writes them; the journal keeps
//! outcome lines until they are confirmed in the file.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::action::Identity;

/// The event of a dead letter an operator discarded (kept, never delivered again).
pub const DEAD_LETTER_DISCARDED: &str = "DEAD_LETTER_DISCARDED";

/// One audit record before it is stamped.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// `ACTION_COMPLETED`, `ASYNC_ERROR_HANDLED`, ...
    pub event_type: &'static str,
    /// Whose.
    pub identity: Identity,
    /// The event's own fields.
    pub fields: Map<String, Value>,
}

impl AuditRecord {
    /// A record with no fields yet.
    pub fn new(event_type: &'static str, identity: &Identity) -> Self {
        AuditRecord {
            event_type,
            identity: identity.clone(),
            fields: Map::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    /// The JSON line with its newline: common fields first, then the event's own.
    pub fn to_line(&self, event_id: Uuid) -> Vec<u8> {
        let mut id = Uuid::encode_buffer();
        let id: &str = event_id.hyphenated().encode_lower(&mut id);
        let stamp = crate::clock::rfc3339_now();
        let own = [
            ("batch", self.identity.batch.as_ref()),
            ("event_id", id),
            ("event_type", self.event_type),
            ("key", self.identity.key.as_ref()),
            ("timestamp", stamp.as_str()),
        ];
        // The members in key order, as a `serde_json::Map` (a `BTreeMap`) would write
        // them, without building one: a field named like one of the record's own keys
        // replaces it. Two records per action are stamped on the daemon's loop.
        let mut members: Vec<(&str, Member<'_>)> = Vec::with_capacity(own.len() + self.fields.len());
        members.extend(
            own.into_iter()
                .filter(|(name, _)| !self.fields.contains_key(*name))
                .map(|(name, text)| (name, Member::Text(text))),
        );
        members.extend(
            self.fields
                .iter()
                .map(|(name, value)| (name.as_str(), Member::Value(value))),
        );
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut line = Vec::with_capacity(256);
        line.push(b'{');
        for (i, (name, value)) in members.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            serde_json::to_writer(&mut line, name).expect("a string serializes");
            line.push(b':');
            match value {
                Member::Text(text) => serde_json::to_writer(&mut line, text),
                Member::Value(value) => serde_json::to_writer(&mut line, value),
            }
            .expect("a JSON value serializes");
        }
        line.extend_from_slice(b"}\n");
        line
    }
}

/// A fresh random (version 4) UUID from the thread's user-space CSPRNG (`rand`'s
/// `ThreadRng`: ChaCha12 seeded from the OS once and reseeded as it goes), not a
/// `getrandom` system call per id: two ids per action add up at thousands of actions
/// per second.
pub fn new_event_id() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// A fresh time-ordered (version 7) UUID: the Unix time in milliseconds, then 74 random
/// bits from the same generator. The journal indexes outcome lines by `event_id`: ids
/// that grow with time land at the end of that index instead of on a random page of it,
/// so each outcome dirties one index page fewer.
pub fn new_outcome_id() -> Uuid {
    let millis = crate::clock::now_ms().max(0) as u64;
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid()
}

/// One member's value in `AuditRecord::to_line`.
enum Member<'a> {
    Text(&'a str),
    Value(&'a Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_random_and_outcome_ids_grow_with_time() {
        let (a, b) = (new_event_id(), new_event_id());
        assert_ne!(a, b);
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        let before = crate::clock::now_ms() as u64;
        let id = new_outcome_id();
        let after = crate::clock::now_ms() as u64;
        assert_eq!(id.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().expect("a v7 id has a time").to_unix();
        let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!((before..=after).contains(&millis), "{before} <= {millis} <= {after}");
        // The text form sorts like the time: an id of a later millisecond sorts after.
        let later = uuid::Builder::from_unix_timestamp_millis(millis + 1, &[0; 10]).into_uuid();
        assert!(later.to_string() > id.to_string(), "{id} then {later}");
    }

    #[test]
    fn lines_are_what_a_json_map_of_the_record_serializes_to() {
        let identity = Identity::new("batch \"1\"", "k\u{e9}");
        let record = AuditRecord::new("ACTION_DEAD_LETTERED", &identity)
            .with("retry_count", 3)
            .with("latency_seconds", 0.25)
            .with("action_id", "id-1")
            .with("zeta", serde_json::json!({"b": [1, null], "a": "x"}))
            .with("key", "a field wins over the identity's key");
        let id = new_event_id();
        let line = record.to_line(id);
        assert_eq!(line.last(), Some(&b'\n'));
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        let mut map = Map::new();
        map.insert("event_id".into(), id.to_string().into());
        map.insert("event_type".into(), record.event_type.into());
        map.insert("timestamp".into(), parsed["timestamp"].clone());
        map.insert("batch".into(), identity.batch.as_ref().into());
        map.insert("key".into(), identity.key.as_ref().into());
        for (k, v) in &record.fields {
            map.insert(k.clone(), v.clone());
        }
        let mut expected = serde_json::to_vec(&Value::Object(map)).unwrap();
        expected.push(b'\n');
        assert_eq!(String::from_utf8(line).unwrap(), String::from_utf8(expected).unwrap());
    }

    #[test]
    fn record_timestamps_have_six_fractional_digits_and_parse_as_rfc3339() {
        let identity = Identity::new("b", "k");
        let line = AuditRecord::new("ACTION_COMPLETED", &identity).to_line(Uuid::nil());
        let record: Value = serde_json::from_slice(&line).unwrap();
        let stamp = record["timestamp"].as_str().unwrap();
        assert_eq!(stamp.len(), "2026-11-27T22:02:53.123456Z".len(), "{stamp}");
        assert_eq!(&stamp[19..20], ".", "{stamp}");
        assert!(stamp.ends_with('Z'), "{stamp}");
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
    }
}
