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
# then, for agentcap only:
#   - N concurrent open streams from a slow twin (--open-streams), proxy RSS and CPU;
#   - a burst (closed loop, non-streamed, then streamed) and the time its recorder takes to catch up.
# The micro-bench figures come from the last `cargo bench -p agentcap-benches` (criterion's saved estimates).
#
#   benches/overhead.sh [--rates 500,1000,2000] [--duration 10s] [--stream-requests 200]
#                       [--peers agentcap,nginx,mitmdump] [--open-streams 1000,10000] [--paced-tps 200]
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
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "overhead.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then
  rates="100"; duration="2s"; stream_requests=20; open_streams="100"; burst_duration="1s"; burst_streams=50
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

# Starts "$@" in the background with stdout in $work/$name.out; waits for a line matching $pattern.
start() {
  local name="$1" pattern="$2"; shift 2
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  eval "${name}_pid=$!"
  for _ in $(seq 1 300); do
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

declare -A url pid
IFS=',' read -r -a peer_list <<<"$peers"
nginx_paced_url=""
for p in "${peer_list[@]}"; do
  case "$p" in
    agentcap)
      echo "== starting agentcap proxy (recording into $work/agentcap.duckdb)"
      start_proxy agentcap "$twin_url"
      url[agentcap]="$agentcap_url"; pid[agentcap]="$agentcap_pid"
      start_proxy agentcap_paced "$paced_url"
      ;;
    nginx)
      if ! command -v nginx >/dev/null 2>&1; then
        echo "== installing nginx"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
      fi
      port="$(free_port)"; port2="$(free_port)"
      mkdir -p "$work/nginx/logs"
      cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 16384; }
http {
  access_log off;
  upstream twin { server ${twin_url#http://}; keepalive 256; }
  upstream paced { server ${paced_url#http://}; keepalive 256; }
  server {
    listen 127.0.0.1:$port;
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
    listen 127.0.0.1:$port2;
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
# RSS over the run and the load average go to $results as one line.
run_bench() {
  local section="$1" peer="$2" p="$3" kind="$4"; shift 4
  local c0 c1 t0 t1
  c0="$(cpu_s "$p")"; t0="$(date +%s.%N)"
  "$bin" bench "$kind" --format json "$@" >"$work/run.json"
  t1="$(date +%s.%N)"; c1="$(cpu_s "$p")"
  python3 - "$work/run.json" "$section" "$peer" "$c0" "$c1" "$t0" "$t1" "$(rss_kb "$p")" "$(hwm_kb "$p")" "$*" >>"$results" <<'PY'
import json, os, sys
path, section, peer, c0, c1, t0, t1, rss, hwm, args = sys.argv[1:]
r = json.load(open(path))
r.update(section=section, peer=peer, args=args, cpu_s=float(c1) - float(c0), wall_s_total=float(t1) - float(t0),
         rss_kb=int(rss), hwm_kb=int(hwm), loadavg=os.getloadavg()[0])
print(json.dumps(r))
PY
}

IFS=',' read -r -a rate_list <<<"$rates"
# Peer by peer (in the order given), each peer's loads then its streams: a peer that is still busy after a load
# (agentcap's recorder committing its backlog) then only slows its own later runs.
for p in "${peer_list[@]}"; do
  for rate in "${rate_list[@]}"; do
    echo "== load: $p vs twin at $rate req/s each for $duration"
    run_bench load "$p" "${pid[$p]}" load --target "${url[$p]}" --compare "$twin_url" \
      --rate "$rate" --duration "$duration" --warmup 1s --timeout 10s
  done
  echo "== stream: $p vs twin, $stream_requests requests each"
  run_bench stream "$p" "${pid[$p]}" stream --target "${url[$p]}" --compare "$twin_url" \
    --requests "$stream_requests" --warmup 5
done

echo "== maximum throughput (closed loop, $closed_concurrency in flight, $duration): the twin alone, then each peer"
run_bench max direct "$twin_pid" load --target "$twin_url" --rate 0 --concurrency "$closed_concurrency" \
  --duration "$duration" --warmup 1s --timeout 10s
for p in "${peer_list[@]}"; do
  run_bench max "$p" "${pid[$p]}" load --target "${url[$p]}" --rate 0 --concurrency "$closed_concurrency" \
    --duration "$duration" --warmup 1s --timeout 10s
done

paced_n=$(( stream_requests / 2 > 10 ? stream_requests / 2 : 10 ))
if [ -n "${agentcap_paced_url:-}" ]; then
  echo "== paced streams ($paced_tps tokens/s): agentcap vs twin, $paced_n requests each"
  run_bench paced agentcap "$agentcap_paced_pid" stream --target "$agentcap_paced_url" --compare "$paced_url" \
    --requests "$paced_n" --concurrency 8 --warmup 2
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
    python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('$agentcap_admin/flush', data=b'{}', method='POST', headers={'Content-Type': 'application/json'}), timeout=900).read()"
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

if [[ ",$peers," == *",agentcap,"* ]]; then
  IFS=',' read -r -a open_list <<<"$open_streams"
  for n in "${open_list[@]}"; do
    # A slow twin (streams of ~20 s) and a fresh proxy: RSS before, peak RSS and CPU while n streams are open.
    echo "== $n concurrent open streams through agentcap"
    start_twin "slow$n" --latency zero --ttft-ms 2000 --tokens-per-sec 2
    start_proxy "open$n" "$(eval echo "\$slow${n}_url")"
    ppid="$(eval echo "\$open${n}_pid")"; purl="$(eval echo "\$open${n}_url")"
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
    t1="$(date +%s.%N)"; c1="$(cpu_s "$ppid")"
    python3 - "$work/open.json" "$n" "$rss0" "$peak" "$(hwm_kb "$ppid")" "$c0" "$c1" "$t0" "$t1" >>"$results" <<'PY'
import json, os, sys
path, n, rss0, peak, hwm, c0, c1, t0, t1 = sys.argv[1:]
r = json.load(open(path))
t = r["targets"][0]
print(json.dumps(dict(section="open", streams=int(n), ok=t["ok"], errors=t["errors"], rss0_kb=int(rss0),
    peak_rss_kb=int(peak), hwm_kb=int(hwm), cpu_s=float(c1) - float(c0), wall_s=float(t1) - float(t0),
    events_per_stream=t["events_per_request"]["p50_us"], loadavg=os.getloadavg()[0])))
PY
    kill "$ppid" "$(eval echo "\$slow${n}_pid")" 2>/dev/null || true
  done
fi

cp "$results" "${out%.md}.jsonl"
python3 benches/report.py --results "$results" --out "$out" --cmd "$cmdline" --bin "$bin" \
  --criterion "$target_dir/criterion" --notes benches/NOTES.md --fd-limit "$(ulimit -n)"
echo "== written to $out (raw reports: ${out%.md}.jsonl)"
