//! Plain http through a proxy: a stream to the proxy that turns each request line awc
//! writes (`POST /sim/webhook HTTP/1.1`, origin-form) into the absolute form a proxy
//! needs (`POST http://host:port/sim/webhook HTTP/1.1`), and adds `Proxy-Authorization`
//! when credentials are known.
//!
//! awc speaks HTTP/1.1 without pipelining: it writes a whole request, then reads the whole
//! response, and only then writes the next request on the same connection. So a request
//! line is the first thing written after a response began to arrive (or on a fresh
//! connection), and the bytes in between pass through untouched, however they are split.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::Secret;

/// Longest request line accepted (awc's own lines are far shorter).
const MAX_REQUEST_LINE: usize = 16 * 1024;

/// Where the next written byte belongs.
enum State {
    /// Collecting a request line, until its `\n`.
    RequestLine(Vec<u8>),
    /// Headers and body of the current request.
    Rest,
}

/// A TCP connection to a proxy carrying plain-http requests for one target.
pub struct AbsoluteForm {
    inner: TcpStream,
    /// `http://host:port`, put in front of every origin-form target.
    origin: String,
    /// `Proxy-Authorization` value, if any.
    authorization: Option<Secret>,
    /// A rewritten request line accepted from the writer but not yet sent.
    pending: Vec<u8>,
    /// How much of `pending` is sent.
    sent: usize,
    state: State,
}

impl AbsoluteForm {
    /// Wraps a connection to the proxy for requests to `origin` (`http://host:port`).
    pub fn new(inner: TcpStream, origin: String, authorization: Option<Secret>) -> Self {
        AbsoluteForm {
            inner,
            origin,
            authorization,
            pending: Vec::new(),
            sent: 0,
            state: State::RequestLine(Vec::new()),
        }
    }

    /// Writes what is left of `pending`.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

/// `METHOD /path VERSION\r\n` -> `METHOD http://host:port/path VERSION\r\n`, followed by
/// the `Proxy-Authorization` header line when there is one. A line whose target is not
/// origin-form (`*`, already absolute) keeps it.
pub fn rewrite_request_line(line: &[u8], origin: &str, authorization: Option<&Secret>) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + origin.len() + 64);
    match line.iter().position(|b| *b == b' ') {
        Some(space) if line.get(space + 1) == Some(&b'/') => {
            out.extend_from_slice(&line[..=space]);
            out.extend_from_slice(origin.as_bytes());
            out.extend_from_slice(&line[space + 1..]);
        }
        _ => out.extend_from_slice(line),
    }
    if let Some(value) = authorization {
        out.extend_from_slice(b"Proxy-Authorization: ");
        out.extend_from_slice(value.expose().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl AsyncRead for AbsoluteForm {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before && matches!(self.state, State::Rest) {
            // A response is arriving: whatever is written next is a new request.
            self.state = State::RequestLine(Vec::new());
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AbsoluteForm {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        let State::RequestLine(line) = &mut this.state else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        let end = buf.iter().position(|b| *b == b'\n');
        let take = end.map_or(buf.len(), |i| i + 1);
        line.extend_from_slice(&buf[..take]);
        if line.len() > MAX_REQUEST_LINE {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request line too long",
            )));
        }
        if end.is_some() {
            this.pending = rewrite_request_line(line, &this.origin, this.authorization.as_ref());
            this.sent = 0;
            this.state = State::Rest;
            // The line is accepted either way; what the socket does not take now is sent
            // before the next write and by every flush.
            if let Poll::Ready(Err(e)) = this.drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl ActixStream for AbsoluteForm {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(&self.inner, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.inner, cx)
    }
}

/// Never prints the credentials.
impl fmt::Debug for AbsoluteForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbsoluteForm")
            .field("inner", &self.inner)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_targets_become_absolute() {
        let line = rewrite_request_line(b"POST /sim/webhook?x=1 HTTP/1.1\r\n", "http://10.0.0.5:8080", None);
        assert_eq!(line, b"POST http://10.0.0.5:8080/sim/webhook?x=1 HTTP/1.1\r\n");
        let star = rewrite_request_line(b"OPTIONS * HTTP/1.1\r\n", "http://h:80", None);
        assert_eq!(star, b"OPTIONS * HTTP/1.1\r\n");
    }

    #[test]
    fn credentials_follow_the_request_line() {
        let auth = crate::net::proxy::basic_authorization("u", "p");
        let line = rewrite_request_line(b"GET / HTTP/1.1\r\n", "http://h:80", Some(&auth));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "GET http://h:80/ HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n"
        );
    }
}
