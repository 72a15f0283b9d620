//! What every poller shares: the CXone client, the singleton actors and the settings.

use std::cell::Cell;
use std::rc::Rc;

use actix::Addr;

use super::poller::{PollerRng, RollbackTemplates};
use crate::actors::audit::AuditActor;
use crate::actors::classifier::ClassifierActor;
use crate::actors::dead_letter::DeadLetterActor;
use crate::actors::token::TokenActor;
use crate::config::{PollConfig, RetryConfig, SupervisorConfig};
use crate::cxone::CxoneClient;
use crate::journal::Journal;

/// Shared by the pollers of one arbiter.
pub struct PollerEnv {
    /// CXone calls.
    pub client: Rc<CxoneClient>,
    /// Tokens.
    pub token: Addr<TokenActor>,
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
    /// Compensation templates by batch.
    pub rollback_templates: RollbackTemplates,
    /// Chaos panic probability per step (0 unless `[chaos] enabled`).
    pub chaos_probability: f64,
    /// Jitter and chaos randomness.
    pub rng: PollerRng,
    /// The journal.
    pub journal: Journal,
    /// Set at shutdown: no new request starts.
    pub stopping: Cell<bool>,
    /// Steps allowed to have a request in flight (`cxone.max_connections`).
    pub request_slots: tokio::sync::Semaphore,
    /// CXone requests in flight (shutdown waits for them).
    pub requests_in_flight: Cell<usize>,
}
