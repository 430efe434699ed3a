// Interop suite: the official TypeScript SDK (@mistralai/mistralai, pinned in package.json)
// against the twin (`agentcap sim`). Every SDK call goes through `sdk()` / `collectStream()` so
// that a response the SDK rejects fails the test with the SDK's own validation message.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";

import { Mistral } from "@mistralai/mistralai";
import * as components from "@mistralai/mistralai/models/components";
import * as operations from "@mistralai/mistralai/models/operations";
import { MistralError } from "@mistralai/mistralai/models/errors";

import {
  assertDate,
  assertId,
  assertUsage,
  checkTools,
  collectStream,
  contentText,
  dump,
  EVENT_SCHEMAS,
  explainZod,
  sdk,
  setFailureContext,
} from "./check.mjs";
import { startTwin } from "./twin.mjs";

const MODEL = "mistral-medium-latest";
const T = { timeout: 60_000 };

const FUNCTION_NAME = "get_order_status";
const FUNCTION_TOOL = {
  type: "function",
  function: {
    name: FUNCTION_NAME,
    description: "Look up the shipping status of an order.",
    parameters: {
      type: "object",
      properties: {
        order_id: { type: "string", description: "The order number." },
        include_items: { type: "boolean" },
        priority: { type: "string", enum: ["low", "high"] },
        max_lines: { type: "integer" },
        note: { type: "string" },
      },
      required: ["order_id", "include_items", "priority", "max_lines"],
    },
  },
};
// What the twin's contract says it fills in for the required properties above.
const EXPECTED_FUNCTION_ARGS = { order_id: "sample", include_items: true, priority: "low", max_lines: 1 };
const FUNCTION_RESULT = "order 42 shipped on 2026-09-01";

const OUTPUT_TYPES = new Set(["message.output", "tool.execution", "function.call", "agent.handoff"]);

let twin;
let client;

before(async () => {
  twin = await startTwin();
  setFailureContext(() => {
    const exited = twin.hasExited();
    return exited ? `the twin has exited (${dump(exited)}); its stderr:\n${twin.stderr()}` : null;
  });
  client = new Mistral({ serverURL: twin.baseURL, apiKey: "sk-agentcap-interop", timeoutMs: 20_000 });
});

after(async () => {
  if (twin) await twin.stop();
});

// ---------------------------------------------------------------------------------------------
// Fixtures, created once and shared (a failure is reported by every test that needs it).

function once(fn) {
  let p;
  return () => (p ??= fn());
}

const mainAgent = once(() =>
  sdk(
    "beta.agents.create (main agent)",
    client.beta.agents.create({
      model: MODEL,
      name: "interop-ts-main",
      description: "Agent created by the TypeScript interop suite.",
      instructions: "You are a concise assistant. Answer in one or two sentences.",
      tools: [{ type: "web_search" }, FUNCTION_TOOL],
      completionArgs: { temperature: 0.3, maxTokens: 256, toolChoice: "auto" },
    }),
  )
);

const searchAgent = once(() =>
  sdk(
    "beta.agents.create (web_search agent)",
    client.beta.agents.create({
      model: MODEL,
      name: "interop-ts-search",
      instructions: "Always search the web before answering and cite your sources.",
      tools: [{ type: "web_search" }],
    }),
  )
);

const functionAgent = once(() =>
  sdk(
    "beta.agents.create (function agent)",
    client.beta.agents.create({
      model: MODEL,
      name: "interop-ts-function",
      instructions: "Use the tools you have to answer questions about orders.",
      tools: [FUNCTION_TOOL],
    }),
  )
);

// ---------------------------------------------------------------------------------------------
// Shared assertions

function checkAgent(agent, label) {
  assert.equal(agent.object, "agent", `${label}: object`);
  assertId(agent.id, "ag_", `${label}: agent id`);
  assert.ok(Number.isInteger(agent.version), `${label}: version is ${dump(agent.version)}`);
  assert.ok(Array.isArray(agent.versions) && agent.versions.includes(agent.version), `${label}: versions ${dump(agent.versions)}`);
  assertDate(agent.createdAt, `${label}: created_at`);
  assertDate(agent.updatedAt, `${label}: updated_at`);
  assert.equal(typeof agent.deploymentChat, "boolean", `${label}: deployment_chat`);
  assert.equal(typeof agent.source, "string", `${label}: source`);
  if (agent.tools !== undefined) checkTools(label, agent.tools);
}

function checkMainAgentShape(agent, label) {
  checkAgent(agent, label);
  assert.equal(agent.model, MODEL, `${label}: model`);
  assert.equal(agent.name, "interop-ts-main", `${label}: name`);
  assert.equal(agent.description, "Agent created by the TypeScript interop suite.", `${label}: description`);
  assert.equal(agent.instructions, "You are a concise assistant. Answer in one or two sentences.", `${label}: instructions`);
  assert.deepEqual(agent.tools.map((t) => t.type), ["web_search", "function"], `${label}: tool types`);
  const fn = agent.tools[1].function;
  assert.equal(fn.name, FUNCTION_NAME, `${label}: function name`);
  assert.equal(fn.description, FUNCTION_TOOL.function.description, `${label}: function description`);
  assert.deepEqual(fn.parameters, FUNCTION_TOOL.function.parameters, `${label}: function parameters`);
  assert.ok(agent.completionArgs, `${label}: completion_args missing`);
  assert.equal(agent.completionArgs.temperature, 0.3, `${label}: completion_args.temperature`);
  assert.equal(agent.completionArgs.maxTokens, 256, `${label}: completion_args.max_tokens`);
  assert.equal(agent.completionArgs.toolChoice, "auto", `${label}: completion_args.tool_choice`);
}

