"""Processes for the browser suite: the twin, the recording proxy, `agentcap ui`, the live example, a hostile
upstream; and a headless Chromium (the system's, never a downloaded one).

Environment:
  AGENTCAP_BIN              the agentcap binary (default: <cargo target dir>/debug/agentcap)
  AGENTCAP_UI_LIVE_BIN      the `live` example (default: <cargo target dir>/debug/examples/live)
  AGENTCAP_CHROMIUM         Chromium (default: /usr/bin/chromium)
  AGENTCAP_UI_SCREENSHOTS   where screenshots go (default: a temporary directory, printed)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
URL_RE = re.compile(r"(http://127\.0\.0\.1:\d+)")


def target_dir() -> Path:
    out = subprocess.run([str(REPO / "scripts" / "target-dir")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def agentcap() -> str:
    return os.environ.get("AGENTCAP_BIN") or str(target_dir() / "debug" / "agentcap")


def live_bin() -> str:
    return os.environ.get("AGENTCAP_UI_LIVE_BIN") or str(target_dir() / "debug" / "examples" / "live")


class Proc:
    """A child that prints its address on its first stdout line and stops when its stdin closes."""

    def __init__(self, args: list[str]):
        self.args = args
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        line = self._first_line(60.0)
        self.line = line
        self.urls = URL_RE.findall(line)
        assert self.urls, f"{args[0]} did not start: {line!r} {self.p.stderr.read() if self.p.poll() is not None else ''}"

    def _first_line(self, timeout: float) -> str:
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        return box[0] if box else ""

    @property
    def url(self) -> str:
        return self.urls[0]

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.terminate()
                try:
                    self.p.wait(10)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.wait()


def start_twin() -> Proc:
    return Proc([agentcap(), "sim", "--listen", "127.0.0.1:0", "--exit-on-stdin-close"])


def start_proxy(upstream: str, db: Path) -> Proc:
    return Proc([agentcap(), "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream, "--db", str(db),
                 "--no-admin", "--exit-on-stdin-close"])


def start_ui(db: Path) -> Proc:
    return Proc([agentcap(), "ui", "--db", str(db), "--listen", "127.0.0.1:0", "--exit-on-stdin-close"])


def start_live(upstream: str, db: Path) -> Proc:
    return Proc([live_bin(), upstream, str(db)])


@pytest.fixture(scope="session")
def shots() -> Path:
    d = Path(os.environ.get("AGENTCAP_UI_SCREENSHOTS") or tempfile.mkdtemp(prefix="agentcap-ui-shots-"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {d}")
    return d


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=os.environ.get("AGENTCAP_CHROMIUM", "/usr/bin/chromium"),
                               headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page whose console errors, uncaught exceptions and dialogs are collected."""

    def __init__(self, browser):
        self.ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

        def dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", dialog)

    def close(self):
        self.ctx.close()


@pytest.fixture
def watched(browser):
    w = Watched(browser)
    yield w
    w.close()
