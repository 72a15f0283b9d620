//! `run`: the daemon. Opens the journal, resolves credentials, starts the actors, admits
//! the configured actions, then waits for the end: every action has an outcome
//! (`--once`), a stop request, or a problem only an operator can fix. The exit code of
//! each ending is a pure table in `shutdown.rs`.

mod control;
mod credentials;
mod retention;
mod shutdown;
mod systemd;
mod wiring;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use crate::actors::admission::{AdmissionActor, BatchSettings, Configure, StopAdmitting, Wake};
use crate::actors::audit::{AppendOutcome, AuditError, FlushAudit, ReopenAudit};
use crate::actors::dead_letter::{DrainDeadLetters, StopDelivering};
use crate::actors::singleton::send_until_answered;
use crate::actors::token::TokenHealth;
use crate::config::{self, Loaded};
use crate::error::Error;
use crate::health::Blockers;
use crate::journal::{self, load, Journal};
use crate::report::Summary;
use crate::simulator::RunningSimulator;
use crate::telemetry::throttle::{Throttle, FAILURE_LOG_PERIOD};
pub use control::wait_for_stop_signal;
use control::{Control, Request};
pub use shutdown::{exit_code, Ending, Tally};
use systemd::{Notifier, Tracked};
use wiring::Daemon;

/// How often the daemon looks for replay and discard requests made by other processes
/// (`dlq replay`, `dlq discard`, the console).
const REPLAY_POLL: Duration = Duration::from_millis(500);
/// How often histograms are compacted by the Prometheus recorder.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// Log lines about failed replay and discard pickups (a full disk fails every one).
static REPLAYS_FAILED: Throttle = Throttle::new(FAILURE_LOG_PERIOD);
/// How long to wait before asking a restarting singleton again.
const MAILBOX_RETRY: Duration = Duration::from_millis(20);
/// How often the end of a run asks a restarting singleton before giving up on it.
const ASK_TRIES: u32 = 50;

/// What a caller may hand to `run_with` besides the configuration.
#[derive(Default)]
pub struct RunOptions {
    /// Resolves when the daemon should stop (in-process tests); `None`: the process's
    /// SIGTERM/SIGINT stop it and SIGHUP reloads the file.
    pub stop: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// An embedded simulator already started (for `cxone.base_url = "simulator"`).
    pub simulator: Option<RunningSimulator>,
}

/// Runs the daemon on a fresh actix System until it is done or stopped; returns the exit code.
pub fn run(loaded: Loaded, once: bool) -> Result<u8, Error> {
    // rustls needs one process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    actix_rt::System::new().block_on(run_with(loaded, once, RunOptions::default()))
}

