//! Blockers: problems met while running, by component and severity. A degraded component
//! (the journal or the audit file cannot be written, e.g. a full disk) makes `/readyz`
//! answer 503 while it lasts and recovers by itself; a blocked one (a webhook whose
//! certificate fails verification, a proxy refusing the credentials) needs an operator,
//! so `run --once` also stops with exit 3; a fatal one (a singleton actor in a crash
//! loop) stops the daemon with exit 3 whatever the mode. The component that meets a
//! problem records it here, and clears it once it works again. Token problems travel in
//! `TokenHealth` instead.
//!
//! Thread-safe: the admin server reads it from its own worker thread, the journal and
//! audit writers write it from theirs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

/// The webhook of the dead-letter actor.
pub const WEBHOOK: &str = "webhook";
/// The CXone API (submit and poll), for a poller that meets a misconfiguration there while
/// the token endpoint works (a `token_url` on another host).
pub const CXONE_API: &str = "cxone";
/// The journal's writer: a commit failed.
pub const JOURNAL: &str = "journal";
/// The audit file's writer: a write failed.
pub const AUDIT: &str = "audit";
/// The supervision of the singleton actors: one restarted too often.
pub const SUPERVISOR: &str = "supervisor";

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// `/readyz` answers 503 while it lasts; the work waits and goes on once it is over.
    Degraded,
    /// Only an operator can fix it: `/readyz` answers 503 and `run --once` stops (exit 3).
    Blocked,
    /// The daemon cannot go on: it stops with exit 3, also when not `--once`.
    Fatal,
}

type Problems = BTreeMap<&'static str, (Severity, String)>;

/// The current problems, by component.
#[derive(Clone)]
pub struct Blockers(Arc<watch::Sender<Problems>>);

impl Default for Blockers {
    fn default() -> Self {
        Blockers(Arc::new(watch::Sender::new(BTreeMap::new())))
    }
}

impl Blockers {
    /// Records that `component` is blocked until an operator acts, and why (a reason safe
    /// to show).
    pub fn block(&self, component: &'static str, reason: String) {
        self.record(component, Severity::Blocked, reason);
    }

    /// Records that `component` fails for now and retries by itself.
    pub fn degrade(&self, component: &'static str, reason: String) {
        self.record(component, Severity::Degraded, reason);
    }

    /// Records that the daemon cannot go on because of `component`.
    pub fn fail(&self, component: &'static str, reason: String) {
        self.record(component, Severity::Fatal, reason);
    }

    fn record(&self, component: &'static str, severity: Severity, reason: String) {
        self.0.send_if_modified(|map| {
            let entry = (severity, reason);
            let changed = map.get(component) != Some(&entry);
            map.insert(component, entry);
            changed
        });
    }

    /// `component` works again.
    pub fn clear(&self, component: &'static str) {
        self.0.send_if_modified(|map| map.remove(component).is_some());
    }

    /// The most serious problem, as `component: reason` (what `/readyz` shows).
    pub fn first(&self) -> Option<String> {
        self.worst(Severity::Degraded)
    }

    /// The most serious problem of at least `severity`, as `component: reason`.
    fn worst(&self, severity: Severity) -> Option<String> {
        self.0
            .borrow()
            .iter()
            .filter(|(_, (s, _))| *s >= severity)
            .max_by_key(|(_, (s, _))| *s)
            .map(|(component, (_, reason))| format!("{component}: {reason}"))
    }

    /// Resolves with the first problem an operator must fix (blocked or fatal), as
    /// `component: reason`.
    pub async fn blocked(&self) -> String {
        self.wait_for(Severity::Blocked).await
    }

    /// Resolves with the first fatal problem, as `component: reason`.
    pub async fn fatal(&self) -> String {
        self.wait_for(Severity::Fatal).await
    }

    async fn wait_for(&self, severity: Severity) -> String {
        let mut changes = self.0.subscribe();
        loop {
            if let Some(reason) = self.worst(severity) {
                return reason;
            }
            // The sender lives in `self`, so `changed` only fails if it is gone.
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Asks the event loop that runs the actors whether it still turns: `/healthz` sends a
/// probe from the admin server's thread, and a task on that loop answers it. A wedged
/// loop answers nothing, and the probe times out.
#[derive(Clone)]
pub struct Liveness(mpsc::Sender<oneshot::Sender<()>>);

/// The answering side of `Liveness`, to run on the actors' event loop.
pub struct LivenessResponder(mpsc::Receiver<oneshot::Sender<()>>);

/// Probes that may wait at once; more are refused (a wedged loop must not pile them up).
const PENDING_PROBES: usize = 64;

/// A probe and its responder.
pub fn liveness() -> (Liveness, LivenessResponder) {
    let (tx, rx) = mpsc::channel(PENDING_PROBES);
    (Liveness(tx), LivenessResponder(rx))
}

impl Liveness {
    /// Whether the loop answered within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.0.try_send(tx).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}

impl LivenessResponder {
    /// Answers probes until every `Liveness` is dropped.
    pub async fn serve(mut self) {
        while let Some(probe) = self.0.recv().await {
            let _ = probe.send(());
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

    #[test]
    fn liveness_answers_only_while_its_responder_runs() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let short = Duration::from_millis(50);
        runtime.block_on(async {
            let (probe, responder) = liveness();
            assert!(!probe.probe(short).await, "no responder running: no answer");
            let serving = tokio::spawn(responder.serve());
            assert!(probe.probe(short).await, "a running loop answers");
            serving.abort();
            let _ = serving.await;
            assert!(!probe.probe(short).await, "a stopped loop does not");
        });
    }

    #[test]
    fn severities_decide_who_waits_and_readiness_shows_the_worst() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let blockers = Blockers::default();
        blockers.degrade(JOURNAL, "database or disk is full".into());
        assert_eq!(blockers.first().as_deref(), Some("journal: database or disk is full"));
        let short = std::time::Duration::from_millis(20);
        runtime.block_on(async {
            assert!(
                tokio::time::timeout(short, blockers.blocked()).await.is_err(),
                "degraded does not block"
            );
            blockers.block(WEBHOOK, "bad certificate".into());
            assert_eq!(blockers.blocked().await, "webhook: bad certificate");
            assert!(
                tokio::time::timeout(short, blockers.fatal()).await.is_err(),
                "blocked is not fatal"
            );
            blockers.fail(SUPERVISOR, "audit actor crash loop".into());
            assert_eq!(blockers.fatal().await, "supervisor: audit actor crash loop");
        });
        assert_eq!(blockers.first().as_deref(), Some("supervisor: audit actor crash loop"));
        blockers.clear(SUPERVISOR);
        blockers.clear(WEBHOOK);
        blockers.clear(JOURNAL);
        assert_eq!(blockers.first(), None);
    }
}
