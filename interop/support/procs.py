"""What the Python suites share for running agentcap: `agentcap()` finds the binary, `Proc` runs one of its servers.

Import it from a suite with the directory on the path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

Environment: AGENTCAP_BIN, the agentcap binary (default: <cargo target dir>/debug/agentcap).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
URL_RE = re.compile(r"(http://127\.0\.0\.1:\d+)")
ADMIN_RE = re.compile(r"admin (http://127\.0\.0\.1:\d+)")


def agentcap() -> str:
    if os.environ.get("AGENTCAP_BIN"):
        return os.environ["AGENTCAP_BIN"]
    out = subprocess.run([str(REPO / "scripts" / "target-dir")], check=True, capture_output=True, text=True)
    return str(Path(out.stdout.strip()) / "debug" / "agentcap")


class Proc:
    """A child that prints its address on its first stdout line and stops when its stdin closes. Its stderr is
    drained as it comes (so the child never blocks on a full pipe) into `err`."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, stop_timeout: float = 60.0):
        self.args = args
        self.stop_timeout = stop_timeout
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env)
        self.err: list[str] = []
        self._drain = threading.Thread(target=lambda: self.err.extend(self.p.stderr), daemon=True)
        self._drain.start()
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(60.0)
        self.line = box[0] if box else ""
        urls = URL_RE.findall(self.line)
        assert urls, f"{args[:2]} did not start: {self.line!r}"
        self.url = urls[0]
        m = ADMIN_RE.search(self.line)
        self.admin_url = m.group(1) if m else None

    def stop(self) -> str:
        """Closes stdin (a graceful stop), waits `stop_timeout` at most (then kills), and returns what the process
        wrote to stderr."""
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._drain.join(10.0)
        return "".join(self.err)

    def kill9(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
