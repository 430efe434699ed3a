"""Validate everything the twin sent during the session against the official OpenAPI spec.

The twin's `--capture` files (every `*.jsonl` in the capture directory: this suite's python*.jsonl, and
ts.jsonl when the TypeScript suite ran first) hold one line per JSON body and one per SSE event. Each line
names the operation (`operationId`) and the HTTP status; the schema it is checked against is:

  * status with a declared `application/json` schema (kind "json"): that schema;
  * status with a declared `text/event-stream` schema (kind "sse"): that schema, applied to the event as
    `{"event": <name>, "data": <data>}` (the spec models a stream as `ConversationEvents`/`CompletionEvent`
    objects whose `data` is one of the event schemas); the SSE name must also equal `data.type`;
  * 422 without a declared schema: `HTTPValidationError`;
  * other error statuses (401, 404, 429, 5xx): the spec declares no schema for them, so the body is only
    required to be a JSON object.

The file sorts last (and conftest moves it to the end) so pytest runs it after the SDK tests; it stops the
session's twins first so their captures are complete. It fails when there is nothing to validate. It runs
for `--target direct` only: the proxy targets drive the same twin with the same scenarios.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import REPO

SPEC_URI = "urn:agentcap:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
MAX_REPORTED = 200



def spec_path() -> Path:
    configured = os.environ.get("AGENTCAP_OPENAPI")
    return Path(configured) if configured else REPO.parent / "shared" / "spec" / "openapi.yaml"


@lru_cache(maxsize=1)
def load_spec() -> dict:
    path = spec_path()
    if not path.is_file():
        pytest.fail(f"OpenAPI spec not found at {path} (set AGENTCAP_OPENAPI)", pytrace=False)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, "rb") as fh:
        return yaml.load(fh, Loader=loader)


def pointer(*parts: str) -> str:
    """A URI fragment (JSON pointer) for the given path segments; `#` in path keys is percent-encoded."""
    return "/" + "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="~") for p in parts)


class Spec:
    def __init__(self, spec: dict):
        self.spec = spec
        self.registry = Registry().with_resource(
            SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
        self.operations: dict[str, tuple[str, str, dict]] = {}
        for path, item in spec.get("paths", {}).items():
            for method, op in item.items():
                if method in HTTP_METHODS and isinstance(op, dict) and "operationId" in op:
                    self.operations[op["operationId"]] = (path, method, op)
        self._validators: dict[str, Draft202012Validator] = {}

    def validator(self, fragment: str) -> Draft202012Validator:
        v = self._validators.get(fragment)
        if v is None:
            v = Draft202012Validator({"$ref": f"{SPEC_URI}#{fragment}"}, registry=self.registry,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
            self._validators[fragment] = v
        return v

    def response_schema(self, operation: str, status: int, media: str) -> str | None:
        """The JSON pointer of the declared response schema, or None when the spec declares none."""
        path, method, op = self.operations[operation]
        responses = op.get("responses", {})
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            response = responses.get(key)
            if response is None:
                continue
            content = (response.get("content") or {}).get(media)
            if content and "schema" in content:
                return pointer("paths", path, method, "responses", key, "content", media, "schema")
            return None
        return None


def json_path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _excluded(branch_errors: list[ValidationError]) -> bool:
    """A union branch that fails on the discriminator (`type` const) or on the JSON type itself."""
    for e in branch_errors:
        rel = list(e.relative_path)
        if e.validator == "const" and rel == ["type"]:
            return True
        if e.validator in ("type", "const", "enum") and not rel:
            return True
    return False


def leaf_errors(error: ValidationError) -> list[ValidationError]:
    """Descend anyOf/oneOf failures into the branch the instance was meant to match, when that is clear."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[object, list[ValidationError]] = defaultdict(list)
        for sub in error.context:
            branches[sub.relative_schema_path[0] if sub.relative_schema_path else None].append(sub)
        candidates = [errs for errs in branches.values() if not _excluded(errs)]
        if len(candidates) == 1:
            return [leaf for sub in candidates[0] for leaf in leaf_errors(sub)]
        if not candidates:
            return [error]
        return leaf_errors(best_match(error.context))
    return [error]


def describe(error: ValidationError) -> str:
    message = error.message
    if len(message) > 300:
        message = message[:300] + "…"
    return f"{json_path(error.absolute_path)}: {message}"


