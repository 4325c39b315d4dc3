"""Counters in the Django cache, shared by every process when the cache is Redis."""

from __future__ import annotations

from django.core.cache import cache


def cache_counter_incr(key: str, *, timeout: int) -> int:
    """Add one to the counter `key` (created at 0, expiring after `timeout` s); the new value."""
    # incr first: one round trip to Redis for a counter that exists (every prompt but the
    # first of a minute), where add-then-incr always took two.
    try:
        return cache.incr(key)
    except ValueError:  # not there yet, or just expired
        pass
    if cache.add(key, 1, timeout):
        return 1
    try:
        return cache.incr(key)  # another request created it in between
    except ValueError:  # and it expired at once
        cache.set(key, 1, timeout)
        return 1
