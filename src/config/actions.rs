//! The configured actions, read as they are needed instead of held: a batch's inline
//! `[[batch.action]]` tables first, then its `actions_file` line by line. A batch of a
//! million actions is read twice (once to check it, once to load it into the journal)
//! and never kept in memory.
//!
//! An action's identity is `BATCH/KEY`; `key` defaults to the action's 1-based position
//! in its batch. The body sent to CXone is the action without `key`, every other field
//! passed through unchanged (in the file's order, for `actions_file` lines).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::location::{Document, Problem, Seg};
use super::Loaded;

/// A UTF-8 byte order mark, written by many Windows tools at the start of a file.
const BOM: &str = "\u{feff}";

/// The field naming the CXone data action.
pub(super) const ACTION_TYPE: &str = "actionType";

/// What is wrong with an action's (or rollback template's) `actionType`, if anything.
pub(super) fn action_type_problem(value: Option<&serde_json::Value>) -> Option<String> {
    match value {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => None,
        None => Some(format!(
            "missing {ACTION_TYPE}: expected a non-empty string naming the CXone data action"
        )),
        Some(_) => Some(format!(
            "{ACTION_TYPE}: expected a non-empty string naming the CXone data action"
        )),
    }
}

/// `text` without a leading byte order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// One action as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredAction {
    /// The key (explicit, or the position in the batch).
    pub key: String,
    /// The JSON body: the action without `key`.
    pub body: Vec<u8>,
}

/// Which of a batch's sources to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The inline `[[batch.action]]` tables.
    pub inline: bool,
    /// The `actions_file`.
    pub file: bool,
}

impl Parts {
    /// Both sources.
    pub const ALL: Parts = Parts {
        inline: true,
        file: true,
    };
}

/// How many actions each batch has, once every action was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Per batch, in configuration order.
    pub counts: Vec<(String, usize)>,
}

impl Scan {
    /// Actions in all batches.
    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// The `actions_file` of batch `b`, resolved against the config file's directory.
pub fn actions_file(loaded: &Loaded, b: usize) -> Option<PathBuf> {
    let batch = &loaded.config.batches[b];
    if batch.actions_file.is_empty() {
        return None;
    }
    let base = loaded.path.parent().map(Path::to_path_buf).unwrap_or_default();
    Some(base.join(&batch.actions_file))
}

/// Checks every action of every batch (keys, bodies, duplicate identities) and counts
/// them; every problem comes back at once. Memory: one 16-byte hash per identity of the
/// batch being read.
pub fn scan(loaded: &Loaded) -> Result<Scan, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut scan = Scan::default();
    for (b, batch) in loaded.config.batches.iter().enumerate() {
        let mut seen: HashSet<u128> = HashSet::new();
        let mut count = 0usize;
        let mut duplicates = Vec::new();
        problems.extend(read_batch(loaded, b, Parts::ALL, |action, at| {
            if seen.insert(identity_hash(&action.key)) {
                count += 1;
            } else {
                duplicates.push(at.problem(format!("duplicate action identity {}/{}", batch.name, action.key)));
            }
        }));
        problems.append(&mut duplicates);
        scan.counts.push((batch.name.clone(), count));
    }
    if problems.is_empty() {
        Ok(scan)
    } else {
        problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(problems)
    }
}

/// A compact, collision-resistant stand-in for a key within its batch.
fn identity_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

/// Where an action was read: enough to locate a problem found later (a duplicate).
pub enum At<'a> {
    /// An inline table, by its path in the document.
    Inline {
        /// The config file's spans.
        doc: &'a Document<'a>,
        /// Batch index.
        batch: usize,
        /// Action index.
        action: usize,
    },
    /// A line of an `actions_file`.
    Line {
        /// The file.
        file: &'a Path,
        /// 1-based line.
        line: usize,
    },
}

