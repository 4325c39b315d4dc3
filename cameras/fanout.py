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

A viewer of a reduced variant (`?width=320&fps=5`, see `cameras.variants`) is served by the
hub's `VariantEncoder` for that variant: at most `fps` times a second it takes the newest full
frame, decodes, resizes and re-encodes it once in a worker thread (never on the loop), and fans
the result out to the variant's viewers with the same `Viewer` slots as the full stream. An
encoder starts with its variant's first viewer in the process and stops with its last.

A viewer of the camera as H.264 (`?format=h264`) is served by the hub's `VideoFeed` (see
`cameras.video_fanout`), which takes the fragment that comes with each frame.

The hub subscribes when its first viewer (of any kind) arrives and unsubscribes when its last
one leaves.
It receives through a `GroupReceiver` (see `project.channel_layer`): a camera that publishes
nothing for a while (its source reconnecting) or a Redis restart only pause the video, and
frames reach the viewers again as soon as they flow, without the viewers reconnecting.
Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer

from cameras.publishing import (
    FRAME_MESSAGE_TYPE,
    PublishedFrame,
    acamera_mark_watched,
    group_name,
)
from cameras.transport import websocket_frame
from cameras.variants import Variant, variant_encode
from cameras.video_fanout import VideoFeed, VideoViewer
from project.channel_layer import GroupReceiver
from project.contained import ContainedFailures
from project.metrics import FRAMES_DROPPED, STREAM_VARIANTS, VARIANT_ENCODES, VIEWERS

logger = logging.getLogger(__name__)

MAX_BUFFERED_FRAMES = 2
DRAIN_POLL_SECONDS = 0.015
WATCHED_REFRESH_SECONDS = 3.0
STOP_WAIT_SECONDS = 0.5
RECEIVE_RETRY_SECONDS = 1.0

# Variant encodes of every camera share these threads: OpenCV releases the GIL, so they run
# beside the event loop, and a burst of encodes cannot take more cores than the machine has.
_variant_threads = ThreadPoolExecutor(
    max_workers=min(2, os.cpu_count() or 1), thread_name_prefix="stream-variant"
)


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


async def _offer_to_all(viewers: Iterable[Viewer], frame: Outgoing) -> int:
    """Offer a frame to every viewer; how many of them skipped one (slow viewers)."""
    skipped = 0
    # A snapshot: viewers may leave while we are sending.
    for viewer in list(viewers):
        try:
            if await viewer.offer(frame):
                skipped += 1
        except Exception:
            logger.debug("sending a frame to a viewer failed", exc_info=True)
    return skipped


class VariantEncoder:
    """One reduced variant of a camera in this process: its viewers and its one encoder task.

    Frames are handed in with `submit` (no waiting: the newest replaces one not yet taken);
    the task takes the newest, encodes it in a worker thread, sends it to every viewer, and waits
    out the rest of the variant's frame interval before taking the next.
    """

    def __init__(self, camera_id: str, variant: Variant):
        self.camera_id = camera_id
        self.variant = variant
        self.viewers: set[Viewer] = set()
        self.latest: Outgoing | None = None
        self._newest: PublishedFrame | None = None
        self._newest_timestamp = -1
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._encodes = VARIANT_ENCODES.labels(camera=camera_id, variant=variant.label)
        self._skipped = FRAMES_DROPPED.labels(camera=camera_id, reason="slow_viewer")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # An encode already in its thread finishes there; its frame is dropped.
            await asyncio.wait([self._task], timeout=STOP_WAIT_SECONDS)
            self._task = None

    def submit(self, frame: PublishedFrame) -> None:
        if frame.timestamp <= self._newest_timestamp:
            return
        self._newest_timestamp = frame.timestamp
        self._newest = frame
        self._arrived.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = ContainedFailures(
            what=f"{self.camera_id} ({self.variant.label})",
            logger=logger,
            failed_message="Could not encode the variant frames of camera %(what)s",
            failed_level=logging.ERROR,
            recovered_message="Variant frames of camera %(what)s are encoded again",
        )
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            frame, self._newest = self._newest, None
            started = loop.time()
            try:
                encoded = await loop.run_in_executor(
                    _variant_threads, variant_encode, frame, self.variant
                )
            except Exception as error:
                # One frame that does not decode must not end the variant for its viewers.
                failures.failed(error)
            else:
                failures.succeeded()
                if encoded is not frame:  # not a frame already narrow enough, sent as it is
                    self._encodes.inc()
                self.latest = Outgoing(encoded)
                skipped = await _offer_to_all(self.viewers, self.latest)
                if skipped:
                    self._skipped.inc(skipped)
            # At most `fps` frames a second, each the newest when its turn comes.
            await asyncio.sleep(max(0.0, started + self.variant.interval_seconds - loop.time()))


