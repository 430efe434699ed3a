"""What went over the wire, checked against what the twin sent and what the proxy recorded.

Runs after the SDK scenarios (conftest orders it just before the OpenAPI check), so it sees all their traffic:

* every target: every body and SSE stream a client of this process received is, byte for byte, what the twin
  wrote (its `--capture` file holds each JSON body and each event's data exactly as serialised), request by
  request and in order, and the twin answered no request the clients did not see;
* proxy targets: the proxy's DuckDB recording, read through its admin listener (`POST /query`), holds one
  `exchanges` row per request the twin answered, every SSE event the clients received, every entry (a streamed
  and a non-streamed turn of the same input give the same entry rows), restart lineage, agent version
  snapshots and usage, each compared with what the clients sent and received; with `proxy-tls` every
  exchange went upstream over HTTP/2. Finally the proxy is stopped and the file is read with `agentcap query`.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest

from conftest import API_KEY, MODEL, Twin, twin_binary
from test_sdk import consume
from wirelog import WireRecord

TURN_PATH = re.compile(r"^/v1/conversations(?:/(?P<conv>[^/]+)(?P<restart>/restart)?)?$")
EVENT_ENTRY_TYPES = {
    "message.output.delta": "message.output",
    "tool.execution.started": "tool.execution",
    "tool.execution.delta": "tool.execution",
    "tool.execution.done": "tool.execution",
    "function.call.delta": "function.call",
    "agent.handoff.started": "agent.handoff",
    "agent.handoff.done": "agent.handoff",
}


# ----------------------------------------------------------------------------------------- the capture


@dataclass
class Captured:
    """One line of a twin's capture file, with the exact bytes of the body or event data it holds."""

    rec: dict
    raw: bytes  # the body (kind json) or the event data (kind sse), as the twin serialised it

    @property
    def kind(self) -> str:
        return self.rec["kind"]


def read_capture(twin: Twin) -> list[Captured]:
    out = []
    for lineno, line in enumerate(twin.capture.read_bytes().splitlines(), 1):
        rec = json.loads(line)
        # The capture line is {"method":…,"kind":"json","body":BODY} or {…,"kind":"sse","event":E,"data":DATA}:
        # BODY and DATA are the very bytes the twin serialised for the wire.
        marker = b',"body":' if rec["kind"] == "json" else b',"data":'
        at = line.index(marker, line.index(b'"kind":'))
        raw = line[at + len(marker):-1]
        assert line.endswith(b"}") and json.loads(raw) == rec["body" if rec["kind"] == "json" else "data"], (
            f"{twin.capture}:{lineno}: cannot locate the raw body in the capture line")
        out.append(Captured(rec, raw))
    return out


def is_turn(rec: WireRecord) -> bool:
    return rec.method == "POST" and TURN_PATH.match(rec.path) is not None


def match_capture(twin: Twin, records: list[WireRecord]) -> list[list[Captured]]:
    """Pairs each request with the capture lines of its response (one for JSON, one per event for SSE), asserting
    that the client received exactly the bytes the twin wrote and that every capture line is accounted for."""
    captured = read_capture(twin)
    pos = 0
    groups = []
    for i, rec in enumerate(records):
        where = f"{twin.name} request #{i} {rec.describe()}"
        assert rec.error is None, f"{where}: {rec.error}"
        assert rec.complete, f"{where}: the client did not read the whole response"
        assert pos < len(captured), f"{where}: the twin captured nothing for it"
        head = captured[pos]
        assert (head.rec["method"], head.rec["path"]) == (rec.method, rec.path), (
            f"{where}: the twin's next captured response is for {head.rec['method']} {head.rec['path']}")
        if rec.is_sse:
            events = rec.events()
            group = captured[pos:pos + len(events)]
            assert all(c.kind == "sse" and c.rec["path"] == rec.path for c in group), f"{where}: capture mismatch"
            expected = b"".join(b"event: " + c.rec["event"].encode() + b"\ndata: " + c.raw + b"\n\n" for c in group)
            assert bytes(rec.body) == expected, f"{where}: the stream the client received differs from the twin's"
            pos += len(events)
            following = captured[pos] if pos < len(captured) else None
            assert following is None or following.kind == "json" or (
                following.rec["event"] == "conversation.response.started"), (
                f"{where}: the twin sent more events than the client received")
        else:
            group = [head]
            assert head.kind == "json" and head.rec["status"] == rec.status, (
                f"{where}: the twin captured {head.kind} status {head.rec['status']}")
            assert bytes(rec.body) == head.raw, f"{where}: the body the client received differs from the twin's"
            pos += 1
        groups.append(group)
    assert pos == len(captured), (
        f"{twin.name}: the twin answered {len(captured) - pos} capture lines no client of this run received, "
        f"from {captured[pos].rec['method']} {captured[pos].rec['path']}")
    return groups


