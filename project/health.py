"""Readiness: can this deployment do its job right now? What `GET /readyz` answers.

Five checks, run side by side, each within READYZ_CHECK_TIMEOUT_SECONDS:
- database: `SELECT 1`;
- channel_layer: a message sent to a new channel and received back;
- cache: a value written and read back;
- capture: the capture supervisor's heartbeat, when some enabled camera reads a source (a
  deployment of push: cameras only captures nothing);
- recorder: the events recorder's heartbeat, when recording is on and a camera is online.

Sync work (the ORM, Django's cache) runs on a small pool of its own, never on the event loop:
a check stuck on a dead server times out here, and cannot starve the threads the rest of the
process uses. A failing check says in words what is wrong.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection, connections

from cameras.selectors import (
    RECORDER_HEARTBEAT,
    SUPERVISOR_HEARTBEAT,
    cameras_capture_expected,
    cameras_online_exist,
    supervisor_heartbeat_ttl,
)
from project.heartbeats import heartbeat_age, heartbeats_read

logger = logging.getLogger(__name__)

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
# Checks whose thread is still working: a hung service holds a thread until its socket times
# out, and probes arriving meanwhile must not queue behind it (the pool would fill and every
# check, the database's too, would time out).
_running: set[str] = set()
_running_lock = threading.Lock()
# The failing checks of the last answer: a change is logged, a probe repeating it is not.
_last_failing: list[str] = []


class CheckFailed(Exception):
    """A check's answer: the part does not work, and the message says how."""


async def _off_loop(function: Callable[[], Any]) -> Any:
    name = function.__qualname__
    with _running_lock:
        if name in _running:
            raise CheckFailed("the previous check has not answered yet")
        _running.add(name)

    def run() -> Any:
        close_old_connections()
        try:
            return function()
        finally:
            # This pool's threads never serve requests: nothing else would close them.
            connections.close_all()
            with _running_lock:
                _running.discard(name)

    return await asyncio.get_running_loop().run_in_executor(_pool, run)


async def _database() -> dict[str, Any]:
    def select_one() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    await _off_loop(select_one)
    return {}


async def _channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        raise CheckFailed("no channel layer is configured")
    # A plain channel (no "!"), not one of `new_channel()`'s: with channels-redis those share
    # one Redis key and its capacity, so a busy process's queued reply pieces and frames
    # would make the probe ChannelFull, and they share one reader, which a receive of the
    # process waiting on a quiet group holds: the ping would go unread. A plain channel is
    # read directly, from a key of its own.
    channel = f"readyz.{secrets.token_hex(8)}"
    token = secrets.token_hex(8)
    await layer.send(channel, {"type": "readyz.ping", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        raise CheckFailed("the channel layer returned another message than the one sent")
    return {}


async def _cache() -> dict[str, Any]:
    def round_trip() -> None:
        key, token = f"readyz:{secrets.token_hex(8)}", secrets.token_hex(8)
        cache.set(key, token, 10)
        found = cache.get(key)
        cache.delete(key)
        if found != token:
            raise CheckFailed("the cache did not return the value just written")

    await _off_loop(round_trip)
    return {}


async def _capture() -> dict[str, Any]:
    def check() -> dict[str, Any]:
        if not cameras_capture_expected():
            return {"skipped": "no enabled camera reads a source"}
        beat = heartbeats_read([SUPERVISOR_HEARTBEAT]).get(SUPERVISOR_HEARTBEAT)
        if beat is None:
            where = (
                "this server's capture workers are not running"
                if settings.CAMERAS_IN_PROCESS
                else "is `manage.py runcameras` running?"
            )
            raise CheckFailed(
                f"no capture supervisor has reported for {supervisor_heartbeat_ttl():g} s ({where})"
            )
        return {
            "age_seconds": round(heartbeat_age(beat) or 0.0, 1),
            "workers": beat.get("workers"),
            "alive": beat.get("alive"),
        }

    return await _off_loop(check)


async def _recorder() -> dict[str, Any]:
    def check() -> dict[str, Any]:
        if not settings.EVENTS_RECORDING:
            return {"skipped": "EVENTS_RECORDING is off"}
        beat = heartbeats_read([RECORDER_HEARTBEAT]).get(RECORDER_HEARTBEAT)
        if beat is None:
            if cameras_online_exist():
                raise CheckFailed(
                    "the events recorder has not reported a flush recently while cameras are online"
                )
            return {"skipped": "no camera is online"}
        return {
            "last_flush_age_seconds": round(heartbeat_age(beat) or 0.0, 1),
            "flush_seconds": beat.get("flush_seconds"),
        }

    return await _off_loop(check)


CHECKS: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
    "database": _database,
    "channel_layer": _channel_layer,
    "cache": _cache,
    "capture": _capture,
    "recorder": _recorder,
}


async def _run_check(check: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    limit = settings.READYZ_CHECK_TIMEOUT_SECONDS
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            detail = await check()
    except TimeoutError:
        detail = {"ok": False, "error": f"no answer within {limit:g} s"}
    except CheckFailed as failure:
        detail = {"ok": False, "error": str(failure)}
    except Exception as error:
        detail = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    else:
        detail = {"ok": True, **detail}
    return {**detail, "seconds": round(time.monotonic() - started, 3)}


async def readiness() -> dict[str, Any]:
    """Every check's result, and whether all passed (`status` "ok" or "failing")."""
    results = await asyncio.gather(*(_run_check(check) for check in CHECKS.values()))
    checks = dict(zip(CHECKS, results, strict=True))
    failing = [name for name, result in checks.items() if not result["ok"]]
    error = "; ".join(f"{name}: {checks[name]['error']}" for name in failing)
    _log_change(failing, error)
    if not failing:
        return {"status": "ok", "checks": checks}
    return {"status": "failing", "error": error, "failing": failing, "checks": checks}


def _log_change(failing: list[str], error: str) -> None:
    global _last_failing
    if failing == _last_failing:
        return
    if failing:
        logger.warning("Not ready: %s", error)
    else:
        logger.info("Ready again")
    _last_failing = failing
