// Starts and stops `agentcap sim` (the twin) for the interop tests.
//
// Environment:
//   AGENTCAP_BIN           path to the agentcap binary
//                          (default: ${CARGO_TARGET_DIR:-$HOME/.cache/agentcap-target}/debug/agentcap)
//   AGENTCAP_CAPTURE_DIR   directory for the capture file ts.jsonl (default: a fresh temp dir)
//   AGENTCAP_SIM_ARGS      extra arguments appended to the sim command line (split on spaces);
//                          `--latency X` there replaces the default `--latency zero`
//   AGENTCAP_TWIN_LOG=1    echo the twin's (and proxy's) stderr to this process's stderr
//   AGENTCAP_INTEROP_TARGET  `direct` (default), `proxy` or `proxy-tls`: every twin gets `agentcap proxy` in
//                          front of it (recording into a temporary DuckDB file; with proxy-tls the twin serves
//                          HTTPS and the proxy trusts its CA) and `baseURL` is the proxy's address

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const READY_RE = /^agentcap sim \(simulated upstream\) listening on (https?:\/\/\S+)\s*$/;
const PROXY_READY_RE = /^agentcap proxy listening on (http:\/\/\S+) -> \S+ \(db .*, admin http:\/\/\S+\)\s*$/;
const READY_TIMEOUT_MS = 30_000;
const STDERR_KEEP = 16_384;

export function twinBinary() {
  if (process.env.AGENTCAP_BIN) return process.env.AGENTCAP_BIN;
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
  const target = execFileSync(path.join(repo, "scripts", "target-dir"), { encoding: "utf8" }).trim();
  return path.join(target, "debug", "agentcap");
}

function captureDir() {
  const dir = process.env.AGENTCAP_CAPTURE_DIR;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    return dir;
  }
  return mkdtempSync(path.join(tmpdir(), "agentcap-ts-"));
}

/**
 * Spawns the twin on an ephemeral port (and, for the proxy target, the proxy in front of it) and resolves
 * once they printed their addresses. Returns { baseURL, capturePath, captureOffset, stderr(), hasExited(), stop() }.
 */
export async function startTwin({ extraArgs = [], captureName = "ts.jsonl" } = {}) {
  const bin = twinBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `twin binary not found at ${bin}; build it first ` +
        "(from the repository root: cargo test --workspace --no-run) " +
        "or set AGENTCAP_BIN",
    );
  }
  const capturePath = path.join(captureDir(), captureName);
  // The twin appends to the capture file; remember where this run starts.
  const captureOffset = existsSync(capturePath) ? statSync(capturePath).size : 0;
  const extra = (process.env.AGENTCAP_SIM_ARGS || "").split(/\s+/).filter(Boolean);
  const more = [...extra, ...extraArgs];
  const args = [
    "sim",
    "--listen", "127.0.0.1:0",
    // AGENTCAP_SIM_ARGS may choose another latency preset.
    ...(more.includes("--latency") ? [] : ["--latency", "zero"]),
    "--exit-on-stdin-close",
    "--capture", capturePath,
    ...more,
  ];

  const target = interopTarget();
  if (target === "direct") {
    const twin = await launch(bin, args, READY_RE, "twin");
    return { ...twin, capturePath, captureOffset };
  }
  // Targets "proxy" and "proxy-tls": the clients talk to `agentcap proxy` in front of this twin, which
  // records into a DuckDB file of its own; with "proxy-tls" the twin serves HTTPS (h2 by ALPN) and the
  // proxy trusts the twin's generated CA.
  const dbDir = mkdtempSync(path.join(tmpdir(), "agentcap-ts-proxy-"));
  const ca = path.join(dbDir, "twin-ca.pem");
  const tls = target === "proxy-tls" ? ["--tls", "--tls-ca", ca] : [];
  let twin;
  try {
    twin = await launch(bin, [...args, ...tls], READY_RE, "twin");
  } catch (err) {
    rmSync(dbDir, { recursive: true, force: true });
    throw err;
  }
  let proxy;
  try {
    const db = path.join(dbDir, "ts.duckdb");
    proxy = await launch(
      bin,
      [
        "proxy",
        "--listen", "127.0.0.1:0",
        "--admin-listen", "127.0.0.1:0",
        "--upstream", twin.baseURL,
        "--db", db,
        "--exit-on-stdin-close",
        ...(tls.length ? ["--upstream-ca", ca] : []),
      ],
      PROXY_READY_RE,
      "proxy",
    );
  } catch (err) {
    await twin.stop();
    rmSync(dbDir, { recursive: true, force: true });
    throw err;
  }
  return {
    baseURL: proxy.baseURL,
    directURL: twin.baseURL,
    capturePath,
    captureOffset,
    stderr: () => `${twin.stderr()}\n--- proxy ---\n${proxy.stderr()}`,
    hasExited: () => twin.hasExited() || proxy.hasExited(),
    /** Stops the proxy (it must exit 0 having lost no record), then the twin. */
    async stop() {
      const exited = await proxy.stop();
      await twin.stop();
      rmSync(dbDir, { recursive: true, force: true });
      const stats = /agentcap proxy stopped: (\{.*\})/.exec(proxy.stderr());
      if (exited.code !== 0 || !stats) {
        throw new Error(`the proxy did not stop cleanly (${JSON.stringify(exited)}):\n${proxy.stderr()}`);
      }
      const s = JSON.parse(stats[1]);
      if (s.records_dropped !== 0 || s.exchanges_written === 0) {
        throw new Error(`the proxy lost records or recorded nothing: ${stats[1]}`);
      }
      return exited;
    },
  };
}