/** Checks a non-streaming ConversationResponse and returns its final message.output entry. */
function checkResponse(res, label, { agentId, model } = {}) {
  assert.equal(res.object, "conversation.response", `${label}: object`);
  assertId(res.conversationId, "conv_", `${label}: conversation_id`);
  assert.ok(Array.isArray(res.outputs) && res.outputs.length > 0, `${label}: no outputs`);
  for (const [i, out] of res.outputs.entries()) {
    const where = `${label}: outputs[${i}] (${out.type})`;
    assert.ok(OUTPUT_TYPES.has(out.type), `${where}: unexpected type`);
    assert.equal(out.object, "entry", `${where}: object`);
    if (out.createdAt !== undefined) assertDate(out.createdAt, `${where}: created_at`);
    if (out.type === "message.output") {
      assertId(out.id, "msg_", `${where}: id`);
      assert.equal(out.role, "assistant", `${where}: role`);
      assert.ok(contentText(out.content).length > 0, `${where}: empty content ${dump(out.content)}`);
    } else if (out.type === "tool.execution") {
      assertId(out.id, "tool_exec_", `${where}: id`);
      assert.equal(typeof out.arguments, "string", `${where}: arguments`);
    } else if (out.type === "function.call") {
      assertId(out.id, "fc_", `${where}: id`);
    } else if (out.type === "agent.handoff") {
      assertId(out.id, "handoff_", `${where}: id`);
    }
    if (agentId !== undefined && out.type !== "agent.handoff") {
      assert.equal(out.agentId, agentId, `${where}: agent_id`);
    }
    if (model !== undefined && out.type === "message.output") {
      assert.equal(out.model, model, `${where}: model`);
    }
  }
  assertUsage(res.usage, `${label}: usage`);
  return res.outputs.at(-1);
}

function lastMessage(res, label) {
  const last = res.outputs.at(-1);
  assert.equal(last.type, "message.output", `${label}: last output is ${last.type}, expected message.output`);
  return last;
}

/** Checks the envelope of a finished stream: started first, done last, one of each. */
function checkStreamEnvelope(events, label) {
  assert.ok(events.length >= 3, `${label}: only ${events.length} events`);
  const names = events.map((e) => e.event);
  assert.equal(names[0], "conversation.response.started", `${label}: first event (events: ${names.join(", ")})`);
  assert.equal(
    names.at(-1),
    "conversation.response.done",
    `${label}: last event (events: ${names.join(", ")}); note the SDK silently drops a final event ` +
      "that is not followed by a blank line",
  );
  assert.equal(names.filter((n) => n === "conversation.response.started").length, 1, `${label}: started count`);
  assert.equal(names.filter((n) => n === "conversation.response.done").length, 1, `${label}: done count`);
  assert.ok(!names.includes("conversation.response.error"), `${label}: error event ${dump(events.find((e) => e.event === "conversation.response.error")?.data)}`);
  for (const [i, ev] of events.entries()) {
    if (ev.data.createdAt !== undefined) assertDate(ev.data.createdAt, `${label}: event #${i} created_at`);
    if ("outputIndex" in ev.data) {
      assert.ok(Number.isInteger(ev.data.outputIndex) && ev.data.outputIndex >= 0, `${label}: event #${i} output_index`);
    }
  }
  const started = events[0].data;
  assertId(started.conversationId, "conv_", `${label}: started.conversation_id`);
  assertUsage(events.at(-1).data.usage, `${label}: done.usage`);
  return started.conversationId;
}

/** Groups message.output.delta events by output_index and rebuilds each message's text. */
function streamedMessages(events, label, { agentId, model } = {}) {
  const byIndex = new Map();
  for (const ev of events) {
    if (ev.event !== "message.output.delta") continue;
    const d = ev.data;
    const where = `${label}: message.output.delta (output_index ${d.outputIndex})`;
    assertId(d.id, "msg_", `${where}: id`);
    assert.equal(d.role, "assistant", `${where}: role`);
    assert.ok(Number.isInteger(d.contentIndex) && d.contentIndex >= 0, `${where}: content_index`);
    if (agentId !== undefined) assert.equal(d.agentId, agentId, `${where}: agent_id`);
    if (model !== undefined) assert.equal(d.model, model, `${where}: model`);
    let msg = byIndex.get(d.outputIndex);
    if (!msg) byIndex.set(d.outputIndex, (msg = { id: d.id, text: "", chunks: [] }));
    assert.equal(d.id, msg.id, `${where}: deltas of one output_index carry different ids`);
    if (typeof d.content === "string") msg.text += d.content;
    else {
      msg.chunks.push(d.content);
      if (d.content.type === "text") msg.text += d.content.text;
    }
  }
  return [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([outputIndex, m]) => ({ outputIndex, ...m }));
}

function parseArgs(args, label) {
  if (typeof args !== "string") return args;
  try {
    return JSON.parse(args);
  } catch (err) {
    assert.fail(`${label}: arguments are not JSON: ${dump(args)} (${err.message})`);
  }
}

async function expectHttpError(label, promise, status) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof MistralError, `${label}: expected an HTTP error from the SDK, got ${err?.name}: ${err?.message}`);
    assert.equal(err.statusCode, status, `${label}: status (body: ${dump(err.body)})`);
    return err;
  }
  assert.fail(`${label}: expected HTTP ${status}, the call succeeded`);
}

// ---------------------------------------------------------------------------------------------

