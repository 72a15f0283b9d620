#!/usr/bin/env bash
# actionwarden benchmark (targets and results: BENCHMARKS.md). See README "Performance".
#
#   benches/bench.sh [--mode throughput|cpu|inflight|scale|loopback|cluster|failover|all]
#                    [--n N] [--in-flight K] [--fsync on|off] [--backend sqlite|postgres]
#                    [--runs R] [--bin PATH] [--duration SECS] [--timeout SECS] [--keep DIR]
#
# throughput: N actions through `run --once` against `simulate --profile clean` (a
#             separate process); reports actions/s, CXone requests/s, peak RSS, p50/p99
#             action duration and CPU seconds per 1,000 actions.
# cpu:        N actions (default 50,000) through `run --once` against `simulate --profile
#             clean` in its own process, fsync on unless --fsync off; reports the CPU time
#             (utime + stime of /proc/PID/stat, in clock ticks of `getconf CLK_TCK`) of
#             each process per action in microseconds, their ratio (daemon / simulator)
#             and the throughput. The daemon's figure is read after it exited but before
#             it is reaped (waitid with WNOWAIT), so it holds all its threads' time; the
#             simulator's is its CPU during the run (read before the daemon starts and
#             after it exited).
# inflight:   N actions held in flight (long simulated duration, long poll interval);
#             reports RSS and bytes per in-flight action once all are submitted.
# scale:      N actions (default 1,000,000) in one actions file: `run --once` on an empty
#             journal (wall time, peak RSS, loading rate), `run --once` again on the
#             finished file (wall time, peak RSS, nothing submitted), `status` and
#             `dlq list` on that journal (wall time, peak RSS), journal bytes per action.
#             The loading rate is N over the time from the daemon's launch to its
#             "Actions loaded into the journal." line: hashing, checking and writing the
#             whole file into an empty journal, process start included.
# loopback:   the simulator's own capacity under wrk (needs wrk), to put the daemon's
#             requests/s in proportion.
# cluster:    PostgreSQL (docs/cluster.md): N actions run by one instance, then (a fresh
#             schema, a fresh simulator) the same file by two instances on one schema,
#             both `run --once`, timed until both exit; reports both wall times, the ratio
#             two / one, and each member's share.
# failover:   PostgreSQL: two instances (lease_timeout 5s, heartbeat 1s) on N actions that
#             stay `polling` (simulated duration 15s); the one holding them is killed with
#             SIGKILL, and the time from the kill to the survivor's first (and last) `taken
#             over` history event is reported against lease_timeout + 2 s; --runs R repeats
#             it R times (default 1).
#
# PostgreSQL: --backend postgres (throughput mode) and the cluster and failover modes use
# the server at $ACTIONWARDEN_BENCH_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres; needs psql), a fresh schema per run,
# dropped at the end. `journal.fsync` does not apply there (the server's settings do);
# --fsync still sets `audit.fsync`.
#
# --keep DIR works in DIR (created, and left in place afterwards: the journal, the
# actions file and the logs stay there for profiling) instead of a temporary directory.
#
# Every wait has a deadline: a run or a wait that takes longer than --timeout seconds
# (default 1800) fails the script instead of hanging it. Each mode ends with one JSON line.
set -euo pipefail

mode=throughput n="" in_flight=1000 fsync="" bin="" wrk_secs=5 limit=1800 keep="" backend=sqlite runs=1
# Seconds the simulator gets to print its address, each HTTP call to answer, and a
# timed-out command to stop after SIGTERM before it is killed.
sim_start_secs=20 http_secs=10 kill_grace=10
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    --fsync) fsync=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --duration) wrk_secs=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done
# The cpu mode measures the shipped defaults (journal.fsync and audit.fsync on).
if [ -z "$fsync" ]; then
  case "$mode" in cpu) fsync=on ;; *) fsync=off ;; esac
fi
case "$fsync" in on) fsync_toml=true ;; off) fsync_toml=false ;; *) echo "--fsync on|off" >&2; exit 1 ;; esac
case "$backend" in sqlite | postgres) ;; *) echo "--backend sqlite|postgres" >&2; exit 1 ;; esac
# Actions per run unless --n says otherwise: the scale mode is about a big batch.
if [ -z "$n" ]; then
  case "$mode" in scale) n=1000000 ;; cpu) n=50000 ;; failover) n=200 ;; *) n=10000 ;; esac
