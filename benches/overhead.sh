#!/usr/bin/env bash
# The overhead harness: regenerates benches/RESULTS.md in one run.
#
# It starts the twin at zero latency and, in front of it, agentcap proxy (recording into a real DuckDB file),
# nginx (a plain reverse proxy, no recording) and mitmdump (flows written to a file, bodies streamed so SSE
# passes). The same loads run against each peer, each interleaved request by request with the twin directly
# (`agentcap bench load|stream --target PEER --compare TWIN`):
#   - non-streamed conversation starts, open loop at each --rates value, then closed loop (maximum throughput);
#   - streamed conversation starts (twin at zero latency: events leave back to back);
#   - paced streams (twin at --paced-tps tokens/s, so every event is its own frame) for agentcap and nginx;
#   - --repeat more runs at --repeat-rate (1,000 req/s) for agentcap and nginx, alternating peers, each one
#     interleaved with the twin as above; with the first run at that rate, the target table counts
#     1 + --repeat runs;
# then, for agentcap only:
#   - N concurrent open streams from a slow twin (--open-streams), proxy RSS and CPU;
#   - a burst (closed loop, non-streamed, then streamed) and the time its recorder takes to catch up;
# and, last, instructions per exchange: agentcap and nginx each under callgrind (valgrind), instrumentation
# switched on once they are up, a closed loop of non-streamed starts for --instr-duration, then (agentcap)
# `POST /flush` so every exchange's recording is counted, then a dump: Ir / exchanges (--no-instructions
# skips it; this machine's VM exposes no hardware counters, so `perf stat -e instructions` cannot count;
# CALLGRIND_KEEP=DIR keeps the dumps).
# Proxy CPU (user + system, from /proc) is read around every run; for agentcap the run's recording is
# flushed into DuckDB before the second reading, so the run's CPU includes recording it in full.
# The micro-bench figures come from the last `cargo bench -p agentcap-benches` (criterion's saved estimates).
#
#   benches/overhead.sh [--rates 500,1000,2000] [--duration 10s] [--stream-requests 200]
#                       [--peers agentcap,nginx,mitmdump] [--open-streams 1000,10000] [--paced-tps 200]
#                       [--repeat 2] [--repeat-rate 1000] [--instr-duration 15s] [--no-instructions]
#                       [--out benches/RESULTS.md] [--quick]
#
# --quick is a smoke mode (seconds): one low rate, few requests, 100 open streams; its figures mean nothing.
# The raw JSON reports go beside the Markdown file (same name, .jsonl). benches/NOTES.md (the analysis, written
# by hand) is appended to the generated file.
#
# It installs the peers when missing (nginx with apt-get, mitmproxy with pip in a venv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/agentcap-bench-venv). AGENTCAP_BIN selects the agentcap binary (default:
# the release build when present, else the debug one, under $CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

cmdline="benches/overhead.sh $*"
rates="500,1000,2000"
duration="10s"
stream_requests=200
peers="agentcap,nginx,mitmdump"
open_streams="1000,10000"
paced_tps=200
out="benches/RESULTS.md"
closed_concurrency=64
burst_duration="5s"
burst_streams=2000
repeat=2
repeat_rate=1000
instr_duration="15s"
instructions=1
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) rates="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --stream-requests) stream_requests="$2"; shift 2 ;;
    --peers) peers="$2"; shift 2 ;;
    --open-streams) open_streams="$2"; shift 2 ;;
    --paced-tps) paced_tps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --repeat-rate) repeat_rate="$2"; shift 2 ;;
    --instr-duration) instr_duration="$2"; shift 2 ;;
    --no-instructions) instructions=0; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "overhead.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then
  rates="100"; duration="2s"; stream_requests=20; open_streams="100"; burst_duration="1s"; burst_streams=50
  repeat=1; repeat_rate=100; instr_duration="3s"
fi

target_dir="$("$(dirname "$0")/../scripts/target-dir")"
if [ -n "${AGENTCAP_BIN:-}" ]; then
  bin="$AGENTCAP_BIN"
elif [ -x "$target_dir/release/agentcap" ]; then
  bin="$target_dir/release/agentcap"
else
  bin="$target_dir/debug/agentcap"
