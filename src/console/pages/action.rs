//! `/ui/action?batch=&key=`: one action: identity, state and outcome, its history as a
//! timeline (a page of events at a time), the audit lines the journal keeps for it, its
//! dead letter with replay and discard, and its body.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, count, href, state_label, unix_to_rfc3339, when, when_precise, Section};
use crate::action::Identity;
use crate::console::auth::Need;
use crate::console::{error_page, html as respond, Console, Viewer};
use crate::journal::{ActionView, Cursor, DeadLetterView, HistoryEvent, Page};

/// History events per page of the timeline.
const HISTORY_PAGE: usize = 100;

/// Which action, and which page of its history.
#[derive(Debug, Deserialize)]
pub struct Query {
    batch: String,
    key: String,
    #[serde(default)]
    history_after: String,
}

/// What the page shows.
struct Loaded {
    action: ActionView,
    history: Page<HistoryEvent>,
    audit: Vec<String>,
}

/// `GET /ui/action`.
pub async fn page(console: web::Data<Console>, req: HttpRequest, query: web::Query<Query>) -> HttpResponse {
    let viewer = match console.admit(&req, Need::Read) {
        Ok(viewer) => viewer,
        Err(refused) => return *refused,
    };
    let query = query.into_inner();
    let identity = Identity::new(query.batch.as_str(), query.key.as_str());
    let after = Cursor::decode(&query.history_after, 1);
    let loaded = console
        .read(move |r| {
            let Some(action) = r.action_head(&identity)? else {
                return Ok(None);
            };
            let history = r.action_history(&identity, HISTORY_PAGE, after.as_ref())?;
            let audit = r.audit_lines(&identity)?;
            Ok(Some(Loaded { action, history, audit }))
        })
        .await;
    match loaded {
        Ok(Some(loaded)) => respond(StatusCode::OK, render(&query, &loaded, &viewer)),
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            &format!("no action {}/{} in the journal", query.batch, query.key),
        ),
        Err(refused) => refused,
    }
}

fn render(query: &Query, loaded: &Loaded, viewer: &Viewer) -> Markup {
    let a = &loaded.action;
    let body = html! {
        p.crumbs { a href=(href("/ui/actions", &[("batch", &a.batch)])) { (a.batch) } " /" }
        h1 { (a.key) " " span class=(format!("state state-{}", a.state)) { (state_label(&a.state)) } }
        dl.facts {
            dt { "Batch" } dd { (a.batch) }
            dt { "Key" } dd.mono { (a.key) }
            dt { "State" } dd { (state_label(&a.state)) }
            dt { "Outcome" } dd { (a.outcome.as_deref().map(state_label).unwrap_or_else(|| "none yet".into())) }
            dt { "Attempt" } dd { (count(u64::from(a.attempt))) }
            dt { "Retries" } dd { (count(u64::from(a.retry_count))) }
            dt { "CXone id" } dd.mono { (a.action_id.as_deref().unwrap_or("none")) }
        }
        @if let Some(letter) = &a.dead_letter { (dead_letter(letter, viewer)) }
        section #timeline {
            h2 { "Timeline" }
            (timeline(&loaded.history))
            nav.pager {
                @if !query.history_after.is_empty() {
                    a href=(href("/ui/action", &[("batch", &query.batch), ("key", &query.key)])) { "← First events" }
                }
                @if let Some(next) = &loaded.history.next {
                    a href=(href("/ui/action", &[("batch", &query.batch), ("key", &query.key), ("history_after", next)])) { "Later events →" }
                }
            }
        }
        section #audit {
            h2 { "Audit records" }
            @if loaded.audit.is_empty() {
                p.muted { "None kept in the journal: the action has no outcome yet, or its records were pruned. Progress records are in the audit file." }
            }
            @for line in &loaded.audit { pre.json { (pretty(line)) } }
        }
        section #body {
            h2 { "Body" }
            @match &a.body {
                Some(body) => pre.json { (serde_json::to_string_pretty(body).unwrap_or_default()) },
                None => p.muted { "Pruned (journal.retention)." },
            }
        }
    };
    layout::page(&format!("{}/{}", a.batch, a.key), Section::Actions, Some(viewer), body)
}

/// The history, oldest first.
fn timeline(history: &Page<HistoryEvent>) -> Markup {
    html! {
        @if history.items.is_empty() {
            p.muted { "No transitions journaled (pruned, or not admitted yet)." }
        } @else {
            ol.timeline {
                @for e in &history.items {
                    li data-state=(e.state) {
                        div.when { (when_precise(&e.at)) }
                        div.what {
                            span class=(format!("state state-{}", e.state)) { (state_label(&e.state)) }
                            " attempt " (e.attempt)
                            @if let Some(status) = e.http_status { " · HTTP " (status) }
                            @if let Some(code) = &e.error_code { " · " code { (code) } }
                        }
                        @if let Some(detail) = &e.detail { div.detail { (detail) } }
                        div.meta.muted {
                            @if let Some(id) = &e.action_id { "CXone id " span.mono { (id) } " · " }
                            "by " (e.instance)
                        }
                    }
                }
            }
        }
    }
}

/// The action's latest dead letter, with replay and discard when they apply.
fn dead_letter(view: &DeadLetterView, viewer: &Viewer) -> Markup {
    let l = &view.letter;
    let error_id = l.error_id.to_string();
    html! {
        section #dead-letter.letter {
            h2 { "Dead letter" }
            dl.facts {
                dt { "Error id" } dd.mono { (error_id) }
                dt { "Error code" } dd { code { (l.error_code) } }
                dt { "Message" } dd { (l.message) }
                dt { "HTTP status" } dd { (l.status_code) }
                dt { "Directive" } dd { (l.recovery_directive.as_str()) }
                dt { "Retries" } dd { (l.retry_count) " of " (l.max_retries) @if l.retry_exhausted { " (exhausted)" } }
                dt { "Created" } dd { (when(&unix_to_rfc3339(l.created_at))) }
                dt { "Delivery" } dd { span class=(format!("delivery delivery-{}", view.delivery)) { (view.delivery) } " after " (view.attempts) " attempts" }
                @if let Some(e) = &view.last_error { dt { "Last delivery error" } dd { (e) } }
                dt { "Replayed" } dd { (if view.replayed { "yes" } else { "no" }) }
            }
            @if viewer.can_write {
                div.buttons {
                    @if !view.replayed {
                        form method="post" action="/ui/dead-letters/replay" {
                            input type="hidden" name="error_id" value=(error_id);
                            button type="submit" data-action="replay" { "Replay" }
                        }
                    }
                    @if !view.delivered && !view.discarded {
                        form method="post" action="/ui/dead-letters/confirm" {
                            input type="hidden" name="op" value="discard";
                            input type="hidden" name="error_id" value=(error_id);
                            button.danger type="submit" data-action="discard" { "Discard…" }
                        }
                    }
                }
            }
        }
    }
}

/// An audit line pretty-printed; as stored when it is not JSON.
fn pretty(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| line.to_owned())
}
