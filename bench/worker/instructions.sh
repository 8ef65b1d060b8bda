#!/usr/bin/env bash
# Profiling aid (not a test, not a target check): the worker's user-space instructions per
# event under valgrind's callgrind, and where they go. Instruction counts do not move with
# the machine's load the way requests/s do (runs on this machine differ by ±15%), so they
# show whether a change to the event path made it cheaper, also when the saving is a few
# percent. They leave out the kernel (sockets, fsync) and waiting, which run.sh measures.
#   bench/worker/instructions.sh [seconds=20] [mode=durable|synchronous]
# The same flow as run.sh (webhook → CEL filter and field map → POST to an nginx sink, 204),
# driven by wrk with 8 connections for `seconds` after a warm-up; prints the instructions per
# event of the whole process and of the worker's own functions (inclusive: with what they
# call). Installs what is missing: valgrind, wrk and nginx (Debian).
# SWITCHBOARD_BIN=path profiles that binary instead of building this checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-20}"
mode="${2:-durable}"
source "$here/common.sh"
SINK=$(free_port) WORKER=$(free_port) ADMIN=$(free_port)
need_apt valgrind valgrind
need_apt wrk wrk
need_apt nginx nginx

start_nginx 1

worker_config "$mode" > "$work/worker.yaml"
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$bin" worker --config "$work/worker.yaml" \
  --inbound-addr "127.0.0.1:$WORKER" --admin-addr "127.0.0.1:$ADMIN" >"$work/worker.log" 2>&1 &
vg=$!
pids+=("$vg")
for _ in $(seq 1 120); do
  curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break
  sleep 0.5
done
curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" || { echo "the worker never got ready:" >&2; tail "$work/worker.log" >&2; exit 1; }

count() { curl -s "http://127.0.0.1:$ADMIN/status" | python3 -c 'import json,sys; c=json.load(sys.stdin)["counters"]; print(c["received"], c["delivered"])'; }
echo "warming up (connections, token caches, allocator) ..."
wrk -t1 -c8 -d3s -s "$here/post.lua" "http://127.0.0.1:$WORKER/hook" >/dev/null
sleep 1
callgrind_control -z "$vg" >/dev/null 2>&1
read -r received0 delivered0 < <(count)
echo "measuring for ${seconds}s under callgrind (about 50 times slower than native) ..."
wrk -t1 -c8 -d"${seconds}s" -s "$here/post.lua" "http://127.0.0.1:$WORKER/hook" >/dev/null
sleep 2
read -r received1 delivered1 < <(count)
callgrind_control -d "$vg" >/dev/null 2>&1
kill "$vg"; wait "$vg" 2>/dev/null || true

received=$((received1 - received0)); delivered=$((delivered1 - delivered0))
events=$(( received > delivered ? received : delivered ))
[ "$events" -gt 0 ] || { echo "no event went through; see the worker log:" >&2; tail "$work/worker.log" >&2; exit 1; }
dump=$(ls "$work"/callgrind.out.* | sort | tail -1)
echo "events: $received received, $delivered delivered ($mode mode)"
cat > "$work/summary.py" <<'PY'
import re, sys
events = int(sys.argv[1])
# The libraries an event passes through, shown beside the worker's own functions.
LIBRARY = (r"axum::serve::handle_connection|reqwest::async_impl::client::Client::execute |"
           r"reqwest::async_impl::client::Pending as|redb::transactions::WriteTransaction::commit |"
           r"cel::.*Program::execute")
total, rows = None, []
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
    if not m:
        continue
    ir, what = int(m.group(1).replace(",", "")), m.group(2)
    if "PROGRAM TOTALS" in what:
        total = ir
    elif re.search(LIBRARY + r"|switchboard_worker::|switchboard::", what):
        rows.append((ir, re.sub(r"^\?\?\?:", "", what.rsplit(" [", 1)[0])))
print(f"instructions per event: {total / events:,.0f}")
print("the worker's functions and the libraries they call, inclusive, per event:")
seen = set()
for ir, name in rows:
    short = re.sub(r"::\{\{closure\}\}", "", name)
    if short in seen or ir / events < 1000:
        continue
    seen.add(short)
    print(f"  {ir / events:>9,.0f}  {short[:150]}")
PY
callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$dump" 2>/dev/null \
  | python3 "$work/summary.py" "$events"
