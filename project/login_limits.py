"""Limits on guessing passwords, per account and per client address.

Every password check goes through `RateLimitedModelBackend` (the only entry of
AUTHENTICATION_BACKENDS): the log-in page, the admin's log-in and `POST /api/v1/auth/token`.
A failed check counts against the username tried and against the client's address
(`REMOTE_ADDR`, as `project.client_address` computed it). The LOGIN_FAILURES_PER_ACCOUNT-th
failure for one username within LOGIN_FAILURE_WINDOW_SECONDS locks that username, the
LOGIN_FAILURES_PER_ADDRESS-th from one address locks that address, each for
LOGIN_LOCKOUT_SECONDS. While locked, the password is not even checked; the answer says how long
to wait (the log-in page in words, the API as a JSON 429 with Retry-After). Attempts made while
locked do not extend the lock, so the stated wait is true for the right person. A success
clears its account's count, never its address's (or one valid account would let an attacker
reset the address limit between guesses). Unknown usernames count and lock like real ones, so a
lockout reveals nothing about which accounts exist.

Why the project's own counters rather than django-axes (8.3.1 was read for this):
- axes' lockout flag is set on the request object `authenticate()` receives; for
  TokenCreateApi that is DRF's Request wrapper, which AxesMiddleware never sees, so the API
  would need its own lockout path anyway;
- its async middleware path (ours, under daphne) calls the lockout callable with the
  credentials in the place of the original response;
- it cannot tell how long a lock still lasts (the cache handler extends the lock on every
  attempt; the wait it reports is the configured cool-off), so no true Retry-After;
- one failure limit serves both username and address, where an address (a whole office behind
  one NAT) needs a higher limit than one account;
- it brings its own tables, admin and IP detection (django-ipware), where the cache counters
  here are shared by every process through Redis like the chat rate limit, and the address
  comes from the one place that computes it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse

from project.api_errors import json_error
from project.client_address import came_through_untrusted_proxy, parse_address
from project.counters import cache_counter_incr

logger = logging.getLogger(__name__)

ACCOUNT = "account"
ADDRESS = "address"


def _wait_in_words(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class Lockout:
    reason: str  # ACCOUNT or ADDRESS
    retry_after: int  # whole seconds until the lock ends

    @property
    def message(self) -> str:
        who = "for this account" if self.reason == ACCOUNT else "from your network address"
        return (
            f"Too many failed log-in attempts {who}. "
            f"Try again in {_wait_in_words(self.retry_after)}."
        )


def _normalized_username(username: str) -> str:
    # "Alice" and "ａｌｉｃｅ" count as "alice": one account, one counter.
    return unicodedata.normalize("NFKC", username).casefold()


def _address_key(address: str) -> str:
    """What one client's failures are counted under: its IPv4 address, or its IPv6 /64 (one
    subscriber's whole network: rotating through it must not reset the count). One spelling per
    address ("2001:DB8::1" as "2001:db8::1"), also for an operator's login_lockout_clear."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed or address)


def _subjects(*, username: str | None, address: str | None) -> list[tuple[str, str, int]]:
    """(reason, cache key stem, failure limit) for each thing a failure counts against."""
    subjects = []
    if username is not None:
        subjects.append(
            (ACCOUNT, _normalized_username(username), settings.LOGIN_FAILURES_PER_ACCOUNT)
        )
    if address:
        subjects.append((ADDRESS, _address_key(address), settings.LOGIN_FAILURES_PER_ADDRESS))
    return [
        (reason, "login:" + hashlib.sha256(f"{reason}:{value}".encode()).hexdigest()[:40], limit)
        for reason, value, limit in subjects
    ]


def login_lockout(*, username: str | None, address: str | None) -> Lockout | None:
    """The lock that refuses a log-in as `username` from `address` now (the longer of the two
    when both are locked), or None."""
    subjects = _subjects(username=username, address=address)
    unlock_times = cache.get_many([f"{stem}:locked-until" for _, stem, _ in subjects])
    now = time.time()
    lockouts = [
        Lockout(reason=reason, retry_after=math.ceil(until - now))
        for reason, stem, _ in subjects
        if (until := unlock_times.get(f"{stem}:locked-until")) is not None and until > now
    ]
    return max(lockouts, key=lambda lockout: lockout.retry_after, default=None)


def login_failure_record(
    *, username: str | None, address: str | None, request: HttpRequest | None = None
) -> Lockout | None:
    """Count one failed attempt; the lockout it starts, if it reached a limit."""
    started = None
    for reason, stem, limit in _subjects(username=username, address=address):
        failures = cache_counter_incr(
            f"{stem}:failures", timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS
        )
        if failures < limit:
            continue
        seconds = settings.LOGIN_LOCKOUT_SECONDS
        cache.set(f"{stem}:locked-until", time.time() + seconds, seconds)
        cache.delete(f"{stem}:failures")  # after the lock, counting starts afresh
        logger.warning(
            "Log-in locked for %d s after %d failures: %s %r (client address %s)%s",
            seconds,
            failures,
            reason,
            username if reason == ACCOUNT else address,
            address,
            # Behind a proxy that is not trusted every client shares the proxy's address.
            "; requests came through a proxy: set DJANGO_TRUSTED_PROXIES to its address"
            if request is not None and came_through_untrusted_proxy(request)
            else "",
        )
        started = started or Lockout(reason=reason, retry_after=seconds)
    return started


def login_success_record(*, username: str) -> None:
    """The right password: forget this account's failures (its address's stay counted)."""
    for _, stem, _ in _subjects(username=username, address=None):
        cache.delete(f"{stem}:failures")


def login_lockout_clear(*, username: str | None = None, address: str | None = None) -> None:
    """Lift the lock and forget the failures of `username` and/or `address` (for an operator:
    `manage.py shell -c "from project.login_limits import login_lockout_clear;
    login_lockout_clear(username='alice')"`)."""
    for _, stem, _ in _subjects(username=username, address=address):
        cache.delete_many([f"{stem}:failures", f"{stem}:locked-until"])


def login_lockout_of(request) -> Lockout | None:
    """The lockout that refused the last `authenticate(request, …)`, if one did."""
    return getattr(request, "login_lockout", None)


def lockout_api_response(lockout: Lockout) -> JsonResponse:
    response = json_error(429, lockout.message, "locked_out", retry_after=lockout.retry_after)
    response["Retry-After"] = str(lockout.retry_after)
    return response


class RateLimitedModelBackend(ModelBackend):
    """Django's ModelBackend behind the limits above. When a lock refuses the attempt, the
    Lockout is left on the request (`login_lockout_of`) for the view to explain, and
    PermissionDenied stops `authenticate()` (which then answers None)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        address = request.META.get("REMOTE_ADDR") if request is not None else None
        lockout = login_lockout(username=username, address=address)
        if lockout is None:
            user = super().authenticate(request, username, password, **kwargs)
            if user is not None:
                login_success_record(username=username)
                return user
            lockout = login_failure_record(username=username, address=address, request=request)
            if lockout is None:
                return None
        if request is not None:
            request.login_lockout = lockout
        raise PermissionDenied(lockout.message)
