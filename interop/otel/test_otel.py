"""The proxy's OpenTelemetry export against a real OTLP backend: Phoenix receives the spans of proxy -> twin traffic
over OTLP/HTTP, and the spans are read back through its REST API.

A conversation with a tool execution (web_search), a function call and a handoff runs through the proxy, the first
turn under a caller's `traceparent`. The spans Phoenix stores must form the GenAI tree: one span per exchange with
the GenAI attributes, a child per tool execution / function call / handoff entry, the first turn's span a child of
the caller's span; no message content unless --otlp-content, and then redacted.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from pathlib import Path

import httpx

from conftest import start_proxy, wait_for

SECRET = "SECRET-4242"
AUTH = {"Authorization": "Bearer sk-test"}


def conversation(base: str, traceparent: str) -> dict:
    """Runs the scripted conversation through the proxy at `base`, its first turn under `traceparent`; returns
    what the checks need."""
    c = httpx.Client(base_url=base, headers=AUTH, timeout=60)
    helper = c.post("/v1/agents", json={"model": "mistral-small-latest", "name": "helper",
                                        "instructions": "You help."})
    assert helper.status_code == 200, helper.text
    helper_id = helper.json()["id"]
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    agent = c.post("/v1/agents", json={"model": "mistral-medium-latest", "name": "router",
                                       "tools": [{"type": "web_search"}, weather], "handoffs": [helper_id]})
    assert agent.status_code == 200, agent.text
    agent_id = agent.json()["id"]

    # 1. Streamed start under the caller's trace: web_search runs (a tool.execution) then the answer.
    headers = {"traceparent": traceparent, "Accept": "text/event-stream"}
    with c.stream("POST", "/v1/conversations", headers=headers, json={
            "agent_id": agent_id, "inputs": f"What is new in Paris today? {SECRET}", "stream": True}) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    conv_id = re.search(r'"conversation_id":\s*"([^"]+)"', text).group(1)
    # 2. Plain append: the model asks for get_weather (a function.call).
    r = c.post(f"/v1/conversations/{conv_id}", json={"inputs": "Please call get_weather for Paris"})
    assert r.status_code == 200, r.text
    call = next(o for o in r.json()["outputs"] if o["type"] == "function.call")
    # 3. The function's result, then the answer.
    r = c.post(f"/v1/conversations/{conv_id}", json={"inputs": [
        {"type": "function.result", "tool_call_id": call["tool_call_id"], "result": "sunny"}]})
    assert r.status_code == 200, r.text
    # 4. Streamed append that hands off to the helper.
    with c.stream("POST", f"/v1/conversations/{conv_id}", headers={"Accept": "text/event-stream"},
                  json={"inputs": "handoff to helper please", "stream": True}) as r:
        assert r.status_code == 200
        "".join(r.iter_text())
    return {"agent_id": agent_id, "helper_id": helper_id, "conversation_id": conv_id,
            "tool_call_id": call["tool_call_id"]}


def attrs(span: dict) -> dict:
    """A span's attributes as a flat {dotted.name: value} dict, whichever shape Phoenix returns."""
    out: dict = {}

    def walk(prefix: str, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            out[prefix] = v

    raw = span.get("attributes") or {}
    if isinstance(raw, list):
        for kv in raw:
            val = kv.get("value")
            if isinstance(val, dict) and len(val) == 1:
                val = next(iter(val.values()))
            out[kv["key"]] = val
    else:
        walk("", raw)
    return out


def at(span: dict, key: str) -> datetime:
    return datetime.fromisoformat(span[key])


def span_id(span: dict) -> str:
    return span["context"]["span_id"]


def trace_id(span: dict) -> str:
    return span["context"]["trace_id"]


def run_and_collect(phoenix, twin, tmp_path: Path, *extra: str) -> tuple[dict, list[dict], str]:
    project = f"agentcap-{uuid.uuid4().hex[:8]}"
    proxy = start_proxy(twin.url, tmp_path / "rec.duckdb", "--otlp-endpoint", phoenix.url, "--redact", "SECRET-[0-9]+",
                        *extra, env={"OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}"})
    try:
        # A caller's trace of its own per run: Phoenix files a trace under the project that first sent it.
        caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        ids = conversation(proxy.url, f"00-{caller_trace}-{caller_span}-01")
        ids.update(caller_trace=caller_trace, caller_span=caller_span)

        def enough():
            spans = phoenix.spans(project)
            names = {s["name"] for s in spans}
            want = {"execute_tool web_search", "execute_tool get_weather", "invoke_agent helper"}
            turns = [s for s in spans if attrs(s).get("gen_ai.conversation.id") == ids["conversation_id"]
                     and attrs(s).get("agentcap.entry.type") is None]
            return spans if want <= names and len(turns) >= 4 else None

        try:
            spans = wait_for("the spans in phoenix", enough, timeout=120, step=1.0)
        except AssertionError as e:
            m = httpx.get(f"{proxy.admin_url}/metrics", timeout=30).text
            otlp = "\n".join(line for line in m.splitlines() if "otlp" in line and not line.startswith("#"))
            raise AssertionError(f"{e}\nproxy: {otlp}\nphoenix: {phoenix.tail()}") from None
        metrics = httpx.get(f"{proxy.admin_url}/metrics", timeout=30).text
    finally:
        stderr = proxy.stop()
    return ids, spans, metrics + "\n" + stderr


def describe(spans: list[dict]) -> str:
    """The span tree as text (names, parents, key attributes): printed with -s, kept in the report."""
    by_parent: dict = {}
    for s in spans:
        by_parent.setdefault(s.get("parent_id"), []).append(s)
    ids = {span_id(s) for s in spans}
    lines: list[str] = []

    def show(s: dict, depth: int):
        a = attrs(s)
        keys = ["gen_ai.operation.name", "gen_ai.agent.id", "gen_ai.agent.name", "gen_ai.request.model",
                "gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.tool.type", "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens", "gen_ai.response.time_to_first_chunk"]
        shown = ", ".join(f"{k.removeprefix('gen_ai.')}={a[k]}" for k in keys if k in a)
        lines.append(f"{'  ' * depth}{s['name']} [{s.get('span_kind')}] span={span_id(s)} parent={s.get('parent_id')} "
                     f"{shown}")
        for c in sorted(by_parent.get(span_id(s), []), key=lambda x: at(x, "start_time")):
            show(c, depth + 1)

    roots = [s for s in spans if s.get("parent_id") not in ids]
    for r in sorted(roots, key=lambda x: at(x, "start_time")):
        show(r, 0)
    return "\n".join(lines)


def test_exchanges_reach_phoenix_as_a_genai_span_tree(phoenix, twin, tmp_path):
    ids, spans, metrics = run_and_collect(phoenix, twin, tmp_path)
    tree = describe(spans)
    print("\n" + tree)
    by_id = {span_id(s): s for s in spans}

    # The streamed start: a child of the caller's span, in the caller's trace, with the GenAI attributes.
    start = [s for s in spans if s.get("parent_id") == ids["caller_span"]]
    assert len(start) == 1, tree
    start = start[0]
    a = attrs(start)
    assert trace_id(start) == ids["caller_trace"]
    assert start["name"] == f"invoke_agent {ids['agent_id']}", tree
    assert a["gen_ai.operation.name"] == "invoke_agent"
    assert a["gen_ai.provider.name"] == "mistral_ai"
    assert a["gen_ai.conversation.id"] == ids["conversation_id"]
    assert a["gen_ai.agent.id"] == ids["agent_id"]
    assert a["gen_ai.request.model"] == "mistral-medium-latest"
    assert int(a["gen_ai.usage.input_tokens"]) > 0 and int(a["gen_ai.usage.output_tokens"]) > 0
    assert float(a["gen_ai.response.time_to_first_chunk"]) > 0
    assert a["agentcap.operation"] == "conversations.start_stream"

    # Its tool execution: a child span inside it.
    tool = [s for s in spans if s["name"] == "execute_tool web_search"]
    assert len(tool) == 1, tree
    t = attrs(tool[0])
    assert tool[0]["parent_id"] == span_id(start)
    assert trace_id(tool[0]) == ids["caller_trace"]
    assert t["gen_ai.operation.name"] == "execute_tool"
    assert t["gen_ai.tool.name"] == "web_search"
    assert t["gen_ai.tool.type"] == "extension"
    assert at(tool[0], "start_time") >= at(start, "start_time")
    assert at(tool[0], "end_time") <= at(start, "end_time")

    # The function call, child of the plain append's span (a trace of its own: no traceparent there).
    call = [s for s in spans if s["name"] == "execute_tool get_weather"]
    assert len(call) == 1, tree
    c = attrs(call[0])
    assert c["gen_ai.tool.call.id"] == ids["tool_call_id"]
    assert c["gen_ai.tool.type"] == "function"
    parent = by_id[call[0]["parent_id"]]
    assert attrs(parent)["agentcap.operation"] == "conversations.append"
    assert parent.get("parent_id") in (None, "")
    assert trace_id(parent) != ids["caller_trace"]

    # The handoff, child of the streamed append's span.
    handoff = [s for s in spans if s["name"] == "invoke_agent helper"]
    assert len(handoff) == 1, tree
    h = attrs(handoff[0])
    assert h["gen_ai.agent.id"] == ids["helper_id"]
    assert h["agentcap.handoff.previous_agent_id"] == ids["agent_id"]
    assert attrs(by_id[handoff[0]["parent_id"]])["agentcap.operation"] == "conversations.append_stream"

    # Agent creation.
    creates = [s for s in spans if attrs(s).get("gen_ai.operation.name") == "create_agent"]
    assert {s["name"] for s in creates} == {"create_agent helper", "create_agent router"}, tree

    # No content without --otlp-content.
    blob = json.dumps(spans)
    assert "gen_ai.input.messages" not in blob and "gen_ai.output.messages" not in blob
    assert "What is new in Paris" not in blob and "SECRET" not in blob
    assert re.search(r"^agentcap_otlp_spans_failed_total 0$", metrics, re.M), metrics
    assert re.search(r"^agentcap_otlp_spans_dropped_total 0$", metrics, re.M), metrics


def test_content_is_exported_only_when_asked_and_always_redacted(phoenix, twin, tmp_path):
    ids, spans, _ = run_and_collect(phoenix, twin, tmp_path, "--otlp-content")
    start = next(s for s in spans if s.get("parent_id") == ids["caller_span"])
    a = attrs(start)
    inputs = json.loads(a["gen_ai.input.messages"])
    assert inputs[0]["role"] == "user"
    text = inputs[0]["parts"][0]["content"]
    assert "What is new in Paris today?" in text and "[REDACTED]" in text
    assert "gen_ai.output.messages" in a
    assert "SECRET-4242" not in json.dumps(spans)
    call = next(s for s in spans if s["name"] == "execute_tool get_weather")
    assert json.loads(attrs(call)["gen_ai.tool.call.arguments"]) == {"city": "sample"}


def test_an_unreachable_collector_costs_forwarding_nothing_and_is_counted(twin, tmp_path):
    # A port nothing listens on (bound, then closed).
    from conftest import free_port
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = start_proxy(twin.url, tmp_path / "rec.duckdb", "--otlp-endpoint", dead)
    try:
        c = httpx.Client(base_url=proxy.url, headers=AUTH, timeout=60)
        direct = httpx.Client(base_url=twin.url, headers=AUTH, timeout=60)
        body = {"model": "mistral-small-latest", "inputs": "Say hello", "stream": False}
        for _ in range(5):
            r = c.post("/v1/conversations", json=body)
            assert r.status_code == 200, r.text
            d = direct.post("/v1/conversations", json=body)
            # The same answer as without the proxy (ids and timestamps aside).
            assert r.json()["outputs"][0]["content"] == d.json()["outputs"][0]["content"]

        def failed():
            m = httpx.get(f"{proxy.admin_url}/metrics", timeout=30).text
            got = re.search(r"^agentcap_otlp_spans_failed_total (\d+)", m, re.M)
            return int(got.group(1)) if got and int(got.group(1)) >= 5 else None

        assert wait_for("failed spans to be counted", failed, timeout=120, step=0.5) >= 5
        m = httpx.get(f"{proxy.admin_url}/metrics", timeout=30).text
        assert re.search(r"^agentcap_otlp_spans_exported_total 0$", m, re.M), m
    finally:
        proxy.stop()
