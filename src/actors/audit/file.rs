//! The audit file itself: opening it private, cutting a torn last line, writing a group
//! whole or not at all, and reading back the `event_id`s and event types of its lines.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Writes one group; on failure cuts the file back to where the group began, so a
/// partly written line never runs into the next one.
pub(super) fn write_group(file: &mut File, buffer: &[u8], fsync: bool) -> std::io::Result<()> {
    let start = file.metadata()?.len();
    let written = file
        .write_all(buffer)
        .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
    if written.is_err() {
        let _ = file.set_len(start);
    }
    written
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

/// Truncates an unterminated last line (a write cut by a kill); its record, if it was an
/// outcome, is still unconfirmed in the journal and is appended again whole.
pub(super) fn cut_torn_tail(path: &Path) -> std::io::Result<()> {
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
pub(super) fn event_type_of(line: &[u8]) -> &'static str {
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
pub(super) fn event_ids_in(path: &Path) -> std::io::Result<HashSet<String>> {
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
