//! `/ui/actions`: journaled actions filtered by batch, state and key prefix, a page at a
//! time in batch and key order; each row opens the action's page.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, action_href, count, href, state_label, when, Section};
use crate::console::auth::Need;
use crate::console::{html as respond, Console, Viewer};
use crate::journal::{ActionFilter, ActionSummary, Cursor, Page, StateWord};

/// Actions per page.
const PAGE_SIZE: usize = 50;

/// The list's query: its filter and the cursor of the page.
#[derive(Debug, Default, Deserialize)]
pub struct Query {
    #[serde(default)]
    batch: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    key_prefix: String,
    #[serde(default)]
    after: String,
}

impl Query {
    fn params<'a>(&'a self, after: &'a str) -> [(&'a str, &'a str); 4] {
        [
            ("batch", self.batch.trim()),
            ("state", self.state.as_str()),
            ("key_prefix", self.key_prefix.as_str()),
            ("after", after),
        ]
    }
}

/// `GET /ui/actions`.
pub async fn list(console: web::Data<Console>, req: HttpRequest, query: web::Query<Query>) -> HttpResponse {
    let viewer = match console.admit(&req, Need::Read) {
        Ok(viewer) => viewer,
        Err(refused) => return *refused,
    };
    let query = query.into_inner();
    let state = StateWord::parse(&query.state);
    let filter = ActionFilter {
        batch: Some(query.batch.trim().to_owned()).filter(|b| !b.is_empty()),
        state,
        key_prefix: Some(query.key_prefix.clone()).filter(|k| !k.is_empty()),
    };
    // A cursor this list did not hand out starts from the first page.
    let after = Cursor::decode(&query.after, 2);
    let page = match console
        .read(move |r| r.actions(&filter, PAGE_SIZE, after.as_ref()))
        .await
    {
        Ok(page) => page,
        Err(refused) => return refused,
    };
    respond(StatusCode::OK, render(&query, &page, &console.batch_names(), &viewer))
}

fn render(query: &Query, page: &Page<ActionSummary>, batches: &[String], viewer: &Viewer) -> Markup {
    let body = html! {
        h1 { "Actions" }
        form.filters method="get" action="/ui/actions" {
            label { "Batch " input type="text" name="batch" list="batches" value=(query.batch) placeholder="any"; }
            datalist #batches { @for b in batches { option value=(b) {} } }
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for word in StateWord::ALL {
                        option value=(word.as_str()) selected[query.state == word.as_str()] { (state_label(word.as_str())) }
                    }
                }
            }
            label { "Key prefix " input type="text" name="key_prefix" value=(query.key_prefix); }
            button type="submit" { "Filter" }
            a href="/ui/actions" { "Clear" }
        }
        @if page.items.is_empty() {
            p.notice { "No action matches." }
        } @else {
            div.scroll {
                table.list {
                    thead { tr {
                        th { "Batch" } th { "Key" } th { "State" } th.num { "Attempt" } th.num { "Retries" }
                        th { "CXone id" } th { "Last change" }
                    } }
                    tbody {
                        @for a in &page.items {
                            tr {
                                td { (a.batch) }
                                td { a href=(action_href(&a.batch, &a.key)) { (a.key) } }
                                td { span class=(format!("state state-{}", a.state)) { (state_label(&a.state)) } }
                                td.num { (count(u64::from(a.attempt))) }
                                td.num { (count(u64::from(a.retry_count))) }
                                td.mono { (a.action_id.as_deref().unwrap_or("")) }
                                td { (when(&a.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
        (pager(query, page))
    };
    layout::page("Actions", Section::Actions, Some(viewer), body)
}

/// First-page and next-page links that keep the filter.
fn pager(query: &Query, page: &Page<ActionSummary>) -> Markup {
    html! {
        nav.pager {
            @if !query.after.is_empty() { a href=(href("/ui/actions", &query.params(""))) { "← First page" } }
            @if let Some(next) = &page.next { a href=(href("/ui/actions", &query.params(next))) { "Next page →" } }
        }
    }
}