impl At<'_> {
    /// A problem here.
    pub fn problem(&self, message: String) -> Problem {
        match self {
            At::Inline { doc, batch, action } => doc.problem(
                &[
                    Seg::Key("batch"),
                    Seg::Index(*batch),
                    Seg::Key("action"),
                    Seg::Index(*action),
                    Seg::Key("key"),
                ],
                message,
            ),
            At::Line { file, line } => line_problem(file, *line, 1, message),
        }
    }
}

fn line_problem(file: &Path, line: usize, column: usize, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line,
        column,
        key: String::new(),
        message,
    }
}

/// Reads the chosen parts of batch `b` in order, calling `each` with every valid action
/// and where it was read; returns the problems of the invalid ones. Keys by position
/// count the actions of the inline part even when only the file is read.
pub fn read_batch(
    loaded: &Loaded,
    b: usize,
    parts: Parts,
    mut each: impl FnMut(ConfiguredAction, At<'_>),
) -> Vec<Problem> {
    let batch = &loaded.config.batches[b];
    let doc = Document::new(&loaded.path, &loaded.text);
    let mut problems = Vec::new();
    let mut position = batch.actions.len();
    if parts.inline {
        for (a, table) in batch.actions.iter().enumerate() {
            let at = || At::Inline {
                doc: &doc,
                batch: b,
                action: a,
            };
            match inline_action(table, a + 1) {
                Ok(action) => each(action, at()),
                Err((field, message)) => {
                    let path = [
                        Seg::Key("batch"),
                        Seg::Index(b),
                        Seg::Key("action"),
                        Seg::Index(a),
                        Seg::Key(field),
                    ];
                    problems.push(doc.problem(&path, message));
                }
            }
        }
    }
    let Some(file) = actions_file(loaded, b).filter(|_| parts.file) else {
        return problems;
    };
    let reader = match File::open(&file) {
        Ok(f) => BufReader::new(f),
        Err(e) => {
            let path = [Seg::Key("batch"), Seg::Index(b), Seg::Key("actions_file")];
            problems.push(doc.problem(&path, format!("cannot read {}: {e}", file.display())));
            return problems;
        }
    };
    for (index, line) in reader.split(b'\n').enumerate() {
        let number = index + 1;
        let bytes = match line {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(line_problem(&file, number, 1, format!("cannot read: {e}")));
                break;
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            problems.push(line_problem(&file, number, 1, "expected UTF-8 text".into()));
            continue;
        };
        let text = if number == 1 {
            text.strip_prefix(BOM).unwrap_or(text)
        } else {
            text
        };
        if text.trim().is_empty() {
            continue;
        }
        position += 1;
        match line_action(text, position) {
            Ok(action) => each(
                action,
                At::Line {
                    file: &file,
                    line: number,
                },
            ),
            Err((column, message)) => problems.push(line_problem(&file, number, column, message)),
        }
    }
    problems
}

/// An inline table as an action; `Err` names the offending field and what is wrong.
fn inline_action(table: &toml::Table, position: usize) -> Result<ConfiguredAction, (&'static str, String)> {
    let serde_json::Value::Object(mut body) = super::table_to_json(table) else {
        unreachable!("a table converts to an object")
    };
    let key = match body.remove("key") {
        None => position.to_string(),
        Some(value) => key_text(&value).ok_or(("key", "expected a non-empty string or integer key".to_owned()))?,
    };
    if let Some(message) = action_type_problem(body.get(ACTION_TYPE)) {
        return Err((ACTION_TYPE, message));
    }
    let body = serde_json::to_vec(&body).expect("a JSON map always serializes");
    Ok(ConfiguredAction { key, body })
}

/// One JSON Lines line as an action; `Err` carries a column and what is wrong.
fn line_action(text: &str, position: usize) -> Result<ConfiguredAction, (usize, String)> {
    let fields = parse_object(text).map_err(|e| match e {
        LineError::Json(e) => (e.column().max(1), format!("invalid JSON: {e}")),
        LineError::NotAnObject => (1, "expected one JSON object per line".into()),
    })?;
    let mut key = None;
    let mut action_type = false;
    let mut body = Vec::with_capacity(text.len());
    body.push(b'{');
    for (name, value) in &fields {
        match name.as_ref() {
            "key" => {
                let value: serde_json::Value = serde_json::from_str(value.get()).expect("already valid JSON");
                key = Some(key_text(&value).ok_or((1, "key: expected a non-empty string or integer".to_owned()))?);
                continue;
            }
            ACTION_TYPE => {
                let value: serde_json::Value = serde_json::from_str(value.get()).expect("already valid JSON");
                if let Some(message) = action_type_problem(Some(&value)) {
                    return Err((1, message));
                }
                action_type = true;
            }
            _ => {}
        }
        if body.len() > 1 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, name.as_ref()).expect("writing to a Vec");
        body.push(b':');
        body.extend_from_slice(value.get().as_bytes());
    }
    body.push(b'}');
    if !action_type {
        return Err((1, action_type_problem(None).expect("a missing actionType is a problem")));
    }
    Ok(ConfiguredAction {
        key: key.unwrap_or_else(|| position.to_string()),
        body,
    })
}

