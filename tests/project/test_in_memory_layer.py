"""project.channel_layer.InMemoryLayerWithPeriodicExpiry: channels' expiry, scanned at most
every `expiry_scan_seconds` instead of on every receive and group send."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

from project.channel_layer import InMemoryLayerWithPeriodicExpiry


def count_scans(layer, monkeypatch) -> list[int]:
    scans = [0]
    original = InMemoryChannelLayer._clean_expired

    def counting(self):
        scans[0] += 1
        original(self)

    monkeypatch.setattr(InMemoryChannelLayer, "_clean_expired", counting)
    return scans


async def test_many_group_sends_scan_once_within_the_interval(monkeypatch):
    layer = InMemoryLayerWithPeriodicExpiry(expiry_scan_seconds=60)
    scans = count_scans(layer, monkeypatch)
    channels = [await layer.new_channel() for _ in range(50)]
    for channel in channels:
        await layer.group_add("replies", channel)
    for n in range(100):
        await layer.group_send("replies", {"type": "delta", "n": n})
    assert scans[0] == 1
    # Every message still arrived, in order.
    assert [(await layer.receive(channels[0]))["n"] for _ in range(100)] == list(range(100))


async def test_an_expired_message_is_dropped_and_its_channel_leaves_its_groups():
    layer = InMemoryLayerWithPeriodicExpiry(expiry=1, expiry_scan_seconds=0.05)
    stale, live = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("replies", stale)
    await layer.group_add("replies", live)
    await layer.send(stale, {"type": "old"})
    await asyncio.sleep(1.1)
    await layer.group_send("replies", {"type": "new"})
    assert stale not in layer.groups["replies"]
    assert (await layer.receive(live))["type"] == "new"
    # The expired message is gone: nothing waits on the stale channel.
    assert stale not in layer.channels


async def test_group_memberships_expire():
    layer = InMemoryLayerWithPeriodicExpiry(group_expiry=1, expiry_scan_seconds=0.05)
    channel = await layer.new_channel()
    await layer.group_add("replies", channel)
    await asyncio.sleep(2.1)  # group_expiry compares whole seconds
    await layer.group_send("replies", {"type": "late"})
    assert channel not in layer.groups.get("replies", {})
    assert channel not in layer.channels


async def test_channel_full_and_capacity_behave_as_in_channels():
    layer = InMemoryLayerWithPeriodicExpiry(capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    await layer.send(channel, {"type": "b"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "c"})


def test_settings_use_it_without_redis():
    from project import settings as project_settings

    if project_settings.REDIS_URL:
        pytest.skip("REDIS_URL is set: the Redis layer is in use")
    backend = project_settings.CHANNEL_LAYERS["default"]["BACKEND"]
    assert backend == "project.channel_layer.InMemoryLayerWithPeriodicExpiry"
