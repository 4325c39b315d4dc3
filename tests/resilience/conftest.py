"""Fixtures for surviving silence and Redis outages: a Redis server of the test's own (to kill and
restart: never the machine's), a real SSE client and frame publishing through a real layer."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from channels_redis.core import RedisChannelLayer

from cameras.publishing import PublishedFrame, frame_broadcast
from tests.cameras.conftest import jpeg_bytes, now_ms
from tests.chats.fake_openai import FakeOpenAI
from tests.conftest import free_port, unavailable


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 (no persistence: a restart forgets everything,
    as a real restart of a cache-only Redis does)."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install -y redis-server)")
    server = RedisServer(free_port())
    server.start()
    yield server
    server.kill()


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
        layer = RedisChannelLayer(hosts=[{"address": redis_url, "socket_connect_timeout": 1}])
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
