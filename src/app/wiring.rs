//! Starting the daemon's parts in order: the singleton actors under their supervisors,
//! the admin server, the environment every poller shares, and admission.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use metrics_exporter_prometheus::PrometheusHandle;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::watch;

use super::credentials::Credentials;
use crate::actors::admission::{AdmissionActor, Idle};
use crate::actors::audit::{AuditActor, AuditSettings};
use crate::actors::classifier::ClassifierActor;
use crate::actors::dead_letter::{DeadLetterActor, Webhook};
use crate::actors::poller::PollerEnv;
use crate::actors::singleton::Life;
use crate::actors::token::{TokenActor, TokenCache, TokenHealth, TokenSource};
use crate::admin::Readiness;
use crate::classify::Rules;
use crate::config::{self, Config, Secret, Singleton};
use crate::cxone::SharedPauses;
use crate::cxone::{CxoneClient, Gate};
use crate::error::Error;
use crate::health::Blockers;
use crate::journal::{Cluster, Journal, Snapshot};
use crate::net::Egresses;
use crate::simulator::RunningSimulator;
use crate::telemetry::metrics::Endpoint;

/// The running parts of a daemon.
pub struct Daemon {
    /// The journal.
    pub journal: Journal,
    /// Audit records.
    pub audit: Addr<AuditActor>,
    /// Dead letters.
    pub dead_letter: Addr<DeadLetterActor>,
    /// Admission and the pollers it starts.
    pub admission: Addr<AdmissionActor>,
    /// What the pollers share (the shutdown reads its request count).
    pub env: Rc<PollerEnv>,
    /// What `/readyz` reads.
    pub readiness: Arc<Readiness>,
    /// The token actor's state.
    pub token_health: watch::Receiver<TokenHealth>,
    /// Problems met while running that only an operator can fix.
    pub blockers: Blockers,
    /// Whether every admitted action has an outcome.
    pub idle: watch::Receiver<Idle>,
    /// The admin server.
    pub admin: Option<ServerHandle>,
    /// The embedded simulator.
    pub simulator: Option<RunningSimulator>,
    /// The Prometheus recorder.
    pub metrics: PrometheusHandle,
}

