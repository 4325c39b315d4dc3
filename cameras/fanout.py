"""Process-local fan-out of a camera's frames to its WebSocket viewers.

Each process holds one `CameraHub` per watched camera. The hub owns ONE channel-layer channel
that joins the camera's group, so the pub/sub layer delivers a frame once per process, not once
per viewer, and the hub hands the same already-encoded payload to every viewer itself.

Each message is framed for the WebSocket once per process (`Outgoing`), and under daphne those
bytes are written straight to every viewer's transport (see `cameras.transport`), so a viewer
costs one socket write, not copies of the frame.

Each viewer has a single "next frame" slot instead of a queue. A viewer that can take a frame
gets it at once, straight from the hub's loop; one whose connection still holds more than
`MAX_BUFFERED_FRAMES` unsent frames (see `cameras.transport`) only has its slot overwritten
and a small drain task that sends the newest frame once the connection has drained. A slow
viewer therefore skips frames, costs the others nothing, and the memory it pins is bounded by
one frame in its slot plus what its connection buffers.

The hub subscribes when its first viewer arrives and unsubscribes when its last one leaves.
It receives through a `GroupReceiver` (see `project.channel_layer`): a camera that publishes
nothing for a while (its source reconnecting) or a Redis restart only pause the video, and
frames reach the viewers again as soon as they flow, without the viewers reconnecting.
Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer

from cameras.publishing import (
    FRAME_MESSAGE_TYPE,
    PublishedFrame,
    acamera_mark_watched,
    group_name,
)
from cameras.transport import websocket_frame
from project.channel_layer import GroupReceiver
from project.contained import ContainedFailures
from project.metrics import FRAMES_DROPPED, VIEWERS

logger = logging.getLogger(__name__)

MAX_BUFFERED_FRAMES = 2
DRAIN_POLL_SECONDS = 0.015
WATCHED_REFRESH_SECONDS = 3.0
STOP_WAIT_SECONDS = 0.5
RECEIVE_RETRY_SECONDS = 1.0


class Outgoing:
    """A frame on its way out of this process, with its WebSocket wire bytes framed once."""

    __slots__ = ("frame", "_text_wire", "_binary_wire")

    def __init__(self, frame: PublishedFrame):
        self.frame = frame
        self._text_wire: bytes | None = None
        self._binary_wire: bytes | None = None

    @property
    def timestamp(self) -> int:
        return self.frame.timestamp

    def wire(self, *, binary: bool) -> bytes:
        if binary:
            if self._binary_wire is None:
                self._binary_wire = websocket_frame(self.frame.binary, binary=True)
            return self._binary_wire
        if self._text_wire is None:
            self._text_wire = websocket_frame(self.frame.text.encode(), binary=False)
        return self._text_wire


class Viewer:
    """One WebSocket watching one camera.

    `write_framed(bytes)` writes an already framed message straight to the connection (False
    when it is not open; None where unavailable); otherwise `send_frame(frame)` sends through
    ASGI.
    `pending_bytes()` says how many bytes the connection still holds (None if unknown).
    """

    def __init__(
        self,
        *,
        send_frame: Callable[[PublishedFrame], Awaitable[None]],
        pending_bytes: Callable[[], int | None],
        binary: bool,
        write_framed: Callable[[bytes], bool] | None = None,
    ):
        self._send_frame = send_frame
        self._write_framed = write_framed
        self._pending_bytes = pending_bytes
        self.binary = binary
        self._slot: Outgoing | None = None
        self._last_timestamp = -1
        self._busy = False
        self._drain_task: asyncio.Task | None = None
        self.closed = False

    def _size(self, frame: Outgoing) -> int:
        return len(frame.frame.binary) if self.binary else len(frame.frame.text)

    def _congested(self, frame: Outgoing) -> bool:
        pending = self._pending_bytes()
        return pending is not None and pending > MAX_BUFFERED_FRAMES * self._size(frame)

    async def offer(self, frame: Outgoing) -> bool:
        """Give the viewer a frame: sent now, or kept as its newest if it is still busy.
        True when that newest replaced an unsent frame (a frame this slow viewer skips)."""
        if self.closed or frame.timestamp <= self._last_timestamp:
            return False
        if self._busy or self._drain_task is not None or self._congested(frame):
            skipped = self._slot is not None
            self._slot = frame
            if self._drain_task is None and not self._busy:
                self._drain_task = asyncio.create_task(self._drain())
            return skipped
        await self._send(frame)
        return False

    async def _send(self, frame: Outgoing) -> None:
        self._last_timestamp = frame.timestamp
        # The fast path: the process's one framed copy, no per-viewer copies or coroutines.
        # When it cannot write (socket not open) the ASGI send decides what happens.
        if self._write_framed is not None and self._write_framed(frame.wire(binary=self.binary)):
            return
        self._busy = True
        try:
            await self._send_frame(frame.frame)
        finally:
            self._busy = False
        # A frame offered while this send was suspended waits in the slot: send it next.
        if self._slot is not None and self._drain_task is None and not self.closed:
            self._drain_task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while not self.closed and self._slot is not None:
                frame = self._slot
                if self._busy or self._congested(frame):
                    await asyncio.sleep(DRAIN_POLL_SECONDS)
                    continue
                self._slot = None
                if frame.timestamp > self._last_timestamp:
                    await self._send(frame)
        except Exception:
            # A send on a connection that is going away; the consumer's disconnect cleans up.
            logger.debug("viewer drain stopped", exc_info=True)
        finally:
            self._drain_task = None

    def close(self) -> None:
        self.closed = True
        self._slot = None
        if self._drain_task is not None:
            self._drain_task.cancel()


class CameraHub:
    def __init__(self, camera_id: str):
        self.camera_id = camera_id
        self.viewers: set[Viewer] = set()
        self.latest: Outgoing | None = None
        self._receiver = GroupReceiver(
            get_channel_layer(), where="hub", groups=[group_name(camera_id)]
        )
        self._tasks: list[asyncio.Task] = []
        self._skipped = FRAMES_DROPPED.labels(camera=camera_id, reason="slow_viewer")

    async def start(self) -> None:
        # Never raises for an unreachable layer: the receiver joins once it is back.
        await self._receiver.join()
        self._tasks = [
            asyncio.create_task(self._receive_frames()),
            asyncio.create_task(self._keep_marked_watched()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Do not make the last viewer's disconnect wait for a receive to let go.
        await asyncio.wait(self._tasks, timeout=STOP_WAIT_SECONDS)
        self._tasks = []
        await self._receiver.close()

    async def _receive_frames(self) -> None:
        failures = ContainedFailures(
            what=self.camera_id,
            logger=logger,
            failed_message="Could not deliver the frames of camera %(what)s",
            failed_level=logging.ERROR,
            recovered_message="Frames of camera %(what)s are delivered again",
        )
        while True:
            # The receiver waits outages out itself; anything raised here is a bug, and one
            # bad message or failed receive must not end the camera's video for everyone.
            received = False
            try:
                message = await self._receiver.receive()
                received = True
                await self._deliver(message)
            except Exception as error:
                failures.failed(error)
                if not received:
                    await asyncio.sleep(RECEIVE_RETRY_SECONDS)  # never spin on a failure
            else:
                failures.succeeded()

    async def _deliver(self, message: dict) -> None:
        if message.get("type") != FRAME_MESSAGE_TYPE:
            return
        frame = Outgoing(PublishedFrame.from_message(message))
        if self.latest is not None and frame.timestamp <= self.latest.timestamp:
            return
        self.latest = frame
        skipped = 0
        # A snapshot: viewers may leave while we are sending.
        for viewer in list(self.viewers):
            try:
                if await viewer.offer(frame):
                    skipped += 1
            except Exception:
                logger.debug("sending a frame to a viewer failed", exc_info=True)
        if skipped:
            self._skipped.inc(skipped)

    async def _keep_marked_watched(self) -> None:
        # Told once per outage (the cache is Redis in production), not every few seconds.
        failures = ContainedFailures(
            what=self.camera_id,
            logger=logger,
            failed_message="Could not mark camera %(what)s as watched; retrying every %(every).0f s",
            recovered_message="Camera %(what)s is marked as watched again",
        )
        while True:
            try:
                await acamera_mark_watched(self.camera_id)
            except Exception as error:
                failures.failed(error, every=WATCHED_REFRESH_SECONDS)
            else:
                failures.succeeded()
            await asyncio.sleep(WATCHED_REFRESH_SECONDS)


# One registry per event loop: hubs hold channel-layer receives bound to their loop.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, CameraHub]] = (
    weakref.WeakKeyDictionary()
)
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _registry() -> tuple[dict[str, CameraHub], asyncio.Lock]:
    loop = asyncio.get_running_loop()
    hubs = _hubs.setdefault(loop, {})
    lock = _locks.setdefault(loop, asyncio.Lock())
    return hubs, lock


_heap_frozen = False


def _freeze_startup_heap_once() -> None:
    """Hide the process's long-lived objects from the garbage collector, once.

    By the first viewer, Django, Twisted and the app are loaded and live as long as the
    process. Full collections that scan them all took 20-80 ms in a daphne serving cameras, a
    stall every viewer of every camera saw; out of the collector's sight they take a few.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.freeze()


async def hub_join(camera_id: str, viewer: Viewer) -> CameraHub:
    _freeze_startup_heap_once()
    hubs, lock = _registry()
    async with lock:
        hub = hubs.get(camera_id)
        if hub is None:
            hub = CameraHub(camera_id)
            await hub.start()
            hubs[camera_id] = hub
        hub.viewers.add(viewer)
        VIEWERS.labels(camera=camera_id).set(len(hub.viewers))
    return hub


async def hub_leave(camera_id: str, viewer: Viewer) -> None:
    viewer.close()
    hubs, lock = _registry()
    async with lock:
        hub = hubs.get(camera_id)
        if hub is None:
            return
        hub.viewers.discard(viewer)
        VIEWERS.labels(camera=camera_id).set(len(hub.viewers))
        if not hub.viewers:
            del hubs[camera_id]
            await hub.stop()


def hub_viewer_count(camera_id: str) -> int:
    hubs, _ = _registry()
    hub = hubs.get(camera_id)
    return len(hub.viewers) if hub else 0
