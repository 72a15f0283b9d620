//! The admin HTTP server on `admin.listen`: health, readiness, Prometheus metrics, JSON
//! views of the journal (paginated), the dead-letter replay endpoint (docs/metrics.md) and
//! the operator console under `/ui/` (`console/`).
//!
//! Handlers run on actix-web's worker thread, not on the daemon's arbiter: they read the
//! journal through the admin server's pool of readers (docs/journal.md, Connections)
//! and reach the daemon only through thread-safe state (readiness), the journal's replay
//! requests, which the daemon picks up within a second, and the liveness probe
//! `/healthz` sends to the actors' event loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::action::Identity;
use crate::actors::token::TokenHealth;
use crate::config::{Config, Secret};
use crate::health::{Blockers, Liveness};
use crate::journal::view::DeadLetterFilter;
use crate::journal::{ActionFilter, Cluster, Cursor, JournalError, JournalRead, ReaderPool, StateWord};

/// What `/readyz` looks at.
pub struct Readiness {
    /// Token state from the `TokenActor`.
    pub token: watch::Receiver<TokenHealth>,
    /// Problems only an operator can fix, met by other components (the webhook).
    pub blockers: Blockers,
    /// The cluster membership (PostgreSQL journal): not ready while the database is
    /// unreachable or the heartbeat is late.
    pub cluster: Option<Arc<Cluster>>,
    /// Set once shutdown begins.
    pub shutting_down: AtomicBool,
    /// Answered by the event loop that runs the actors (`/healthz`).
    pub liveness: Liveness,
}

/// How long `/healthz` waits for the actors' event loop to answer.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(1);

/// Shared by the handlers.
struct AdminState {
    metrics: PrometheusHandle,
    readers: Arc<ReaderPool>,
    readiness: Arc<Readiness>,
    token: Option<Secret>,
}

/// Starts the admin server on `listen`; fails when the address cannot be bound.
pub fn start(
    listen: std::net::SocketAddr,
    metrics: PrometheusHandle,
    config: Arc<Config>,
    readiness: Arc<Readiness>,
    token: Option<Secret>,
) -> std::io::Result<(ServerHandle, std::net::SocketAddr)> {
    let readers = ReaderPool::new(config.clone());
    let console = web::Data::new(crate::console::Console::new(
        config.clone(),
        readers.clone(),
        token.clone(),
        listen,
    ));
    let state = web::Data::new(AdminState {
        metrics,
        readers,
        readiness,
        token,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(crate::console::configure(console.clone()))
            .route("/", web::get().to(|| async { crate::console::see_other("/ui/") }))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
            .route("/v1/actions", web::get().to(actions))
            .route("/v1/actions/{batch}/{key}", web::get().to(action))
            .route("/v1/dead-letters", web::get().to(dead_letters))
            .route("/v1/instances", web::get().to(instances))
            .route("/v1/dead-letters/{error_id}/replay", web::post().to(replay))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)?;
    let addr = server.addrs().first().copied().expect("bound to one address");
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((handle, addr))
}

/// 200 while the event loop that runs the actors answers; 503 when it is wedged.
async fn healthz(state: web::Data<AdminState>) -> HttpResponse {
    if state.readiness.liveness.probe(HEALTHZ_TIMEOUT).await {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    } else {
        let reason = format!(
            "the event loop running the actors did not answer within {}",
            humantime::format_duration(HEALTHZ_TIMEOUT)
        );
        HttpResponse::ServiceUnavailable().json(json!({"status": "not responding", "reason": reason}))
    }
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let reason = if state.readiness.shutting_down.load(Ordering::Relaxed) {
        Some("shutdown under way".to_string())
    } else {
        let cluster = state.readiness.cluster.as_ref().and_then(|c| c.unready());
        match &*state.readiness.token.borrow() {
            _ if cluster.is_some() => cluster,
            TokenHealth::Ready => state.readiness.blockers.first(),
            TokenHealth::Missing => Some("no token obtained yet".to_string()),
            TokenHealth::Rejected(reason) => Some(reason.clone()),
        }
    };
    match reason {
        None => HttpResponse::Ok().json(json!({"status": "ready"})),
        Some(reason) => HttpResponse::ServiceUnavailable().json(json!({"status": "not ready", "reason": reason})),
    }
}

async fn metrics_text(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(crate::telemetry::metrics::render(&state.metrics))
}

/// Runs a journal read off the worker's event loop.
async fn with_journal<T: Send + 'static>(
    state: &AdminState,
    read: impl FnOnce(&dyn JournalRead) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, HttpResponse> {
    let readers = state.readers.clone();
    match web::block(move || readers.read(read)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(HttpResponse::ServiceUnavailable().json(json!({"error": e.to_string()}))),
        Err(e) => Err(HttpResponse::InternalServerError().json(json!({"error": e.to_string()}))),
    }
}

/// The paging parameters every list takes.
#[derive(Deserialize)]
struct Paging {
    limit: Option<String>,
    after: Option<String>,
}

/// Default page length of the lists.
const DEFAULT_PAGE: usize = 100;

impl Paging {
    /// `limit` (default 100, at most 1000) and the decoded `after` cursor of `parts`
    /// parts; a 400 with a JSON reason for anything else.
    fn read(&self, parts: usize) -> Result<(usize, Option<Cursor>), Box<HttpResponse>> {
        let limit = match self.limit.as_deref().filter(|l| !l.is_empty()) {
            None => DEFAULT_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=crate::journal::MAX_PAGE).contains(&n) => n,
                _ => {
                    let reason = format!(
                        "limit: expected a number from 1 to {}, found {text:?}",
                        crate::journal::MAX_PAGE
                    );
                    return Err(Box::new(bad_request(reason)));
                }
            },
        };
        let after = match self.after.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(text) => Some(
                Cursor::decode(text, parts)
                    .ok_or_else(|| Box::new(bad_request(format!("after: not a cursor of this list: {text:?}"))))?,
            ),
        };
        Ok((limit, after))
    }
}

