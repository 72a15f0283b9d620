//! Loading a configuration: read, deserialize past every problem, check the values, and
//! hand back either the loaded settings or every located problem. The actions are read
//! on demand (actions.rs): `load_checked` reads them all once to check them.

use std::path::{Path, PathBuf};

use super::{actions, location, network, recover, validate, Config, Problem};

/// A loaded configuration whose settings are valid; its actions are read on demand.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// Its text (problems found later in inline actions are located in it).
    pub text: String,
    /// The settings, with the inline action tables.
    pub config: Config,
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

/// Reads, parses and validates the settings of the configuration at `path`; its actions
/// are not read (`status`, `dlq` and `show` need only the settings, whatever the size of
/// the batches).
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    parse(path, &read(path)?)
}

/// Like `load`, and also reads and checks every action, reporting the problems of both
/// at once.
pub fn load_checked(path: &Path) -> Result<(Loaded, actions::Scan), ConfigError> {
    check_text(path, &read(path)?)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses and validates the settings of configuration `text` that came from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let (loaded, problems) = deserialize(path, text)?;
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Checks configuration `text` that came from `path`: settings and every action. Every
/// problem comes back at once: all syntax errors; else every type error and unknown key
/// together with the problems of the parts that deserialized cleanly.
pub fn check_text(path: &Path, text: &str) -> Result<(Loaded, actions::Scan), ConfigError> {
    let (loaded, mut problems) = deserialize(path, text)?;
    let dirty = dirty_scopes(&problems);
    match actions::scan(&loaded) {
        Ok(scan) if problems.is_empty() => Ok((loaded, scan)),
        Ok(_) => Err(ConfigError::Invalid(problems)),
        Err(more) => {
            problems.extend(
                more.into_iter()
                    .filter(|p| p.key.is_empty() || !dirty.contains(&scope(&p.key))),
            );
            sort(&mut problems);
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// The settings and the problems found in them (`Err` when nothing deserializes, e.g. a
/// syntax error).
fn deserialize(path: &Path, text: &str) -> Result<(Loaded, Vec<Problem>), ConfigError> {
    let text = actions::strip_bom(text);
    let doc = location::Document::new(path, text);
    let Some(tree) = doc.tree() else {
        return Err(ConfigError::Invalid(recover::syntax_problems(&doc, text)));
    };
    let recovered = recover::deserialize::<Config>(&doc, tree);
    let mut problems = recovered.problems;
    let Some(config) = recovered.value else {
        return Err(ConfigError::Invalid(problems));
    };
    // A removed entry took its default, so checks within its scope could be about the
    // default rather than the file: those wait until the entry is fixed.
    let dirty = dirty_scopes(&problems);
    let mut later = validate::check(&doc, &config);
    later.extend(network::check(&doc, &config));
    problems.extend(later.into_iter().filter(|p| !dirty.contains(&scope(&p.key))));
    sort(&mut problems);
    let loaded = Loaded {
        path: path.to_owned(),
        text: text.to_owned(),
        config,
    };
    Ok((loaded, problems))
}

fn sort(problems: &mut [Problem]) {
    problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
}

/// The scopes a deserialization problem may have left at their defaults.
fn dirty_scopes(problems: &[Problem]) -> Vec<String> {
    let mut dirty: Vec<String> = problems.iter().map(|p| scope(&p.key)).collect();
    for p in problems {
        if let Some(batch) = p.key.strip_suffix(".name").filter(|b| b.starts_with("batch[")) {
            dirty.push(format!("{batch}.action"));
        }
    }
    dirty
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
        let mut read = Vec::new();
        actions::read_batch(&loaded, 0, actions::Parts::ALL, |a, _| read.push(a));
        let body: serde_json::Value = serde_json::from_slice(&read[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"actionType": "X", "payload": {"due": "2026-11-27T10:00:00Z", "n": 1.5, "tags": ["a"]}})
        );
        assert_eq!(read[0].key, "k");
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
        let (_, scan) = check_text(Path::new("c.toml"), text).unwrap();
        assert_eq!(scan.total(), 1);
    }
}
