//! The daemon run in process: `app::run_with` on the test's own actix System against a
//! simulator started on the same System, no binary spawned. These tests reach the
//! token single flight, dead-letter redelivery and the exactly-once audit hand-off
//! directly; the suites in the other files drive the binary as users do.

use std::path::Path;
use std::time::Duration;

use actionwarden::app::{run_with, RunOptions};
use actionwarden::simulator::{self, Profile, RunningSimulator, SimulatorSettings, DEFAULT_CLIENT_SECRET};
use serde_json::Value;

/// The variable the configs name for the client secret (set once for the process).
const SECRET_ENV: &str = "AW_IN_PROCESS_SECRET";

async fn start_simulator(settings: SimulatorSettings) -> RunningSimulator {
    // Every test sets the same value: the simulator's own secret.
    std::env::set_var(SECRET_ENV, DEFAULT_CLIENT_SECRET);
    simulator::start("127.0.0.1:0", settings).await.expect("simulator")
}

/// Writes a config for `sim` into `dir` with `batches`, runs `run --once` in process and
/// returns its exit code.
async fn run_once(dir: &Path, sim: &RunningSimulator, batches: &str) -> u8 {
    let url = sim.base_url();
    let text = format!(
        "[cxone]\nbase_url = \"{url}\"\nclient_id = \"simulator\"\nclient_secret_env = \"{SECRET_ENV}\"\n\
         request_timeout = \"2s\"\n\n\
         [limits]\nmax_in_flight = 200\n\n\
         [poll]\ninitial_delay = \"10ms\"\ninterval = \"20ms\"\n\n\
         [retry]\nbase_delay = \"10ms\"\nmax_delay = \"50ms\"\njitter = \"none\"\n\n\
         [dead_letter]\nwebhook_url = \"{url}/sim/webhook\"\ndrain_timeout = \"20s\"\n\n\
         [journal]\npath = \"{dir}/journal\"\nfsync = false\n\n\
         [audit]\npath = \"{dir}/audit.jsonl\"\nfsync = false\n\n\
         [admin]\nlisten = \"\"\n\n{batches}",
        dir = dir.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config");
    let loaded = actionwarden::config::load(&path).expect("a valid config");
    let options = RunOptions {
        // `--once` ends the run; no signal handlers in a test process.
        stop: Some(Box::pin(std::future::pending())),
        simulator: None,
    };
    run_with(loaded, true, options).await.expect("the run")
}

/// A batch `name` of `n` actions whose payloads carry `sim` (a simulator directive).
fn batch(name: &str, n: usize, sim: &str) -> String {
    let mut text = format!("[[batch]]\nname = \"{name}\"\n");
    for i in 0..n {
        let directive = if sim.is_empty() {
            String::new()
        } else {
            format!(", sim = {{ {sim} }}")
        };
        text.push_str(&format!(
            "  [[batch.action]]\n  key = \"{name}{i:03}\"\n  actionType = \"CUSTOM_ACTION\"\n  payload = {{ contactId = \"c{i}\"{directive} }}\n"
        ));
    }
    text
}

async fn get(sim: &RunningSimulator, path: &str) -> Value {
    let client = awc::Client::default();
    let mut response = client
        .get(format!("{}{path}", sim.base_url()))
        .send()
        .await
        .expect("simulator reachable");
    response.json::<Value>().limit(64 << 20).await.expect("JSON")
}

/// Records of the audit file (every line complete once the run returned).
fn audit(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .expect("audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line"))
        .collect()
}

fn outcomes(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| {
            matches!(
                r["event_type"].as_str(),
                Some("ACTION_COMPLETED" | "ACTION_CANCELLED" | "ASYNC_ERROR_HANDLED")
            )
        })
        .collect()
}

/// 150 actions start at once while the token endpoint takes 300 ms: one token request
/// serves them all.
#[actix_rt::test]
async fn one_token_request_serves_every_action_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(SimulatorSettings {
        profile: Profile::Clean,
        token_latency: Duration::from_millis(300),
        ..SimulatorSettings::default()
    })
    .await;
    let code = run_once(dir.path(), &sim, &batch("t", 150, "")).await;
    assert_eq!(code, 0);
    let stats = get(&sim, "/sim/stats").await;
    assert_eq!(stats["tokens_issued"], 1, "{stats}");
    assert_eq!(outcomes(&audit(dir.path())).len(), 150);
    sim.handle.stop(true).await;
}

/// The webhook refuses its first four deliveries: each letter is delivered again until
/// accepted, once, with one delivery record each.
#[actix_rt::test]
async fn dead_letters_are_delivered_again_until_the_webhook_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(SimulatorSettings {
        profile: Profile::Clean,
        webhook_fail_first: 4,
        ..SimulatorSettings::default()
    })
    .await;
    let batches = batch("d", 3, "outcome = \"FAILED\", code = \"INVALID_CONTACT\"");
    assert_eq!(run_once(dir.path(), &sim, &batches).await, 2, "dead letters: exit 2");
    let stats = get(&sim, "/sim/stats").await;
    assert_eq!(stats["webhook_unavailable"], 4, "{stats}");
    let hooks = get(&sim, "/sim/webhook").await;
    let mut keys: Vec<&str> = hooks
        .as_array()
        .expect("a list")
        .iter()
        .map(|h| h["idempotency_key"].as_str().expect("keyed"))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 3, "each letter accepted once: {hooks}");
    assert_eq!(hooks.as_array().unwrap().len(), 3, "{hooks}");
    let records = audit(dir.path());
    let delivered: Vec<&Value> = records
        .iter()
        .filter(|r| r["event_type"] == "DEAD_LETTER_DELIVERED")
        .collect();
    assert_eq!(delivered.len(), 3);
    assert!(
        delivered.iter().any(|r| r["attempts"].as_u64() > Some(1)),
        "{delivered:?}"
    );
    sim.handle.stop(true).await;
}

/// Outcomes of mixed fates are audited once each; running the same file again resolves
/// nothing and writes nothing (the journal knows every line reached the file).
#[actix_rt::test]
async fn every_outcome_is_audited_once_and_a_rerun_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_simulator(SimulatorSettings {
        profile: Profile::Clean,
        ..SimulatorSettings::default()
    })
    .await;
    let batches = batch("ok", 30, "")
        + &batch("retried", 10, "outcome = \"FAILED\", code = \"TIMEOUT\", times = 1")
        + &batch("cancelled", 5, "outcome = \"CANCELLED\"")
        + &batch("failed", 5, "outcome = \"FAILED\", code = \"INVALID_CONTACT\"");
    assert_eq!(run_once(dir.path(), &sim, &batches).await, 2);
    let first = audit(dir.path());
    let resolved = outcomes(&first);
    assert_eq!(resolved.len(), 50);
    let mut identities: Vec<String> = resolved
        .iter()
        .map(|r| format!("{}/{}", r["batch"], r["key"]))
        .collect();
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), 50, "one outcome record per action");
    let mut events: Vec<&str> = first.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    events.sort_unstable();
    events.dedup();
    assert_eq!(events.len(), first.len(), "every event_id once");

    let submits = get(&sim, "/sim/stats").await["submits"].clone();
    assert_eq!(
        run_once(dir.path(), &sim, &batches).await,
        2,
        "same outcomes, same code"
    );
    assert_eq!(audit(dir.path()).len(), first.len(), "nothing appended by the re-run");
    assert_eq!(get(&sim, "/sim/stats").await["submits"], submits, "nothing resubmitted");
    sim.handle.stop(true).await;
}