describe("agents", () => {
  test("create: instructions, web_search + function tools, completion_args", T, async () => {
    const agent = await mainAgent();
    checkMainAgentShape(agent, "agents.create");
    assert.equal(agent.version, 0, "agents.create: a new agent starts at version 0");
    assert.deepEqual(agent.versions, [0], "agents.create: versions");
    assert.equal(agent.deploymentChat, false, "agents.create: deployment_chat");
    assert.equal(agent.source, "api", "agents.create: source");
  });

  test("get returns the created agent", T, async () => {
    const created = await mainAgent();
    const got = await sdk("beta.agents.get", client.beta.agents.get({ agentId: created.id }));
    checkMainAgentShape(got, "agents.get");
    assert.equal(got.id, created.id);
    assert.equal(got.version, created.version);
    assert.deepEqual(got.versions, created.versions);
    assert.equal(got.createdAt.getTime(), created.createdAt.getTime(), "agents.get: created_at");
  });

  test("list includes the created agents", T, async () => {
    const created = await mainAgent();
    const search = await searchAgent();
    const list = await sdk("beta.agents.list", client.beta.agents.list({ pageSize: 100 }));
    assert.ok(Array.isArray(list), "agents.list: not an array");
    for (const [i, a] of list.entries()) checkAgent(a, `agents.list[${i}]`);
    const ids = list.map((a) => a.id);
    assert.ok(ids.includes(created.id), `agents.list: ${created.id} missing from ${dump(ids)}`);
    assert.ok(ids.includes(search.id), `agents.list: ${search.id} missing from ${dump(ids)}`);
    checkMainAgentShape(list.find((a) => a.id === created.id), "agents.list (main agent)");
  });

  test("unknown agent id is a 404", T, async () => {
    await expectHttpError(
      "agents.get(unknown)",
      client.beta.agents.get({ agentId: "ag_00000000000000000000000000000000" }),
      404,
    );
  });
});

describe("conversations", () => {
  const state = {};

  test("start with an agent", T, async () => {
    const agent = await mainAgent();
    const res = await sdk(
      "beta.conversations.start (agent)",
      client.beta.conversations.start({ agentId: agent.id, inputs: "Hello! In one sentence, what can you do?" }),
    );
    checkResponse(res, "start(agent)", { agentId: agent.id });
    lastMessage(res, "start(agent)");
    state.agentConv = res.conversationId;
  });

  test("start with a model", T, async () => {
    const res = await sdk(
      "beta.conversations.start (model)",
      client.beta.conversations.start({
        model: MODEL,
        instructions: "Reply briefly.",
        completionArgs: { temperature: 0.2 },
        inputs: "Name a colour of the rainbow.",
      }),
    );
    checkResponse(res, "start(model)", { model: MODEL });
    const msg = lastMessage(res, "start(model)");
    assert.ok(msg.agentId == null, `start(model): agent_id should be null/absent, got ${dump(msg.agentId)}`);
    state.modelConv = res.conversationId;
    state.firstMessageId = msg.id;
  });

  test("append keeps the conversation id", T, async () => {
    assert.ok(state.modelConv, "needs 'start with a model'");
    const res = await sdk(
      "beta.conversations.append",
      client.beta.conversations.append({
        conversationId: state.modelConv,
        conversationAppendRequest: { inputs: "And another one?" },
      }),
    );
    checkResponse(res, "append", { model: MODEL });
    assert.equal(res.conversationId, state.modelConv, "append: conversation_id changed");
    const msg = lastMessage(res, "append");
    assert.notEqual(msg.id, state.firstMessageId, "append: reused the previous message id");
  });

  test("restart branches into a new conversation", T, async () => {
    assert.ok(state.firstMessageId, "needs 'start with a model' and 'append'");
    const res = await sdk(
      "beta.conversations.restart",
      client.beta.conversations.restart({
        conversationId: state.modelConv,
        conversationRestartRequest: { fromEntryId: state.firstMessageId, inputs: "Actually, name a fruit." },
      }),
    );
    checkResponse(res, "restart", { model: MODEL });
    lastMessage(res, "restart");
    assert.notEqual(res.conversationId, state.modelConv, "restart: must return a new conversation id");
    state.restartedConv = res.conversationId;
  });

  test("get, list and history parse as the SDK's conversation types", T, async () => {
    assert.ok(state.agentConv && state.modelConv, "needs the start tests");
    const agent = await mainAgent();

    const agentConv = await sdk("beta.conversations.get (agent)", client.beta.conversations.get({ conversationId: state.agentConv }));
    assert.equal(agentConv.id, state.agentConv);
    assert.equal(agentConv.object, "conversation");
    assert.equal(agentConv.agentId, agent.id, "get(agent conversation): agent_id");
    assertDate(agentConv.createdAt, "get(agent conversation): created_at");
    assertDate(agentConv.updatedAt, "get(agent conversation): updated_at");

    const modelConv = await sdk("beta.conversations.get (model)", client.beta.conversations.get({ conversationId: state.modelConv }));
    assert.equal(modelConv.id, state.modelConv);
    assert.equal(modelConv.model, MODEL, "get(model conversation): model");
    assert.equal(modelConv.instructions, "Reply briefly.", "get(model conversation): instructions");
    if (modelConv.tools !== undefined) checkTools("get(model conversation)", modelConv.tools);

    const list = await sdk("beta.conversations.list", client.beta.conversations.list({ pageSize: 100 }));
    const ids = list.map((c) => c.id);
    for (const id of [state.agentConv, state.modelConv]) {
      assert.ok(ids.includes(id), `conversations.list: ${id} missing from ${dump(ids)}`);
    }

    const history = await sdk("beta.conversations.getHistory", client.beta.conversations.getHistory({ conversationId: state.modelConv }));
    assert.equal(history.object, "conversation.history");
    assert.equal(history.conversationId, state.modelConv);
    assert.deepEqual(
      history.entries.map((e) => e.type),
      ["message.input", "message.output", "message.input", "message.output"],
      "history(model conversation): entry types after start + append",
    );
    assert.equal(history.entries[0].content, "Name a colour of the rainbow.", "history: first input");
    assertId(history.entries[0].id, "msg_", "history: message.input id");
    assert.equal(history.entries[1].id, state.firstMessageId, "history: first output id");
  });

  test("function tool: function.call, then function.result gets an answer", T, async () => {
    const agent = await functionAgent();
    const res = await sdk(
      "beta.conversations.start (function)",
      client.beta.conversations.start({ agentId: agent.id, inputs: `Please call ${FUNCTION_NAME} for order 42.` }),
    );
    checkResponse(res, "start(function)", { agentId: agent.id });
    const call = res.outputs.at(-1);
    assert.equal(call.type, "function.call", `start(function): last output is ${call.type}`);
    assert.equal(call.name, FUNCTION_NAME, "function.call: name");
    assert.match(call.toolCallId, /^[A-Za-z0-9]{9}$/, "function.call: tool_call_id");
    assert.deepEqual(parseArgs(call.arguments, "function.call"), EXPECTED_FUNCTION_ARGS, "function.call: arguments");

    const answer = await sdk(
      "beta.conversations.append (function.result)",
      client.beta.conversations.append({
        conversationId: res.conversationId,
        conversationAppendRequest: {
          inputs: [{ type: "function.result", toolCallId: call.toolCallId, result: FUNCTION_RESULT }],
        },
      }),
    );
    checkResponse(answer, "append(function.result)", { agentId: agent.id });
    const msg = lastMessage(answer, "append(function.result)");
    assert.ok(contentText(msg.content).includes(FUNCTION_RESULT), `append(function.result): answer does not quote the result: ${dump(msg.content)}`);
  });

  test("unknown conversation id is a 404", T, async () => {
    await expectHttpError(
      "conversations.append(unknown)",
      client.beta.conversations.append({
        conversationId: "conv_00000000000000000000000000000000",
        conversationAppendRequest: { inputs: "hello?" },
      }),
      404,
    );
  });
});

