#!/usr/bin/env bash
# Benchmark (not a test): webhook → CEL transform → outbound POST to a local sink, for the
# Switchboard worker (durable queue and synchronous modes), side by side in one run with
#   (a) nginx proxy_pass to the same sink: the ceiling of an HTTP hop on this machine;
#   (b) Node-RED running the equivalent flow (http in → function → http request → response).
# The sink is nginx answering 204. wrk drives each for the same time and connections.
# Prints requests/s, p50/p99 latency, worker RSS (idle and peak), and the ratios.
#   bench/worker/run.sh [seconds=20] [connections=64] [rounds=4]
# nginx, Node-RED and the worker's two modes each get `seconds` in all, in `rounds`
# alternating slices (nginx, Node-RED, durable, synchronous, nginx, ...): requests/s of one
# system move ±15% within a minute on a shared machine, so the ratios are taken per round,
# beside each other, and the median is what counts. Each system gets 2 s of unmeasured
# warm-up first (idle RSS is read before it).
# Installs what is missing: wrk and nginx (Debian), node-red (npm, into bench/worker/.cache).
# SWITCHBOARD_BIN=path runs that binary instead of building this checkout (to compare two
# builds under the same conditions, one run after the other).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-20}"
connections="${2:-64}"
rounds="${3:-4}"
slice=$(( seconds / rounds > 2 ? seconds / rounds : 2 ))
threads=2
source "$here/common.sh"
SINK=$(free_port) PROXY=$(free_port) NODERED=$(free_port)
need_apt wrk wrk
need_apt nginx nginx
if [ ! -f "$here/.cache/node_modules/node-red/red.js" ]; then
  mkdir -p "$here/.cache"
  npm install --silent --no-audit --no-fund --prefix "$here/.cache" node-red@4 >/dev/null
fi

# nginx: the sink (204) and the proxy_pass ceiling, one master, two worker processes.
start_nginx 2 "
  upstream sink { server 127.0.0.1:$SINK; keepalive 128; }
  server {
    listen 127.0.0.1:$PROXY;
    location /hook {
      proxy_pass http://sink/sink;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
wait_port "$SINK"; wait_port "$PROXY"

# Node-RED with the equivalent flow.
mkdir -p "$work/nodered"
sed "s/SINK_PORT/$SINK/" "$here/flows.json" > "$work/nodered/flows.json"
node "$here/.cache/node_modules/node-red/red.js" --port "$NODERED" --userDir "$work/nodered" \
  "$work/nodered/flows.json" >"$work/nodered.log" 2>&1 &
NODERED_PID=$!
pids+=($!)

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# One wrk run of SECONDS against URL, appended to $work/runs.tsv as NAME, requests/s, p50, p99
# and non-2xx answers.
run_wrk() { # name url seconds
  local out
  out="$(wrk -t"$threads" -c"$connections" -d"${3}s" --latency -s "$here/post.lua" "$2")"
  echo "$out" >> "$work/wrk-$1.txt"
  awk -v name="$1" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /m$/) return v * 60000; return v * 1000 }
    /^Requests\/sec:/ {rps = $2} $1 == "50%" {p50 = ms($2)} $1 == "99%" {p99 = ms($2)} /Non-2xx/ {bad = $NF}
    END {printf "%s\t%s\t%s\t%s\t%d\n", name, rps, p50, p99, bad}' <<<"$out" >> "$work/runs.tsv"
}

# A short warm-up of each system before it is measured: the first seconds under load open the
# connections to the sink, grow the allocators' heaps and (for Node-RED) let V8 compile the
# flow; the first round of each worker mode used to pay this alone (0.36 of nginx where the
# later rounds of the same run gave 0.44 to 0.53).
warm_up() { wrk -t"$threads" -c"$connections" -d2s -s "$here/post.lua" "$1" >/dev/null; }

echo "== nginx, Node-RED and the worker in $rounds alternating rounds of ${slice}s ($connections connections, $threads wrk threads)"
wait_port "$NODERED"
# The port opens before the flow is deployed: wait for the flow to answer.
for _ in $(seq 1 150); do
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"severity":"info"}'     "http://127.0.0.1:$NODERED/hook" && break
  sleep 0.2
done
warm_up "http://127.0.0.1:$NODERED/hook"

# Both workers run from the start (on their own ports and data directories); the one not
# driven idles.
declare -A WPID WPORT APORT IDLE NOTE
for mode in durable synchronous; do
  WORKER=$(free_port) ADMIN=$(free_port)
  WPORT[$mode]=$WORKER; APORT[$mode]=$ADMIN
  worker_config "$mode" > "$work/worker-$mode.yaml"
  "$bin" worker --config "$work/worker-$mode.yaml" --inbound-addr "127.0.0.1:$WORKER" \
    --admin-addr "127.0.0.1:$ADMIN" >"$work/worker-$mode.log" 2>&1 &
  WPID[$mode]=$!
  pids+=($!)
  wait_port "$WORKER"; wait_port "$ADMIN"
