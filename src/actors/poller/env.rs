//! What every poller shares (the CXone client, the singleton actors, the settings) and
//! the calls made through it: tokens with the 401 repeat, request slots, classification,
//! chaos.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use rand::rngs::SmallRng;
use rand::Rng;

use super::machine::Policy;
use super::MAILBOX_RETRY;
use crate::action::ActionSpec;
use crate::actors::audit::AuditActor;
use crate::actors::classifier::{ClassifierActor, Classify};
use crate::actors::dead_letter::DeadLetterActor;
use crate::actors::singleton::send_until_answered;
use crate::actors::token::{GetToken, InvalidateToken, TokenActor, TokenCache};
use crate::classify::{ErrorPayload, Failure};
use crate::config::{PollConfig, RetryConfig, Secret, SupervisorConfig};
use crate::cxone::{CallError, CxoneClient};
use crate::health::Blockers;
use crate::journal::Journal;

/// Shared by the pollers of one arbiter.
pub struct PollerEnv {
    /// CXone calls.
    pub client: Rc<CxoneClient>,
    /// Tokens.
    pub token: Addr<TokenActor>,
    /// The token actor's current token, read without a message while it is fresh.
    pub token_cache: TokenCache,
    /// Classification.
    pub classifier: Addr<ClassifierActor>,
    /// Audit records.
    pub audit: Addr<AuditActor>,
    /// Dead letters.
    pub dead_letter: Addr<DeadLetterActor>,
    /// `[poll]`.
    pub poll: PollConfig,
    /// `[retry]`.
    pub retry: RetryConfig,
    /// `[supervisor]`.
    pub supervisor: SupervisorConfig,
    /// Compensation templates by batch (replaced by a reload).
    pub rollback_templates: RefCell<RollbackTemplates>,
    /// Chaos panic probability per step (0 unless `[chaos] enabled`).
    pub chaos_probability: f64,
    /// Jitter and chaos randomness.
    pub rng: PollerRng,
    /// The journal.
    pub journal: Journal,
    /// Where a failure only an operator can fix is reported (`/readyz`, `run --once`).
    pub blockers: Blockers,
    /// The cluster membership: no request starts while this member is fenced.
    pub cluster: Option<std::sync::Arc<crate::journal::Cluster>>,
    /// Set at shutdown: no new request starts.
    pub stopping: Cell<bool>,
    /// Steps allowed to have a request in flight (`cxone.max_connections`).
    pub request_slots: tokio::sync::Semaphore,
    /// CXone requests in flight (shutdown waits for them).
    pub requests: InFlightRequests,
}

/// How often a fenced member looks whether its heartbeat was renewed.
const FENCED_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// One request in flight.
struct RequestGuard<'a>(&'a InFlightRequests);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        let requests = self.0;
        requests.count.set(requests.count.get() - 1);
        if requests.count.get() == 0 {
            requests.idle.notify_waiters();
        }
    }
}

/// A count of requests in flight that a shutdown can wait on.
#[derive(Default)]
pub struct InFlightRequests {
    count: Cell<usize>,
    idle: tokio::sync::Notify,
}

