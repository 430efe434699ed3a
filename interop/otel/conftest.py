"""Processes for the trace export suite: a real Phoenix server (OTLP/HTTP receiver and span store), the twin and
the recording proxy exporting to it.

Environment:
  AGENTCAP_BIN   the agentcap binary (default: <cargo target dir>/debug/agentcap)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

sys.path.insert(0, str(REPO / "interop" / "support"))
import polling  # noqa: E402
from polling import free_port  # noqa: E402,F401  (the tests import it from here)
from procs import Proc, agentcap  # noqa: E402,F401


def wait_for(what: str, check, timeout: float = 120.0, step: float = 0.25):
    """`polling.wait_for`, an unreachable or failing HTTP endpoint counting as "not yet"."""
    return polling.wait_for(what, check, timeout, step, errors=(httpx.HTTPError, OSError))


class Phoenix:
    """`phoenix serve` on free loopback ports with a temporary working directory, nothing fetched from outside."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="agentcap-phoenix-")
        self.port = free_port()
        env = dict(os.environ)
        env.update({
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_WORKING_DIR": self.dir,
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "PHOENIX_ALLOWED_SANDBOX_PROVIDERS": "NONE",
        })
        phoenix = str(Path(sys.executable).parent / "phoenix")
        self.log = open(Path(self.dir) / "server.log", "w")
        self.p = subprocess.Popen([phoenix, "serve"], stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

        def up():
            assert self.p.poll() is None, f"phoenix exited: {self.tail()}"
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

        wait_for("phoenix to start", up, timeout=240, step=0.5)

    def tail(self) -> str:
        self.log.flush()
        return (Path(self.dir) / "server.log").read_text()[-3000:]

    def spans(self, project: str) -> list[dict]:
        """Every span of `project` (all pages), or [] while the project does not exist."""
        out: list[dict] = []
        cursor = None
        while True:
            params = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            r = httpx.get(f"{self.url}/v1/projects/{project}/spans", params=params, timeout=30)
            if r.status_code == 404:
                return []
            r.raise_for_status()
            body = r.json()
            out.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return out

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def phoenix():
    p = Phoenix()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def twin():
    p = Proc([agentcap(), "sim", "--listen", "127.0.0.1:0", "--exit-on-stdin-close"])
    yield p
    p.stop()


def start_proxy(upstream: str, db: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    """`agentcap proxy` in front of `upstream`, its admin listener on a free port."""
    full = dict(os.environ)
    for k in list(full):
        if k.startswith("OTEL_"):
            del full[k]
    full.update(env or {})
    return Proc([agentcap(), "proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream",
                 upstream, "--db", str(db), "--exit-on-stdin-close", *extra], env=full)