done
sleep 1
for mode in durable synchronous; do IDLE[$mode]="$(rss_kib "${WPID[$mode]}")"; done

# The same unmeasured warm-up for nginx and both worker modes (see warm_up above).
warm_up "http://127.0.0.1:$PROXY/hook"
for mode in durable synchronous; do warm_up "http://127.0.0.1:${WPORT[$mode]}/hook"; done

for round in $(seq 1 "$rounds"); do
  run_wrk nginx "http://127.0.0.1:$PROXY/hook" "$slice"
  run_wrk node-red "http://127.0.0.1:$NODERED/hook" "$slice"
  for mode in durable synchronous; do
    run_wrk "worker-$mode" "http://127.0.0.1:${WPORT[$mode]}/hook" "$slice"
  done
  echo "   round $round of $rounds done"
done

for mode in durable synchronous; do
  # Durable mode acknowledges on disk; wait for the queue to drain to the sink.
  admin="http://127.0.0.1:${APORT[$mode]}"
  drain_start=$(date +%s.%N)
  for _ in $(seq 1 600); do
    depth="$(curl -s "$admin/status" | sed -n 's/.*"queueDepth":\([0-9]*\).*/\1/p')"
    [ "$depth" = "0" ] && break
    sleep 0.1
  done
  drain=$(echo "$(date +%s.%N) - $drain_start" | bc)
  status="$(curl -s "$admin/status")"
  delivered="$(sed -n 's/.*"delivered":\([0-9]*\).*/\1/p' <<<"$status")"
  accepted="$(sed -n 's/.*"accepted":\([0-9]*\).*/\1/p' <<<"$status")"
  dead="$(sed -n 's/.*"deadLettered":\([0-9]*\).*/\1/p' <<<"$status")"
  peak="$(hwm_kib "${WPID[$mode]}")"
  printf 'worker-%s\taccepted %s, delivered %s, dead-lettered %s, drain %.1fs; RSS idle %s MiB, peak %s MiB\t%s\n' \
    "$mode" "$accepted" "$delivered" "$dead" "$drain" "$((IDLE[$mode] / 1024))" "$((peak / 1024))" "${IDLE[$mode]}" >> "$work/notes.tsv"
  kill -TERM "${WPID[$mode]}"; wait "${WPID[$mode]}" || true
done
kill "$NODERED_PID" 2>/dev/null || true
pids=()

python3 - "$work/runs.tsv" "$work/notes.tsv" <<'PY'
import statistics, sys
runs, notes = {}, {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, bad = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append((float(rps), float(p50), float(p99), int(bad)))
for line in open(sys.argv[2]):
    name, note, idle = line.rstrip("\n").split("\t")
    notes[name] = (note, int(idle))
print(f"\n{'system':<20} {'requests/s':>12} {'p50':>10} {'p99':>10}  notes")
for name in ["nginx", "node-red", "worker-durable", "worker-synchronous"]:
    rs = runs[name]
    rps = statistics.mean(r[0] for r in rs)
    p50 = statistics.median(r[1] for r in rs)
    p99 = statistics.median(r[2] for r in rs)
    note = notes.get(name, ("",))[0]
    bad = sum(r[3] for r in rs)
    note = (f"non-2xx: {bad}; " if bad else "") + note
    print(f"{name:<20} {rps:>12.2f} {p50:>8.2f}ms {p99:>8.2f}ms  {note}")
def per_round(name):
    return [w[0] / n[0] for w, n in zip(runs[name], runs["nginx"])]
def show(label, ratios, target=None):
    spread = " ".join(f"{r:.2f}" for r in ratios)
    goal = f"   (target >= {target:.2f})" if target else ""
    print(f"{label:<36}: {statistics.median(ratios):.2f} median of rounds [{spread}]{goal}")
print()
show("worker (durable) / nginx proxy_pass", per_round("worker-durable"), 0.40)
by_round = zip(runs["worker-durable"], runs["node-red"])
show("worker (durable) / Node-RED", [w[0] / n[0] for w, n in by_round], 10)
show("worker (synchronous) / nginx", per_round("worker-synchronous"))
idle = notes["worker-durable"][1]
print(f"{'worker idle RSS':<36}: {idle // 1024} MiB ({idle} KiB)   (target < 30 MiB)")
PY
