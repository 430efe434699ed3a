"""What the clients of this process sent and received on the wire, recorded below every httpx client.

`WireLog.install()` wraps httpx's own transports (`HTTPTransport.handle_request` and
`AsyncHTTPTransport.handle_async_request`), so every request made in the process is recorded: the SDK's
sync and async clients and plain `httpx.post(...)` calls alike, without changing how the tests build their
clients. For each request it keeps the request body and, as the caller reads it, the response body exactly
as it came off the connection (after HTTP framing, before any content decoding). Nothing is altered.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import httpx


@dataclass
class SseEvent:
    """One SSE event as the client received it."""

    event: str | None
    data: str
    raw: bytes

    def json(self):
        return json.loads(self.data)


@dataclass
class WireRecord:
    """One request made by a client of this process, and its response as far as the client read it."""

    method: str
    url: httpx.URL
    request_body: bytes | None
    status: int | None = None
    headers: httpx.Headers | None = None
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False
    error: str | None = None

    @property
    def origin(self) -> str:
        return f"{self.url.scheme}://{self.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def is_sse(self) -> bool:
        return bool(self.headers) and self.headers.get("content-type", "").startswith("text/event-stream")

    def request_json(self):
        return json.loads(self.request_body) if self.request_body else None

    def json(self):
        return json.loads(bytes(self.body))

    def events(self) -> list[SseEvent]:
        """The SSE events of the body (LF-terminated lines, as the twin writes them)."""
        out = []
        text = bytes(self.body)
        for block in text.split(b"\n\n"):
            if not block:
                continue
            event, data = None, []
            for line in block.decode().split("\n"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
            out.append(SseEvent(event=event, data="\n".join(data), raw=block + b"\n\n"))
        assert b"".join(e.raw for e in out) == text, "the SSE body does not end with a blank line"
        return out

    def describe(self) -> str:
        return f"{self.method} {self.url} -> {self.status}"


class _TeeSync(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, rec: WireRecord):
        self._inner, self._rec = inner, rec

    def __iter__(self):
        try:
            for chunk in self._inner:
                self._rec.body += chunk
                yield chunk
        except Exception as exc:
            self._rec.error = repr(exc)
            raise
        self._rec.complete = True

    def close(self) -> None:
        self._inner.close()


class _TeeAsync(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, rec: WireRecord):
        self._inner, self._rec = inner, rec

    async def __aiter__(self):
        try:
            async for chunk in self._inner:
                self._rec.body += chunk
                yield chunk
        except Exception as exc:
            self._rec.error = repr(exc)
            raise
        self._rec.complete = True

    async def aclose(self) -> None:
        await self._inner.aclose()


def _request_body(request: httpx.Request) -> bytes | None:
    try:
        return bytes(request.content) or None
    except httpx.RequestNotRead:
        return None


class WireLog:
    """Every request of the process, in the order they were sent."""

    def __init__(self) -> None:
        self.records: list[WireRecord] = []
        self._lock = threading.Lock()
        self._saved: tuple | None = None

    def _start(self, request: httpx.Request) -> WireRecord:
        rec = WireRecord(method=request.method, url=request.url, request_body=_request_body(request))
        with self._lock:
            self.records.append(rec)
        return rec

    def install(self) -> None:
        sync_orig = httpx.HTTPTransport.handle_request
        async_orig = httpx.AsyncHTTPTransport.handle_async_request
        log = self

        def handle_request(transport, request):
            rec = log._start(request)
            try:
                response = sync_orig(transport, request)
            except Exception as exc:
                rec.error = repr(exc)
                raise
            rec.status, rec.headers = response.status_code, response.headers
            response.stream = _TeeSync(response.stream, rec)
            return response

        async def handle_async_request(transport, request):
            rec = log._start(request)
            try:
                response = await async_orig(transport, request)
            except Exception as exc:
                rec.error = repr(exc)
                raise
            rec.status, rec.headers = response.status_code, response.headers
            response.stream = _TeeAsync(response.stream, rec)
            return response

        self._saved = (sync_orig, async_orig)
        httpx.HTTPTransport.handle_request = handle_request
        httpx.AsyncHTTPTransport.handle_async_request = handle_async_request

    def uninstall(self) -> None:
        if self._saved:
            httpx.HTTPTransport.handle_request, httpx.AsyncHTTPTransport.handle_async_request = self._saved
            self._saved = None

    def to(self, *origins: str) -> list[WireRecord]:
        """The records sent to any of `origins` (`scheme://host:port`), in order."""
        wanted = {o.rstrip("/") for o in origins}
        with self._lock:
            return [r for r in self.records if r.origin in wanted]
