"""Fixtures for the Python interop suite: they start the twin (`agentcap sim`) and build SDK clients.

Environment:
  AGENTCAP_BIN          the agentcap binary (default: ${CARGO_TARGET_DIR:-~/.cache/agentcap-target}/debug/agentcap)
  AGENTCAP_CAPTURE_DIR  where the twin writes its capture files (default: a pytest temporary directory);
                        this suite writes python.jsonl and python-auth.jsonl there and validates every *.jsonl in it
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

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

MODEL = "mistral-medium-latest"
API_KEY = "interop-test-key"
AUTH_TWIN_KEY = "interop-secret-key"

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
URL_RE = re.compile(r"listening on (https?://\S+)")


def twin_binary() -> Path:
    explicit = os.environ.get("AGENTCAP_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "agentcap-target")
    return Path(target) / "debug" / "agentcap"


@dataclass
class Twin:
    """One running `agentcap sim` process."""

    name: str
    proc: subprocess.Popen
    url: str
    capture: Path
    stderr_path: Path
    api_key: str | None
    stdout_lines: list[str] = field(default_factory=list)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        """Stop the process and wait for it: close stdin (its graceful exit), then SIGTERM, then SIGKILL."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        for escalate in (None, self.proc.terminate, self.proc.kill):
            if self.proc.poll() is not None:
                break
            if escalate is not None:
                try:
                    escalate()
                except ProcessLookupError:
                    break
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S / 2)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

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


def start_twin(name: str, capture: Path, logs: Path, api_key: str | None = None, extra: list[str] | None = None) -> Twin:
    binary = twin_binary()
    if not binary.is_file():
        pytest.fail(
            f"twin binary not found at {binary}; build it first "
            "(from the repository root: cargo test --workspace --no-run) "
            "or point AGENTCAP_BIN at it",
            pytrace=False,
        )
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
    if api_key:
        cmd += ["--api-key", api_key]
    cmd += extra or []
    cmd += shlex.split(os.environ.get("AGENTCAP_SIM_ARGS", ""))
    logs.mkdir(parents=True, exist_ok=True)
    stderr_path = logs / f"{name}.stderr.log"
    with open(stderr_path, "wb") as err:
        # stdin is a pipe nobody writes to: when this process dies for any reason the pipe closes
        # and --exit-on-stdin-close makes the twin exit too.
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    lines: list[str] = []
    first: queue.Queue = queue.Queue()
    threading.Thread(target=_drain, args=(proc.stdout, lines, first), daemon=True).start()
    twin = Twin(name=name, proc=proc, url="", capture=capture, stderr_path=stderr_path, api_key=api_key, stdout_lines=lines)
    try:
        line = first.get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        twin.stop()
        pytest.fail(f"twin {name!r} printed nothing within {STARTUP_TIMEOUT_S:.0f}s: {' '.join(cmd)}\n"
                    f"stderr:\n{twin.stderr_tail()}", pytrace=False)
    match = URL_RE.search(line or "")
    if not match:
        twin.stop()
        pytest.fail(f"twin {name!r} did not announce its address (first stdout line: {line!r}, "
                    f"exit code {proc.returncode}): {' '.join(cmd)}\nstderr:\n{twin.stderr_tail()}", pytrace=False)
    twin.url = match.group(1).rstrip("/")
    return twin


class TwinPool:
    """Every twin started during the session, so they can all be stopped (and their captures flushed)."""

    def __init__(self, capture_dir: Path, logs: Path):
        self.capture_dir = capture_dir
        self.logs = logs
        self.twins: dict[str, Twin] = {}

    def get(self, name: str, api_key: str | None = None, extra: list[str] | None = None) -> Twin:
        twin = self.twins.get(name)
        if twin is None:
            twin = start_twin(name, self.capture_dir / f"{name}.jsonl", self.logs, api_key=api_key, extra=extra)
            self.twins[name] = twin
        elif not twin.running():
            pytest.fail(f"twin {name!r} exited early (code {twin.proc.returncode}); stderr:\n{twin.stderr_tail()}",
                        pytrace=False)
        return twin

    def stop_all(self) -> None:
        for twin in self.twins.values():
            twin.stop()


@pytest.fixture(scope="session")
def capture_dir(tmp_path_factory) -> Path:
    configured = os.environ.get("AGENTCAP_CAPTURE_DIR")
    if configured:
        path = Path(configured).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="session")
def twin_pool(capture_dir, tmp_path_factory):
    pool = TwinPool(capture_dir, tmp_path_factory.mktemp("twin-logs"))
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


def pytest_collection_modifyitems(session, config, items):
    """The OpenAPI check reads what the other tests made the twin send: always run it last."""
    items.sort(key=lambda item: Path(str(item.fspath)).name == "test_zz_openapi.py")
