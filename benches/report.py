#!/usr/bin/env python3
"""Writes benches/RESULTS.md from the overhead harness's JSON lines (benches/overhead.sh calls it).

Usage: report.py --results RESULTS.jsonl --out RESULTS.md --cmd CMDLINE --bin BINARY
                 [--criterion TARGET/criterion] [--notes NOTES.md]
"""
import argparse
import datetime
import glob
import json
import os
import platform
import subprocess

p = argparse.ArgumentParser()
p.add_argument("--results", required=True)
p.add_argument("--out", required=True)
p.add_argument("--cmd", required=True)
p.add_argument("--bin", required=True)
p.add_argument("--criterion")
p.add_argument("--notes")
p.add_argument("--fd-limit", default="?")
a = p.parse_args()

rows = [json.loads(line) for line in open(a.results) if line.strip()]


def sec(name):
    return [r for r in rows if r.get("section") == name]


def ms(us):
    return "–" if us is None else f"{us / 1000:.3f} ms"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def errs(t):
    return ", ".join(f"{v} {k}" for k, v in t["errors"].items()) or "0"


mem_mib = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
profile = "release profile (`cargo build --release -p agentcap`)" if "/release/" in a.bin else \
    "dev profile (debug build: not representative of a production binary)"
# The harness's own outputs do not count as changes to the code measured.
dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                             ":!benches/RESULTS.md", ":!benches/RESULTS.jsonl") else ""
loads = [r["loadavg"] for r in rows if "loadavg" in r]

o = []
o.append("# Benchmark results\n")
o.append(f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `{a.cmd}` at commit "
         f"`{git('rev-parse', '--short', 'HEAD')}`{dirty}. This file is written by the harness: rerun it rather "
         "than editing; the analysis is in `benches/NOTES.md`, appended at the end.\n")
o.append("## Machine and build\n")
o.append(f"- Machine: {os.cpu_count()} × {cpu_model()}, {mem_mib} MiB RAM, {platform.system()} {platform.release()}.")
o.append("- Everything runs on this one machine: the load generator, the twin(s), the peer under test. "
         + (f"1-minute load average during the runs: {min(loads):.2f} – {max(loads):.2f}." if loads else ""))
o.append(f"- agentcap binary: {profile}.")
o.append("- The twin answers at zero latency except where a section says otherwise; agentcap records into a real "
         "DuckDB file (default batched durability) in every run.")
o.append("- Each peer runs interleaved request by request with the twin directly; *added* = peer − direct, "
         "percentile by percentile. Open-loop latency counts from the intended send time, so a stalled sender "
         "is not hidden.\n")

# ---- targets
def load_of(peer, rate):
    for r in sec("load"):
        if r["peer"] == peer and round(r["rate_per_target"]) == rate:
            return r
    return None


def added(r, q):
    if r is None or r["comparison"]["added_latency"] is None:
        return None
    return r["comparison"]["added_latency"][q]


def stream_of(section, peer):
    return next((r for r in sec(section) if r["peer"] == peer), None)


def criterion():
    out = []
    if not a.criterion or not os.path.isdir(a.criterion):
        return out
    for bj in sorted(glob.glob(os.path.join(a.criterion, "*", "*", "new", "benchmark.json"))):
        b = json.load(open(bj))
        e = json.load(open(os.path.join(os.path.dirname(bj), "estimates.json")))
        mean_ns = e["mean"]["point_estimate"]
        tp = b.get("throughput") or {}
        kind, n = next(iter(tp.items())) if tp else (None, None)
        out.append(dict(id=b["full_id"], mean_ns=mean_ns, kind=kind, n=n,
                        lo=e["mean"]["confidence_interval"]["lower_bound"],
                        hi=e["mean"]["confidence_interval"]["upper_bound"],
                        mtime=os.path.getmtime(bj)))
    return out


crit = criterion()


def per_s(c, ns):
    return c["n"] / (ns / 1e9) if c["n"] else None