impl InFlightRequests {
    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.count.get()
    }

    /// Counts a request until the guard drops (also when its future is dropped midway).
    fn start(&self) -> RequestGuard<'_> {
        self.count.set(self.count.get() + 1);
        RequestGuard(self)
    }

    /// Resolves once no request is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl PollerEnv {
    /// A bearer token, asking again while the token actor restarts. `after_refusal`: the
    /// last one was refused, only a token outside its refresh skew will do.
    pub(super) async fn token(&self, after_refusal: bool) -> Secret {
        if let Some(token) = self.token_cache.fresh() {
            return token;
        }
        loop {
            match self.token.send(GetToken { after_refusal }).await {
                Ok(Ok(token)) => return token,
                _ => actix_rt::time::sleep(MAILBOX_RETRY).await,
            }
        }
    }

    /// A token, or `CallError::PollTimeout` once `deadline` passes without one (a token
    /// endpoint that stays down must not hold an action past `poll.timeout`).
    async fn token_before(&self, deadline: Option<Instant>, after_refusal: bool) -> Result<Secret, CallError> {
        let Some(deadline) = deadline else {
            return Ok(self.token(after_refusal).await);
        };
        tokio::select! {
            token = self.token(after_refusal) => Ok(token),
            _ = actix_rt::time::sleep_until(deadline.into()) => Err(CallError::PollTimeout),
        }
    }

    /// Runs `call` with a token; after a 401 invalidates it and repeats once with a fresh
    /// one, never one inside its refresh skew (not counted as a retry). A second 401 is returned to the caller. Waiting for
    /// a token ends at `deadline` (the action's `poll.timeout`).
    pub(super) async fn call<T>(
        &self,
        deadline: Option<Instant>,
        call: impl AsyncFn(Secret) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let token = self.token_before(deadline, false).await?;
        let result = self.one_request(&call, token.clone()).await;
        match result {
            Err(CallError::Status { status: 401, .. }) => {
                self.token_cache.invalidate(&token);
                self.token.do_send(InvalidateToken { token });
                let fresh = self.token_before(deadline, true).await?;
                self.one_request(&call, fresh).await
            }
            other => other,
        }
    }

    /// One request, counted as in flight; none starts once shutdown began (the action
    /// stays journaled and resumes at the next start).
    async fn one_request<T>(
        &self,
        call: &impl AsyncFn(Secret) -> Result<T, CallError>,
        token: Secret,
    ) -> Result<T, CallError> {
        if self.stopping.get() {
            std::future::pending::<()>().await;
        }
        // A member that could not renew its heartbeat may have lost its actions to the
        // others: it starts no request until the database answers again.
        while self.cluster.as_ref().is_some_and(|c| c.fenced()) {
            actix_rt::time::sleep(FENCED_RETRY).await;
        }
        let _counted = self.requests.start();
        call(token).await
    }

    /// One of the request slots: at most `cxone.max_connections` steps with a request in
    /// flight. More could not use a connection anyway, and a waiting step's request
    /// future is only allocated once it holds a slot (memory per action in flight:
    /// BENCHMARKS.md).
    pub(super) async fn request_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.request_slots
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// The settings a decision about an action of `batch` depends on.
    pub(super) fn policy(&self, batch: &str) -> Policy<'_> {
        Policy {
            retry: &self.retry,
            poll: &self.poll,
            supervisor: &self.supervisor,
            can_compensate: self.rollback_templates.borrow().contains_key(batch),
        }
    }

    /// The failure's `ErrorPayload` from the classifier, asking again while it restarts.
    pub(super) async fn classify(&self, failure: Failure) -> ErrorPayload {
        send_until_answered(&self.classifier, Classify { failure }, MAILBOX_RETRY).await
    }

    /// Panics with the configured chaos probability (drills and tests only).
    pub(super) fn chaos_point(&self) {
        if self.chaos_probability > 0.0 && self.rng.borrow_mut().random_bool(self.chaos_probability) {
            panic!("chaos: injected poller panic");
        }
    }

    /// The compensation body (docs/cxone.md, Rollback and compensation): the batch
    /// template with `metadata.compensates` and `metadata.key`.
    pub(super) fn rollback_body(&self, spec: &ActionSpec, failed_id: Option<&str>) -> Option<bytes::Bytes> {
        // `None` when the batch has no template any more (removed between two runs).
        let mut body = self.rollback_templates.borrow().get(&spec.identity.batch)?.clone();
        let object = body.as_object_mut()?;
        let metadata = object.entry("metadata").or_insert_with(|| serde_json::json!({}));
        if !metadata.is_object() {
            *metadata = serde_json::json!({});
        }
        let metadata = metadata.as_object_mut().expect("just made an object");
        metadata.insert("compensates".into(), failed_id.into());
        metadata.insert("key".into(), spec.identity.to_string().into());
        Some(bytes::Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")))
    }
}

/// Rollback templates by batch name.
pub type RollbackTemplates = HashMap<Arc<str>, serde_json::Value>;

/// The random source of pollers (jitter, chaos).
pub type PollerRng = RefCell<SmallRng>;
