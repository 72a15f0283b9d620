#!/usr/bin/env bash
# actionwarden benchmark (SPEC §16). See README "Performance" and BENCHMARKS.md.
#
#   benches/bench.sh [--mode throughput|inflight|loopback|all] [--n N] [--in-flight K]
#                    [--fsync on|off] [--bin PATH] [--duration SECS]
#
# throughput: N actions through `run --once` against `simulate --profile clean` (a
#             separate process); reports actions/s, CXone requests/s, peak RSS, p50/p99
#             action duration and CPU seconds per 1,000 actions.
# inflight:   N actions held in flight (long simulated duration, long poll interval);
#             reports RSS and bytes per in-flight action once all are submitted.
# loopback:   the simulator's own capacity under wrk (needs wrk), to put the daemon's
#             requests/s in proportion.
set -euo pipefail

mode=throughput n=10000 in_flight=1000 fsync=off bin="" wrk_secs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    --fsync) fsync=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --duration) wrk_secs=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done
case "$fsync" in on) fsync_toml=true ;; off) fsync_toml=false ;; *) echo "--fsync on|off" >&2; exit 1 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --quiet)
  bin="$root/target/release/actionwarden"
fi
work=$(mktemp -d)
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_sim() {
  "$bin" simulate --listen 127.0.0.1:0 --profile clean >"$work/sim.out" 2>/dev/null &
  sim_pid=$!
  for _ in $(seq 1 500); do
    grep -q "listening on" "$work/sim.out" 2>/dev/null && break
    sleep 0.01
  done
  sim_url=$(sed -n 's/^listening on //p' "$work/sim.out")
  [ -n "$sim_url" ] || { echo "simulator did not start" >&2; exit 1; }
}

stat() { curl -fsS "$sim_url/sim/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

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
  set +e
  AW_BENCH_SECRET=simulator-secret /usr/bin/time -f '%e %U %S %M' -o "$work/time" \
    "$bin" run --once -c "$work/config.toml" >"$work/summary.txt" 2>"$work/daemon.log"
  code=$?
  set -e
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
print(json.dumps({"mode": "throughput", "n": n, "in_flight": int(in_flight), "fsync": fsync, "actions_per_s": n / elapsed,
                  "requests_per_s": int(requests) / elapsed, "peak_rss_mb": int(maxrss) / 1024, "p50_ms": pct(0.5) * 1000,
                  "p99_ms": pct(0.99) * 1000, "cpu_s_per_1k": cpu / n * 1000}))
PY
}

inflight() {
  start_sim
  gen_actions "$n" ', "sim": {"duration": "10m"}'
  write_config $'initial_delay = "5m"\ninterval = "5m"\nmax_interval = "5m"\ntimeout = "2h"' "$n" "$work/actions.jsonl"
  AW_BENCH_SECRET=simulator-secret "$bin" run --once -c "$work/config.toml" >/dev/null 2>"$work/daemon.log" &
  daemon=$!
  sleep 0.3
  base_kb=$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")
  started=$(date +%s.%N)
  until [ "$(stat "['actions_created']")" -ge "$n" ]; do
    kill -0 "$daemon" 2>/dev/null || { echo "daemon died" >&2; tail "$work/daemon.log" >&2; exit 1; }
    sleep 0.2
  done
  sleep 1 # let the last polling states be journaled and settle
  rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")
  hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
  took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
  kill -TERM "$daemon"; wait "$daemon" || true
  python3 - "$n" "$base_kb" "$rss_kb" "$hwm_kb" "$took" <<'PY'
import json, sys
n, base, rss, hwm, took = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print(f"mode=inflight n={n}")
print(f"  all submitted in   {took} s")
print(f"  RSS MB             {rss / 1024:10.1f}  (peak {hwm / 1024:.1f}, at start {base / 1024:.1f})")
print(f"  bytes per action   {(rss - base) * 1024 / n:10.0f}")
print(json.dumps({"mode": "inflight", "n": n, "rss_mb": rss / 1024, "peak_rss_mb": hwm / 1024, "bytes_per_action": (rss - base) * 1024 / n}))
PY
}

loopback() {
  command -v wrk >/dev/null || { echo "loopback mode needs wrk (apt-get install wrk)" >&2; exit 1; }
  start_sim
  token=$(curl -fsS -d grant_type=client_credentials -d client_id=simulator -d client_secret=simulator-secret "$sim_url/oauth/token" \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
  id=$(curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"actionType":"X","payload":{"n":1}}' "$sim_url/api/v2/data/actions" | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
  echo "mode=loopback (wrk, 2 threads, 64 connections, ${wrk_secs}s, GET poll)"
  wrk -t2 -c64 -d"${wrk_secs}s" -H "Authorization: Bearer $token" "$sim_url/api/v2/data/actions/$id" | sed 's/^/  /'
}

case "$mode" in
  throughput) throughput ;;
  inflight) inflight ;;
  loopback) loopback ;;
  all) throughput; kill "$sim_pid"; sim_pid=""; loopback ;;
  *) echo "unknown mode $mode" >&2; exit 1 ;;
esac
