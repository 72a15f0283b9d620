//! `/ui/dead-letters`: dead letters filtered by batch, error code, delivery state and
//! whether they were replayed, oldest first, a page at a time; rows can be selected for a
//! replay or a discard, and the bulk buttons say how many letters they touch.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, action_href, count, href, unix_to_rfc3339, when, Section};
use crate::console::auth::Need;
use crate::console::{html as respond, Console, Viewer};
use crate::journal::{Cursor, DeadLetterCounts, DeadLetterFilter, DeadLetterView, Page};

/// Dead letters per page.
const PAGE_SIZE: usize = 50;
/// Most dead letters one "replay all matching" request replays.
pub const REPLAY_CAP: usize = 10_000;
/// Longest message shown in a row (the whole one is on the action's page).
const MESSAGE_CHARS: usize = 120;

/// A dead-letter filter as the console's forms and links carry it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Only this batch.
    #[serde(default)]
    pub batch: String,
    /// Only this error code.
    #[serde(default)]
    pub error_code: String,
    /// Only this delivery word.
    #[serde(default)]
    pub delivery: String,
    /// `no` (the default: letters still to deal with), `yes` or `any`.
    #[serde(default)]
    pub replayed: String,
}

impl Filter {
    /// From form fields.
    pub fn from_fields(fields: &[(String, String)]) -> Filter {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Filter {
            batch: field("batch"),
            error_code: field("error_code"),
            delivery: field("delivery"),
            replayed: field("replayed"),
        }
    }

    /// The journal's filter.
    pub fn journal(&self) -> DeadLetterFilter {
        let set = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        DeadLetterFilter {
            batch: set(&self.batch),
            error_code: set(&self.error_code),
            delivery: set(&self.delivery),
            replayed: match self.replayed.as_str() {
                "yes" => Some(true),
                "any" => None,
                _ => Some(false),
            },
        }
    }

    /// As link parameters.
    pub fn params(&self) -> Vec<(&str, &str)> {
        vec![
            ("batch", self.batch.trim()),
            ("error_code", self.error_code.trim()),
            ("delivery", self.delivery.as_str()),
            ("replayed", self.replayed.as_str()),
        ]
    }

    /// As hidden form fields, so a form posts the filter back.
    pub fn hidden(&self) -> Markup {
        html! { @for (name, value) in self.params() { input type="hidden" name=(name) value=(value); } }
    }

    /// In words, for a confirmation.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .params()
            .into_iter()
            .filter(|(name, value)| !value.is_empty() && *name != "replayed")
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        parts.push(
            match self.replayed.as_str() {
                "yes" => "replayed",
                "any" => "replayed or not",
                _ => "not replayed",
            }
            .into(),
        );
        parts.join(", ")
    }
}

/// The list's query.
#[derive(Debug, Default, Deserialize)]
pub struct Query {
    #[serde(flatten)]
    filter: Filter,
    #[serde(default)]
    after: String,
    /// What the last change did: `replay` or `discard`, with `n` accepted and `refused`.
    #[serde(default)]
    notice: String,
    #[serde(default)]
    n: u64,
    #[serde(default)]
    refused: u64,
}

/// `GET /ui/dead-letters`.
pub async fn list(console: web::Data<Console>, req: HttpRequest, query: web::Query<Query>) -> HttpResponse {
    let viewer = match console.admit(&req, Need::Read) {
        Ok(viewer) => viewer,
        Err(refused) => return *refused,
    };
    let query = query.into_inner();
    let filter = query.filter.journal();
    let after = Cursor::decode(&query.after, 2);
    let read = console
        .read(move |r| {
            let page = r.dead_letters(&filter, PAGE_SIZE, after.as_ref())?;
            let counts = r.dead_letter_counts(&filter)?;
            Ok((page, counts))
        })
        .await;
    match read {
        Ok((page, counts)) => respond(
            StatusCode::OK,
            render(&query, &page, counts, &console.batch_names(), &viewer),
        ),
        Err(refused) => refused,
    }
}

fn render(
    query: &Query,
    page: &Page<DeadLetterView>,
    counts: DeadLetterCounts,
    batches: &[String],
    viewer: &Viewer,
) -> Markup {
    let f = &query.filter;
    let next = page.next.as_ref().map(|next| {
        let mut params = f.params();
        params.push(("after", next.as_str()));
        href("/ui/dead-letters", &params)
    });
    let body = html! {
        h1 { "Dead letters" }
        (notice(query))
        (filters(f, batches))
        p.muted data-matching=(counts.matching) {
            (count(counts.matching)) " match this filter; " (count(counts.replayable)) " can be replayed, "
            (count(counts.discardable)) " discarded."
        }
        @if page.items.is_empty() {
            p.notice { "No dead letter matches." }
        } @else {
            form #letters method="post" action="/ui/dead-letters/confirm" {
                (f.hidden())
                @if viewer.can_write { (bulk_bar(f, counts)) }
                div.scroll { (table(page, viewer)) }
            }
        }
        @if !viewer.can_write && viewer.token_configured {
            p.muted { a href="/ui/login" { "Log in" } " to replay or discard." }
        }
        nav.pager {
            @if !query.after.is_empty() { a href=(href("/ui/dead-letters", &f.params())) { "← First page" } }
            @if let Some(next) = &next { a href=(next) { "Next page →" } }
        }
    };
    layout::page("Dead letters", Section::DeadLetters, Some(viewer), body)
}