def fmt_rate(c, ns):
    v = per_s(c, ns)
    if v is None:
        return "–"
    if c["kind"] == "Bytes":
        return f"{v / 2**20:.1f} MiB/s"
    return f"{v / 1e6:.2f} M/s" if v >= 1e6 else f"{v / 1e3:.1f} k/s"


targets = []


def target(name, value, shown, ok):
    targets.append((name, shown if value is not None else "not measured",
                    "–" if value is None else ("**yes**" if ok(value) else "no")))


ac1000 = load_of("agentcap", 1000)
target("added p50 ≤ 0.1 ms at 1,000 req/s", added(ac1000, "p50_us"), ms(added(ac1000, "p50_us")), lambda v: v <= 100)
target("added p99 ≤ 0.5 ms at 1,000 req/s", added(ac1000, "p99_us"), ms(added(ac1000, "p99_us")), lambda v: v <= 500)
pa = stream_of("paced", "agentcap")
pe = pa["comparison"]["per_event"]["after_first"]["p99_us"] if pa and pa["comparison"]["per_event"]["after_first"]["n"] else None
target("per-SSE-event added p99 ≤ 50 µs (paced streams, after the first event)", pe, ms(pe), lambda v: v <= 50)
st = stream_of("stream", "agentcap")
tt = st["comparison"]["added"].get("ttft", {}).get("p50_us") if st else None
target("TTFT added ≤ 0.2 ms (p50)", tt, ms(tt), lambda v: v <= 200)
w = [c for c in crit if c["id"].startswith("writer/event_rows")]
wbest = max((per_s(c, c["mean_ns"]) for c in w), default=None)
target("writer ≥ 200k event rows/s (criterion `writer/event_rows`, best batch size)", wbest,
       f"{wbest / 1e3:.1f}k rows/s" if wbest else "", lambda v: v >= 200_000)
op = next((r for r in sec("open") if r["streams"] == 1000), None)
target("RSS ≤ 100 MB with 1,000 open streams", op and op["peak_rss_kb"],
       f"{op['peak_rss_kb'] / 1024:.0f} MiB peak ({op['ok']}/{op['streams']} streams ok)" if op else "",
       lambda v: v <= 100 * 1000 * 1000 / 1024)
ng = load_of("nginx", 1000)
if added(ac1000, "p99_us") is not None and added(ng, "p99_us") is not None:
    x, y = added(ac1000, "p99_us"), added(ng, "p99_us")
    # A negative or zero nginx p99 difference is within noise: compare against max(nginx, 0.1 ms).
    ratio = x / max(y, 100.0)
    target("added p99 within 1.5× nginx's (same run, 1,000 req/s)", ratio,
           f"{ratio:.2f}× ({ms(x)} vs {ms(y)}; nginx's floored at 0.1 ms)", lambda v: v <= 1.5)
else:
    target("added p99 within 1.5× nginx's (same run, 1,000 req/s)", None, "", lambda v: False)
mi = load_of("mitmdump", 1000)
if mi is not None and ac1000 is not None:
    if added(mi, "p99_us") is None or mi["targets"][0]["ok"] < mi["targets"][0]["requests"] * 0.99:
        t = mi["targets"][0]
        target("added p99 ≥ 20× below mitmdump's (1,000 req/s)", 1,
               f"mitmdump answered {t['ok']}/{t['requests']} ({errs(t)}): its latency is unbounded", lambda v: True)
    else:
        x, y = added(ac1000, "p99_us"), added(mi, "p99_us")
        ratio = y / max(x, 1.0)
        target("added p99 ≥ 20× below mitmdump's (1,000 req/s)", ratio, f"{ratio:.1f}× ({ms(y)} vs {ms(x)})",
               lambda v: v >= 20)
else:
    target("added p99 ≥ 20× below mitmdump's (1,000 req/s)", None, "", lambda v: False)

o.append("## Against the targets (2 cores, recording on)\n")
o.append("| target | measured | holds? |")
o.append("| --- | --- | --- |")
for t in targets:
    o.append(f"| {t[0]} | {t[1]} | {t[2]} |")

