"""Small ASGI wrappers that bound what requests can take from the process.

* :class:`BodySizeLimit`: 413 from ``Content-Length`` before reading, and 413 while streaming
  once the counted bytes pass the limit (chunked bodies have no length). Until Starlette's own
  ``max_body_size`` is in the pinned versions.
* :class:`ConcurrencyLimit`: the heavy routes share a few slots; a request waits for one in
  the event loop (no thread is taken while it waits) within a short queue, and past the queue or
  its timeout it is answered 503 ``SERVER_BUSY`` with ``Retry-After`` instead of piling up.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def _body(limit: int) -> bytes:
    return json.dumps({"error": {"code": "BODY_TOO_LARGE", "message":
                                 f"request body exceeds {limit} bytes",
                                 "details": {"max_body_bytes": limit}}}).encode()


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = rejected = False

        async def counting_receive() -> Message:
            # Past the limit: answer 413 ourselves and tell the app the client left; whatever
            # the app then tries to send is dropped (FastAPI would turn an exception into 400).
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    if not started:
                        await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _reject(self, send: Any) -> None:
        body = _body(self.max_bytes)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _busy_body(limit: int) -> bytes:
    return json.dumps({"error": {"code": "SERVER_BUSY", "message":
                                 f"the service is scoring {limit} heavy requests already; "
                                 "retry after the Retry-After seconds",
                                 "details": {"concurrency": limit}}}).encode()


class ConcurrencyLimit:
    """At most ``limit`` requests to ``paths`` run at once; ``queue`` more may wait up to
    ``timeout_s`` for a slot. The slot is held until the response has been sent."""

    def __init__(self, app: ASGIApp, paths: Iterable[str], limit: int, queue: int,
                 timeout_s: float, retry_after_s: int = 2) -> None:
        self.app, self.paths = app, frozenset(paths)
        self.limit, self.queue, self.timeout_s = limit, queue, timeout_s
        self.retry_after_s = retry_after_s
        self.running = 0
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        if not await self._acquire():
            await self._reject(send)
            return
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1
            self._slots.release()

    async def _acquire(self) -> bool:
        assert self._slots is not None
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        if self.waiting >= self.queue:
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1

    async def _reject(self, send: Any) -> None:
        body = _busy_body(self.limit)
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(self.retry_after_s).encode())]})
        await send({"type": "http.response.body", "body": body})
