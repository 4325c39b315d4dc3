"""H.264 viewers of a camera in this process: the camera hub's `VideoFeed` (see `cameras.fanout`).

The fragments come inside the camera's frame messages (`PublishedFrame.video`, see
`cameras.video_track`); the feed turns each into one binary message (our stream framing: JSON
header, then the fragment) framed for the WebSocket once, and writes those bytes to every H.264
viewer, as the hub does for JPEG frames.

H.264 cannot skip frames the way JPEG viewers do: a frame depends on the ones before it, back to
the last key frame. So:
- the feed keeps the current group of pictures (the last key fragment and every one since),
  and a viewer joining mid-group gets the init segment and that group at once: the browser
  decodes up to the live edge and shows the camera now, not at the next key frame;
- a viewer whose connection holds more than `BEHIND_SECONDS` of video at the rate cap (a slow
  link, a stalled tab) gets nothing more until a key frame finds its connection drained, and
  resumes there: it skips whole groups, never single frames;
- a fragment lost on the way (the channel layer drops messages when a process falls behind)
  is noticed by the gap in the numbers: nothing more is sent until the next key frame, and the
  feed asks the camera for one at once rather than waiting out the interval.

While it has viewers the feed keeps the camera marked as watched as H.264, so the camera's
encoder runs; it stops within `VIDEO_WATCHED_SECONDS` of the last H.264 viewer anywhere leaving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from django.conf import settings

from cameras.publishing import (
    VIDEO_WATCHED_REFRESH_SECONDS,
    PublishedFrame,
    VideoFragment,
    acamera_keyframe_request,
    acamera_mark_video_watched,
)
from cameras.transport import websocket_frame
from cameras.vision.frames import binary_message
from project.contained import ContainedFailures
from project.metrics import VIDEO_VIEWER_SKIPS

logger = logging.getLogger(__name__)

BEHIND_SECONDS = 2.0
# Where the connection's buffer cannot be read (tests' in-memory sockets): queued messages.
MAX_QUEUED_MESSAGES = 120
KEYFRAME_ASK_SECONDS = 1.0
STOP_WAIT_SECONDS = 0.5


class VideoMessage:
    """One message to the H.264 viewers, built and framed once per process."""

    __slots__ = ("stream", "key", "payload", "_wire")

    def __init__(self, header: dict, payload: bytes, *, stream: str, key: bool):
        self.stream = stream
        self.key = key
        self.payload = binary_message(header, payload)
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = websocket_frame(self.payload, binary=True)
        return self._wire


def init_message(camera_id: str, fragment: VideoFragment) -> VideoMessage:
    header = {
        "kind": "init",
        "stream": fragment.stream,
        "codec": fragment.codec,
        "width": fragment.width,
        "height": fragment.height,
        "camera_id": camera_id,
    }
    return VideoMessage(header, fragment.init or b"", stream=fragment.stream, key=True)


def fragment_message(frame: PublishedFrame) -> VideoMessage:
    fragment = frame.video
    header: dict = {
        "kind": "video",
        "stream": fragment.stream,
        "seq": fragment.sequence,
        "key": fragment.key,
        "timestamp": frame.timestamp,
        "media_time": fragment.media_time,
        "camera_id": frame.camera_id,
    }
    if frame.detections is not None:
        header["detections"] = frame.detections
    return VideoMessage(header, fragment.data, stream=fragment.stream, key=fragment.key)


class VideoViewer:
    """One WebSocket watching a camera as H.264.

    `write_framed(bytes)` writes an already framed message straight to the connection (False
    when it is not open; None where unavailable); otherwise `send_bytes(payload)` sends through
    ASGI, in order, from a task of the viewer's own. `pending_bytes()` says how many bytes the
    connection still holds (None if unknown).
    """

    def __init__(
        self,
        *,
        send_bytes: Callable[[bytes], Awaitable[None]],
        pending_bytes: Callable[[], int | None],
        write_framed: Callable[[bytes], bool] | None = None,
    ):
        self._send_bytes = send_bytes
        self._pending_bytes = pending_bytes
        self._write_framed = write_framed
        self._queue: deque[bytes] = deque()
        self._drain_task: asyncio.Task | None = None
        self.stream: str | None = None  # the stream whose init segment this viewer has
        self.needs_key = True
        self.closed = False

    def behind(self) -> bool:
        pending = self._pending_bytes()
        if pending is None:
            return len(self._queue) > MAX_QUEUED_MESSAGES
        return pending > BEHIND_SECONDS * settings.VIDEO_MAX_KBPS * 1000 / 8

    def offer(self, message: VideoMessage, init: VideoMessage) -> bool:
        """Send the next fragment of the stream (with its init segment first if this viewer
        has not had it). True when the viewer starts skipping to the next key frame."""
        if self.closed:
            return False
        if self.needs_key:
            if not message.key or self.behind():
                return False
            self.needs_key = False
        elif self.behind():
            self.needs_key = True
            self._queue.clear()
            return True
        if self.stream != message.stream:
            self.stream = message.stream
            self._write(init)
        self._write(message)
        return False

    def start_with(self, init: VideoMessage, group: list[VideoMessage]) -> None:
        """Join mid-stream: the init segment and the current group of pictures, at once."""
        self.stream = init.stream
        self.needs_key = False
        self._write(init)
        for message in group:
            self._write(message)

    def _write(self, message: VideoMessage) -> None:
        if (
            self._write_framed is not None
            and not self._queue
            and self._drain_task is None
            and self._write_framed(message.wire)
        ):
            return
        self._queue.append(message.payload)
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue and not self.closed:
                await self._send_bytes(self._queue.popleft())
        except Exception:
            # A send on a connection that is going away; the consumer's disconnect cleans up.
            logger.debug("video viewer drain stopped", exc_info=True)
        finally:
            self._drain_task = None

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        if self._drain_task is not None:
            self._drain_task.cancel()


class VideoFeed:
    """A camera's H.264 viewers in this process, fed by the camera's hub."""

    def __init__(self, camera_id: str):
        self.camera_id = camera_id
        self.viewers: set[VideoViewer] = set()
        self._stream: str | None = None
        self._init: VideoMessage | None = None
        self._group: list[VideoMessage] = []
        self._last_sequence = 0
        self._keyframe_asked = -float("inf")
        self._tasks: set[asyncio.Task] = set()
        self._marking: asyncio.Task | None = None
        self._ask_failures = ContainedFailures(
            what=self.camera_id,
            logger=logger,
            failed_message="Could not ask camera %(what)s for a key frame; it comes within "
            "its key frame interval",
            recovered_message="Key frames of camera %(what)s can be asked for again",
        )
        self._skips = {
            reason: VIDEO_VIEWER_SKIPS.labels(camera=camera_id, reason=reason)
            for reason in ("slow_viewer", "lost_fragment")
        }

    def start(self) -> None:
        self._marking = asyncio.create_task(self._keep_marked_watched())

    async def stop(self) -> None:
        for viewer in self.viewers:
            viewer.close()
        tasks = [task for task in (self._marking, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_SECONDS)
        self._marking = None
        self._tasks.clear()

    def add(self, viewer: VideoViewer) -> None:
        self.viewers.add(viewer)
        if self._init is not None and self._group:
            viewer.start_with(self._init, self._group)
        else:
            self._ask_for_keyframe()

    def discard(self, viewer: VideoViewer) -> None:
        viewer.close()
        self.viewers.discard(viewer)

    def deliver(self, frame: PublishedFrame) -> None:
        """Take the camera's next frame (on the loop, from the hub): its fragment, if it has
        one, to every H.264 viewer that can take it."""
        fragment = frame.video
        if fragment is None:
            return
        if fragment.stream != self._stream:
            if not fragment.key or fragment.init is None:
                # A stream we joined mid-group (a hub started after the encoder did).
                self._ask_for_keyframe()
                return
            self._stream = fragment.stream
            self._init = init_message(self.camera_id, fragment)
            self._group = []
        elif fragment.sequence <= self._last_sequence:
            return  # an old or repeated fragment (ingest's threads may race)
        elif fragment.sequence != self._last_sequence + 1 and not fragment.key:
            # Lost on the way: what follows does not decode until the next key frame.
            self._lost_fragment()
        self._last_sequence = fragment.sequence
        if fragment.key:
            self._group = []
        elif not self._group:
            return  # waiting for a key frame since a loss
        message = fragment_message(frame)
        self._group.append(message)
        skipped = 0
        for viewer in list(self.viewers):
            try:
                skipped += viewer.offer(message, self._init)
            except Exception:
                logger.debug("sending a fragment to a viewer failed", exc_info=True)
        if skipped:
            self._skips["slow_viewer"].inc(skipped)

    def _lost_fragment(self) -> None:
        self._group = []
        for viewer in self.viewers:
            viewer.needs_key = True
        self._skips["lost_fragment"].inc(len(self.viewers))
        self._ask_for_keyframe()

    def _ask_for_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._keyframe_asked < KEYFRAME_ASK_SECONDS:
            return
        self._keyframe_asked = now
        task = asyncio.create_task(self._ask())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self) -> None:
        with self._ask_failures:
            await acamera_keyframe_request(self.camera_id)

    async def _keep_marked_watched(self) -> None:
        failures = ContainedFailures(
            what=self.camera_id,
            logger=logger,
            failed_message="Could not mark camera %(what)s as watched as H.264; retrying",
            recovered_message="Camera %(what)s is marked as watched as H.264 again",
        )
        while True:
            with failures:
                await acamera_mark_video_watched(self.camera_id)
            await asyncio.sleep(VIDEO_WATCHED_REFRESH_SECONDS)
