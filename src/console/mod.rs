//! The operator console at `/ui/` on the admin server: an overview that updates live, the
//! actions with their timelines, and dead letters to replay or discard. Pages are
//! rendered on the server (maud escapes every value it interpolates); a little plain
//! JavaScript, served as a file, adds live updates and bulk selection, and every page
//! works without it. Assets are embedded in the binary.
//!
//! Layout: `auth.rs` (who may do what, sessions), `overview.rs` (the overview's data and
//! the hub that shares one read per second), `sse.rs` (`/ui/events`), `assets.rs`, and
//! `pages/` (one file per page family). Handlers run on the admin server's worker and
//! read the journal on the blocking pool through the admin server's pool of readers
//! (shared with the API); changes are requests the daemon carries out within a second,
//! as with `dlq replay` (docs/console.md).

mod assets;
pub mod auth;
pub mod overview;
mod pages;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::Markup;

use crate::config::{Config, Secret};
use crate::journal::{JournalError, JournalRead, ReaderPool};
use auth::{Need, Policy, Presented, Sessions, Verdict};
use overview::Hub;

/// Scripts and styles only from the console itself, no inline script or style, no
/// framing, forms posting only back to it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's state, shared by its handlers.
pub struct Console {
    config: Arc<Config>,
    readers: Arc<ReaderPool>,
    token: Option<Secret>,
    policy: Policy,
    sessions: Sessions,
    hub: Arc<Hub>,
}

/// Who is looking at a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    /// Replays and discards are allowed (the page shows their buttons).
    pub can_write: bool,
    /// Logged in with the form (the page offers to log out).
    pub signed_in: bool,
    /// An admin token is configured (the page offers to log in).
    pub token_configured: bool,
}

impl Console {
    /// The console of a daemon whose admin server listens on `listen`.
    pub fn new(config: Arc<Config>, readers: Arc<ReaderPool>, token: Option<Secret>, listen: SocketAddr) -> Console {
        let policy = Policy {
            token: token.is_some(),
            loopback: listen.ip().is_loopback(),
            read_only_ui: config.admin.ui_read_only,
        };
        Console {
            hub: Hub::new(config.clone(), readers.clone()),
            readers,
            config,
            token,
            policy,
            sessions: Sessions::default(),
        }
    }

    /// Lets a request in, or answers it: a redirect to the login form for a person, 401
    /// for a client with a wrong token, 403 for a change from elsewhere or a change
    /// without a token configured.
    pub fn admit(&self, req: &HttpRequest, need: Need) -> Result<Viewer, Box<HttpResponse>> {
        let session = auth::session_cookie(req).filter(|id| self.sessions.is_live(id));
        let bearer = auth::bearer(req);
        let bearer_ok = match (&self.token, bearer) {
            (Some(token), Some(presented)) => auth::token_matches(token, presented),
            _ => false,
        };
        let presented = Presented {
            authenticated: self.token.is_some() && (session.is_some() || bearer_ok),
            same_origin: auth::same_origin(req),
        };
        match auth::decide(self.policy, need, presented) {
            Verdict::Allow { can_write } => Ok(Viewer {
                can_write,
                signed_in: session.is_some(),
                token_configured: self.token.is_some(),
            }),
            Verdict::Unauthenticated if req.method() == actix_web::http::Method::GET && bearer.is_none() => {
                let here = req.uri().path_and_query().map_or("/ui/", |p| p.as_str());
                let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
                Err(Box::new(see_other(&format!("/ui/login?next={next}"))))
            }
            Verdict::Unauthenticated => Err(Box::new(
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                    .content_type("text/plain; charset=utf-8")
                    .body("the admin token is required: log in at /ui/login or send Authorization: Bearer\n"),
            )),
            Verdict::Forbidden(reason) => Err(Box::new(error_page(StatusCode::FORBIDDEN, reason))),
            Verdict::NotServed => Err(Box::new(error_page(
                StatusCode::FORBIDDEN,
                "without an admin.token_env the console is served only on a loopback admin.listen",
            ))),
        }
    }

    /// Runs a journal read on the blocking pool; an error page when it fails.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn JournalRead) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, HttpResponse> {
        let readers = self.readers.clone();
        match web::block(move || readers.read(read)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the journal cannot be read: {e}"),
            )),
            Err(e) => Err(error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())),
        }
    }

    /// The delivery word of a dead letter not delivered yet: `pending` with a webhook,
    /// `stored` without.
    pub fn unsent_word(&self) -> &'static str {
        if self.config.dead_letter.webhook_url.is_set() {
            "pending"
        } else {
            "stored"
        }
    }

    /// The configured batch names, in configuration order.
    pub fn batch_names(&self) -> Vec<String> {
        self.config.batches.iter().map(|b| b.name.clone()).collect()
    }
}

/// Mounts the console under `/ui`.
pub fn configure(console: web::Data<Console>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let headers = DefaultHeaders::new()
            .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
            .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .add((header::X_FRAME_OPTIONS, "DENY"))
            .add((header::REFERRER_POLICY, "no-referrer"))
            .add((header::CACHE_CONTROL, "no-store"));
        cfg.service(
            web::scope("/ui")
                .app_data(console)
                .wrap(headers)
                .route("", web::get().to(|| async { see_other("/ui/") }))
                .route("/", web::get().to(pages::overview::page))
                .route("/events", web::get().to(sse::events))
                .route("/login", web::get().to(pages::login::form))
                .route("/login", web::post().to(pages::login::submit))
                .route("/logout", web::post().to(pages::login::logout))
                .route("/actions", web::get().to(pages::actions::list))
                .route("/action", web::get().to(pages::action::page))
                .route("/dead-letters", web::get().to(pages::dead_letters::list))
                .route("/dead-letters/confirm", web::get().to(pages::bulk::confirm_matching))
                .route("/dead-letters/confirm", web::post().to(pages::bulk::confirm_selected))
                .route("/dead-letters/replay", web::post().to(pages::bulk::replay))
                .route("/dead-letters/discard", web::post().to(pages::bulk::discard))
                .route("/assets/{name}", web::get().to(assets::serve)),
        );
    }
}

/// A `303 See Other` to a console path.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// A rendered page.
pub fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// A page saying why a request failed.
pub fn error_page(status: StatusCode, reason: &str) -> HttpResponse {
    html(status, pages::layout::error(status, reason))
}

/// The fields of a form body, in order (a name may repeat, as checkboxes do).
pub fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}
