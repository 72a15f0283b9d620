//! Logging in with the admin token (a form that starts a session cookie) and out.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{page, Section};
use crate::console::auth::{self, CROSS_ORIGIN};
use crate::console::{error_page, form_fields, html as respond, see_other, Console};

/// How long a wrong token waits before its answer, which slows guessing down.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(300);

/// `?next=` of the login form.
#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// `GET /ui/login`.
pub async fn form(console: web::Data<Console>, query: web::Query<Next>) -> HttpResponse {
    if console.token.is_none() {
        return see_other("/ui/");
    }
    respond(StatusCode::OK, render(&auth::local_target(query.next.as_deref()), None))
}

/// `POST /ui/login`: the right token starts a session and returns to `next`; a wrong one
/// shows the form again with 401.
pub async fn submit(console: web::Data<Console>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(expected) = &console.token else {
        return see_other("/ui/");
    };
    if !auth::same_origin(&req) {
        return error_page(StatusCode::FORBIDDEN, CROSS_ORIGIN);
    }
    let fields = form_fields(&body);
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let next = auth::local_target(field("next"));
    if !auth::token_matches(expected, field("token").unwrap_or("")) {
        actix_rt::time::sleep(WRONG_TOKEN_DELAY).await;
        tracing::warn!(peer = ?req.peer_addr(), "Console login refused: wrong token.");
        return respond(
            StatusCode::UNAUTHORIZED,
            render(&next, Some("That is not the admin token.")),
        );
    }
    let session = console.sessions.start();
    HttpResponse::SeeOther()
        .insert_header((header::SET_COOKIE, auth::session_set_cookie(&session)))
        .insert_header((header::LOCATION, next))
        .finish()
}

/// `POST /ui/logout`.
pub async fn logout(console: web::Data<Console>, req: HttpRequest) -> HttpResponse {
    if !auth::same_origin(&req) {
        return error_page(StatusCode::FORBIDDEN, CROSS_ORIGIN);
    }
    if let Some(id) = auth::session_cookie(&req) {
        console.sessions.end(&id);
    }
    HttpResponse::SeeOther()
        .insert_header((header::SET_COOKIE, auth::session_clear_cookie()))
        .insert_header((header::LOCATION, "/ui/login"))
        .finish()
}

fn render(next: &str, problem: Option<&str>) -> Markup {
    page(
        "Log in",
        Section::None,
        None,
        html! {
            div.login {
                h1 { "Log in" }
                p.muted { "Enter the admin token (the value of the variable named by " code { "admin.token_env" } ")." }
                @if let Some(problem) = problem { p.notice.bad role="alert" { (problem) } }
                form method="post" action="/ui/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}