def client_records(twin: Twin, wire_log) -> list[WireRecord]:
    return wire_log.to(twin.url, twin.direct_url)


# ------------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def proxied(twin, target) -> Twin:
    if target == "direct":
        pytest.skip("the recording needs the proxy (--target proxy or proxy-tls)")
    assert twin.proxy is not None
    return twin


def turn_conversation(rec: WireRecord) -> str | None:
    if rec.is_sse:
        events = rec.events()
        return events[0].json().get("conversation_id") if events else None
    return rec.json().get("conversation_id") if rec.status == 200 else None


def test_streamed_and_non_streamed_turns_give_the_same_entries(client, proxied, unique):
    """The same turns once as JSON and once streamed: the proxy rebuilds the same entries from the deltas."""
    conv = client.beta.conversations
    agent = client.beta.agents.create(model=MODEL, name=unique, tools=[{"type": "web_search"}],
                                      instructions="Search the web before answering.")
    pairs = []
    for start in ({"model": MODEL, "inputs": "Tell me about lighthouses."},
                  {"agent_id": agent.id, "inputs": "Search the web for the history of lighthouses."}):
        plain = conv.start(**start).conversation_id
        streamed = consume(conv.start_stream(**start))[0].data.conversation_id
        conv.append(conversation_id=plain, inputs="And in one sentence?")
        consume(conv.append_stream(conversation_id=streamed, inputs="And in one sentence?"))
        pairs.append((plain, streamed))

    proxy = proxied.proxy
    proxy.flush()
    columns = "direction, position, type, role, agent_id, model, text, name, tool_call_id, arguments"
    for plain, streamed in pairs:
        rows = {}
        for cid in (plain, streamed):
            rows[cid] = proxy.query(
                f"SELECT x.operation, e.source, {', '.join('e.' + c for c in columns.split(', '))} "
                f"FROM entries e JOIN exchanges x ON x.id = e.exchange_id "
                f"WHERE e.conversation_id = '{cid}' ORDER BY x.started_at, e.direction, e.position")
        assert [r["operation"] for r in rows[plain]][:1] == ["conversations.start"]
        assert {r["source"] for r in rows[plain] if r["direction"] == "output"} == {"response"}
        assert {r["source"] for r in rows[streamed] if r["direction"] == "output"} == {"stream"}
        strip = [{k: v for k, v in r.items() if k not in ("operation", "source")} for r in rows[plain]]
        strip_s = [{k: v for k, v in r.items() if k not in ("operation", "source")} for r in rows[streamed]]
        assert strip, f"no entries recorded for {plain}"
        assert strip_s == strip, f"streamed {streamed} and non-streamed {plain} turns recorded different entries"
        types = [r["type"] for r in strip]
        assert types.count("message.input") == 2 and "message.output" in types, types
    agent_types = [r["type"] for r in proxy.query(
        f"SELECT type FROM entries WHERE conversation_id = '{pairs[1][1]}' AND direction = 'output'")]
    assert "tool.execution" in agent_types, agent_types


