"""The official `mistralai` Python SDK (2.x) driven against the twin.

Every call goes through the SDK's own request building and response models, so a twin response the SDK
cannot parse fails here. Where the SDK silently degrades (an event or chunk it does not recognise becomes an
"unknown" placeholder instead of raising) the helpers below assert that it did not happen.
"""

from __future__ import annotations

import asyncio
import json
import sys
import typing

import httpx
import pytest
from mistralai.client import Mistral, errors, models
from mistralai.client.utils import eventstreaming

from conftest import API_KEY, AUTH_TWIN_KEY, HERE, MODEL

KNOWN_EVENTS = frozenset(typing.get_args(typing.get_args(models.SSETypes)[0]))
ENTRY_CLASSES = {
    "message.input": models.MessageInputEntry,
    "message.output": models.MessageOutputEntry,
    "function.call": models.FunctionCallEntry,
    "function.result": models.FunctionResultEntry,
    "tool.execution": models.ToolExecutionEntry,
    "agent.handoff": models.AgentHandoffEntry,
}
FAULT_HEADER = "X-Agentcap-Sim-Fault"


# --------------------------------------------------------------------------------------------- helpers


def content_text(content) -> str:
    """The text of a message content: a string, or the text chunks of a chunk list."""
    if isinstance(content, str):
        return content
    out = []
    for chunk in content:
        if isinstance(chunk, models.TextChunk):
            out.append(chunk.text)
    return "".join(out)


def check_entry(entry) -> None:
    """An entry parsed into the class its `type` names (not a look-alike picked by pydantic's union)."""
    assert entry.type in ENTRY_CLASSES, f"unexpected entry type {entry.type!r}: {entry!r}"
    assert isinstance(entry, ENTRY_CLASSES[entry.type]), f"{entry.type} parsed as {type(entry).__name__}"
    assert entry.id, f"entry without id: {entry!r}"
    if isinstance(entry, models.MessageOutputEntry) and not isinstance(entry.content, str):
        for chunk in entry.content:
            assert not getattr(chunk, "is_unknown", False), f"unknown content chunk: {chunk!r}"


def check_agent(agent: models.Agent) -> None:
    assert isinstance(agent, models.Agent)
    for tool in agent.tools or []:
        assert not getattr(tool, "is_unknown", False), f"agent tool unknown to the SDK: {tool!r}"


def check_response(res: models.ConversationResponse) -> None:
    assert isinstance(res, models.ConversationResponse)
    assert res.conversation_id.startswith("conv_"), res.conversation_id
    assert res.outputs, "a turn produced no output entries"
    for entry in res.outputs:
        check_entry(entry)
        assert entry.type != "message.input", "inputs must not be echoed in outputs"
    check_usage(res.usage)


def check_usage(usage: models.ConversationUsageInfo) -> None:
    assert isinstance(usage, models.ConversationUsageInfo)
    assert usage.total_tokens and usage.total_tokens > 0, usage
    connector = usage.connector_tokens if isinstance(usage.connector_tokens, int) else 0
    assert usage.total_tokens == (usage.prompt_tokens or 0) + (usage.completion_tokens or 0) + connector, usage


def consume(stream: eventstreaming.EventStream) -> list[models.ConversationEvents]:
    with stream as events:
        return list(events)


