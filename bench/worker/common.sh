# Shared by the worker's benchmark commands (sourced, not run): free ports, packages, the binary
# under test, a work directory cleaned up on exit, and the flow they all measure
# (`worker_config MODE`, which reads SINK, WORKER, ADMIN and work). Expects `root` (the
# checkout) to be set; sets `bin`, `work` and `pids`.

# A free loopback port (another process on the machine may hold any fixed one), drawn from
# just below the kernel's ephemeral range, as the tests' free_port does: a port bound to 0
# and released can be taken as the source port of an outgoing connection before nginx or
# Node-RED binds it.
free_port() {
  python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(max(1024, low - 12000), low), 200):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
PY
}

need_apt() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }

wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# nginx with WORKERS worker processes, serving the sink (204 on 127.0.0.1:$SINK/sink) and
# whatever else the http block text EXTRA adds.
start_nginx() {
  mkdir -p "$work/nginx"
  cat > "$work/nginx.conf" <<NGINX
worker_processes $1;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$SINK; location /sink { return 204; } }
  ${2:-}
}
NGINX
  nginx -c "$work/nginx.conf" -p "$work/nginx"
}

# SWITCHBOARD_BIN=path runs that binary instead of building this checkout.
if [ -n "${SWITCHBOARD_BIN:-}" ]; then
  bin="$SWITCHBOARD_BIN"
else
  cargo build --quiet --release -p switchboard --manifest-path "$root/Cargo.toml"
  bin="${CARGO_TARGET_DIR:-$root/target}/release/switchboard"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT

# The worker: webhook → CEL filter and field map → POST to the sink.
worker_config() {
  cat <<YAML
apiVersion: worker.switchboard.dev/v1
kind: WorkerConfig
subject: {kind: Integration, namespace: bench, name: webhook-to-sink}
owner: {team: bench, contact: bench@example.com}
source:
  type: webhook
  path: /hook
  auth: {type: none, toleranceSeconds: 300}
  maxBodyBytes: 65536
transform:
  filter: "body.severity != 'debug'"
  fieldMap:
    id: body.id
    title: "body.title + ' (' + body.host + ')'"
targets:
- name: sink
  type: outboundMessage
  endpoint:
    name: sink
    url: http://127.0.0.1:$SINK
    protocol: rest
    timeoutMs: 5000
    retry: {maxAttempts: 3, initialBackoffMs: 50, maxBackoffMs: 1000}
    circuitBreaker: {failureThreshold: 1000, openForMs: 1000}
  method:
    name: post
    httpMethod: POST
    path: /sink
    contentType: application/json
    body: '{"id": "\${id}", "title": "\${title}"}'
    variables:
    - {name: id, maxLength: 200}
    - {name: title, maxLength: 1000}
delivery:
  mode: $1
  retry: {maxAttempts: 3, initialBackoffMs: 50, maxBackoffMs: 1000}
  deadLetterRetentionSeconds: 86400
  deadLetterMaxEntries: 100000
  concurrency: 128
egress:
  allowCidrs: [127.0.0.0/8]
server: {inboundPort: $WORKER, adminPort: $ADMIN, dataDir: $work/data-$1, logLevel: warn}
YAML
}
