"""The stale-reply sweeper: a timer that marks replies whose run was lost as failed.

A run heartbeats by writing its reply at least every `chats.streaming.run.HEARTBEAT_INTERVAL`; a reply
left `streaming` and silent for `chats.services.STALE_AFTER_SECONDS` has lost its run (a
restart, a crash). Reads expire such a reply too, but only the reply being read: this loop
makes the chat list, the API and the metrics right even when nobody opens that chat.

It runs in every daphne process (started from project/asgi.py), since replies are generated
there. Each tick is one indexed UPDATE, off the event loop; several processes sweeping the same
database is harmless (the UPDATE is idempotent). A failing tick (database away) is logged once
with its traceback, counted, and retried at the next tick; the loop itself never ends on its own.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from chats.services import messages_expire_stale
from project.contained import ContainedFailures
from project.metrics import STALE_REPLY_SWEEP_FAILURES

logger = logging.getLogger(__name__)

# The running sweeper of this process: the loop holds tasks only weakly.
_task: asyncio.Task | None = None


async def stale_replies_sweep_forever(*, interval_seconds: float) -> None:
    """Expire stale replies every `interval_seconds` until cancelled."""
    failures = ContainedFailures(
        what="Sweeping stale replies",
        count=STALE_REPLY_SWEEP_FAILURES.inc,
        logger=logger,
        failed_message="Could not mark stale replies as failed; retrying every %(interval)s s",
        failed_level=logging.ERROR,
        recovered_message="Stale replies are swept again",
    )
    while True:
        try:
            expired = await database_sync_to_async(messages_expire_stale)()
        except Exception as error:
            failures.failed(error, interval=interval_seconds)
        else:
            failures.succeeded()
            if expired:
                logger.info("Marked %d reply(ies) failed: their run stopped heartbeating", expired)
        await asyncio.sleep(interval_seconds)


def start_in_process_sweeper() -> None:
    """Run the sweeper on daphne's event loop once Twisted's reactor runs.

    daphne speaks no ASGI lifespan, so project/asgi.py calls this when daphne's reactor is
    installed; outside a running reactor (tests, management commands) nothing starts.
    """
    from twisted.internet import reactor

    def start() -> None:
        global _task
        _task = asyncio.get_running_loop().create_task(
            stale_replies_sweep_forever(interval_seconds=settings.CHAT_STALE_SWEEP_SECONDS),
            name="stale-reply-sweeper",
        )
        reactor.addSystemEventTrigger("before", "shutdown", _task.cancel)

    # As for the camera supervisor: callLater(0) lands inside the running asyncio loop.
    reactor.callWhenRunning(reactor.callLater, 0, start)
