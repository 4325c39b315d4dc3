"""Database work from async code, on a fixed set of threads that keep their connections.

`sync_to_async` (and Django's async ORM) runs thread-sensitive code in the request's own
thread, which Django starts for each request and ends with it, so each request opened a new
database connection (on SQLite, with its PRAGMAs) and paid for a thread. The hot paths (a chat
prompt, a reply's reads and writes) call `in_database_thread(fn)` instead: `fn` runs on one of
DATABASE_THREADS long-lived threads whose connections persist as DATABASE_CONN_MAX_AGE says
(SQLite) or come from the connection pool (PostgreSQL). As with Channels'
`database_sync_to_async`, stale or broken connections are closed before and after each call,
so a restarted database is reconnected to rather than failing forever.

Each call must be a unit on its own (its own transaction): two calls may run on two threads.
Async code called from sync code (Django's test client, a management command) has a thread of
its own already, whose connection may hold the caller's transaction: there the work goes back
to that thread, as `sync_to_async` would send it.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import AsyncToSync, sync_to_async
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import connections

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _database_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.DATABASE_THREADS, thread_name_prefix="database"
            )
        return _executor


def in_database_thread(fn):
    """`fn` as a coroutine function that runs on the database threads (or in the sync thread
    that called this async code). Decide per call: wrap `fn` where it is awaited."""
    if _called_from_sync_code():
        # That thread manages its own connection (and may be inside the caller's transaction):
        # leave it open.
        return sync_to_async(fn)
    return DatabaseSyncToAsync(fn, thread_sensitive=False, executor=_database_executor())


def _called_from_sync_code() -> bool:
    # The two ways asgiref itself finds a parent sync thread for thread-sensitive code: an
    # outer async_to_sync in this context, or an event loop that async_to_sync started.
    return (
        getattr(AsyncToSync.executors, "current", None) is not None
        or asyncio.get_running_loop() in AsyncToSync.loop_thread_executors
    )


def database_threads_close_connections(timeout: float = 10) -> None:
    """Close the connection each database thread holds (the tests do, before the test
    database is dropped). Each thread takes exactly one of the closing tasks: a task waits for
    all the others before it returns, so no thread can run two."""
    executor = _executor
    if executor is None:
        return
    count = settings.DATABASE_THREADS
    everyone_closed = threading.Barrier(count)

    def close() -> None:
        connections.close_all()
        everyone_closed.wait(timeout)

    for future in [executor.submit(close) for _ in range(count)]:
        future.result(timeout=2 * timeout)