/** `direct` (default), `proxy` or `proxy-tls`, from AGENTCAP_INTEROP_TARGET. */
export function interopTarget() {
  const t = process.env.AGENTCAP_INTEROP_TARGET || "direct";
  if (!["direct", "proxy", "proxy-tls"].includes(t)) {
    throw new Error(`AGENTCAP_INTEROP_TARGET must be direct, proxy or proxy-tls, not ${JSON.stringify(t)}`);
  }
  return t;
}

/**
 * Spawns `bin args` and resolves once its first stdout line matches `readyRe` (group 1: the base URL).
 * Returns { baseURL, stderr(), hasExited(), stop() }; stop() closes stdin (--exit-on-stdin-close), then
 * escalates to SIGTERM and SIGKILL.
 */
async function launch(bin, args, readyRe, label) {
  const child = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderrTail = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    if (process.env.AGENTCAP_TWIN_LOG === "1") process.stderr.write(chunk);
    stderrTail = (stderrTail + chunk).slice(-STDERR_KEEP);
  });
  // A closed stdin pipe must not crash the test process.
  child.stdin.on("error", () => {});

  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });

  const baseURL = await new Promise((resolve, reject) => {
    let buf = "";
    let settled = false;
    const settle = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(value);
    };
    const fail = (why) => {
      if (settled) return;
      child.kill("SIGKILL");
      settle(
        reject,
        new Error(`${why}\ncommand: ${bin} ${args.join(" ")}\n${label} stderr:\n${stderrTail || "(empty)"}`),
      );
    };
    const timer = setTimeout(
      () => fail(`${label} did not print its address within ${READY_TIMEOUT_MS} ms`),
      READY_TIMEOUT_MS,
    );
    child.on("error", (err) => fail(`could not spawn the ${label}: ${err.message}`));
    child.on("exit", (code, signal) => fail(`${label} exited before it was ready (code ${code}, signal ${signal})`));
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      if (settled) return; // keep draining stdout after the first line
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const first = buf.slice(0, nl).replace(/\r$/, "");
      const m = readyRe.exec(first);
      if (m) settle(resolve, m[1].replace(/\/+$/, ""));
      else fail(`unexpected first stdout line from the ${label}: ${JSON.stringify(first)}`);
    });
  });

  async function stop() {
    if (exited) return exited;
    // --exit-on-stdin-close: closing stdin is the polite way to stop it.
    child.stdin.end();
    const polite = await Promise.race([exitPromise, sleep(10_000).then(() => null)]);
    if (polite) return polite;
    child.kill("SIGTERM");
    const termed = await Promise.race([exitPromise, sleep(3_000).then(() => null)]);
    if (termed) return termed;
    child.kill("SIGKILL");
    return exitPromise;
  }

  return {
    baseURL,
    stderr: () => stderrTail,
    hasExited: () => exited,
    stop,
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
