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
/// The CXone API (submit and poll), for a poller that meets a misconfiguration there while
/// the token endpoint works (a `token_url` on another host).
pub const CXONE_API: &str = "cxone";

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

    /// Resolves with the first blocker (`component: reason`) once there is one.
    pub async fn blocked(&self) -> String {
        let mut changes = self.0.subscribe();
        loop {
            if let Some(reason) = self.first() {
                return reason;
            }
            // The sender lives in `self`, so `changed` only fails if it is gone.
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_clears_and_notifies_only_on_change() {
        let blockers = Blockers::default();
        let mut rx = blockers.0.subscribe();
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

    #[test]
    fn blocked_resolves_once_a_component_is_blocked() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let blockers = Blockers::default();
        let waiting = blockers.clone();
        let reason = runtime.block_on(async move {
            let wait = tokio::spawn(async move { waiting.blocked().await });
            tokio::task::yield_now().await;
            blockers.block(WEBHOOK, "proxy demands credentials".into());
            wait.await.unwrap()
        });
        assert_eq!(reason, "webhook: proxy demands credentials");
    }
}