class CameraHub:
    def __init__(self, camera_id: str):
        self.camera_id = camera_id
        self.viewers: set[Viewer] = set()
        self.variants: dict[Variant, VariantEncoder] = {}
        self.video: VideoFeed | None = None
        self.latest: Outgoing | None = None
        # A channel of its own: frames never wait behind (or are dropped for) reply deltas.
        self._receiver = GroupReceiver(
            get_channel_layer(), where="hub", groups=[group_name(camera_id)], dedicated=True
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

    @property
    def viewer_count(self) -> int:
        video = len(self.video.viewers) if self.video is not None else 0
        return len(self.viewers) + video + sum(len(e.viewers) for e in self.variants.values())

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
        for encoder in self.variants.values():
            encoder.submit(frame.frame)
        if self.video is not None:
            self.video.deliver(frame.frame)
        skipped = await _offer_to_all(self.viewers, frame)
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


async def hub_join(
    camera_id: str, viewer: Viewer | VideoViewer, variant: Variant | None = None
) -> CameraHub | VariantEncoder | VideoFeed:
    """Add a viewer to the camera's full stream, to one of its variants, or (a `VideoViewer`)
    to its H.264 feed; returns what feeds it (for JPEG viewers, its `latest` is the newest frame
    the viewer could be given at once)."""
    _freeze_startup_heap_once()
    hubs, lock = _registry()
    async with lock:
        hub = hubs.get(camera_id)
        if hub is None:
            hub = CameraHub(camera_id)
            await hub.start()
            hubs[camera_id] = hub
        feed: CameraHub | VariantEncoder | VideoFeed = hub
        if isinstance(viewer, VideoViewer):
            if hub.video is None:
                hub.video = VideoFeed(camera_id)
                hub.video.start()
            hub.video.add(viewer)
            feed = hub.video
        elif variant is None:
            hub.viewers.add(viewer)
        else:
            encoder = hub.variants.get(variant)
            if encoder is None:
                encoder = VariantEncoder(camera_id, variant)
                encoder.start()
                if hub.latest is not None:
                    encoder.submit(hub.latest.frame)
                hub.variants[variant] = encoder
                STREAM_VARIANTS.labels(camera=camera_id).set(len(hub.variants))
            encoder.viewers.add(viewer)
            feed = encoder
        VIEWERS.labels(camera=camera_id).set(hub.viewer_count)
    return feed


async def hub_leave(
    camera_id: str, viewer: Viewer | VideoViewer, variant: Variant | None = None
) -> None:
    viewer.close()
    hubs, lock = _registry()
    async with lock:
        hub = hubs.get(camera_id)
        if hub is None:
            return
        if isinstance(viewer, VideoViewer):
            if hub.video is not None:
                hub.video.discard(viewer)
                if not hub.video.viewers:
                    video, hub.video = hub.video, None
                    await video.stop()
        elif variant is None:
            hub.viewers.discard(viewer)
        elif (encoder := hub.variants.get(variant)) is not None:
            encoder.viewers.discard(viewer)
            if not encoder.viewers:
                del hub.variants[variant]
                STREAM_VARIANTS.labels(camera=camera_id).set(len(hub.variants))
                await encoder.stop()
        VIEWERS.labels(camera=camera_id).set(hub.viewer_count)
        if not hub.viewer_count:
            del hubs[camera_id]
            await hub.stop()


def hub_viewer_count(camera_id: str) -> int:
    """Viewers of the camera in this process, of the full stream and of its variants."""
    hubs, _ = _registry()
    hub = hubs.get(camera_id)
    return hub.viewer_count if hub else 0


def hub_variants(camera_id: str) -> dict[Variant, int]:
    """The camera's variants with an encoder running in this process, and their viewers."""
    hubs, _ = _registry()
    hub = hubs.get(camera_id)
    return {v: len(e.viewers) for v, e in hub.variants.items()} if hub else {}
