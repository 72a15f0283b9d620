//! Where stop and reload requests come from: the process's signals (SIGTERM and SIGINT
//! stop, SIGHUP reloads), or a future handed in by an in-process caller.

use std::future::Future;
use std::pin::Pin;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::error::Error;

/// What was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop (SIGTERM, SIGINT, or the caller's future).
    Stop,
    /// Read the configuration again (SIGHUP).
    Reload,
}

/// The source of requests.
pub enum Control {
    /// The process's signals.
    Signals {
        /// SIGTERM.
        term: Signal,
        /// SIGINT.
        int: Signal,
        /// SIGHUP.
        hup: Signal,
    },
    /// A caller's future; after it resolved, nothing more is ever asked.
    Caller(Option<Pin<Box<dyn Future<Output = ()>>>>),
}

impl Control {
    /// Listens to the signals, or to `stop` when given.
    pub fn new(stop: Option<Pin<Box<dyn Future<Output = ()>>>>) -> Result<Self, Error> {
        if let Some(stop) = stop {
            return Ok(Control::Caller(Some(stop)));
        }
        let listen = |kind| signal(kind).map_err(Error::Signals);
        Ok(Control::Signals {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    /// The next request.
    pub async fn next(&mut self) -> Request {
        match self {
            Control::Signals { term, int, hup } => tokio::select! {
                _ = term.recv() => Request::Stop,
                _ = int.recv() => Request::Stop,
                _ = hup.recv() => Request::Reload,
            },
            Control::Caller(stop) => match stop.take() {
                Some(stop) => {
                    stop.await;
                    Request::Stop
                }
                None => std::future::pending().await,
            },
        }
    }

    /// The next stop request (reloads during a shutdown are ignored).
    pub async fn next_stop(&mut self) {
        while self.next().await != Request::Stop {}
    }
}

/// Resolves on SIGTERM or SIGINT (the simulator's foreground mode).
pub async fn wait_for_stop_signal() -> Result<(), Error> {
    let mut control = Control::new(None)?;
    control.next_stop().await;
    Ok(())
}