def test_clients_received_what_the_twin_sent(twin_pool, wire_log):
    """Every target: the bytes each client received are the bytes the twin serialised, request by request."""
    checked = Counter()
    for twin in twin_pool.twins.values():
        records = client_records(twin, wire_log)
        assert records, f"no request reached twin {twin.name!r}"
        groups = match_capture(twin, records)
        checked["requests"] += len(records)
        checked["events"] += sum(len(g) for g, r in zip(groups, records) if r.is_sse)
    assert checked["events"] > 0, checked


# ---------------------------------------------------------------------------------------- the recording


def as_json(v):
    """A JSON column's value: DuckDB without its JSON extension returns the text."""
    return json.loads(v) if isinstance(v, str) else v


@dataclass
class Recording:
    twin: Twin
    records: list[WireRecord]  # every request of this run to the proxy, in order
    captured: list[list[Captured]]  # what the twin sent for each
    exchanges: list[dict]  # the `exchanges` rows, in the order the requests arrived
    events: dict[str, list[dict]]
    entries: dict[str, list[dict]]
    usage: dict[str, list[dict]]

    def pairs(self):
        return zip(self.records, self.exchanges)


@pytest.fixture(scope="module")
def recording(proxied, wire_log) -> Recording:
    proxy = proxied.proxy
    records = wire_log.to(proxied.url)
    assert not wire_log.to(proxied.direct_url), "this twin is reached only through its proxy"
    captured = match_capture(proxied, records)
    proxy.flush()
    exchanges = proxy.query("SELECT * FROM exchanges ORDER BY started_at, id")

    def grouped(sql: str) -> dict[str, list[dict]]:
        out = defaultdict(list)
        for row in proxy.query(sql):
            out[row["exchange_id"]].append(row)
        return out

    return Recording(
        twin=proxied, records=records, captured=captured, exchanges=exchanges,
        events=grouped("SELECT * FROM sse_events ORDER BY exchange_id, seq"),
        entries=grouped("SELECT * FROM entries ORDER BY exchange_id, direction DESC, position"),
        usage=grouped("SELECT * FROM usage"),
    )


def test_one_exchange_row_per_request(recording, target):
    r = recording
    twin_side = len(r.captured)  # requests the twin answered (each paired with its capture lines)
    assert len(r.records) == twin_side > 50, (len(r.records), twin_side)
    assert len(r.exchanges) == twin_side, (
        f"{len(r.exchanges)} exchanges recorded for {twin_side} requests the twin answered")
    fingerprint = hashlib.sha256(API_KEY.encode()).hexdigest()[:12]
    version = "HTTP/2" if target == "proxy-tls" else "HTTP/1.1"
    for i, (rec, x) in enumerate(r.pairs()):
        where = f"request #{i} {rec.describe()}"
        assert (x["method"], x["path"], x["query"] or None, x["status"]) == (
            rec.method, rec.path, rec.url.query.decode() or None, rec.status), where
        assert x["outcome"] == "complete" and x["error"] is None, (where, x["outcome"], x["error"])
        assert x["upstream_version"] == version, (where, x["upstream_version"])
        assert x["is_stream"] == rec.is_sse, where
        assert x["response_bytes"] == len(rec.body), where
        assert x["request_bytes"] == len(rec.request_body or b""), where
        if rec.request_body:
            assert as_json(x["request_body"]) == rec.request_json(), where
        if rec.is_sse:
            assert x["response_body"] is None and x["event_count"] == len(rec.events()), where
        else:
            assert as_json(x["response_body"]) == rec.json(), where
            assert x["event_count"] is None, where
        assert x["key_fingerprint"] == fingerprint, where
        headers = as_json(x["request_headers"])
        assert headers.get("authorization") == "[REDACTED]", where
        assert API_KEY not in json.dumps(x), where


def test_every_sse_event_is_recorded(recording):
    r = recording
    total = 0
    for i, (rec, x) in enumerate(r.pairs()):
        rows = r.events.get(x["id"], [])
        if not rec.is_sse:
            assert rows == [], f"request #{i}: events recorded for a JSON response"
            continue
        got = rec.events()
        total += len(got)
        assert [row["seq"] for row in rows] == list(range(len(got))), f"request #{i} {rec.describe()}"
        assert [(row["event_type"], as_json(row["data"]), row["size"]) for row in rows] == [
            (e.event, e.json(), len(e.raw)) for e in got], f"request #{i} {rec.describe()}"
        assert all(row["parse_error"] is None for row in rows)
        offsets = [row["offset_us"] for row in rows]
        assert offsets == sorted(offsets), f"request #{i}: receive offsets go backwards"
    assert total > 100, total
    assert sum(len(v) for v in r.events.values()) == total, "events recorded for no request of this run"


