"""Requests that need Redis while it is away get 503 with `Retry-After`, never a 500 page.

Redis is the cache (rate limits, latest frames, ingest records) and the channel layer in
production. When it restarts or is unreachable, whatever a view asked of it raises one of
`REDIS_UNAVAILABLE_ERRORS`. `ServiceUnavailableMiddleware` answers those with 503: the JSON
error shape (`"code": "unavailable"`) on the API and on the streaming and ingest endpoints,
a short plain-text page elsewhere. DRF views get the same JSON from `project.api_errors`.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import redis.exceptions
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)

# What redis-py raises when the server is away or too slow (BusyLoadingError, raised while a
# restarted Redis loads its data, is a ConnectionError).
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_MESSAGE = (
    "A service this request needs (Redis) is unavailable right now. "
    f"Try again in {RETRY_AFTER_SECONDS} s."
)
# Outside /api/, the chat endpoints that stream or answer JSON (their seed paths).
JSON_URL_NAMES = frozenset({"chat-messages", "chat-message-stream", "chat-message-stop"})
# While Redis stays away, one warning with a traceback, then one line a minute at most.
LOG_EVERY_SECONDS = 60.0


def unavailable_body() -> dict[str, str]:
    return {"error": UNAVAILABLE_MESSAGE, "code": "unavailable"}


# The seed's chat paths under /chats/<id>/messages, also when they do not resolve (a bad id).
SEED_JSON_PATH = re.compile(r"^/chats/[^/]+/messages(/|$)")


def wants_json(request: HttpRequest) -> bool:
    """True for the API and the seed's JSON and streaming chat paths: their errors are JSON."""
    if request.path.startswith("/api/") or SEED_JSON_PATH.match(request.path):
        return True
    match = getattr(request, "resolver_match", None)
    return match is not None and match.url_name in JSON_URL_NAMES


class _OutageLog:
    """A new outage (no 503 for a minute) is logged with its traceback; while it lasts, one
    line a minute counts the requests answered 503."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_seen = float("-inf")
        self._last_logged = float("-inf")
        self._answered = 0

    def note(self, request: HttpRequest, error: Exception) -> None:
        with self._lock:
            now = time.monotonic()
            new_outage = now - self._last_seen >= LOG_EVERY_SECONDS
            self._last_seen = now
            self._answered += 1
            if not new_outage and now - self._last_logged < LOG_EVERY_SECONDS:
                return
            answered, self._answered, self._last_logged = self._answered, 0, now
        if new_outage:
            logger.warning(
                "Redis is unavailable: %s %s answered 503",
                request.method,
                request.path,
                exc_info=error,
            )
        else:
            logger.warning(
                "Redis is still unavailable: %d requests answered 503 in the last minute (%s)",
                answered,
                error,
            )


_outage_log = _OutageLog()


def unavailable_noted(request: HttpRequest, error: Exception) -> None:
    """Log a request answered 503 because Redis is away (rate-limited, see `_OutageLog`)."""
    _outage_log.note(request, error)


def unavailable_response(request: HttpRequest, error: Exception) -> HttpResponse:
    """503 with `Retry-After` for a request that failed because Redis is away (logged here)."""
    unavailable_noted(request, error)
    if wants_json(request):
        response: HttpResponse = JsonResponse(unavailable_body(), status=503)
    else:
        response = HttpResponse(
            UNAVAILABLE_MESSAGE, status=503, content_type="text/plain; charset=utf-8"
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    # Django logs every 5xx response at ERROR (django.request): the outage log above already
    # said it, once, and a line per request during an outage is the noise it exists to avoid.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


class ServiceUnavailableMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, REDIS_UNAVAILABLE_ERRORS):
            return None
        return unavailable_response(request, exception)
