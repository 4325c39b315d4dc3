"""Fixtures for surviving silence and Redis outages: a real SSE client, frame publishing through a
real layer and a real viewer's side of it. (The redis-server a test kills and restarts, never the
machine's, is `own_redis` in tests/conftest.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis.exceptions
from channels_redis.core import RedisChannelLayer

from cameras.publishing import PublishedFrame, frame_broadcast
from tests.cameras.conftest import jpeg_bytes, now_ms
from tests.chats.fake_openai import FakeOpenAI
from tests.own_redis import layer_hosts


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def sse_events(response: httpx.Response) -> Iterator[dict]:
    """The `data:` events of a streaming SSE response, as they arrive."""
    for block in _blocks(response):
        if block.startswith("data: "):
            yield json.loads(block[len("data: ") :])


def _blocks(response: httpx.Response) -> Iterator[str]:
    buffer = ""
    for text in response.iter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield block


def publish_frames(redis_url: str, camera_id: str, *, count: int, interval: float = 0.1) -> int:
    """Publish `count` real JPEG frames to the camera's group through a Redis layer of this
    process (as `runcameras` would); returns the first frame's timestamp. Raises if Redis is
    away."""

    async def publish() -> int:
        layer = RedisChannelLayer(hosts=layer_hosts(redis_url))
        first = now_ms()
        for index in range(count):
            frame = PublishedFrame.build(
                camera_id=camera_id,
                jpeg=jpeg_bytes(seed=index),
                timestamp=first + index,
                detections=None,
            )
            await frame_broadcast(layer, frame)
            await asyncio.sleep(interval)
        await layer.close_pools()
        return first

    return asyncio.run(publish())


def publish_until_seen(viewer, redis_url: str, camera_id: str) -> int:
    """Publish frames until the viewer gets one of them (its hub joins the group just after
    connect, and again after a Redis restart), then drain it; the batch's first timestamp."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            first = publish_frames(redis_url, camera_id, count=5)
        except redis.exceptions.ConnectionError:
            time.sleep(0.2)
            continue
        try:
            frame = json.loads(viewer.recv(timeout=1))
        except TimeoutError:
            continue
        assert frame["camera_id"] == camera_id
        if frame["timestamp"] >= first:
            drain(viewer)
            return first
    raise AssertionError("the viewer got no frame in 20 s")


def drain(viewer, quiet: float = 0.5) -> None:
    """Read and drop what the viewer was sent until it has been quiet for `quiet` seconds."""
    while True:
        try:
            viewer.recv(timeout=quiet)
        except TimeoutError:
            return