def check_stream(events: list[models.ConversationEvents], *, allow_error: bool = False) -> dict:
    """Every event typed and known; started first; done (with usage) last. Returns a summary."""
    assert events, "the stream produced no events"
    for i, ev in enumerate(events):
        assert isinstance(ev, models.ConversationEvents)
        assert not getattr(ev.data, "is_unknown", False), f"event #{i} unknown to the SDK: {ev.data!r}"
        assert ev.event in KNOWN_EVENTS, f"event #{i} has an unknown SSE event name {ev.event!r}"
        assert ev.event == ev.data.type, f"event #{i}: SSE name {ev.event!r} != data.type {ev.data.type!r}"
        content = getattr(ev.data, "content", None)
        if content is not None and not isinstance(content, str):
            assert not getattr(content, "is_unknown", False), f"event #{i} carries an unknown chunk {content!r}"
    first, last = events[0], events[-1]
    assert isinstance(first.data, models.ResponseStartedEvent), f"first event is {first.event}"
    assert first.data.conversation_id.startswith("conv_")
    names = [ev.event for ev in events]
    assert names.count("conversation.response.started") == 1, names
    if allow_error and isinstance(last.data, models.ResponseErrorEvent):
        return {"conversation_id": first.data.conversation_id, "names": names, "error": last.data}
    assert isinstance(last.data, models.ResponseDoneEvent), f"last event is {last.event}"
    assert names.count("conversation.response.done") == 1, names
    assert "conversation.response.error" not in names, names
    check_usage(last.data.usage)

    # Rebuild the message text per output entry from the deltas.
    messages: dict[int, dict] = {}
    for ev in events:
        if isinstance(ev.data, models.MessageOutputEvent):
            slot = messages.setdefault(ev.data.output_index, {"id": ev.data.id, "parts": []})
            assert slot["id"] == ev.data.id, "deltas of one output_index carry different entry ids"
            c = ev.data.content
            slot["parts"].append(c if isinstance(c, str) else getattr(c, "text", ""))
    return {
        "conversation_id": first.data.conversation_id,
        "names": names,
        "usage": last.data.usage,
        "messages": {k: {"id": v["id"], "text": "".join(v["parts"])} for k, v in sorted(messages.items())},
    }


def history_types(history: models.ConversationHistory) -> list[str]:
    return [e.type for e in history.entries]


def agent_client(url: str, key: str | None = API_KEY) -> Mistral:
    return Mistral(server_url=url, api_key=key, timeout_ms=30_000)


# ---------------------------------------------------------------------------------------------- agents


def test_agent_create_get_update(client, unique):
    agents = client.beta.agents
    created = agents.create(
        model=MODEL,
        name=unique,
        description="interop agent",
        instructions="Answer briefly.",
        completion_args={"temperature": 0.2},
        metadata={"suite": "python-interop"},
    )
    check_agent(created)
    assert created.id.startswith("ag_"), created.id
    assert created.object == "agent"
    assert (created.name, created.model) == (unique, MODEL)
    assert created.version == 0 and created.versions == [0]
    assert created.instructions == "Answer briefly."
    assert created.source == "api"
    assert created.deployment_chat is False

    got = agents.get(agent_id=created.id)
    assert (got.id, got.version, got.name) == (created.id, 0, unique)

    v1 = agents.update(agent_id=created.id, instructions="Answer in one word.")
    assert v1.id == created.id
    assert v1.version == 1, "an update creates a new version"
    assert sorted(v1.versions) == [0, 1]
    assert v1.instructions == "Answer in one word."
    assert v1.name == unique, "fields not in the update are kept"

    v2 = agents.update(agent_id=created.id, description="second update", version_message="v2")
    assert v2.version == 2 and sorted(v2.versions) == [0, 1, 2]

    active = agents.get(agent_id=created.id)
    assert active.version == 2, "the newest update is the active version"
    assert active.description == "second update"
    assert active.instructions == "Answer in one word."

    listed = agents.list(page=0, page_size=1000)
    assert all(isinstance(a, models.Agent) for a in listed)
    mine = [a for a in listed if a.id == created.id]
    assert len(mine) == 1 and mine[0].version == 2


def test_agent_versions(client, unique):
    agents = client.beta.agents
    agent = agents.create(model=MODEL, name=unique, instructions="v0")
    agents.update(agent_id=agent.id, instructions="v1")
    versions = agents.list_versions(agent_id=agent.id)
    assert sorted(v.version for v in versions) == [0, 1]
    old = agents.get_version(agent_id=agent.id, version="0")
    assert old.version == 0 and old.instructions == "v0"
    pinned = agents.get(agent_id=agent.id, agent_version=0)
    assert pinned.instructions == "v0"
    switched = agents.update_version(agent_id=agent.id, version=0)
    assert switched.version == 0 and switched.instructions == "v0"
    assert agents.get(agent_id=agent.id).version == 0


