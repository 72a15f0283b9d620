//! The actors (README.md; their supervision: docs/operations.md, Supervision and restarts),
//! one file each, plus admission (the in-flight limits).

pub mod admission;
pub mod audit;
pub mod classifier;
pub mod dead_letter;
pub mod poller;
pub mod singleton;
pub mod token;

/// Mailbox capacity of the singleton actors: `send` waits beyond it (`do_send` never
/// does). Large, because thousands of pollers may talk to one singleton at once.
pub const MAILBOX_CAPACITY: usize = 1 << 16;
