"""The web UI in a real headless Chromium, over recordings made by the real proxy: navigation from the list to an
exchange's SSE timeline to its conversation's branch, and from an eval run to an incorrect item's conversation;
hostile recorded content stays inert; the live tail on a running proxy's admin listener shows new traffic without
a reload; no page logs a console error. Every page is screenshotted (see conftest.py for where)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import SHARED, Watched, run_eval, start_proxy, start_twin, start_ui

HOSTILE = ("<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">"
           "<a id=\"jsurl\" href=\"javascript:window.pwned=3\">click</a><svg onload=\"window.pwned=4\"></svg>")


def sse_blocks(raw: str) -> int:
    return sum(1 for b in raw.replace("\r\n", "\n").split("\n\n") if "data:" in b or "event:" in b)


def post(c: httpx.Client, path: str, body: dict, stream: bool = False) -> httpx.Response:
    r = c.post(path, json=body, headers={"x-agentcap-session": "browser", "accept": "text/event-stream" if stream else "application/json"})
    assert r.status_code == 200, r.text
    return r


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A scripted session through the proxy: a web search (connector), a function call round trip (streamed),
    a restart branch (streamed), a handoff (streamed). Then the proxy stops, a small SimpleQA eval runs on the
    twin (knowledge mode: some answers right, some wrong) through the eval runner's embedded proxy into the same
    file, and `agentcap ui` opens it."""
    work = tmp_path_factory.mktemp("rec")
    db = work / "rec.duckdb"
    twin = start_twin("--knowledge", str(SHARED / "datasets" / "simpleqa" / "simple_qa_test_set.csv"))
    proxy = start_proxy(twin.url, db)
    story = {}
    try:
        with httpx.Client(base_url=proxy.url, timeout=60) as c:
            helper = post(c, "/v1/agents", {"model": "mistral-small-latest", "name": "Helper"}).json()
            weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
            agent = post(c, "/v1/agents", {"model": "mistral-medium-latest", "name": "Searcher",
                                           "tools": [{"type": "web_search"}, weather],
                                           "handoffs": [helper["id"]]}).json()
            start = post(c, "/v1/conversations", {"agent_id": agent["id"], "inputs": "Who won the cup?"}).json()
            root = start["conversation_id"]
            first_answer = start["outputs"][-1]["id"]
            call = post(c, f"/v1/conversations/{root}", {"inputs": "Weather in Paris? Ask get_weather."}).json()
            tool_call_id = call["outputs"][0]["tool_call_id"]
            post(c, f"/v1/conversations/{root}/restart",
                 {"from_entry_id": first_answer, "inputs": "And the one before?", "stream": True}, stream=True)
            post(c, "/v1/conversations", {"agent_id": agent["id"], "inputs": "handoff please", "stream": True}, stream=True)
            last = post(c, f"/v1/conversations/{root}",
                        {"inputs": [{"type": "function.result", "tool_call_id": tool_call_id, "result": "{\"temp_c\": 21}"}],
                         "stream": True}, stream=True)
            story = {"root": root, "events": sse_blocks(last.text)}
        proxy.stop()
        story["run"] = run_eval(twin.url, db, work)
    finally:
        proxy.stop()
        twin.stop()
    ui = start_ui(db)
    yield ui, story
    ui.stop()