/// Runs the daemon on the current actix System (tests call this inside `#[actix_rt::test]`).
pub async fn run_with(loaded: Loaded, once: bool, options: RunOptions) -> Result<u8, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut control = Control::new(options.stop)?;
    let cfg = loaded.config.clone();
    let blockers = Blockers::default();
    // The journal first: a second daemon on a SQLite journal must stop before touching
    // anything. Opening blocks (PostgreSQL connects): off the actors' thread.
    let open_options = journal::OpenOptions {
        instance_name: cfg.cluster.instance_name(),
        audit_path: std::path::absolute(&cfg.audit.path).unwrap_or_else(|_| cfg.audit.path.clone()),
        forget_poll_ids: cfg.cxone.uses_simulator(),
        health: blockers.clone(),
    };
    let opening = cfg.clone();
    let opened = actix_rt::task::spawn_blocking(move || journal::open(&opening, &open_options))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    let journal::Opened {
        journal,
        snapshot,
        cluster,
    } = opened;
    // Replays requested while no daemon ran count as due from the first claim on.
    for replay in journal.take_replays().await? {
        tracing::info!(identity = %replay.identity, error_id = %replay.error_id, series = replay.series, "Dead letter replayed.");
    }
    // Discards requested while no daemon ran: those letters are never delivered again.
    let discards = journal.take_discards().await?;
    let loaded = Arc::new(loaded);
    let report = load(journal.clone(), loaded.clone()).await?;
    tracing::info!(
        new = report.inserted(),
        batches = cfg.batches.len(),
        "Actions loaded into the journal."
    );
    let creds = credentials::resolve(&cfg, options.simulator).await?;
    let daemon = wiring::start(&cfg, creds, journal, snapshot, cluster, blockers)?;
    discarded(&daemon, discards);
    let notifier = Notifier::from_env();
    let watchdog = notifier.spawn_watchdog();
    let tracked = Rc::new(Tracked::default());
    configure(&daemon.journal, &daemon.admission, &cfg, &tracked).await?;
    let pruning = cfg
        .journal
        .retention
        .map(|keep| retention::start(daemon.journal.clone(), keep));
    tracing::info!(once, "Running.");
    notifier.ready();

    let ending = watch(&daemon, &mut control, once, &loaded.path, (&notifier, &tracked)).await;
    notifier.stopping();
    if let Some(pruning) = pruning {
        pruning.abort();
    }
    daemon.admission.do_send(StopAdmitting);
    daemon.readiness.shutting_down.store(true, Ordering::Relaxed);
    let (ending, undelivered) = drain(&daemon, &cfg, ending, &mut control).await;
    let summary = Summary {
        batches: daemon.journal.counts(batch_names(&cfg)).await.unwrap_or_default(),
    };
    let tally = Tally {
        all_finished: summary.all_finished(),
        all_completed: summary.all_completed(),
        undelivered,
    };
    if let Ending::Blocked(reason) = &ending {
        eprintln!("actionwarden: cannot run: {reason}");
    }
    close(daemon, &summary).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    Ok(exit_code(&ending, once, tally))
}

fn batch_names(cfg: &config::Config) -> Vec<Arc<str>> {
    cfg.batches.iter().map(|b| Arc::from(b.name.as_str())).collect()
}

/// Checks and loads the configured actions into the journal, off the actors' thread.
async fn load(journal: Journal, loaded: Arc<Loaded>) -> Result<load::Report, Error> {
    actix_rt::task::spawn_blocking(move || load::load(&journal, &loaded))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(Error::from)
}

/// Tells admission the configured batches, their limits and where they stand (and
/// `tracked`, what systemd's `STATUS=` counts).
async fn configure(
    journal: &Journal,
    admission: &Addr<AdmissionActor>,
    cfg: &config::Config,
    tracked: &Tracked,
) -> Result<(), Error> {
    let counts = journal.counts(batch_names(cfg)).await?;
    tracked.set(batch_names(cfg), counts.iter().map(|c| c.total).sum());
    let batches = cfg
        .batches
        .iter()
        .zip(counts)
        .map(|(batch, counts)| BatchSettings {
            name: Arc::from(batch.name.as_str()),
            max_in_flight: batch.max_in_flight,
            total: counts.total,
            finished: counts.finished(),
        })
        .collect();
    admission.do_send(Configure { batches });
    Ok(())
}

