"""Admission control: at most REQUEST_CONCURRENCY HTTP requests handled at once per process.

Handling a request up to its response's start is where Django does its blocking work (the
database, building an assistant's context), in worker threads that all want the GIL. With 200
chat prompts arriving together, 200 such threads fought over the GIL with the event loop, and
the loop, which carries the camera frames, got a slice too small to keep a 10 fps camera above
2 fps. Here the others wait their turn on the loop, where waiting costs nothing: a streaming
reply holds its slot only until its response starts (the stream itself runs on the loop), so
the number of open streams is not limited, only how many are being set up at the same moment.

A request that has not started its response after `hold_max_seconds` is waiting on something
(a stop that waits for its run, a health probe of a slow service), not computing: it gives its
slot up so it cannot hold everyone else back. WebSockets are not HTTP requests and never wait,
and neither do the probes (`/healthz`, `/readyz`, `/metrics`): a liveness check that queued
behind a burst of prompts would time out and get a merely busy server restarted.
"""

from __future__ import annotations

import asyncio
from typing import Any

HOLD_MAX_SECONDS = 2.0
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestAdmission:
    """Wraps an ASGI application; `limit` 0 admits everything at once."""

    def __init__(self, application: Any, *, limit: int, hold_max_seconds: float = HOLD_MAX_SECONDS):
        self.application = application
        self.limit = limit
        self.hold_max_seconds = hold_max_seconds
        # One per event loop: a semaphore belongs to the loop it first waits on (tests run
        # one loop per test; daphne has one).
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.limit))
        return self._slots[1]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in PROBE_PATHS:
            await self.application(scope, receive, send)
            return
        semaphore = self._semaphore()
        await semaphore.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                semaphore.release()

        give_up = asyncio.get_running_loop().call_later(self.hold_max_seconds, release)

        async def send_releasing(message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.application(scope, receive, send_releasing)
        finally:
            give_up.cancel()
            release()
