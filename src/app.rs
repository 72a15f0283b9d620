//! `run`: boots the actors, admits the configured actions, handles signals and shuts
//! down, returning the exit code of SPEC §2.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::actors::admission::{AdmissionActor, Admit, GetSummary, Idle, ReplayActions, StopAdmitting};
use crate::actors::audit::{AuditActor, FlushAudit};
use crate::actors::classifier::ClassifierActor;
use crate::actors::dead_letter::{DeadLetterActor, DrainDeadLetters, Webhook};
use crate::actors::poller::PollerEnv;
use crate::actors::token::{SecretSource, TokenActor, TokenCache, TokenHealth};
use crate::admin::Readiness;
use crate::classify::Rules;
use crate::config::{self, Loaded, Secret, SIMULATOR};
use crate::cxone::{CxoneClient, Gate};
use crate::error::{exit, Error};
use crate::journal::{Journal, JournalError};
use crate::report::Progress;

/// Runs the daemon on a fresh actix System until it is done or stopped.
pub fn run(loaded: Loaded, once: bool) -> Result<u8, Error> {
    // rustls needs one process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    actix_rt::System::new().block_on(run_async(loaded, once))
}

/// Why the main loop ended.
enum Stop {
    /// Every action has an outcome (`--once`).
    Finished,
    /// SIGTERM/SIGINT.
    Signal,
    /// Credentials rejected (`--once`).
    Rejected(String),
}

/// How often the daemon looks for `dlq replay` requests made by other processes.
const REPLAY_POLL: Duration = Duration::from_millis(500);
/// How often histograms are compacted by the Prometheus recorder.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// Poll interval of the shutdown wait for in-flight requests.
const DRAIN_TICK: Duration = Duration::from_millis(10);

