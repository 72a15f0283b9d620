//! The operator console over plain HTTP: who may read and change what, escaping, the
//! security headers, and the one overview read per second shared by every watcher.

mod common;
#[path = "console/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::*;
use support::*;

/// A bearer header with the admin token.
fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Starts a daemon with one dead letter (`d1`) and returns it with the letter's id.
fn with_a_dead_letter(h: &Harness, admin_table: &str) -> (Running, String) {
    let console = start(
        h,
        &[("admin", admin_table)],
        &(batch("b", "") + &action("d1", &fails_once("INVALID_CONTACT"))),
    );
    wait_until(Duration::from_secs(30), "the dead letter", || {
        letter_of(&console.url, "d1").is_some()
    });
    let id = letter_of(&console.url, "d1").unwrap()["letter"]["error_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (console, id)
}

#[test]
fn a_change_without_same_origin_headers_is_refused_with_403() {
    let h = Harness::new(&["--profile", "clean"]);
    let (console, id) = with_a_dead_letter(&h, &admin(true, ""));
    let url = format!("{}/ui/dead-letters/replay", console.url);
    let form = format!("error_id={id}");
    let auth = bearer();
    let own_origin = console.url.clone();
    for (what, headers) in [
        ("no origin at all", vec![("Authorization", auth.as_str())]),
        (
            "another site's origin",
            vec![("Authorization", auth.as_str()), ("Origin", "http://evil.example")],
        ),
        (
            "a cross-site fetch with our origin",
            vec![
                ("Authorization", auth.as_str()),
                ("Origin", own_origin.as_str()),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        ),
    ] {
        let answer = request("POST", &url, &headers, Some(&form));
        assert_eq!(answer.status, 403, "{what}: {}", answer.body);
    }
    let login = request(
        "POST",
        &format!("{}/ui/login", console.url),
        &[],
        Some(&format!("token={TOKEN}")),
    );
    assert_eq!(login.status, 403, "a login form posted from elsewhere");
    assert_eq!(
        letter_of(&console.url, "d1").unwrap()["replayed"],
        false,
        "nothing was replayed"
    );

    let same = request(
        "POST",
        &url,
        &[("Authorization", &auth), ("Sec-Fetch-Site", "same-origin")],
        Some(&form),
    );
    assert_eq!(same.status, 303, "{}", same.body);
    wait_until(Duration::from_secs(10), "the replay", || {
        letter_of(&console.url, "d1").unwrap()["replayed"] == true
    });
}

#[test]
fn pages_without_the_token_redirect_to_the_login_form_or_answer_401() {
    let h = Harness::new(&["--profile", "clean"]);
    let console = start(&h, &[("admin", &admin(true, ""))], &(batch("b", "") + &action("k", "")));
    let ui = |path: &str| format!("{}{path}", console.url);

    let page = request("GET", &ui("/ui/actions?batch=b"), &[], None);
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location"),
        Some("/ui/login?next=%2Fui%2Factions%3Fbatch%3Db")
    );
    let wrong = request("GET", &ui("/ui/actions"), &[("Authorization", "Bearer nope")], None);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        request("GET", &ui("/ui/events"), &[("Authorization", "Bearer nope")], None).status,
        401
    );
    assert_eq!(get_page(&ui("/ui/actions")).status, 200, "the bearer token opens pages");

    let origin = [("Origin", console.url.as_str())];
    let refused = request(
        "POST",
        &ui("/ui/login"),
        &origin,
        Some("token=guess&next=%2Fui%2Factions"),
    );
    assert_eq!(refused.status, 401);
    assert!(refused.header("set-cookie").is_none());
    assert!(refused.body.contains("not the admin token"), "{}", refused.body);

    let login = request(
        "POST",
        &ui("/ui/login"),
        &origin,
        Some(&format!("token={TOKEN}&next=%2Fui%2Factions")),
    );
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), Some("/ui/actions"));
    let cookie = login.header("set-cookie").expect("a session cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains(TOKEN), "the cookie is a session id, not the token");
    let session = cookie.split(';').next().unwrap().to_owned();
    let session_header = [("Cookie", session.as_str())];
    let with_cookie = request("GET", &ui("/ui/actions"), &session_header, None);
    assert_eq!(with_cookie.status, 200);
    assert!(with_cookie.body.contains("Log out"));

    let logout = request(
        "POST",
        &ui("/ui/logout"),
        &[("Cookie", session.as_str()), ("Origin", console.url.as_str())],
        None,
    );
    assert_eq!(logout.status, 303);
    assert_eq!(
        request("GET", &ui("/ui/actions"), &session_header, None).status,
        303,
        "the session ended"
    );

    let hostile = request("GET", &ui("/ui/login?next=https%3A%2F%2Fevil.example%2F"), &[], None);
    assert!(hostile.body.contains(r#"name="next" value="/ui/""#), "{}", hostile.body);
}

#[test]
fn user_text_renders_as_text_on_every_page() {
    let h = Harness::new(&["--profile", "clean"]);
    let hostile_key = "k<script>alert(1)</script>";
    let batches = batch("b", "")
        + &format!(
            "  [[batch.action]]\n  key = \"{hostile_key}\"\n  actionType = \"CUSTOM_ACTION\"\n  payload = {{ note = \"<script>alert(2)</script>\", sim = {{ outcome = \"FAILED\", code = \"INVALID_CONTACT\", message = \"<script>alert(3)</script>\" }} }}\n\n"
        );
    let console = start(&h, &[("admin", &admin(true, ""))], &batches);
    wait_until(Duration::from_secs(30), "the dead letter", || {
        letters(&console.url).len() == 1
    });
    let key: String = url::form_urlencoded::byte_serialize(hostile_key.as_bytes()).collect();
    for path in [
        "/ui/".to_owned(),
        "/ui/actions?batch=b".to_owned(),
        format!("/ui/action?batch=b&key={key}"),
        "/ui/dead-letters".to_owned(),
    ] {
        let page = get_page(&format!("{}{path}", console.url));
        assert_eq!(page.status, 200, "{path}");
        assert!(
            !page.body.contains("<script>alert"),
            "{path} lets markup through:\n{}",
            page.body
        );
        assert_eq!(page.body.matches("<script").count(), 1, "{path}: only the script file");
    }
    let action = get_page(&format!("{}/ui/action?batch=b&key={key}", console.url)).body;
    for text in [
        "k&lt;script&gt;alert(1)",
        "&lt;script&gt;alert(2)",
        "&lt;script&gt;alert(3)",
    ] {
        assert!(action.contains(text), "{text} missing from the action page:\n{action}");
    }
    let letters_page = get_page(&format!("{}/ui/dead-letters", console.url)).body;
    assert!(letters_page.contains("&lt;script&gt;alert(3)"), "{letters_page}");
}

#[test]
fn console_responses_carry_a_content_security_policy() {
    let h = Harness::new(&["--profile", "clean"]);
    let console = start(&h, &[("admin", &admin(true, ""))], &(batch("b", "") + &action("k", "")));
    for (path, authorized) in [
        ("/ui/login", false),
        ("/ui/", true),
        ("/ui/dead-letters", true),
        ("/ui/assets/console.js", false),
    ] {
        let url = format!("{}{path}", console.url);
        let answer = if authorized {
            get_page(&url)
        } else {
            request("GET", &url, &[], None)
        };
        assert_eq!(answer.status, 200, "{path}");
        let csp = answer.header("content-security-policy").unwrap_or_default();
        for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {directive} missing from {csp:?}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    let script = request("GET", &format!("{}/ui/assets/console.js", console.url), &[], None);
    assert!(script
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/javascript"));
    let style = request("GET", &format!("{}/ui/assets/console.css", console.url), &[], None);
    assert!(style.header("content-type").unwrap_or_default().starts_with("text/css"));
    let root = request("GET", &format!("{}/", console.url), &[], None);
    assert_eq!((root.status, root.header("location")), (303, Some("/ui/")));
}

#[test]
fn read_only_on_loopback_reads_without_the_token_and_still_refuses_changes() {
    let h = Harness::new(&["--profile", "clean"]);
    let (open, id) = with_a_dead_letter(&h, &admin(true, "ui_read_only = true"));
    let page = request("GET", &format!("{}/ui/dead-letters", open.url), &[], None);
    assert_eq!(page.status, 200, "reading needs no token");
    assert!(page.body.contains(&id), "the letter is listed");
    assert!(
        !page.body.contains(r#"name="error_id""#),
        "no selection without the token"
    );
    assert!(page.body.contains("Log in"), "{}", page.body);
    let change = request(
        "POST",
        &format!("{}/ui/dead-letters/replay", open.url),
        &[("Origin", open.url.as_str())],
        Some(&format!("error_id={id}")),
    );
    assert_eq!(change.status, 401, "changing still needs the token");
    drop(open);

    let h = Harness::new(&["--profile", "clean"]);
    let (tokenless, id) = with_a_dead_letter(&h, &admin(false, ""));
    let page = request("GET", &format!("{}/ui/", tokenless.url), &[], None);
    assert_eq!(page.status, 200, "without a token the loopback console is read-only");
    assert!(page.body.contains("read-only"));
    let change = request(
        "POST",
        &format!("{}/ui/dead-letters/replay", tokenless.url),
        &[("Origin", tokenless.url.as_str())],
        Some(&format!("error_id={id}")),
    );
    assert_eq!(change.status, 403, "{}", change.body);
    let login = request("GET", &format!("{}/ui/login", tokenless.url), &[], None);
    assert_eq!(login.status, 303, "nothing to log in with");
    drop(tokenless);

    let h = Harness::new(&["--profile", "clean"]);
    let exposed = start(
        &h,
        &[("admin", "listen = \"0.0.0.0:0\"")],
        &(batch("b", "") + &action("k", "")),
    );
    let page = request("GET", &format!("{}/ui/", exposed.url), &[], None);
    assert_eq!(
        page.status, 403,
        "without a token the console is not served beyond loopback"
    );
    assert!(page.body.contains("loopback"), "{}", page.body);
}

#[test]
fn ui_read_only_is_refused_on_an_address_other_hosts_reach() {
    let h = Harness::new(&["--profile", "clean"]);
    let config = h.write_config(
        &[("admin", "listen = \"0.0.0.0:0\"\nui_read_only = true")],
        &(batch("b", "") + &action("k", "")),
    );
    let output = run_to_end(&mut daemon_cmd(&["check"], &config), Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("ui_read_only"),
        "{}",
        show(&output)
    );
}

/// Reads `events` overview events from `/ui/events`; returns their read numbers.
fn watch(url: &str, events: usize) -> Vec<u64> {
    let response = ureq::get(&format!("{url}/ui/events"))
        .header("Authorization", &bearer())
        .call()
        .expect("the event stream");
    let mut reads = Vec::new();
    let mut lines = BufReader::new(response.into_body().into_reader()).lines();
    while reads.len() < events {
        let line = lines.next().expect("the stream goes on").expect("a line");
        if let Some(data) = line.strip_prefix("data: ") {
            let view: serde_json::Value = serde_json::from_str(data).expect("JSON data");
            reads.push(view["read"].as_u64().expect("a read number"));
        }
    }
    reads
}

#[test]
fn overview_events_share_one_journal_read_per_second_among_watchers() {
    /// Browsers watching at once.
    const WATCHERS: usize = 5;
    /// Events each one reads.
    const EVENTS: usize = 4;
    let h = Harness::new(&["--profile", "clean"]);
    let console = start(&h, &[("admin", &admin(true, ""))], &(batch("b", "") + &action("k", "")));
    let started = Instant::now();
    let streams: Vec<_> = (0..WATCHERS)
        .map(|_| {
            let url = console.url.clone();
            std::thread::spawn(move || watch(&url, EVENTS))
        })
        .collect();
    let seen: Vec<Vec<u64>> = streams.into_iter().map(|t| t.join().expect("a watcher")).collect();
    let elapsed = started.elapsed().as_secs_f64();
    for reads in &seen {
        assert!(
            reads.windows(2).all(|w| w[0] < w[1]),
            "each event is a newer read: {reads:?}"
        );
    }
    let all: BTreeSet<u64> = seen.iter().flatten().copied().collect();
    let span = all.last().unwrap() - all.first().unwrap() + 1;
    assert!(
        span as f64 <= elapsed.ceil() + 1.0,
        "{span} journal reads in {elapsed:.1}s for {WATCHERS} watchers: {seen:?}"
    );
    let shared = seen[1..]
        .iter()
        .filter(|r| r.iter().filter(|n| seen[0].contains(n)).count() >= 2)
        .count();
    assert!(shared >= 1, "watchers see the same reads: {seen:?}");
}
