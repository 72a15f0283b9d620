//! `AuditActor`: stamps audit records (the JSON Lines of the audit log) and hands them to
//! the writer thread of writer.rs, which writes many per disk sync.
//!
//! Outcome records arrive already stamped and journaled (`AppendOutcome`); once their
//! group is synced the writer marks them audited in the journal. At start, outcome lines
//! the journal has not seen confirmed are appended unless the file already holds their
//! `event_id` (the protocol is described in journal/mod.rs).
//!
//! Every record carries an `event_id` chosen by its sender, so a sender whose reply was
//! lost to a restart sends the same record again and the writer drops the repeat. After a
//! restart the actor has the writer rebuild its queue from the journal: an outcome line
//! whose message was lost with the crash is appended from there.

mod file;
mod writer;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::singleton::{self, Life, Reply, Supervise};
use crate::audit::AuditRecord;
use crate::health::Blockers;
use crate::journal::{Journal, OutcomeLine};
use crate::telemetry::events::AuditWritten;
pub use file::open_private_append;
use file::{cut_torn_tail, event_ids_in, event_type_of};
pub use writer::{AuditError, AuditSettings};
use writer::{WriterHandle, WriterMsg};

/// Append a progress record. Send it again with the same `event_id` if the reply is lost.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct AppendAudit {
    /// Chosen by the sender: a record sent twice is written once.
    pub event_id: Uuid,
    /// The record, shared: `send_until_answered` sends a copy of the message at every
    /// attempt, and a copy of the record's field map would cost a dozen allocations.
    pub record: Arc<AuditRecord>,
}

impl AppendAudit {
    /// The record under a fresh `event_id`.
    pub fn new(record: AuditRecord) -> Self {
        AppendAudit {
            event_id: crate::audit::new_event_id(),
            record: Arc::new(record),
        }
    }
}

/// Append an outcome record already committed to the journal.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct AppendOutcome {
    /// For the records metric.
    pub event_type: &'static str,
    /// The stamped line.
    pub outcome: OutcomeLine,
}

/// Resolves once every record appended before it is on disk.
#[derive(Message, Clone, Copy)]
#[rtype(result = "Result<(), AuditError>")]
pub struct FlushAudit;

/// Writes what is queued to the open file, then opens `audit.path` anew: after logrotate
/// renamed the file, later records go to a new one (SIGHUP).
#[derive(Message, Clone, Copy)]
#[rtype(result = "Result<(), AuditError>")]
pub struct ReopenAudit;

/// The audit actor.
pub struct AuditActor {
    writer: WriterHandle,
    settings: AuditSettings,
    journal: Journal,
    blockers: Blockers,
    life: Life,
}

impl AuditActor {
    /// Opens (creating with mode 0600) the audit file, repairs a torn last line, appends
    /// the journaled outcome lines it is missing, and starts the writer thread.
    pub fn open(
        settings: AuditSettings,
        journal: Journal,
        unaudited: Vec<OutcomeLine>,
        blockers: Blockers,
        life: Life,
    ) -> std::io::Result<Self> {
        let path = &settings.path;
        let mut file = open_private_append(path)?;
        cut_torn_tail(path)?;
        if !unaudited.is_empty() {
            let present = event_ids_in(path)?;
            let mut appended = 0usize;
            for outcome in &unaudited {
                if !present.contains(&outcome.event_id) {
                    file.write_all(&outcome.line)?;
                    appended += 1;
                    AuditWritten {
                        event_type: event_type_of(&outcome.line),
                    }
                    .emit();
                }
            }
            if settings.fsync {
                file.sync_data()?;
            }
            tracing::info!(
                appended,
                already_present = unaudited.len() - appended,
                "Audit file reconciled with the journal."
            );
            journal.mark_audited(unaudited.into_iter().map(|o| o.event_id).collect());
        }
        let writer = WriterHandle::start(file, settings.clone(), journal.clone(), blockers.clone())?;
        Ok(AuditActor {
            writer,
            settings,
            journal,
            blockers,
            life,
        })
    }

