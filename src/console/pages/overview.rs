//! `/ui/`: every batch's progress and counts by state, the rate of outcomes over the last
//! minute, what is in flight, retries and undelivered dead letters. The script keeps the
//! numbers live from `/ui/events`; without it the page shows the numbers of its load.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

use super::layout::{self, count, href, state_label, when, Section};
use crate::console::auth::Need;
use crate::console::overview::{BatchLine, OverviewView};
use crate::console::{error_page, html as respond, Console, Viewer};
use crate::journal::view::InstanceView;
use crate::journal::StateWord;

/// `GET /ui/`.
pub async fn page(console: web::Data<Console>, req: HttpRequest) -> HttpResponse {
    let viewer = match console.admit(&req, Need::Read) {
        Ok(viewer) => viewer,
        Err(refused) => return *refused,
    };
    let hub = console.hub.clone();
    match web::block(move || hub.current()).await {
        Ok(Ok(view)) => respond(StatusCode::OK, render(&view, &viewer, console.unsent_word())),
        Ok(Err(e)) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the journal cannot be read: {e}"),
        ),
        Err(e) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The overview page; `unsent` is the delivery word of a letter not delivered yet.
pub fn render(view: &OverviewView, viewer: &Viewer, unsent: &str) -> Markup {
    let t = &view.totals;
    let body = html! {
        div.title-row {
            h1 { "Overview" }
            p.muted data-live {
                "Read " span data-updated { (when(&view.at)) }
                " · " span data-live-state { "static" }
            }
        }
        div.cards {
            (card("Actions/s (last minute)", "per_second", &format!("{:.1}", t.per_second)))
            (card("In flight", "in_flight", &count(t.in_flight)))
            (card("Retries", "retries", &count(t.retries)))
            (card("Undelivered dead letters", "undelivered", &count(t.undelivered)))
            (card("Finished", "finished", &format!("{} of {}", count(t.finished), count(t.total))))
        }
        @if view.batches.is_empty() {
            p.notice { "The journal holds no actions yet." }
        } @else {
            div.scroll { (table(view, unsent)) }
        }
        @if !view.instances.is_empty() {
            h2 { "Instances" }
            div.scroll { (instances(&view.instances)) }
        }
    };
    layout::page("Overview", Section::Overview, Some(viewer), body)
}

fn card(label: &str, field: &str, value: &str) -> Markup {
    html! {
        div.card data-total=(field) {
            div.value data-field=(field) { (value) }
            div.label { (label) }
        }
    }
}

fn table(view: &OverviewView, unsent: &str) -> Markup {
    html! {
        table.counts {
            thead {
                tr {
                    th { "Batch" }
                    th { "Progress" }
                    @for word in StateWord::ALL { th.num { (state_label(word.as_str())) } }
                    th.num { "in flight" }
                    th.num { "retries" }
                    th.num { "actions/s" }
                    th.num { "undelivered" }
                }
            }
            tbody {
                @for line in &view.batches { (row(line, false, unsent)) }
            }
            tfoot { (row(&view.totals, true, unsent)) }
        }
    }
}

fn row(line: &BatchLine, totals: bool, unsent: &str) -> Markup {
    let batch = line.batch.as_str();
    html! {
        tr data-batch=(batch) {
            th scope="row" {
                @if totals { "All batches" } @else {
                    a href=(href("/ui/actions", &[("batch", batch)])) { (batch) }
                    @if !line.configured { " " span.badge title="journaled, not in the running configuration" { "not configured" } }
                }
            }
            td.progress {
                progress max=(line.total.max(1)) value=(line.finished) {}
                " " span data-field="percent" { (format!("{:.1}%", line.percent)) }
            }
            @for word in StateWord::ALL {
                @let link = href("/ui/actions", &[("batch", batch), ("state", word.as_str())]);
                td.num data-field=(format!("state-{}", word.as_str())) data-href=(link) {
                    (linked(&link, line.count(word)))
                }
            }
            td.num data-field="in_flight" { (count(line.in_flight)) }
            td.num data-field="retries" { (count(line.retries)) }
            td.num data-field="per_second" { (format!("{:.1}", line.per_second)) }
            @let letters = href("/ui/dead-letters", &[("batch", batch), ("replayed", "any"), ("delivery", unsent)]);
            td.num data-field="undelivered" data-href=(letters) { (linked(&letters, line.undelivered)) }
        }
    }
}

/// The daemons of the cluster: the script rebuilds the body from each live view.
fn instances(instances: &[InstanceView]) -> Markup {
    html! {
        table.counts data-instances {
            thead {
                tr {
                    th { "Instance" }
                    th { "Host" }
                    th.num { "pid" }
                    th { "Started" }
                    th { "Last heartbeat" }
                    th { "State" }
                    th.num { "Actions held" }
                }
            }
            tbody {
                @for i in instances {
                    tr {
                        th scope="row" { (i.name) }
                        td { (i.host) }
                        td.num { (i.pid) }
                        td { (when(&i.started)) }
                        td { (when(&i.last_heartbeat)) }
                        td { (instance_state(i.live)) }
                        td.num { (count(i.owned_actions)) }
                    }
                }
            }
        }
    }
}

/// How the state of an instance reads (the script uses the same words).
fn instance_state(live: bool) -> &'static str {
    if live {
        "live"
    } else {
        "dead (its actions are taken over after the lease)"
    }
}

/// A count that opens what it counts, when there is anything.
fn linked(link: &str, n: u64) -> Markup {
    if n == 0 {
        return html! { "0" };
    }
    html! { a href=(link) { (count(n)) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_batch_and_escapes_nothing_it_should_not() {
        let mut line = BatchLine {
            batch: "orders".into(),
            configured: true,
            total: 10,
            finished: 4,
            ..BatchLine::default()
        };
        line.states.insert("completed", 4);
        let view = OverviewView {
            read: 1,
            at: "2026-01-01T00:00:00Z".into(),
            batches: vec![line.clone()],
            totals: line,
            instances: vec![InstanceView {
                id: "i1".into(),
                name: "<b>node-a</b>".into(),
                host: "h".into(),
                pid: 7,
                started: "2026-01-01T00:00:00Z".into(),
                last_heartbeat: "2026-01-01T00:00:01Z".into(),
                owned_actions: 3,
                live: true,
            }],
        };
        let viewer = Viewer {
            can_write: false,
            signed_in: false,
            token_configured: false,
        };
        let text = render(&view, &viewer, "pending").into_string();
        assert!(text.contains(r#"<tr data-batch="orders">"#), "{text}");
        assert!(text.contains("/ui/actions?batch=orders&amp;state=completed"), "{text}");
        assert!(!text.contains("<script>"), "only the script file: {text}");
        assert!(
            text.contains("&lt;b&gt;node-a&lt;/b&gt;"),
            "instance names are escaped: {text}"
        );
    }
}