def test_agent_list_pages(client, unique):
    agents = client.beta.agents
    ids = {agents.create(model=MODEL, name=f"{unique}-{i}").id for i in range(3)}
    seen: list[str] = []
    page = agents.list_pages(page_size=2)
    for _ in range(1000):
        if page is None:
            break
        assert isinstance(page.result, models.AgentListPage)
        assert len(page.result.data) <= 2
        seen += [a.id for a in page.result.data]
        page = page.next()
    assert len(seen) == len(set(seen)), "an agent was returned twice while paging"
    assert ids <= set(seen), "paging did not reach every agent"


# ------------------------------------------------------------------------------------- conversations


def test_conversation_start_append_history_messages(client, unique):
    conv = client.beta.conversations
    first = conv.start(model=MODEL, inputs="Hello, who are you?", name=unique, description="interop",
                       metadata={"suite": "python-interop"})
    check_response(first)
    assert first.outputs[-1].type == "message.output"
    cid = first.conversation_id

    second = conv.append(conversation_id=cid, inputs="Tell me more.")
    check_response(second)
    assert second.conversation_id == cid, "append keeps the conversation id"

    history = conv.get_history(conversation_id=cid)
    assert isinstance(history, models.ConversationHistory) and history.conversation_id == cid
    for e in history.entries:
        check_entry(e)
    expected = ["message.input", *[o.type for o in first.outputs], "message.input", *[o.type for o in second.outputs]]
    assert history_types(history) == expected
    inputs = [e for e in history.entries if e.type == "message.input"]
    assert [content_text(e.content) for e in inputs] == ["Hello, who are you?", "Tell me more."]
    assert all(e.role == "user" for e in inputs)
    out_ids = [o.id for o in [*first.outputs, *second.outputs]]
    assert [e.id for e in history.entries if e.type != "message.input"] == out_ids
    last_hist = history.entries[-1]
    assert content_text(last_hist.content) == content_text(second.outputs[-1].content)

    messages = conv.get_messages(conversation_id=cid)
    assert isinstance(messages, models.ConversationMessages) and messages.conversation_id == cid
    assert [m.id for m in messages.messages] == [
        e.id for e in history.entries if e.type in ("message.input", "message.output")
    ]
    for m in messages.messages:
        check_entry(m)

    got = conv.get(conversation_id=cid)
    assert isinstance(got, models.ModelConversation), type(got)
    assert (got.id, got.model, got.name) == (cid, MODEL, unique)

    later = conv.start(model=MODEL, inputs="A second conversation.")
    listed = conv.list(page=0, page_size=100)
    ids = [c.id for c in listed]
    assert cid in ids and later.conversation_id in ids
    assert ids.index(later.conversation_id) < ids.index(cid), "list is newest first"


def test_conversation_restart(client):
    conv = client.beta.conversations
    first = conv.start(model=MODEL, inputs="Question one.")
    cid = first.conversation_id
    second = conv.append(conversation_id=cid, inputs="Question two.")
    check_response(second)
    branch_from = first.outputs[-1]

    restarted = conv.restart(conversation_id=cid, from_entry_id=branch_from.id, inputs="Another question two.")
    check_response(restarted)
    new_id = restarted.conversation_id
    assert new_id != cid, "restart creates a new conversation"

    new_hist = conv.get_history(conversation_id=new_id)
    expected = ["message.input", *[o.type for o in first.outputs], "message.input", *[o.type for o in restarted.outputs]]
    assert history_types(new_hist) == expected
    inputs = [content_text(e.content) for e in new_hist.entries if e.type == "message.input"]
    assert inputs == ["Question one.", "Another question two."]

    old_hist = conv.get_history(conversation_id=cid)
    old_inputs = [content_text(e.content) for e in old_hist.entries if e.type == "message.input"]
    assert old_inputs == ["Question one.", "Question two."], "restart leaves the original untouched"