def test_navigate_from_streams_to_timeline_to_branch(recorded, watched: Watched, shots: Path):
    ui, story = recorded
    page = watched.page
    page.goto(ui.url + "/")
    assert page.locator("#exchanges tbody tr").count() >= 7
    page.screenshot(path=str(shots / "01-exchanges.png"), full_page=True)
    page.fill("input[name=session]", "browser")
    page.select_option("select[name=stream]", "yes")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/?*stream=yes*")
    rows = page.locator("#exchanges tbody tr")
    assert rows.count() == 3, "three streamed turns in the scripted session (the eval's are another session)"
    for i in range(rows.count()):
        assert "SSE" in rows.nth(i).inner_text()
    page.screenshot(path=str(shots / "02-streams.png"), full_page=True)
    rows.nth(0).locator("a").first.click()  # newest stream: the function result turn of the root
    page.wait_for_url("**/exchanges/*")
    marks = page.locator("svg.timeline rect.ev")
    assert marks.count() == story["events"], "one mark per event the client received"
    assert page.locator("svg.timeline line.ttft").count() == 1
    assert page.locator("ul.legend li").count() >= 3
    page.screenshot(path=str(shots / "03-exchange.png"), full_page=True)
    page.click("#conversation-link")
    page.wait_for_url(f"**/conversations/{story['root']}")
    assert page.locator("p.branchhead").count() == 1, "the restart hangs as a branch"
    text = page.inner_text("main")
    assert "connector web_search" in text and "call get_weather" in text and "function.result" in text
    page.screenshot(path=str(shots / "04-conversation.png"), full_page=True)
    page.goto(ui.url + "/conversations")
    assert page.locator("#conversations tbody tr").count() >= 3
    assert "simulated upstream" in page.inner_text("main")
    page.screenshot(path=str(shots / "05-conversations.png"), full_page=True)
    for name, path in [("agents", "/agents"), ("usage", "/usage"),
                       ("sql", "/sql?q=SELECT+operation%2C+count(*)+FROM+exchanges+GROUP+BY+1")]:
        page.goto(ui.url + path)
        assert page.locator("p.error").count() == 0, path
        page.screenshot(path=str(shots / f"09-{name}.png"), full_page=True)
    assert not watched.errors, watched.errors


def test_from_an_eval_run_to_an_incorrect_items_conversation(recorded, watched: Watched, shots: Path):
    ui, story = recorded
    page = watched.page
    page.goto(ui.url + "/runs")
    assert "simulated upstream" in page.inner_text("#runs")
    page.screenshot(path=str(shots / "10-runs.png"), full_page=True)
    page.click(f"#runs a[href='/runs/{story['run']}']")
    page.wait_for_url(f"**/runs/{story['run']}")
    assert page.locator("svg.accuracy .acc").count() == 2, "accuracy per config"
    assert page.locator("#items tbody tr").count() == 5
    page.screenshot(path=str(shots / "11-run.png"), full_page=True)
    # An item one config got wrong (the twin in knowledge mode is deterministic: the seed fixes which).
    wrong = page.locator("#items tbody tr").filter(has=page.locator("td", has_text="incorrect"))
    assert wrong.count() >= 1, page.inner_text("#items")
    wrong.first.locator("a").first.click()
    page.wait_for_url(f"**/runs/{story['run']}/items/*")
    page.screenshot(path=str(shots / "12-item.png"), full_page=True)
    summary = page.locator("dl.summary").filter(has=page.locator("dd", has_text=" · incorrect"))
    assert summary.count() >= 1
    question = page.inner_text("p.text")
    summary.first.locator("a.item-conversation").click()
    page.wait_for_url("**/conversations/conv_*")
    text = page.inner_text("main")
    assert question[:40] in text, "the conversation is the item's: its question is the first input"
    assert "message.output" in text
    page.screenshot(path=str(shots / "13-item-conversation.png"), full_page=True)
    page.goto(ui.url + f"/compare?a={story['run']}:closed&b={story['run']}:web")
    assert page.locator("p.error").count() == 0
    page.screenshot(path=str(shots / "14-compare.png"), full_page=True)
    assert not watched.errors, watched.errors


