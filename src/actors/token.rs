//! `TokenActor`: OAuth2 client-credentials tokens for every caller, one request at a time.
//!
//! A valid token is served from cache. Inside `token_refresh_skew` of its expiry it is
//! still served while one background refresh runs. Without a usable token, callers park
//! as waiters and a single fetch serves them all (single flight). Rejected credentials, a
//! certificate that fails verification or a proxy refusing its credentials put the actor
//! in a failed state: callers keep waiting (their actions are not failed), the health
//! watch says why, and the fetch is retried slowly in case the cause is fixed meanwhile.
//!
//! The token request runs as a task of its own, not inside the actor's context, and
//! reports back with `TokenFetched`: a panic of the actor (it is supervised) does not
//! abort a request in flight, so the restarted actor re-arms its single flight on that
//! same request instead of starting a second one, and answers the callers still waiting.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::{oneshot, watch};

use super::singleton::{self, Life, Reply, Supervise};
use crate::config::{Secret, SecretError};
use crate::cxone::{CallError, CxoneClient, IssuedToken};
use crate::telemetry::events::TokenRefreshed;

/// First delay before retrying a failed token request.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Cap of the token retry delay for transient failures.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Delay between attempts while the credentials are rejected.
const REJECTED_RETRY: Duration = Duration::from_secs(30);

/// Where the client secret comes from; read again on every fetch so a rotated file is
/// picked up without a restart.
#[derive(Clone)]
pub enum SecretSource {
    /// A value resolved at start (env var or simulator default).
    Fixed(Secret),
    /// A file read at each fetch.
    File(std::path::PathBuf),
}

impl SecretSource {
    fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Fixed(s) => Ok(s.clone()),
            SecretSource::File(path) => Secret::from_file(path),
        }
    }
}

/// The current token (with its expiry and refresh time), shared by the token actor with
/// the pollers of its arbiter: a fresh token is read without a message round trip; only
/// a missing or ageing one goes through `GetToken` (and its single flight).
#[derive(Clone, Default)]
pub struct TokenCache(Rc<RefCell<Option<(Secret, Instant, Instant)>>>);

impl TokenCache {
    /// Forgets `token` if it is the current one (the upstream refused it); the actor is
    /// told too, but this takes effect before the caller asks again.
    pub fn invalidate(&self, token: &Secret) {
        let mut current = self.0.borrow_mut();
        if current.as_ref().is_some_and(|(t, _, _)| t == token) {
            *current = None;
        }
    }

    /// The token, if it is not due for a refresh yet.
    pub fn fresh(&self) -> Option<Secret> {
        let now = Instant::now();
        self.0
            .borrow()
            .as_ref()
            .filter(|(_, _, refresh_at)| now < *refresh_at)
            .map(|(t, _, _)| t.clone())
    }
}

/// What callers and `/readyz` can know about tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenHealth {
    /// No token obtained yet.
    Missing,
    /// A token is held.
    Ready,
    /// No token can be had until an operator acts: the credentials were refused, or the
    /// connection is misconfigured (certificate verification, proxy credentials). The
    /// reason says what to check and is safe to show.
    Rejected(String),
}

/// Ask for a bearer token. Resolves when one is available.
#[derive(Message, Clone, Copy)]
#[rtype(result = "Result<Secret, MailboxError>")]
pub struct GetToken {
    /// The caller's last token was just refused (401): a token inside its refresh skew
    /// will not do (it is the one about to expire, and a second 401 would dead-letter
    /// the action), so the caller waits for the refresh instead.
    pub after_refusal: bool,
}

/// The upstream answered 401 to `token`: drop it if it is still the current one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InvalidateToken {
    /// The token that was refused.
    pub token: Secret,
}

/// A token request ended (sent by the request's own task). `Err` carries the message of
/// a panic inside the request.
#[derive(Message)]
#[rtype(result = "()")]
struct TokenFetched {
    result: Result<Result<IssuedToken, Failure>, singleton::Panicked>,
    /// When the request was sent: the token's lifetime counts from there, not from when
    /// this message is handled (a busy mailbox must not stretch it past the server's).
    requested_at: Instant,
}