/// Starts every part; `snapshot` is what the journal held at open, `cluster` the
/// membership of a PostgreSQL journal, `blockers` where the parts report problems.
pub fn start(
    cfg: &Config,
    creds: Credentials,
    journal: Journal,
    snapshot: Snapshot,
    cluster: Option<Arc<Cluster>>,
    blockers: Blockers,
) -> Result<Daemon, Error> {
    let metrics = crate::telemetry::metrics::install();
    crate::telemetry::metrics::register_globals();
    let egress = Egresses::from_config(cfg)?;
    let mut gate = Gate::new(cfg.retry.base_delay, cfg.limits.requests_per_second);
    if let Some(cluster) = &cluster {
        gate = gate.shared(Box::new(ClusterPauses {
            journal: journal.clone(),
            cluster: cluster.clone(),
        }));
    }
    let gate = Rc::new(gate);
    let client = Rc::new(CxoneClient::new(&cfg.cxone, &creds.base_url, gate, &egress.cxone));
    let chaos_seed = cfg.chaos.rng_seed();
    tracing::info!(chaos_seed, "Random draws (chaos, jitter) seeded.");
    let life = |actor| Life::new(actor, &cfg.chaos, chaos_seed, &cfg.supervisor, blockers.clone());

    let settings = AuditSettings {
        path: cfg.audit.path.clone(),
        fsync: cfg.audit.fsync,
        rescue: cluster.as_ref().map(|_| cfg.cluster.heartbeat),
    };
    let audit_actor = AuditActor::open(
        settings,
        journal.clone(),
        snapshot.unaudited,
        blockers.clone(),
        life(Singleton::Audit),
    )
    .map_err(|source| Error::Audit {
        path: cfg.audit.path.clone(),
        source,
    })?;
    let audit = Supervisor::start(move |_| audit_actor);

    let (health_tx, token_health) = watch::channel(TokenHealth::Missing);
    let readiness = Arc::new(Readiness {
        token: token_health.clone(),
        blockers: blockers.clone(),
        cluster: cluster.clone(),
        shutting_down: AtomicBool::new(false),
        liveness: serve_liveness(),
    });
    let admin = serve_admin(cfg, &metrics, &readiness, creds.admin_token.clone())?;

    let token_cache = TokenCache::default();
    let source = TokenSource {
        client: client.clone(),
        client_id: creds.client_id,
        secret: creds.secret,
        skew: cfg.cxone.token_refresh_skew,
    };
    let (actor_cache, token_life) = (token_cache.clone(), life(Singleton::Token));
    let token = Supervisor::start(move |_| TokenActor::new(source, health_tx, actor_cache, token_life));
    let (rules, classifier_life) = (Rules::new(&cfg.classifier), life(Singleton::Classifier));
    let classifier = Supervisor::start(move |_| ClassifierActor::new(rules, classifier_life));
    let webhook = Webhook {
        url: creds.webhook_url,
        signing_key: creds.signing_key,
        timeout: cfg.dead_letter.timeout,
        max_delay: cfg.dead_letter.redelivery_max_delay,
        egress: egress.dead_letter,
        blockers: blockers.clone(),
    };
    let (dl_audit, dl_journal) = (audit.clone(), journal.clone());
    let dl_life = life(Singleton::DeadLetter);
    let dead_letter = Supervisor::start(move |_| DeadLetterActor::new(webhook, dl_audit, dl_journal, dl_life));
    let env = Rc::new(PollerEnv {
        client,
        token,
        token_cache,
        classifier,
        audit: audit.clone(),
        dead_letter: dead_letter.clone(),
        poll: cfg.poll.clone(),
        retry: cfg.retry.clone(),
        supervisor: cfg.supervisor.clone(),
        rollback_templates: RefCell::new(rollback_templates(cfg)),
        chaos_probability: if cfg.chaos.enabled {
            cfg.chaos.poller_panic_probability
        } else {
            0.0
        },
        rng: RefCell::new(SmallRng::seed_from_u64(chaos_seed)),
        journal: journal.clone(),
        blockers: blockers.clone(),
        cluster: cluster.clone(),
        stopping: Cell::new(false),
        request_slots: tokio::sync::Semaphore::new(cfg.cxone.max_connections),
        requests: Default::default(),
    });
    let (idle_tx, idle) = watch::channel(Idle(false));
    // A cluster member looks for actions of dead members every heartbeat.
    let rescan = cluster.as_ref().map(|_| cfg.cluster.heartbeat);
    let admission =
        AdmissionActor::new(env.clone(), journal.clone(), cfg.limits.max_in_flight, idle_tx, rescan).start();
    Ok(Daemon {
        journal,
        audit,
        dead_letter,
        admission,
        env,
        readiness,
        token_health,
        blockers,
        idle,
        admin,
        simulator: creds.simulator,
        metrics,
    })
}

/// Answers `/healthz` on this loop, the one that runs the actors: a wedged loop fails it.
fn serve_liveness() -> crate::health::Liveness {
    let (liveness, responder) = crate::health::liveness();
    actix_rt::spawn(responder.serve());
    liveness
}

/// Starts the admin server when `admin.listen` is set.
fn serve_admin(
    cfg: &Config,
    metrics: &PrometheusHandle,
    readiness: &Arc<Readiness>,
    token: Option<Secret>,
) -> Result<Option<ServerHandle>, Error> {
    let Some(listen) = cfg.admin.listen else {
        return Ok(None);
    };
    let (handle, addr) = crate::admin::start(listen, metrics.clone(), Arc::new(cfg.clone()), readiness.clone(), token)
        .map_err(|source| Error::Admin { addr: listen, source })?;
    tracing::info!(%addr, "Admin server listening.");
    Ok(Some(handle))
}

/// The compensation template of each batch that has one.
pub fn rollback_templates(cfg: &Config) -> crate::actors::poller::RollbackTemplates {
    cfg.batches
        .iter()
        .filter(|b| !b.rollback_action.is_empty())
        .map(|b| {
            (
                Arc::<str>::from(b.name.as_str()),
                config::table_to_json(&b.rollback_action),
            )
        })
        .collect()
}

/// The 429 pauses of a cluster: published through the journal, learned by the heartbeat.
struct ClusterPauses {
    journal: Journal,
    cluster: Arc<Cluster>,
}

impl SharedPauses for ClusterPauses {
    fn publish(&self, endpoint: Endpoint, until_ms: i64) {
        self.journal.publish_pause(endpoint, until_ms);
    }

    fn until_ms(&self, endpoint: Endpoint) -> i64 {
        self.cluster.paused_until_ms(endpoint)
    }
}
