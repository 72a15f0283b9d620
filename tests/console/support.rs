//! Helpers of the console tests: a daemon with its admin server (and the admin token) on
//! loopback, plain HTTP requests that do not follow redirects, and the JSON views the
//! tests check the pages against.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Env var holding the admin token in test configs.
pub const TOKEN_ENV: &str = "AW_TEST_ADMIN_TOKEN";
/// The admin token of the tests.
pub const TOKEN: &str = "console-token-7c2e91";

/// `[admin]` on a free loopback port; `token`: with `token_env`; `extra`: more keys.
pub fn admin(token: bool, extra: &str) -> String {
    let mut text = "listen = \"127.0.0.1:0\"".to_owned();
    if token {
        text.push_str(&format!("\ntoken_env = \"{TOKEN_ENV}\""));
    }
    if !extra.is_empty() {
        text.push('\n');
        text.push_str(extra);
    }
    text
}

/// A running daemon and its console's address.
pub struct Running {
    /// The daemon (killed on drop).
    pub daemon: Daemon,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its config file.
    pub config: PathBuf,
}

/// Starts `run` with the admin token in its environment, on `overrides` and `batches`.
pub fn start(h: &Harness, overrides: &[(&str, &str)], batches: &str) -> Running {
    let config = h.write_config(overrides, batches);
    let daemon = h.spawn_with(&["run"], &config, &[(TOKEN_ENV, TOKEN)]);
    let url = daemon.admin_url();
    Running { daemon, url, config }
}

/// A plain HTTP answer: status, headers that matter, body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A request that never follows a redirect and takes any status as an answer.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], form: Option<&str>) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let result = match form {
        Some(body) => agent.run(
            builder
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.to_owned())
                .expect("a request"),
        ),
        None => agent.run(builder.body(()).expect("a request")),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// GET with the admin token as a bearer.
pub fn get_page(url: &str) -> Answer {
    request("GET", url, &[("Authorization", &format!("Bearer {TOKEN}"))], None)
}

/// Every dead letter from the JSON API.
pub fn letters(url: &str) -> Vec<Value> {
    get_json(&format!("{url}/v1/dead-letters?limit=1000"))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The dead letter of `key` from the JSON API.
pub fn letter_of(url: &str, key: &str) -> Option<Value> {
    letters(url).into_iter().find(|l| l["letter"]["key"] == key)
}

/// An action from the JSON API.
pub fn action_json(url: &str, batch: &str, key: &str) -> Value {
    get_json(&format!("{url}/v1/actions/{batch}/{key}"))
}

/// Waits until every action of the daemon has an outcome (the JSON API says so).
pub fn wait_all_resolved(url: &str, expected: usize) {
    wait_until(Duration::from_secs(30), "every action resolved", || {
        let page = get_json(&format!("{url}/v1/actions?limit=1000"));
        let items = page["items"].as_array().cloned().unwrap_or_default();
        items.len() == expected && items.iter().all(|a| !a["outcome"].is_null())
    });
}

/// `n` actions `PREFIX1..PREFIXn` with the same `sim` directive.
pub fn actions(prefix: &str, n: usize, sim: &str) -> String {
    (1..=n).map(|i| action(&format!("{prefix}{i}"), sim)).collect()
}

/// A permanent failure with `code` on the first attempt only (a replay completes).
pub fn fails_once(code: &str) -> String {
    format!("outcome = \"FAILED\", code = \"{code}\", times = 1")
}
