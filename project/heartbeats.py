"""Heartbeats: what background loops leave in the cache for /readyz and the cameras pages.

The cache is Redis in production, so a web process can read what a camera-worker process wrote;
on the embedded defaults it is the process's own memory, where everything runs anyway.

A heartbeat is a small dict stamped with the wall-clock time it was written (`at`, epoch
seconds), kept for `ttl` seconds: a loop that stops beating disappears, which is the point.
Writing one never raises: a loop must not die because the cache is away (the failure is logged
once, with its traceback, until a write succeeds again).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import cache

from project.contained import ContainedFailures

logger = logging.getLogger(__name__)

KEY_PREFIX = "heartbeat:"

# Shared by every thread that beats (capture workers, the recorder's flusher, the supervisor).
_write_failures = ContainedFailures(
    what="Writing heartbeats",
    logger=logger,
    failed_message="Could not write heartbeats to the cache",
    recovered_message="Heartbeats are written to the cache again",
)


def _key(name: str) -> str:
    return f"{KEY_PREFIX}{name}"


def heartbeat_beat(name: str, *, ttl: float, **data: Any) -> bool:
    """Record that `name` is alive now, with `data`; False if the cache could not be written."""
    try:
        cache.set(_key(name), {"at": time.time(), **data}, timeout=ttl)
    except Exception as error:
        _write_failures.failed(error)
        return False
    _write_failures.succeeded()
    return True


def heartbeats_read(names: list[str]) -> dict[str, dict[str, Any]]:
    """The live heartbeats among `names` (missing ones are absent). Raises if the cache does."""
    found = cache.get_many([_key(name) for name in names])
    return {name: found[_key(name)] for name in names if _key(name) in found}


def heartbeat_age(beat: dict[str, Any] | None) -> float | None:
    """Seconds since `beat` was written, or None for no heartbeat."""
    if beat is None:
        return None
    return max(0.0, time.time() - beat["at"])
