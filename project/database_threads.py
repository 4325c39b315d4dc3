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
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

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
    """`fn` as a coroutine function that runs on the database threads."""
    return DatabaseSyncToAsync(fn, thread_sensitive=False, executor=_database_executor())


def database_threads_close_connections(timeout: float = 10) -> None:
    """Close the connection each database thread holds (the tests do, before the test
    database is dropped). Each thread takes exactly one of the closing tasks: a task waits for
    all the others before it returns, so no thread can run two."""
    executor = _database_executor()
    count = settings.DATABASE_THREADS
    everyone_closed = threading.Barrier(count)

    def close() -> None:
        connections.close_all()
        everyone_closed.wait(timeout)

    for future in [executor.submit(close) for _ in range(count)]:
        future.result(timeout=2 * timeout)
