"""Each HTTP request's thread-sensitive work on one of a few long-lived threads.

Django gives every ASGI request a `ThreadSensitiveContext` of its own, so the first
`sync_to_async` of a request (Django sends `request_started` and closes the response that way,
even for async views) starts a thread for it, and a second thread joins that one at the end:
two threads started per request, with the interpreter lock contended, and a new database
connection for each (SQLite opens one with its PRAGMAs; PostgreSQL borrows from the pool).

Here the request runs inside a context of our own whose executor is one of REQUEST_THREADS
single-thread executors, taken in turn. Django's context then finds ours and adds none. A
request's thread-sensitive calls still all run in one thread, in order, as Django requires, and
its connections persist as DATABASE_CONN_MAX_AGE says (Django's request_finished handler closes
stale ones in that thread). Requests that draw the same thread share it: a slow sync view
delays the others of its thread, as it would a WSGI worker's.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext


class RequestThreads:
    """Wraps an ASGI application; HTTP requests take `threads` threads in turn."""

    def __init__(self, application, *, threads: int):
        self.application = application
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"request-{n}")
            for n in range(threads)
        ]
        self._turn = itertools.cycle(self.executors)

    async def __call__(self, scope, receive, send) -> None:
        async with ThreadSensitiveContext(executor=next(self._turn)):
            await self.application(scope, receive, send)

    def run_in_each(self, fn, timeout: float = 10) -> None:
        """Run `fn` once in every request thread (the tests close their connections)."""
        for future in [executor.submit(fn) for executor in self.executors]:
            future.result(timeout=timeout)