# ---- loads
o.append("\n## Non-streamed conversation starts, open loop\n")
o.append("| peer | rate/s | ok | errors | added p50 | added p90 | added p99 | peer p99 | direct p99 | peer CPU s | peer RSS MiB | load avg |")
o.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in sec("load"):
    t, d = r["targets"]
    o.append(f"| {r['peer']} | {r['rate_per_target']:.0f} | {t['ok']}/{t['requests']} | {errs(t)} | "
             f"{ms(added(r, 'p50_us'))} | {ms(added(r, 'p90_us'))} | {ms(added(r, 'p99_us'))} | "
             f"{ms(t['latency']['p99_us'] if t['ok'] else None)} | {ms(d['latency']['p99_us'] if d['ok'] else None)} | "
             f"{r['cpu_s']:.2f} | {r['rss_kb'] / 1024:.0f} | {r['loadavg']:.1f} |")
ratios = []
for r in sec("load"):
    if r["peer"] != "agentcap" or added(r, "p99_us") is None:
        continue
    rate = round(r["rate_per_target"])
    for other in ("nginx", "mitmdump"):
        x = load_of(other, rate)
        if x is None:
            continue
        if added(x, "p99_us") is None:
            ratios.append(f"- {rate} req/s: {other} answered {x['targets'][0]['ok']}/{x['targets'][0]['requests']}; no ratio")
            continue
        a99, b99 = added(r, "p99_us"), added(x, "p99_us")
        if other == "nginx":
            ratio = (f"agentcap / nginx = {a99 / b99:.2f}" if b99 >= 100 else
                     f"nginx's is below 0.1 ms (noise), against a 0.1 ms floor agentcap / nginx = {a99 / 100:.2f}")
        else:
            ratio = f"mitmdump / agentcap = {b99 / a99:.1f}" if a99 > 0 else "agentcap's ≤ 0: ratio undefined"
        ratios.append(f"- {rate} req/s: added p99 agentcap {ms(a99)}, {other} {ms(b99)}: {ratio}")
if ratios:
    o.append("\nRatios of added p99 in the same run:\n")
    o.extend(ratios)

mx = sec("max")
if mx:
    o.append("\n## Maximum throughput, closed loop (non-streamed, same concurrency)\n")
    o.append("| target | in flight | ok | errors | req/s | p50 | p99 | CPU s | RSS MiB |")
    o.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in mx:
        t = r["targets"][0]
        o.append(f"| {r['peer']} | {r['concurrency']} | {t['ok']}/{t['requests']} | {errs(t)} | {t['achieved_rps']:.0f} | "
                 f"{ms(t['latency']['p50_us'] if t['ok'] else None)} | {ms(t['latency']['p99_us'] if t['ok'] else None)} | "
                 f"{r['cpu_s']:.2f} | {r['rss_kb'] / 1024:.0f} |")
    o.append("\n(`direct` is the twin alone; its CPU column is the twin's.)")


def stream_table(section, title, note):
    rs = sec(section)
    if not rs:
        return
    o.append(f"\n## {title}\n")
    o.append(note + "\n")
    o.append("| peer | ok | TTFT added p50 | TTFT added p99 | per-event added p50 / p99 (from send) | per-event added p50 / p99 (after first event) | total added p50 | peer CPU s |")
    o.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rs:
        t = r["targets"][0]
        c = r["comparison"]
        ad = c["added"]
        ttft = ad.get("ttft", {"p50_us": None, "p99_us": None})
        tot = ad.get("total", {"p50_us": None})
        pe = c["per_event"]
        f = lambda s, q: ms(s[q]) if s["n"] else "–"
        o.append(f"| {r['peer']} | {t['ok']}/{t['requests']} | {ms(ttft['p50_us'])} | {ms(ttft['p99_us'])} | "
                 f"{f(pe['added'], 'p50_us')} / {f(pe['added'], 'p99_us')} | "
                 f"{f(pe['after_first'], 'p50_us')} / {f(pe['after_first'], 'p99_us')} | {ms(tot['p50_us'])} | {r['cpu_s']:.2f} |")


