//! Who may use the console: the access rule as a pure decision (`decide`), the facts a
//! request brings (a session cookie or a bearer token, same-origin headers), and the
//! in-memory sessions the login form starts.
//!
//! A session id is 32 random bytes, never the token; sessions live in memory only (a
//! restart logs everyone out) and expire after `SESSION_TTL`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpRequest;
use rand::Rng;

use crate::config::Secret;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "aw_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Most sessions kept at once; past it the oldest is ended (repeated logins cannot grow
/// memory).
const MAX_SESSIONS: usize = 1024;
/// Random bytes in a session id.
const SESSION_BYTES: usize = 32;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// See pages and live updates.
    Read,
    /// Change something (replay, discard, log out).
    Write,
}

/// What the configuration allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// An admin token is configured.
    pub token: bool,
    /// The admin server listens on a loopback address.
    pub loopback: bool,
    /// `admin.ui_read_only`: reading needs no token (on loopback).
    pub read_only_ui: bool,
}

/// What a request brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented {
    /// A live session cookie or the right bearer token.
    pub authenticated: bool,
    /// `Sec-Fetch-Site: same-origin`, or an `Origin` equal to the console's.
    pub same_origin: bool,
}

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; `can_write` tells whether changes are allowed too (pages show their
    /// buttons only then).
    Allow {
        /// Replays and discards are allowed.
        can_write: bool,
    },
    /// Log in first (a redirect to the login form, or a 401 for a client).
    Unauthenticated,
    /// Refused, with the reason shown to the person.
    Forbidden(&'static str),
    /// Without a token the console is served only on loopback.
    NotServed,
}

/// Why a change without a token configured is refused.
pub const NO_TOKEN: &str = "the console is read-only: no admin.token_env is configured";
/// Why a change from another site is refused.
pub const CROSS_ORIGIN: &str = "changes must come from the console's own pages (same-origin request)";

/// The access rule: every page needs the admin token unless reading is opened on a
/// loopback address; every change needs the token and a same-origin request; without a
/// token the console is read-only and served on loopback only.
pub fn decide(policy: Policy, need: Need, presented: Presented) -> Verdict {
    if !policy.token {
        return match (policy.loopback, need) {
            (false, _) => Verdict::NotServed,
            (true, Need::Read) => Verdict::Allow { can_write: false },
            (true, Need::Write) => Verdict::Forbidden(NO_TOKEN),
        };
    }
    match need {
        Need::Write if !presented.same_origin => Verdict::Forbidden(CROSS_ORIGIN),
        _ if presented.authenticated => Verdict::Allow { can_write: true },
        Need::Read if policy.read_only_ui && policy.loopback => Verdict::Allow { can_write: false },
        _ => Verdict::Unauthenticated,
    }
}

/// True when the request comes from a page of this console: `Sec-Fetch-Site:
/// same-origin`, or (from browsers that do not send it) an `Origin` naming this host.
pub fn same_origin(req: &HttpRequest) -> bool {
    let text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site == "same-origin";
    }
    // The Host header itself, not forwarded-for headers: a browser's Origin names the
    // host it sent the request to.
    match (text("origin"), text(header::HOST.as_str())) {
        (Some(origin), Some(host)) => origin == format!("http://{host}") || origin == format!("https://{host}"),
        _ => false,
    }
}

/// The bearer token of `Authorization`, when one is sent.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// True when `presented` is the admin token (compared in constant time).
pub fn token_matches(expected: &Secret, presented: &str) -> bool {
    expected.matches(presented)
}

/// The session id of the request's cookie.
pub fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// `Set-Cookie` for a new session: HttpOnly (no script reads it), SameSite=Strict (no
/// other site's page sends it), limited to the console's paths.
pub fn session_set_cookie(id: &str) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn session_clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The live sessions: id to expiry.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// Starts a session; returns its id.
    pub fn start(&self) -> String {
        let bytes: [u8; SESSION_BYTES] = rand::rng().random();
        let id = hex::encode(bytes);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, expiry| *expiry > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(id, _)| id.clone()) {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), now + SESSION_TTL);
        id
    }

    /// True for a session that was started and has not expired or ended.
    pub fn is_live(&self, id: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(id).is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Ends a session (logout).
    pub fn end(&self, id: &str) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// A local console path to return to after login, or the overview: anything else (another
/// host, a scheme, `//host`) is refused, so the login form cannot redirect elsewhere.
pub fn local_target(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with("/ui/") && !path.contains("//") && !path.contains('\\') => path.to_owned(),
        _ => "/ui/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: Policy = Policy {
        token: true,
        loopback: true,
        read_only_ui: false,
    };

    fn presented(authenticated: bool, same_origin: bool) -> Presented {
        Presented {
            authenticated,
            same_origin,
        }
    }

    #[test]
    fn with_a_token_every_page_needs_it_and_changes_need_the_same_origin_too() {
        let allow = Verdict::Allow { can_write: true };
        assert_eq!(decide(TOKEN, Need::Read, presented(true, false)), allow);
        assert_eq!(
            decide(TOKEN, Need::Read, presented(false, true)),
            Verdict::Unauthenticated
        );
        assert_eq!(decide(TOKEN, Need::Write, presented(true, true)), allow);
        assert_eq!(
            decide(TOKEN, Need::Write, presented(true, false)),
            Verdict::Forbidden(CROSS_ORIGIN)
        );
        assert_eq!(
            decide(TOKEN, Need::Write, presented(false, true)),
            Verdict::Unauthenticated
        );
    }

    #[test]
    fn read_only_ui_opens_reading_on_loopback_only() {
        let open = Policy {
            read_only_ui: true,
            ..TOKEN
        };
        let anonymous = presented(false, true);
        assert_eq!(decide(open, Need::Read, anonymous), Verdict::Allow { can_write: false });
        assert_eq!(decide(open, Need::Write, anonymous), Verdict::Unauthenticated);
        let remote = Policy {
            loopback: false,
            ..open
        };
        assert_eq!(decide(remote, Need::Read, anonymous), Verdict::Unauthenticated);
    }

    #[test]
    fn without_a_token_the_console_is_read_only_and_on_loopback_only() {
        let none = Policy { token: false, ..TOKEN };
        let anyone = presented(false, true);
        assert_eq!(decide(none, Need::Read, anyone), Verdict::Allow { can_write: false });
        assert_eq!(decide(none, Need::Write, anyone), Verdict::Forbidden(NO_TOKEN));
        let remote = Policy {
            loopback: false,
            ..none
        };
        assert_eq!(decide(remote, Need::Read, anyone), Verdict::NotServed);
    }

    #[test]
    fn sessions_are_random_and_end() {
        let sessions = Sessions::default();
        let (a, b) = (sessions.start(), sessions.start());
        assert_ne!(a, b);
        assert_eq!(a.len(), SESSION_BYTES * 2);
        assert!(sessions.is_live(&a) && sessions.is_live(&b));
        sessions.end(&a);
        assert!(!sessions.is_live(&a));
        assert!(!sessions.is_live("guess"));
    }

    #[test]
    fn login_returns_only_to_console_paths() {
        assert_eq!(local_target(Some("/ui/actions?batch=b")), "/ui/actions?batch=b");
        for hostile in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil",
            "/ui/\\evil",
            "/metrics",
        ] {
            assert_eq!(local_target(Some(hostile)), "/ui/", "{hostile}");
        }
        assert_eq!(local_target(None), "/ui/");
    }
}
