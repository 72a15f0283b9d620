//! Blockers: problems met while running that only an operator can fix, such as a webhook
//! whose certificate fails verification or a proxy that refuses the credentials. The
//! component that meets one records it here; `/readyz` answers 503 with it and
//! `run --once` stops with exit 3. Token problems travel in `TokenHealth` instead.
//!
//! Thread-safe: the admin server reads it from its own worker thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

/// The webhook of the dead-letter actor.
pub const WEBHOOK: &str = "webhook";

/// The current blockers, by component.
#[derive(Clone)]
pub struct Blockers(Arc<watch::Sender<BTreeMap<&'static str, String>>>);

impl Default for Blockers {
    fn default() -> Self {
        Blockers(Arc::new(watch::Sender::new(BTreeMap::new())))
    }
}

impl Blockers {
    /// Records that `component` is blocked, and why (a reason safe to show).
    pub fn block(&self, component: &'static str, reason: String) {
        self.0.send_if_modified(|map| {
            let changed = map.get(component) != Some(&reason);
            map.insert(component, reason);
            changed
        });
    }

    /// `component` works again.
    pub fn clear(&self, component: &'static str) {
        self.0.send_if_modified(|map| map.remove(component).is_some());
    }

    /// The first blocker, as `component: reason`.
    pub fn first(&self) -> Option<String> {
        self.0
            .borrow()
            .iter()
            .next()
            .map(|(component, reason)| format!("{component}: {reason}"))
    }

    /// A receiver that is notified on every change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<&'static str, String>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_clears_and_notifies_only_on_change() {
        let blockers = Blockers::default();
        let mut rx = blockers.subscribe();
        assert_eq!(blockers.first(), None);
        blockers.block(WEBHOOK, "bad certificate".into());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        blockers.block(WEBHOOK, "bad certificate".into());
        assert!(!rx.has_changed().unwrap(), "the same reason again is no change");
        assert_eq!(blockers.first().as_deref(), Some("webhook: bad certificate"));
        blockers.clear(WEBHOOK);
        assert!(rx.has_changed().unwrap());
        assert_eq!(blockers.first(), None);
    }
}