def test_streams_start_append_restart(client):
    conv = client.beta.conversations
    started = check_stream(consume(conv.start_stream(model=MODEL, inputs="Stream me a short answer.")))
    cid = started["conversation_id"]
    assert started["messages"], "no message.output.delta in the start stream"

    history = conv.get_history(conversation_id=cid)
    assert history.entries[0].type == "message.input"
    outputs = [e for e in history.entries if e.type == "message.output"]
    assert [o.id for o in outputs] == [m["id"] for m in started["messages"].values()]
    assert content_text(outputs[-1].content) == list(started["messages"].values())[-1]["text"]

    appended = check_stream(consume(conv.append_stream(conversation_id=cid, inputs="And stream more.")))
    assert appended["conversation_id"] == cid, "append_stream keeps the conversation id"
    history = conv.get_history(conversation_id=cid)
    assert history_types(history).count("message.input") == 2
    assert history.entries[-1].id == list(appended["messages"].values())[-1]["id"]

    first_output = next(e for e in history.entries if e.type == "message.output")
    restarted = check_stream(consume(conv.restart_stream(conversation_id=cid, from_entry_id=first_output.id,
                                                          inputs="Branch and stream.")))
    assert restarted["conversation_id"] != cid, "restart_stream starts a new conversation"
    branch = conv.get_history(conversation_id=restarted["conversation_id"])
    assert [content_text(e.content) for e in branch.entries if e.type == "message.input"] == [
        "Stream me a short answer.", "Branch and stream."]


# ------------------------------------------------------------------------------------------ connectors


@pytest.mark.parametrize("tool", ["web_search", "web_search_premium"])
def test_agent_web_search(client, unique, tool):
    agent = client.beta.agents.create(model=MODEL, name=unique, tools=[{"type": tool}],
                                      instructions="Search the web before answering.")
    check_agent(agent)
    assert [t.type for t in agent.tools] == [tool]
    res = client.beta.conversations.start(agent_id=agent.id, inputs="Search the web for today's news about Mistral AI.")
    check_response(res)
    types = [o.type for o in res.outputs]
    assert "tool.execution" in types, types
    execution = next(o for o in res.outputs if o.type == "tool.execution")
    assert execution.name == tool and isinstance(execution.arguments, str)
    message = next(o for o in res.outputs[types.index("tool.execution"):] if o.type == "message.output")
    assert isinstance(message.content, list), "a cited answer is a chunk list"
    refs = [c for c in message.content if isinstance(c, models.ToolReferenceChunk)]
    assert refs, f"no tool_reference chunk in {message.content!r}"
    assert all(r.tool == tool and r.title for r in refs)
    assert any(isinstance(c, models.TextChunk) for c in message.content)
    assert all(o.agent_id == agent.id for o in res.outputs if o.type == "message.output")
    if res.usage.connectors:
        assert res.usage.connectors.get(tool, 0) >= 1

    events = consume(client.beta.conversations.start_stream(agent_id=agent.id,
                                                            inputs="Search the web for the weather in Paris."))
    summary = check_stream(events)
    started = [e.data for e in events if e.event == "tool.execution.started"]
    done = [e.data for e in events if e.event == "tool.execution.done"]
    assert started and done, summary["names"]
    assert started[0].name == tool and started[0].id == done[0].id
    assert started[0].output_index == done[0].output_index
    ref_chunks = [e.data.content for e in events
                  if e.event == "message.output.delta" and isinstance(e.data.content, models.ToolReferenceChunk)]
    assert ref_chunks, "no tool_reference chunk streamed"


def test_agent_code_interpreter(client, unique):
    agent = client.beta.agents.create(model=MODEL, name=unique, tools=[{"type": "code_interpreter"}])
    res = client.beta.conversations.start(agent_id=agent.id, inputs="Run Python code to compute 2 ** 10.")
    check_response(res)
    types = [o.type for o in res.outputs]
    assert "tool.execution" in types, types
    i = types.index("tool.execution")
    assert "message.output" in types[i + 1:], f"no answer after the code run: {types}"
    execution = res.outputs[i]
    assert execution.name == "code_interpreter"
    assert isinstance(execution.info, dict) and {"code", "code_output"} <= set(execution.info), execution.info

    summary = check_stream(consume(client.beta.conversations.start_stream(
        agent_id=agent.id, inputs="Use the code interpreter to sum 1..100.")))
    assert "tool.execution.started" in summary["names"] and "tool.execution.done" in summary["names"]