def iter_records(capture_dir: Path):
    for file in sorted(capture_dir.glob("*.jsonl")):
        with open(file, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    yield file.name, lineno, line


def check_record(spec: Spec, rec: dict) -> list[str]:
    """Problems with one captured body or event (empty when it conforms)."""
    operation, status, kind = rec.get("operation"), rec.get("status"), rec.get("kind")
    if not isinstance(status, int) or kind not in ("json", "sse"):
        return [f"malformed capture record (status={status!r}, kind={kind!r})"]
    if operation not in spec.operations:
        return [f"operation {operation!r} is not an operationId of the spec"]
    if kind == "sse":
        data = rec.get("data")
        event = rec.get("event")
        if data == "[DONE]" and operation.startswith("chat_"):
            return []  # chat-completion streams end with a non-JSON sentinel
        problems = []
        if event is not None and isinstance(data, dict) and "type" in data and data["type"] != event:
            problems.append(f"SSE event name {event!r} differs from data.type {data['type']!r}")
        instance = {"data": data} if event is None else {"event": event, "data": data}
        fragment = spec.response_schema(operation, status, "text/event-stream")
        if fragment is None:
            return problems + [f"the spec declares no text/event-stream schema for status {status}"]
    else:
        if "body" not in rec:
            return ["json record without body"]
        instance = rec["body"]
        fragment = spec.response_schema(operation, status, "application/json")
        problems = []
        if fragment is None:
            if status == 422:
                fragment = pointer("components", "schemas", "HTTPValidationError")
            elif status >= 400:
                # No schema is declared for this error status: only require a JSON object.
                return [] if isinstance(instance, dict) else [f"error body for status {status} is not a JSON object"]
            else:
                return [f"the spec declares no application/json schema for status {status}"]
    for error in sorted(spec.validator(fragment).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        problems += [describe(leaf) for leaf in leaf_errors(error)]
    return problems


def test_capture_conforms_to_openapi(twin_pool, capture_dir, target):
    if target != "direct":
        # What the twin sends does not depend on who connects to it: the direct run validates it.
        pytest.skip("the OpenAPI check runs with --target direct")
    # The twins append to their capture files; stop them so everything they wrote is on disk.
    twin_pool.stop_all()
    spec = Spec(load_spec())

    files = sorted(capture_dir.glob("*.jsonl"))
    assert files, f"no *.jsonl capture in {capture_dir}: nothing was validated"
    for name, twin in twin_pool.twins.items():
        assert twin.capture.is_file() and twin.capture.stat().st_size > 0, (
            f"twin {name!r} ran during this session but its capture {twin.capture} is empty")

    checked = Counter()
    violations: list[str] = []
    for fname, lineno, line in iter_records(capture_dir):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            violations.append(f"{fname}:{lineno}: not JSON ({exc})")
            continue
        if not isinstance(rec, dict):
            violations.append(f"{fname}:{lineno}: capture line is not an object")
            continue
        label = rec.get("operation")
        where = f"{rec.get('method')} {rec.get('path')} -> {rec.get('status')} {rec.get('kind')}"
        if rec.get("kind") == "sse":
            where += f" event={rec.get('event')}"
        for problem in check_record(spec, rec):
            violations.append(f"{fname}:{lineno} {label} ({where}) {problem}")
        checked[(label, rec.get("status"), rec.get("kind"))] += 1

    total = sum(checked.values())
    summary = "\n".join(f"  {n:5d}  {op} {status} {kind}" for (op, status, kind), n in sorted(
        checked.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]), str(kv[0][2]))))
    report = capture_dir / "openapi-report.txt"
    report.write_text(f"{total} records checked in {len(files)} files\n{summary}\n\n"
                      f"{len(violations)} violations\n" + "\n".join(violations) + "\n")
    assert total > 0, f"the captures in {capture_dir} hold no records: nothing was validated"
    if violations:
        shown = "\n".join(violations[:MAX_REPORTED])
        more = f"\n… and {len(violations) - MAX_REPORTED} more (see {report})" if len(violations) > MAX_REPORTED else ""
        pytest.fail(f"{len(violations)} OpenAPI violations in {total} captured bodies/events:\n{shown}{more}",
                    pytrace=False)
