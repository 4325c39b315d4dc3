"""The stale-reply sweeper, run for real on a short interval: no read of the chat takes part."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection
from django.utils import timezone

from chats.models import Message
from chats.services import STALE_AFTER_SECONDS, STALE_ERROR, chat_create, message_send
from chats.sweeper import stale_replies_sweep_forever
from project.metrics import REPLIES_EXPIRED, STALE_REPLY_SWEEP_FAILURES

pytestmark = pytest.mark.django_db(transaction=True)

TICK = 0.05


def streaming_reply(alice, organization, *, silent_for: float) -> Message:
    """A `streaming` reply whose run last wrote (heartbeat) `silent_for` seconds ago."""
    chat = chat_create(user=alice, organization=organization)
    _, reply = message_send(chat=chat, prompt="Who is on the team?")
    # update(), not save(): auto_now would stamp the heartbeat with the present.
    Message.objects.filter(pk=reply.pk).update(
        content="Alice and", updated_at=timezone.now() - timedelta(seconds=silent_for)
    )
    return reply


@database_sync_to_async
def stored_status(message_id: int) -> tuple[str, str]:
    # A plain read of the row: nothing here expires anything.
    return tuple(Message.objects.filter(pk=message_id).values_list("status", "error").get())


async def status_within(message_id: int, status: str, seconds: float = 5.0) -> tuple[str, str]:
    deadline = asyncio.get_running_loop().time() + seconds
    stored = await stored_status(message_id)
    while stored[0] != status and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(TICK)
        stored = await stored_status(message_id)
    return stored


async def stop(sweeper: asyncio.Task) -> None:
    sweeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sweeper


async def test_a_silent_reply_is_marked_failed_without_anyone_reading_it(
    alice, organization, alice_api
):
    lost = await sync_to_async(streaming_reply)(
        alice, organization, silent_for=STALE_AFTER_SECONDS + 30
    )
    # Quiet for a while, but well within the heartbeat allowance: its run is alive.
    live = await sync_to_async(streaming_reply)(
        alice, organization, silent_for=STALE_AFTER_SECONDS - 10
    )
    expired_before = REPLIES_EXPIRED._value.get()

    sweeper = asyncio.create_task(stale_replies_sweep_forever(interval_seconds=TICK))
    try:
        assert await status_within(lost.pk, "failed") == ("failed", STALE_ERROR)
        await asyncio.sleep(5 * TICK)  # several more sweeps
        assert await stored_status(live.pk) == ("streaming", "")
    finally:
        await stop(sweeper)
    assert REPLIES_EXPIRED._value.get() - expired_before == 1

    response = await sync_to_async(alice_api.get)(f"/api/v1/chats/{lost.chat_id}/messages")
    reply = response.json()["results"][-1]
    assert (reply["id"], reply["status"], reply["content"]) == (lost.pk, "failed", "Alice and")
    assert reply["error"] == STALE_ERROR


async def test_a_failing_sweep_is_logged_once_and_retried_until_it_works(
    alice, organization, caplog
):
    lost = await sync_to_async(streaming_reply)(
        alice, organization, silent_for=STALE_AFTER_SECONDS + 30
    )
    failures_before = STALE_REPLY_SWEEP_FAILURES._value.get()

    @sync_to_async
    def rename_messages_table(old: str, new: str) -> None:
        # A real database failure: the sweeper's UPDATE finds no table while it is renamed.
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")
        connection.close()

    await rename_messages_table("chats_message", "chats_message_away")
    sweeper = asyncio.create_task(stale_replies_sweep_forever(interval_seconds=TICK))
    try:
        with caplog.at_level(logging.INFO, logger="chats.sweeper"):
            for _ in range(100):  # at most about 5 s
                if STALE_REPLY_SWEEP_FAILURES._value.get() - failures_before >= 5:
                    break
                await asyncio.sleep(TICK)
            await rename_messages_table("chats_message_away", "chats_message")
            assert await status_within(lost.pk, "failed") == ("failed", STALE_ERROR)
            assert not sweeper.done()
    finally:
        await stop(sweeper)

    assert STALE_REPLY_SWEEP_FAILURES._value.get() - failures_before >= 5
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "Stale replies are swept again" in caplog.messages
