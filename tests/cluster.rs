//! Cluster mode on PostgreSQL: several daemons share one journal. Each test gets a fresh
//! schema on the test server (skipped with one line when none is reachable, except under
//! CI); the members run as separate processes against the simulator over loopback.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pg::Schema;
use common::*;
use serde_json::Value;

/// One member's files in the harness directory.
struct Member {
    name: &'static str,
    config: PathBuf,
    audit: PathBuf,
}

/// A lease that runs out quickly, for the tests of rescues.
const SHORT_LEASE: &str = "1s";
/// A lease no member of a test outlives by accident, even on a loaded machine, for the
/// tests where every member stays alive.
const LONG_LEASE: &str = "10s";

/// Writes the config of member `name` on `schema` with `lease` as `cluster.lease_timeout`;
/// `overrides` as for `config_text`.
fn member(
    h: &Harness,
    schema: &Schema,
    (name, lease): (&'static str, &str),
    overrides: &[(&str, &str)],
    batches: &str,
) -> Member {
    let audit = h.dir.path().join(format!("audit-{name}.jsonl"));
    let journal = schema.journal_table();
    let cluster = Schema::cluster_table(name, lease);
    let audit_table = format!("path = \"{}\"\nfsync = false", audit.display());
    let mut all: Vec<(&str, &str)> = vec![("journal", &journal), ("cluster", &cluster), ("audit", &audit_table)];
    all.extend_from_slice(overrides);
    let config = h.dir.path().join(format!("config-{name}.toml"));
    std::fs::write(&config, h.config_text(&all, batches)).unwrap();
    Member { name, config, audit }
}

/// Outcome records of every member's audit file.
fn outcomes(members: &[&Member]) -> Vec<(String, Value)> {
    members
        .iter()
        .flat_map(|m| read_jsonl(&m.audit).into_iter().map(|r| (m.name.to_owned(), r)))
        .filter(|(_, r)| {
            matches!(
                r["event_type"].as_str(),
                Some("ACTION_COMPLETED" | "ACTION_CANCELLED" | "ASYNC_ERROR_HANDLED")
            )
        })
        .collect()
}

/// Exactly one outcome record per identity across all members' files, `expected` in all.
fn assert_once_across(members: &[&Member], expected: usize) -> HashMap<String, usize> {
    let mut by_identity: HashMap<String, usize> = HashMap::new();
    let mut by_member: HashMap<String, usize> = HashMap::new();
    let mut events = HashSet::new();
    for (member, r) in outcomes(members) {
        *by_identity.entry(format!("{}/{}", r["batch"], r["key"])).or_default() += 1;
        *by_member.entry(member).or_default() += 1;
        assert!(events.insert(r["event_id"].to_string()), "event_id twice: {r}");
    }
    let twice: Vec<_> = by_identity.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "outcomes recorded twice across the members: {twice:?}"
    );
    assert_eq!(by_identity.len(), expected, "every action has its outcome");
    by_member
}

