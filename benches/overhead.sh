#!/usr/bin/env bash
# The overhead harness: the twin at zero latency and, in front of it, agentcap proxy (recording into a real
# DuckDB file), nginx (a plain reverse proxy, no recording) and mitmdump (flows written to a file, bodies
# streamed so SSE passes). The same loads run against each peer, each interleaved request by request with the
# twin directly (`agentcap bench load|stream --target PEER --compare TWIN`), and the figures go to a Markdown
# report with the machine description and the command.
#
#   benches/overhead.sh [--rates 500,1000,2000] [--duration 10s] [--stream-requests 200]
#                       [--peers agentcap,nginx,mitmdump] [--out benches/OVERHEAD.md]
#
# The raw JSON reports of every run go beside the Markdown file (same name, .jsonl).
#
# It installs the peers when missing (nginx with apt-get, mitmproxy with pip in a venv under
# ${XDG_CACHE_HOME:-$HOME/.cache}/agentcap-bench-venv). AGENTCAP_BIN selects the agentcap binary (default:
# $CARGO_TARGET_DIR/debug/agentcap, as `cargo test --workspace` builds it).
set -euo pipefail
cd "$(dirname "$0")/.."

cmdline="benches/overhead.sh $*"
rates="1000"
duration="10s"
stream_requests=200
peers="agentcap,nginx,mitmdump"
out="benches/OVERHEAD.md"
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) rates="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --stream-requests) stream_requests="$2"; shift 2 ;;
    --peers) peers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "overhead.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/agentcap-target}"
bin="${AGENTCAP_BIN:-$target_dir/debug/agentcap}"
[ -x "$bin" ] || { echo "overhead.sh: no agentcap binary at $bin (run cargo test --workspace, or set AGENTCAP_BIN)" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

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

echo "== starting the twin"
start twin "listening on" "$bin" sim --listen 127.0.0.1:0 --latency zero
twin_url="$(grep -o 'http://[0-9.:]*' "$work/twin.out" | head -1)"

declare -A url pid
IFS=',' read -r -a peer_list <<<"$peers"
for p in "${peer_list[@]}"; do
  case "$p" in
    agentcap)
      echo "== starting agentcap proxy (recording into $work/overhead.duckdb)"
      start agentcap "listening on" "$bin" proxy --listen 127.0.0.1:0 --no-admin --upstream "$twin_url" --db "$work/overhead.duckdb"
      url[agentcap]="$(grep -o 'listening on http://[0-9.:]*' "$work/agentcap.out" | sed 's/listening on //')"
      pid[agentcap]="$agentcap_pid"
      ;;
    nginx)
      if ! command -v nginx >/dev/null 2>&1; then
        echo "== installing nginx"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
      fi
      port="$(free_port)"
      mkdir -p "$work/nginx/logs"
      cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 16384; }
