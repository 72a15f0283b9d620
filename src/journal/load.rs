//! Loading the configured actions into the journal, streamed: at start and on SIGHUP,
//! each batch's actions are checked, then written in transactions of at most `CHUNK`
//! rows, never all held at once (the next chunk is read while one is written).
//!
//! An `actions_file` whose content hash matches the one last loaded for its batch is
//! skipped entirely: re-running a finished million-action file costs one read of the
//! file, not a million inserts. An identity already journaled keeps its journaled body;
//! when the file's body differs, one warning per batch gives the count.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{Inserted, Journal, JournalError, Pending};
use crate::config::actions::{self, ConfiguredAction, Parts};
use crate::config::{ConfigError, Loaded, Problem};

/// Most rows written in one transaction.
pub const CHUNK: usize = 10_000;

/// Why a load stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Some actions are invalid; nothing was written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What a load did, per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per batch, in configuration order.
    pub batches: Vec<BatchLoad>,
}

/// What a load did to one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchLoad {
    /// Batch name.
    pub batch: String,
    /// Rows written, found unchanged, found with another body.
    pub rows: Inserted,
    /// Its `actions_file` was already loaded with this content and was not read.
    pub file_skipped: bool,
}

impl Report {
    /// New actions in all batches.
    pub fn inserted(&self) -> usize {
        self.batches.iter().map(|b| b.rows.inserted).sum()
    }
}

/// Checks, then loads, every batch of `loaded`. Blocks (run it off the actors' thread).
pub fn load(journal: &Journal, loaded: &Loaded) -> Result<Report, LoadError> {
    let plans = plan(journal, loaded)?;
    let mut problems = Vec::new();
    for plan in &plans {
        problems.extend(check(loaded, plan));
    }
    if !problems.is_empty() {
        problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        return Err(ConfigError::Invalid(problems).into());
    }
    let mut report = Report::default();
    for plan in &plans {
        report.batches.push(write(journal, loaded, plan)?);
    }
    Ok(report)
}

/// What to read of one batch.
struct Plan {
    index: usize,
    batch: Arc<str>,
    parts: Parts,
    /// The file's path as configured and its content hash, when it is read.
    file: Option<(String, String)>,
}

fn plan(journal: &Journal, loaded: &Loaded) -> Result<Vec<Plan>, LoadError> {
    let mut plans = Vec::new();
    for (index, batch) in loaded.config.batches.iter().enumerate() {
        let name: Arc<str> = Arc::from(batch.name.as_str());
        let mut parts = Parts {
            inline: true,
            file: false,
        };
        let mut file = None;
        if let Some(path) = actions::actions_file(loaded, index) {
            // An unreadable file is reported by the check below, with its line.
            match hash_file(&path) {
                Ok(hash) => {
                    let known = journal.source(name.clone(), batch.actions_file.clone())?;
                    if known.as_deref() != Some(hash.as_str()) {
                        parts.file = true;
                        file = Some((batch.actions_file.clone(), hash));
                    }
                }
                Err(_) => parts.file = true,
            }
        }
        plans.push(Plan {
            index,
            batch: name,
            parts,
            file,
        });
    }
    Ok(plans)
}

/// The planned parts of one batch, checked like `actionwarden check` does.
fn check(loaded: &Loaded, plan: &Plan) -> Vec<Problem> {
    let mut seen: HashSet<u128> = HashSet::new();
    let mut duplicates = Vec::new();
    let mut problems = actions::read_batch(loaded, plan.index, plan.parts, |action, at| {
        if !seen.insert(xxhash_rust::xxh3::xxh3_128(action.key.as_bytes())) {
            duplicates.push(at.problem(format!("duplicate action identity {}/{}", plan.batch, action.key)));
        }
    });
    problems.append(&mut duplicates);
    problems
}

/// Writes the planned parts of one batch in chunks; then remembers the file's hash.
fn write(journal: &Journal, loaded: &Loaded, plan: &Plan) -> Result<BatchLoad, LoadError> {
    let mut writing = Pipeline {
        journal,
        batch: &plan.batch,
        pending: None,
        load: BatchLoad {
            batch: plan.batch.to_string(),
            file_skipped: !plan.parts.file,
            ..BatchLoad::default()
        },
    };
    let mut chunk: Vec<ConfiguredAction> = Vec::with_capacity(CHUNK);
    let mut failed = None;
    let mut total = 0u64;
    actions::read_batch(loaded, plan.index, plan.parts, |action, _| {
        if failed.is_some() {
            return;
        }
        total += 1;
        chunk.push(action);
        if chunk.len() >= CHUNK {
            if let Err(e) = writing.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    if !chunk.is_empty() {
        writing.send(chunk)?;
    }
    let load = writing.finish()?;
    if load.rows.differing > 0 {
        tracing::warn!(batch = %plan.batch, differing = load.rows.differing, "Actions already journaled with another body keep their journaled body.");
    }
    if let Some((path, hash)) = &plan.file {
        journal.record_source(plan.batch.clone(), path.clone(), hash.clone(), total);
    }
    Ok(load)
}

/// Chunks on their way to the journal: one is written while the next is read, so reading
/// and writing overlap. A chunk is sent only once the one before is committed, so the
/// writer never holds two (each stays a transaction of at most `CHUNK` rows).
struct Pipeline<'a> {
    journal: &'a Journal,
    batch: &'a Arc<str>,
    /// The chunk being written.
    pending: Option<Pending<Inserted>>,
    load: BatchLoad,
}

impl Pipeline<'_> {
    /// Waits for the chunk being written, then sends `chunk`.
    fn send(&mut self, chunk: Vec<ConfiguredAction>) -> Result<(), JournalError> {
        self.settle()?;
        self.pending = Some(self.journal.insert(self.batch.clone(), chunk));
        Ok(())
    }

    /// Waits for the last chunk; returns what the load did.
    fn finish(mut self) -> Result<BatchLoad, JournalError> {
        self.settle()?;
        Ok(self.load)
    }

    fn settle(&mut self) -> Result<(), JournalError> {
        if let Some(pending) = self.pending.take() {
            let rows = pending.wait()?;
            self.load.rows.inserted += rows.inserted;
            self.load.rows.unchanged += rows.unchanged;
            self.load.rows.differing += rows.differing;
        }
        Ok(())
    }
}

/// The content hash of a file (xxh3, 128 bits), streamed.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:032x}", hasher.digest128()))
}
