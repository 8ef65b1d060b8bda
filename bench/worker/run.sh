#!/usr/bin/env bash
# Benchmark (not a test): webhook → CEL transform → outbound POST to a local sink, for the
# Switchboard worker (durable queue and synchronous modes), side by side in one run with
#   (a) nginx proxy_pass to the same sink: the ceiling of an HTTP hop on this machine;
#   (b) Node-RED running the equivalent flow (http in → function → http request → response).
# The sink is nginx answering 204. wrk drives each for the same time and connections.
# Prints requests/s, p50/p99 latency, worker RSS (idle and peak), and the ratios.
#   bench/worker/run.sh [seconds=20] [connections=64]
# Installs what is missing: wrk and nginx (Debian), node-red (npm, into bench/worker/.cache).
# SWITCHBOARD_BIN=path runs that binary instead of building this checkout (to compare two
# builds under the same conditions, one run after the other).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-20}"
connections="${2:-64}"
threads=2
source "$here/common.sh"
SINK=$(free_port) PROXY=$(free_port) NODERED=$(free_port) WORKER=$(free_port) ADMIN=$(free_port)
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
pids+=($!)

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

declare -A RPS P50 P99 NOTE
run_wrk() { # name url
  local out
  out="$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$here/post.lua" "$2")"
  echo "$out" > "$work/wrk-$1.txt"
  RPS[$1]="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  P50[$1]="$(awk '$1 == "50%" {print $2}' <<<"$out")"
  P99[$1]="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  local non2xx
  non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
  NOTE[$1]="${non2xx:+non-2xx: $non2xx}"
}

echo "== warming up and measuring (${seconds}s each, $connections connections, $threads wrk threads)"
run_wrk nginx "http://127.0.0.1:$PROXY/hook"

wait_port "$NODERED"
run_wrk node-red "http://127.0.0.1:$NODERED/hook"
kill "${pids[0]}"; pids=()

for mode in durable synchronous; do
  worker_config "$mode" > "$work/worker-$mode.yaml"
  "$bin" worker --config "$work/worker-$mode.yaml" --inbound-addr "127.0.0.1:$WORKER" \
    --admin-addr "127.0.0.1:$ADMIN" >"$work/worker-$mode.log" 2>&1 &
  wpid=$!
  pids+=($wpid)
  wait_port "$WORKER"; wait_port "$ADMIN"
  sleep 1
  idle="$(rss_kib "$wpid")"
  run_wrk "worker-$mode" "http://127.0.0.1:$WORKER/hook"
  # Durable mode acknowledges on disk; wait for the queue to drain to the sink.
  drain_start=$(date +%s.%N)
  for _ in $(seq 1 600); do
    depth="$(curl -s "http://127.0.0.1:$ADMIN/status" | sed -n 's/.*"queueDepth":\([0-9]*\).*/\1/p')"
    [ "$depth" = "0" ] && break
    sleep 0.1
  done
  drain=$(echo "$(date +%s.%N) - $drain_start" | bc)
  status="$(curl -s "http://127.0.0.1:$ADMIN/status")"
  delivered="$(sed -n 's/.*"delivered":\([0-9]*\).*/\1/p' <<<"$status")"
  accepted="$(sed -n 's/.*"accepted":\([0-9]*\).*/\1/p' <<<"$status")"
  dead="$(sed -n 's/.*"deadLettered":\([0-9]*\).*/\1/p' <<<"$status")"
  peak="$(hwm_kib "$wpid")"
  NOTE[worker-$mode]="accepted $accepted, delivered $delivered, dead-lettered $dead, drain $(printf "%.1f" "$drain")s; RSS idle $((idle / 1024)) MiB, peak $((peak / 1024)) MiB"
  [ "$mode" = durable ] && idle_durable=$idle
  kill -TERM "$wpid"; wait "$wpid" || true
  pids=()
done

printf '\n%-20s %12s %10s %10s  %s\n' system "requests/s" p50 p99 notes
for name in nginx node-red worker-durable worker-synchronous; do
  printf '%-20s %12s %10s %10s  %s\n' "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "${NOTE[$name]:-}"
done
ratio() { echo "scale=2; $1 / $2" | bc; }
echo
echo "worker (durable) / nginx proxy_pass : $(ratio "${RPS[worker-durable]}" "${RPS[nginx]}")   (target >= 0.40)"
echo "worker (durable) / Node-RED         : $(ratio "${RPS[worker-durable]}" "${RPS[node-red]}")   (target >= 10)"
echo "worker (synchronous) / nginx        : $(ratio "${RPS[worker-synchronous]}" "${RPS[nginx]}")"
echo "worker idle RSS                     : $((idle_durable / 1024)) MiB ($idle_durable KiB)   (target < 30 MiB)"
