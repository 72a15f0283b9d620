//! The simulator's HTTP endpoints: CXone's token, submit and poll, plus the `/sim/*`
//! endpoints tests use to inspect and steer it. Decisions are made in state.rs.

use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::knobs::KnobUpdate;
use super::reply::Reply;
use super::state::Shared;

/// Header carrying the action id when a submit answers without a body id.
const ACTION_ID_HEADER: &str = "X-Action-Id";

/// Header with the dead-letter webhook's signature.
const SIGNATURE_HEADER: &str = "X-Actionwarden-Signature";

/// Body of a malformed poll answer.
const MALFORMED_BODY: &str = "<html><body>oops: upstream proxy error</body></html>";

/// Mounts every endpoint.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth/token", web::post().to(token))
        .route("/api/v2/data/actions", web::post().to(submit))
        .route("/api/v2/data/actions/{id}", web::get().to(poll))
        .route("/sim/webhook", web::post().to(receive_webhook))
        .route("/sim/webhook", web::get().to(list_webhooks))
        .route("/sim/control", web::post().to(control))
        .route("/sim/control", web::get().to(knobs))
        .route("/sim/stats", web::get().to(stats))
        .route("/sim/requests", web::get().to(requests))
        .route("/sim/actions", web::get().to(created));
}

/// The client-credentials form; unknown fields (such as `scope`) are ignored.
#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Why a dropped connection ends: the body stream fails before its first byte, so
/// actix-http closes the connection without flushing even the response head.
#[derive(Debug, thiserror::Error)]
#[error("simulated connection drop (not an error)")]
struct SimulatedDrop;

async fn token(sim: web::Data<Shared>, form: Result<web::Form<TokenForm>, actix_web::Error>) -> HttpResponse {
    let now = Instant::now();
    let form = form.map(web::Form::into_inner).unwrap_or(TokenForm {
        grant_type: None,
        client_id: None,
        client_secret: None,
    });
    let (reply, delay) = {
        let mut inner = sim.lock();
        let reply = inner.token(
            &sim.config,
            form.grant_type.as_deref(),
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
            now,
        );
        (reply, inner.knobs.token_latency)
    };
    delayed(reply, delay).await
}

async fn submit(sim: web::Data<Shared>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let now = Instant::now();
    let (reply, delay) = sim.lock().submit(
        &sim.config,
        bearer(&req),
        header_str(&req, "idempotency-key"),
        &body,
        now,
    );
    delayed(reply, delay).await
}

async fn poll(sim: web::Data<Shared>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    let now = Instant::now();
    let (reply, delay) = sim.lock().poll(&sim.config, bearer(&req), &id, now);
    delayed(reply, delay).await
}

async fn receive_webhook(sim: web::Data<Shared>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let now = Instant::now();
    let reply = sim.lock().webhook(
        &sim.config,
        header_str(&req, "idempotency-key"),
        header_str(&req, SIGNATURE_HEADER),
        &body,
        now,
    );
    respond(reply)
}

async fn list_webhooks(sim: web::Data<Shared>) -> HttpResponse {
    json_bytes(serde_json::to_vec(&sim.lock().webhooks))
}

async fn control(sim: web::Data<Shared>, body: Bytes) -> HttpResponse {
    match serde_json::from_slice::<KnobUpdate>(&body) {
        Ok(mut update) => {
            let mut inner = sim.lock();
            if let Some(secret) = update.take_client_secret() {
                inner.client_secret = secret;
            }
            inner.knobs.apply(update);
            HttpResponse::Ok().json(&inner.knobs)
        }
        Err(e) => HttpResponse::BadRequest().json(json!({
            "errors": [{"code": "INVALID_REQUEST", "message": format!("invalid control body: {e}")}]
        })),
    }
}

async fn knobs(sim: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(&sim.lock().knobs)
}

async fn stats(sim: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(&sim.lock().stats)
}

async fn requests(sim: web::Data<Shared>) -> HttpResponse {
    json_bytes(serde_json::to_vec(&sim.lock().log))
}

async fn created(sim: web::Data<Shared>) -> HttpResponse {
    json_bytes(serde_json::to_vec(&sim.lock().created))
}

/// Waits the simulated latency, then answers.
async fn delayed(reply: Reply, delay: Duration) -> HttpResponse {
    if !delay.is_zero() {
        actix_rt::time::sleep(delay).await;
    }
    respond(reply)
}

fn respond(reply: Reply) -> HttpResponse {
    match reply {
        Reply::Json { status, body } => {
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)).json(body)
        }
        Reply::Accepted { id, header_only, no_id } => {
            let mut res = HttpResponse::Accepted();
            if no_id {
                res.json(json!({"status": "QUEUED"}))
            } else if header_only {
                res.insert_header((ACTION_ID_HEADER, id)).finish()
            } else {
                res.json(json!({"id": id, "status": "QUEUED"}))
            }
        }
        Reply::RateLimited { retry_after } => {
            let mut res = HttpResponse::TooManyRequests();
            if let Some(value) = retry_after {
                res.insert_header((header::RETRY_AFTER, value));
            }
            res.json(json!({"errors": [{"code": "RATE_LIMITED", "message": "Too many requests"}]}))
        }
        Reply::Malformed => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(MALFORMED_BODY),
        Reply::Drop => HttpResponse::Ok().streaming(futures_util::stream::once(async {
            Err::<Bytes, SimulatedDrop>(SimulatedDrop)
        })),
    }
}

fn json_bytes(body: serde_json::Result<Vec<u8>>) -> HttpResponse {
    match body {
        Ok(bytes) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .body(bytes),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    header_str(req, "authorization").and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
    })
}