fn notice(query: &Query) -> Markup {
    let letters = |n: u64| {
        if n == 1 {
            "dead letter".to_owned()
        } else {
            "dead letters".to_owned()
        }
    };
    let done = match query.notice.as_str() {
        "replay" => format!(
            "Replay requested for {} {}; the daemon starts them again within a second.",
            count(query.n),
            letters(query.n)
        ),
        "discard" => format!(
            "Discard requested for {} {}; the daemon stops delivering them within a second.",
            count(query.n),
            letters(query.n)
        ),
        _ => return html! {},
    };
    html! {
        p.notice.good role="status" data-notice=(query.notice) {
            (done)
            @if query.refused > 0 { " " (count(query.refused)) " could not be (already replayed, discarded, delivered or pruned)." }
        }
    }
}

fn filters(f: &Filter, batches: &[String]) -> Markup {
    let option = |value: &str, label: &str, current: &str| {
        html! { option value=(value) selected[current == value] { (label) } }
    };
    html! {
        form.filters method="get" action="/ui/dead-letters" {
            label { "Batch " input type="text" name="batch" list="batches" value=(f.batch) placeholder="any"; }
            datalist #batches { @for b in batches { option value=(b) {} } }
            label { "Error code " input type="text" name="error_code" value=(f.error_code) placeholder="any"; }
            label { "Delivery "
                select name="delivery" {
                    (option("", "any", &f.delivery))
                    @for word in ["pending", "stored", "delivered", "discarded"] { (option(word, word, &f.delivery)) }
                }
            }
            label { "Replayed "
                select name="replayed" {
                    (option("no", "no", &f.replayed))
                    (option("yes", "yes", &f.replayed))
                    (option("any", "any", &f.replayed))
                }
            }
            button type="submit" { "Filter" }
            a href="/ui/dead-letters" { "Clear" }
        }
    }
}

/// Buttons for the selected rows and for everything the filter matches.
fn bulk_bar(f: &Filter, counts: DeadLetterCounts) -> Markup {
    let all = counts.replayable.min(REPLAY_CAP as u64);
    let mut params = f.params();
    params.push(("op", "replay"));
    html! {
        div.bulk {
            span.muted { span data-selected-count { "0" } " selected" }
            button type="submit" name="op" value="replay" data-needs-selection { "Replay selected" }
            button.danger type="submit" name="op" value="discard" data-needs-selection { "Discard selected…" }
            @if all > 0 {
                a.button href=(href("/ui/dead-letters/confirm", &params)) data-replay-all=(all) {
                    "Replay all " (count(all)) " matching…"
                }
            }
        }
    }
}

fn table(page: &Page<DeadLetterView>, viewer: &Viewer) -> Markup {
    html! {
        table.list {
            thead { tr {
                @if viewer.can_write { th { input type="checkbox" data-select-all aria-label="select every letter on this page"; } }
                th { "Created" } th { "Action" } th { "Error code" } th { "Message" } th { "Delivery" }
                th.num { "Attempts" } th { "Replayed" }
            } }
            tbody {
                @for v in &page.items {
                    @let l = &v.letter;
                    tr data-error-id=(l.error_id) {
                        @if viewer.can_write {
                            td { input type="checkbox" name="error_id" value=(l.error_id) aria-label="select"; }
                        }
                        td { (when(&unix_to_rfc3339(l.created_at))) }
                        td { a href=(format!("{}#dead-letter", action_href(&l.batch, &l.key))) { (l.batch) "/" (l.key) } }
                        td { code { (l.error_code) } }
                        td title=(l.message) { (shorten(&l.message)) }
                        td { span class=(format!("delivery delivery-{}", v.delivery)) { (v.delivery) } }
                        td.num { (v.attempts) }
                        td { (if v.replayed { "yes" } else { "no" }) }
                    }
                }
            }
        }
    }
}

/// A message cut to `MESSAGE_CHARS` characters.
fn shorten(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_shows_letters_not_replayed() {
        let f = Filter::default();
        assert_eq!(f.journal().replayed, Some(false));
        let any = Filter {
            replayed: "any".into(),
            error_code: " TIMEOUT ".into(),
            ..Filter::default()
        };
        assert_eq!(any.journal().replayed, None);
        assert_eq!(any.journal().error_code.as_deref(), Some("TIMEOUT"));
        assert_eq!(any.describe(), "error_code = TIMEOUT, replayed or not");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MESSAGE_CHARS + 5);
        assert_eq!(shorten(&long).chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(shorten("short"), "short");
    }
}
