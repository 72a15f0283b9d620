//! The admin HTTP server (SPEC §11) on `admin.listen`: health, readiness, Prometheus
//! metrics, JSON views of the journal and the dead-letter replay endpoint.
//!
//! Handlers run on actix-web's worker thread, not on the daemon's arbiter: they read the
//! journal through their own SQLite connection and reach the daemon only through
//! thread-safe state (readiness) and the journal's replay requests, which the daemon
//! picks up within a second.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::action::Identity;
use crate::actors::token::TokenHealth;
use crate::config::Secret;
use crate::journal::JournalReader;

/// What `/readyz` looks at.
pub struct Readiness {
    /// Token state from the `TokenActor`.
    pub token: watch::Receiver<TokenHealth>,
    /// Set once shutdown begins.
    pub shutting_down: AtomicBool,
}

/// Shared by the handlers.
struct AdminState {
    metrics: PrometheusHandle,
    journal_path: PathBuf,
    readiness: Arc<Readiness>,
    token: Option<Secret>,
    has_webhook: bool,
}

/// Starts the admin server on `listen`; fails when the address cannot be bound.
/// `has_webhook` lets the dead-letter view tell pending letters from stored ones.
pub fn start(
    listen: &str,
    metrics: PrometheusHandle,
    journal_path: PathBuf,
    readiness: Arc<Readiness>,
    token: Option<Secret>,
    has_webhook: bool,
) -> std::io::Result<(ServerHandle, std::net::SocketAddr)> {
    let state = web::Data::new(AdminState {
        metrics,
        journal_path,
        readiness,
        token,
        has_webhook,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
            .route("/v1/actions", web::get().to(actions))
            .route("/v1/actions/{batch}/{key}", web::get().to(action))
            .route("/v1/dead-letters", web::get().to(dead_letters))
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

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let reason = if state.readiness.shutting_down.load(Ordering::Relaxed) {
        Some("shutdown under way".to_string())
    } else {
        match &*state.readiness.token.borrow() {
            TokenHealth::Ready => None,
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
    read: impl FnOnce(&JournalReader) -> Result<T, crate::journal::JournalError> + Send + 'static,
) -> Result<T, HttpResponse> {
    let path = state.journal_path.clone();
    match web::block(move || JournalReader::open(&path).and_then(|r| read(&r))).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(HttpResponse::ServiceUnavailable().json(json!({"error": e.to_string()}))),
        Err(e) => Err(HttpResponse::InternalServerError().json(json!({"error": e.to_string()}))),
    }
}

#[derive(Deserialize)]
struct ActionsQuery {
    batch: Option<String>,
    state: Option<String>,
}

async fn actions(state: web::Data<AdminState>, query: web::Query<ActionsQuery>) -> HttpResponse {
    let ActionsQuery { batch, state: word } = query.into_inner();
    match with_journal(&state, move |r| {
        r.actions(
            batch.as_deref().filter(|b| !b.is_empty()),
            word.as_deref().filter(|s| !s.is_empty()),
        )
    })
    .await
    {
        Ok(rows) => HttpResponse::Ok().json(rows),
        Err(response) => response,
    }
}

async fn action(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (batch, key) = path.into_inner();
    let identity = Identity::new(batch, key);
    let lookup = identity.clone();
    match with_journal(&state, move |r| r.action(&lookup)).await {
        Ok(Some(row)) => HttpResponse::Ok().json(row),
        Ok(None) => HttpResponse::NotFound().json(json!({"error": format!("no action {identity} in the journal")})),
        Err(response) => response,
    }
}

async fn dead_letters(state: web::Data<AdminState>) -> HttpResponse {
    let has_webhook = state.has_webhook;
    match with_journal(&state, move |r| r.dead_letters(has_webhook)).await {
        Ok(letters) => HttpResponse::Ok().json(letters),
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
    if !constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
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

/// Compares in constant time (for equal lengths), so timing does not tell how much of a
/// guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