fn bad_request(reason: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": reason}))
}

#[derive(Deserialize)]
struct ActionsQuery {
    batch: Option<String>,
    state: Option<String>,
    key_prefix: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

async fn actions(state: web::Data<AdminState>, query: web::Query<ActionsQuery>) -> HttpResponse {
    let query = query.into_inner();
    let (limit, after) = match query.paging.read(2) {
        Ok(paging) => paging,
        Err(response) => return *response,
    };
    let word = match query.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match StateWord::parse(text) {
            Some(word) => Some(word),
            None => {
                let known: Vec<&str> = StateWord::ALL.iter().map(|w| w.as_str()).collect();
                return bad_request(format!(
                    "state: unknown state {text:?}; expected one of {}",
                    known.join(", ")
                ));
            }
        },
    };
    let filter = ActionFilter {
        batch: query.batch,
        state: word,
        key_prefix: query.key_prefix,
    };
    match with_journal(&state, move |r| r.actions(&filter, limit, after.as_ref())).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(response) => response,
    }
}

async fn instances(state: web::Data<AdminState>) -> HttpResponse {
    match with_journal(&state, |r| r.instances()).await {
        Ok(list) => HttpResponse::Ok().json(list),
        Err(response) => response,
    }
}

async fn action(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (batch, key) = path.into_inner();
    let identity = Identity::new(batch, key);
    let lookup = identity.clone();
    match with_journal(&state, move |r| r.action(&lookup)).await {
        Ok(Some(view)) => HttpResponse::Ok().json(view),
        Ok(None) => HttpResponse::NotFound().json(json!({"error": format!("no action {identity} in the journal")})),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct DeadLettersQuery {
    batch: Option<String>,
    error_code: Option<String>,
    delivery: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

/// The delivery words a dead-letter list filters on.
const DELIVERY_WORDS: [&str; 4] = ["delivered", "pending", "stored", "discarded"];

async fn dead_letters(state: web::Data<AdminState>, query: web::Query<DeadLettersQuery>) -> HttpResponse {
    let query = query.into_inner();
    let (limit, after) = match query.paging.read(2) {
        Ok(paging) => paging,
        Err(response) => return *response,
    };
    if let Some(word) = query
        .delivery
        .as_deref()
        .filter(|d| !d.is_empty() && !DELIVERY_WORDS.contains(d))
    {
        return bad_request(format!(
            "delivery: unknown delivery state {word:?}; expected one of {}",
            DELIVERY_WORDS.join(", ")
        ));
    }
    let filter = DeadLetterFilter {
        batch: query.batch,
        error_code: query.error_code,
        delivery: query.delivery,
        replayed: None,
    };
    match with_journal(&state, move |r| r.dead_letters(&filter, limit, after.as_ref())).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(response) => response,
    }
}

async fn replay(state: web::Data<AdminState>, request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let Some(expected) = &state.token else {
        return HttpResponse::Forbidden()
            .json(json!({"error": "replay is disabled: no admin.token_env is configured"}));
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !expected.matches(presented) {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .json(json!({"error": "a valid bearer token is required"}));
    }
    let error_id = path.into_inner();
    let ids = vec![error_id.clone()];
    match with_journal(&state, move |r| r.request_replay(Some(&ids))).await {
        Ok(accepted) if accepted.is_empty() => {
            HttpResponse::NotFound().json(json!({"error": format!("no dead letter {error_id} waiting to be replayed")}))
        }
        Ok(_) => HttpResponse::Ok().json(json!({"replay_requested": error_id})),
        Err(response) => response,
    }
}