/// Waits for the end of the run, reloading on SIGHUP, picking up replay requests and
/// telling systemd the progress.
async fn watch(
    daemon: &Daemon,
    control: &mut Control,
    once: bool,
    path: &Path,
    (notifier, tracked): (&Notifier, &Rc<Tracked>),
) -> Ending {
    let mut replay_tick = tokio::time::interval(REPLAY_POLL);
    let mut upkeep_tick = tokio::time::interval(METRICS_UPKEEP);
    let mut status_tick = tokio::time::interval(systemd::STATUS_INTERVAL);
    let (mut idle, mut health) = (daemon.idle.clone(), daemon.token_health.clone());
    loop {
        tokio::select! {
            _ = upkeep_tick.tick() => daemon.metrics.run_upkeep(),
            _ = status_tick.tick(), if notifier.enabled() => {
                if let Ok(unresolved) = daemon.journal.unresolved(tracked.batches()).await {
                    notifier.status(&systemd::progress(tracked.total(), unresolved));
                }
            }
            _ = replay_tick.tick() => {
                match daemon.journal.take_replays().await {
                    Ok(replays) if !replays.is_empty() => {
                        for replay in &replays {
                            tracing::info!(identity = %replay.identity, error_id = %replay.error_id, series = replay.series, "Dead letter replayed.");
                        }
                        let batches = replays.into_iter().map(|r| r.identity.batch).collect();
                        daemon.admission.do_send(Wake { batches });
                    }
                    Ok(_) => {}
                    Err(e) => if let Some(suppressed) = REPLAYS_FAILED.allow() {
                        tracing::error!(error = %e, suppressed, "Cannot take replay requests.");
                    },
                }
                match daemon.journal.take_discards().await {
                    Ok(discards) => discarded(daemon, discards),
                    Err(e) => if let Some(suppressed) = REPLAYS_FAILED.allow() {
                        tracing::error!(error = %e, suppressed, "Cannot take discard requests.");
                    },
                }
            }
            request = control.next() => match request {
                Request::Stop => return Ending::Stopped,
                Request::Reload => reload(path, daemon, tracked.clone()),
            },
            changed = idle.changed(), if once => {
                if changed.is_err() || idle.borrow().0 {
                    return Ending::Finished;
                }
            }
            changed = health.changed(), if once => {
                if changed.is_err() {
                    continue;
                }
                if let TokenHealth::Rejected(reason) = health.borrow().clone() {
                    return Ending::Blocked(reason);
                }
            }
            reason = daemon.blockers.blocked(), if once => return Ending::Blocked(reason),
            reason = daemon.blockers.fatal() => return Ending::Blocked(reason),
        }
    }
}

/// Discards the journal has carried out (marked letters are never claimed for delivery
/// again): their audit records, journaled with the marks, go to the audit file.
fn discarded(daemon: &Daemon, discards: Vec<journal::Discard>) {
    for discard in discards {
        tracing::info!(identity = %discard.identity, error_id = %discard.error_id, "Dead letter discarded.");
        daemon.audit.do_send(AppendOutcome {
            event_type: crate::audit::DEAD_LETTER_DISCARDED,
            outcome: discard.audit,
        });
    }
}

/// After the loop: `--once` waits for undelivered dead letters (up to `drain_timeout`), a
/// stop lets in-flight requests finish (up to `shutdown.timeout`). A second stop request
/// ends either wait at once: the journal already holds everything; so does a webhook
/// only an operator can fix. Returns how the run ended and the dead letters still
/// undelivered.
async fn drain(daemon: &Daemon, cfg: &config::Config, ending: Ending, control: &mut Control) -> (Ending, usize) {
    let letters = || {
        let asked = DrainDeadLetters {
            timeout: Duration::ZERO,
        };
        ask_restarting(&daemon.dead_letter, asked, usize::MAX)
    };
    match ending {
        Ending::Finished => {
            let asked = DrainDeadLetters {
                timeout: cfg.dead_letter.drain_timeout,
            };
            let drain = send_until_answered(&daemon.dead_letter, asked, MAILBOX_RETRY);
            let (ending, left) = tokio::select! {
                left = drain => (Ending::Finished, left),
                _ = control.next_stop() => (Ending::Finished, letters().await),
                reason = daemon.blockers.blocked() => (Ending::Blocked(reason), letters().await),
            };
            if left > 0 && ending == Ending::Finished {
                tracing::warn!(
                    undelivered = left,
                    "Dead letters still undelivered after drain_timeout; they stay stored."
                );
            }
            (ending, left)
        }
        Ending::Stopped => {
            tracing::info!(timeout = ?cfg.shutdown.timeout, "Shutting down: no new requests; waiting for those in flight.");
            daemon.env.stopping.set(true);
            let drained = tokio::select! {
                drained = tokio::time::timeout(cfg.shutdown.timeout, daemon.env.requests.idle()) => drained.is_ok(),
                _ = control.next_stop() => {
                    tracing::warn!("Second stop request: stopping now; unfinished actions resume at the next start.");
                    true
                }
            };
            if !drained {
                tracing::warn!(
                    in_flight = daemon.env.requests.count(),
                    "Shutdown timeout passed with requests in flight; they resume at the next start."
                );
            }
            (Ending::Stopped, letters().await)
        }
        Ending::Blocked(reason) => (Ending::Blocked(reason), letters().await),
    }
}

