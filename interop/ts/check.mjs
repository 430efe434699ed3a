// Assertion helpers that turn the SDK's silent or terse failures into test failures that say
// exactly which field of the twin's response the SDK rejected.

import assert from "node:assert/strict";
import * as components from "@mistralai/mistralai/models/components";

const MAX_DUMP = 4_000;

/** Stream event types the SDK knows (components.SSETypes), mapped to their schema name. */
export const EVENT_SCHEMAS = {
  "conversation.response.started": "ResponseStartedEvent",
  "conversation.response.done": "ResponseDoneEvent",
  "conversation.response.error": "ResponseErrorEvent",
  "message.output.delta": "MessageOutputEvent",
  "tool.execution.started": "ToolExecutionStartedEvent",
  "tool.execution.delta": "ToolExecutionDeltaEvent",
  "tool.execution.done": "ToolExecutionDoneEvent",
  "agent.handoff.started": "AgentHandoffStartedEvent",
  "agent.handoff.done": "AgentHandoffDoneEvent",
  "function.call.delta": "FunctionCallEvent",
};

/** Tool `type` values the SDK knows, mapped to their schema name. */
export const TOOL_SCHEMAS = {
  code_interpreter: "CodeInterpreterTool",
  connector: "CustomConnector",
  document_library: "DocumentLibraryTool",
  function: "FunctionTool",
  image_generation: "ImageGenerationTool",
  web_search: "WebSearchTool",
  web_search_premium: "WebSearchPremiumTool",
};

function dump(value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length > MAX_DUMP ? `${text.slice(0, MAX_DUMP)}... (${text.length} chars)` : text;
}

function isZodError(err) {
  return err !== null && typeof err === "object" && Array.isArray(err.issues);
}

/**
 * zod's prettifyError prints a failed union as a bare "Invalid input". The SDK's unions
 * (smartUnion) keep each option's issues, so list them, skipping options that were ruled out
 * only by a different `type` discriminator.
 */
export function explainZod(error) {
  const lines = [];
  const walk = (issues, prefix, depth) => {
    for (const issue of issues) {
      const path = [...prefix, ...(issue.path ?? [])];
      const at = path.length ? path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("") : "(root)";
      const pad = "  ".repeat(depth);
      if (issue.code === "invalid_union" && Array.isArray(issue.errors) && issue.errors.length) {
        const relevant = issue.errors
          .map((opt, k) => ({ opt, k }))
          .filter(({ opt }) => !opt.some((i) => i.code === "invalid_value" && (i.path ?? []).length === 1 && i.path[0] === "type"));
        lines.push(`${pad}- ${at}: no union option matched${relevant.length ? "; per option:" : ""}`);
        for (const { opt, k } of relevant) {
          lines.push(`${pad}  option ${k}:`);
          walk(opt, path, depth + 2);
        }
      } else {
        lines.push(`${pad}- ${at}: ${issue.message}`);
      }
    }
  };
  walk(error.issues ?? [], [], 0);
  return lines.join("\n");
}

let failureContext = null;

/** Registers a function whose text is appended to every failure (e.g. the twin's stderr if it died). */
export function setFailureContext(fn) {
  failureContext = fn;
}

/** A readable description of anything the SDK can throw. */
export function describeError(err) {
  if (err === null || typeof err !== "object") return String(err);
  const parts = [];
  if (typeof err.pretty === "function") {
    // SDKValidationError / ResponseValidationError: message plus the zod issues.
    parts.push(`${err.name}: ${err.message}`);
    if (isZodError(err.cause)) parts.push(`rejected fields:\n${explainZod(err.cause)}`);
    else parts.push(err.pretty());
  } else if (isZodError(err)) {
    parts.push(`ZodError (raised while parsing a stream event):\n${explainZod(err)}`);
  } else {
    parts.push(`${err.name || "Error"}: ${err.message}`);
  }
  if (typeof err.statusCode === "number") parts.push(`HTTP status: ${err.statusCode}`);
  if (typeof err.contentType === "string" && err.contentType) parts.push(`content-type: ${err.contentType}`);
  if ("rawValue" in err && err.rawValue !== undefined) parts.push(`raw value: ${dump(stripHttp(err.rawValue))}`);
  else if (typeof err.body === "string" && err.body) parts.push(`body: ${dump(err.body)}`);
  let cause = err.cause;
  for (let depth = 0; cause && !isZodError(cause) && cause !== err && depth < 3; depth++) {
    parts.push(`cause: ${cause.code ? `${cause.code} ` : ""}${cause.message ?? String(cause)}`);
    cause = cause.cause;
  }
  const extra = failureContext?.();
  if (extra) parts.push(extra);
  return parts.join("\n");
}

// The SDK puts Request/Response objects into the value it validates; they only add noise.
function stripHttp(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const out = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === "HttpMeta" || k === "request$" || k === "response$") continue;
    out[k] = v;
  }
  return out;
}