describe("streaming", () => {
  const state = {};

  test("startStream with an agent", T, async () => {
    const agent = await mainAgent();
    const events = await collectStream(
      "beta.conversations.startStream",
      client.beta.conversations.startStream({ agentId: agent.id, inputs: "Hi there, say hello back." }),
    );
    const convId = checkStreamEnvelope(events, "startStream");
    const msgs = streamedMessages(events, "startStream", { agentId: agent.id });
    assert.ok(msgs.length >= 1, "startStream: no message.output.delta events");
    assert.ok(msgs.at(-1).text.length > 0, "startStream: streamed message is empty");
    state.conv = convId;
    state.firstMessageId = msgs.at(-1).id;
  });

  test("appendStream keeps the conversation id", T, async () => {
    assert.ok(state.conv, "needs 'startStream with an agent'");
    const agent = await mainAgent();
    const events = await collectStream(
      "beta.conversations.appendStream",
      client.beta.conversations.appendStream({
        conversationId: state.conv,
        conversationAppendStreamRequest: { inputs: "Thanks. One more short sentence, please." },
      }),
    );
    const convId = checkStreamEnvelope(events, "appendStream");
    assert.equal(convId, state.conv, "appendStream: started.conversation_id must be the appended conversation");
    const msgs = streamedMessages(events, "appendStream", { agentId: agent.id });
    assert.ok(msgs.length >= 1 && msgs.at(-1).text.length > 0, "appendStream: no streamed message text");
    assert.notEqual(msgs.at(-1).id, state.firstMessageId, "appendStream: reused a message id");
  });

  test("restartStream starts a new conversation", T, async () => {
    assert.ok(state.firstMessageId, "needs 'startStream' and 'appendStream'");
    const events = await collectStream(
      "beta.conversations.restartStream",
      client.beta.conversations.restartStream({
        conversationId: state.conv,
        conversationRestartStreamRequest: { fromEntryId: state.firstMessageId, inputs: "Start over: say goodbye." },
      }),
    );
    const convId = checkStreamEnvelope(events, "restartStream");
    assert.notEqual(convId, state.conv, "restartStream: started.conversation_id must be a new conversation");
    const msgs = streamedMessages(events, "restartStream");
    assert.ok(msgs.length >= 1 && msgs.at(-1).text.length > 0, "restartStream: no streamed message text");
  });

  test("startStream with a model", T, async () => {
    const events = await collectStream(
      "beta.conversations.startStream (model)",
      client.beta.conversations.startStream({ model: MODEL, inputs: "Say something short." }),
    );
    checkStreamEnvelope(events, "startStream(model)");
    const msgs = streamedMessages(events, "startStream(model)", { model: MODEL });
    assert.ok(msgs.length >= 1 && msgs.at(-1).text.length > 0, "startStream(model): no streamed message text");
  });

  test("web_search agent: tool.execution.started/done then message.output.delta", T, async () => {
    const agent = await searchAgent();
    const events = await collectStream(
      "beta.conversations.startStream (web_search)",
      client.beta.conversations.startStream({
        agentId: agent.id,
        inputs: "Search the web: who won the most recent UEFA European Championship?",
      }),
    );
    checkStreamEnvelope(events, "web_search stream");
    const names = events.map((e) => e.event);
    const startedIdx = names.indexOf("tool.execution.started");
    const doneIdx = names.indexOf("tool.execution.done");
    assert.ok(startedIdx > 0, `web_search stream: no tool.execution.started (events: ${names.join(", ")})`);
    assert.ok(doneIdx > startedIdx, `web_search stream: tool.execution.done missing or before started (events: ${names.join(", ")})`);
    const started = events[startedIdx].data;
    const done = events[doneIdx].data;
    assertId(started.id, "tool_exec_", "tool.execution.started: id");
    assert.equal(started.name, "web_search", "tool.execution.started: name");
    assert.equal(typeof started.arguments, "string", "tool.execution.started: arguments");
    assert.equal(started.agentId ?? agent.id, agent.id, "tool.execution.started: agent_id");
    assert.equal(done.id, started.id, "tool.execution.done: id differs from started");
    assert.equal(done.name, "web_search", "tool.execution.done: name");
    assert.equal(done.outputIndex, started.outputIndex, "tool.execution.done: output_index differs from started");

    const msgs = streamedMessages(events, "web_search stream", { agentId: agent.id });
    const after = msgs.filter((m) => m.outputIndex > started.outputIndex);
    assert.ok(after.length >= 1, "web_search stream: no message.output.delta after the tool execution");
    assert.ok(names.lastIndexOf("message.output.delta") > doneIdx, "web_search stream: message deltas must follow tool.execution.done");
    assert.ok(after.at(-1).text.length > 0, "web_search stream: answer text is empty");
    const refs = after.flatMap((m) => m.chunks).filter((c) => c.type === "tool_reference");
    for (const ref of refs) {
      assert.equal(typeof ref.title, "string", `tool_reference title: ${dump(ref)}`);
    }
  });

  test("function tool: function.call.delta, then appendStream with the result", T, async () => {
    const agent = await functionAgent();
    const events = await collectStream(
      "beta.conversations.startStream (function)",
      client.beta.conversations.startStream({ agentId: agent.id, inputs: `Use ${FUNCTION_NAME} for order 7.` }),
    );
    const convId = checkStreamEnvelope(events, "function stream");
    const deltas = events.filter((e) => e.event === "function.call.delta").map((e) => e.data);
    assert.ok(deltas.length >= 1, `function stream: no function.call.delta (events: ${events.map((e) => e.event).join(", ")})`);
    const first = deltas[0];
    assertId(first.id, "fc_", "function.call.delta: id");
    assert.equal(first.name, FUNCTION_NAME, "function.call.delta: name");
    assert.match(first.toolCallId, /^[A-Za-z0-9]{9}$/, "function.call.delta: tool_call_id");
    for (const d of deltas) assert.equal(d.id, first.id, "function.call.delta: ids differ between deltas");
    const args = parseArgs(deltas.map((d) => d.arguments).join(""), "function.call.delta");
    assert.deepEqual(args, EXPECTED_FUNCTION_ARGS, "function.call.delta: concatenated arguments");

    const answer = await collectStream(
      "beta.conversations.appendStream (function.result)",
      client.beta.conversations.appendStream({
        conversationId: convId,
        conversationAppendStreamRequest: {
          inputs: [{ type: "function.result", toolCallId: first.toolCallId, result: FUNCTION_RESULT }],
        },
      }),
    );
    assert.equal(checkStreamEnvelope(answer, "function result stream"), convId);
    const msgs = streamedMessages(answer, "function result stream", { agentId: agent.id });
    assert.ok(msgs.length >= 1, "function result stream: no message.output.delta");
    assert.ok(msgs.at(-1).text.includes(FUNCTION_RESULT), `function result stream: answer does not quote the result: ${dump(msgs.at(-1).text)}`);
  });

  test("SSE wire format: event/data pairs, blank-line terminated, no [DONE]", T, async () => {
    // Raw check of what the SDK's SSE reader relies on (see SDK_NOTES.md).
    const resp = await fetch(`${twin.baseURL}/v1/conversations`, {
      method: "POST",
      headers: {
        authorization: "Bearer sk-agentcap-interop",
        "content-type": "application/json",
        accept: "text/event-stream",
      },
      body: JSON.stringify({ model: MODEL, inputs: "Wire format check.", stream: true }),
    });
    const text = await resp.text();
    assert.equal(resp.status, 200, `status (body: ${dump(text)})`);
    assert.match(resp.headers.get("content-type") ?? "", /^text\/event-stream\b/, "content-type");
    assert.ok(/\r?\n\r?\n$/.test(text), `the last event must end with a blank line, body ends with ${dump(text.slice(-80))}`);
    assert.ok(!text.includes("[DONE]"), "conversation streams carry no [DONE] sentinel");
    const blocks = text.split(/\r?\n\r?\n/).filter((b) => b.trim() !== "");
    for (const [i, block] of blocks.entries()) {
      const lines = block.split(/\r?\n/).filter((l) => !l.startsWith(":"));
      const event = lines.find((l) => l.startsWith("event:"));
      const data = lines.filter((l) => l.startsWith("data:"));
      assert.ok(event, `block #${i} has no 'event:' line: ${dump(block)}`);
      assert.equal(data.length, 1, `block #${i} must have exactly one 'data:' line: ${dump(block)}`);
      const name = event.slice(6).trim();
      const payload = JSON.parse(data[0].slice(5).trim());
      assert.equal(payload.type, name, `block #${i}: data.type vs event name`);
      const schema = components[`${EVENT_SCHEMAS[name]}$inboundSchema`];
      assert.ok(schema, `block #${i}: unknown event ${name}`);
      const parsed = schema.safeParse(payload);
      assert.ok(parsed.success, `block #${i} (${name}) rejected by the SDK schema:\n${parsed.success ? "" : explainZod(parsed.error)}\ndata: ${dump(payload)}`);
    }
  });
});

