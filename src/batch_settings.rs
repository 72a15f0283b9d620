//! Each batch's own settings (its in-flight limit and its compensation template) as the
//! configuration file states them, read at start and again on every reload, and the
//! shared table of templates the pollers consult when a failure asks for a rollback.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{self, Config};

/// What one `[[batch]]` table says about how its actions run.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// `max_in_flight`; 0: only the global limit applies.
    pub max_in_flight: usize,
    /// `rollback_action` as the JSON body to submit; `None` when the table is empty.
    pub rollback: Option<serde_json::Value>,
}

/// The settings of every batch in a configuration, by batch name.
pub fn from_config(config: &Config) -> HashMap<Arc<str>, BatchSettings> {
    config
        .batches
        .iter()
        .map(|b| {
            let rollback = (!b.rollback_action.is_empty()).then(|| config::table_to_json(&b.rollback_action));
            let settings = BatchSettings {
                max_in_flight: b.max_in_flight,
                rollback,
            };
            (Arc::<str>::from(b.name.as_str()), settings)
        })
        .collect()
}

/// Compensation templates by batch name, shared by the pollers of one arbiter and
/// replaced batch by batch when a reload states them again.
#[derive(Debug, Default)]
pub struct RollbackTemplates(RefCell<HashMap<Arc<str>, serde_json::Value>>);

impl RollbackTemplates {
    /// Whether `batch` has a template now.
    pub fn contains_key(&self, batch: &str) -> bool {
        self.0.borrow().contains_key(batch)
    }

    /// A copy of `batch`'s template (the caller adds its own metadata to it).
    pub fn get(&self, batch: &str) -> Option<serde_json::Value> {
        self.0.borrow().get(batch).cloned()
    }

    /// Sets `batch`'s template as its file states it: `None` removes it.
    pub fn set(&self, batch: &Arc<str>, template: Option<serde_json::Value>) {
        let mut templates = self.0.borrow_mut();
        match template {
            Some(template) => templates.insert(batch.clone(), template),
            None => templates.remove(batch),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_set_replaced_and_removed() {
        let templates = RollbackTemplates::default();
        let batch: Arc<str> = Arc::from("b");
        assert!(!templates.contains_key("b"));
        templates.set(&batch, Some(serde_json::json!({"actionType": "UNDO"})));
        assert_eq!(templates.get("b"), Some(serde_json::json!({"actionType": "UNDO"})));
        templates.set(&batch, Some(serde_json::json!({"actionType": "REVERT"})));
        assert_eq!(templates.get("b").unwrap()["actionType"], "REVERT");
        templates.set(&batch, None);
        assert!(!templates.contains_key("b") && templates.get("b").is_none());
    }

    #[test]
    fn settings_follow_the_batch_tables() {
        let text = "[[batch]]\nname = \"plain\"\n[[batch]]\nname = \"undo\"\nmax_in_flight = 2\nrollback_action = { actionType = \"UNDO\" }\n";
        let config: Config = toml::from_str(text).unwrap();
        let settings = from_config(&config);
        assert_eq!(
            settings["plain"],
            BatchSettings {
                max_in_flight: 0,
                rollback: None
            }
        );
        assert_eq!(settings["undo"].max_in_flight, 2);
        assert_eq!(
            settings["undo"].rollback,
            Some(serde_json::json!({"actionType": "UNDO"}))
        );
    }
}