http {
  access_log off;
  upstream twin { server ${twin_url#http://}; keepalive 256; }
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
}
CONF
      echo "== starting nginx on $port"
      nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' >"$work/nginx.out" 2>"$work/nginx.err" &
      pids+=($!)
      url[nginx]="http://127.0.0.1:$port"
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
run_bench() { # peer kind args...
  local peer="$1" kind="$2"; shift 2
  local p="${pid[$peer]}" c0 c1 t0 t1
  c0="$(cpu_s "$p")"; t0="$(date +%s.%N)"
  "$bin" bench "$kind" --target "${url[$peer]}" --compare "$twin_url" --format json "$@" >"$work/run.json"
  t1="$(date +%s.%N)"; c1="$(cpu_s "$p")"
  python3 - "$work/run.json" "$peer" "$c0" "$c1" "$t0" "$t1" "$(rss_kb "$p")" "$(hwm_kb "$p")" "$*" >>"$results" <<'PY'
import json, sys
path, peer, c0, c1, t0, t1, rss, hwm, args = sys.argv[1:]
r = json.load(open(path))
r.update(peer=peer, args=args, cpu_s=float(c1) - float(c0), wall_s_total=float(t1) - float(t0),
         rss_kb=int(rss), hwm_kb=int(hwm))
print(json.dumps(r))
PY
}

# Peer by peer (in the order given), each peer's loads then its streams: a peer that is still busy after a load
# (agentcap's recorder draining its backlog) then only slows its own later runs.
IFS=',' read -r -a rate_list <<<"$rates"
for p in "${peer_list[@]}"; do
  for rate in "${rate_list[@]}"; do
    echo "== load: $p vs twin at $rate req/s each for $duration"
    run_bench "$p" load --rate "$rate" --duration "$duration" --warmup 1s --timeout 10s
  done
  echo "== stream: $p vs twin, $stream_requests requests each"
  run_bench "$p" stream --requests "$stream_requests" --warmup 5
done

python3 - "$results" "$out" "$cmdline" "$bin" <<'PY'
import json, platform, subprocess, sys, datetime, os
results, out, cmdline, binary = sys.argv[1:5]
rows = [json.loads(l) for l in open(results)]
def cpu():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
    return platform.processor()
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
f = lambda us: "–" if us is None else f"{us/1000:.3f} ms"
o = []
o.append("# Overhead harness results\n")
o.append(f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `{cmdline}` "
         f"(binary: {os.path.basename(binary)}, see RESULTS.md for its build profile).\n")
o.append(f"Machine: {os.cpu_count()} × {cpu()}, {int(mem)//1024} MiB RAM, {platform.system()} {platform.release()}; "
         f"load average at the end {os.getloadavg()[0]:.2f}.\n")
o.append("Every peer runs interleaved request by request with the twin directly; *added* = peer − direct, "
         "percentile by percentile. Latency counts from the intended send time (open loop).\n")
o.append("## Non-streamed conversation starts, open loop\n")
o.append("| peer | rate/s | ok | errors | added p50 | added p90 | added p99 | peer p99 | direct p99 | CPU s | RSS MiB |")
o.append("|---|---|---|---|---|---|---|---|---|---|---|")
def errs(t):
    return ", ".join(f"{v} {k}" for k, v in t["errors"].items()) or "0"
for r in rows:
    if r["bench"] != "load": continue
    t, d = r["targets"]; a = r["comparison"]["added_latency"]
    if a is None:  # no successful request on one side: nothing to subtract
        a = {k: None for k in ("p50_us", "p90_us", "p99_us")}
    o.append(f"| {r['peer']} | {r['rate_per_target']:.0f} | {t['ok']}/{t['requests']} | {errs(t)} | "
             f"{f(a['p50_us'])} | {f(a['p90_us'])} | {f(a['p99_us'])} | {f(t['latency']['p99_us'] if t['ok'] else None)} | {f(d['latency']['p99_us'])} | "
             f"{r['cpu_s']:.2f} | {r['rss_kb']/1024:.0f} |")
o.append("\n## Streamed conversation starts\n")
o.append("| peer | ok | TTFT added p50 | TTFT added p99 | per-event added p50 | per-event added p99 | total added p50 | CPU s | RSS MiB |")
o.append("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["bench"] != "stream": continue
    t, d = r["targets"]; c = r["comparison"]
    if "ttft" not in c["added"]:
        c["added"]["ttft"] = c["added"]["total"] = {"p50_us": None, "p99_us": None}
    o.append(f"| {r['peer']} | {t['ok']}/{t['requests']} | {f(c['added']['ttft']['p50_us'])} | {f(c['added']['ttft']['p99_us'])} | "
             f"{f(c['per_event']['added']['p50_us'])} | {f(c['per_event']['added']['p99_us'])} | {f(c['added']['total']['p50_us'])} | "
             f"{r['cpu_s']:.2f} | {r['rss_kb']/1024:.0f} |")
loads = {(r["peer"], r["rate_per_target"]): r for r in rows if r["bench"] == "load"}
ratios = []
for (peer, rate), r in loads.items():
    if peer != "agentcap": continue
    if r["comparison"]["added_latency"] is None: continue
    a = r["comparison"]["added_latency"]["p99_us"]
    for other in ("nginx", "mitmdump"):
        o2 = loads.get((other, rate))
        if o2 and o2["comparison"]["added_latency"] is not None:
            b = o2["comparison"]["added_latency"]["p99_us"]
            ratios.append(f"- {rate:.0f} req/s: added p99 agentcap / {other} = "
                          f"{(a / b) if b > 0 else float('nan'):.2f} ({f(a)} vs {f(b)})")
if ratios:
    o.append("\n## Ratios\n")
    o.extend(ratios)
open(out, "w").write("\n".join(o) + "\n")
print("\n".join(o))
PY
cp "$results" "${out%.md}.jsonl"
echo "== written to $out (raw reports: ${out%.md}.jsonl)"
