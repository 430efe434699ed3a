"""Processes for the browser suite: the twin, the recording proxy (its admin listener serves the UI over the live
recording), `agentcap ui`, `agentcap eval run`, a hostile upstream; and a headless Chromium (the system's, never a
downloaded one).

Environment:
  AGENTCAP_BIN              the agentcap binary (default: <cargo target dir>/debug/agentcap)
  AGENTCAP_CHROMIUM         Chromium (default: /usr/bin/chromium)
  AGENTCAP_UI_SCREENSHOTS   where screenshots go (default: <cargo target dir>/ui-browser-screenshots)
"""

from __future__ import annotations

import os
import re
import subprocess
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


SHARED = REPO.parent / "shared"
ADMIN_RE = re.compile(r"admin (http://127\.0\.0\.1:\d+)")
RUN_RE = re.compile(r"^run (run_[0-9a-z]+):", re.M)


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


def start_twin(*extra: str) -> Proc:
    return Proc([agentcap(), "sim", "--listen", "127.0.0.1:0", "--exit-on-stdin-close", *extra])


def start_proxy(upstream: str, db: Path, admin: bool = False) -> Proc:
    """`agentcap proxy`; with `admin`, its admin listener (and so the UI) on a free port: `Proc.admin_url`."""
    listen = ["--admin-listen", "127.0.0.1:0"] if admin else ["--no-admin"]
    p = Proc([agentcap(), "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream, "--db", str(db), *listen,
              "--exit-on-stdin-close"])
    m = ADMIN_RE.search(p.line)
    p.admin_url = m.group(1) if m else None
    assert not admin or p.admin_url, p.line
    return p


def run_eval(upstream: str, db: Path, work: Path, limit: int = 5) -> str:
    """`agentcap eval run` of `limit` SimpleQA items (from ../shared, fetched offline into a cache) through two
    configs, its embedded proxy recording into `db` beside the eval tables. Returns the run id."""
    cache = work / "cache"
    subprocess.run([agentcap(), "datasets", "fetch", "simpleqa", "--from-dir", str(SHARED / "datasets" / "simpleqa"),
                    "--data-dir", str(cache)], check=True, capture_output=True, text=True, timeout=120)
    configs = work / "configs.toml"
    configs.write_text('[[config]]\nname = "closed"\nmodel = "mistral-medium-latest"\n\n'
                       '[[config]]\nname = "web"\nmodel = "mistral-medium-latest"\ntools = ["web_search"]\n')
    out = subprocess.run([agentcap(), "eval", "run", "--dataset", "simpleqa", "--data-dir", str(cache),
                          "--configs", str(configs), "--limit", str(limit), "--upstream", upstream, "--db", str(db),
                          "--simulated-upstream", "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    m = RUN_RE.search(out.stdout + out.stderr)
    assert m, out.stdout + out.stderr
    return m.group(1)


def start_ui(db: Path) -> Proc:
    return Proc([agentcap(), "ui", "--db", str(db), "--listen", "127.0.0.1:0", "--exit-on-stdin-close"])


@pytest.fixture(scope="session")
def shots() -> Path:
    d = Path(os.environ.get("AGENTCAP_UI_SCREENSHOTS") or target_dir() / "ui-browser-screenshots")
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