/// Who may use the token actor.
pub struct TokenSource {
    /// The CXone client that fetches tokens.
    pub client: Rc<CxoneClient>,
    /// The OAuth2 client id.
    pub client_id: String,
    /// The client secret.
    pub secret: SecretSource,
    /// `cxone.token_refresh_skew`.
    pub skew: Duration,
}

/// The token actor.
pub struct TokenActor {
    source: TokenSource,
    /// The token, when it expires, and when to refresh it; shared with the pollers.
    cache: TokenCache,
    /// Callers waiting for a token; they survive a restart and get the next token.
    waiters: Vec<oneshot::Sender<Secret>>,
    /// The request in flight (the single flight), as its task.
    fetching: Option<actix_rt::task::JoinHandle<()>>,
    /// When a failed request may be tried again.
    retry_at: Option<Instant>,
    failures: u32,
    health: watch::Sender<TokenHealth>,
    life: Life,
}

impl TokenActor {
    /// A token actor; `health` is updated on every change of state, `cache` holds the
    /// current token for readers on this arbiter.
    pub fn new(source: TokenSource, health: watch::Sender<TokenHealth>, cache: TokenCache, life: Life) -> Self {
        TokenActor {
            source,
            cache,
            waiters: Vec::new(),
            fetching: None,
            retry_at: None,
            failures: 0,
            health,
            life,
        }
    }

    /// Someone waits for a token, or none is held: a failed fetch must be tried again.
    fn needs_token(&self) -> bool {
        !self.waiters.is_empty() || self.cache.0.borrow().is_none()
    }

    /// Whether a token request is in flight.
    fn is_fetching(&self) -> bool {
        self.fetching.as_ref().is_some_and(|task| !task.is_finished())
    }

    /// Starts one token request unless one is in flight. The request runs as its own
    /// task and reports with `TokenFetched`.
    fn fetch(&mut self, ctx: &mut Context<Self>) {
        if self.is_fetching() {
            return;
        }
        self.retry_at = None;
        let client = self.source.client.clone();
        let client_id = self.source.client_id.clone();
        let secret = self.source.secret.read();
        let work = async move {
            match secret {
                Ok(secret) => client.fetch_token(&client_id, &secret).await.map_err(Failure::Call),
                Err(error) => Err(Failure::Secret(error)),
            }
        };
        let me = ctx.address();
        self.fetching = Some(actix_rt::spawn(async move {
            let requested_at = Instant::now();
            let result = std::panic::AssertUnwindSafe(work)
                .catch_unwind()
                .await
                .map_err(|panic| singleton::Panicked(singleton::panic_message(&panic)));
            me.do_send(TokenFetched { result, requested_at });
        }));
    }

    /// Fetches now, or when the last failure's delay is over.
    fn fetch_when_due(&mut self, ctx: &mut Context<Self>) {
        let wait = self
            .retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        if wait.is_zero() {
            self.fetch(ctx);
        } else {
            ctx.run_later(wait, |act, ctx| {
                singleton::work(act, ctx, |act, ctx| {
                    if act.needs_token() {
                        act.fetch(ctx);
                    }
                });
            });
        }
    }

