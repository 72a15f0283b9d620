//! Value checks that serde cannot express. Every problem is collected, so a user fixes
//! the whole file in one pass instead of one error per run.

use std::collections::HashMap;
use std::net::IpAddr;

use super::actions::{action_type_problem, ACTION_TYPE};
use super::location::{Document, Problem, Seg};
use super::secret::is_env_var_name;
use super::{Backend, Config, WebhookTarget};

/// Every value check that serde cannot express.
pub fn check(doc: &Document<'_>, config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |path: &[Seg<'_>], message: String| problems.push(doc.problem(path, message));
    check_secrets(config, &mut bad);
    check_cxone(config, &mut bad);
    check_timing(config, &mut bad);
    check_outputs(config, &mut bad);
    check_store(config, &mut bad);
    check_batches(config, &mut bad);
    problems
}

/// Literal secrets and `*_env` keys that do not name an environment variable.
fn check_secrets(config: &Config, bad: &mut impl FnMut(&[Seg<'_>], String)) {
    let k = Seg::Key;
    // Refused, pointing at the key's own line, never echoing the value.
    let refuse = "literal secrets are refused in the config file";
    if config.cxone.client_secret.is_some() {
        bad(
            &[k("cxone"), k("client_secret")],
            format!("{refuse}; set client_secret_env (an environment variable name) or client_secret_file"),
        );
    }
    if config.dead_letter.signing_secret.is_some() {
        bad(
            &[k("dead_letter"), k("signing_secret")],
            format!("{refuse}; set signing_secret_env (an environment variable name)"),
        );
    }
    if config.admin.token.is_some() {
        bad(
            &[k("admin"), k("token")],
            format!("{refuse}; set token_env (an environment variable name)"),
        );
    }
    for (table, key, value) in [
        ("cxone", "client_secret_env", &config.cxone.client_secret_env),
        (
            "dead_letter",
            "signing_secret_env",
            &config.dead_letter.signing_secret_env,
        ),
        ("admin", "token_env", &config.admin.token_env),
        ("simulator", "client_secret_env", &config.simulator.client_secret_env),
        ("simulator", "webhook_secret_env", &config.simulator.webhook_secret_env),
        ("journal", "url_env", &config.journal.url_env),
    ] {
        if !value.is_empty() && !is_env_var_name(value) {
            bad(
                &[k(table), k(key)],
                "expected the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*); literal secrets are refused"
                    .into(),
            );
        }
    }
}

/// `[journal]` and `[cluster]`.
fn check_store(config: &Config, bad: &mut impl FnMut(&[Seg<'_>], String)) {
    let k = Seg::Key;
    let journal = &config.journal;
    if journal.backend == Backend::Postgres {
        if journal.url_env.is_empty() {
            bad(
                &[k("journal"), k("url_env")],
                "expected the name of the environment variable holding the PostgreSQL URL".into(),
            );
        }
        let mut chars = journal.schema.chars();
        let identifier = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && journal.schema.len() <= MAX_IDENTIFIER;
        if !identifier {
            bad(
                &[k("journal"), k("schema")],
                format!("expected a schema name of [a-z_][a-z0-9_]*, at most {MAX_IDENTIFIER} characters"),
            );
        }
        if journal.pool_size < MIN_POOL {
            bad(
                &[k("journal"), k("pool_size")],
                format!("expected at least {MIN_POOL} (the writer, the heartbeat and one reader)"),
            );
        }
    }
    let cluster = &config.cluster;
    if cluster.heartbeat.is_zero() {
        bad(&[k("cluster"), k("heartbeat")], "expected a duration above zero".into());
    }
    if cluster.lease_timeout < cluster.heartbeat * 2 {
        bad(
            &[k("cluster"), k("lease_timeout")],
            "expected at least twice cluster.heartbeat (a live instance must renew in time)".into(),
        );
    }
}

/// Longest PostgreSQL identifier.
const MAX_IDENTIFIER: usize = 63;
/// Fewest PostgreSQL connections a daemon works with.
const MIN_POOL: usize = 3;

/// Endpoints, credentials source and HTTP limits of `[cxone]`, and `[limits]`.
fn check_cxone(config: &Config, bad: &mut impl FnMut(&[Seg<'_>], String)) {
    let k = Seg::Key;
    let cx = &config.cxone;
    if !cx.uses_simulator() {
        if let Err(problem) = check_url(&cx.base_url, cx.allow_insecure_http) {
            bad(&[k("cxone"), k("base_url")], format!("{problem} (or \"simulator\")"));
        }
        if cx.client_secret_env.is_empty() && cx.client_secret_file.is_none() {
            bad(
                &[k("cxone"), k("client_secret_env")],
                "expected client_secret_env or client_secret_file".into(),
            );
        }
    }
    if !cx.token_url.is_empty() {
        if let Err(problem) = check_url(&cx.token_url, cx.allow_insecure_http) {
            bad(&[k("cxone"), k("token_url")], problem.to_string());
        }
    }
    if !cx.submit_path.starts_with('/') {
        bad(
            &[k("cxone"), k("submit_path")],
            "expected a path starting with /".into(),
        );
    }
    if !cx.poll_path.starts_with('/') || !cx.poll_path.contains("{id}") {
        bad(
            &[k("cxone"), k("poll_path")],
            "expected a path starting with / and containing {id}".into(),
        );
    }
    if cx.request_timeout.is_zero() {
        bad(
            &[k("cxone"), k("request_timeout")],
            "expected a duration above zero".into(),
        );
    }
    if cx.max_connections == 0 {
        bad(&[k("cxone"), k("max_connections")], "expected at least 1".into());
    }
    if cx.max_response_bytes < 256 {
        bad(
            &[k("cxone"), k("max_response_bytes")],
            "expected at least 256 bytes".into(),
        );
    }
    if cx.scopes.iter().any(|s| s.trim().is_empty() || s.contains(' ')) {
        bad(
            &[k("cxone"), k("scopes")],
            "expected non-empty scope names without spaces".into(),
        );
    }

    if config.limits.max_in_flight == 0 {
        bad(&[k("limits"), k("max_in_flight")], "expected at least 1".into());
    }
}

/// Polling, retry, classifier and supervisor settings.
fn check_timing(config: &Config, bad: &mut impl FnMut(&[Seg<'_>], String)) {
    let k = Seg::Key;
    let poll = &config.poll;
    if !(poll.backoff_factor >= 1.0 && poll.backoff_factor.is_finite()) {
        bad(&[k("poll"), k("backoff_factor")], "expected a number >= 1.0".into());
    }
    if poll.interval.is_zero() {
        bad(&[k("poll"), k("interval")], "expected a duration above zero".into());
    }
    if poll.max_interval < poll.interval {
        bad(
            &[k("poll"), k("max_interval")],
            "expected a duration >= poll.interval".into(),
        );
    }
    if poll.timeout.is_zero() {
        bad(&[k("poll"), k("timeout")], "expected a duration above zero".into());
    }
    let retry = &config.retry;
    if !(retry.backoff_factor >= 1.0 && retry.backoff_factor.is_finite()) {
        bad(&[k("retry"), k("backoff_factor")], "expected a number >= 1.0".into());
    }
    if retry.max_delay < retry.base_delay {
        bad(
            &[k("retry"), k("max_delay")],
            "expected a duration >= retry.base_delay".into(),
        );
    }
    for (list, codes) in [
        ("retry", &config.classifier.retry),
        ("rollback", &config.classifier.rollback),
    ] {
        for (i, code) in codes.iter().enumerate() {
            let stem = code.strip_suffix('*').unwrap_or(code);
            if code.trim().is_empty() || stem.contains('*') {
                bad(
                    &[k("classifier"), k(list), Seg::Index(i)],
                    "expected an error code, optionally ending in * for a prefix".into(),
                );
            }
        }
    }
    if config.supervisor.restart_window.is_zero() {
        bad(
            &[k("supervisor"), k("restart_window")],
            "expected a duration above zero".into(),
        );
    }
}

/// Dead-letter webhook, log level and chaos.
fn check_outputs(config: &Config, bad: &mut impl FnMut(&[Seg<'_>], String)) {
    let k = Seg::Key;
    let cx = &config.cxone;
    let dl = &config.dead_letter;
    match &dl.webhook_url {
        WebhookTarget::Simulator if !cx.uses_simulator() => bad(
            &[k("dead_letter"), k("webhook_url")],
            "\"simulator\" needs cxone.base_url = \"simulator\"".into(),
        ),
        WebhookTarget::Url(url) => {
            if let Err(problem) = check_url(url.as_str(), cx.allow_insecure_http) {
                bad(&[k("dead_letter"), k("webhook_url")], problem.to_string());
            }
        }
        WebhookTarget::None | WebhookTarget::Simulator => {}
    }
    if dl.timeout.is_zero() {
        bad(
            &[k("dead_letter"), k("timeout")],
            "expected a duration above zero".into(),
        );
    }
    if let Err(e) = crate::telemetry::logging::check_filter(&config.log.level) {
        bad(&[k("log"), k("level")], e.to_string());
    }
    if config.admin.ui_read_only && config.admin.listen.is_some_and(|a| !a.ip().is_loopback()) {
        bad(
            &[k("admin"), k("ui_read_only")],
            "reading the console without the token is allowed only on a loopback admin.listen".into(),
        );
    }
    let chaos = &config.chaos;
    for (key, p) in [
        ("poller_panic_probability", chaos.poller_panic_probability),
        ("singleton_panic_probability", chaos.singleton_panic_probability),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bad(
                &[k("chaos"), k(key)],
                "expected a probability between 0.0 and 1.0".into(),
            );
        }
    }
}

/// Batch names and rollback templates.
fn check_batches(config: &Config, bad: &mut impl FnMut(&[Seg<'_>], String)) {
    let k = Seg::Key;
    if config.batches.is_empty() {
        bad(&[], "expected at least one [[batch]]".into());
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (b, batch) in config.batches.iter().enumerate() {
        let name_path = [k("batch"), Seg::Index(b), k("name")];
        if batch.name.is_empty()
            || !batch
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            bad(&name_path, "expected a name of [A-Za-z0-9_.-]+".into());
        } else if names.insert(&batch.name, b).is_some() {
            bad(&name_path, format!("duplicate batch name {:?}", batch.name));
        }
        if !batch.rollback_action.is_empty() {
            let template = super::table_to_json(&batch.rollback_action);
            if let Some(message) = action_type_problem(template.get(ACTION_TYPE)) {
                bad(
                    &[k("batch"), Seg::Index(b), k("rollback_action"), k(ACTION_TYPE)],
                    message,
                );
            }
        }
        if !batch.rollback_action.is_empty() && batch.rollback_action.contains_key("key") {
            bad(
                &[k("batch"), Seg::Index(b), k("rollback_action"), k("key")],
                "a rollback template has no key: it takes the failed action's identity".into(),
            );
        }
    }
}

/// Why a URL key is refused.
#[derive(Debug, thiserror::Error)]
enum UrlProblem {
    #[error("expected an http(s) URL, found {text:?} ({source})")]
    Unparsable { text: String, source: url::ParseError },
    #[error(
        "plain http to the non-loopback host {host:?} is refused; use https or set cxone.allow_insecure_http = true"
    )]
    InsecureHttp { host: String },
    #[error("expected an http or https URL, found scheme {scheme:?}")]
    Scheme { scheme: String },
}

/// Checks an absolute http(s) URL; plain http only to loopback unless allowed.
fn check_url(text: &str, allow_insecure_http: bool) -> Result<(), UrlProblem> {
    let url = url::Url::parse(text).map_err(|source| UrlProblem::Unparsable {
        text: text.to_owned(),
        source,
    })?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(()),
        "http" => Err(UrlProblem::InsecureHttp {
            host: url.host_str().unwrap_or_default().to_owned(),
        }),
        other => Err(UrlProblem::Scheme {
            scheme: other.to_owned(),
        }),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}
