//! Where in the file a problem is: `FILE:LINE:COLUMN` and the dotted key.
//!
//! Serde tells us a byte span when deserialization fails; for our own checks we look the
//! key up in toml's spanned document tree, so a message can point at the offending line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Keys whose values must never be echoed in an error.
const SECRET_KEYS: [&str; 10] = [
    "client_secret_env",
    "proxy_auth_env",
    "proxy",
    "client_secret_file",
    "signing_secret_env",
    "token_env",
    "webhook_secret_env",
    "client_secret",
    "signing_secret",
    "token",
];

/// One configuration problem, ready to show a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (the config file or an `actions_file`).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key, e.g. `cxone.client_secret` or `batch[0].action[2].key`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// One step of a key path.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    /// A table key.
    Key(&'a str),
    /// An array index.
    Index(usize),
}

/// Renders a path as `cxone.client_secret` / `batch[0].action[2]`.
pub fn dotted(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The parsed file with spans, used to locate keys.
pub struct Document<'a> {
    path: &'a Path,
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Document<'a> {
    /// Parses `text` into a spanned tree (a syntax error leaves the tree empty; the
    /// deserializer reports it).
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Document {
            path,
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// The spanned tree; `None` when the text is not valid TOML.
    pub fn tree(&self) -> Option<&Spanned<DeTable<'a>>> {
        self.root.as_ref()
    }

    /// 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        position_in(self.text, offset)
    }

    /// A problem located at the key `path` (its own line), or at its closest existing
    /// ancestor when the key is absent (a missing key is reported where it belongs).
    pub fn problem(&self, path: &[Seg<'_>], message: impl Into<String>) -> Problem {
        let offset = self.span_of(path).map(|s| s.start).unwrap_or(0);
        let (line, column) = self.position(offset);
        Problem {
            file: self.path.to_owned(),
            line,
            column,
            key: dotted(path),
            message: message.into(),
        }
    }

    /// Turns a deserialization error into a located problem.
    pub fn locate_toml_error(&self, error: &toml::de::Error) -> Problem {
        let offset = error.span().map(|s| s.start).unwrap_or(0);
        let (line, column) = self.position(offset);
        let key = self
            .root
            .as_ref()
            .map(|root| path_at(root.get_ref(), offset))
            .unwrap_or_default();
        // serde's type errors quote the value; for a key that names or holds a secret
        // that could print a secret pasted in the wrong place.
        let leaf = key.rsplit('.').next().unwrap_or_default();
        let message = if SECRET_KEYS.contains(&leaf) {
            "expected a string naming an environment variable (the value given is not shown)".to_owned()
        } else {
            error.message().trim().to_owned()
        };
        Problem {
            file: self.path.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    /// Span of the key (for table entries) or element (for array items) at `path`; the
    /// deepest existing ancestor's span when the full path does not exist.
    fn span_of(&self, path: &[Seg<'_>]) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut best = None;
        let mut current: &DeValue<'_> = &DeValue::Boolean(false);
        let mut table = Some(root.get_ref());
        for seg in path {
            let next = match (seg, table, current) {
                (Seg::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(key, _)| key.get_ref() == k)
                    .map(|(key, value)| (key.span(), value)),
                (Seg::Index(i), None, DeValue::Array(items)) => items.get(*i).map(|v| (v.span(), v)),
                _ => None,
            };
            let Some((span, value)) = next else { break };
            best = Some(span);
            current = value.get_ref();
            table = match current {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }
}

/// 1-based line and column (in characters) of `offset` in `text`.
pub fn position_in(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// The dotted path of the innermost key whose key or value span holds `offset`. Tables
/// declared with a `[header]` do not span their body, so every table is searched.
fn path_at(table: &DeTable<'_>, offset: usize) -> String {
    fn in_table(table: &DeTable<'_>, offset: usize) -> Option<String> {
        for (key, val) in table.iter() {
            let name = key.get_ref().to_string();
            if let Some(inner) = in_value(val.get_ref(), offset) {
                return Some(join(&name, &inner));
            }
            if key.span().contains(&offset) || val.span().contains(&offset) {
                return Some(name);
            }
        }
        None
    }
    fn in_value(value: &DeValue<'_>, offset: usize) -> Option<String> {
        match value {
            DeValue::Table(t) => in_table(t, offset),
            DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let inner = in_value(item.get_ref(), offset);
                match inner {
                    Some(inner) => Some(format!(
                        "[{i}]{}",
                        if inner.starts_with('[') {
                            inner
                        } else {
                            format!(".{inner}")
                        }
                    )),
                    None if item.span().contains(&offset) => Some(format!("[{i}]")),
                    None => None,
                }
            }),
            _ => None,
        }
    }
    fn join(name: &str, inner: &str) -> String {
        if inner.starts_with('[') {
            format!("{name}{inner}")
        } else {
            format!("{name}.{inner}")
        }
    }
    in_table(table, offset).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(position_in(text, 0), (1, 1));
        assert_eq!(position_in(text, 6), (2, 1));
        assert_eq!(position_in(text, 11), (2, 6));
    }

    #[test]
    fn finds_a_nested_key_line() {
        let text = "[cxone]\nbase_url = \"x\"\nclient_secret = \"s\"\n";
        let doc = Document::new(Path::new("c.toml"), text);
        let p = doc.problem(&[Seg::Key("cxone"), Seg::Key("client_secret")], "refused");
        assert_eq!((p.line, p.column), (3, 1));
        assert_eq!(p.to_string(), "c.toml:3:1: cxone.client_secret: refused");
    }

    #[test]
    fn finds_an_array_of_tables_element() {
        let text = "[[batch]]\nname = \"a\"\n[[batch]]\nname = \"b\"\n";
        let doc = Document::new(Path::new("c.toml"), text);
        let p = doc.problem(&[Seg::Key("batch"), Seg::Index(1), Seg::Key("name")], "dup");
        assert_eq!(p.line, 4);
    }

    #[test]
    fn type_errors_on_secret_keys_do_not_echo_the_value() {
        let text = "[admin]\ntoken_env = 98765432\n";
        let doc = Document::new(Path::new("c.toml"), text);
        let error = toml::from_str::<crate::config::Config>(text).unwrap_err();
        let problem = doc.locate_toml_error(&error);
        assert_eq!(problem.key, "admin.token_env");
        assert!(!problem.to_string().contains("98765432"), "{problem}");
    }

    #[test]
    fn names_the_key_at_an_offset() {
        let text = "[retry]\nbase_delay = \"soon\"\n[[batch]]\nname = \"a\"\n";
        let doc = Document::new(Path::new("c.toml"), text);
        let root = doc.root.as_ref().unwrap();
        assert_eq!(path_at(root.get_ref(), text.find("soon").unwrap()), "retry.base_delay");
        assert_eq!(path_at(root.get_ref(), text.find("\"a\"").unwrap()), "batch[0].name");
    }
}