/** Awaits an SDK call; on failure throws an Error carrying the SDK's own diagnostics. */
export async function sdk(label, promise) {
  try {
    return await promise;
  } catch (err) {
    const wrapped = new Error(`${label} failed in the SDK:\n${describeError(err)}`);
    wrapped.cause = err;
    throw wrapped;
  }
}

/**
 * The SDK's discriminated unions (stream events, agent tools) do not throw when a known variant
 * fails validation: they return `{ type: "UNKNOWN", isUnknown: true, raw }`. Re-run the specific
 * schema to recover the reason.
 */
function whyUnknown(schemaName, raw) {
  const schema = schemaName && components[`${schemaName}$inboundSchema`];
  if (!schema) return "no schema in the SDK for this discriminator value";
  const res = schema.safeParse(raw);
  if (res.success) return `${schemaName} accepts it on its own (unexpected)`;
  return `${schemaName} rejected it:\n${explainZod(res.error)}`;
}

/** Consumes an SDK event stream to the end; every event must be a known, validated event. */
export async function collectStream(label, streamPromise) {
  const stream = await sdk(label, streamPromise);
  const events = [];
  try {
    for await (const ev of stream) {
      checkEvent(label, ev, events.length);
      events.push(ev);
    }
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    const seen = events.map((e) => e.event).join(", ") || "none";
    const wrapped = new Error(
      `${label}: reading the stream failed after ${events.length} events (${seen}):\n${describeError(err)}`,
    );
    wrapped.cause = err;
    wrapped.events = events;
    throw wrapped;
  }
  return events;
}

function checkEvent(label, ev, index) {
  const where = `${label}: event #${index}`;
  assert.ok(
    Object.hasOwn(EVENT_SCHEMAS, ev.event),
    `${where}: SSE event name ${dump(ev.event)} is not one the SDK knows (${Object.keys(EVENT_SCHEMAS).join(", ")})`,
  );
  const data = ev.data;
  assert.ok(data && typeof data === "object", `${where} (${ev.event}): no data object`);
  if (data.isUnknown === true) {
    const rawType = data.raw && typeof data.raw === "object" ? data.raw.type : undefined;
    const schemaName = EVENT_SCHEMAS[rawType] ?? EVENT_SCHEMAS[ev.event];
    assert.fail(
      `${where} (${ev.event}): the SDK could not validate the data and degraded it to an UNKNOWN event.\n` +
        `data: ${dump(data.raw)}\n${whyUnknown(schemaName, data.raw)}`,
    );
  }
  assert.equal(data.type, ev.event, `${where}: SSE 'event:' name and data.type differ`);
}

/** Every tool in an agent or model conversation must be a known, validated tool. */
export function checkTools(label, tools) {
  assert.ok(Array.isArray(tools), `${label}: tools is not an array: ${dump(tools)}`);
  tools.forEach((tool, i) => {
    if (tool && tool.isUnknown === true) {
      const rawType = tool.raw && typeof tool.raw === "object" ? tool.raw.type : undefined;
      assert.fail(
        `${label}: tools[${i}] was degraded to UNKNOWN by the SDK.\n` +
          `tool: ${dump(tool.raw)}\n${whyUnknown(TOOL_SCHEMAS[rawType], tool.raw)}`,
      );
    }
  });
}

const HEX32 = "[0-9a-f]{32}";

/** Ids look like `<prefix><32 lowercase hex>` (a dashless UUIDv7). */
export function assertId(value, prefix, what) {
  assert.equal(typeof value, "string", `${what}: id is not a string: ${dump(value)}`);
  assert.match(value, new RegExp(`^${prefix}${HEX32}$`), `${what}: id ${value} is not ${prefix}<32 hex>`);
}

export function assertDate(value, what) {
  assert.ok(value instanceof Date && !Number.isNaN(value.getTime()), `${what}: not a valid date: ${dump(value)}`);
}

/** Usage numbers are non-negative integers and add up. */
export function assertUsage(usage, what) {
  assert.ok(usage && typeof usage === "object", `${what}: usage missing`);
  for (const key of ["promptTokens", "completionTokens", "totalTokens"]) {
    assert.ok(Number.isInteger(usage[key]) && usage[key] >= 0, `${what}: usage.${key} = ${dump(usage[key])}`);
  }
  assert.ok(usage.promptTokens > 0, `${what}: usage.promptTokens is 0`);
  assert.ok(usage.completionTokens > 0, `${what}: usage.completionTokens is 0`);
  const connector = usage.connectorTokens ?? 0;
  assert.equal(
    usage.totalTokens,
    usage.promptTokens + usage.completionTokens + connector,
    `${what}: total_tokens != prompt_tokens + completion_tokens + connector_tokens (${dump(usage)})`,
  );
}

/** Text of a message.output entry content (string, or chunks whose text parts are joined). */
export function contentText(content) {
  if (typeof content === "string") return content;
  assert.ok(Array.isArray(content), `content is neither a string nor chunks: ${dump(content)}`);
  return content.map((c) => (c.type === "text" ? c.text : "")).join("");
}

export { dump };