    fn fetched(&mut self, result: Result<IssuedToken, Failure>, requested_at: Instant, ctx: &mut Context<Self>) {
        self.fetching = None;
        match result {
            Ok(issued) => {
                TokenRefreshed { result: "ok" }.emit();
                self.failures = 0;
                tracing::debug!(expires_in = ?issued.expires_in, "Token obtained.");
                // A token living shorter than twice the skew is refreshed at half its life:
                // refreshing "skew before expiry" would refetch at once, again and again.
                let skew = self.source.skew.min(issued.expires_in / 2);
                let now = requested_at;
                *self.cache.0.borrow_mut() = Some((
                    issued.access_token.clone(),
                    now + issued.expires_in,
                    now + issued.expires_in.saturating_sub(skew),
                ));
                self.health.send_replace(TokenHealth::Ready);
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(issued.access_token.clone());
                }
            }
            Err(failure) => {
                self.failures += 1;
                let (delay, health) = match &failure {
                    Failure::Call(CallError::Status {
                        status: 400 | 401,
                        message,
                        ..
                    }) => {
                        TokenRefreshed { result: "rejected" }.emit();
                        let reason = format!(
                            "credentials rejected by the token endpoint ({}); check cxone.client_id and the client secret",
                            message.as_deref().unwrap_or("invalid_client")
                        );
                        (REJECTED_RETRY, TokenHealth::Rejected(reason))
                    }
                    Failure::Call(CallError::Misconfigured { reason, .. }) => {
                        // The reason names the host (the token endpoint's, or the proxy's).
                        TokenRefreshed { result: "rejected" }.emit();
                        (REJECTED_RETRY, TokenHealth::Rejected(reason.clone()))
                    }
                    Failure::Secret(error) => {
                        TokenRefreshed { result: "error" }.emit();
                        (REJECTED_RETRY, TokenHealth::Rejected(error.to_string()))
                    }
                    Failure::Call(error) => {
                        TokenRefreshed { result: "error" }.emit();
                        let backoff = RETRY_FIRST.saturating_mul(1 << self.failures.min(10)).min(RETRY_MAX);
                        let delay = crate::backoff::with_retry_after(backoff, retry_after(error));
                        tracing::warn!(error = %error, retry_in = ?delay, "Token request failed.");
                        let health = if self.cache.0.borrow().is_some() {
                            TokenHealth::Ready
                        } else {
                            TokenHealth::Missing
                        };
                        (delay, health)
                    }
                };
                if let TokenHealth::Rejected(reason) = &health {
                    tracing::error!(reason = %reason, retry_in = ?delay, "Cannot obtain a token.");
                }
                self.health.send_replace(health);
                self.retry_at = Some(Instant::now() + delay);
                if self.needs_token() {
                    // A caller may start a fetch before the timer fires (it waits out a
                    // 429 pause at the gate); the timer then finds the token and stops.
                    self.fetch_when_due(ctx);
                }
            }
        }
    }
}

/// Why a token request failed.
enum Failure {
    Call(CallError),
    Secret(SecretError),
}

fn retry_after(error: &CallError) -> Option<Duration> {
    match error {
        CallError::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}

impl Actor for TokenActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Fetch at once: `/readyz` turns ready, and rejected credentials show before any
        // action needs them. After a restart: only if still needed, and not before the
        // last failure's delay is over.
        ctx.set_mailbox_capacity(crate::actors::MAILBOX_CAPACITY);
        if self.needs_token() {
            self.fetch_when_due(ctx);
        }
    }
}

impl Supervised for TokenActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.life.restarted(Instant::now());
        // The request in flight, if any, runs on in its own task and reports to this
        // address: the single flight stays armed on it. A request that ended while the
        // actor was down left its answer in the mailbox. Waiting callers stay parked and
        // get the next token; the reply of the message being handled at the panic was
        // lost, and its caller asks again.
        if self.is_fetching() {
            tracing::info!(
                waiting = self.waiters.len(),
                "The token request in flight goes on after the restart."
            );
        } else {
            self.fetching = None;
        }
    }
}

impl Supervise for TokenActor {
    fn life(&mut self) -> &mut Life {
        &mut self.life
    }
}

impl Handler<GetToken> for TokenActor {
    type Result = Reply<ResponseFuture<Result<Secret, MailboxError>>>;

    fn handle(&mut self, msg: GetToken, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, ctx| act.get_token(msg.after_refusal, ctx))
    }
}