def content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") if content.get("type") == "text" else ""
    return "".join(content_text(c) for c in content or [])


def expected_outputs(rec: WireRecord) -> list[dict]:
    """The turn's output entries as the client saw them: (id, type, text of messages) by position."""
    if not rec.is_sse:
        return [{"entry_id": o["id"], "type": o["type"],
                 "text": content_text(o["content"]) if o["type"] == "message.output" else None}
                for o in rec.json()["outputs"]]
    slots: dict[int, dict] = {}
    for e in rec.events():
        if e.event not in EVENT_ENTRY_TYPES:
            continue
        d = e.json()
        slot = slots.setdefault(d["output_index"], {"entry_id": d["id"], "type": EVENT_ENTRY_TYPES[e.event],
                                                    "text": None})
        assert slot["entry_id"] == d["id"], f"{rec.describe()}: two ids at output_index {d['output_index']}"
        if e.event == "message.output.delta":
            slot["text"] = (slot["text"] or "") + content_text(d["content"])
    return [slots[k] for k in sorted(slots)]


def expected_inputs(rec: WireRecord) -> list[dict]:
    inputs = rec.request_json()["inputs"]
    if isinstance(inputs, str):
        return [{"type": "message.input", "role": "user", "text": inputs, "tool_call_id": None}]
    out = []
    for item in inputs:
        if item.get("type") == "function.result":
            out.append({"type": "function.result", "role": None, "text": item["result"],
                        "tool_call_id": item["tool_call_id"]})
        else:
            out.append({"type": item.get("type", "message.input"), "role": item.get("role"),
                        "text": content_text(item.get("content")), "tool_call_id": None})
    return out


def test_every_entry_is_recorded(recording):
    r = recording
    turns = 0
    for i, (rec, x) in enumerate(r.pairs()):
        where = f"request #{i} {rec.describe()}"
        rows = r.entries.get(x["id"], [])
        if not (is_turn(rec) and rec.status == 200):
            assert rows == [], f"{where}: entries recorded for something that is not a successful turn"
            continue
        turns += 1
        conv = turn_conversation(rec)
        assert all(row["conversation_id"] == conv for row in rows), where
        inputs = [row for row in rows if row["direction"] == "input"]
        outputs = [row for row in rows if row["direction"] == "output"]
        assert [row["position"] for row in inputs] == list(range(len(inputs))), where
        assert [row["position"] for row in outputs] == list(range(len(outputs))), where
        assert [{k: row[k] for k in ("type", "role", "text", "tool_call_id")} for row in inputs] == \
            expected_inputs(rec), where
        assert all(row["source"] == "request" for row in inputs), where
        want = expected_outputs(rec)
        got = [{"entry_id": row["entry_id"], "type": row["type"],
                "text": row["text"] if row["type"] == "message.output" else None} for row in outputs]
        assert got == want, where
        assert {row["source"] for row in outputs} <= {"stream" if rec.is_sse else "response"}, where
        assert all(row["created_at"] for row in outputs if not rec.is_sse), where
    assert turns > 20, turns