class Hostile(BaseHTTPRequestHandler):
    """An upstream whose answers carry markup, handlers, javascript: URLs, and a 5 MB body."""

    def log_message(self, *a):
        pass

    def _send(self, status: int, ctype: str, body: bytes):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-hostile", HOSTILE)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/big"):
            body = json.dumps({"html": HOSTILE, "pad": "A" * (5 * 1024 * 1024)}).encode()
            self._send(200, "application/json", body)
        else:
            self._send(404, "text/html", HOSTILE.encode())

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        req = json.loads(self.rfile.read(n) or b"{}")
        out = {"type": "message.output", "id": "msg_" + "a" * 32, "object": "entry", "role": "assistant",
               "content": HOSTILE, "created_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:00:01Z",
               "model": HOSTILE}
        if req.get("stream"):
            events = [("conversation.response.started", {"type": "conversation.response.started", "conversation_id": "conv_" + "b" * 32}),
                      (HOSTILE, {"type": HOSTILE}),
                      ("message.output.delta", {"type": "message.output.delta", "id": out["id"], "content": HOSTILE, "model": "m"}),
                      ("conversation.response.done", {"type": "conversation.response.done", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})]
            body = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
            self._send(200, "text/event-stream", body)
        else:
            body = json.dumps({"object": "conversation.response", "conversation_id": "conv_" + "c" * 32,
                               "outputs": [out], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
            self._send(200, "application/json", body)


def test_hostile_content_stays_inert(tmp_path, watched: Watched, shots: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db = tmp_path / "hostile.duckdb"
    proxy = start_proxy(f"http://127.0.0.1:{server.server_address[1]}", db)
    try:
        with httpx.Client(base_url=proxy.url, timeout=60) as c:
            hdr = {"x-agentcap-session": HOSTILE.replace("\"", "'")[:200], "x-agentcap-tag-x": "javascript:alert(1)"}
            assert c.post("/v1/conversations", json={"inputs": HOSTILE, "model": "m"}, headers=hdr).status_code == 200
            assert c.post("/v1/conversations", json={"inputs": HOSTILE, "stream": True}, headers=hdr).status_code == 200
            assert len(c.get("/big", headers=hdr).content) > 5 * 1024 * 1024
            c.get("/missing?q=" + "%3Cscript%3E", headers=hdr)
    finally:
        proxy.stop()
        server.shutdown()
    ui = start_ui(db)
    try:
        page = watched.page
        page.goto(ui.url + "/")
        ids = page.eval_on_selector_all("#exchanges tbody tr", "rs => rs.map(r => r.dataset.id)")
        assert len(ids) == 4
        page.screenshot(path=str(shots / "06-hostile-list.png"), full_page=True)
        pages = ["/", "/conversations"] + [f"/exchanges/{i}" for i in ids]
        for p in pages:
            page.goto(ui.url + p)
            assert page.evaluate("() => typeof window.pwned") == "undefined", p
            assert page.locator("main script, main img, main iframe, main a[href^='javascript:']").count() == 0, p
            # Responsive: the page answers script and its collapsible sections toggle.
            assert page.evaluate("() => 1 + 1") == 2
            if page.locator("details.body summary").count():
                page.locator("details.body summary").first.click()
        big = [i for i in ids if page.goto(ui.url + f"/exchanges/{i}") and page.inner_text("h1") == "GET /big"]
        assert len(big) == 1
        page.goto(ui.url + f"/exchanges/{big[0]}")
        main = page.inner_text("main")
        assert "5.0 MiB on the wire" in main and "showing the first" in main
        page.screenshot(path=str(shots / "07-hostile-big.png"))
        assert not watched.dialogs, watched.dialogs
        assert page.evaluate("() => typeof window.pwned") == "undefined"
        assert not watched.errors, watched.errors
    finally:
        ui.stop()


def test_live_tail_shows_new_traffic_without_reload(tmp_path, watched: Watched, shots: Path):
    """The UI as `agentcap proxy` serves it on its admin listener, over the recording it is writing."""
    twin = start_twin()
    live = start_proxy(twin.url, tmp_path / "live.duckdb", admin=True)
    proxy_url, ui_url = live.url, live.admin_url
    try:
        page = watched.page
        page.goto(ui_url + "/")
        assert page.locator("#exchanges tbody tr").count() == 0
        page.check("#tail")
        page.wait_for_selector("#tail-status:has-text('waiting')", timeout=10_000)
        with httpx.Client(base_url=proxy_url, timeout=60) as c:
            r = c.post("/v1/conversations", json={"model": "mistral-medium-latest", "inputs": "hello", "stream": True},
                       headers={"x-agentcap-session": "tailed"})
            assert r.status_code == 200
        t0 = time.monotonic()
        page.wait_for_selector("#exchanges tbody tr:has-text('tailed')", timeout=10_000)
        print(f"tail row appeared {time.monotonic() - t0:.2f} s after the response ended")
        assert page.locator("#exchanges tbody tr").count() == 1
        page.screenshot(path=str(shots / "08-live-tail.png"), full_page=True)
        assert not watched.errors, watched.errors
    finally:
        live.stop()
        twin.stop()