describe("agent versions, aliases, pages, delete", () => {
  test("update creates version 1; versions, aliases and version switch", T, async () => {
    const created = await sdk(
      "beta.agents.create (versioned)",
      client.beta.agents.create({ model: MODEL, name: "interop-ts-versioned", instructions: "first" }),
    );
    checkAgent(created, "create(versioned)");
    const updated = await sdk(
      "beta.agents.update",
      client.beta.agents.update({ agentId: created.id, updateAgentRequest: { instructions: "second" } }),
    );
    checkAgent(updated, "update");
    assert.equal(updated.id, created.id);
    assert.equal(updated.version, 1, "update: version");
    assert.deepEqual(updated.versions, [0, 1], "update: versions");
    assert.equal(updated.instructions, "second");

    const versions = await sdk("beta.agents.listVersions", client.beta.agents.listVersions({ agentId: created.id }));
    assert.deepEqual(versions.map((a) => a.version).sort(), [0, 1], "listVersions");
    for (const [i, a] of versions.entries()) checkAgent(a, `listVersions[${i}]`);

    const v0 = await sdk("beta.agents.getVersion", client.beta.agents.getVersion({ agentId: created.id, version: "0" }));
    checkAgent(v0, "getVersion(0)");
    assert.equal(v0.version, 0);
    assert.equal(v0.instructions, "first");

    const alias = await sdk(
      "beta.agents.createVersionAlias",
      client.beta.agents.createVersionAlias({ agentId: created.id, alias: "stable", version: 0 }),
    );
    assert.equal(alias.alias, "stable");
    assert.equal(alias.version, 0);
    assertDate(alias.createdAt, "alias created_at");
    assertDate(alias.updatedAt, "alias updated_at");
    const aliases = await sdk("beta.agents.listVersionAliases", client.beta.agents.listVersionAliases({ agentId: created.id }));
    assert.deepEqual(aliases.map((a) => [a.alias, a.version]), [["stable", 0]], "listVersionAliases");

    const byAlias = await sdk("beta.agents.get (alias)", client.beta.agents.get({ agentId: created.id, agentVersion: "stable" }));
    assert.equal(byAlias.version, 0, "get(agent_version=stable)");
    assert.equal(byAlias.instructions, "first");

    const switched = await sdk("beta.agents.updateVersion", client.beta.agents.updateVersion({ agentId: created.id, version: 0 }));
    checkAgent(switched, "updateVersion");
    assert.equal(switched.version, 0, "updateVersion: active version");
    assert.deepEqual(switched.versions, [0, 1], "updateVersion: versions");
  });

  test("listPages walks every agent once", T, async () => {
    const mine = await Promise.all([mainAgent(), searchAgent(), functionAgent()]);
    const pages = await sdk("beta.agents.listPages", client.beta.agents.listPages({ pageSize: 2 }));
    const ids = [];
    let count = 0;
    try {
      for await (const page of pages) {
        count++;
        assert.equal(page.result.object, "list", "AgentListPage.object");
        for (const [i, a] of page.result.data.entries()) checkAgent(a, `listPages page ${count} [${i}]`);
        ids.push(...page.result.data.map((a) => a.id));
        assert.ok(count < 100, "listPages does not terminate");
      }
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      throw new Error(`beta.agents.listPages (page ${count + 1}) failed in the SDK: ${err.message}`);
    }
    assert.ok(count >= 2, `expected several pages of 2, got ${count}`);
    assert.equal(new Set(ids).size, ids.length, `listPages returned duplicates: ${dump(ids)}`);
    for (const a of mine) assert.ok(ids.includes(a.id), `listPages: ${a.id} missing`);
  });

  test("delete agent and conversation, then 404", T, async () => {
    const agent = await sdk("beta.agents.create (to delete)", client.beta.agents.create({ model: MODEL, name: "interop-ts-doomed" }));
    const conv = await sdk("beta.conversations.start (to delete)", client.beta.conversations.start({ agentId: agent.id, inputs: "hi" }));
    await sdk("beta.conversations.delete", client.beta.conversations.delete({ conversationId: conv.conversationId }));
    await expectHttpError("conversations.get (deleted)", client.beta.conversations.get({ conversationId: conv.conversationId }), 404);
    await sdk("beta.agents.delete", client.beta.agents.delete({ agentId: agent.id }));
    await expectHttpError("agents.get (deleted)", client.beta.agents.get({ agentId: agent.id }), 404);
  });
});

