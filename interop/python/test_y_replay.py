"""`agentcap replay` (cassette mode) seen by the official SDK.

A scripted SDK session (sync calls, a stream, a function-call round trip, a restart, an error) runs through the
recording proxy against a twin of its own; the proxy and the twin then stop, `agentcap replay` serves the
proxy's DuckDB file, and the same script runs against it. Every call must get the same status, content type and
byte-identical body (for streams: the same events, byte for byte) as the recorded run, as the SDK's own httpx
transport received them (wirelog.py). A request the recording does not hold gets the documented miss error.

The test starts its own processes, so it runs once, with the `direct` target. Its file name sorts it after the
suites that start the shared twins (which then already hold their ports, so none can reuse a port this test
closed and see its requests) and before the recording checks that read them.
"""

from __future__ import annotations

import re

import httpx
import pytest
from mistralai.client import Mistral, errors

from conftest import API_KEY, MODEL, require_binary, spawn, start_proxy, start_twin, stop_process

REPLAY_RE = re.compile(r"^agentcap replay listening on (http://\S+) \(db ")

FUNCTION_TOOL = {
    "type": "function",
    "function": {
        "name": "reverse_token",
        "description": "Reverse a token, letter by letter.",
        "parameters": {
            "type": "object",
            "properties": {"token": {"type": "string", "description": "The token to reverse."}},
            "required": ["token"],
        },
    },
}


def script(client: Mistral) -> None:
    """The scripted session: every call the SDK makes is compared afterwards, so this only drives it."""
    conv = client.beta.conversations
    first = conv.start(model=MODEL, inputs="Hello replay, who are you?")
    cid = first.conversation_id
    conv.append(conversation_id=cid, inputs="Tell me more.")

    with conv.start_stream(model=MODEL, inputs="Stream me a short answer.") as events:
        streamed = list(events)
    scid = streamed[0].data.conversation_id
    with conv.append_stream(conversation_id=scid, inputs="And stream more.") as events:
        list(events)

    call_turn = conv.start(model=MODEL, inputs="Please use reverse_token on the word.", tools=[FUNCTION_TOOL])
    call = next(e for e in call_turn.outputs if e.type == "function.call")
    conv.append(conversation_id=call_turn.conversation_id,
                inputs=[{"type": "function.result", "tool_call_id": call.tool_call_id,
                         "result": f"reversed:{call.arguments}"}])

    restarted = conv.restart(conversation_id=cid, from_entry_id=first.outputs[-1].id,
                             inputs="Another question two.")
    conv.get_history(conversation_id=restarted.conversation_id)
    conv.get_history(conversation_id=cid)

    with pytest.raises(errors.SDKError):
        conv.get(conversation_id="conv_does_not_exist")


def compare(recorded, replayed) -> None:
    assert len(recorded) == len(replayed), (
        f"{len(recorded)} recorded calls, {len(replayed)} replayed:\n"
        + "\n".join(r.describe() for r in recorded) + "\n--\n" + "\n".join(r.describe() for r in replayed))
    for i, (a, b) in enumerate(zip(recorded, replayed)):
        where = f"call #{i} {a.method} {a.path}"
        assert (a.method, a.path, a.url.query) == (b.method, b.path, b.url.query), where
        assert a.request_body == b.request_body, f"{where}: the SDK sent a different request"
        assert a.complete and b.complete, f"{where}: a body was not read to its end ({a.error} / {b.error})"
        assert a.status == b.status, f"{where}: status {a.status} recorded, {b.status} replayed"
        assert a.headers.get("content-type") == b.headers.get("content-type"), where
        if a.is_sse:
            ra, rb = [e.raw for e in a.events()], [e.raw for e in b.events()]
            assert ra == rb, f"{where}: the event sequences differ"
        assert bytes(a.body) == bytes(b.body), f"{where}: bodies differ:\n{bytes(a.body)[:400]!r}\n{bytes(b.body)[:400]!r}"


def test_sdk_session_replays_byte_identical(target, wire_log, tmp_path):
    if target != "direct":
        pytest.skip("starts its own twin, proxy and replay: runs once, with the direct target")
    logs = tmp_path / "logs"
    first = len(wire_log.records)  # this test's requests only, whatever ports earlier tests used
    twin = start_twin("replay-rec", tmp_path / "replay-rec.jsonl", logs)
    try:
        proxy = start_proxy("replay-rec-proxy", twin.direct_url, logs)
        try:
            script(Mistral(server_url=proxy.url, api_key=API_KEY, timeout_ms=30_000))
        finally:
            assert proxy.stop() == 0, proxy.stderr_tail()
    finally:
        twin.stop()
    assert twin.proc.poll() is not None, "the twin must be stopped while the replay runs"
    recorded = [r for r in wire_log.records[first:] if r.origin == proxy.url]
    assert len(recorded) >= 10, [r.describe() for r in recorded]
    assert any(r.is_sse for r in recorded), "the session streamed nothing"

    cmd = [str(require_binary()), "replay", "--db", str(proxy.db), "--listen", "127.0.0.1:0",
           "--timing", "recorded", "--exit-on-stdin-close"]
    proc, lines, match = spawn("replay", cmd, logs / "replay.stderr.log", REPLAY_RE)
    try:
        url = match.group(1).rstrip("/")
        assert "0 not replayable, 0 not byte-exact" in lines[0], lines[0]
        script(Mistral(server_url=url, api_key=API_KEY, timeout_ms=30_000))
        compare(recorded, [r for r in wire_log.records[first:] if r.origin == url])

        # A request the recording does not hold: the documented miss, naming the closest request and path.
        res = httpx.post(f"{url}/v1/conversations", json={"model": MODEL, "inputs": "Hello replay, who are you!"},
                         headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        assert res.status_code == 501, res.text
        err = res.json()
        assert (err["object"], err["type"], err["code"]) == ("error", "replay_error", "replay_miss"), err
        assert err["differing_path"] == "/inputs", err
        assert err["closest_request"] == "POST /v1/conversations", err
    finally:
        assert stop_process(proc) == 0, (logs / "replay.stderr.log").read_text(errors="replace")