stream_table("stream", "Streamed conversation starts (twin at zero latency)",
             "The twin writes a turn's events back to back, so most arrive in one read: per-event figures here "
             "mostly measure the request path.")
stream_table("paced", "Paced streams (twin emitting tokens at a fixed rate)",
             "Each event leaves the twin as its own write, so each is its own frame through the peer. "
             "*After first event* differences each event's offset from its own request's first event, which "
             "cancels the request path: it is what forwarding adds per event.")

op = sec("open")
if op:
    o.append("\n## Concurrent open streams through agentcap\n")
    o.append("A slow twin (first token after 2 s, then 2 tokens/s: each stream stays open ~20 s), a fresh proxy "
             "recording into its own file, all streams opened at once. File descriptors per process: "
             f"{a.fd_limit} (the proxy needs two per stream, plus its own).\n")
    o.append("| open streams | ok | errors | RSS before | peak RSS | proxy CPU s | wall s | CPU ms per stream |")
    o.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in op:
        o.append(f"| {r['streams']} | {r['ok']} | {', '.join(f'{v} {k}' for k, v in r['errors'].items()) or '0'} | "
                 f"{r['rss0_kb'] / 1024:.0f} MiB | {r['peak_rss_kb'] / 1024:.0f} MiB | {r['cpu_s']:.2f} | {r['wall_s']:.1f} | "
                 f"{1000 * r['cpu_s'] / max(r['streams'], 1):.2f} |")

bu = sec("burst")
if bu:
    o.append("\n## The recorder after a burst\n")
    o.append("A closed-loop burst through agentcap, then `POST /flush` on its admin listener: *catch-up* is the time "
             "from the end of the burst until everything is committed to DuckDB. *DuckDB rows/s* is rows per "
             "second of the DuckDB thread's busy time.\n")
    o.append("| burst | requests ok | burst s | exchanges | rows | sse_events rows | spilled msgs | catch-up s | DuckDB rows/s | dropped |")
    o.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in bu:
        w = r["written"]
        busy = w["db_busy_us"] / 1e6
        o.append(f"| {r['kind']} | {r['run']['ok']} | {r['load_wall_s']:.1f} | {w['exchanges_written']} | {w['rows_written']} | "
                 f"{w['sse_events_written']} | {w['spilled']} | {r['catch_up_s']:.2f} | "
                 f"{(w['rows_written'] / busy / 1e3) if busy > 0 else 0:.1f}k | {r['records_dropped']} |")

if crit:
    newest = max(c["mtime"] for c in crit)
    o.append("\n## Micro-benches (criterion)\n")
    o.append(f"From the last `cargo bench -p agentcap-benches` in this target dir "
             f"({datetime.datetime.fromtimestamp(newest, datetime.timezone.utc):%Y-%m-%d %H:%M} UTC); "
             "mean per iteration with criterion's 95% interval, and the throughput it implies.\n")
    o.append("| bench | mean | [low, high] | throughput |")
    o.append("| --- | --- | --- | --- |")

    def t(ns):
        return f"{ns / 1e6:.3f} ms" if ns >= 1e5 else f"{ns / 1e3:.2f} µs"

    for c in crit:
        o.append(f"| `{c['id']}` | {t(c['mean_ns'])} | [{t(c['lo'])}, {t(c['hi'])}] | {fmt_rate(c, c['mean_ns'])} |")

o.append("\n## Commands\n")
o.append(f"```sh\n{a.cmd}\ncargo bench -p agentcap-benches   # the micro-benches quoted above\n```")
if a.notes and os.path.exists(a.notes):
    o.append("\n" + open(a.notes).read().rstrip())
open(a.out, "w").write("\n".join(o) + "\n")
print("\n".join(o))