describe("handoffs and built-in connectors", () => {
  const pair = once(async () => {
    const billing = await sdk(
      "beta.agents.create (billing)",
      client.beta.agents.create({ model: MODEL, name: "billing-desk", instructions: "You answer billing questions." }),
    );
    const front = await sdk(
      "beta.agents.create (front)",
      client.beta.agents.create({ model: MODEL, name: "front-desk", instructions: "Route questions.", handoffs: [billing.id] }),
    );
    return { billing, front };
  });

  test("server handoff: agent.handoff then the next agent answers", T, async () => {
    const { billing, front } = await pair();
    assert.deepEqual(front.handoffs, [billing.id], "agent.handoffs");
    const res = await sdk(
      "beta.conversations.start (handoff)",
      client.beta.conversations.start({ agentId: front.id, inputs: "Please ask billing-desk about my invoice." }),
    );
    checkResponse(res, "start(handoff)");
    assert.deepEqual(res.outputs.map((o) => o.type), ["agent.handoff", "message.output"], "handoff outputs");
    const [handoff, msg] = res.outputs;
    assert.equal(handoff.previousAgentId, front.id);
    assert.equal(handoff.previousAgentName, "front-desk");
    assert.equal(handoff.nextAgentId, billing.id);
    assert.equal(handoff.nextAgentName, "billing-desk");
    assert.equal(msg.agentId, billing.id, "the answer comes from the next agent");
  });

  test("client handoff: the turn ends at the agent.handoff entry", T, async () => {
    const { billing, front } = await pair();
    const res = await sdk(
      "beta.conversations.start (client handoff)",
      client.beta.conversations.start({ agentId: front.id, inputs: "handoff please", handoffExecution: "client" }),
    );
    assert.deepEqual(res.outputs.map((o) => o.type), ["agent.handoff"], "client handoff outputs");
    assert.equal(res.outputs[0].nextAgentId, billing.id);
  });

  test("server handoff stream: agent.handoff.started/done events", T, async () => {
    const { billing, front } = await pair();
    const events = await collectStream(
      "beta.conversations.startStream (handoff)",
      client.beta.conversations.startStream({ agentId: front.id, inputs: "Let billing-desk handle this." }),
    );
    checkStreamEnvelope(events, "handoff stream");
    const started = events.find((e) => e.event === "agent.handoff.started")?.data;
    const done = events.find((e) => e.event === "agent.handoff.done")?.data;
    assert.ok(started && done, `handoff stream: missing handoff events (${events.map((e) => e.event).join(", ")})`);
    assertId(started.id, "handoff_", "agent.handoff.started id");
    assert.equal(done.id, started.id, "agent.handoff.done id");
    assert.equal(started.previousAgentId, front.id);
    assert.equal(done.nextAgentId, billing.id);
    const msgs = streamedMessages(events, "handoff stream", { agentId: billing.id });
    assert.ok(msgs.length >= 1 && msgs.at(-1).outputIndex > started.outputIndex, "handoff stream: answer after the handoff");
  });

  test("code_interpreter: message, tool.execution with code/code_output, message", T, async () => {
    const agent = await sdk(
      "beta.agents.create (code)",
      client.beta.agents.create({ model: MODEL, name: "interop-ts-code", tools: [{ type: "code_interpreter" }] }),
    );
    const res = await sdk(
      "beta.conversations.start (code)",
      client.beta.conversations.start({ agentId: agent.id, inputs: "Calculate the sum of 17 and 25." }),
    );
    checkResponse(res, "start(code)", { agentId: agent.id });
    assert.deepEqual(res.outputs.map((o) => o.type), ["message.output", "tool.execution", "message.output"], "code outputs");
    const exec = res.outputs[1];
    assert.equal(exec.name, "code_interpreter");
    assert.equal(typeof exec.info?.code, "string", `tool.execution info.code: ${dump(exec.info)}`);
    assert.equal(typeof exec.info?.code_output, "string", `tool.execution info.code_output: ${dump(exec.info)}`);
    assert.ok(res.usage.connectorTokens > 0, "code: connector_tokens");
  });

  test("image_generation stream: tool execution and a tool_file chunk", T, async () => {
    const agent = await sdk(
      "beta.agents.create (image)",
      client.beta.agents.create({ model: MODEL, name: "interop-ts-image", tools: [{ type: "image_generation" }] }),
    );
    const events = await collectStream(
      "beta.conversations.startStream (image)",
      client.beta.conversations.startStream({ agentId: agent.id, inputs: "Draw a lighthouse at night." }),
    );
    checkStreamEnvelope(events, "image stream");
    const started = events.find((e) => e.event === "tool.execution.started")?.data;
    assert.equal(started?.name, "image_generation", `image stream: ${events.map((e) => e.event).join(", ")}`);
    const msgs = streamedMessages(events, "image stream", { agentId: agent.id });
    const files = msgs.flatMap((m) => m.chunks).filter((c) => c.type === "tool_file");
    assert.equal(files.length, 1, `image stream: tool_file chunks ${dump(msgs)}`);
    assert.equal(files[0].tool, "image_generation");
    assert.match(files[0].fileId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, "tool_file file_id");

    const history = await sdk(
      "beta.conversations.getHistory (image)",
      client.beta.conversations.getHistory({ conversationId: events[0].data.conversationId }),
    );
    const last = history.entries.at(-1);
    assert.equal(last.type, "message.output");
    assert.ok(Array.isArray(last.content) && last.content.some((c) => c.type === "tool_file"), `history: ${dump(last.content)}`);
    const messages = await sdk(
      "beta.conversations.getMessages",
      client.beta.conversations.getMessages({ conversationId: events[0].data.conversationId }),
    );
    assert.deepEqual(messages.messages.map((m) => m.type), ["message.input", "message.output"], "getMessages");
  });
});

