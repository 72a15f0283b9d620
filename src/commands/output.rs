//! A command's output on stdout. A reader that goes away early (`status | head -1`) ends
//! the command quietly: what it did not read, it did not want, and a panic or an error
//! message about a closed pipe would only be noise.

use std::io::{ErrorKind, Write};

use crate::error::Error;

/// Writes `text` to stdout; a closed pipe is success.
pub fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Output(e)),
        Ok(()) => Ok(()),
    }
}

/// Writes `text` and a newline to stdout; a closed pipe is success.
pub fn println(text: &str) -> Result<(), Error> {
    print(&format!("{text}\n"))
}