/// A JSON Lines actions file of `n` actions: every 20th a permanent failure, every 20th
/// (offset 1) retried once, every 20th (offset 2) cancelled, the rest completing;
/// `duration` how long each stays running upstream.
fn mixed_actions(dir: &Path, n: usize, duration: &str) -> PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let sim = match i % 20 {
            0 => r#""sim":{"outcome":"FAILED","code":"INVALID_CONTACT"},"#.to_owned(),
            1 => format!(r#""sim":{{"outcome":"FAILED","code":"TIMEOUT","times":1,"duration":"{duration}"}},"#),
            2 => r#""sim":{"outcome":"CANCELLED"},"#.to_owned(),
            _ => format!(r#""sim":{{"outcome":"COMPLETED","duration":"{duration}"}},"#),
        };
        text.push_str(&format!(
            "{{\"key\":\"k{i}\",\"actionType\":\"CUSTOM_ACTION\",\"payload\":{{{sim}\"n\":{i}}}}}\n"
        ));
    }
    let path = dir.join("actions.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// Batch `b` reading the actions file, with per-member in-flight limit `limit`.
fn batch_from_file(file: &Path) -> String {
    batch("b", &format!("actions_file = \"{}\"", file.display()))
}

const FAST: [(&str, &str); 2] = [
    (
        "poll",
        "initial_delay = \"20ms\"\ninterval = \"50ms\"\ntimeout = \"60s\"",
    ),
    ("classifier", "retry = [\"TIMEOUT\"]"),
];

#[test]
fn two_members_share_a_batch_and_resolve_each_action_once() {
    let Some(schema) = Schema::fresh("two_members_share_a_batch") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    let file = mixed_actions(h.dir.path(), 2000, "20ms");
    let limits = ("limits", "max_in_flight = 100");
    let overrides = [FAST[0], FAST[1], limits];
    let a = member(&h, &schema, ("a", LONG_LEASE), &overrides, &batch_from_file(&file));
    let b = member(&h, &schema, ("b", LONG_LEASE), &overrides, &batch_from_file(&file));
    let mut da = h.spawn(&["run", "--once"], &a.config);
    let mut db = h.spawn(&["run", "--once"], &b.config);
    assert_eq!(da.wait(Duration::from_secs(120)), Some(2), "{}", da.log_text());
    assert_eq!(db.wait(Duration::from_secs(120)), Some(2), "{}", db.log_text());

    let shares = assert_once_across(&[&a, &b], 2000);
    for m in ["a", "b"] {
        let share = shares.get(m).copied().unwrap_or(0);
        assert!(share >= 400, "member {m} resolved {share} of 2000: {shares:?}");
    }
    let stats = h.sim.stats();
    // One upstream action per attempt: 2000 first attempts and 100 retried ones.
    assert_eq!(stats["actions_created"], 2100, "{stats}");
    assert_eq!(
        stats["submits_by_idempotency_key_max"], 1,
        "no attempt was submitted twice: {stats}"
    );
    let letters: HashSet<String> = h
        .sim
        .webhooks()
        .iter()
        .map(|w| w["body"]["error_id"].to_string())
        .collect();
    assert_eq!(letters.len(), 100, "every dead letter delivered");
    assert_eq!(h.sim.webhooks().len(), 100, "each once");
}

/// A count from the schema; 0 while its tables do not exist yet.
fn count(schema: &Schema, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> i64 {
    schema
        .client()
        .query_one(sql, params)
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
}

/// The instance id of the member named `name`.
fn instance_id(schema: &Schema, name: &str) -> String {
    schema
        .client()
        .query_one(
            "SELECT id FROM instances WHERE name = $1 ORDER BY started_at DESC LIMIT 1",
            &[&name],
        )
        .map(|r| r.get(0))
        .unwrap_or_default()
}

/// Unresolved actions the member named `name` holds.
fn owned(schema: &Schema, name: &str) -> i64 {
    let id = instance_id(schema, name);
    count(schema, "SELECT count(*) FROM actions WHERE owner = $1 AND open", &[&id])
}

#[test]
fn a_killed_members_actions_are_rescued_with_their_ids_within_the_lease() {
    let Some(schema) = Schema::fresh("killed_member_rescue") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    let file = mixed_actions(h.dir.path(), 300, "1500ms");
    let overrides = [FAST[0], FAST[1], ("limits", "max_in_flight = 100")];
    let a = member(&h, &schema, ("a", SHORT_LEASE), &overrides, &batch_from_file(&file));
    let b = member(&h, &schema, ("b", SHORT_LEASE), &overrides, &batch_from_file(&file));
    let mut da = h.spawn(&["run", "--once"], &a.config);
    wait_until(Duration::from_secs(30), "member a to hold polling actions", || {
        count(&schema, "SELECT count(*) FROM actions WHERE state = 'polling'", &[]) >= 50
    });
    let mut db = h.spawn(&["run", "--once"], &b.config);
    wait_until(Duration::from_secs(20), "member b to start", || {
        count(&schema, "SELECT count(*) FROM instances WHERE name = 'b'", &[]) > 0
    });
    let held = owned(&schema, "a");
    assert!(held > 0, "member a holds actions when it is killed");
    da.signal("KILL");
    let killed = Instant::now();
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(da.wait(Duration::from_secs(10)), None, "killed by a signal");
    assert_eq!(db.wait(Duration::from_secs(120)), Some(2), "{}", db.log_text());
    assert!(killed.elapsed() < Duration::from_secs(120));
    // Outcome lines a was writing when it died may or may not be in its file: only its
    // host can tell. a started again there appends those its file lacks, and nothing
    // else (every action has its outcome).
    let again = h.run_once(&a.config);
    assert_eq!(again.status.code(), Some(2), "{}", show(&again));

    assert_once_across(&[&a, &b], 300);
    let stats = h.sim.stats();
    // 300 first attempts, 15 retried ones: a rescue never submits under a new key.
    assert_eq!(stats["actions_created"], 315, "{stats}");
    // Rescued actions ran again soon after the lease (1s) ran out. The bound leaves room
    // for a loaded machine; the failover time itself is measured by the benchmarks.
    let rescued: Vec<i64> = schema
        .client()
        .query(
            "SELECT min(at_ms) FROM history WHERE instance = 'b' AND detail LIKE 'taken over%' GROUP BY action",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!rescued.is_empty(), "b took over a's actions");
    let latest = rescued.iter().max().unwrap() - killed_ms;
    assert!(latest <= 10_000, "rescued {latest} ms after the kill (lease 1s)");
    let polled_same_id: i64 = schema
        .client()
        .query_one(
            "SELECT count(*) FROM history h JOIN history p ON p.action = h.action AND p.instance = 'a' AND p.state = 'polling'
             WHERE h.instance = 'b' AND h.state = 'completed' AND h.attempt = p.attempt AND h.action_id = p.action_id",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(polled_same_id > 0, "rescued polling actions kept their CXone id");
}

#[test]
fn a_member_paused_past_its_lease_writes_nothing_for_the_actions_it_lost() {
    let Some(schema) = Schema::fresh("paused_member") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    let file = mixed_actions(h.dir.path(), 200, "1500ms");
    let overrides = [FAST[0], FAST[1], ("limits", "max_in_flight = 200")];
    let a = member(&h, &schema, ("a", SHORT_LEASE), &overrides, &batch_from_file(&file));
    let b = member(&h, &schema, ("b", SHORT_LEASE), &overrides, &batch_from_file(&file));
    let mut da = h.spawn(&["run", "--once"], &a.config);
    wait_until(Duration::from_secs(30), "member a to hold every action", || {
        owned(&schema, "a") >= 150
    });
    da.signal("STOP");
    let mut db = h.spawn(&["run", "--once"], &b.config);
    wait_until(Duration::from_secs(60), "b to resolve everything", || {
        count(&schema, "SELECT count(*) FROM actions", &[]) == 200
            && count(&schema, "SELECT count(*) FROM actions WHERE open", &[]) == 0
    });
    da.signal("CONT");
    assert_eq!(db.wait(Duration::from_secs(60)), Some(2), "{}", db.log_text());
    let code = da.wait(Duration::from_secs(60));
    assert_eq!(code, Some(2), "{}", da.log_text());
    assert_once_across(&[&a, &b], 200);
    assert!(
        da.log_text().contains("taken over by another claim"),
        "a dropped what it lost: {}",
        da.log_text()
    );
}

#[test]
fn a_dead_letter_stored_by_a_killed_member_is_delivered_by_another() {
    let Some(schema) = Schema::fresh("dead_letter_handover") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean", "--webhook-fail-first", "1000000"]);
    let batches = batch("b", "") + &action("bad", "outcome = \"FAILED\", code = \"INVALID_CONTACT\"");
    let dead_letter = format!(
        "webhook_url = \"{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\ntimeout = \"500ms\"\ndrain_timeout = \"30s\"",
        h.sim.url
    );
    let overrides = [("dead_letter", dead_letter.as_str())];
    let a = member(&h, &schema, ("a", SHORT_LEASE), &overrides, &batches);
    let b = member(&h, &schema, ("b", SHORT_LEASE), &overrides, &batches);
    let mut da = h.spawn(&["run"], &a.config);
    wait_until(Duration::from_secs(20), "a's first failed delivery", || {
        h.sim.stats()["webhook_unavailable"].as_u64().unwrap_or(0) >= 1
    });
    da.signal("KILL");
    assert_eq!(da.wait(Duration::from_secs(10)), None);
    h.sim.post("/sim/control", serde_json::json!({"webhook_fail_first": 0}));
    let mut db = h.spawn(&["run", "--once"], &b.config);
    assert_eq!(db.wait(Duration::from_secs(60)), Some(2), "{}", db.log_text());
    let delivered = h.sim.webhooks();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["body"]["key"], "bad");
    assert_once_across(&[&a, &b], 1);
}

#[test]
fn an_unreachable_database_stops_the_start_naming_the_host_never_the_password() {
    let h = Harness::new(&["--profile", "clean"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let journal = "backend = \"postgres\"\nurl_env = \"AW_TEST_BAD_URL\"";
    let config = h.write_config(&[("journal", journal)], &(batch("b", "") + &action("k", "")));
    let url = format!("postgres://aw:hunter2-secret@127.0.0.1:{port}/postgres");
    let output = run_to_end(
        daemon_cmd(&["run", "--once"], &config).env("AW_TEST_BAD_URL", &url),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// `journal prune` removes the rows of members gone since before the cutoff that hold
/// nothing; a live member's row and its actions stay, and the batch stays resolved.
#[test]
fn pruning_removes_departed_members_but_not_live_ones() {
    let Some(schema) = Schema::fresh("prune_instances") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    let a = member(
        &h,
        &schema,
        ("a", LONG_LEASE),
        &[],
        &(batch("b", "") + &action("k1", "") + &action("k2", "")),
    );
    assert_eq!(h.run_once(&a.config).status.code(), Some(0));
    let mut client = schema.client();
    client
        .batch_execute(
            "INSERT INTO instances (id, name, host, pid, started_at, heartbeat_at, stopped_at)
               VALUES ('gone', 'gone', 'h', 1, now() - interval '9 days', now() - interval '8 days', NULL),
                      ('alive', 'alive', 'h', 2, now() - interval '9 days', now() + interval '1 hour', NULL)",
        )
        .unwrap();
    let members = "SELECT count(*) FROM instances";
    assert_eq!(count(&schema, members, &[]), 3);

    let output = run_to_end(
        &mut daemon_cmd(&["journal", "prune", "--older-than", "1d"], &a.config),
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("1 departed cluster members"), "{printed}");
    let left: Vec<String> = client
        .query("SELECT name FROM instances ORDER BY name", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        ["a", "alive"],
        "the member stopped a moment ago is within the day"
    );

    let output = h.run_once(&a.config);
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(h.sim.stats()["submits"], 2, "nothing resubmitted after pruning");
}

#[test]
fn a_schema_newer_than_the_binary_is_refused() {
    let Some(schema) = Schema::fresh("newer_schema") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    let a = member(
        &h,
        &schema,
        ("a", LONG_LEASE),
        &[],
        &(batch("b", "") + &action("k", "")),
    );
    let first = h.run_once(&a.config);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    schema
        .client()
        .execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'", &[])
        .unwrap();
    let output = h.run_once(&a.config);
    assert_eq!(output.status.code(), Some(3), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("schema version 99"),
        "{}",
        show(&output)
    );
}

#[test]
fn admin_and_console_readers_stay_within_the_pool_size() {
    let Some(schema) = Schema::fresh("reader_pool") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    let app = format!("aw_pool_{}", std::process::id());
    let separator = if common::pg::database_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{separator}application_name={app}", common::pg::database_url());
    let journal = schema.journal_table();
    assert!(journal.contains("pool_size = 4"), "{journal}");
    let overrides = [("journal", journal.as_str()), ("admin", "listen = \"127.0.0.1:0\"")];
    let mut batches = batch("b", "");
    for i in 0..50 {
        batches.push_str(&action(&format!("k{i}"), ""));
    }
    let config = h.write_config(&overrides, &batches);
    let mut daemon = h.spawn_with(&["run"], &config, &[(common::pg::DB_URL_ENV, &url)]);
    let admin = daemon.admin_url();
    let connections = || -> i64 {
        schema
            .client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap()
            .get(0)
    };
    // Sixteen clients at once on the API and the console: two readers serve them all
    // (writer + heartbeat + 2 readers = pool_size 4), every request answered.
    let most = std::sync::atomic::AtomicI64::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..16)
            .map(|i| {
                let admin = admin.clone();
                scope.spawn(move || {
                    for round in 0..5 {
                        let path = if (i + round) % 2 == 0 {
                            "/v1/actions?limit=10"
                        } else {
                            "/ui/"
                        };
                        let status = ureq::get(&format!("{admin}{path}"))
                            .call()
                            .map(|r| r.status().as_u16())
                            .unwrap_or_else(|e| panic!("{path}: {e}"));
                        assert_eq!(status, 200, "{path}");
                    }
                })
            })
            .collect();
        while workers.iter().any(|w| !w.is_finished()) {
            most.fetch_max(connections(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    let most = most.into_inner();
    assert!(
        most >= 2,
        "the daemon's sessions carry the URL's application name ({most})"
    );
    assert!(most <= 4, "{most} connections with pool_size = 4");
    // The idle readers close cleanly at the stop (a PostgreSQL client closing on the
    // admin server's runtime would panic).
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0), "{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_version_1_schema_is_migrated_and_discards_work_after_it() {
    let Some(schema) = Schema::fresh("schema_v1") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    h.sim.post("/sim/control", serde_json::json!({"webhook_down": true}));
    let dead = action("d", "outcome = \"FAILED\", code = \"INVALID_CONTACT\", times = 1");
    let letters = format!(
        "webhook_url = \"{}/sim/webhook\"\nsigning_secret_env = \"{WEBHOOK_KEY_ENV}\"\ndrain_timeout = \"300ms\"",
        h.sim.url
    );
    let a = member(
        &h,
        &schema,
        ("a", LONG_LEASE),
        &[("dead_letter", &letters)],
        &(batch("b", "") + &dead),
    );
    assert_eq!(h.run_once(&a.config).status.code(), Some(2));
    // The schema as the first release wrote it: no discard requests, no index of
    // unclaimed actions.
    schema
        .client()
        .batch_execute(
            "DROP TABLE discard_requests; DROP INDEX replay_requests_letter; DROP INDEX actions_unowned;
             UPDATE meta SET value = 1 WHERE key = 'schema_version'",
        )
        .unwrap();
    let migrated = h.run_once(&a.config);
    assert_eq!(migrated.status.code(), Some(2), "{}", show(&migrated));
    assert!(
        String::from_utf8_lossy(&migrated.stderr).contains("Journal schema migrated."),
        "{}",
        show(&migrated)
    );
    let version: i64 = schema
        .client()
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 3, "migrated to this binary's version");
    let error_id: String = schema
        .client()
        .query_one("SELECT error_id FROM dead_letters", &[])
        .unwrap()
        .get(0);
    let discard = run_to_end(
        &mut daemon_cmd(&["dlq", "discard", &error_id], &a.config),
        Duration::from_secs(20),
    );
    assert_eq!(discard.status.code(), Some(0), "{}", show(&discard));
    h.sim.post("/sim/control", serde_json::json!({"webhook_down": false}));
    // Nothing undelivered is left: the discarded letter is never delivered.
    assert_eq!(h.run_once(&a.config).status.code(), Some(2));
    assert!(h.sim.webhooks().is_empty(), "a discarded letter is not delivered");
    let records: Vec<Value> = read_jsonl(&a.audit)
        .into_iter()
        .filter(|r| r["event_type"] == "DEAD_LETTER_DISCARDED")
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["error_id"], error_id.as_str());
}

#[test]
fn a_database_restarted_mid_run_loses_nothing() {
    let Some(server) = common::pg::PrivateServer::start("database_restart") else {
        return;
    };
    let h = Harness::new(&["--profile", "clean"]);
    let file = mixed_actions(h.dir.path(), 300, "300ms");
    let journal = "backend = \"postgres\"\nurl_env = \"AW_TEST_PRIVATE_URL\"\nschema = \"aw\"";
    let admin = "listen = \"127.0.0.1:0\"";
    let overrides = [
        FAST[0],
        FAST[1],
        ("limits", "max_in_flight = 50"),
        ("journal", journal),
        ("cluster", "heartbeat = \"100ms\"\nlease_timeout = \"1s\""),
        ("admin", admin),
    ];
    let config = h.dir.path().join("config.toml");
    std::fs::write(&config, h.config_text(&overrides, &batch_from_file(&file))).unwrap();
    let mut daemon = h.spawn_with(&["run", "--once"], &config, &[("AW_TEST_PRIVATE_URL", &server.url())]);
    let url = daemon.admin_url();
    wait_until(Duration::from_secs(30), "some outcomes", || h.outcomes().len() >= 50);
    server.stop();
    wait_until(Duration::from_secs(10), "readiness to report the database", || {
        let (code, body) = status_of(&format!("{url}/readyz"));
        code == 503
            && body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("database") || r.contains("heartbeat"))
    });
    server.start_again();
    assert_eq!(daemon.wait(Duration::from_secs(120)), Some(2), "{}", daemon.log_text());
    assert_exactly_once(&h, 300);
    assert_eq!(h.sim.stats()["actions_created"], 315, "one upstream action per attempt");
}
