"""Contained failures: how a loop that goes on after a failure reports it without flooding logs.

Background loops (capture workers, the capture supervisor, the recorder's flusher, the stale
reply sweeper, heartbeat writes) must survive a failing dependency and say so, once: the first
failure of a streak is logged with its traceback, every failure is counted (a metric), the ones
that follow are not logged, and the end of the streak is logged once when the work succeeds
again. `ContainedFailures` is that rule, in one place.

One instance stands for one kind of failure and may be shared by threads (capture workers, the
flusher thread, the event loop): the streak is kept under a lock, so a streak is logged once
however many threads fail at the same time. Log records go to the caller's logger, so they keep
the name of the module whose work failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

_default_logger = logging.getLogger(__name__)

FAILED_MESSAGE = "%(what)s failed; going on (logged again when it works)"
RECOVERED_MESSAGE = "%(what)s works again after %(failures)d failure(s)"


class ContainedFailures:
    """One kind of failure a loop goes on from: each is counted, the first of a streak is logged
    with its traceback, the end of the streak once; the ones between are not logged at all.

    Use as a context manager around the work (it swallows `Exception`), or call `failed` and
    `succeeded` where the outcome arrives elsewhere (a future's callback).

    The messages are %-style with named fields: `what`, `failures` (in the streak so far),
    `seconds` (since the streak began), `error` (the first failure, in `failed_message`) and any
    keyword given to `failed`.
    """

    def __init__(
        self,
        *,
        what: str,
        count: Callable[[], None] | None = None,
        logger: logging.Logger | None = None,
        failed_message: str = FAILED_MESSAGE,
        failed_level: int = logging.WARNING,
        recovered_message: str = RECOVERED_MESSAGE,
        recovered_level: int = logging.INFO,
    ):
        self.what = what
        self._count = count
        self._logger = logger or _default_logger
        self._failed_message = failed_message
        self._failed_level = failed_level
        self._recovered_message = recovered_message
        self._recovered_level = recovered_level
        self._lock = threading.Lock()
        self._failures = 0  # in the current streak
        self._since = 0.0  # monotonic start of the current streak

    @property
    def failures(self) -> int:
        """Failures in the current streak (0 while the work succeeds)."""
        return self._failures

    @property
    def failing(self) -> bool:
        return self._failures > 0

    def failed(self, error: BaseException, **fields: Any) -> bool:
        """Count `error`; log it if it begins a streak (then True)."""
        if self._count is not None:
            self._count()
        with self._lock:
            first = self._failures == 0
            if first:
                self._since = time.monotonic()
            self._failures += 1
        if first:
            self._logger.log(
                self._failed_level,
                self._failed_message,
                {"what": self.what, "failures": 1, "seconds": 0.0, "error": error, **fields},
                exc_info=error,
            )
        return first

    def succeeded(self) -> bool:
        """End the current streak, if any, with one log line (then True)."""
        if not self._failures:  # unlocked fast path: the usual case, a streak-less success
            return False
        with self._lock:
            failures, self._failures = self._failures, 0
            seconds = time.monotonic() - self._since
        if not failures:  # another thread ended the streak first
            return False
        self._logger.log(
            self._recovered_level,
            self._recovered_message,
            {"what": self.what, "failures": failures, "seconds": seconds},
        )
        return True

    def __enter__(self) -> ContainedFailures:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if error is None:
            self.succeeded()
            return False
        if not isinstance(error, Exception):
            return False
        self.failed(error)
        return True
