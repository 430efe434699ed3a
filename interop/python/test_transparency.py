"""Through the proxy a client gets what it would get from the upstream directly (proxy targets only).

The same requests go to one twin twice, first directly and then through the proxy; JSON bodies and SSE
streams must then be byte-identical once the ids and timestamps the twin mints afresh for every call are
replaced by placeholders (numbered by first appearance, so the structure of who refers to what is
compared too). The exact-bytes check, without any normalisation, is test_zy_recording.py's comparison
of every body the clients received through the proxy with what the twin wrote to its capture.
"""

from __future__ import annotations

import re
import ssl

import httpx
import pytest

from conftest import API_KEY, MODEL

ID_RE = re.compile(rb"\b(ag|conv|msg|fc|tool_exec|handoff|file|ref)_[0-9a-f]{32}\b")
TS_RE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
# The twin's 9-character function-call ids and its error bodies' request ids.
CALL_RE = re.compile(rb'"(tool_call_id|request_id)":"[A-Za-z0-9]+"')


def normalise(body: bytes) -> bytes:
    seen: dict[bytes, int] = {}

    def number(m: re.Match) -> bytes:
        n = seen.setdefault(m.group(0), len(seen))
        return m.group(1) + b"_<" + str(n).encode() + b">"

    out = ID_RE.sub(number, body)
    out = TS_RE.sub(b"<ts>", out)
    return CALL_RE.sub(rb'"\1":"<id>"', out)


def sse_names(body: bytes) -> list[str]:
    return [line[len(b"event: "):].decode() for line in body.split(b"\n") if line.startswith(b"event: ")]


@pytest.fixture(scope="module")
def pair(twin_pool, target):
    """A twin of its own (so the main twin's recording holds only proxied traffic), and its proxy."""
    if target == "direct":
        pytest.skip("needs the proxy (--target proxy or proxy-tls)")
    return twin_pool.get("python-transparency")


def run_script(base: str, verify) -> list[tuple[str, int, str, bytes]]:
    """The scenario against `base`: (step, status, content-type, body) per request."""
    out = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30, verify=verify) as http:
        def call(step: str, method: str, path: str, body=None) -> httpx.Response:
            res = http.request(method, path, json=body)
            out.append((step, res.status_code, res.headers.get("content-type", ""), res.content))
            return res

        agent = call("agent", "POST", "/v1/agents", {
            "model": MODEL, "name": "transparency", "instructions": "Search first.",
            "tools": [{"type": "web_search"}, {"type": "function", "function": {
                "name": "lookup_score", "parameters": {"type": "object", "properties": {"team": {"type": "string"}},
                                                       "required": ["team"]}}}]}).json()
        first = call("start", "POST", "/v1/conversations",
                     {"agent_id": agent["id"], "inputs": "Search the web for who won the last final."}).json()
        conv = first["conversation_id"]
        call("append-stream", "POST", f"/v1/conversations/{conv}",
             {"inputs": "Please use lookup_score for the winner.", "stream": True})
        history = call("history", "GET", f"/v1/conversations/{conv}/history").json()
        call_entry = next(e for e in history["entries"] if e["type"] == "function.call")
        call("function-result-stream", "POST", f"/v1/conversations/{conv}", {
            "inputs": [{"type": "function.result", "tool_call_id": call_entry["tool_call_id"], "result": "3-1"}],
            "stream": True})
        call("restart-stream", "POST", f"/v1/conversations/{conv}/restart", {
            "from_entry_id": first["outputs"][-1]["id"], "inputs": "Another question.", "stream": True})
        call("model-stream", "POST", "/v1/conversations", {"model": MODEL, "inputs": "Stream a short answer.",
                                                           "stream": True})
        call("messages", "GET", f"/v1/conversations/{conv}/messages")
        call("agent-get", "GET", f"/v1/agents/{agent['id']}")
        call("422", "POST", "/v1/conversations", {"model": MODEL, "inputs": "x", "not_a_field": 1})
        call("404", "GET", "/v1/conversations/conv_00000000000000000000000000000000")
    return out


def test_proxy_bodies_and_streams_match_direct(pair):
    verify = ssl.create_default_context(cafile=str(pair.ca)) if pair.ca else True
    direct = run_script(pair.direct_url, verify)
    proxied = run_script(pair.url, True)
    assert [s for s, *_ in direct] == [s for s, *_ in proxied]
    streams = 0
    for (step, d_status, d_type, d_body), (_, p_status, p_type, p_body) in zip(direct, proxied):
        assert (p_status, p_type) == (d_status, d_type), step
        if d_type.startswith("text/event-stream"):
            streams += 1
            assert sse_names(p_body) == sse_names(d_body), f"{step}: the event sequence differs"
            assert len(sse_names(d_body)) > 3, f"{step}: {d_body[:200]!r}"
        assert normalise(p_body) == normalise(d_body), f"{step}: bodies differ beyond ids and timestamps"
        assert len(p_body) == len(d_body), f"{step}: lengths differ"
    assert streams == 4
