//! The operator console in a real browser: headless Chromium over WebDriver against the
//! daemon and the simulator on loopback. Without chromedriver each test prints one
//! "skipped" line and passes, except under CI (`ACTIONWARDEN_CI=1`), where it fails.

#[path = "console/browser.rs"]
mod browser;
mod common;
#[path = "console/support.rs"]
mod support;

use std::time::Duration;

use browser::{browser_or_skip, Browser};
use common::*;
use serde_json::json;
use support::*;

/// Logs in through the form and lands on the overview.
fn log_in(b: &Browser, url: &str) {
    b.goto(&format!("{url}/ui/login"));
    b.fill("#token", TOKEN);
    b.click(".login button[type=submit]");
    b.wait_text("h1", "the overview after login", |t| t == "Overview");
}

/// A number as the console prints it (`1,234`).
fn number(text: &str) -> u64 {
    text.trim().replace(',', "").parse().unwrap_or(u64::MAX)
}

#[test]
fn login_takes_the_admin_token_and_refuses_a_wrong_one() {
    let Some(b) = browser_or_skip() else { return };
    let h = Harness::new(&["--profile", "clean"]);
    let console = start(
        &h,
        &[("admin", &admin(true, ""))],
        &(batch("b", "") + &action("k1", "")),
    );

    b.goto(&format!("{}/ui/dead-letters", console.url));
    assert!(
        b.url().contains("/ui/login"),
        "a page without the token asks for it: {}",
        b.url()
    );
    b.fill("#token", "not-the-token");
    b.click(".login button[type=submit]");
    b.wait_text("[role=alert]", "the refusal", |t| t.contains("not the admin token"));
    assert!(b.url().ends_with("/ui/login"), "still on the login form: {}", b.url());
    assert!(
        b.text("nav a[aria-current=page]").is_none(),
        "no console page was shown"
    );

    b.fill("#token", TOKEN);
    b.click(".login button[type=submit]");
    b.wait_text("h1", "the page asked for", |t| t == "Dead letters");
    assert!(b.text(".who button").is_some_and(|t| t == "Log out"));
    // The cookie is HttpOnly: no script can read the session.
    assert_eq!(b.script("return document.cookie;"), json!(""));
}

#[test]
fn the_overview_shows_each_batch_and_its_counts_move_without_a_reload() {
    let Some(b) = browser_or_skip() else { return };
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("priority-updates", "max_in_flight = 2")
        + &actions("p", 60, "duration = \"250ms\"")
        + &batch("crm-sync", "")
        + &actions("ok", 3, "")
        + &actions("retried", 2, "outcome = \"FAILED\", code = \"TIMEOUT\", times = 1")
        + &actions("bad", 2, &fails_once("INVALID_CONTACT"));
    let console = start(&h, &[("admin", &admin(true, ""))], &batches);
    log_in(&b, &console.url);

    assert_eq!(b.count("tbody tr[data-batch=priority-updates]"), 1);
    assert_eq!(b.count("tbody tr[data-batch=crm-sync]"), 1);
    b.script("window.awMarker = 7; return true;");
    let completed = "tbody tr[data-batch=priority-updates] [data-field=state-completed]";
    let first = number(&b.text(completed).expect("a completed count"));
    assert!(first < 60, "the batch is still running when the page opens");
    b.wait_text(completed, "the completed count to move", |t| number(t) > first);
    b.wait_text("[data-live-state]", "the live marker", |t| t == "live");
    b.wait_text(
        "tbody tr[data-batch=crm-sync] [data-field=state-dead_lettered]",
        "the other batch's dead letters",
        |t| number(t) == 2,
    );
    b.resize(1440, 600);
    b.screenshot("console-overview.png");
    b.wait_text(completed, "the batch to finish", |t| number(t) == 60);
    assert_eq!(
        b.script("return window.awMarker;"),
        json!(7),
        "the numbers changed in place: the page was never reloaded"
    );
    let crm = |field: &str| {
        number(
            &b.text(&format!("tbody tr[data-batch=crm-sync] [data-field={field}]"))
                .unwrap(),
        )
    };
    b.wait_text(
        "tbody tr[data-batch=crm-sync] [data-field=state-completed]",
        "crm-sync done",
        |t| number(t) == 5,
    );
    assert_eq!(crm("retries"), 2);
    assert_eq!(
        b.text("tbody tr[data-batch=priority-updates] [data-field=percent]")
            .as_deref(),
        Some("100.0%")
    );
}