async fn run_async(mut loaded: Loaded, once: bool) -> Result<u8, Error> {
    let cfg = Rc::new(loaded.config.clone());
    let metrics = crate::telemetry::metrics::install();
    crate::telemetry::metrics::register_batches(cfg.batches.iter().map(|b| b.name.as_str()));

    // The journal first: a second daemon on it must stop before touching anything.
    let (journal, snapshot) = Journal::open(&cfg.journal.path, cfg.journal.fsync).map_err(|e| match e {
        JournalError::Locked { .. } => Error::CannotRun(e.to_string()),
        other => Error::CannotRun(format!("cannot open the journal: {other}")),
    })?;
    let mut snapshot = snapshot;
    if !snapshot.actions.is_empty() {
        tracing::info!(journaled = snapshot.actions.len(), "Resuming from the journal.");
    }
    if cfg.cxone.uses_simulator() {
        forget_embedded_ids(&mut snapshot.actions);
    }

    // CXone: the real one, or the embedded simulator on an ephemeral loopback port.
    let mut simulator = None;
    let (base_url, client_id, secret) = if cfg.cxone.uses_simulator() {
        let running = crate::simulator::start("127.0.0.1:0", cfg.simulator.clone())
            .await
            .map_err(|e| Error::CannotRun(format!("cannot start the embedded simulator: {e}")))?;
        let url = running.base_url();
        tracing::info!(url = %url, profile = ?cfg.simulator.profile, "Embedded simulator listening.");
        let secret = if cfg.simulator.client_secret_env.is_empty() {
            Secret::new(crate::simulator::DEFAULT_CLIENT_SECRET)
        } else {
            Secret::from_env(&cfg.simulator.client_secret_env).map_err(Error::Usage)?
        };
        let id = if cfg.simulator.client_id.is_empty() {
            crate::simulator::DEFAULT_CLIENT_ID.to_owned()
        } else {
            cfg.simulator.client_id.clone()
        };
        simulator = Some(running);
        (url, id, SecretSource::Fixed(secret))
    } else {
        let id = if cfg.cxone.client_id.is_empty() {
            std::env::var("CXONE_CLIENT_ID")
                .map_err(|_| Error::Usage("cxone.client_id is empty and CXONE_CLIENT_ID is not set".into()))?
        } else {
            cfg.cxone.client_id.clone()
        };
        let source = if !cfg.cxone.client_secret_file.is_empty() {
            let path = std::path::PathBuf::from(&cfg.cxone.client_secret_file);
            Secret::from_file(&path).map_err(|e| Error::Usage(format!("cxone.client_secret_file: {e}")))?;
            SecretSource::File(path)
        } else {
            let secret = Secret::from_env(&cfg.cxone.client_secret_env)
                .map_err(|e| Error::Usage(format!("cxone.client_secret_env: {e}")))?;
            SecretSource::Fixed(secret)
        };
        (cfg.cxone.base_url.clone(), id, source)
    };

    let webhook_url = match cfg.dead_letter.webhook_url.as_str() {
        "" => None,
        SIMULATOR => Some(format!("{base_url}/sim/webhook")),
        url => Some(url.to_owned()),
    };
    let signing_key = if cfg.dead_letter.signing_secret_env.is_empty() {
        None
    } else {
        Some(
            Secret::from_env(&cfg.dead_letter.signing_secret_env)
                .map_err(|e| Error::Usage(format!("dead_letter.signing_secret_env: {e}")))?,
        )
    };

    let gate = Rc::new(Gate::new(cfg.retry.base_delay, cfg.limits.requests_per_second));
    let client = Rc::new(CxoneClient::new(&cfg.cxone, &base_url, gate));

    let audit_actor = AuditActor::open(&cfg.audit.path, cfg.audit.fsync, journal.clone(), snapshot.unaudited)
        .map_err(|e| Error::CannotRun(format!("cannot open audit file {}: {e}", cfg.audit.path.display())))?;
    let audit = Supervisor::start(move |_| audit_actor);

    let (health_tx, mut health_rx) = watch::channel(TokenHealth::Missing);
    let readiness = Arc::new(Readiness {
        token: health_rx.clone(),
        shutting_down: AtomicBool::new(false),
    });
    let admin = if cfg.admin.listen.is_empty() {
        None
    } else {
        let token = if cfg.admin.token_env.is_empty() {
            None
        } else {
            Some(Secret::from_env(&cfg.admin.token_env).map_err(|e| Error::Usage(format!("admin.token_env: {e}")))?)
        };
        let (handle, addr) = crate::admin::start(
            &cfg.admin.listen,
            metrics.clone(),
            cfg.journal.path.clone(),
            readiness.clone(),
            token,
            !cfg.dead_letter.webhook_url.is_empty(),
        )
        .map_err(|e| Error::CannotRun(format!("cannot serve the admin API on {}: {e}", cfg.admin.listen)))?;
        tracing::info!(%addr, "Admin server listening.");
        Some(handle)
    };
    let token_client = client.clone();
    let skew = cfg.cxone.token_refresh_skew;
    let token_cache = TokenCache::default();
    let actor_cache = token_cache.clone();
    let token =
        Supervisor::start(move |_| TokenActor::new(token_client, client_id, secret, skew, health_tx, actor_cache));
    let rules = Rules::new(&cfg.classifier);
    let classifier = Supervisor::start(move |_| ClassifierActor::new(rules));
    let webhook = Webhook {
        url: webhook_url,
        signing_key,
        timeout: cfg.dead_letter.timeout,
        max_delay: cfg.dead_letter.redelivery_max_delay,
    };
    let dl_audit = audit.clone();
    let dl_journal = journal.clone();
    let undelivered = snapshot.undelivered;
    let dead_letter = Supervisor::start(move |_| DeadLetterActor::new(webhook, dl_audit, dl_journal, undelivered));

    let rollback_templates = cfg
        .batches
        .iter()
        .filter(|b| !b.rollback_action.is_empty())
        .map(|b| {
            let value = config::table_to_json(&b.rollback_action);
            (Arc::<str>::from(b.name.as_str()), value)
        })
        .collect();
    let chaos_probability = if cfg.chaos.enabled {
        cfg.chaos.poller_panic_probability
    } else {
        0.0
    };
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
        rollback_templates,
        chaos_probability,
        rng: std::cell::RefCell::new(SmallRng::from_os_rng()),
        journal: journal.clone(),
        stopping: std::cell::Cell::new(false),
        requests_in_flight: std::cell::Cell::new(0),
        request_slots: tokio::sync::Semaphore::new(cfg.cxone.max_connections),
    });
    let batch_limits: HashMap<Arc<str>, usize> = cfg
        .batches
        .iter()
        .map(|b| (Arc::<str>::from(b.name.as_str()), b.max_in_flight))
        .collect();
    let (idle_tx, mut idle_rx) = watch::channel(Idle(false));
    let admission = AdmissionActor::new(
        env.clone(),
        cfg.limits.max_in_flight,
        batch_limits,
        snapshot.actions,
        idle_tx,
        Progress::new(),
    )
    .start();
    let admitted = admission
        .send(Admit {
            actions: std::mem::take(&mut loaded.actions),
        })
        .await
        .map_err(|e| Error::CannotRun(format!("admission failed: {e}")))?;
    tracing::info!(actions = admitted, batches = cfg.batches.len(), once, "Running.");

    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::CannotRun(format!("signals: {e}")))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::CannotRun(format!("signals: {e}")))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| Error::CannotRun(format!("signals: {e}")))?;

    let mut replay_tick = tokio::time::interval(REPLAY_POLL);
    let mut upkeep_tick = tokio::time::interval(METRICS_UPKEEP);
    let stop = loop {
        tokio::select! {
            _ = upkeep_tick.tick() => metrics.run_upkeep(),
            _ = replay_tick.tick() => {
                let replays = journal.take_replays().await;
                if !replays.is_empty() {
                    let _ = admission.send(ReplayActions { replays }).await;
                }
            }
            _ = sigterm.recv() => break Stop::Signal,
            _ = sigint.recv() => break Stop::Signal,
            _ = sighup.recv() => reload(&loaded.path, &admission).await,
            changed = idle_rx.changed(), if once => {
                if changed.is_err() || idle_rx.borrow().0 {
                    break Stop::Finished;
                }
            }
            changed = health_rx.changed(), if once => {
                if changed.is_err() {
                    continue;
                }
                if let TokenHealth::Rejected(reason) = health_rx.borrow().clone() {
                    break Stop::Rejected(reason);
                }
            }
        }
    };

    admission.do_send(StopAdmitting);
    readiness.shutting_down.store(true, Ordering::Relaxed);
    let code = match &stop {
        Stop::Finished => {
            // A signal during the drain ends it: the letters stay journaled and are
            // delivered by the next run.
            let drain = dead_letter.send(DrainDeadLetters {
                timeout: cfg.dead_letter.drain_timeout,
            });
            let left = tokio::select! {
                left = drain => left.unwrap_or(usize::MAX),
                _ = sigterm.recv() => usize::MAX,
                _ = sigint.recv() => usize::MAX,
            };
            if left > 0 {
                tracing::warn!(
                    undelivered = left,
                    "Dead letters still undelivered after drain_timeout; they stay stored."
                );
            }
            let summary = admission.send(GetSummary).await.unwrap_or_default();
            if summary.all_completed() && left == 0 {
                exit::OK
            } else {
                exit::NOT_ALL_COMPLETED
            }
        }
        Stop::Signal => {
            tracing::info!(timeout = ?cfg.shutdown.timeout, "Shutting down: no new requests; waiting for those in flight.");
            env.stopping.set(true);
            let drained = tokio::time::timeout(cfg.shutdown.timeout, async {
                while env.requests_in_flight.get() > 0 {
                    actix_rt::time::sleep(DRAIN_TICK).await;
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    in_flight = env.requests_in_flight.get(),
                    "Shutdown timeout passed with requests in flight; they resume at the next start."
                );
            }
            if once {
                let summary = admission.send(GetSummary).await.unwrap_or_default();
                if summary.all_finished() {
                    if summary.all_completed() {
                        exit::OK
                    } else {
                        exit::NOT_ALL_COMPLETED
                    }
                } else {
                    exit::INTERRUPTED
                }
            } else {
                exit::OK
            }
        }
        Stop::Rejected(reason) => {
            eprintln!("actionwarden: cannot run: {reason}; check cxone.client_id and the client secret");
            exit::CANNOT_RUN
        }
    };

    if let Err(e) = journal.flush().await {
        tracing::error!(error = %e, "Journal flush failed.");
    }
    if let Ok(Err(e)) = audit.send(FlushAudit).await {
        tracing::error!(error = %e, "Audit flush failed.");
    }
    if let Ok(summary) = admission.send(GetSummary).await {
        if let Err(e) = crate::commands::output::print(&summary.render()) {
            tracing::warn!(error = %e, "Summary not printed.");
        }
    }
    if let Some(admin) = admin {
        admin.stop(true).await;
    }
    if let Some(sim) = simulator {
        sim.handle.stop(false).await;
    }
    System::current().stop();
    Ok(code)
}

