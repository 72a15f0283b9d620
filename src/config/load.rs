//! Loading a configuration: read, deserialize past every problem, resolve the actions,
//! check the values, and hand back either the loaded whole or every located problem.

use std::path::{Path, PathBuf};

use super::{actions, location, recover, validate, Config, Problem};
use crate::action::ActionSpec;

/// A loaded, validated configuration with its resolved actions.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// The settings.
    pub config: Config,
    /// Every action of every batch, in file order.
    pub actions: Vec<ActionSpec>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more problems, each with its location.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// A TOML table as the JSON sent to CXone: datetimes become their RFC 3339 text (serde
/// would turn them into toml's private marker objects).
pub fn table_to_json(table: &toml::Table) -> serde_json::Value {
    fn convert(value: &toml::Value) -> serde_json::Value {
        match value {
            toml::Value::String(s) => s.clone().into(),
            toml::Value::Integer(i) => (*i).into(),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            toml::Value::Boolean(b) => (*b).into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(items) => items.iter().map(convert).collect(),
            toml::Value::Table(t) => table_to_json(t),
        }
    }
    serde_json::Value::Object(table.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
}

/// Reads, parses and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates configuration `text` that came from `path`. Every problem comes
/// back at once: all syntax errors; else every type error and unknown key together with
/// the semantic problems of the parts that deserialized cleanly.
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let text = actions::strip_bom(text);
    let doc = location::Document::new(path, text);
    let Some(tree) = doc.tree() else {
        return Err(ConfigError::Invalid(recover::syntax_problems(&doc, text)));
    };
    let recovered = recover::deserialize::<Config>(&doc, tree);
    let mut problems = recovered.problems;
    let Some(mut config) = recovered.value else {
        return Err(ConfigError::Invalid(problems));
    };
    // A removed entry took its default, so checks within its scope could be about the
    // default rather than the file: those wait until the entry is fixed.
    let mut dirty: Vec<String> = problems.iter().map(|p| scope(&p.key)).collect();
    for p in &problems {
        if let Some(batch) = p.key.strip_suffix(".name").filter(|b| b.starts_with("batch[")) {
            dirty.push(format!("{batch}.action"));
        }
    }
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (actions, mut later) = actions::resolve_actions(&doc, &config, &base_dir);
    later.extend(validate::check(&doc, &config));
    problems.extend(later.into_iter().filter(|p| !dirty.contains(&scope(&p.key))));
    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.file.clone(), p.line, p.column));
        return Err(ConfigError::Invalid(problems));
    }
    // The inline tables now live on as `actions`; keeping both would double the memory
    // of a large batch.
    for batch in &mut config.batches {
        batch.actions = Vec::new();
    }
    Ok(Loaded {
        path: path.to_owned(),
        config,
        actions,
    })
}

/// The scope of a dotted key that a removed entry can affect: its top-level table, or for
/// a batch either its settings (`batch[0]`) or its actions (`batch[0].action`).
fn scope(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("batch[") {
        let close = rest.find(']').map_or(rest.len(), |i| i + 1);
        let batch = &key[..6 + close];
        return if rest[close..].starts_with(".action") {
            format!("{batch}.action")
        } else {
            batch.to_owned()
        };
    }
    key.split(['.', '[']).next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_bodies_carry_datetimes_as_text_and_drop_the_key() {
        let text = "[cxone]\nbase_url = \"simulator\"\n[[batch]]\nname = \"b\"\n  [[batch.action]]\n  key = \"k\"\n  actionType = \"X\"\n  payload = { due = 2026-11-27T10:00:00Z, n = 1.5, tags = [\"a\"] }\n";
        let loaded = parse(Path::new("c.toml"), text).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&loaded.actions[0].body_bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"actionType": "X", "payload": {"due": "2026-11-27T10:00:00Z", "n": 1.5, "tags": ["a"]}})
        );
        assert_eq!(loaded.actions[0].identity.to_string(), "b/k");
    }

    #[test]
    fn scopes_of_keys() {
        assert_eq!(scope("poll.interval"), "poll");
        assert_eq!(scope("batch[3].max_in_flight"), "batch[3]");
        assert_eq!(scope("batch[3].action[2].key"), "batch[3].action");
        assert_eq!(scope("classifier.retry[0]"), "classifier");
        assert_eq!(scope(""), "");
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let text = "\u{FEFF}[cxone]\nbase_url = \"simulator\"\n[[batch]]\nname = \"b\"\n  [[batch.action]]\n  actionType = \"X\"\n";
        assert_eq!(parse(Path::new("c.toml"), text).unwrap().actions.len(), 1);
    }
}