fi
[ -x "$bin" ] || { echo "overhead.sh: no agentcap binary at $bin (cargo build --release -p agentcap, or set AGENTCAP_BIN)" >&2; exit 1; }
echo "== agentcap binary: $bin"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Starts "$@" in the background with stdout in $work/$name.out; waits (START_TRIES tenths of a second, 30 s
# by default) for a line matching $pattern.
start() {
  local name="$1" pattern="$2"; shift 2
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  eval "${name}_pid=$!"
  for _ in $(seq 1 "${START_TRIES:-300}"); do
    if grep -q -- "$pattern" "$work/$name.out" "$work/$name.err" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "overhead.sh: $name did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}

wait_http() {
  for _ in $(seq 1 300); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('$1/v1/agents', timeout=1)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "overhead.sh: nothing answers at $1" >&2; exit 1
}

# CPU seconds (user+system) and RSS (kB) of a process.
cpu_s() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/{print $2}' "/proc/$1/status"; }
metrics() { python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('$1/metrics.json', timeout=5).read().decode())"; }
# POST /flush on an agentcap admin listener: returns once everything its recorder received is in DuckDB.
flush() { python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('$1/flush', data=b'{}', method='POST', headers={'Content-Type': 'application/json'}), timeout=900).read()"; }

# A twin: start_twin NAME ARGS...; sets ${NAME}_url.
start_twin() {
  local name="$1"; shift
  start "$name" "listening on" "$bin" sim --listen 127.0.0.1:0 "$@"
  eval "${name}_url=$(grep -o 'http://[0-9.:]*' "$work/$name.out" | head -1)"
}
# An agentcap proxy recording into its own DuckDB file, admin on: start_proxy NAME UPSTREAM.
start_proxy() {
  local name="$1" upstream="$2"
  start "$name" "listening on" "$bin" proxy --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --upstream "$upstream" --db "$work/$name.duckdb"
  eval "${name}_url=$(grep -o 'listening on http://[0-9.:]*' "$work/$name.out" | sed 's/listening on //')"
  eval "${name}_admin=$(grep -o 'admin http://[0-9.:]*' "$work/$name.out" | sed 's/admin //')"
}

echo "== starting the twins"
start_twin twin --latency zero
start_twin paced --latency zero --tokens-per-sec "$paced_tps"

# nginx_conf PORT PORT2 NAME [MAIN_DIRECTIVES] [UPSTREAM] [UPSTREAM2]: a plain reverse proxy to the twin
# (PORT; or UPSTREAM) and the paced twin (PORT2; or UPSTREAM2), one worker, no access log.
nginx_conf() {
  cat <<CONF
worker_processes 1;
${4:-}
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/$3.pid;
worker_rlimit_nofile 65536;
events { worker_connections 32768; }
http {
  access_log off;
  upstream twin { server $(u="${5:-$twin_url}"; echo "${u#http://}"); keepalive 256; }
  upstream paced { server $(u="${6:-$paced_url}"; echo "${u#http://}"); keepalive 256; }
  server {
    listen 127.0.0.1:$1;
    client_body_buffer_size 1m;
    location / {
      proxy_pass http://twin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
  server {
    listen 127.0.0.1:$2;
    client_body_buffer_size 1m;
    location / {
      proxy_pass http://paced;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
CONF
}

declare -A url pid admin
IFS=',' read -r -a peer_list <<<"$peers"
nginx_paced_url=""
for p in "${peer_list[@]}"; do
  case "$p" in
    agentcap)
      echo "== starting agentcap proxy (recording into $work/agentcap.duckdb)"
      start_proxy agentcap "$twin_url"
      url[agentcap]="$agentcap_url"; pid[agentcap]="$agentcap_pid"; admin[agentcap]="$agentcap_admin"
      start_proxy agentcap_paced "$paced_url"
      ;;
    nginx)
      if ! command -v nginx >/dev/null 2>&1; then
        echo "== installing nginx"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
      fi
      port="$(free_port)"; port2="$(free_port)"
      mkdir -p "$work/nginx/logs"
      nginx_conf "$port" "$port2" nginx >"$work/nginx/nginx.conf"
      echo "== starting nginx on $port (and $port2 for the paced twin)"
      nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' >"$work/nginx.out" 2>"$work/nginx.err" &
      pids+=($!)
      url[nginx]="http://127.0.0.1:$port"
      nginx_paced_url="http://127.0.0.1:$port2"
      wait_http "${url[nginx]}"
      # The worker does the proxying; measure it.
      pid[nginx]="$(pgrep -P "$!" | head -1)"
      ;;
    mitmdump)
      venv="${XDG_CACHE_HOME:-$HOME/.cache}/agentcap-bench-venv"
      if [ ! -x "$venv/bin/mitmdump" ]; then
        echo "== installing mitmproxy into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q mitmproxy
      fi
      port="$(free_port)"
      echo "== starting mitmdump on $port (flows to $work/flows.mitm)"
      "$venv/bin/mitmdump" --mode "reverse:$twin_url" --listen-host 127.0.0.1 --listen-port "$port" \
        -w "$work/flows.mitm" --set stream_large_bodies=1 --set connection_strategy=lazy -q \
        >"$work/mitmdump.out" 2>"$work/mitmdump.err" &
      pids+=($!)
      pid[mitmdump]="$!"
      url[mitmdump]="http://127.0.0.1:$port"
      wait_http "${url[mitmdump]}"
      ;;
    *) echo "overhead.sh: unknown peer $p" >&2; exit 2 ;;
  esac
done

results="$work/results.jsonl"
: >"$results"
# run_bench SECTION PEER PID KIND ARGS...: one `agentcap bench` run; its JSON report plus the peer's CPU and
# RSS over the run and the load average go to $results as one line. With RUN_ADMIN set (an agentcap admin
# URL), the recorder is flushed before the first CPU reading (an earlier run's backlog is not counted) and
# after the run, before the second (this run's recording is, in full). RUN_INDEX tags repeated runs.
run_bench() {
  local section="$1" peer="$2" p="$3" kind="$4"; shift 4
  local c0 c1 t0 t1 f0 f1
  [ -n "${RUN_ADMIN:-}" ] && flush "$RUN_ADMIN"
  c0="$(cpu_s "$p")"; t0="$(date +%s.%N)"
  "$bin" bench "$kind" --format json "$@" >"$work/run.json"
  t1="$(date +%s.%N)"
  f0="$(date +%s.%N)"; [ -n "${RUN_ADMIN:-}" ] && flush "$RUN_ADMIN"; f1="$(date +%s.%N)"
  c1="$(cpu_s "$p")"
  python3 - "$work/run.json" "$section" "$peer" "$c0" "$c1" "$t0" "$t1" "$(rss_kb "$p")" "$(hwm_kb "$p")" \
    "$f0" "$f1" "${RUN_INDEX:-0}" "${RUN_ADMIN:+1}" "$*" >>"$results" <<'PY'
import json, os, sys
path, section, peer, c0, c1, t0, t1, rss, hwm, f0, f1, run, flushed, args = sys.argv[1:]
r = json.load(open(path))
r.update(section=section, peer=peer, args=args, cpu_s=float(c1) - float(c0), wall_s_total=float(t1) - float(t0),
         rss_kb=int(rss), hwm_kb=int(hwm), loadavg=os.getloadavg()[0], run=int(run),
         flushed=bool(flushed), flush_s=float(f1) - float(f0))
print(json.dumps(r))
PY
}

IFS=',' read -r -a rate_list <<<"$rates"
# Peer by peer (in the order given), each peer's loads then its streams: a peer that is still busy after a load
# (agentcap's recorder committing its backlog) then only slows its own later runs.
for p in "${peer_list[@]}"; do
  for rate in "${rate_list[@]}"; do
    echo "== load: $p vs twin at $rate req/s each for $duration"
    RUN_ADMIN="${admin[$p]:-}" RUN_INDEX=1 run_bench load "$p" "${pid[$p]}" load --target "${url[$p]}" \
      --compare "$twin_url" --rate "$rate" --duration "$duration" --warmup 1s --timeout 10s
  done
  echo "== stream: $p vs twin, $stream_requests requests each"
  RUN_ADMIN="${admin[$p]:-}" run_bench stream "$p" "${pid[$p]}" stream --target "${url[$p]}" \
    --compare "$twin_url" --requests "$stream_requests" --warmup 5
done

# More runs at the repeat rate, agentcap and nginx alternating, so the ratio of each run is taken from
# two neighbouring runs on the same machine.
for i in $(seq 2 $(( repeat + 1 ))); do
  for p in agentcap nginx; do
    [ -n "${url[$p]:-}" ] || continue
    echo "== repeat $i: $p vs twin at $repeat_rate req/s each for $duration"
    RUN_ADMIN="${admin[$p]:-}" RUN_INDEX="$i" run_bench load "$p" "${pid[$p]}" load --target "${url[$p]}" \
      --compare "$twin_url" --rate "$repeat_rate" --duration "$duration" --warmup 1s --timeout 10s
  done
done

echo "== maximum throughput (closed loop, $closed_concurrency in flight, $duration): the twin alone, then each peer"
run_bench max direct "$twin_pid" load --target "$twin_url" --rate 0 --concurrency "$closed_concurrency" \
  --duration "$duration" --warmup 1s --timeout 10s
for p in "${peer_list[@]}"; do
  RUN_ADMIN="${admin[$p]:-}" run_bench max "$p" "${pid[$p]}" load --target "${url[$p]}" --rate 0 \
    --concurrency "$closed_concurrency" --duration "$duration" --warmup 1s --timeout 10s
done

paced_n=$(( stream_requests / 2 > 10 ? stream_requests / 2 : 10 ))
if [ -n "${agentcap_paced_url:-}" ]; then
  echo "== paced streams ($paced_tps tokens/s): agentcap vs twin, $paced_n requests each"
  RUN_ADMIN="$agentcap_paced_admin" run_bench paced agentcap "$agentcap_paced_pid" stream \
    --target "$agentcap_paced_url" --compare "$paced_url" --requests "$paced_n" --concurrency 8 --warmup 2
fi
if [ -n "$nginx_paced_url" ]; then
  echo "== paced streams ($paced_tps tokens/s): nginx vs twin, $paced_n requests each"
  run_bench paced nginx "${pid[nginx]}" stream --target "$nginx_paced_url" --compare "$paced_url" \
    --requests "$paced_n" --concurrency 8 --warmup 2
fi

if [ -n "${agentcap_url:-}" ]; then
  # The recorder after a burst: how long from the end of the load until every exchange is in DuckDB.
  catch_up() { # KIND METRICS_BEFORE T_END: waits for the recorder to commit everything; one line to $results
    local kind="$1" m0="$2" t_end="$3"
    local t_done
    # POST /flush returns once everything the recorder received before it is committed to DuckDB.
    flush "$agentcap_admin"
    t_done="$(date +%s.%N)"
    metrics "$agentcap_admin" >"$work/m1.json"
    python3 - "$kind" "$m0" "$work/m1.json" "$t_end" "$t_done" "$work/run.json" >>"$results" <<'PY'
import json, sys
kind, m0, m1, t_end, t_done, run = sys.argv[1:]
a, b, r = json.load(open(m0)), json.load(open(m1)), json.load(open(run))
d = {k: b[k] - a[k] for k in ("exchanges_written", "rows_written", "sse_events_written", "db_busy_us", "spilled")}
print(json.dumps(dict(section="burst", kind=kind, catch_up_s=float(t_done) - float(t_end),
    load_wall_s=r.get("wall_s", r.get("duration_s")), written=d, records_dropped=b["records_dropped"],
    pending_after=b["pending_exchanges"], run=r["targets"][0])))
PY
  }
  # Metrics fields used: make sure they exist (fail loudly if the admin API changed).
  flush "$agentcap_admin"
  metrics "$agentcap_admin" >"$work/m0.json"
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); [m[k] for k in ("pending_exchanges","exchanges_written","rows_written","sse_events_written","db_busy_us","spilled","records_dropped")]' "$work/m0.json"

  echo "== burst: agentcap, non-streamed, closed loop $closed_concurrency in flight for $burst_duration"
  "$bin" bench load --format json --target "$agentcap_url" --rate 0 --concurrency "$closed_concurrency" \
    --duration "$burst_duration" --warmup 0s --timeout 10s >"$work/run.json"
  catch_up nonstream "$work/m0.json" "$(date +%s.%N)"
  metrics "$agentcap_admin" >"$work/m0.json"
  echo "== burst: agentcap, $burst_streams streamed turns, $closed_concurrency in flight"
  "$bin" bench stream --format json --target "$agentcap_url" --requests "$burst_streams" \
    --concurrency "$closed_concurrency" --timeout 30s >"$work/run.json"
  catch_up stream "$work/m0.json" "$(date +%s.%N)"
fi

# open_run PEER N PID URL [ADMIN]: N streams opened at once through PEER (PID, at URL): RSS before, peak RSS
# and CPU while they are open (for agentcap, until their recording is flushed).
open_run() {
  local peer="$1" n="$2" ppid="$3" purl="$4" padmin="${5:-}" rss0 c0 c1 t0 t1 bpid peak r
  rss0="$(rss_kb "$ppid")"; c0="$(cpu_s "$ppid")"; t0="$(date +%s.%N)"
  "$bin" bench stream --format json --target "$purl" --requests "$n" --concurrency "$n" --timeout 120s \
    >"$work/open.json" &
  bpid=$!
  peak=0
  while kill -0 "$bpid" 2>/dev/null; do
    r="$(rss_kb "$ppid")"; [ "$r" -gt "$peak" ] && peak="$r"
    sleep 0.2
  done
  wait "$bpid" || true
  t1="$(date +%s.%N)"
  [ -n "$padmin" ] && flush "$padmin"
  c1="$(cpu_s "$ppid")"
  python3 - "$work/open.json" "$peer" "$n" "$rss0" "$peak" "$(hwm_kb "$ppid")" "$c0" "$c1" "$t0" "$t1" >>"$results" <<'PY'
import json, os, sys
path, peer, n, rss0, peak, hwm, c0, c1, t0, t1 = sys.argv[1:]
r = json.load(open(path))
t = r["targets"][0]
print(json.dumps(dict(section="open", peer=peer, streams=int(n), ok=t["ok"], errors=t["errors"], rss0_kb=int(rss0),
    peak_rss_kb=int(peak), hwm_kb=int(hwm), cpu_s=float(c1) - float(c0), wall_s=float(t1) - float(t0),
    events_per_stream=t["events_per_request"]["p50_us"], loadavg=os.getloadavg()[0])))
PY
}

if [[ ",$peers," == *",agentcap,"* ]]; then
  IFS=',' read -r -a open_list <<<"$open_streams"
  for n in "${open_list[@]}"; do
    # A slow twin (streams of ~20 s) and a fresh proxy: RSS before, peak RSS and CPU while n streams are open.
    echo "== $n concurrent open streams through agentcap"
    start_twin "slow$n" --latency zero --ttft-ms 2000 --tokens-per-sec 2
    slow_url="$(eval echo "\$slow${n}_url")"
    start_proxy "open$n" "$slow_url"
    ppid="$(eval echo "\$open${n}_pid")"
    open_run agentcap "$n" "$ppid" "$(eval echo "\$open${n}_url")" "$(eval echo "\$open${n}_admin")"
    kill "$ppid" 2>/dev/null || true
    # nginx against the same slow twin, for the CPU per open stream (two descriptors per stream: up to 1,000).
    if [[ ",$peers," == *",nginx,"* ]] && [ "$n" -le 1000 ]; then
      echo "== $n concurrent open streams through nginx"
      port="$(free_port)"
      nginx_conf "$port" "$(free_port)" "nginx-open$n" "" "$slow_url" "$slow_url" >"$work/nginx/nginx-open$n.conf"
      nginx -p "$work/nginx" -c "$work/nginx/nginx-open$n.conf" -g 'daemon off;' \
        >"$work/nginx-open.out" 2>"$work/nginx-open.err" &
      npid=$!; pids+=($npid)
      wait_http "http://127.0.0.1:$port"
      open_run nginx "$n" "$(pgrep -P "$npid" | head -1)" "http://127.0.0.1:$port"
      kill "$npid" 2>/dev/null || true; wait "$npid" 2>/dev/null || true
    fi
    kill "$(eval echo "\$slow${n}_pid")" 2>/dev/null || true
  done
fi

# Instructions per exchange under callgrind: start PEER under valgrind with instrumentation off, switch it
# on, run a closed loop for $instr_duration, flush (agentcap), dump, and count.
instr_run() { # NAME URL PID ADMIN
  local name="$1" purl="$2" vpid="$3" padmin="$4" n0 n1
  [ -n "$padmin" ] && { flush "$padmin"; metrics "$padmin" >"$work/i0.json"; }
  callgrind_control -z "$vpid" >/dev/null
  callgrind_control -i on "$vpid" >/dev/null
  "$bin" bench load --format json --target "$purl" --rate 0 --concurrency 2 --duration "$instr_duration" \
    --warmup 0s --timeout 60s >"$work/instr.json"
  [ -n "$padmin" ] && { flush "$padmin"; metrics "$padmin" >"$work/i1.json"; }
  callgrind_control -d "$vpid" >/dev/null
  callgrind_control -i off "$vpid" >/dev/null
  # CALLGRIND_KEEP=DIR keeps the dumps (for callgrind_annotate).
  if [ -n "${CALLGRIND_KEEP:-}" ]; then cp "$work/cg-$name.out".* "$CALLGRIND_KEEP/"; fi
  python3 - "$name" "$work/instr.json" "$work/cg-$name.out" "$padmin" "$work/i0.json" "$work/i1.json" >>"$results" <<'PY'
import glob, json, os, sys
name, run, cg, padmin, i0, i1 = sys.argv[1:]
r = json.load(open(run))["targets"][0]
dumps = sorted(glob.glob(cg + ".*"), key=lambda f: int(f.rsplit(".", 1)[1]))
ir = next(int(l.split()[1]) for l in open(dumps[-1]) if l.startswith(("totals:", "summary:")))
# agentcap: exchanges recorded between the two flushes; nginx: the requests the load generator finished.
n = (json.load(open(i1))["exchanges_written"] - json.load(open(i0))["exchanges_written"]) if padmin else r["requests"]
print(json.dumps(dict(section="instructions", peer=name, ir=ir, exchanges=n, ok=r["ok"], requests=r["requests"],
                      errors=r["errors"], ir_per_exchange=ir / max(n, 1), loadavg=os.getloadavg()[0])))
PY
}
if [ "$instructions" = 1 ] && command -v valgrind >/dev/null 2>&1; then
  for p in "${peer_list[@]}"; do
    case "$p" in
      agentcap)
        echo "== instructions per exchange: agentcap under callgrind, closed loop for $instr_duration"
        START_TRIES=3000 start cg_agentcap "listening on" valgrind --tool=callgrind --instr-atstart=no \
          --callgrind-out-file="$work/cg-agentcap.out" "$bin" proxy --listen 127.0.0.1:0 \
          --admin-listen 127.0.0.1:0 --upstream "$twin_url" --db "$work/cg.duckdb"
        cg_url="$(grep -o 'listening on http://[0-9.:]*' "$work/cg_agentcap.out" | sed 's/listening on //')"
        cg_admin="$(grep -o 'admin http://[0-9.:]*' "$work/cg_agentcap.out" | sed 's/admin //')"
        # Warm the connections and DuckDB's first batch before counting.
        "$bin" bench load --format json --target "$cg_url" --rate 0 --concurrency 2 --duration 2s --warmup 0s \
          --timeout 60s >/dev/null
        instr_run agentcap "$cg_url" "$cg_agentcap_pid" "$cg_admin"
        kill "$cg_agentcap_pid" 2>/dev/null || true; wait "$cg_agentcap_pid" 2>/dev/null || true
        ;;
      nginx)
        echo "== instructions per exchange: nginx under callgrind, closed loop for $instr_duration"
        port="$(free_port)"
        # One process (no master), so valgrind runs the worker that proxies.
        nginx_conf "$port" "$(free_port)" nginx-cg "master_process off;" >"$work/nginx/nginx-cg.conf"
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg-nginx.out" \
          nginx -p "$work/nginx" -c "$work/nginx/nginx-cg.conf" -g 'daemon off;' \
          >"$work/cg_nginx.out" 2>"$work/cg_nginx.err" &
        cg_nginx_pid=$!; pids+=($cg_nginx_pid)
        wait_http "http://127.0.0.1:$port"
        "$bin" bench load --format json --target "http://127.0.0.1:$port" --rate 0 --concurrency 2 --duration 2s \
          --warmup 0s --timeout 60s >/dev/null
        instr_run nginx "http://127.0.0.1:$port" "$cg_nginx_pid" ""
        kill "$cg_nginx_pid" 2>/dev/null || true; wait "$cg_nginx_pid" 2>/dev/null || true
        ;;
    esac
  done
fi

cp "$results" "${out%.md}.jsonl"
python3 benches/report.py --results "$results" --out "$out" --cmd "$cmdline" --bin "$bin" \
  --criterion "$target_dir/criterion" --notes benches/NOTES.md --fd-limit "$(ulimit -n)"
echo "== written to $out (raw reports: ${out%.md}.jsonl)"
