"""Test source: one frame from a source before it is saved (the camera form's Test source
button, the admin's "Grab one test frame" action).

A test opens the source with `cameras.vision.sources.open_source` (so the source policy holds
as for a capture worker), reads one frame and closes it, on a small pool of threads shared by
the whole process: never on the event loop or a request's thread, and a hung source holds one of
those threads at most until its own open and read timeouts end, not a request. Callers wait at
most `CAMERA_SOURCE_TEST_TIMEOUT_SECONDS`.

Each test makes the server connect where someone asked, so tests are counted per user
(`CAMERA_SOURCE_TESTS_PER_MINUTE`, in the shared cache) and cannot be used to sweep a network.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from cameras.vision.frames import encode_jpeg, resize_to_width
from cameras.vision.sources import SourceError, open_source, source_kind
from project.counters import cache_counter_incr

# Two at a time per process: enough for people testing sources, too few to pile threads up.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="source-test")


class SourceTestFailed(Exception):
    """No frame could be had; `message` says why in words a person can act on, and `code`
    names the kind of failure for scripts."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _timeout() -> float:
    return settings.CAMERA_SOURCE_TEST_TIMEOUT_SECONDS


def _grab(source: str) -> np.ndarray:
    if source_kind(source.strip()) == "push":
        raise SourceTestFailed(
            "A push: camera has no source to read: its frames arrive through the ingest API "
            "(for a webcam, from the camera's publish page once it is saved).",
            "push_source",
        )
    # Half the caller's wait for each step (connect, then FFmpeg's open and read): a source that
    # does not answer is reported as such before the caller gives up waiting.
    try:
        frame_source = open_source(source, read_timeout=_timeout() / 2)
    except SourceError as error:
        code = "refused_by_policy" if "not allowed by policy" in str(error) else "unreadable"
        # The reason as the camera's status would give it ("could not open …: connection
        # refused", "not allowed by policy …"), the source masked.
        raise SourceTestFailed(str(error), code) from None
    try:
        frame = frame_source.read()
    finally:
        frame_source.close()
    if frame is None:
        raise SourceTestFailed(
            "The source opened but sent no frame: check that it is a video stream or file.",
            "no_frame",
        )
    return frame


def _grab_jpeg(source: str, max_width: int, quality: int) -> bytes:
    return encode_jpeg(resize_to_width(_grab(source), max_width), quality)


def _timed_out() -> SourceTestFailed:
    return SourceTestFailed(
        f"No frame within {_timeout():g} s: the source is too slow to answer, or not there.",
        "timeout",
    )


def source_test_frame(source: str) -> np.ndarray:
    """One BGR frame from `source`, waiting at most the timeout (for synchronous callers)."""
    future = _pool.submit(_grab, source)
    try:
        return future.result(timeout=_timeout())
    except concurrent.futures.TimeoutError:
        future.cancel()  # still queued behind hung tests: never started
        raise _timed_out() from None


async def source_test_jpeg(source: str, *, max_width: int, quality: int) -> bytes:
    """One frame from `source` as a JPEG `max_width` wide at most; SourceTestFailed if none
    came within the timeout. Awaiting it blocks nothing."""
    future = asyncio.wrap_future(_pool.submit(_grab_jpeg, source, max_width, quality))
    try:
        return await asyncio.wait_for(future, _timeout())
    except TimeoutError:
        raise _timed_out() from None


def source_test_rate_limit_hit(*, user: AbstractBaseUser) -> int:
    """Count one test; 0 when allowed, else the seconds until the user's minute resets."""
    now = time.time()
    window = int(now // 60)
    count = cache_counter_incr(f"source-test:{user.pk}:{window}", timeout=70)
    if count > settings.CAMERA_SOURCE_TESTS_PER_MINUTE:
        return max(1, int((window + 1) * 60 - now + 0.999))
    return 0