    /// A writer thread that died (a panic) is started again on the file, and rebuilds
    /// its queue from the journal and the file.
    fn restart_writer(&mut self) -> std::io::Result<()> {
        let path: &Path = &self.settings.path;
        let file = open_private_append(path)?;
        cut_torn_tail(path)?;
        self.writer = WriterHandle::start(file, self.settings.clone(), self.journal.clone(), self.blockers.clone())?;
        tracing::warn!(file = %path.display(), "Audit writer started again.");
        Ok(())
    }

    /// Hands `msg` to the writer; a writer that is gone is a panic of the actor (its
    /// restart starts the writer again).
    fn to_writer(&self, msg: WriterMsg) {
        if let Err(e) = self.writer.send(msg) {
            panic!("{e}");
        }
    }

    /// Appends the outcome lines dead cluster members committed but never wrote. Lines
    /// lost here (a writer gone) are this member's in the journal: the restarted writer
    /// appends them.
    fn append_rescued(&self, found: Result<Vec<OutcomeLine>, crate::journal::JournalError>) {
        match found {
            Ok(lines) if !lines.is_empty() => {
                tracing::info!(
                    lines = lines.len(),
                    "Appending outcome records a dead cluster member left unwritten."
                );
                for outcome in lines {
                    let event_type = event_type_of(&outcome.line);
                    let _ = self.writer.send(WriterMsg::Outcome { event_type, outcome });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Cannot look for outcome records of dead cluster members."),
        }
    }

    /// The writer's answer to a flush or reopen request.
    fn ask_writer(
        &self,
        ask: fn(oneshot::Sender<Result<(), AuditError>>) -> WriterMsg,
    ) -> ResponseFuture<Result<(), AuditError>> {
        let (tx, rx) = oneshot::channel();
        self.to_writer(ask(tx));
        Box::pin(async move { rx.await.unwrap_or(Err(AuditError::WriterGone)) })
    }
}

impl Actor for AuditActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
        if let Some(every) = self.settings.rescue {
            ctx.run_interval(every, |act, ctx| {
                let rescue = act.journal.rescue_audit();
                ctx.spawn(rescue.into_actor(act).map(|found, act, _| act.append_rescued(found)));
            });
        }
    }
}

impl Supervised for AuditActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.life.restarted(Instant::now());
        let scan = !self.writer.is_alive();
        if scan {
            if let Err(e) = self.restart_writer() {
                // The next message finds the writer gone and restarts the actor again;
                // a lasting failure ends as a crash loop.
                tracing::error!(error = %e, "Cannot start the audit writer again.");
                return;
            }
        }
        // The outcome line being handled at the panic was lost with it: the journal still
        // lists it as unaudited, and the writer appends it from there.
        let _ = self.writer.send(WriterMsg::Reconcile { scan });
    }
}

impl Supervise for AuditActor {
    fn life(&mut self) -> &mut Life {
        &mut self.life
    }
}

impl Handler<AppendAudit> for AuditActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: AppendAudit, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| {
            act.to_writer(WriterMsg::Line {
                event_id: msg.event_id.to_string(),
                event_type: msg.record.event_type,
                line: msg.record.to_line(msg.event_id),
            })
        })
    }
}

impl Handler<AppendOutcome> for AuditActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: AppendOutcome, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| {
            act.to_writer(WriterMsg::Outcome {
                event_type: msg.event_type,
                outcome: msg.outcome,
            })
        })
    }
}

impl Handler<FlushAudit> for AuditActor {
    type Result = Reply<ResponseFuture<Result<(), AuditError>>>;

    fn handle(&mut self, _: FlushAudit, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| act.ask_writer(WriterMsg::Flush))
    }
}

impl Handler<ReopenAudit> for AuditActor {
    type Result = Reply<ResponseFuture<Result<(), AuditError>>>;

    fn handle(&mut self, _: ReopenAudit, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| act.ask_writer(WriterMsg::Reopen))
    }
}