/// Asks a singleton that may be restarting, a bounded number of times (one in a crash
/// loop must not hold up the end); `gave_up` when it never answered.
async fn ask_restarting<A, M>(addr: &Addr<A>, msg: M, gave_up: M::Result) -> M::Result
where
    A: actix::Actor + actix::Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: actix::Message + Clone + Send + 'static,
    M::Result: Send,
{
    for _ in 0..ASK_TRIES {
        match addr.send(msg.clone()).await {
            Ok(answer) => return answer,
            Err(_) => actix_rt::time::sleep(MAILBOX_RETRY).await,
        }
    }
    gave_up
}

/// Flushes journal and audit, prints the summary, stops the servers.
async fn close(daemon: Daemon, summary: &crate::report::Summary) {
    // Deliveries in flight journal their attempt before the journal closes.
    ask_restarting(&daemon.dead_letter, StopDelivering, ()).await;
    // A cluster member hands its unfinished actions to the others at once.
    daemon.journal.release();
    if let Err(e) = daemon.journal.flush().await {
        tracing::error!(error = %e, "Journal flush failed.");
    }
    if let Err(e) = ask_restarting(&daemon.audit, FlushAudit, Err(AuditError::WriterGone)).await {
        tracing::error!(error = %e, "Audit flush failed.");
    }
    crate::report::clear_bars();
    if let Err(e) = crate::commands::output::print(&summary.render()) {
        tracing::warn!(error = %e, "Summary not printed.");
    }
    if let Some(admin) = daemon.admin {
        admin.stop(true).await;
    }
    if let Some(sim) = daemon.simulator {
        sim.handle.stop(false).await;
    }
}

/// SIGHUP: reads the file again, loads new actions and applies the batches' settings
/// (limits, compensation templates) exactly as at start; an invalid file is logged and
/// ignored. Also reopens the audit file (after logrotate renamed it, later records go to
/// a new file). Runs beside the main loop: loading a big file must not hold it up.
fn reload(path: &Path, daemon: &Daemon, tracked: Rc<Tracked>) {
    let audit = daemon.audit.clone();
    actix_rt::spawn(async move {
        if let Err(e) = ask_restarting(&audit, ReopenAudit, Err(AuditError::WriterGone)).await {
            tracing::error!(error = %e, "Cannot reopen the audit file.");
        }
    });
    let (path, journal) = (path.to_owned(), daemon.journal.clone());
    let (admission, env) = (daemon.admission.clone(), daemon.env.clone());
    actix_rt::spawn(async move {
        let loading = journal.clone();
        let read = actix_rt::task::spawn_blocking(move || {
            let loaded = config::load(&path).map_err(load::LoadError::from)?;
            let report = load::load(&loading, &loaded)?;
            Ok::<_, load::LoadError>((loaded, report))
        })
        .await;
        match read {
            Ok(Ok((loaded, report))) => {
                env.rollback_templates
                    .replace(wiring::rollback_templates(&loaded.config));
                match configure(&journal, &admission, &loaded.config, &tracked).await {
                    Ok(()) => tracing::info!(added = report.inserted(), "Configuration reloaded."),
                    Err(e) => tracing::error!(error = %e, "Reload failed."),
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "Reload ignored: the configuration is invalid."),
            Err(e) => tracing::error!(error = %e, "Reload failed."),
        }
    });
}
