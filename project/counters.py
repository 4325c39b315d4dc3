"""Counters in the Django cache, shared by every process when the cache is Redis."""

from __future__ import annotations

from django.core.cache import cache


def cache_counter_incr(key: str, *, timeout: int) -> int:
    """Add one to the counter `key` (created at 0, expiring after `timeout` s); the new value."""
    cache.add(key, 0, timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout)
        return 1
