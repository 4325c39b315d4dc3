"""A closed GroupReceiver leaves nothing behind in channels-redis' per-process receive buffer.

channels-redis reads one Redis list per process and files every message it pops under its
channel, whoever's receive popped it. Messages for a receiver that has closed (the rest of a
reply's deltas after its stream ended on a database read) used to stay filed for the life of
the process: a soak of ten minutes grew daphne by 20 MiB on Redis and not at all in memory.
"""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

from project.channel_layer import GroupReceiver

pytestmark = pytest.mark.redis

EXPIRY = 1  # seconds a message lives in Redis, so the test's wait stays short


@pytest.fixture
async def layer(redis_url):
    layer = RedisChannelLayer(hosts=[{"address": redis_url}], expiry=EXPIRY)
    yield layer
    await layer.flush()
    await layer.close_pools()


async def receivers(layer, *groups: str) -> list[GroupReceiver]:
    joined = [GroupReceiver(layer, where="test", groups=[group]) for group in groups]
    for receiver in joined:
        await receiver.join()
    return joined


async def test_what_another_receive_filed_for_a_receiver_goes_when_it_closes(layer):
    closing, staying = await receivers(layer, "buffers_closing", "buffers_staying")
    for number in range(3):
        await layer.group_send("buffers_closing", {"type": "delta", "n": number})
    await layer.group_send("buffers_staying", {"type": "other"})
    # The one reader of the process's Redis list pops the other receiver's three first.
    assert await staying.receive(within=5) == {"type": "other"}
    assert layer.receive_buffer[closing.channel].qsize() == 3
    await closing.close()  # it never reads them: a stream that ended on a database read
    assert closing.channel not in layer.receive_buffer
    await staying.close()


async def test_what_arrives_for_a_closed_receiver_goes_once_it_has_expired(layer):
    closing, staying = await receivers(layer, "buffers_closing", "buffers_staying")
    for number in range(3):
        await layer.group_send("buffers_closing", {"type": "delta", "n": number})
    assert (await closing.receive(within=5))["n"] == 0
    await closing.close()  # two of its messages are still in this process's Redis list
    await layer.group_send("buffers_staying", {"type": "other"})
    assert await staying.receive(within=5) == {"type": "other"}
    assert layer.receive_buffer[closing.channel].qsize() == 2  # filed after the close
    await asyncio.sleep(EXPIRY + 1.5)
    assert closing.channel not in layer.receive_buffer
    await staying.close()


async def test_a_dedicated_channel_takes_its_flow_while_the_process_channels_overflow(redis_url):
    layer = RedisChannelLayer(hosts=[{"address": redis_url}], capacity=5, expiry=EXPIRY)
    try:
        (shared,) = await receivers(layer, "buffers_busy")
        hub = GroupReceiver(layer, where="hub", groups=["buffers_frames"], dedicated=True)
        await hub.join()
        assert "!" not in hub.channel  # a Redis key of its own, not the process's
        for number in range(12):  # a burst of deltas: the process's key fills and drops
            await layer.group_send("buffers_busy", {"type": "delta", "n": number})
        for number in range(5):
            await layer.group_send("buffers_frames", {"type": "frame", "n": number})
        assert [(await hub.receive(within=5))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
        deltas = []
        while (message := await shared.receive(within=0.5)) is not None:
            deltas.append(message["n"])
        assert deltas == [0, 1, 2, 3, 4]  # the shared key kept its capacity's worth
        await hub.close()
        await shared.close()
    finally:
        await layer.flush()
        await layer.close_pools()
