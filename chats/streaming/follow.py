"""Server-Sent Events for one reply: the stored text, then the live deltas, then `done`.

Framing is the seed's, byte for byte: `data: {"type": "chunk", "text": "..."}` events and a
final `data: {"type": "done", ...}`, each followed by a blank line; `{"type": "error"}` before
`done` when the reply failed; a `: keep-alive` comment while the backend is silent. `done`
carries the reply's final stored status, never `streaming`; when the stream itself fails
(its database reads fail) it is `failed` with `"resumable": true`: the stored reply may still
be completed, and reading it again from the offset held shows how it ended.
Offsets count characters (Unicode code points) of the reply's text.

A stream whose access is revoked (the listener removed from the organization, its token
revoked, its account deactivated, its role lowered; see `organizations.revocation`) ends at once
with `{"type": "error", "code": "access_revoked"}` and a `done` shaped like a failed stream's
(`"resumable": true`: whoever still has access reads the rest by resuming). Only this listener's
stream ends: the reply goes on being generated and stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from chats.markdown_rendering import markdown_to_safe_html
from chats.models import Message
from chats.services import STALE_AFTER_SECONDS, messages_expire_stale
from chats.streaming.protocol import (
    DELTA,
    END,
    FLUSH_INTERVAL,
    FOLLOW,
    KEEP_ALIVE,
    StoredReply,
    control_group,
    message_group,
    sse_chunk,
    sse_event,
)
from chats.streaming.run import run_get
from organizations.revocation import Credential, OpenAccess, access_close, access_open
from project.channel_layer import GroupReceiver, group_send_or_drop
from project.metrics import SSE_STREAMS

logger = logging.getLogger(__name__)

# After this long without an event a listener looks at the stored reply: it may have ended
# without the `chat.end` reaching us (channels-redis drops messages to a full channel).
SILENCE_CHECK = 1.0
# How long a listener waits for the database to catch up with a delta it missed.
GAP_WAIT_SECONDS = 4 * FLUSH_INTERVAL + 1.0
DELETED_ERROR = "This reply no longer exists: its chat was deleted."
STREAM_FAILED_ERROR = (
    "The live stream of this reply failed on the server; reload the chat to see the rest."
)
ACCESS_REVOKED = {
    "message": "Your access to this chat changed, so its live stream was closed; the reply is "
    "still generated and saved.",
    "code": "access_revoked",
}


class ReplyReceiver(Protocol):
    """Where `reply_events` takes a reply's events from: the run itself when it runs in this
    process (`chats.streaming.run.RunFollower`), else the channel layer (`RemoteFollower`)."""

    async def receive(self, within: float | None = None) -> dict | None: ...

    async def on_silence(self, sent: int) -> None:
        """Called after a second without events, holding the text up to `sent`, before the
        stored reply is read."""
        ...

    def interrupt(self) -> None: ...

    async def close(self) -> None: ...


class RemoteFollower:
    """Follows a reply whose run is in another process: joined to the reply's group, it asks
    the run for the text (FOLLOW) and asks again after each silence, so a request lost (sent
    before the run listened, or while the layer was away) costs a second."""

    def __init__(self, message_id: int):
        self.message_id = message_id
        self._receiver = GroupReceiver(
            get_channel_layer(), where="sse", groups=[message_group(message_id)]
        )

    async def join(self, offset: int) -> RemoteFollower:
        # Joining never fails for an unreachable layer: the stream then goes on from the database.
        await self._receiver.join()
        await self._ask(offset)
        return self

    async def _ask(self, offset: int) -> None:
        await group_send_or_drop(
            self._receiver.layer,
            control_group(self.message_id),
            {"type": FOLLOW, "at": offset},
            where="sse",
        )

    async def receive(self, within: float | None = None) -> dict | None:
        return await self._receiver.receive(within=within)

    async def on_silence(self, sent: int) -> None:
        await self._ask(sent)

    def interrupt(self) -> None:
        self._receiver.interrupt()

    async def close(self) -> None:
        await self._receiver.close()


async def reply_follow(message_id: int, *, offset: int = 0) -> ReplyReceiver:
    """A receiver of reply `message_id`'s events from now on, for a listener holding its text
    up to `offset`; give it to `reply_events` before reading the stored reply, so nothing
    published in between is missed."""
    run = run_get(message_id)
    if run is not None:
        return run.follow()
    return await RemoteFollower(message_id).join(offset)


class StreamAccess:
    """A stream's access, registered before the view checks it, as the WebSocket consumer does:
    a revocation committed during or just after the check then finds it (otherwise only the
    periodic re-check would, up to `ACCESS_RECHECK_SECONDS` later). Give it to `reply_events`,
    which releases it when the stream ends; `close` it yourself when the check fails."""

    def __init__(self, credential: Credential):
        self.receiver: ReplyReceiver | None = None
        self.open_access = OpenAccess(credential, end=self._wake)

    @property
    def ended(self) -> bool:
        return self.open_access.ended

    def _wake(self) -> None:
        # Revoked before the stream has a receiver: `reply_events` sees `ended` when it starts.
        if self.receiver is not None:
            self.receiver.interrupt()

    async def open(self) -> StreamAccess:
        await access_open(self.open_access)
        return self

    async def close(self) -> None:
        await access_close(self.open_access)


def _read(message_id: int, *, expire_stale: bool = False) -> StoredReply | None:
    row = (
        Message.objects.filter(pk=message_id)
        .values("content", "status", "error", "updated_at")
        .first()
    )
    if row is None:
        return None
    if (
        expire_stale
        and row["status"] == Message.Status.STREAMING
        and row["updated_at"] < timezone.now() - timedelta(seconds=STALE_AFTER_SECONDS)
        and messages_expire_stale(message_id=message_id)
    ):
        return _read(message_id)
    html = (
        markdown_to_safe_html(row["content"]) if row["status"] != Message.Status.STREAMING else ""
    )
    return StoredReply(row["content"], row["status"], row["error"], html)


def _stream_ended_early(message_id: int, error: dict[str, str]) -> list[bytes]:
    # `done` is final for the seed's clients, so it never says `streaming`: this stream
    # ended, not necessarily the reply. `resumable` tells our page to read it again.
    return [
        sse_event({"type": "error", **error}),
        sse_event(
            {
                "type": "done",
                "message_id": message_id,
                "status": Message.Status.FAILED,
                "html": "",
                "resumable": True,
            }
        ),
    ]


def _ending(message_id: int, stored: StoredReply | None) -> list[bytes]:
    if stored is None:
        return [
            sse_event({"type": "error", "message": DELETED_ERROR}),
            sse_event({"type": "done", "message_id": message_id, "status": "failed"}),
        ]
    events = []
    if stored.status == Message.Status.FAILED:
        events.append(sse_event({"type": "error", "message": stored.error}))
    events.append(
        sse_event(
            {"type": "done", "message_id": message_id, "status": stored.status, "html": stored.html}
        )
    )
    return events


async def reply_events(
    *,
    receiver: ReplyReceiver,
    message_id: int,
    offset: int = 0,
    stored: StoredReply | None = None,
    access: StreamAccess | None = None,
    organization_id: int | None = None,
) -> AsyncIterator[bytes]:
    """The SSE bytes of reply `message_id` from character `offset` on; closes `receiver`.

    With an `access` (registered before the caller checked it) and the chat's
    `organization_id`, the stream ends early when that access is revoked; it is released when
    the stream ends.

    Call with `receiver` from `reply_follow`, made before reading the message (or before the
    run starts), so no text added after the read can be missed. `stored` skips the first read
    when the caller knows the state (a reply it just created).

    The channel layer only makes the text arrive sooner: while it is away (Redis restarting)
    the listener goes on from the database, which it reads after every second of silence.
    Should anything else fail, the response still ends, with `error` and `done`.
    """
    loop = asyncio.get_running_loop()
    read = database_sync_to_async(_read)
    sent = offset
    if access is not None:
        access.open_access.organization_id = organization_id
        access.receiver = receiver
    SSE_STREAMS.inc()
    try:
        if access is not None and access.ended:
            for item in _stream_ended_early(message_id, ACCESS_REVOKED):
                yield item
            return
        if stored is None:
            stored = await read(message_id, expire_stale=True)
        if stored is None or stored.finished:
            if stored is not None and len(stored.content) > sent:
                yield sse_chunk(stored.content[sent:])
            for event in _ending(message_id, stored):
                yield event
            return
        if len(stored.content) > sent:
            yield sse_chunk(stored.content[sent:])
            sent = len(stored.content)
        keep_alive = settings.SSE_KEEPALIVE_SECONDS
        last_write = loop.time()
        while True:
            event = await receiver.receive(within=min(SILENCE_CHECK, keep_alive))
            if access is not None and access.ended:
                for item in _stream_ended_early(message_id, ACCESS_REVOKED):
                    yield item
                return
            if event is None:
                # Silence: did the reply end (its `chat.end` can be dropped by a full
                # channel, or lost while the layer was away), did we miss text, is its run
                # still alive (heartbeat)?
                await receiver.on_silence(sent)
                stored = await read(message_id, expire_stale=True)
                if stored is not None and len(stored.content) > sent:
                    yield sse_chunk(stored.content[sent:])
                    sent, last_write = len(stored.content), loop.time()
                if stored is None or stored.finished:
                    for item in _ending(message_id, stored):
                        yield item
                    return
                if loop.time() - last_write >= keep_alive:
                    yield KEEP_ALIVE
                    last_write = loop.time()
                continue
            if event["type"] == DELTA:
                at, text = event["at"], event["text"]
                if at > sent:
                    # A delta went missing (dropped by a full channel, or we joined between a
                    # delta and the flush that stores it): the database has it soon.
                    stored = await _read_until(message_id, at)
                    if stored is not None and len(stored.content) > sent:
                        yield sse_chunk(stored.content[sent:])
                        sent = len(stored.content)
                if at <= sent < at + len(text):
                    yield sse_chunk(text[sent - at :])
                    sent, last_write = at + len(text), loop.time()
            elif event["type"] == END:
                # A run in this process hands over the reply as it stored it.
                stored = event.get("stored") or await read(message_id)
                if stored is not None and len(stored.content) > sent:
                    yield sse_chunk(stored.content[sent:])
                    sent, last_write = len(stored.content), loop.time()
                if stored is None or stored.finished:
                    for item in _ending(message_id, stored):
                        yield item
                    return
                # Still `streaming`: the run ended without storing its end (its final write
                # failed). No run writes it any more: the silence checks see it expire as stale.
    except Exception:
        # Never a response left open without an end: the client stops waiting. `done` is
        # final for the seed's clients, so it never says `streaming`: this stream failed.
        # The stored reply may still go on; `resumable` tells our page to read it again.
        logger.exception("The stream of reply %s failed", message_id)
        for item in _stream_ended_early(message_id, {"message": STREAM_FAILED_ERROR}):
            yield item
    finally:
        SSE_STREAMS.dec()
        if access is not None:
            await access.close()
        await receiver.close()


async def _read_until(message_id: int, length: int) -> StoredReply | None:
    deadline = asyncio.get_running_loop().time() + GAP_WAIT_SECONDS
    while True:
        stored = await database_sync_to_async(_read)(message_id)
        if stored is None or stored.finished or len(stored.content) >= length:
            return stored
        if asyncio.get_running_loop().time() >= deadline:
            return stored
        await asyncio.sleep(FLUSH_INTERVAL)
