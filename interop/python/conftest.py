"""Fixtures for the Python interop suite: they start the twin (`agentcap sim`), optionally the recording proxy
in front of it, and build SDK clients.

Targets (`--target`, or the AGENTCAP_INTEROP_TARGET environment variable; default `direct`):
  direct     the clients talk to the twin
  proxy      the clients talk to `agentcap proxy --upstream http://<twin>`, which records into a DuckDB file
  proxy-tls  the twin serves HTTPS (`--tls`, h2 and HTTP/1.1 by ALPN) and the proxy reaches it with
             `--upstream https://... --upstream-ca <the twin's CA>`
Every fixture hands out the address clients should use (`Twin.url`); the tests are the same for every target.

Environment:
  AGENTCAP_BIN          the agentcap binary (default: <cargo target dir>/debug/agentcap, see scripts/target-dir)
  AGENTCAP_CAPTURE_DIR  where the twin writes its capture files (default: a pytest temporary directory);
                        this suite writes python.jsonl and python-auth.jsonl there (in a subdirectory named
                        after the target for the proxy targets); the direct run validates every *.jsonl at its
                        top level against the OpenAPI spec
  AGENTCAP_SIM_ARGS     extra arguments appended to every `agentcap sim` command line (split like a shell would)
  AGENTCAP_OPENAPI      the OpenAPI spec used by test_zz_openapi.py
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from wirelog import WireLog

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

MODEL = "mistral-medium-latest"
API_KEY = "interop-test-key"
AUTH_TWIN_KEY = "interop-secret-key"

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
URL_RE = re.compile(r"listening on (https?://\S+)")
PROXY_RE = re.compile(r"^agentcap proxy listening on (http://\S+) -> \S+ \(db .*, admin (http://\S+)\)$")
TARGETS = ("direct", "proxy", "proxy-tls")


def pytest_addoption(parser):
    parser.addoption("--target", choices=TARGETS, default=os.environ.get("AGENTCAP_INTEROP_TARGET", "direct"),
                     help="where the clients connect: the twin (direct) or the recording proxy in front of it "
                          "(proxy, proxy-tls)")


def pytest_report_header(config):
    return f"agentcap interop target: {config.getoption('--target')}"


def twin_binary() -> Path:
    explicit = os.environ.get("AGENTCAP_BIN")
    if explicit:
        return Path(explicit)
    repo = Path(__file__).resolve().parents[2]
    target = subprocess.run(
        [str(repo / "scripts" / "target-dir")], check=True, capture_output=True, text=True
    ).stdout.strip()
    return Path(target) / "debug" / "agentcap"


def stop_process(proc: subprocess.Popen) -> int | None:
    """Stop a child started with --exit-on-stdin-close and wait for it: close stdin (its graceful exit), then
    SIGTERM, then SIGKILL."""
    if proc.stdin and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:
            pass
    for escalate in (None, proc.terminate, proc.kill):
        if proc.poll() is not None:
            break
        if escalate is not None:
            try:
                escalate()
            except ProcessLookupError:
                break
        try:
            proc.wait(timeout=STOP_TIMEOUT_S / 2)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Proxy:
    """One running `agentcap proxy` process (client listener, admin listener, DuckDB file)."""

    name: str
    proc: subprocess.Popen
    url: str
    admin_url: str
    db: Path
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        """Graceful stop (in-flight exchanges finish, the recorder flushes), as on SIGTERM."""
        return stop_process(self.proc)

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def flush(self) -> None:
        res = httpx.post(f"{self.admin_url}/flush", json={}, timeout=30)
        assert res.status_code == 200, res.text

    def query(self, sql: str) -> list[dict]:
        """Read-only SQL through the admin listener; rows as dicts."""
        res = httpx.post(f"{self.admin_url}/query", json={"sql": sql}, timeout=60)
        assert res.status_code == 200, f"{sql}\n-> {res.status_code} {res.text}"
        body = res.json()
        return [dict(zip(body["columns"], row)) for row in body["rows"]]


@dataclass
class Twin:
    """One running `agentcap sim` process, and the proxy in front of it for the proxy targets.

    `url` is where clients connect (the proxy when there is one); `direct_url` is the twin itself.
    """

    name: str
    proc: subprocess.Popen
    url: str
    capture: Path
    stderr_path: Path
    api_key: str | None
    stdout_lines: list[str] = field(default_factory=list)
    direct_url: str = ""
    ca: Path | None = None
    proxy: Proxy | None = None

    def running(self) -> bool:
        return self.proc.poll() is None and (self.proxy is None or self.proxy.running())

    def stop(self) -> int | None:
        """Stop the proxy (if any), then the twin."""
        if self.proxy is not None:
            self.proxy.stop()
        return stop_process(self.proc)

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


def _drain(stream, lines: list[str], first: queue.Queue) -> None:
    """Read the twin's stdout forever so it can never block on a full pipe."""
    announced = False
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if not announced:
            first.put(line)
            announced = True
    if not announced:
        first.put(None)