/// The embedded simulator lives and dies with this process, so the ids a previous run
/// was polling exist nowhere any more. Such actions repeat their POST with the same
/// Idempotency-Key (as `submitting` would), instead of polling an id that would only
/// answer 404. A real upstream keeps its actions, and this does not apply to it.
fn forget_embedded_ids(rows: &mut HashMap<crate::action::Identity, crate::journal::ActionRow>) {
    use crate::journal::StateWord;
    let mut resubmitted = 0;
    for row in rows.values_mut() {
        if matches!(row.state, StateWord::Polling | StateWord::RollingBack) && row.poll_id.is_some() {
            if row.state == StateWord::Polling {
                row.state = StateWord::Submitting;
            }
            row.poll_id = None;
            resubmitted += 1;
        }
    }
    if resubmitted > 0 {
        tracing::info!(resubmitted, "The embedded simulator restarted with this process; polled actions are submitted again with their Idempotency-Keys.");
    }
}

/// SIGHUP: reads the file again and admits actions not seen before; an invalid file is
/// logged and ignored.
async fn reload(path: &std::path::Path, admission: &Addr<AdmissionActor>) {
    match config::load(path) {
        Ok(loaded) => match admission
            .send(Admit {
                actions: loaded.actions,
            })
            .await
        {
            Ok(added) => tracing::info!(added, "Configuration reloaded."),
            Err(e) => tracing::error!(error = %e, "Reload failed."),
        },
        Err(e) => tracing::error!(error = %e, "Reload ignored: the configuration is invalid."),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_stop_signal() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