def test_agent_image_generation(client, unique):
    agent = client.beta.agents.create(model=MODEL, name=unique, tools=[{"type": "image_generation"}])
    check_agent(agent)
    res = client.beta.conversations.start(agent_id=agent.id, inputs="Draw a picture of a lighthouse.")
    check_response(res)
    types = [o.type for o in res.outputs]
    assert "tool.execution" in types and types[-1] == "message.output", types
    assert res.outputs[types.index("tool.execution")].name == "image_generation"
    files = [c for c in res.outputs[-1].content if isinstance(c, models.ToolFileChunk)]
    assert files and files[0].tool == "image_generation" and files[0].file_id, res.outputs[-1].content

    events = consume(client.beta.conversations.start_stream(agent_id=agent.id, inputs="Paint an image of a cat."))
    check_stream(events)
    assert any(isinstance(e.data.content, models.ToolFileChunk) for e in events if e.event == "message.output.delta")


# ----------------------------------------------------------------------------------- function calling


def reverse_token(token: str) -> str:
    """Reverse a token, letter by letter.

    Args:
        token: The token to reverse.
    """
    CALLS.append(token)
    return f"reversed:{token[::-1]}"


CALLS: list[str] = []
FUNCTION_PROMPT = "Please use reverse_token on the word I gave you earlier."
EXPECTED_RESULT = "reversed:elpmas"  # the twin fills required string arguments with "sample"


def run(coro):
    return asyncio.run(coro)


def check_function_round_trip(client, result, expected_result: str, fn_name: str) -> None:
    from mistralai.extra.run.result import RunResult

    assert isinstance(result, RunResult)
    types = [e.type for e in result.output_entries]
    assert types[:3] == ["function.call", "function.result", "message.output"], types
    call, fres = result.output_entries[0], result.output_entries[1]
    assert call.name == fn_name
    assert fres.tool_call_id == call.tool_call_id
    assert expected_result in fres.result
    assert expected_result in result.output_as_text, result.output_as_text

    history = client.beta.conversations.get_history(conversation_id=result.conversation_id)
    htypes = history_types(history)
    assert htypes[:4] == ["message.input", "function.call", "function.result", "message.output"], htypes
    stored = next(e for e in history.entries if e.type == "function.result")
    assert stored.tool_call_id == call.tool_call_id and expected_result in stored.result


def test_run_async_function_with_model(client):
    from mistralai.extra.run.context import RunContext

    CALLS.clear()

    async def go():
        async with RunContext(model=MODEL) as ctx:
            ctx.register_func(reverse_token)
            return await client.beta.conversations.run_async(run_ctx=ctx, inputs=FUNCTION_PROMPT)

    result = run(go())
    assert CALLS == ["sample"], CALLS
    check_function_round_trip(client, result, EXPECTED_RESULT, "reverse_token")


def test_run_async_function_with_agent(client, unique):
    from mistralai.extra.run.context import RunContext

    agent = client.beta.agents.create(model=MODEL, name=unique, instructions="Use your tools.")
    CALLS.clear()

    async def go():
        async with RunContext(agent_id=agent.id) as ctx:
            ctx.register_func(reverse_token)
            return await client.beta.conversations.run_async(run_ctx=ctx, inputs=FUNCTION_PROMPT)

    result = run(go())
    assert CALLS == ["sample"], CALLS
    check_function_round_trip(client, result, EXPECTED_RESULT, "reverse_token")
    # run_async registers the function on the agent with an update, i.e. a new active version.
    updated = client.beta.agents.get(agent_id=agent.id)
    check_agent(updated)
    assert updated.version == 1
    assert [t.function.name for t in updated.tools if t.type == "function"] == ["reverse_token"]
    assert all(o.agent_id == agent.id for o in result.output_entries if o.type in ("function.call", "message.output"))