def require_binary() -> Path:
    binary = twin_binary()
    if not binary.is_file():
        pytest.fail(
            f"agentcap binary not found at {binary}; build it first "
            "(from the repository root: cargo test --workspace --no-run) "
            "or point AGENTCAP_BIN at it",
            pytrace=False,
        )
    return binary


def spawn(what: str, cmd: list[str], stderr_path: Path, ready: re.Pattern) -> tuple[subprocess.Popen, list[str], re.Match]:
    """Start a child that announces itself on its first stdout line; returns it, its stdout lines and the match.

    stdin is a pipe nobody writes to: when this process dies for any reason the pipe closes and
    --exit-on-stdin-close makes the child exit too.
    """
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    lines: list[str] = []
    first: queue.Queue = queue.Queue()
    threading.Thread(target=_drain, args=(proc.stdout, lines, first), daemon=True).start()

    def tail() -> str:
        try:
            return stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    try:
        line = first.get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        stop_process(proc)
        pytest.fail(f"{what} printed nothing within {STARTUP_TIMEOUT_S:.0f}s: {' '.join(cmd)}\n"
                    f"stderr:\n{tail()}", pytrace=False)
    match = ready.search(line or "")
    if not match:
        stop_process(proc)
        pytest.fail(f"{what} did not announce its address (first stdout line: {line!r}, "
                    f"exit code {proc.returncode}): {' '.join(cmd)}\nstderr:\n{tail()}", pytrace=False)
    return proc, lines, match


def start_twin(name: str, capture: Path, logs: Path, api_key: str | None = None, extra: list[str] | None = None,
               tls: bool = False) -> Twin:
    binary = require_binary()
    capture.parent.mkdir(parents=True, exist_ok=True)
    if capture.exists():
        capture.unlink()  # the twin appends; a previous run's lines must not be validated again
    cmd = [
        str(binary), "sim",
        "--listen", "127.0.0.1:0",
        "--latency", "zero",
        "--capture", str(capture),
        "--exit-on-stdin-close",
    ]
    ca = None
    if tls:
        ca = logs / f"{name}-ca.pem"
        cmd += ["--tls", "--tls-ca", str(ca)]
    if api_key:
        cmd += ["--api-key", api_key]
    cmd += extra or []
    cmd += shlex.split(os.environ.get("AGENTCAP_SIM_ARGS", ""))
    stderr_path = logs / f"{name}.stderr.log"
    proc, lines, match = spawn(f"twin {name!r}", cmd, stderr_path, URL_RE)
    url = match.group(1).rstrip("/")
    return Twin(name=name, proc=proc, url=url, direct_url=url, capture=capture, stderr_path=stderr_path,
                api_key=api_key, stdout_lines=lines, ca=ca)