describe("faults and auth", () => {
  const fault = (kind) => ({ headers: { "X-Agentcap-Sim-Fault": kind } });

  test("429 / 500 / 503 faults reach the SDK as HTTP errors", T, async () => {
    const limited = await expectHttpError("agents.list (429)", client.beta.agents.list({}, fault("429")), 429);
    assert.ok(limited.headers.get("retry-after"), "429 without a Retry-After header");
    await expectHttpError("conversations.start (500)", client.beta.conversations.start({ model: MODEL, inputs: "x" }, fault("500")), 500);
    await expectHttpError("conversations.start (503)", client.beta.conversations.start({ model: MODEL, inputs: "x" }, fault("503")), 503);
  });

  test("error-event fault: the stream ends with a valid conversation.response.error", T, async () => {
    const events = await collectStream(
      "beta.conversations.startStream (error-event)",
      client.beta.conversations.startStream({ model: MODEL, inputs: "Tell me a long story." }, fault("error-event")),
    );
    const names = events.map((e) => e.event);
    assert.equal(names[0], "conversation.response.started", `first event (events: ${names.join(", ")})`);
    assert.equal(names.at(-1), "conversation.response.error", `last event (events: ${names.join(", ")})`);
    assert.ok(!names.includes("conversation.response.done"), "an errored stream has no done event");
    const err = events.at(-1).data;
    assert.equal(typeof err.message, "string");
    assert.ok(Number.isInteger(err.code), `error code ${dump(err.code)}`);
  });

  test("reset fault: part of the stream arrives, then reading fails", T, async () => {
    let failure;
    try {
      await collectStream(
        "beta.conversations.startStream (reset)",
        client.beta.conversations.startStream({ model: MODEL, inputs: "Tell me a long story about the sea." }, fault("reset")),
      );
    } catch (err) {
      failure = err;
    }
    assert.ok(failure, "a reset stream must not end normally");
    assert.ok(Array.isArray(failure.events), `expected a failure while reading the stream, got: ${failure.message}`);
    const names = failure.events.map((e) => e.event);
    // The contract says the connection is cut mid-stream: the client sees the first half.
    assert.ok(
      names[0] === "conversation.response.started" && names.length >= 2,
      `reset: expected the events before the cut to reach the client, got ${names.length} (${names.join(", ") || "none"}); ` +
        `error: ${failure.message.split("\n").slice(1).join(" | ")}`,
    );
    assert.ok(!names.includes("conversation.response.done"), "reset: a cut stream has no done event");
  });

  test("--api-key: wrong key is a 401, right key works", T, async () => {
    const keyed = await startTwin({ extraArgs: ["--api-key", "sk-right"], captureName: "ts-auth.jsonl" });
    try {
      const wrong = new Mistral({ serverURL: keyed.baseURL, apiKey: "sk-wrong", timeoutMs: 20_000 });
      await expectHttpError("agents.list (wrong key)", wrong.beta.agents.list({}), 401);
      const right = new Mistral({ serverURL: keyed.baseURL, apiKey: "sk-right", timeoutMs: 20_000 });
      const list = await sdk("beta.agents.list (right key)", right.beta.agents.list({}));
      assert.ok(Array.isArray(list));
    } finally {
      await keyed.stop();
    }
  });
});