def test_run_stream_async_function_with_model(client):
    from mistralai.extra.run.context import RunContext
    from mistralai.extra.run.result import RunResult, RunResultEvents

    CALLS.clear()

    async def go():
        items = []
        async with RunContext(model=MODEL) as ctx:
            ctx.register_func(reverse_token)
            gen = await client.beta.conversations.run_stream_async(run_ctx=ctx, inputs=FUNCTION_PROMPT)
            async for item in gen:
                items.append(item)
        return items

    items = run(go())
    assert CALLS == ["sample"], CALLS
    assert isinstance(items[-1], RunResult)
    events = items[:-1]
    # Server events come through as the SDK's ConversationEvents, local function results as RunResultEvents.
    assert all(isinstance(e, (models.ConversationEvents, RunResultEvents)) for e in events)
    server = [e for e in events if isinstance(e, models.ConversationEvents)]
    assert not [e for e in server if getattr(e.data, "is_unknown", False)], "an event was unknown to the SDK"
    names = [e.event for e in events]
    assert "function.call.delta" in names and "function.result" in names, names
    assert names.count("conversation.response.started") == 2 and names.count("conversation.response.done") == 2
    assert EXPECTED_RESULT in items[-1].output_as_text


def test_run_async_mcp_stdio_tool(client):
    from mcp import StdioServerParameters
    from mistralai.extra.mcp.stdio import MCPClientSTDIO
    from mistralai.extra.run.context import RunContext

    from mcp_server import capital_answer

    expected = capital_answer("sample")
    params = StdioServerParameters(command=sys.executable, args=[str(HERE / "mcp_server.py")])

    async def go():
        async with RunContext(model=MODEL) as ctx:
            await ctx.register_mcp_client(MCPClientSTDIO(stdio_params=params, name="capitals"))
            assert [t.function.name for t in ctx.get_tools()] == ["lookup_capital"]
            return await client.beta.conversations.run_async(
                run_ctx=ctx, inputs="Which city is the capital? Use lookup_capital to find out.")

    result = run(go())
    check_function_round_trip(client, result, expected, "lookup_capital")
    fres = result.output_entries[1]
    assert json.loads(fres.result) == [{"type": "text", "text": expected}], "the SDK wraps MCP text as chunks"


# ---------------------------------------------------------------------------------------------- handoff


@pytest.fixture
def handoff_pair(client, unique):
    agents = client.beta.agents
    target = agents.create(model=MODEL, name=f"{unique}-specialist", description="Knows everything about weather.")
    source = agents.create(model=MODEL, name=f"{unique}-router", handoffs=[target.id],
                           instructions="Hand off weather questions.")
    assert source.handoffs == [target.id]
    return source, target


def test_handoff_server(client, handoff_pair):
    source, target = handoff_pair
    res = client.beta.conversations.start(agent_id=source.id, inputs="Please handoff this weather question.")
    check_response(res)
    assert res.outputs[0].type == "agent.handoff", [o.type for o in res.outputs]
    handoff = res.outputs[0]
    assert (handoff.previous_agent_id, handoff.previous_agent_name) == (source.id, source.name)
    assert (handoff.next_agent_id, handoff.next_agent_name) == (target.id, target.name)
    after = res.outputs[1:]
    assert after and after[-1].type == "message.output"
    assert all(o.agent_id == target.id for o in after if o.type == "message.output")

    events = consume(client.beta.conversations.start_stream(
        agent_id=source.id, inputs=f"Ask {target.name} about the weather."))
    summary = check_stream(events)
    started = next(e.data for e in events if e.event == "agent.handoff.started")
    done = next(e.data for e in events if e.event == "agent.handoff.done")
    assert started.id == done.id and started.previous_agent_id == source.id and done.next_agent_id == target.id
    assert summary["names"].index("agent.handoff.started") < summary["names"].index("agent.handoff.done")
    deltas = [e.data for e in events if e.event == "message.output.delta"]
    assert deltas and all(d.agent_id == target.id for d in deltas)


