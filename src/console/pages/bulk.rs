//! Replaying and discarding dead letters from the console: a confirmation that shows how
//! many letters a bulk change touches, then the change itself, which leaves requests the
//! daemon carries out within a second (as `dlq replay` and `dlq discard` do).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

use super::dead_letters::{Filter, REPLAY_CAP};
use super::layout::{self, count, href, Section};
use crate::console::auth::Need;
use crate::console::{error_page, form_fields, html as respond, see_other, Console};

/// What a confirmed change applies to.
enum Target {
    /// The letters picked one by one.
    Selected(Vec<String>),
    /// The replayable letters the filter matches, at most `REPLAY_CAP`.
    Matching,
}

/// `GET /ui/dead-letters/confirm?op=replay&<filter>`: confirms replaying everything the
/// filter matches, with the count.
pub async fn confirm_matching(console: web::Data<Console>, req: HttpRequest) -> HttpResponse {
    let viewer = match console.admit(&req, Need::Read) {
        Ok(viewer) if viewer.can_write => viewer,
        Ok(_) => return error_page(StatusCode::FORBIDDEN, "log in with the admin token to replay"),
        Err(refused) => return *refused,
    };
    let fields = form_fields(req.query_string().as_bytes());
    let filter = Filter::from_fields(&fields);
    let journal_filter = filter.journal();
    let counts = match console.read(move |r| r.dead_letter_counts(&journal_filter)).await {
        Ok(counts) => counts,
        Err(refused) => return refused,
    };
    let touched = counts.replayable.min(REPLAY_CAP as u64);
    let body = html! {
        h1 { "Replay " span data-confirm-count { (count(touched)) } " dead letters?" }
        p { "Every dead letter matching " strong { (filter.describe()) } " that can be replayed starts again as a fresh attempt series." }
        @if counts.replayable > REPLAY_CAP as u64 {
            p.notice { (count(counts.replayable)) " match; the oldest " (count(REPLAY_CAP as u64)) " are replayed now. Confirm again for the rest." }
        }
        (confirm_form("replay", &filter, &Target::Matching, touched))
    };
    respond(
        StatusCode::OK,
        layout::page("Confirm replay", Section::DeadLetters, Some(&viewer), body),
    )
}

/// `POST /ui/dead-letters/confirm`: confirms replaying or discarding the selected letters.
pub async fn confirm_selected(console: web::Data<Console>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let viewer = match console.admit(&req, Need::Write) {
        Ok(viewer) => viewer,
        Err(refused) => return *refused,
    };
    let fields = form_fields(&body);
    let filter = Filter::from_fields(&fields);
    let ids = selected(&fields);
    let op = fields.iter().find(|(n, _)| n == "op").map_or("", |(_, v)| v.as_str());
    if ids.is_empty() || !matches!(op, "replay" | "discard") {
        return see_other(&href("/ui/dead-letters", &filter.params()));
    }
    let n = ids.len() as u64;
    let body = html! {
        @if op == "replay" {
            h1 { "Replay " span data-confirm-count { (count(n)) } " selected dead letters?" }
            p { "Their actions start again as fresh attempt series." }
        } @else {
            h1 { "Discard " span data-confirm-count { (count(n)) } " selected dead letters?" }
            p { "They stay in the journal, marked discarded, with a " code { "DEAD_LETTER_DISCARDED" } " audit record, and are never delivered again." }
        }
        (confirm_form(op, &filter, &Target::Selected(ids), n))
    };
    respond(
        StatusCode::OK,
        layout::page("Confirm", Section::DeadLetters, Some(&viewer), body),
    )
}

fn confirm_form(op: &str, filter: &Filter, target: &Target, n: u64) -> Markup {
    html! {
        form.confirm method="post" action=(format!("/ui/dead-letters/{op}")) {
            (filter.hidden())
            @match target {
                Target::Matching => input type="hidden" name="scope" value="matching";,
                Target::Selected(ids) => @for id in ids { input type="hidden" name="error_id" value=(id); },
            }
            button type="submit" class=[(op == "discard").then_some("danger")] data-confirm=(op) disabled[n == 0] {
                @if op == "replay" { "Replay " (count(n)) } @else { "Discard " (count(n)) }
            }
            " "
            a href=(href("/ui/dead-letters", &filter.params())) { "Cancel" }
        }
    }
}

/// `POST /ui/dead-letters/replay`: the selected letters, or every replayable one the
/// filter matches (at most `REPLAY_CAP`).
pub async fn replay(console: web::Data<Console>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    change(console, req, body, "replay").await
}

/// `POST /ui/dead-letters/discard`: the selected letters.
pub async fn discard(console: web::Data<Console>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    change(console, req, body, "discard").await
}

async fn change(console: web::Data<Console>, req: HttpRequest, body: web::Bytes, op: &'static str) -> HttpResponse {
    if let Err(refused) = console.admit(&req, Need::Write) {
        return *refused;
    }
    let fields = form_fields(&body);
    let filter = Filter::from_fields(&fields);
    let matching = fields.iter().any(|(n, v)| n == "scope" && v == "matching");
    let target = if matching && op == "replay" {
        Target::Matching
    } else {
        Target::Selected(selected(&fields))
    };
    let asked = match &target {
        Target::Selected(ids) => ids.len(),
        Target::Matching => 0,
    };
    let journal_filter = filter.journal();
    let accepted = console
        .read(move |r| match (&target, op) {
            (Target::Matching, _) => r.request_replay_matching(&journal_filter, REPLAY_CAP),
            (Target::Selected(ids), "replay") => r.request_replay(Some(ids)),
            (Target::Selected(ids), _) => r.request_discard(ids),
        })
        .await;
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(refused) => return refused,
    };
    tracing::info!(op, count = accepted.len(), "Console request for dead letters.");
    let (n, refused) = (
        accepted.len().to_string(),
        asked.saturating_sub(accepted.len()).to_string(),
    );
    let mut params = filter.params();
    params.extend([("notice", op), ("n", n.as_str()), ("refused", refused.as_str())]);
    see_other(&href("/ui/dead-letters", &params))
}

/// The `error_id`s a form selected (at most `REPLAY_CAP`, each once).
fn selected(fields: &[(String, String)]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    fields
        .iter()
        .filter(|(n, v)| n == "error_id" && !v.is_empty() && seen.insert(v.as_str()))
        .map(|(_, id)| id.clone())
        .take(REPLAY_CAP)
        .collect()
}
