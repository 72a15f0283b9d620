//! Deserialization that keeps going past the first problem.
//!
//! serde stops at the first type error or unknown key. To report them all, each failed
//! pass records its problem, removes the offending entry from toml's spanned document tree
//! and deserializes the rest again. The tree keeps the original byte spans, so every
//! problem still points at its own `FILE:LINE:COLUMN`; the removed entries take their
//! defaults, which lets the semantic checks run over everything else.

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::location::{Document, Problem};

/// Most deserialization problems collected from one file (each costs one more pass).
const MAX_PROBLEMS: usize = 100;

/// What deserializing a whole file found.
pub struct Recovered<T> {
    /// The value, with every offending entry at its default; `None` when a problem could
    /// not be located (nothing to remove), so no complete value exists.
    pub value: Option<T>,
    /// Every type error and unknown key, in the order found.
    pub problems: Vec<Problem>,
}

/// Syntax errors of `text`, every one the parser can find (empty when it parses).
pub fn syntax_problems(doc: &Document<'_>, text: &str) -> Vec<Problem> {
    let (_, mut errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        errors.extend(DeTable::parse(text).err());
    }
    errors.iter().map(|e| doc.locate_toml_error(e)).collect()
}

/// Deserializes `T` from the spanned `root`, recording and removing each offending entry
/// until the rest deserializes.
pub fn deserialize<T: DeserializeOwned>(doc: &Document<'_>, root: &Spanned<DeTable<'_>>) -> Recovered<T> {
    let mut tree = root.clone();
    let mut problems = Vec::new();
    loop {
        let error = match T::deserialize(toml::de::Deserializer::from(tree.clone())) {
            Ok(value) => {
                return Recovered {
                    value: Some(value),
                    problems,
                }
            }
            Err(error) => error,
        };
        problems.push(doc.locate_toml_error(&error));
        let removed = error
            .span()
            .is_some_and(|span| remove_in_table(tree.get_mut(), span.start));
        if !removed || problems.len() >= MAX_PROBLEMS {
            return Recovered { value: None, problems };
        }
    }
}

/// Removes the innermost entry of `table` (at any depth) whose key or value holds
/// `offset`. Tables declared with a `[header]` do not span their body, so every nested
/// table is searched, not only those whose span holds the offset.
fn remove_in_table(table: &mut DeTable<'_>, offset: usize) -> bool {
    let mut hit = None;
    for (key, value) in table.iter_mut() {
        if remove_in_value(value.get_mut(), offset) {
            return true;
        }
        if key.span().contains(&offset) || value.span().contains(&offset) {
            hit = Some(key.get_ref().to_string());
            break;
        }
    }
    hit.is_some_and(|key| table.remove(key.as_str()).is_some())
}

/// Removes the innermost table entry or array element inside `value` holding `offset`.
fn remove_in_value(value: &mut DeValue<'_>, offset: usize) -> bool {
    match value {
        DeValue::Table(table) => remove_in_table(table, offset),
        DeValue::Array(items) => {
            let mut hit = None;
            for (i, item) in items.iter_mut().enumerate() {
                if remove_in_value(item.get_mut(), offset) {
                    return true;
                }
                if item.span().contains(&offset) {
                    hit = Some(i);
                    break;
                }
            }
            let Some(index) = hit else { return false };
            let mut kept = DeArray::new();
            for (i, item) in items.iter().enumerate() {
                if i != index {
                    kept.push(item.clone());
                }
            }
            *items = kept;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn problems(text: &str) -> Vec<String> {
        let doc = Document::new(Path::new("c.toml"), text);
        let root = DeTable::parse(text).expect("valid syntax");
        let found = deserialize::<Config>(&doc, &root);
        assert!(found.value.is_some(), "every problem was located and removed");
        found.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_every_type_error_and_unknown_key() {
        let text = "[poll]\nintervall = \"1s\"\ntimeout = 5\n[retry]\njitter = \"lots\"\nmax_retries = \"x\"\n[[batch]]\nname = 7\n";
        let found = problems(text);
        assert_eq!(found.len(), 5, "{found:#?}");
        for (line, key) in [
            (2, "poll.intervall"),
            (3, "poll.timeout"),
            (5, "retry.jitter"),
            (6, "retry.max_retries"),
            (8, "batch[0].name"),
        ] {
            assert!(
                found
                    .iter()
                    .any(|p| p.starts_with(&format!("c.toml:{line}:")) && p.contains(key)),
                "{key} at line {line}: {found:#?}"
            );
        }
    }

    #[test]
    fn removes_one_bad_array_element_at_a_time() {
        let found = problems("[cxone]\nscopes = [1, \"a\", true]\n");
        assert_eq!(found.len(), 2, "{found:#?}");
    }

    #[test]
    fn a_clean_file_has_no_problems() {
        assert!(problems("[poll]\ninterval = \"1s\"\n").is_empty());
    }

    #[test]
    fn finds_every_syntax_error() {
        let text = "[poll\ninterval = \"1s\"\n[retry]\nmax_retries = = 3\n";
        let doc = Document::new(Path::new("c.toml"), text);
        let found = syntax_problems(&doc, text);
        assert!(found.len() >= 2, "{found:#?}");
        assert_eq!(found[0].line, 1);
        assert!(found.iter().any(|p| p.line == 4), "{found:#?}");
    }
}