describe("capture", () => {
  // Runs last: every JSON body and SSE event the twin captured during this run must satisfy
  // the SDK schema of its operation.
  const BODY_SCHEMAS = {
    agents_api_v1_agents_create: components.Agent$inboundSchema,
    agents_api_v1_agents_get: components.Agent$inboundSchema,
    agents_api_v1_agents_list: { safeParse: (v) => arrayOf(components.Agent$inboundSchema, v) },
    agents_api_v1_agents_list_pages: components.AgentListPage$inboundSchema,
    agents_api_v1_agents_update: components.Agent$inboundSchema,
    agents_api_v1_agents_update_version: components.Agent$inboundSchema,
    agents_api_v1_agents_list_versions: { safeParse: (v) => arrayOf(components.Agent$inboundSchema, v) },
    agents_api_v1_agents_get_version: components.Agent$inboundSchema,
    agents_api_v1_agents_create_or_update_alias: components.AgentAliasResponse$inboundSchema,
    agents_api_v1_agents_list_version_aliases: {
      safeParse: (v) => arrayOf(components.AgentAliasResponse$inboundSchema, v),
    },
    agents_api_v1_conversations_messages: components.ConversationMessages$inboundSchema,
    agents_api_v1_conversations_start: components.ConversationResponse$inboundSchema,
    agents_api_v1_conversations_append: components.ConversationResponse$inboundSchema,
    agents_api_v1_conversations_restart: components.ConversationResponse$inboundSchema,
    agents_api_v1_conversations_history: components.ConversationHistory$inboundSchema,
    agents_api_v1_conversations_get: operations.ResponseV1ConversationsGet$inboundSchema,
    agents_api_v1_conversations_list: {
      safeParse: (v) => arrayOf(operations.AgentsApiV1ConversationsListResponse$inboundSchema, v),
    },
  };

  function arrayOf(schema, value) {
    if (!Array.isArray(value)) return { success: false, error: { issues: [{ message: "not an array", path: [] }] } };
    const data = [];
    for (const item of value) {
      const r = schema.safeParse(item);
      if (!r.success) return r;
      data.push(r.data);
    }
    return { success: true, data };
  }

  const why = (error) => explainZod(error);

  // A discriminated union inside a valid body can still have degraded an item to UNKNOWN.
  function findUnknown(value, path = "") {
    if (value === null || typeof value !== "object" || value instanceof Date) return null;
    if (value.isUnknown === true) return { path: path || "(root)", raw: value.raw };
    for (const [k, v] of Object.entries(value)) {
      const hit = findUnknown(v, Array.isArray(value) ? `${path}[${k}]` : `${path}.${k}`);
      if (hit) return hit;
    }
    return null;
  }

  test("capture file lines follow the contract and validate", T, async () => {
    assert.ok(twin, "twin not started");
    // The twin writes each line as it sends; give it a moment to settle.
    let records = [];
    let lastSize = -1;
    for (let attempt = 0; attempt < 30; attempt++) {
      let text = "";
      try {
        text = readFileSync(twin.capturePath).subarray(twin.captureOffset).toString("utf8");
      } catch {
        // not created yet
      }
      if (text.length === lastSize && text.length > 0) break;
      lastSize = text.length;
      records = text.split("\n").filter(Boolean);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(records.length > 0, `capture file ${twin.capturePath} is empty`);
    const ops = new Set();
    for (const [i, line] of records.entries()) {
      let rec;
      try {
        rec = JSON.parse(line);
      } catch (err) {
        assert.fail(`capture line ${i + 1} is not JSON: ${dump(line)}`);
      }
      const where = `capture line ${i + 1} (${rec.operation} ${rec.kind})`;
      for (const key of ["method", "path", "operation", "status", "kind"]) {
        assert.ok(key in rec, `${where}: missing '${key}': ${dump(rec)}`);
      }
      ops.add(rec.operation);
      if (rec.kind === "sse") {
        const schemaName = EVENT_SCHEMAS[rec.event];
        assert.ok(schemaName, `${where}: unknown event ${dump(rec.event)}`);
        assert.equal(rec.data?.type, rec.event, `${where}: data.type vs event`);
        const r = components[`${schemaName}$inboundSchema`].safeParse(rec.data);
        assert.ok(r.success, `${where}: ${schemaName} rejects it:\n${r.success ? "" : why(r.error)}\ndata: ${dump(rec.data)}`);
      } else if (rec.kind === "json" && rec.status === 200 && BODY_SCHEMAS[rec.operation]) {
        const r = BODY_SCHEMAS[rec.operation].safeParse(rec.body);
        assert.ok(r.success, `${where}: the SDK schema rejects the body:\n${r.success ? "" : why(r.error)}\nbody: ${dump(rec.body)}`);
        if (r.data !== undefined) {
          const hit = findUnknown(r.data);
          assert.ok(!hit, `${where}: the SDK degraded ${hit?.path} to UNKNOWN: ${dump(hit?.raw)}`);
        }
      } else {
        assert.equal(rec.kind === "json" || rec.kind === "sse", true, `${where}: kind must be json or sse`);
      }
    }
    for (const op of [
      "agents_api_v1_agents_create",
      "agents_api_v1_agents_get",
      "agents_api_v1_agents_list",
      "agents_api_v1_conversations_start",
      "agents_api_v1_conversations_append",
      "agents_api_v1_conversations_restart",
      "agents_api_v1_conversations_start_stream",
      "agents_api_v1_conversations_append_stream",
      "agents_api_v1_conversations_restart_stream",
    ]) {
      assert.ok(ops.has(op), `capture: no record for ${op} (have: ${[...ops].join(", ")})`);
    }
  });
});
