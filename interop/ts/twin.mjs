// Starts and stops `agentcap sim` (the twin) for the interop tests.
//
// Environment:
//   AGENTCAP_BIN           path to the agentcap binary
//                          (default: ${CARGO_TARGET_DIR:-$HOME/.cache/agentcap-target}/debug/agentcap)
//   AGENTCAP_CAPTURE_DIR   directory for the capture file ts.jsonl (default: a fresh temp dir)
//   AGENTCAP_SIM_ARGS      extra arguments appended to the sim command line (split on spaces);
//                          `--latency X` there replaces the default `--latency zero`
//   AGENTCAP_TWIN_LOG=1    echo the twin's stderr to this process's stderr

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, statSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";

const READY_RE = /^agentcap sim \(simulated upstream\) listening on (http:\/\/\S+)\s*$/;
const READY_TIMEOUT_MS = 30_000;
const STDERR_KEEP = 16_384;

export function twinBinary() {
  if (process.env.AGENTCAP_BIN) return process.env.AGENTCAP_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(homedir(), ".cache", "agentcap-target");
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
 * Spawns the twin on an ephemeral port and resolves once it printed its address.
 * Returns { baseURL, capturePath, captureOffset, stderr(), hasExited(), stop() }.
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
        new Error(`${why}\ncommand: ${bin} ${args.join(" ")}\ntwin stderr:\n${stderrTail || "(empty)"}`),
      );
    };
    const timer = setTimeout(
      () => fail(`twin did not print its address within ${READY_TIMEOUT_MS} ms`),
      READY_TIMEOUT_MS,
    );
    child.on("error", (err) => fail(`could not spawn the twin: ${err.message}`));
    child.on("exit", (code, signal) => fail(`twin exited before it was ready (code ${code}, signal ${signal})`));
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      if (settled) return; // keep draining stdout after the first line
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const first = buf.slice(0, nl).replace(/\r$/, "");
      const m = READY_RE.exec(first);
      if (m) settle(resolve, m[1].replace(/\/+$/, ""));
      else fail(`unexpected first stdout line from the twin: ${JSON.stringify(first)}`);
    });
  });

  async function stop() {
    if (exited) return exited;
    // --exit-on-stdin-close: closing stdin is the polite way to stop it.
    child.stdin.end();
    const polite = await Promise.race([exitPromise, sleep(3_000).then(() => null)]);
    if (polite) return polite;
    child.kill("SIGTERM");
    const termed = await Promise.race([exitPromise, sleep(3_000).then(() => null)]);
    if (termed) return termed;
    child.kill("SIGKILL");
    return exitPromise;
  }

  return {
    baseURL,
    capturePath,
    captureOffset,
    stderr: () => stderrTail,
    hasExited: () => exited,
    stop,
  };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
