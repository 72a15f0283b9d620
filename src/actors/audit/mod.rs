//! `AuditActor`: appends the JSON Lines of SPEC §10, many records per disk sync.
//!
//! The actor stamps each record (`event_id`, `timestamp`) and hands the line to a writer
//! thread. The thread takes whatever has queued up, writes it in one go and syncs once:
//! a group commit, so a burst of 1,000 outcomes costs one fsync, not 1,000.
//!
//! Outcome records arrive already stamped and journaled (`AppendOutcome`); once their
//! group is synced the writer marks them audited in the journal. At start, outcome lines
//! the journal has not seen confirmed are appended unless the file already holds their
//! `event_id` (the protocol is described in journal/mod.rs).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::audit::AuditRecord;
use crate::journal::{Journal, OutcomeLine};
use crate::telemetry::events::AuditWritten;

/// Most lines written between two syncs.
const MAX_GROUP: usize = 8192;

/// Append a record.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppendAudit {
    /// The record.
    pub record: AuditRecord,
}

/// Append an outcome record already committed to the journal.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppendOutcome {
    /// For the records metric.
    pub event_type: &'static str,
    /// The stamped line.
    pub outcome: OutcomeLine,
}

/// Resolves once every record appended before it is on disk.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct FlushAudit;

enum WriterMsg {
    Line(Vec<u8>),
    Outcome(OutcomeLine),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// The audit actor.
pub struct AuditActor {
    writer: mpsc::Sender<WriterMsg>,
}

impl AuditActor {
    /// Opens (creating with mode 0600) the audit file, repairs a torn last line, appends
    /// the journaled outcome lines it is missing, and starts the writer thread.
    pub fn open(path: &Path, fsync: bool, journal: Journal, unaudited: Vec<OutcomeLine>) -> std::io::Result<Self> {
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
            if fsync {
                file.sync_data()?;
            }
            tracing::info!(
                appended,
                already_present = unaudited.len() - appended,
                "Audit file reconciled with the journal."
            );
            journal.mark_audited(unaudited.into_iter().map(|o| o.event_id).collect());
        }
        let (tx, rx) = mpsc::channel();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer_loop(file, path, fsync, journal, rx))?;
        Ok(AuditActor { writer: tx })
    }
}

/// Truncates an unterminated last line (a write cut by a kill); its record, if it was an
/// outcome, is still unconfirmed in the journal and is appended again whole.
fn cut_torn_tail(path: &Path) -> std::io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline, reading backwards in blocks.
    let mut end = len;
    let mut cut = 0;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(pos) = block[..n].iter().rposition(|b| *b == b'\n') {
            cut = start + pos as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(file = %path.display(), bytes = len - cut, "Cutting a torn last audit line.");
    file.set_len(cut)?;
    file.sync_data()
}

/// The metric label of a stamped line's `event_type`.
fn event_type_of(line: &[u8]) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Type {
        event_type: String,
    }
    let found = serde_json::from_slice::<Type>(line)
        .map(|t| t.event_type)
        .unwrap_or_default();
    crate::telemetry::metrics::AUDIT_EVENT_TYPES
        .into_iter()
        .find(|known| *known == found)
        .unwrap_or("other")
}

/// The `event_id` of every record in the file.
fn event_ids_in(path: &Path) -> std::io::Result<HashSet<String>> {
    #[derive(serde::Deserialize)]
    struct Id {
        event_id: String,
    }
    let mut ids = HashSet::new();
    // Bytes, not text: a damaged line must not stop the daemon from starting.
    for line in BufReader::new(File::open(path)?).split(b'\n') {
        if let Ok(id) = serde_json::from_slice::<Id>(&line?) {
            ids.insert(id.event_id);
        }
    }
    Ok(ids)
}

/// Opens `path` for appending, creating it readable by its owner only.
pub fn open_private_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn writer_loop(mut file: File, path: PathBuf, fsync: bool, journal: Journal, rx: mpsc::Receiver<WriterMsg>) {
    let mut buffer = Vec::with_capacity(1 << 16);
    let mut waiters = Vec::new();
    let mut confirmed = Vec::new();
    loop {
        // With a failed group still buffered, wake up to retry it even if nothing new comes.
        let first = if buffer.is_empty() {
            match rx.recv() {
                Ok(msg) => Some(msg),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(WRITE_RETRY) {
                Ok(msg) => Some(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut next = first;
        let mut taken = 0;
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Line(line) => buffer.extend_from_slice(&line),
                WriterMsg::Outcome(outcome) => {
                    buffer.extend_from_slice(&outcome.line);
                    confirmed.push(outcome.event_id);
                }
                WriterMsg::Flush(tx) => waiters.push(tx),
            }
            taken += 1;
            if taken < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        let result = write_group(&mut file, &buffer, fsync).map_err(|e| format!("audit file {}: {e}", path.display()));
        match &result {
            Ok(()) => {
                journal.mark_audited(std::mem::take(&mut confirmed));
                buffer.clear();
            }
            // The group stays buffered (the file was cut back to before it) and is
            // written again with the next one; its outcomes stay unconfirmed in the
            // journal meanwhile, so even a crash now loses nothing.
            Err(e) => tracing::error!(error = %e, retry_in = ?WRITE_RETRY, "Cannot write the audit log."),
        }
        for waiter in waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Writes one group; on failure cuts the file back to where the group began, so a
/// partly written line never runs into the next one.
fn write_group(file: &mut File, buffer: &[u8], fsync: bool) -> std::io::Result<()> {
    if buffer.is_empty() {
        return Ok(());
    }
    let start = file.metadata()?.len();
    let written = file
        .write_all(buffer)
        .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
    if written.is_err() {
        let _ = file.set_len(start);
    }
    written
}

/// How long a failed audit write waits before it is tried again.
const WRITE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Actor for AuditActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
    }
}

impl Supervised for AuditActor {}

impl Handler<AppendAudit> for AuditActor {
    type Result = ();

    fn handle(&mut self, msg: AppendAudit, _ctx: &mut Context<Self>) {
        let line = msg.record.to_line(Uuid::new_v4());
        if self.writer.send(WriterMsg::Line(line)).is_ok() {
            AuditWritten {
                event_type: msg.record.event_type,
            }
            .emit();
        } else {
            tracing::error!(batch = %msg.record.identity.batch, key = %msg.record.identity.key, "Audit writer is gone; record lost.");
        }
    }
}

impl Handler<AppendOutcome> for AuditActor {
    type Result = ();

    fn handle(&mut self, msg: AppendOutcome, _ctx: &mut Context<Self>) {
        if self.writer.send(WriterMsg::Outcome(msg.outcome)).is_ok() {
            AuditWritten {
                event_type: msg.event_type,
            }
            .emit();
        } else {
            tracing::error!("Audit writer is gone; the outcome stays pending in the journal.");
        }
    }
}

impl Handler<FlushAudit> for AuditActor {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, _: FlushAudit, _ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let sent = self.writer.send(WriterMsg::Flush(tx));
        Box::pin(async move {
            sent.map_err(|_| "audit writer is gone".to_string())?;
            rx.await.map_err(|_| "audit writer is gone".to_string())?
        })
    }
}