def test_handoff_client(client, handoff_pair):
    source, target = handoff_pair
    res = client.beta.conversations.start(agent_id=source.id, inputs="Please handoff.", handoff_execution="client")
    check_response(res)
    assert res.outputs[-1].type == "agent.handoff", [o.type for o in res.outputs]
    assert res.outputs[-1].next_agent_id == target.id


# ----------------------------------------------------------------------------------------------- errors


def test_unknown_conversation_is_404(client):
    missing = "conv_00000000000000000000000000000000"
    for call in (
        lambda: client.beta.conversations.get(conversation_id=missing),
        lambda: client.beta.conversations.get_history(conversation_id=missing),
        lambda: client.beta.conversations.append(conversation_id=missing, inputs="hello"),
    ):
        with pytest.raises(errors.SDKError) as info:
            call()
        assert info.value.status_code == 404
        assert isinstance(json.loads(info.value.body), dict), info.value.body


def test_unknown_agent_is_404(client):
    with pytest.raises(errors.SDKError) as info:
        client.beta.agents.get(agent_id="ag_00000000000000000000000000000000")
    assert info.value.status_code == 404
    with pytest.raises(errors.SDKError) as info:
        client.beta.conversations.start(agent_id="ag_00000000000000000000000000000000", inputs="hi")
    assert info.value.status_code == 404


def test_unknown_field_is_422(twin):
    res = httpx.post(f"{twin.url}/v1/conversations", headers={"Authorization": f"Bearer {API_KEY}"},
                     json={"model": MODEL, "inputs": "hello", "not_a_field": 1}, timeout=30)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"].startswith("application/json")
    detail = res.json()["detail"]
    assert isinstance(detail, list) and detail
    assert any(d["type"] == "extra_forbidden" and "not_a_field" in d["loc"] for d in detail), detail
    for d in detail:
        assert isinstance(d["msg"], str) and isinstance(d["loc"], list)


def test_invalid_value_is_422_through_sdk(client):
    with pytest.raises(errors.HTTPValidationError) as info:
        client.beta.conversations.start(model=MODEL, inputs="hello", completion_args={"temperature": 5})
    assert info.value.status_code == 422
    assert info.value.data.detail, info.value.body
    with pytest.raises(errors.HTTPValidationError):
        # the SDK raises HTTPValidationError for 422 before a stream starts, too
        consume(client.beta.conversations.start_stream(model=MODEL, inputs="hello", completion_args={"temperature": 5}))


def test_wrong_api_key_is_401(auth_twin):
    good = agent_client(auth_twin.url, AUTH_TWIN_KEY)
    assert isinstance(good.beta.agents.list(), list)
    with pytest.raises(errors.SDKError) as info:
        agent_client(auth_twin.url, "wrong-key").beta.agents.list()
    assert info.value.status_code == 401
    assert isinstance(json.loads(info.value.body), dict), info.value.body
    # Raw requests: no Authorization header at all, and a wrong bearer token on a POST.
    url = f"{auth_twin.url}/v1/conversations"
    body = {"model": MODEL, "inputs": "hi"}
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    res = httpx.post(url, json=body, headers={"Authorization": "Bearer wrong-key"}, timeout=30)
    assert res.status_code == 401 and isinstance(res.json(), dict)


# ------------------------------------------------------------------------------------------------ faults


def test_fault_429_has_retry_after(client):
    with pytest.raises(errors.SDKError) as info:
        client.beta.agents.list(http_headers={FAULT_HEADER: "429"})
    assert info.value.status_code == 429
    assert "retry-after" in info.value.headers


def test_fault_error_event_is_typed(client):
    events = consume(client.beta.conversations.start_stream(model=MODEL, inputs="This stream will fail.",
                                                            http_headers={FAULT_HEADER: "error-event"}))
    summary = check_stream(events, allow_error=True)
    assert "error" in summary, f"expected the stream to end in conversation.response.error: {summary['names']}"
    err = summary["error"]
    assert isinstance(err.message, str) and isinstance(err.code, int)