def test_restart_lineage(recording):
    r = recording
    expected = {}
    for rec in r.records:
        m = TURN_PATH.match(rec.path)
        if rec.method == "POST" and m and m.group("restart") and rec.status == 200:
            expected[turn_conversation(rec)] = (m.group("conv"), rec.request_json()["from_entry_id"])
    assert len(expected) >= 2, "the scenarios restart at least twice (once streamed)"
    rows = r.twin.proxy.query(
        "SELECT id, parent_conversation_id, from_entry_id FROM conversations WHERE parent_conversation_id IS NOT NULL")
    assert {row["id"]: (row["parent_conversation_id"], row["from_entry_id"]) for row in rows} == expected
    # Every conversation a turn touched is there, with its number of turns and, for agents, its agent.
    turns: Counter = Counter()
    agents = {}
    for rec in r.records:
        if is_turn(rec) and rec.status == 200:
            cid = turn_conversation(rec)
            turns[cid] += 1
            body = rec.request_json()
            if "agent_id" in body:
                agents[cid] = body["agent_id"]
    rows = r.twin.proxy.query("SELECT id, turns, agent_id FROM conversations WHERE turns > 0")
    assert {row["id"]: row["turns"] for row in rows} == dict(turns)
    assert {row["id"]: row["agent_id"] for row in rows if row["id"] in agents} == agents


def agent_objects(rec: WireRecord):
    """Agent objects in a successful agents API response: one agent, a list, or a page."""
    if rec.status != 200 or not rec.path.startswith("/v1/agents") or rec.is_sse:
        return []
    body = rec.json()
    items = body if isinstance(body, list) else body.get("data", [body]) if isinstance(body, dict) else []
    return [a for a in items if isinstance(a, dict) and a.get("object") == "agent"]


def test_agent_version_snapshots(recording):
    r = recording
    first_seen: dict[tuple[str, int], dict] = {}
    for rec in r.records:
        for agent in agent_objects(rec):
            first_seen.setdefault((agent["id"], agent["version"]), agent)
    assert any(v > 0 for _, v in first_seen), "the scenarios update agents"
    rows = r.twin.proxy.query("SELECT agent_id, version, snapshot, exchange_id FROM agents")
    got = {(row["agent_id"], row["version"]): as_json(row["snapshot"]) for row in rows}
    assert set(got) == set(first_seen)
    for key, snapshot in first_seen.items():
        assert got[key] == snapshot, f"agent {key}: the snapshot is not the first response that showed it"


def test_usage_per_turn(recording):
    r = recording
    n = 0
    for i, (rec, x) in enumerate(r.pairs()):
        rows = r.usage.get(x["id"], [])
        usage = None
        if is_turn(rec) and rec.status == 200:
            if rec.is_sse:
                last = rec.events()[-1]
                usage = last.json().get("usage") if last.event == "conversation.response.done" else None
            else:
                usage = rec.json().get("usage")
        if usage is None:
            assert rows == [], f"request #{i} {rec.describe()}: usage recorded where the client got none"
            continue
        n += 1
        assert len(rows) == 1, f"request #{i} {rec.describe()}"
        row = rows[0]
        assert row["conversation_id"] == turn_conversation(rec)
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"], row["connector_tokens"]) == (
            usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"], usage.get("connector_tokens"))
        assert as_json(row["connectors"]) == usage.get("connectors"), f"request #{i}"
    assert n > 20, n


def test_recording_is_complete_after_the_proxy_stops(recording):
    """A graceful stop flushes everything, loses nothing, and the file reads back with `agentcap query`."""
    proxy = recording.twin.proxy
    assert proxy.stop() == 0, proxy.stderr_tail()
    stopped = [line for line in proxy.stderr_tail(100_000).splitlines() if line.startswith("agentcap proxy stopped: ")]
    assert stopped, proxy.stderr_tail()
    stats = json.loads(stopped[-1].split(": ", 1)[1])
    assert stats["records_dropped"] == 0 and stats["db_errors"] == 0 and stats["journal_errors"] == 0, stats
    res = subprocess.run(
        [str(twin_binary()), "query", "--admin", proxy.admin_url, "--db", str(proxy.db), "--format", "json",
         "SELECT count(*) AS exchanges, count(DISTINCT id) AS ids, "
         "(SELECT count(*) FROM sse_events) AS events FROM exchanges"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    got = got[0] if isinstance(got, list) else got
    n_events = sum(len(rec.events()) for rec in recording.records if rec.is_sse)
    assert (got["exchanges"], got["ids"], got["events"]) == (len(recording.records),) * 2 + (n_events,), got