#[test]
fn a_retried_action_shows_its_timeline_in_order() {
    let Some(b) = browser_or_skip() else { return };
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("retried", "outcome = \"FAILED\", code = \"TIMEOUT\", times = 1");
    let console = start(&h, &[("admin", &admin(true, ""))], &batches);
    wait_all_resolved(&console.url, 1);
    let journaled: Vec<String> = action_json(&console.url, "b", "retried")["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|e| e["state"].as_str().unwrap_or_default().to_owned())
        .collect();

    log_in(&b, &console.url);
    b.goto(&format!("{}/ui/actions?batch=b", console.url));
    b.click("a[href*='key=retried']");
    b.wait_text("h1", "the action page", |t| t.starts_with("retried"));
    let shown: Vec<String> = (1..=b.count("ol.timeline li"))
        .map(|i| {
            b.attr(&format!("ol.timeline li:nth-child({i})"), "data-state")
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(shown, journaled, "the timeline is the journaled history, oldest first");
    let backoff = shown
        .iter()
        .position(|s| s == "backoff")
        .expect("the retry is on the timeline");
    assert_eq!(shown.last().map(String::as_str), Some("completed"));
    assert!(shown[..backoff].contains(&"submitting".to_owned()), "{shown:?}");
    assert!(
        shown[backoff..].contains(&"submitting".to_owned()),
        "resubmitted after the backoff: {shown:?}"
    );
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let times: Vec<time::OffsetDateTime> = (1..=shown.len())
        .map(|i| {
            let text = b.attr(&format!("ol.timeline li:nth-child({i}) time"), "datetime");
            time::OffsetDateTime::parse(&text.unwrap_or_default(), rfc3339).expect("an RFC 3339 time")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "times ascend: {times:?}");
    assert!(
        b.text("ol.timeline li[data-state=backoff]")
            .is_some_and(|t| t.contains("TIMEOUT")),
        "the backoff names its cause"
    );
    assert!(b.text("#audit pre").is_some_and(|t| t.contains("ACTION_COMPLETED")));
    b.resize(1440, 1150);
    b.screenshot("console-timeline.png");
}

#[test]
fn replaying_a_dead_letter_from_its_page_takes_it_off_the_list() {
    let Some(b) = browser_or_skip() else { return };
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "") + &action("d1", &fails_once("INVALID_CONTACT"));
    let console = start(&h, &[("admin", &admin(true, ""))], &batches);
    wait_until(Duration::from_secs(30), "the dead letter", || {
        letter_of(&console.url, "d1").is_some()
    });
    let error_id = letter_of(&console.url, "d1").unwrap()["letter"]["error_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = format!("tr[data-error-id='{error_id}']");

    log_in(&b, &console.url);
    b.goto(&format!("{}/ui/dead-letters", console.url));
    assert_eq!(b.count(&row), 1, "listed before the replay");
    b.click(&format!("{row} a"));
    b.wait_text("#dead-letter h2", "the letter on its action's page", |t| {
        t == "Dead letter"
    });
    b.click("button[data-action=replay]");
    b.wait_text("[data-notice]", "the replay notice", |t| {
        t.contains("Replay requested for 1 dead letter")
    });
    assert_eq!(b.count(&row), 0, "a replayed letter leaves the list");
    wait_until(Duration::from_secs(20), "the replayed action to complete", || {
        action_json(&console.url, "b", "d1")["outcome"] == "completed"
    });
    assert_eq!(letter_of(&console.url, "d1").unwrap()["replayed"], true);
}

#[test]
fn filtering_by_error_code_and_replaying_every_selected_letter_confirms_the_count() {
    let Some(b) = browser_or_skip() else { return };
    let h = Harness::new(&["--profile", "clean"]);
    let batches = batch("b", "")
        + &actions("invalid", 3, &fails_once("INVALID_CONTACT"))
        + &actions("other", 2, &fails_once("UNKNOWN_FIELD"));
    let console = start(&h, &[("admin", &admin(true, ""))], &batches);
    wait_until(Duration::from_secs(30), "five dead letters", || {
        letters(&console.url).len() == 5
    });

    log_in(&b, &console.url);
    b.goto(&format!("{}/ui/dead-letters", console.url));
    b.fill("form.filters input[name=error_code]", "INVALID_CONTACT");
    b.click("form.filters button[type=submit]");
    b.wait_text("[data-matching]", "the filtered list", |t| t.starts_with("3 match"));
    assert_eq!(b.count("tbody tr"), 3);
    assert_eq!(
        b.attr("[data-replay-all]", "data-replay-all").as_deref(),
        Some("3"),
        "the bulk button says how many"
    );
    b.click("[data-select-all]");
    let button = b.wait_text(
        "button[value=replay][data-needs-selection]",
        "the button to count",
        |t| t == "Replay 3 selected",
    );
    assert_eq!(button, "Replay 3 selected");
    b.click("button[value=replay][data-needs-selection]");
    b.wait_text("[data-confirm-count]", "the confirmation with the count", |t| t == "3");
    b.click("button[data-confirm=replay]");
    b.wait_text("[data-notice]", "the notice", |t| {
        t.contains("Replay requested for 3 dead letters")
    });
    wait_until(Duration::from_secs(20), "the three replays to complete", || {
        (1..=3).all(|i| action_json(&console.url, "b", &format!("invalid{i}"))["outcome"] == "completed")
    });
    for i in 1..=2 {
        let other = letter_of(&console.url, &format!("other{i}")).unwrap();
        assert_eq!(other["replayed"], false, "outside the filter: {other}");
    }
}

#[test]
fn a_discarded_letter_is_marked_and_never_delivered_again() {
    let Some(b) = browser_or_skip() else { return };
    let h = Harness::new(&["--profile", "clean"]);
    h.sim.post("/sim/control", json!({"webhook_down": true}));
    let dead_letter = format!(
        "webhook_url = \"{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\nredelivery_max_delay = \"50ms\"",
        h.sim.url
    );
    let batches = batch("b", "")
        + &action("gone", &fails_once("INVALID_CONTACT"))
        + &action("kept", &fails_once("INVALID_CONTACT"));
    let console = start(
        &h,
        &[("admin", &admin(true, "")), ("dead_letter", &dead_letter)],
        &batches,
    );
    wait_until(Duration::from_secs(30), "two letters in redelivery", || {
        letters(&console.url).iter().all(|l| l["attempts"].as_u64() >= Some(2)) && letters(&console.url).len() == 2
    });
    let gone = letter_of(&console.url, "gone").unwrap()["letter"]["error_id"]
        .as_str()
        .unwrap()
        .to_owned();

    log_in(&b, &console.url);
    b.goto(&format!("{}/ui/dead-letters", console.url));
    b.click(&format!("tr[data-error-id='{gone}'] input[name=error_id]"));
    b.click("button[value=discard][data-needs-selection]");
    b.wait_text("[data-confirm-count]", "the discard confirmation", |t| t == "1");
    b.click("button[data-confirm=discard]");
    b.wait_text("[data-notice]", "the notice", |t| {
        t.contains("Discard requested for 1 dead letter")
    });
    let marked = format!("tr[data-error-id='{gone}'] .delivery");
    let discarded_list = format!("{}/ui/dead-letters?replayed=any&delivery=discarded", console.url);
    wait_until(Duration::from_secs(10), "the letter marked discarded", || {
        b.goto(&discarded_list);
        b.text(&marked).as_deref() == Some("discarded")
    });

    // The kept letter's delivery attempts are the clock: while they go on, the
    // discarded one's stay where they were.
    let attempts = |key: &str| letter_of(&console.url, key).unwrap()["attempts"].as_u64().unwrap();
    // One attempt of the kept letter first: a delivery of the other one that was on the
    // wire when the discard came has been answered by then.
    let kept_before = attempts("kept");
    wait_until(Duration::from_secs(10), "an attempt of the kept letter", || {
        attempts("kept") > kept_before
    });
    let (gone_attempts, kept_attempts) = (attempts("gone"), attempts("kept"));
    wait_until(
        Duration::from_secs(10),
        "three more attempts of the kept letter",
        || attempts("kept") >= kept_attempts + 3,
    );
    assert_eq!(attempts("gone"), gone_attempts, "no delivery attempt after the discard");
    h.sim.post("/sim/control", json!({"webhook_down": false}));
    wait_until(Duration::from_secs(10), "the kept letter delivered", || {
        letter_of(&console.url, "kept").unwrap()["delivered"] == true
    });
    let delivered: Vec<String> = h
        .sim
        .webhooks()
        .iter()
        .map(|w| w["body"]["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        !delivered.contains(&"gone".to_owned()),
        "the discarded letter never reached the webhook: {delivered:?}"
    );
    wait_until(Duration::from_secs(10), "the discard audited", || {
        h.records("DEAD_LETTER_DISCARDED", "gone").len() == 1
    });
    let listed = run_to_end(
        &mut daemon_cmd(&["dlq", "list", "--json"], &console.config),
        Duration::from_secs(20),
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("dlq list JSON");
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["letter"]["key"] == "gone")
        .cloned()
        .unwrap();
    assert_eq!(row["delivery"], "discarded", "{row}");
}