fi

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --quiet)
  bin="$root/target/release/actionwarden"
fi
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  work=$(cd "$keep" && pwd)
else
  work=$(mktemp -d)
fi
sim_pid="" daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
  pg_cleanup
  [ -n "$keep" ] || rm -rf "$work"
}
trap cleanup EXIT

# wait_for SECS WHAT COMMAND...: runs COMMAND every 0.1s until it succeeds; past SECS
# seconds the script fails, naming WHAT.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || { echo "timed out after ${secs}s waiting for $what" >&2; exit 1; }
    sleep 0.1
  done
}

start_sim() {
  # Removed first: the child truncates the file only once it runs, and a line left by the
  # previous simulator would pass the wait below with that simulator's address.
  rm -f "$work/sim.out"
  "$bin" simulate --listen 127.0.0.1:0 --profile clean >"$work/sim.out" 2>/dev/null &
  sim_pid=$!
  wait_for "$sim_start_secs" "the simulator's address" grep -qs "listening on" "$work/sim.out"
  sim_url=$(sed -n 's/^listening on //p' "$work/sim.out")
  [ -n "$sim_url" ] || { echo "simulator did not start" >&2; exit 1; }
}

stat() { curl -fsS -m "$http_secs" "$sim_url/sim/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

write_config() { # $1 = poll table, $2 = in-flight limit, $3 = actions file
  cat >"$work/config.toml" <<TOML
[cxone]
base_url = "$sim_url"
client_id = "simulator"
client_secret_env = "AW_BENCH_SECRET"
max_connections = 512
[limits]
max_in_flight = $2
[poll]
$1
[retry]
base_delay = "50ms"
max_delay = "1s"
[audit]
path = "$work/audit.jsonl"
fsync = $fsync_toml
[journal]
path = "$work/journal"
fsync = $fsync_toml
[admin]
listen = ""
[log]
level = "warn"
[shutdown]
timeout = "5s"
[[batch]]
name = "bench"
actions_file = "$3"
TOML
}

gen_actions() { # $1 = count, $2 = extra payload JSON ("" or ', "sim": {...}')
  python3 - "$1" "$2" >"$work/actions.jsonl" <<'PY'
import sys
n, extra = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
for i in range(n):
    out.write('{"key":"a%d","actionType":"CUSTOM_ACTION","payload":{"contactId":"c-%d","dataField":"priority","value":"HIGH"%s},"metadata":{"source":"bench"}}\n' % (i, i, extra))
PY
}

throughput() {
  start_sim
  gen_actions "$n" ""
  write_config $'initial_delay = "5ms"\ninterval = "20ms"' "$in_flight" "$work/actions.jsonl"
  if [ "$backend" = postgres ]; then
    pg_member "$work/config.toml" "$work/config.toml" bench "$work/audit.jsonl" "$(pg_schema throughput)"
    echo "backend=postgres schema=$(pg_schema throughput)"
  fi
  set +e
  AW_BENCH_SECRET=simulator-secret timeout -k "$kill_grace" "$limit" /usr/bin/time -f '%e %U %S %M' -o "$work/time" \
    "$bin" run --once -c "$work/config.toml" >"$work/summary.txt" 2>"$work/daemon.log"
  code=$?
  set -e
  [ "$code" != 124 ] && [ "$code" != 137 ] || { echo "run --once did not finish within ${limit}s" >&2; exit 1; }
  [ "$code" = 0 ] || { echo "run --once exited $code" >&2; tail -20 "$work/daemon.log" >&2; exit 1; }
  read -r elapsed user sys maxrss <"$work/time"
  requests=$(stat "['requests_by_endpoint']['submit']+d['requests_by_endpoint']['poll']+d['requests_by_endpoint']['token']")
  python3 - "$work/audit.jsonl" "$n" "$elapsed" "$user" "$sys" "$maxrss" "$requests" "$in_flight" "$fsync" <<'PY'
import json, sys
path, n, elapsed, user, sys_, maxrss, requests, in_flight, fsync = sys.argv[1:]
n, elapsed, cpu = int(n), float(elapsed), float(user) + float(sys_)
lat = sorted(r["latency_seconds"] for r in map(json.loads, open(path)) if r["event_type"] == "ACTION_COMPLETED")
assert len(lat) == n, f"{len(lat)} outcomes for {n} actions"
pct = lambda q: lat[max(0, min(len(lat) - 1, int(q * len(lat) + 0.999999) - 1))]
print(f"mode=throughput n={n} in_flight={in_flight} fsync={fsync}")
print(f"  actions/s          {n / elapsed:10.0f}")
print(f"  CXone requests/s   {int(requests) / elapsed:10.0f}  ({requests} requests)")
print(f"  wall seconds       {elapsed:10.2f}")
print(f"  peak RSS MB        {int(maxrss) / 1024:10.1f}")
print(f"  p50 / p99 ms       {pct(0.50) * 1000:10.1f} / {pct(0.99) * 1000:.1f}")
print(f"  CPU s per 1k       {cpu / n * 1000:10.3f}")
print(json.dumps({"mode": "throughput", "n": n, "completed": len(lat), "in_flight": int(in_flight), "fsync": fsync, "actions_per_s": n / elapsed,
                  "requests_per_s": int(requests) / elapsed, "peak_rss_mb": int(maxrss) / 1024, "p50_ms": pct(0.5) * 1000,
                  "p99_ms": pct(0.99) * 1000, "cpu_s_per_1k": cpu / n * 1000}))
PY
}

# cpu_ticks PID: utime and stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat,
# counted after the command name, which may hold spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }

cpu() {
  start_sim
  gen_actions "$n" ""
  write_config $'initial_delay = "5ms"\ninterval = "20ms"' "$in_flight" "$work/actions.jsonl"
  local sim_user0 sim_sys0 sim_user1 sim_sys1
  read -r sim_user0 sim_sys0 < <(cpu_ticks "$sim_pid")
  # The daemon runs under a small supervisor that waits for its exit without reaping it
  # (waitid WNOWAIT), reads /proc/PID/stat of the zombie (every thread's time is in it
  # then), and only then reaps it.
  AW_BENCH_SECRET=simulator-secret python3 - "$limit" "$kill_grace" "$work/daemon.cpu" "$bin" run --once -c "$work/config.toml" \
    >"$work/summary.txt" 2>"$work/daemon.log" <<'PY'
import os, signal, subprocess, sys, time
limit, grace, out, argv = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
started = time.monotonic()
child = subprocess.Popen(argv)
deadline, killed = started + limit, False
while True:
    info = os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    if info is not None and info.si_pid == child.pid:
        break
    now = time.monotonic()
    if now > deadline and not killed:
        child.send_signal(signal.SIGTERM)
        deadline, killed = now + grace, True
    elif now > deadline:
        child.kill()
    time.sleep(0.02)
wall = time.monotonic() - started
with open(f"/proc/{child.pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
user, system = int(fields[11]), int(fields[12])
code = child.wait()
with open(out, "w") as f:
    f.write(f"{wall} {user} {system} {code} {int(killed)}\n")
PY
  local wall user system code killed
  read -r wall user system code killed <"$work/daemon.cpu"
  [ "$killed" = 0 ] || { echo "run --once did not finish within ${limit}s" >&2; exit 1; }
  [ "$code" = 0 ] || { echo "run --once exited $code" >&2; tail -20 "$work/daemon.log" >&2; exit 1; }
  read -r sim_user1 sim_sys1 < <(cpu_ticks "$sim_pid")
  requests=$(stat "['requests_by_endpoint']['submit']+d['requests_by_endpoint']['poll']+d['requests_by_endpoint']['token']")
  python3 - "$work/audit.jsonl" "$n" "$in_flight" "$fsync" "$(getconf CLK_TCK)" "$wall" "$user" "$system" \
    "$((sim_user1 - sim_user0))" "$((sim_sys1 - sim_sys0))" "$requests" <<'PY'
import json, sys
path, n, in_flight, fsync, hz, wall, user, system, sim_user, sim_system, requests = sys.argv[1:]
n, hz, wall, requests = int(n), int(hz), float(wall), int(requests)
user, system, sim_user, sim_system = int(user), int(system), int(sim_user), int(sim_system)
sim = sim_user + sim_system
done = sum(1 for r in map(json.loads, open(path)) if r["event_type"] == "ACTION_COMPLETED")
assert done == n, f"{done} outcomes for {n} actions"
us = lambda ticks: ticks / hz / n * 1e6
daemon = us(user + system)
simulator = us(sim)
ratio = daemon / simulator if sim > 0 else None
print(f"mode=cpu n={n} in_flight={in_flight} fsync={fsync} (CLK_TCK {hz})")
print(f"  daemon CPU us/action     {daemon:8.1f}  (user {us(user):.1f}, system {us(system):.1f})")
print(f"  simulator CPU us/action  {simulator:8.1f}  (user {us(sim_user):.1f}, system {us(sim_system):.1f})")
print(f"  ratio daemon/simulator   {ratio:8.2f}" if ratio else "  ratio daemon/simulator        -  (simulator used no tick)")
print(f"  actions/s                {n / wall:8.0f}  ({wall:.2f} s, {requests} CXone requests)")
print(json.dumps({"mode": "cpu", "n": n, "completed": done, "in_flight": int(in_flight), "fsync": fsync, "clk_tck": hz,
                  "daemon_us_per_action": daemon, "daemon_user_us": us(user), "daemon_system_us": us(system),
                  "simulator_us_per_action": simulator, "simulator_user_us": us(sim_user), "simulator_system_us": us(sim_system),
                  "ratio": ratio, "actions_per_s": n / wall, "wall_s": wall,
                  "requests": requests}))
PY
}

inflight() {
  start_sim
  gen_actions "$n" ', "sim": {"duration": "10m"}'
  write_config $'initial_delay = "5m"\ninterval = "5m"\nmax_interval = "5m"\ntimeout = "2h"' "$n" "$work/actions.jsonl"
  AW_BENCH_SECRET=simulator-secret "$bin" run --once -c "$work/config.toml" >/dev/null 2>"$work/daemon.log" &
  daemon_pid=$!
  sleep 0.3
  base_kb=$(awk '/VmRSS/ {print $2}' "/proc/$daemon_pid/status")
  started=$(date +%s.%N)
  wait_for "$limit" "$n actions submitted" all_submitted
  sleep 1 # let the last polling states be journaled and settle
  rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$daemon_pid/status")
  hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$daemon_pid/status")
  created=$(stat "['actions_created']")
  took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
  kill -TERM "$daemon_pid"
  wait_for "$limit" "the daemon to stop after SIGTERM" daemon_gone
  wait "$daemon_pid" || true
  daemon_pid=""
  python3 - "$n" "$base_kb" "$rss_kb" "$hwm_kb" "$took" "$created" <<'PY'
import json, sys
n, base, rss, hwm, took, created = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
print(f"mode=inflight n={n}")
print(f"  all submitted in   {took} s")
print(f"  RSS MB             {rss / 1024:10.1f}  (peak {hwm / 1024:.1f}, at start {base / 1024:.1f})")
print(f"  bytes per action   {(rss - base) * 1024 / n:10.0f}")
print(json.dumps({"mode": "inflight", "n": n, "submitted": created, "rss_mb": rss / 1024, "peak_rss_mb": hwm / 1024,
                  "bytes_per_action": (rss - base) * 1024 / n}))
PY
}

# True once the simulator created every action; fails the script if the daemon died.
all_submitted() {
  kill -0 "$daemon_pid" 2>/dev/null || { echo "daemon died" >&2; tail "$work/daemon.log" >&2; exit 1; }
  [ "$(stat "['actions_created']")" -ge "$n" ]
}

daemon_gone() { ! kill -0 "$daemon_pid" 2>/dev/null; }

loopback() {
  command -v wrk >/dev/null || { echo "loopback mode needs wrk (apt-get install wrk)" >&2; exit 1; }
  start_sim
  token=$(curl -fsS -m "$http_secs" -d grant_type=client_credentials -d client_id=simulator -d client_secret=simulator-secret "$sim_url/oauth/token" \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
  id=$(curl -fsS -m "$http_secs" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"actionType":"X","payload":{"n":1}}' "$sim_url/api/v2/data/actions" | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
  echo "mode=loopback (wrk, 2 threads, 64 connections, ${wrk_secs}s, GET poll)"
  timeout -k "$kill_grace" "$((wrk_secs + 30))" wrk -t2 -c64 -d"${wrk_secs}s" -H "Authorization: Bearer $token" "$sim_url/api/v2/data/actions/$id" | sed 's/^/  /'
}

# timed NAME ARGS...: runs `actionwarden ARGS` under GNU time (wall, user, sys seconds
# and peak RSS KB into $work/NAME.time), stdout into NAME.out, stderr into NAME.log;
# fails the script unless it exits 0 within --timeout.
timed() {
  local name=$1 code
  shift
  set +e
  AW_BENCH_SECRET=simulator-secret timeout -k "$kill_grace" "$limit" /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" \
    "$bin" "$@" >"$work/$name.out" 2>"$work/$name.log"
  code=$?
  set -e
  [ "$code" != 124 ] && [ "$code" != 137 ] || { echo "$name did not finish within ${limit}s" >&2; exit 1; }
  [ "$code" = 0 ] || { echo "$name exited $code" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
}

scale() {
  start_sim
  gen_actions "$n" ""
  write_config $'initial_delay = "5ms"\ninterval = "20ms"' "$in_flight" "$work/actions.jsonl"
  # Per-action lines stay quiet; the daemon's own lines (loading, running) are kept.
  sed -i 's/^level = "warn"$/level = "warn,actionwarden::app=info"/' "$work/config.toml"
  local launched submits
  launched=$(date +%s.%N)
  timed run run --once -c "$work/config.toml"
  submits=$(stat "['submits']")
  timed rerun run --once -c "$work/config.toml"
  [ "$(stat "['submits']")" = "$submits" ] || { echo "the re-run submitted actions" >&2; exit 1; }
  timed status status -c "$work/config.toml"
  timed dlq dlq list -c "$work/config.toml"
  "$bin" status --json -c "$work/config.toml" >"$work/status.json"
  local bytes=0 f
  for f in "$work/journal" "$work/journal-wal"; do
    [ -f "$f" ] && bytes=$((bytes + $(stat_size "$f")))
  done
  python3 - "$work" "$n" "$in_flight" "$fsync" "$launched" "$bytes" <<'PY'
import json, sys
from datetime import datetime, timezone
work, n, in_flight, fsync, launched, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
def timing(name):
    elapsed, user, sys_, rss = open(f"{work}/{name}.time").read().split()[-4:]
    return float(elapsed), int(rss) / 1024
def logged_at(line):
    # "2026-11-27T23:13:18.219064Z  INFO ...": fixed-width UTC timestamps.
    stamp = line.split()[0].rstrip("Z")
    whole, _, frac = stamp.partition(".")
    at = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return at + (float("0." + frac) if frac else 0.0)
loaded = [l for l in open(f"{work}/run.log") if "Actions loaded into the journal." in l]
assert loaded, "no loading line in the daemon's log"
assert f"new={n}" in loaded[0], f"expected new={n}: {loaded[0]}"
load_s = logged_at(loaded[0]) - launched
status = json.load(open(f"{work}/status.json"))
completed = status["batches"]["bench"]["states"]["completed"]
assert completed == n, f"{completed} of {n} completed"
run_s, run_mb = timing("run")
rerun_s, rerun_mb = timing("rerun")
status_s, status_mb = timing("status")
dlq_s, dlq_mb = timing("dlq")
report = {"mode": "scale", "n": n, "completed": completed, "in_flight": in_flight, "fsync": fsync,
          "run_s": run_s, "run_peak_rss_mb": run_mb, "actions_per_s": n / run_s,
          "load_s": load_s, "load_actions_per_s": n / load_s if load_s > 0 else 0.0,
          "rerun_s": rerun_s, "rerun_peak_rss_mb": rerun_mb, "rerun_submits": 0,
          "status_s": status_s, "status_peak_rss_mb": status_mb, "dlq_s": dlq_s, "dlq_peak_rss_mb": dlq_mb,
          "journal_bytes_per_action": size / n}
print(f"mode=scale n={n} in_flight={in_flight} fsync={fsync}                  (targets at 1,000,000)")
print(f"  run --once         {run_s:8.2f} s  {run_mb:7.1f} MB peak  ({n / run_s:.0f} actions/s)   <= 150 MB")
print(f"  loading            {load_s:8.2f} s  {report['load_actions_per_s']:9.0f} actions/s             >= 200,000/s")
print(f"  re-run (no work)   {rerun_s:8.2f} s  {rerun_mb:7.1f} MB peak                        <= 3 s, 150 MB")
print(f"  status             {status_s:8.2f} s  {status_mb:7.1f} MB peak                        <= 1 s, 64 MB")
print(f"  dlq list           {dlq_s:8.2f} s  {dlq_mb:7.1f} MB peak                        <= 1 s, 64 MB")
print(f"  journal            {size / n:8.0f} bytes per action ({size / 1048576:.1f} MB)")
print(json.dumps(report))
PY
}

stat_size() { command stat -c %s "$1"; }

# ---- PostgreSQL (docs/cluster.md): --backend postgres, the cluster and failover modes ----

pg_url=${ACTIONWARDEN_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
# The daemons read the URL from this variable (their journal.url_env).
export AW_BENCH_DATABASE_URL=$pg_url
pg_used="" member_pids=""
# The failover mode's cluster timings: the documented heartbeat, a short lease.
fo_lease_s=5 fo_heartbeat_s=1

# pg SQL: runs SQL on the benchmark's server; prints the rows unaligned.
pg() { timeout -k "$kill_grace" "$http_secs" psql "$pg_url" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# The server's URL without credentials, for messages.
pg_shown() { sed -E 's#//[^@/]*@#//#' <<<"$pg_url"; }

pg_check() {
  command -v psql >/dev/null || { echo "the PostgreSQL modes need psql (postgresql-client)" >&2; exit 1; }
  pg 'SELECT 1' >/dev/null 2>&1 || { echo "PostgreSQL not reachable at $(pg_shown)" >&2; exit 1; }
  pg_used=1
}

# pg_schema LABEL: this run's schema for LABEL (a daemon creates it; pg_cleanup drops it).
pg_schema() { echo "aw_bench_$$_$1"; }

# Stops the members still running (each in the process group of its `timeout`) and drops
# this run's schemas.
pg_cleanup() {
  local pid schema
  for pid in $member_pids; do kill -9 -- "-$pid" 2>/dev/null || true; done
  [ -n "$pg_used" ] || return 0
  for schema in $(pg "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'aw\_bench\_$$\_%'" 2>/dev/null); do
    pg "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  done
  return 0
}

# pg_member IN OUT NAME AUDIT SCHEMA [LEASE_S HEARTBEAT_S]: OUT is write_config's IN as
# cluster member NAME on SCHEMA, appending to its own audit file AUDIT.
pg_member() {
  local cluster="[cluster]"$'\n'"instance_name = \"$3\""
  [ -z "${6:-}" ] || cluster+=$'\n'"heartbeat = \"${7}s\""$'\n'"lease_timeout = \"${6}s\""
  sed -e "s|^\[journal\]\$|[journal]\nbackend = \"postgres\"\nurl_env = \"AW_BENCH_DATABASE_URL\"\nschema = \"$5\"|" \
    -e "s|^path = \"$work/audit.jsonl\"\$|path = \"$4\"|" "$1" >"$2.new"
  echo "$cluster" >>"$2.new"
  mv "$2.new" "$2"
}

# fresh_sim POLL_TABLE: a new simulator (no actions, no idempotency keys, zero counts) and
# $work/config.toml pointing at it.
fresh_sim() {
  if [ -n "$sim_pid" ]; then
    kill "$sim_pid"
    wait_for "$sim_start_secs" "the simulator to stop" sim_gone
    sim_pid=""
  fi
  start_sim
  write_config "$1" "$in_flight" "$work/actions.jsonl"
}

sim_gone() { ! kill -0 "$sim_pid" 2>/dev/null; }

# launch NAME CONFIG: `run --once -c CONFIG` in the background under GNU time
# ($work/NAME.time) and --timeout, whose process group `kill -9 -- -PID` ends whole.
# Its pid is in $launched.
launch() {
  AW_BENCH_SECRET=simulator-secret timeout -k "$kill_grace" "$limit" /usr/bin/time -f '%e %U %S %M' -o "$work/$1.time" \
    "$bin" run --once -c "$2" >"$work/$1.out" 2>"$work/$1.log" &
  launched=$!
  member_pids+=" $launched"
}

# finish NAME PID: waits for a launched member (--timeout is its deadline); fails unless
# it exited 0.
finish() {
  local code=0
  wait "$2" || code=$?
  [ "$code" != 124 ] && [ "$code" != 137 ] || { echo "$1 did not finish within ${limit}s" >&2; exit 1; }
  [ "$code" = 0 ] || { echo "$1 exited $code" >&2; tail -20 "$work/$1.log" >&2; exit 1; }
}

# cluster_phase LABEL NAME...: members NAME... on a fresh schema and simulator run the
# actions file together; $work/LABEL.wall gets the seconds from the first launch until
# the last member exits.
cluster_phase() {
  local label=$1 name started i=0 pids=()
  shift
  fresh_sim $'initial_delay = "5ms"\ninterval = "20ms"'
  for name in "$@"; do
    pg_member "$work/config.toml" "$work/$name.toml" "$name" "$work/$name.audit.jsonl" "$(pg_schema "$label")"
  done
  started=$(date +%s.%N)
  for name in "$@"; do
    launch "$name" "$work/$name.toml"
    pids+=("$launched")
  done
  for name in "$@"; do
    finish "$name" "${pids[$i]}"
    i=$((i + 1))
  done
  python3 -c "import time; print(time.time() - $started)" >"$work/$label.wall"
}

cluster() {
  gen_actions "$n" ""
  cluster_phase one solo
  cluster_phase two a b
  python3 - "$work" "$n" "$in_flight" "$fsync" <<'PY'
import json, sys
work, n, in_flight, fsync = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def completed(name):
    return sum(1 for r in map(json.loads, open(f"{work}/{name}.audit.jsonl")) if r["event_type"] == "ACTION_COMPLETED")
wall = {label: float(open(f"{work}/{label}.wall").read()) for label in ("one", "two")}
solo, a, b = completed("solo"), completed("a"), completed("b")
assert solo == n, f"one instance: {solo} outcomes for {n} actions"
assert a + b == n, f"two instances: {a} + {b} outcomes for {n} actions"
ratio = wall["two"] / wall["one"]
print(f"mode=cluster n={n} in_flight={in_flight} (per instance) audit fsync={fsync}")
print(f"  one instance       {wall['one']:8.2f} s  {n / wall['one']:8.0f} actions/s")
print(f"  two instances      {wall['two']:8.2f} s  {n / wall['two']:8.0f} actions/s   (a {a / n:.0%}, b {b / n:.0%})")
print(f"  two / one          {ratio:8.2f}                            <= 1")
print(json.dumps({"mode": "cluster", "n": n, "in_flight": in_flight, "fsync": fsync, "completed_one": solo, "completed_two": a + b,
                  "one_s": wall["one"], "two_s": wall["two"], "one_actions_per_s": n / wall["one"],
                  "two_actions_per_s": n / wall["two"], "ratio": ratio, "share_a": a / n, "share_b": b / n}))
PY
}

# pg_count SQL: the count SQL selects, or nothing while the schema does not exist yet.
pg_count() { pg "$1" 2>/dev/null || true; }

# True once every action is `polling` under member a of schema $1.
all_polling() { [ "$(pg_count "SELECT count(*) FROM $1.actions WHERE state = 'polling'")" -ge "$n" ] 2>/dev/null; }

# True once member $2 registered in schema $1.
registered() { [ "$(pg_count "SELECT count(*) FROM $1.instances WHERE name = '$2'")" -ge 1 ] 2>/dev/null; }

# failover_run R: member a holds every action `polling`, b has started; a is killed; b
# rescues and finishes them. Appends the run's figures to $work/failover.jsonl.
failover_run() {
  local schema a b held killed_ms created
  schema=$(pg_schema "failover$1")
  fresh_sim $'initial_delay = "1s"\ninterval = "1s"'
  for name in a b; do
    pg_member "$work/config.toml" "$work/$name$1.toml" "$name" "$work/$name$1.audit.jsonl" "$schema" "$fo_lease_s" "$fo_heartbeat_s"
  done
  launch "a$1" "$work/a$1.toml"
  a=$launched
  wait_for "$limit" "member a to hold every action polling" all_polling "$schema"
  launch "b$1" "$work/b$1.toml"
  b=$launched
  wait_for "$limit" "member b to register" registered "$schema" b
  held=$(pg "SELECT count(*) FROM $schema.actions x JOIN $schema.instances i ON x.owner = i.id
             WHERE i.name = 'a' AND x.state = 'polling'")
  killed_ms=$(date +%s%3N)
  { kill -9 -- "-$a" && wait "$a"; } 2>/dev/null || true
  finish "b$1" "$b"
  created=$(stat "['actions_created']")
  # The first event each action got from the survivor's claim, when the survivor took
  # it over (its clock: the same host).
  taken=$(pg "SELECT count(*), min(at_ms), max(at_ms) FROM (SELECT min(at_ms) AS at_ms FROM $schema.history
              WHERE instance = 'b' AND detail LIKE 'taken over%' GROUP BY action) t")
  python3 - "$work" "$1" "$n" "$held" "$killed_ms" "$created" "$taken" >>"$work/failover.jsonl" <<'PY'
import json, sys
work, run, n, held, killed_ms, created = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rescued, first, last = sys.argv[7].split("|")
assert int(rescued) > 0, "the survivor took nothing over"
outcomes = sum(1 for name in ("a", "b") for r in map(json.loads, open(f"{work}/{name}{run}.audit.jsonl"))
               if r["event_type"] == "ACTION_COMPLETED")
assert outcomes == n, f"{outcomes} outcomes for {n} actions"
assert created == n, f"{created} actions created upstream for {n}: a rescue submitted again"
print(json.dumps({"held_at_kill": held, "rescued": int(rescued), "first_rescue_s": (int(first) - killed_ms) / 1000,
                  "last_rescue_s": (int(last) - killed_ms) / 1000}))
PY
}

failover() {
  gen_actions "$n" ', "sim": {"duration": "15s"}'
  local run
  for run in $(seq 1 "$runs"); do failover_run "$run"; done
  python3 - "$work/failover.jsonl" "$n" "$fo_lease_s" "$fo_heartbeat_s" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
n, lease, heartbeat = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
target = lease + 2
print(f"mode=failover n={n} lease_timeout={lease}s heartbeat={heartbeat}s    (target: running again within {target} s)")
for i, r in enumerate(runs, 1):
    print(f"  run {i}: {r['held_at_kill']} polling at the kill, {r['rescued']} taken over; "
          f"first {r['first_rescue_s']:.2f} s, last {r['last_rescue_s']:.2f} s after the kill")
worst = max(r["last_rescue_s"] for r in runs)
print(json.dumps({"mode": "failover", "n": n, "runs": len(runs), "lease_s": lease, "heartbeat_s": heartbeat, "target_s": target,
                  "held_at_kill": [r["held_at_kill"] for r in runs], "rescued": [r["rescued"] for r in runs],
                  "first_rescue_s": [r["first_rescue_s"] for r in runs], "last_rescue_s": [r["last_rescue_s"] for r in runs],
                  "within_target": worst <= target}))
PY
}

case "$mode" in
  throughput) [ "$backend" = sqlite ] || pg_check; throughput ;;
  cpu) cpu ;;
  cluster) pg_check; cluster ;;
  failover) pg_check; failover ;;
  inflight) inflight ;;
  scale) scale ;;
  loopback) loopback ;;
  all) throughput; kill "$sim_pid"; sim_pid=""; loopback ;;
  *) echo "unknown mode $mode" >&2; exit 1 ;;
esac
