//! Action resolution: inline `[[batch.action]]` tables and JSON Lines `actions_file`s
//! become `ActionSpec`s, each problem located at its `FILE:LINE`. Every problem is
//! collected, so a user fixes the whole file in one pass.

use std::collections::HashMap;
use std::path::Path;

use super::location::{Document, Problem, Seg};
use super::Config;
use crate::action::{ActionSpec, Identity};

/// Resolves every action of every batch (inline first, then `actions_file`), refusing
/// duplicate identities at their second occurrence.
pub fn resolve_actions(doc: &Document<'_>, config: &Config, base_dir: &Path) -> (Vec<ActionSpec>, Vec<Problem>) {
    let mut actions = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashMap<Identity, ()> = HashMap::new();
    for (b, batch) in config.batches.iter().enumerate() {
        let mut position = 0usize;
        for (a, table) in batch.actions.iter().enumerate() {
            position += 1;
            let path = [Seg::Key("batch"), Seg::Index(b), Seg::Key("action"), Seg::Index(a)];
            let mut body = match super::table_to_json(table) {
                serde_json::Value::Object(map) => map,
                _ => unreachable!("a table converts to an object"),
            };
            let key = match body.remove("key") {
                None => position.to_string(),
                Some(value) => match key_text(&value) {
                    Some(k) => k,
                    None => {
                        let key_path = [path[0], path[1], path[2], path[3], Seg::Key("key")];
                        problems.push(doc.problem(&key_path, "expected a non-empty string or integer key"));
                        continue;
                    }
                },
            };
            if let Some(message) = action_type_problem(body.get(ACTION_TYPE)) {
                let type_path = [path[0], path[1], path[2], path[3], Seg::Key(ACTION_TYPE)];
                problems.push(doc.problem(&type_path, message));
                continue;
            }
            let identity = Identity::new(batch.name.as_str(), key);
            if seen.insert(identity.clone(), ()).is_some() {
                let key_path = [path[0], path[1], path[2], path[3], Seg::Key("key")];
                problems.push(doc.problem(&key_path, format!("duplicate action identity {identity}")));
                continue;
            }
            actions.push(ActionSpec::new(identity, serde_json::Value::Object(body)));
        }
        if !batch.actions_file.is_empty() {
            let file = base_dir.join(&batch.actions_file);
            match std::fs::read_to_string(&file) {
                Err(e) => problems.push(doc.problem(
                    &[Seg::Key("batch"), Seg::Index(b), Seg::Key("actions_file")],
                    format!("cannot read {}: {e}", file.display()),
                )),
                Ok(text) => read_actions_file(
                    &file,
                    &text,
                    &batch.name,
                    &mut position,
                    &mut seen,
                    &mut actions,
                    &mut problems,
                ),
            }
        }
    }
    (actions, problems)
}

/// The field naming the CXone data action to run; CXone refuses an action without it.
pub(super) const ACTION_TYPE: &str = "actionType";

/// The UTF-8 byte order mark that many Windows tools and spreadsheet exports write first.
const BYTE_ORDER_MARK: char = '\u{FEFF}';

/// `text` without a leading byte order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text)
}

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

/// Reads one JSON Lines actions file; problems name `FILE:LINE`. A leading byte order
/// mark is skipped and CRLF line ends are accepted.
fn read_actions_file(
    file: &Path,
    text: &str,
    batch: &str,
    position: &mut usize,
    seen: &mut HashMap<Identity, ()>,
    actions: &mut Vec<ActionSpec>,
    problems: &mut Vec<Problem>,
) {
    let at = |line: usize, message: String| Problem {
        file: file.to_path_buf(),
        line,
        column: 1,
        key: String::new(),
        message,
    };
    for (index, raw) in strip_bom(text).lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        *position += 1;
        let mut body = match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => {
                problems.push(at(line, "expected one JSON object per line".into()));
                continue;
            }
            Err(e) => {
                problems.push(Problem {
                    column: e.column().max(1),
                    ..at(line, format!("invalid JSON: {e}"))
                });
                continue;
            }
        };
        let key = match body.remove("key") {
            None => position.to_string(),
            Some(value) => match key_text(&value) {
                Some(k) => k,
                None => {
                    problems.push(at(line, "key: expected a non-empty string or integer".into()));
                    continue;
                }
            },
        };
        if let Some(message) = action_type_problem(body.get(ACTION_TYPE)) {
            problems.push(at(line, message));
            continue;
        }
        let identity = Identity::new(batch, key);
        if seen.insert(identity.clone(), ()).is_some() {
            problems.push(at(line, format!("duplicate action identity {identity}")));
            continue;
        }
        actions.push(ActionSpec::new(identity, serde_json::Value::Object(body)));
    }
}

fn key_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