enum LineError {
    Json(serde_json::Error),
    NotAnObject,
}

/// The fields of a JSON object in their order, values left unparsed.
fn parse_object(text: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>, LineError> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                fields.push((name, map.next_value::<&'de RawValue>()?));
            }
            Ok(fields)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = match (&mut de).deserialize_map(Fields) {
        Ok(fields) => fields,
        Err(e) if e.is_data() => return Err(LineError::NotAnObject),
        Err(e) => return Err(LineError::Json(e)),
    };
    de.end().map_err(LineError::Json)?;
    Ok(fields)
}

fn key_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(action: &ConfiguredAction) -> String {
        String::from_utf8(action.body.clone()).unwrap()
    }

    #[test]
    fn a_line_keeps_its_fields_in_order_without_the_key() {
        let a = line_action(r#"{"payload":{"b":1,"a":2},"key":"k-1","actionType":"X"}"#, 7).unwrap();
        assert_eq!(a.key, "k-1");
        assert_eq!(body(&a), r#"{"payload":{"b":1,"a":2},"actionType":"X"}"#);
    }

    #[test]
    fn a_line_without_a_key_takes_its_position() {
        let a = line_action(r#"{"actionType":"X"}"#, 7).unwrap();
        assert_eq!(a.key, "7");
        let a = line_action(r#"{"actionType":"X","key":12}"#, 7).unwrap();
        assert_eq!(a.key, "12");
    }

    #[test]
    fn a_line_needs_an_action_type_and_a_usable_key() {
        assert!(line_action(r#"{"payload":{}}"#, 1)
            .unwrap_err()
            .1
            .contains("actionType"));
        assert!(line_action(r#"{"actionType":3}"#, 1)
            .unwrap_err()
            .1
            .contains("actionType"));
        assert!(line_action(r#"{"actionType":"X","key":""}"#, 1)
            .unwrap_err()
            .1
            .contains("key"));
        assert!(line_action(r#"{"actionType":"X","key":[1]}"#, 1)
            .unwrap_err()
            .1
            .contains("key"));
    }

    #[test]
    fn a_line_that_is_not_one_object_is_refused() {
        assert!(line_action("[1,2]", 1).unwrap_err().1.contains("one JSON object"));
        assert!(line_action(r#"{"actionType":"X"} {}"#, 1)
            .unwrap_err()
            .1
            .contains("invalid JSON"));
        let (column, message) = line_action(r#"{"actionType": }"#, 1).unwrap_err();
        assert!(message.contains("invalid JSON"), "{message}");
        assert!(column > 1);
    }

    #[test]
    fn an_inline_table_needs_an_action_type() {
        let table: toml::Table = toml::from_str("key = \"k\"\npayload = { a = 1 }").unwrap();
        assert_eq!(inline_action(&table, 1).unwrap_err().0, "actionType");
        let table: toml::Table = toml::from_str("key = \"k\"\nactionType = \"X\"").unwrap();
        let a = inline_action(&table, 1).unwrap();
        assert_eq!((a.key.as_str(), body(&a).as_str()), ("k", r#"{"actionType":"X"}"#));
    }
}
