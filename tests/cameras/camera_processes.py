"""`manage.py runcameras` as production runs it: a process of its own, on this test's database
and a given Redis, for the tests that kill, stop and start camera processes; and a camera kept
watched meanwhile, as a web process keeps the cameras its viewers watch."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import IO

from cameras.publishing import WATCHED_SECONDS, acamera_mark_watched
from tests.conftest import ROOT, _database_url_of_test_database


def runcameras_start(
    redis_url: str,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    output: int | IO = subprocess.PIPE,
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runcameras", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": _database_url_of_test_database(),
            "DJANGO_SECRET_KEY": "test-only-secret-key",
            "REDIS_URL": redis_url,
            "CAMERA_RELOAD_SECONDS": "0.5",
            "EVENTS_RECORDING": "0",
            **(env or {}),
        },
        stdout=output,
        stderr=subprocess.STDOUT,
    )


@contextlib.asynccontextmanager
async def camera_watched(public_id: str) -> AsyncIterator[None]:
    """Keep the camera marked watched, as a web process's hub does while it has viewers: camera
    processes broadcast only watched cameras' frames, and a mark lasts WATCHED_SECONDS."""

    async def mark():
        while True:
            await acamera_mark_watched(public_id)
            await asyncio.sleep(WATCHED_SECONDS / 4)

    marking = asyncio.create_task(mark())
    try:
        yield
    finally:
        marking.cancel()
        await asyncio.gather(marking, return_exceptions=True)
