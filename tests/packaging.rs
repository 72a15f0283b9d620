//! The files shipped for operators (contrib/, Dockerfile) agree with the binary: the
//! dashboard and the alert rules query only metrics the daemon exports, and the PromQL
//! parses (with promtool, when installed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use actionwarden::telemetry::metrics::{ACTIONWARDEN_METRICS, PROCESS_METRICS};
use serde_json::Value;

/// Series Prometheus itself adds to every scrape target.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// Suffixes of the series a histogram is exported as.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// PromQL words that are not series names: aggregations, functions, keywords.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "histogram_quantile",
    "time",
    "vector",
    "scalar",
    "clamp_min",
    "clamp_max",
    "abs",
    "round",
    "label_replace",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
];

/// Words followed by a parenthesised list of label names, not of expressions.
const LABEL_LIST_WORDS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The series names an expression selects: identifiers outside strings, label matchers
/// (`{...}`), ranges (`[...]`) and label lists, that are not PromQL words.
fn series_in(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_until = |from: usize, close: char| -> usize {
        let mut j = from + 1;
        let mut in_string = false;
        while j < chars.len() {
            match chars[j] {
                '"' => in_string = !in_string,
                '\\' if in_string => j += 1,
                c if c == close && !in_string => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip_until(i, '"');
        } else if c == '{' {
            i = skip_until(i, '}');
        } else if c == '[' {
            i = skip_until(i, ']');
        } else if c == '$' {
            // A Grafana variable such as $__range.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            if LABEL_LIST_WORDS.contains(&word.as_str()) {
                if chars.get(next) == Some(&'(') {
                    i = skip_until(next, ')');
                }
            } else if chars.get(next) == Some(&'(') || PROMQL_WORDS.contains(&word.as_str()) {
                // A function call or a keyword.
            } else {
                names.push(word);
            }
        } else if c.is_ascii_digit() {
            // A number or a duration (`5m`, `1e3`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Whether `name` is a series the daemon (or Prometheus) exports.
fn is_known(name: &str) -> bool {
    let base = HISTOGRAM_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    ACTIONWARDEN_METRICS.contains(&name)
        || ACTIONWARDEN_METRICS.contains(&base)
        || PROCESS_METRICS.contains(&name)
        || PROMETHEUS_SERIES.contains(&name)
}

/// Every `expr` in the dashboard JSON, at any depth.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| dashboard_exprs(item, out)),
        _ => {}
    }
}

/// Every `expr:` of a rules file: inline, or a `|` / `>` block of deeper-indented lines.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !matches!(rest, "|" | ">" | "|-" | ">-") {
            exprs.push(rest.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join(" "));
    }
    exprs
}

/// Runs `promtool check rules FILE` when promtool is installed (`.ci/run` requires it).
fn promtool_check_rules(file: &Path) {
    let Ok(output) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(file)
        .output()
    else {
        eprintln!("promtool not installed: PromQL not parsed here (.ci/run checks it)");
        return;
    };
    assert!(
        output.status.success(),
        "promtool check rules {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn series_names_are_found_in_promql() {
    let expr = "sum by (instance, batch) (rate(actionwarden_actions_finished_total{outcome=\"dead_lettered\", batch=~\"$batch\"}[$__rate_interval])) / on (instance) group_left sum(x_total offset 5m) > 0.05 and absent(up{job=\"a\"})";
    assert_eq!(
        series_in(expr),
        ["actionwarden_actions_finished_total", "x_total", "up"]
    );
    assert_eq!(
        series_in("histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))"),
        ["h_bucket"]
    );
    assert_eq!(
        series_in("time() - process_start_time_seconds"),
        ["process_start_time_seconds"]
    );
    assert!(is_known("actionwarden_action_duration_seconds_bucket"));
    assert!(!is_known("actionwarden_actions_total"));
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let text = std::fs::read_to_string(repo("contrib/grafana/actionwarden.json")).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 20, "a panel per metric family: {}", exprs.len());

    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| series_in(e)).collect();
    let unknown: Vec<&String> = queried.iter().filter(|n| !is_known(n)).collect();
    assert!(unknown.is_empty(), "the dashboard queries unknown metrics: {unknown:?}");
    // Every metric the daemon exports has a panel.
    for name in ACTIONWARDEN_METRICS {
        assert!(
            queried.iter().any(|q| q == name || q.starts_with(&format!("{name}_"))),
            "no panel shows {name}"
        );
    }

    // The data source is a variable, so the dashboard imports into any Grafana.
    let variables = dashboard["templating"]["list"].as_array().expect("variables");
    assert!(variables
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource"));
    let mut sources = Vec::new();
    collect_datasources(&dashboard["panels"], &mut sources);
    assert!(
        sources.iter().all(|uid| uid == "${datasource}"),
        "every query uses the variable: {sources:?}"
    );

    // promtool parses the queries once Grafana's variables are given values.
    let dir = tempfile::tempdir().unwrap();
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.replace("$__rate_interval", "5m").replace("$__range", "1h");
            format!(
                "      - record: dashboard:query_{i}\n        expr: {}\n",
                serde_json::to_string(&e).unwrap()
            )
        })
        .collect();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, format!("groups:\n  - name: dashboard\n    rules:\n{rules}")).unwrap();
    promtool_check_rules(&file);
}

fn collect_datasources(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(uid) = map.get("datasource").and_then(|d| d.get("uid")).and_then(Value::as_str) {
                out.push(uid.to_owned());
            }
            map.values().for_each(|v| collect_datasources(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_datasources(v, out)),
        _ => {}
    }
}

#[test]
fn the_alert_rules_use_only_exported_metrics_and_pass_promtool() {
    let path = repo("contrib/prometheus/alerts.yml");
    let yaml = std::fs::read_to_string(&path).expect("the alert rules");
    let exprs = rule_exprs(&yaml);
    assert!(exprs.len() >= 10, "{exprs:#?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| series_in(e)).collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !is_known(n)).collect();
    assert!(unknown.is_empty(), "the alerts use unknown metrics: {unknown:?}");
    for needed in [
        "actionwarden_dead_letters_undelivered",
        "actionwarden_journal_errors_total",
        "actionwarden_audit_errors_total",
        "actionwarden_actions_in_flight",
        "actionwarden_rate_limited_total",
        "up",
    ] {
        assert!(used.contains(needed), "an alert watches {needed}");
    }
    promtool_check_rules(&path);
}

#[test]
fn the_systemd_unit_and_the_logrotate_rule_agree() {
    let unit = std::fs::read_to_string(repo("contrib/systemd/actionwarden.service")).expect("the unit");
    for setting in [
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=actionwarden",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(setting)), "the unit sets {setting}");
    }
    let rule = std::fs::read_to_string(repo("contrib/logrotate/actionwarden")).expect("the rule");
    assert!(
        rule.contains("/var/lib/actionwarden/audit.jsonl"),
        "rotates the unit's audit file"
    );
    assert!(
        rule.contains("SIGHUP") && rule.contains("postrotate"),
        "signals the daemon"
    );
    assert!(
        !rule.lines().any(|l| l.trim() == "copytruncate"),
        "copytruncate would lose records"
    );
}
