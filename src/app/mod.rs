//! `run`: the daemon. Opens the journal, resolves credentials, starts the actors, admits
//! the configured actions, then waits for the end: every action has an outcome
//! (`--once`), a stop request, or a problem only an operator can fix. The exit code of
//! each ending is a pure table in `shutdown.rs`.

mod control;
mod credentials;
mod shutdown;
mod wiring;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::actors::admission::{Admit, GetSummary, ReplayActions, StopAdmitting};
use crate::actors::audit::FlushAudit;
use crate::actors::dead_letter::DrainDeadLetters;
use crate::actors::token::TokenHealth;
use crate::config::{self, Loaded};
use crate::error::Error;
use crate::journal::Journal;
use crate::simulator::RunningSimulator;
pub use control::wait_for_stop_signal;
use control::{Control, Request};
pub use shutdown::{exit_code, Ending, Tally};
use wiring::Daemon;

/// How often the daemon looks for `dlq replay` requests made by other processes.
const REPLAY_POLL: Duration = Duration::from_millis(500);
/// How often histograms are compacted by the Prometheus recorder.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

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
pub async fn run_with(mut loaded: Loaded, once: bool, options: RunOptions) -> Result<u8, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut control = Control::new(options.stop)?;
    let cfg = loaded.config.clone();
    // The journal first: a second daemon on it must stop before touching anything.
    let (journal, mut snapshot) = Journal::open(&cfg.journal.path, cfg.journal.fsync)?;
    if !snapshot.actions.is_empty() {
        tracing::info!(journaled = snapshot.actions.len(), "Resuming from the journal.");
    }
    if cfg.cxone.uses_simulator() {
        forget_embedded_ids(&mut snapshot.actions);
    }
    let creds = credentials::resolve(&cfg, options.simulator).await?;
    let daemon = wiring::start(&cfg, creds, journal, snapshot)?;
    let admitted = daemon
        .admission
        .send(Admit {
            actions: std::mem::take(&mut loaded.actions),
        })
        .await
        .unwrap_or(0);
    tracing::info!(actions = admitted, batches = cfg.batches.len(), once, "Running.");

    let ending = watch(&daemon, &mut control, once, &loaded).await;
    daemon.admission.do_send(StopAdmitting);
    daemon.readiness.shutting_down.store(true, Ordering::Relaxed);
    let undelivered = drain(&daemon, &cfg, &ending, &mut control).await;
    let summary = daemon.admission.send(GetSummary).await.unwrap_or_default();
    let tally = Tally {
        all_finished: summary.all_finished(),
        all_completed: summary.all_completed(),
        undelivered,
    };
    if let Ending::Blocked(reason) = &ending {
        eprintln!("actionwarden: cannot run: {reason}");
    }
    close(daemon, &summary).await;
    Ok(exit_code(&ending, once, tally))
}

/// Waits for the end of the run, reloading on SIGHUP and picking up replay requests.
async fn watch(daemon: &Daemon, control: &mut Control, once: bool, loaded: &Loaded) -> Ending {
    let mut replay_tick = tokio::time::interval(REPLAY_POLL);
    let mut upkeep_tick = tokio::time::interval(METRICS_UPKEEP);
    let (mut idle, mut health) = (daemon.idle.clone(), daemon.token_health.clone());
    loop {
        tokio::select! {
            _ = upkeep_tick.tick() => daemon.metrics.run_upkeep(),
            _ = replay_tick.tick() => {
                let replays = daemon.journal.take_replays().await;
                if !replays.is_empty() {
                    let _ = daemon.admission.send(ReplayActions { replays }).await;
                }
            }
            request = control.next() => match request {
                Request::Stop => return Ending::Stopped,
                Request::Reload => reload(&loaded.path, daemon).await,
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
                    return Ending::Blocked(format!("{reason}; check cxone.client_id and the client secret"));
                }
            }
        }
    }
}

/// After the loop: `--once` waits for undelivered dead letters (up to `drain_timeout`), a
/// stop lets in-flight requests finish (up to `shutdown.timeout`). A second stop request
/// ends either wait at once: the journal already holds everything. Returns the dead
/// letters still undelivered.
async fn drain(daemon: &Daemon, cfg: &config::Config, ending: &Ending, control: &mut Control) -> usize {
    let letters = || async {
        let asked = DrainDeadLetters {
            timeout: Duration::ZERO,
        };
        daemon.dead_letter.send(asked).await.unwrap_or(usize::MAX)
    };
    match ending {
        Ending::Finished => {
            let drain = daemon.dead_letter.send(DrainDeadLetters {
                timeout: cfg.dead_letter.drain_timeout,
            });
            let left = tokio::select! {
                left = drain => left.unwrap_or(usize::MAX),
                _ = control.next_stop() => letters().await,
            };
            if left > 0 {
                tracing::warn!(
                    undelivered = left,
                    "Dead letters still undelivered after drain_timeout; they stay stored."
                );
            }
            left
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
            letters().await
        }
        Ending::Blocked(_) => letters().await,
    }
}

/// Flushes journal and audit, prints the summary, stops the servers.
async fn close(daemon: Daemon, summary: &crate::report::Summary) {
    if let Err(e) = daemon.journal.flush().await {
        tracing::error!(error = %e, "Journal flush failed.");
    }
    if let Ok(Err(e)) = daemon.audit.send(FlushAudit).await {
        tracing::error!(error = %e, "Audit flush failed.");
    }
    print!("{}", summary.render());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    if let Some(admin) = daemon.admin {
        admin.stop(true).await;
    }
    if let Some(sim) = daemon.simulator {
        sim.handle.stop(false).await;
    }
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
async fn reload(path: &std::path::Path, daemon: &Daemon) {
    match config::load(path) {
        Ok(loaded) => match daemon
            .admission
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