impl TokenActor {
    fn get_token(
        &mut self,
        after_refusal: bool,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Secret, MailboxError>> {
        let now = Instant::now();
        let current = self.cache.0.borrow().clone();
        if let Some((token, expires_at, refresh_at)) = current {
            if now < refresh_at {
                return Box::pin(async move { Ok(token) });
            }
            if now < expires_at && !after_refusal {
                // Inside the skew: serve the old token, refresh in the background.
                self.fetch(ctx);
                return Box::pin(async move { Ok(token) });
            }
            if now >= expires_at {
                *self.cache.0.borrow_mut() = None;
            }
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        self.fetch(ctx);
        Box::pin(async move { rx.await.map_err(|_| MailboxError::Closed) })
    }
}

impl Handler<TokenFetched> for TokenActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: TokenFetched, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, ctx| match msg.result {
            Ok(result) => act.fetched(result, msg.requested_at, ctx),
            Err(panic) => {
                act.fetching = None;
                panic!("token request panicked: {panic}");
            }
        })
    }
}

impl Handler<InvalidateToken> for TokenActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: InvalidateToken, ctx: &mut Context<Self>) -> Self::Result {
        singleton::handle(self, ctx, |act, _| {
            let refused = act.cache.0.borrow().as_ref().is_some_and(|(t, _, _)| *t == msg.token);
            if refused {
                tracing::debug!("Token refused upstream; dropping it.");
                *act.cache.0.borrow_mut() = None;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Singleton};
    use crate::cxone::rate_limit::Gate;
    use crate::simulator::{self, SimulatorSettings, DEFAULT_CLIENT_SECRET};

    /// Waits until `condition` holds, failing the test after `limit`.
    async fn wait_until(limit: Duration, what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Inside the refresh skew the old token is still served while the refresh runs;
    /// a caller whose request that token just failed with 401 is not handed it again
    /// (a second 401 would dead-letter its action): it waits for the refreshed one.
    #[actix_rt::test]
    async fn a_caller_refused_inside_the_skew_waits_for_the_refreshed_token() {
        let settings = SimulatorSettings {
            token_ttl: Duration::from_secs(2),
            token_latency: Duration::from_millis(300),
            ..SimulatorSettings::default()
        };
        let sim = simulator::start("127.0.0.1:0", settings).await.expect("simulator");
        let config = Config::default();
        let egress = crate::net::Egresses::from_config(&config).expect("egress").cxone;
        let gate = Rc::new(Gate::new(Duration::from_secs(1), 0));
        let client = Rc::new(CxoneClient::new(&config.cxone, &sim.base_url(), gate, &egress));
        let source = TokenSource {
            client,
            client_id: simulator::DEFAULT_CLIENT_ID.into(),
            secret: SecretSource::Fixed(Secret::new(DEFAULT_CLIENT_SECRET)),
            // Refreshed at half its life: a 1 s window inside the skew.
            skew: Duration::from_secs(2),
        };
        let life = Life::new(
            Singleton::Token,
            &config.chaos,
            0,
            &config.supervisor,
            crate::health::Blockers::default(),
        );
        let cache = TokenCache::default();
        let (health, _) = watch::channel(TokenHealth::Missing);
        let actor_cache = cache.clone();
        let token = Supervisor::start(move |_| TokenActor::new(source, health, actor_cache, life));

        let ask = |after_refusal| token.send(GetToken { after_refusal });
        let first = ask(false).await.expect("mailbox").expect("token");
        wait_until(Duration::from_secs(3), "the refresh skew", || cache.fresh().is_none()).await;
        let served = ask(false).await.expect("mailbox").expect("token");
        assert_eq!(
            served, first,
            "inside the skew the old token is served while it refreshes"
        );
        let renewed = ask(true).await.expect("mailbox").expect("token");
        assert_ne!(renewed, first, "after a 401 only the refreshed token will do");
        assert_eq!(cache.fresh(), Some(renewed));
        sim.handle.stop(true).await;
    }
}
