//! The frame every console page shares (head, navigation, who is logged in) and the
//! small formatting rules: times in UTC with their age, counts with thousands
//! separators, links that keep a list's filter.

use actix_web::http::StatusCode;
use maud::{html, Markup, DOCTYPE};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::console::Viewer;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `/ui/`.
    Overview,
    /// `/ui/actions` and an action's page.
    Actions,
    /// `/ui/dead-letters` and its confirmations.
    DeadLetters,
    /// Login and error pages.
    None,
}

/// A whole page: `title` in the tab, `body` under the navigation.
pub fn page(title: &str, section: Section, viewer: Option<&Viewer>, body: Markup) -> Markup {
    let link = |href: &str, label: &str, this: Section| {
        html! { a href=(href) aria-current=[(section == this).then_some("page")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · actionwarden" }
                link rel="icon" type="image/svg+xml" href="/ui/assets/favicon.svg";
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "actionwarden" }
                    nav {
                        (link("/ui/", "Overview", Section::Overview))
                        (link("/ui/actions", "Actions", Section::Actions))
                        (link("/ui/dead-letters", "Dead letters", Section::DeadLetters))
                    }
                    @if let Some(viewer) = viewer { (who(viewer)) }
                }
                main { (body) }
            }
        }
    }
}

/// The corner that says who is looking: log out, log in, or read-only.
fn who(viewer: &Viewer) -> Markup {
    html! {
        div.who {
            @if viewer.signed_in {
                form method="post" action="/ui/logout" { button.link type="submit" { "Log out" } }
            } @else if viewer.can_write {
                span.muted { "token access" }
            } @else if viewer.token_configured {
                span.badge { "read-only" } " " a href="/ui/login" { "Log in" }
            } @else {
                span.badge title="no admin.token_env is configured" { "read-only" }
            }
        }
    }
}

/// A page saying why a request failed.
pub fn error(status: StatusCode, reason: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        title,
        Section::None,
        None,
        html! {
            h1 { (status.as_u16()) " " (title) }
            p.notice.bad { (reason) }
            p { a href="/ui/" { "Back to the overview" } }
        },
    )
}

/// An RFC 3339 time as `2026-11-27 23:03:17 UTC` with its age (`3 min ago`); the text
/// itself when it does not parse.
pub fn when(rfc3339: &str) -> Markup {
    stamp(rfc3339, false)
}

/// Like `when`, to the millisecond (`23:03:17.412 UTC`): a timeline's events are often
/// within the same second.
pub fn when_precise(rfc3339: &str) -> Markup {
    stamp(rfc3339, true)
}

fn stamp(rfc3339: &str, millis: bool) -> Markup {
    let Ok(at) = OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return html! { (rfc3339) };
    };
    let utc = at.to_offset(time::UtcOffset::UTC);
    let fraction = if millis {
        format!(".{:03}", utc.millisecond())
    } else {
        String::new()
    };
    let text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{fraction} UTC",
        utc.year(),
        utc.month() as u8,
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    );
    let secs = (OffsetDateTime::now_utc() - utc).whole_seconds();
    html! { time datetime=(rfc3339) { (text) } " " span.age { "(" (age(secs)) ")" } }
}

/// Unix seconds (as dead letters carry them) as RFC 3339.
pub fn unix_to_rfc3339(secs: f64) -> String {
    crate::journal::view::rfc3339_ms((secs * 1000.0) as i64)
}

/// Seconds ago in words: `just now`, `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn age(secs: i64) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    match secs {
        s if s < 1 => "just now".into(),
        s if s < MINUTE => format!("{s} s ago"),
        s if s < HOUR => format!("{} min ago", s / MINUTE),
        s if s < DAY => format!("{} h ago", s / HOUR),
        s => format!("{} d ago", s / DAY),
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `path?name=value&...` with the empty values left out, every part percent-encoded.
pub fn href(path: &str, params: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(name, value);
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// The page of one action.
pub fn action_href(batch: &str, key: &str) -> String {
    href("/ui/action", &[("batch", batch), ("key", key)])
}

/// A state word as people read it: `dead_lettered` -> `dead-lettered`,
/// `rolling_back` -> `rolling back`.
pub fn state_label(word: &str) -> String {
    match word {
        "dead_lettered" => "dead-lettered".into(),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_the_largest_whole_unit() {
        assert_eq!(age(0), "just now");
        assert_eq!(age(42), "42 s ago");
        assert_eq!(age(61), "1 min ago");
        assert_eq!(age(3 * 3600 + 5), "3 h ago");
        assert_eq!(age(2 * 86400), "2 d ago");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn links_encode_and_drop_empty_parameters() {
        assert_eq!(href("/ui/actions", &[("batch", ""), ("state", "")]), "/ui/actions");
        assert_eq!(action_href("b", "k/1 &x"), "/ui/action?batch=b&key=k%2F1+%26x");
    }

    #[test]
    fn times_show_utc_and_leave_unparsable_text_alone() {
        let text = when("2026-01-02T03:04:05.678+01:00").into_string();
        assert!(text.contains("2026-01-02 02:04:05 UTC"), "{text}");
        assert!(when_precise("2026-01-02T03:04:05.678Z")
            .into_string()
            .contains("03:04:05.678 UTC"));
        assert!(text.contains("ago"), "{text}");
        assert_eq!(when("<b>").into_string(), "&lt;b&gt;");
    }
}
