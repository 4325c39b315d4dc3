"""Capture workers and the supervisor that owns them.

One thread per camera, because OpenCV reads block. Per frame, in that thread: read, throttle to
the camera's fps, resize once, run the detectors on that very frame (so boxes never drift from
the picture they are sent with), JPEG-encode once, build both wire payloads once, and publish
through `cameras.publishing` onto the supervisor's event loop. A publish still in flight when
the next frame is ready makes that frame skip the broadcast: nothing queues without bound.

When nobody watches (no hub has marked the camera watched), detection still runs on every frame
(motion needs the history) but the frame is encoded only once a second, to keep the latest
picture fresh for stills and the next viewer.

The supervisor is a coroutine: inside daphne (in-process mode, started from project/asgi.py)
it runs on the server's loop; `manage.py runcameras` runs it under `asyncio.run`. It re-reads
the enabled cameras every CAMERA_RELOAD_SECONDS and starts, stops or restarts workers whose
configuration changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
import time
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connections

from cameras.models import Camera
from cameras.publishing import (
    PublishedFrame,
    camera_is_watched,
    frame_broadcast,
    frame_record_set,
    latest_frame_set,
)
from cameras.selectors import CameraConfig, camera_configs_enabled
from cameras.services import camera_status_update, cameras_mark_offline, push_cameras_mark_stale
from cameras.vision.detectors import DetectorConfigError, build_detectors, run_detectors
from cameras.vision.frames import encode_jpeg, resize_to_width
from cameras.vision.sources import SourceError, open_source
from events.recording import camera_stopped, record_frame

logger = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
STATUS_WRITE_SECONDS = 1.0
WATCHED_CHECK_SECONDS = 1.0
UNWATCHED_LATEST_SECONDS = 1.0
SOURCE_READ_TIMEOUT_SECONDS = 5.0


def timestamp_ms_now() -> int:
    return int(time.time() * 1000)


class CaptureWorker:
    """Reads one camera in its own thread until `stop()`; reopens a failed source with backoff."""

    def __init__(
        self,
        config: CameraConfig,
        *,
        loop: asyncio.AbstractEventLoop,
        channel_layer,
        offline_after_seconds: float,
        backoff_first_seconds: float = BACKOFF_FIRST_SECONDS,
        backoff_max_seconds: float = BACKOFF_MAX_SECONDS,
    ):
        self.config = config
        self._loop = loop
        self._channel_layer = channel_layer
        self._offline_after = offline_after_seconds
        self._backoff_first = backoff_first_seconds
        self._backoff_max = backoff_max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"camera-{config.public_id}", daemon=True
        )
        self._publishing: concurrent.futures.Future | None = None
        self._encoder = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"camera-{config.public_id}-jpeg"
        )
        self._last_timestamp = 0
        self._last_frame_monotonic = time.monotonic()
        self._last_latest_store = 0.0
        self._watched = False
        self._watched_checked = 0.0
        self._status: str | None = None
        self._status_written = 0.0
        self._frames_since_status = 0
        self.frames_published = 0

    # -- control, from the supervisor -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._capture()
        except Exception:
            logger.exception("capture worker for camera %s crashed", self.config.public_id)
            self._set_status(Camera.Status.OFFLINE, last_error="The capture worker crashed.")
        finally:
            self._encoder.shutdown(wait=True)
            camera_stopped(camera_pk=self.config.pk)
            connections.close_all()

    def _capture(self) -> None:
        config = self.config
        try:
            detectors = build_detectors(
                list(config.detectors),
                min_confidence=config.min_confidence,
                onnx_model=config.onnx_model or None,
                onnx_labels=config.onnx_labels or None,
            )
        except DetectorConfigError as exc:
            # Retrying cannot help: the configuration has to change (which restarts us).
            self._set_status(Camera.Status.OFFLINE, last_error=f"Detectors: {exc}")
            return
        backoff = self._backoff_first
        self._set_status(Camera.Status.CONNECTING, last_error="")
        while not self._stop.is_set():
            try:
                source = open_source(config.source, read_timeout=SOURCE_READ_TIMEOUT_SECONDS)
            except SourceError as exc:
                self._source_failed(str(exc))
            else:
                try:
                    if self._stream(source, detectors):
                        backoff = self._backoff_first
                finally:
                    source.close()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self._backoff_max)

    def _source_failed(self, reason: str) -> None:
        """Keep saying `connecting` while retrying; `offline` once frames are overdue."""
        silent_for = time.monotonic() - self._last_frame_monotonic
        status = (
            Camera.Status.OFFLINE if silent_for >= self._offline_after else Camera.Status.CONNECTING
        )
        self._set_status(status, last_error=reason, force=True)

    def _stream(self, source, detectors) -> bool:
        """Read and publish until stopped or the source stalls; True if any frame arrived."""
        interval = 1.0 / self.config.target_fps
        next_due = 0.0
        got_frames = False
        while not self._stop.is_set():
            frame = source.read()
            now = time.monotonic()
            if frame is None:
                if now - self._last_frame_monotonic >= self._offline_after:
                    self._source_failed(
                        f"No frame from the source for {self._offline_after:g} s; reconnecting."
                    )
                    return got_frames
                continue
            got_frames = True
            self._last_frame_monotonic = now
            # Sources pace themselves at their own rate; take a frame when ours is (about) due.
            if now + interval / 2 < next_due:
                continue
            next_due = max(next_due + interval, now)
            self._process(frame, detectors)
        return got_frames

    def _process(self, frame, detectors) -> None:
        config = self.config
        timestamp = max(timestamp_ms_now(), self._last_timestamp + 1)
        self._last_timestamp = timestamp
        frame = resize_to_width(frame, config.max_width)
        now = time.monotonic()
        watched = self._is_watched(now)
        if watched:
            # The previous frame still on its way means this one skips the broadcast rather
            # than queue behind it.
            wanted = self._publishing is None or self._publishing.done()
        else:
            wanted = now - self._last_latest_store >= UNWATCHED_LATEST_SECONDS
        # JPEG encoding and detection both run in OpenCV without the GIL: side by side, the
        # frame is ready as soon as the slower of the two is done.
        encoding = self._encoder.submit(encode_jpeg, frame, config.jpeg_quality) if wanted else None
        detections = (
            [detection.as_dict() for detection in run_detectors(detectors, frame)]
            if detectors
            else None
        )
        if encoding is not None:
            self._publish(encoding.result(), timestamp, detections, broadcast=watched)
            self._last_latest_store = now
        # Bookkeeping only after the frame is on its way to the viewers.
        self._frames_since_status += 1
        self._report_online()
        # Events see every processed frame, watched or not (the recorder only updates memory).
        record_frame(camera=config, timestamp_ms=timestamp, detections=detections, frame=frame)

    def _publish(
        self, jpeg: bytes, timestamp: int, detections: list[dict] | None, *, broadcast: bool
    ) -> None:
        published = PublishedFrame.build(
            camera_id=self.config.public_id, jpeg=jpeg, timestamp=timestamp, detections=detections
        )
        # Recorded before it is sent, so that a viewer posting it straight back to ingest
        # finds it and gets "duplicate".
        frame_record_set(published)
        if broadcast:
            try:
                self._publishing = asyncio.run_coroutine_threadsafe(
                    frame_broadcast(self._channel_layer, published), self._loop
                )
            except RuntimeError:
                # The loop is closed: the server is shutting down.
                self._stop.set()
                return
            self.frames_published += 1
        latest_frame_set(published)

    def _is_watched(self, now: float) -> bool:
        if now - self._watched_checked >= WATCHED_CHECK_SECONDS:
            self._watched_checked = now
            try:
                self._watched = camera_is_watched(self.config.public_id)
            except Exception:
                # The cache is unreachable: assume someone watches rather than go dark.
                logger.warning("watcher check failed for %s", self.config.public_id, exc_info=True)
                self._watched = True
        return self._watched

    def _report_online(self) -> None:
        now = time.monotonic()
        elapsed = now - self._status_written
        if self._status == Camera.Status.ONLINE and elapsed < STATUS_WRITE_SECONDS:
            return
        fps = self._frames_since_status / elapsed if self._status == Camera.Status.ONLINE else None
        self._frames_since_status = 0
        self._set_status(
            Camera.Status.ONLINE,
            last_error="",
            last_frame_at=datetime.now(UTC),
            measured_fps=fps,
            force=True,
        )

    def _set_status(self, status: str, *, force: bool = False, **fields) -> None:
        if status == self._status and not force:
            return
        try:
            close_old_connections()
            camera_status_update(camera_pk=self.config.pk, status=status, **fields)
        except Exception:
            # A database hiccup must not stop the video; the next report retries.
            logger.warning("status update failed for %s", self.config.public_id, exc_info=True)
            return
        self._status = status
        self._status_written = time.monotonic()


class CameraSupervisor:
    """Keeps one CaptureWorker running per enabled, non-push camera (optionally a subset)."""

    def __init__(
        self,
        *,
        public_ids: list[str] | None = None,
        reload_seconds: float | None = None,
        offline_after_seconds: float | None = None,
    ):
        self.public_ids = public_ids
        self.reload_seconds = reload_seconds or settings.CAMERA_RELOAD_SECONDS
        self.offline_after = offline_after_seconds or settings.CAMERA_OFFLINE_AFTER_SECONDS
        self.workers: dict[str, CaptureWorker] = {}
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        channel_layer = get_channel_layer()
        logger.info("camera supervisor started")
        try:
            while not self._stopping.is_set():
                try:
                    await self.reconcile(loop=loop, channel_layer=channel_layer)
                except Exception:
                    # The database may be briefly away; keep the running workers and retry.
                    logger.exception("camera supervisor could not reload the cameras")
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.reload_seconds)
                except TimeoutError:
                    pass
        finally:
            await self._stop_all(reason="Capture stopped (the camera process shut down).")
            self._finished.set()
            logger.info("camera supervisor stopped")

    async def stop(self) -> None:
        self._stopping.set()
        await self._finished.wait()

    async def reconcile(self, *, loop, channel_layer) -> None:
        configs = await database_sync_to_async(camera_configs_enabled)(public_ids=self.public_ids)
        wanted = {config.public_id: config for config in configs if not config.is_push}
        retired = [
            worker
            for public_id, worker in self.workers.items()
            if wanted.get(public_id) != worker.config
        ]
        for worker in retired:
            del self.workers[worker.config.public_id]
        await self._join(retired)
        gone = [w.config.pk for w in retired if w.config.public_id not in wanted]
        if gone:
            await database_sync_to_async(cameras_mark_offline)(
                camera_pks=gone, reason="Capture stopped: the camera was disabled or removed."
            )
        for public_id, config in wanted.items():
            if public_id not in self.workers:
                worker = CaptureWorker(
                    config,
                    loop=loop,
                    channel_layer=channel_layer,
                    offline_after_seconds=self.offline_after,
                )
                self.workers[public_id] = worker
                worker.start()
                logger.info("capturing camera %s", public_id)
        await database_sync_to_async(push_cameras_mark_stale)(
            offline_after_seconds=self.offline_after
        )

    async def _join(self, workers: list[CaptureWorker]) -> None:
        for worker in workers:
            worker.stop()
        for worker in workers:
            # A blocked network read returns within its timeout; join off the loop meanwhile.
            if not await asyncio.to_thread(worker.join, SOURCE_READ_TIMEOUT_SECONDS * 2):
                logger.warning("camera %s did not stop in time", worker.config.public_id)

    async def _stop_all(self, *, reason: str) -> None:
        workers = list(self.workers.values())
        self.workers.clear()
        await self._join(workers)
        if workers:
            await database_sync_to_async(cameras_mark_offline)(
                camera_pks=[worker.config.pk for worker in workers], reason=reason
            )


def start_in_process_supervisor() -> None:
    """Run the supervisor on daphne's event loop once Twisted's reactor runs.

    daphne speaks no ASGI lifespan, so project/asgi.py calls this when CAMERAS_IN_PROCESS is on
    and daphne's reactor is installed. Outside a running reactor (tests, management commands)
    nothing ever starts.
    """
    from twisted.internet import defer, reactor

    supervisor = CameraSupervisor()

    def start() -> None:
        # The capture threads re-take the GIL after every OpenCV call; while the loop is busy
        # fanning a frame out, each of those waits up to the switch interval (5 ms by
        # default), enough to make a camera miss frames. 1 ms keeps them moving.
        sys.setswitchinterval(0.001)
        task = asyncio.get_running_loop().create_task(supervisor.run())
        # Keep a reference: the loop holds tasks only weakly.
        start.task = task  # type: ignore[attr-defined]
        reactor.addSystemEventTrigger(
            "before",
            "shutdown",
            lambda: defer.Deferred.fromFuture(asyncio.ensure_future(supervisor.stop())),
        )

    # Startup triggers fire just before the asyncio loop starts running; callLater(0) lands
    # inside the running loop, where the supervisor's tasks belong.
    reactor.callWhenRunning(reactor.callLater, 0, start)