def start_proxy(name: str, upstream: str, logs: Path, ca: Path | None = None) -> Proxy:
    """`agentcap proxy` on ephemeral ports (client and admin) in front of `upstream`, recording into a fresh file."""
    binary = require_binary()
    db = logs / f"{name}.duckdb"
    for stale in logs.glob(f"{name}.duckdb*"):
        stale.unlink()
    cmd = [
        str(binary), "proxy",
        "--listen", "127.0.0.1:0",
        "--admin-listen", "127.0.0.1:0",
        "--upstream", upstream,
        "--db", str(db),
        "--exit-on-stdin-close",
    ]
    if ca is not None:
        cmd += ["--upstream-ca", str(ca)]
    stderr_path = logs / f"{name}.stderr.log"
    proc, lines, match = spawn(f"proxy {name!r}", cmd, stderr_path, PROXY_RE)
    return Proxy(name=name, proc=proc, url=match.group(1).rstrip("/"), admin_url=match.group(2).rstrip("/"),
                 db=db, stderr_path=stderr_path, stdout_lines=lines)


class TwinPool:
    """Every twin (and proxy) started during the session, so they can all be stopped (and their captures flushed)."""

    def __init__(self, capture_dir: Path, logs: Path, target: str):
        self.capture_dir = capture_dir
        self.logs = logs
        self.target = target
        self.twins: dict[str, Twin] = {}

    def get(self, name: str, api_key: str | None = None, extra: list[str] | None = None) -> Twin:
        twin = self.twins.get(name)
        if twin is None:
            twin = start_twin(name, self.capture_dir / f"{name}.jsonl", self.logs, api_key=api_key, extra=extra,
                              tls=self.target == "proxy-tls")
            self.twins[name] = twin
            if self.target != "direct":
                try:
                    twin.proxy = start_proxy(f"{name}-proxy", twin.direct_url, self.logs, ca=twin.ca)
                except BaseException:
                    twin.stop()
                    raise
                twin.url = twin.proxy.url
        elif not twin.running():
            pytest.fail(f"twin {name!r} or its proxy exited early (codes {twin.proc.returncode}, "
                        f"{twin.proxy.proc.returncode if twin.proxy else None}); stderr:\n{twin.stderr_tail()}\n"
                        f"{twin.proxy.stderr_tail() if twin.proxy else ''}", pytrace=False)
        return twin

    def stop_all(self) -> None:
        for twin in self.twins.values():
            twin.stop()


@pytest.fixture(scope="session")
def target(pytestconfig) -> str:
    """direct | proxy | proxy-tls (see the module docstring)."""
    return pytestconfig.getoption("--target")


@pytest.fixture(scope="session", autouse=True)
def wire_log():
    """Every request this process makes and the bytes it receives back (see wirelog.py)."""
    log = WireLog()
    log.install()
    yield log
    log.uninstall()


@pytest.fixture(scope="session")
def capture_dir(tmp_path_factory, target) -> Path:
    configured = os.environ.get("AGENTCAP_CAPTURE_DIR")
    path = Path(configured).resolve() if configured else tmp_path_factory.mktemp("capture")
    if target != "direct":
        # Keep the direct run's files (which test_zz_openapi.py validates) apart from the proxy runs'.
        path = path / target
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def twin_pool(capture_dir, tmp_path_factory, target):
    pool = TwinPool(capture_dir, tmp_path_factory.mktemp("twin-logs"), target)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def twin(twin_pool) -> Twin:
    """The main twin, without an API key; captures to python.jsonl."""
    return twin_pool.get("python")


@pytest.fixture(scope="session")
def auth_twin(twin_pool) -> Twin:
    """A second twin started with --api-key; captures to python-auth.jsonl."""
    return twin_pool.get("python-auth", api_key=AUTH_TWIN_KEY)


@pytest.fixture
def client(twin):
    from mistralai.client import Mistral

    return Mistral(server_url=twin.url, api_key=API_KEY, timeout_ms=30_000)


@pytest.fixture
def unique(request) -> str:
    """A short name unique to the test, for agent names and conversation labels."""
    return f"interop-{request.node.name[:40]}-{time.monotonic_ns() % 10**9}"


# Modules that read what the others did run after them, in this order.
RUN_LAST = ("test_zy_recording.py", "test_zz_openapi.py")


def pytest_collection_modifyitems(session, config, items):
    """The recording checks and the OpenAPI check read what the other tests sent: run them last."""
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        return RUN_LAST.index(name) + 1 if name in RUN_LAST else 0

    items.sort(key=rank)
