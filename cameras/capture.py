"""Capture workers and the supervisor that owns them.

One thread per camera, because OpenCV reads block. Per frame, in that thread: read, throttle to
the camera's fps, stamp it, and take it through the camera's `cameras.pipeline.FramePipeline`
(resize, detect, encode, publish, receivers), whose publisher the worker is: it sends the frame
through `cameras.publishing` onto the supervisor's event loop. A publish still in flight when
the next frame is ready makes that frame skip the broadcast: nothing queues without bound.

When nobody watches (no hub has marked the camera watched), detection still runs on every frame
(motion needs the history) but the frame is encoded only once a second, to keep the latest
picture fresh for stills and the next viewer.

A worker survives what it can: a failed cache write, broadcast, frame receiver or status write
costs that one frame's part (counted, logged once until it works again), never the worker.
Anything else it did not expect (a source or detector raising) ends its thread.

The supervisor is a coroutine: inside daphne (in-process mode, started from project/asgi.py)
it runs on the server's loop; `manage.py runcameras` runs it under `asyncio.run`. It re-reads
the enabled cameras every CAMERA_RELOAD_SECONDS and stops workers of cameras removed, disabled or
changed; a task of its own keeps the camera leases (cameras/leases.py) and runs a worker for each
camera this process holds, and a worker stops at its lease's deadline if the renewals stop
reaching Redis. Every second the supervisor also restarts workers whose thread died, with backoff
(1 s doubling to 30 s, forgotten once the new worker has run well for a minute), and leaves
heartbeats for /readyz and the cameras pages: `capture` from the supervisor, and
`capture:<camera id>` from each worker at its once-a-second status report.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connections

from cameras.leases import LocalLeases, RedisLeases, leases_for_settings
from cameras.models import Camera
from cameras.pipeline import FramePipeline
from cameras.publishing import (
    PublishedFrame,
    camera_is_watched,
    frame_broadcast,
    frame_record_set,
    latest_frame_set,
)
from cameras.selectors import (
    SUPERVISOR_HEARTBEAT,
    CameraConfig,
    camera_configs_enabled,
    capture_heartbeat_name,
    supervisor_heartbeat_ttl,
)
from cameras.services import camera_status_update, cameras_mark_offline, push_cameras_mark_stale
from cameras.vision.detectors import DetectorConfigError
from cameras.vision.sources import FrameSource, SourceError, open_source
from project.contained import ContainedFailures
from project.heartbeats import heartbeat_beat
from project.metrics import (
    CAMERA_LEASE_CHANGES,
    CAMERA_LEASES,
    CAPTURE_ERRORS,
    CAPTURE_SUPERVISOR_FAILURES,
    CAPTURE_WORKER_RESTARTS,
    CAPTURE_WORKERS,
    FRAMES_CAPTURED,
    FRAMES_DROPPED,
    FRAMES_PUBLISHED,
)

logger = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
STATUS_WRITE_SECONDS = 1.0
WATCHED_CHECK_SECONDS = 1.0
UNWATCHED_LATEST_SECONDS = 1.0
SOURCE_READ_TIMEOUT_SECONDS = 5.0
# How often the supervisor looks for dead workers (and beats), between reloads of the cameras.
WORKER_CHECK_SECONDS = 1.0
# A restarted worker that has run this long is well again: its next crash starts the backoff over.
RESTART_HEALTHY_SECONDS = 60.0


def timestamp_ms_now() -> int:
    return int(time.time() * 1000)


def _process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class CaptureWorker:
    """Reads one camera in its own thread until `stop()`; reopens a failed source with backoff.

    If the thread dies of something unexpected, `failure` holds the exception and `crashed` is
    true: restarting it is the supervisor's job.
    """

    def __init__(
        self,
        config: CameraConfig,
        *,
        loop: asyncio.AbstractEventLoop,
        channel_layer,
        offline_after_seconds: float,
        backoff_first_seconds: float = BACKOFF_FIRST_SECONDS,
        backoff_max_seconds: float = BACKOFF_MAX_SECONDS,
        source_opener: Callable[..., FrameSource] = open_source,
        lease_deadline: float = math.inf,
    ):
        self.config = config
        # Monotonic time after which no frame may be taken: the supervisor moves it on at every
        # renewal of the camera's lease (cameras/leases.py), and the thread stops at it.
        self.lease_deadline = lease_deadline
        self.lease_lapsed = False
        self._handed_over = False
        self._loop = loop
        self._channel_layer = channel_layer
        self._offline_after = offline_after_seconds
        self._backoff_first = backoff_first_seconds
        self._backoff_max = backoff_max_seconds
        self._open_source = source_opener
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"camera-{config.public_id}", daemon=True
        )
        self._pipeline: FramePipeline | None = None  # built in the thread, with the detectors
        self._publishing: concurrent.futures.Future | None = None
        self._broadcasting = False  # whether the frame being processed goes to the viewers
        # Two: the JPEG and the H.264 fragment (while someone watches as H.264) are encoded side
        # by side, both beside detection, so a frame waits for the slowest of the three only.
        self._encoder = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix=f"camera-{config.public_id}-encode"
        )
        self._last_timestamp = 0
        self._last_frame_monotonic = time.monotonic()
        self._last_frame_at: float | None = None  # epoch seconds, for the heartbeat
        self._last_latest_store = 0.0
        self._watched = False
        self._watched_checked = 0.0
        self._status: str | None = None  # as last written to the database
        self._reported: str | None = None  # as last reported (heartbeat, database attempt)
        self._status_written = 0.0
        self._frames_since_status = 0
        self.frames_published = 0
        self.started_monotonic: float | None = None
        self.failure: BaseException | None = None
        self._waiting_for_configuration = False
        # A camera's heartbeat outlives the longest quiet spell of a live worker: a backoff
        # wait plus a network open, or a stalled source until it is declared offline.
        self._heartbeat_ttl = (
            backoff_max_seconds + 2 * SOURCE_READ_TIMEOUT_SECONDS + offline_after_seconds + 5
        )
        camera = config.public_id
        self._captured = FRAMES_CAPTURED.labels(camera=camera)
        self._published = FRAMES_PUBLISHED.labels(camera=camera)
        self._dropped_busy = FRAMES_DROPPED.labels(camera=camera, reason="busy")
        self._dropped_error = FRAMES_DROPPED.labels(camera=camera, reason="error")
        self._failures = {
            stage: ContainedFailures(
                what=f"{description} for camera {camera}",
                count=CAPTURE_ERRORS.labels(camera=camera, stage=stage).inc,
                logger=logger,
            )
            for stage, description in (
                ("frame_record", "Remembering a published frame"),
                ("latest_frame", "Storing the latest frame"),
                ("broadcast", "Broadcasting a frame"),
                ("status", "Writing the camera's status"),
            )
        }

    # -- control, from the supervisor -------------------------------------------------------

    def start(self) -> None:
        self.started_monotonic = time.monotonic()
        self._thread.start()

    def stop(self, *, handed_over: bool = False) -> None:
        """Stop the thread. `handed_over`: another process reads the camera next, so this
        worker does not report it offline on the way out."""
        self._handed_over = handed_over
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def crashed(self) -> bool:
        """The thread ended although nobody stopped it and it was not waiting for a new config."""
        return (
            self.started_monotonic is not None
            and not self._thread.is_alive()
            and not self._stop.is_set()
            and not self._waiting_for_configuration
        )

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._capture()
        except Exception as error:
            # Logged (with the traceback) by the supervisor, which knows whether it is the
            # first crash of a streak and when the restart comes.
            self.failure = error
            self._set_status(
                Camera.Status.OFFLINE,
                last_error=(
                    f"The capture worker crashed ({type(error).__name__}: {error}); "
                    "it is restarted."
                )[:500],
                measured_fps=0.0,
                # Also when the status already said offline (a failing source): the crash is
                # the news, and the page must say it.
                force=True,
            )
        finally:
            self._encoder.shutdown(wait=True)
            if self._stop.is_set() and not (self._handed_over or self.lease_lapsed):
                self._beat(Camera.Status.OFFLINE, fps=0.0, last_error="Capture stopped.")
            if self._pipeline is not None:
                self._pipeline.camera_stopped()
            connections.close_all()

    def _capture(self) -> None:
        config = self.config
        try:
            self._pipeline = FramePipeline(config, encoder=self._encoder)
        except DetectorConfigError as exc:
            # Retrying cannot help: the configuration has to change (which restarts us).
            self._waiting_for_configuration = True
            self._set_status(Camera.Status.OFFLINE, last_error=f"Detectors: {exc}")
            return
        backoff = self._backoff_first
        self._set_status(Camera.Status.CONNECTING, last_error="")
        while not self._stop.is_set() and not self._lease_ran_out():
            try:
                source = self._open_source(config.source, read_timeout=SOURCE_READ_TIMEOUT_SECONDS)
            except SourceError as exc:
                self._source_failed(str(exc))
            else:
                try:
                    if self._stream(source):
                        backoff = self._backoff_first
                finally:
                    source.close()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self._backoff_max)

    def _lease_ran_out(self) -> bool:
        """Past the lease's deadline another process may read the camera: stop (the
        supervisor starts a new worker once it renews the lease again)."""
        if time.monotonic() < self.lease_deadline:
            return False
        self.lease_lapsed = True
        self._stop.set()
        CAMERA_LEASE_CHANGES.labels(change="lapsed").inc()
        logger.warning(
            "camera %s: capture paused, its lease could not be renewed in time; it resumes "
            "once the lease is renewed",
            self.config.public_id,
        )
        self._set_status(
            Camera.Status.OFFLINE,
            last_error="Capture paused: the camera process could not renew its lease on this "
            "camera in time (is Redis reachable?).",
            measured_fps=0.0,
            force=True,
        )
        return True

    def _source_failed(self, reason: str) -> None:
        """Keep saying `connecting` while retrying; `offline` once frames are overdue."""
        silent_for = time.monotonic() - self._last_frame_monotonic
        status = (
            Camera.Status.OFFLINE if silent_for >= self._offline_after else Camera.Status.CONNECTING
        )
        self._set_status(status, last_error=reason, force=True)

    def _stream(self, source: FrameSource) -> bool:
        """Read and publish until stopped or the source stalls; True if any frame arrived."""
        interval = 1.0 / self.config.target_fps
        next_due = 0.0
        got_frames = False
        while not self._stop.is_set():
            frame = source.read()
            now = time.monotonic()
            if now >= self.lease_deadline and self._lease_ran_out():
                return got_frames
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
            self._process(frame)
        return got_frames

    def _process(self, frame) -> None:
        timestamp = max(timestamp_ms_now(), self._last_timestamp + 1)
        self._last_timestamp = timestamp
        self._last_frame_at = timestamp / 1000
        self._captured.inc()
        # The receivers see every processed frame, watched or not.
        self._pipeline.process(frame, timestamp_ms=timestamp, publisher=self)
        # Bookkeeping only after the frame is on its way to the viewers.
        self._frames_since_status += 1
        self._report_online()

    # -- the pipeline's publisher (cameras.pipeline.Publisher), in the worker's thread ------

    def wants_picture(self) -> bool:
        now = time.monotonic()
        self._broadcasting = self._is_watched(now)
        if self._broadcasting:
            # The previous frame still on its way means this one skips the broadcast rather
            # than queue behind it.
            if self._publishing is None or self._publishing.done():
                return True
            self._dropped_busy.inc()
            return False
        # Nobody watches: detection still runs on every frame (motion needs the history), but
        # a picture once a second is enough to keep the latest frame fresh.
        return now - self._last_latest_store >= UNWATCHED_LATEST_SECONDS

    def publish(self, frame: PublishedFrame) -> None:
        """Send the frame on its way. A failed step (the cache or the layer away) costs that
        step for this frame only: the next frame tries again."""
        self._last_latest_store = time.monotonic()
        # Recorded before it is sent, so that a viewer posting it straight back to ingest
        # finds it and gets "duplicate".
        with self._failures["frame_record"]:
            frame_record_set(frame)
        if self._broadcasting:
            try:
                self._publishing = asyncio.run_coroutine_threadsafe(
                    frame_broadcast(self._channel_layer, frame), self._loop
                )
            except RuntimeError:
                # The loop is closed: the server is shutting down.
                self._stop.set()
                return
            self._publishing.add_done_callback(self._broadcast_done)
        with self._failures["latest_frame"]:
            latest_frame_set(frame)

    def _broadcast_done(self, future: concurrent.futures.Future) -> None:
        """Runs on the loop's thread when a broadcast finished; one is in flight at a time."""
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.frames_published += 1
            self._published.inc()
            self._failures["broadcast"].succeeded()
        else:
            self._dropped_error.inc()
            self._failures["broadcast"].failed(error)

    def _is_watched(self, now: float) -> bool:
        if now - self._watched_checked >= WATCHED_CHECK_SECONDS:
            self._watched_checked = now
            try:
                self._watched = camera_is_watched(self.config.public_id)
            except Exception:
                # The cache is unreachable (the latest-frame writes say so, once): assume
                # someone watches rather than go dark.
                self._watched = True
        return self._watched

    def _report_online(self) -> None:
        now = time.monotonic()
        elapsed = now - self._status_written
        if self._reported == Camera.Status.ONLINE and elapsed < STATUS_WRITE_SECONDS:
            return
        fps = (
            self._frames_since_status / elapsed if self._reported == Camera.Status.ONLINE else None
        )
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
        # The heartbeat says what the worker sees even while the database is away.
        self._beat(status, fps=fields.get("measured_fps"), last_error=fields.get("last_error"))
        with self._failures["status"]:
            close_old_connections()
            camera_status_update(camera_pk=self.config.pk, status=status, **fields)
            # Only once written: a failed write is retried at the next report, a second on.
            self._status = status
        self._reported = status
        self._status_written = time.monotonic()

    def _beat(self, status: str, *, fps: float | None, last_error: str | None) -> None:
        if fps is None:
            fps = 0.0 if status != Camera.Status.ONLINE else None
        heartbeat_beat(
            capture_heartbeat_name(self.config.public_id),
            ttl=self._heartbeat_ttl,
            state=status,
            fps=None if fps is None else round(fps, 2),
            last_frame_at=self._last_frame_at,
            last_error=last_error or "",
            process=_process_name(),
        )


@dataclass
class _RestartStreak:
    """A camera's consecutive crashes: how long the next restart waits, and what was logged."""

    crashes: int = 0
    delay: float = 0.0
    due: float | None = None  # monotonic time of the pending restart, if one is pending
    last_failure: str = ""


class CameraSupervisor:
    """Keeps one CaptureWorker running per enabled, non-push camera (optionally a subset)
    whose lease this process holds (all of them without Redis; cameras/leases.py)."""

    def __init__(
        self,
        *,
        public_ids: list[str] | None = None,
        reload_seconds: float | None = None,
        offline_after_seconds: float | None = None,
        check_seconds: float = WORKER_CHECK_SECONDS,
        restart_first_seconds: float = BACKOFF_FIRST_SECONDS,
        restart_max_seconds: float = BACKOFF_MAX_SECONDS,
        restart_healthy_seconds: float = RESTART_HEALTHY_SECONDS,
        source_opener: Callable[..., FrameSource] = open_source,
        leases: LocalLeases | RedisLeases | None = None,
    ):
        self.public_ids = public_ids
        self.reload_seconds = reload_seconds or settings.CAMERA_RELOAD_SECONDS
        self.offline_after = offline_after_seconds or settings.CAMERA_OFFLINE_AFTER_SECONDS
        self.check_seconds = min(check_seconds, self.reload_seconds)
        self.restart_first = restart_first_seconds
        self.restart_max = restart_max_seconds
        self.restart_healthy = restart_healthy_seconds
        self._source_opener = source_opener
        self.workers: dict[str, CaptureWorker] = {}
        self._streaks: dict[str, _RestartStreak] = {}
        # Made in run() unless given: a Redis client belongs to the loop it runs on.
        self._leases = leases
        self._wanted: dict[str, CameraConfig] = {}
        self._held: frozenset[str] = frozenset()
        self._lease_deadline = math.inf
        self._lease_turn_due = asyncio.Event()
        # Cameras whose worker is stopping, by public id: the task that finishes the job.
        self._retiring: dict[str, asyncio.Task] = {}
        self._reload_failures = ContainedFailures(
            what="The capture supervisor's reload of the cameras",
            count=CAPTURE_SUPERVISOR_FAILURES.inc,
            logger=logger,
        )
        self._check_failures = ContainedFailures(
            what="The capture supervisor's check of its workers",
            count=CAPTURE_SUPERVISOR_FAILURES.inc,
            logger=logger,
        )
        self._lease_failures = ContainedFailures(
            what="The capture supervisor's renewal of its camera leases",
            count=CAPTURE_SUPERVISOR_FAILURES.inc,
            logger=logger,
        )
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        channel_layer = get_channel_layer()
        if self._leases is None:
            self._leases = leases_for_settings()
        logger.info("camera supervisor started")
        # Leases are renewed on a task of their own, so that nothing the supervisor waits for
        # (a worker's source that takes seconds to close, a slow database) delays a renewal
        # past the workers' deadlines.
        keeping_leases = asyncio.create_task(
            self._keep_leases(loop=loop, channel_layer=channel_layer)
        )
        next_reload = loop.time()
        try:
            while not self._stopping.is_set():
                # A failed turn (the database briefly away, a bug) keeps the running workers
                # and is retried at the next turn; it never ends the supervisor.
                if loop.time() >= next_reload:
                    next_reload = loop.time() + self.reload_seconds
                    with self._reload_failures:
                        await self.reconcile()
                with self._check_failures:
                    self.revive(loop=loop, channel_layer=channel_layer)
                    await self._beat()
                wait = min(self.check_seconds, max(0.0, next_reload - loop.time()))
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            keeping_leases.cancel()
            await asyncio.gather(keeping_leases, return_exceptions=True)
            await self._stop_all(reason="Capture stopped (the camera process shut down).")
            await asyncio.gather(*self._retiring.values(), return_exceptions=True)
            await self._give_back_leases()
            CAPTURE_WORKERS.labels(state="running").set(0)
            CAPTURE_WORKERS.labels(state="restarting").set(0)
            self._finished.set()
            logger.info("camera supervisor stopped")

    async def stop(self) -> None:
        self._stopping.set()
        await self._finished.wait()

    async def reconcile(self) -> None:
        """Re-read the cameras: stop the workers of cameras removed, disabled or changed (the
        next lease turn, at once, starts the changed ones again once their old worker stopped,
        and gives back the others' leases)."""
        configs = await database_sync_to_async(camera_configs_enabled)(public_ids=self.public_ids)
        wanted = {config.public_id: config for config in configs if not config.is_push}
        self._wanted = wanted
        for public_id, worker in list(self.workers.items()):
            if wanted.get(public_id) == worker.config:
                continue
            del self.workers[public_id]
            # A new configuration may well cure a crashing camera: it starts with a clean slate.
            self._streaks.pop(public_id, None)
            self._retire(
                public_id,
                worker,
                offline_reason=None
                if public_id in wanted
                else "Capture stopped: the camera was disabled or removed.",
            )
        self._lease_turn_due.set()
        await database_sync_to_async(push_cameras_mark_stale)(
            offline_after_seconds=self.offline_after
        )

    async def _keep_leases(self, *, loop, channel_layer) -> None:
        wait = self._leases.turn_seconds
        while True:
            with self._lease_failures:
                await self.lease_turn(loop=loop, channel_layer=channel_layer)
            try:
                await asyncio.wait_for(
                    self._lease_turn_due.wait(), None if math.isinf(wait) else wait
                )
            except TimeoutError:
                pass
            self._lease_turn_due.clear()

    async def lease_turn(self, *, loop, channel_layer) -> None:
        """Renew, take and give back camera leases, and run a worker for each camera held."""
        turn = await self._leases.turn(wanted=self._wanted, held=self._held)
        for public_id in sorted(turn.lost):
            CAMERA_LEASE_CHANGES.labels(change="lost").inc()
            logger.warning(
                "camera %s: another camera process holds its lease now; stopped reading it here",
                public_id,
            )
        give_back = turn.held - self._wanted.keys()
        if turn.surplus is not None:
            give_back |= {turn.surplus}
            logger.info(
                "giving back camera %s: %d camera processes share the cameras now",
                turn.surplus,
                turn.holders,
            )
        for public_id in sorted(turn.lost | give_back):
            self._streaks.pop(public_id, None)
            self._retire(
                public_id,
                self.workers.pop(public_id, None),
                handed_over=True,
                release=public_id in give_back,
            )
        self._held = turn.held - give_back
        self._lease_deadline = turn.deadline
        for worker in self.workers.values():
            worker.lease_deadline = turn.deadline
        CAMERA_LEASES.set(len(self._held))
        CAMERA_LEASE_CHANGES.labels(change="taken").inc(len(turn.taken))
        self._start_held(loop=loop, channel_layer=channel_layer)

    def _start_held(self, *, loop, channel_layer) -> None:
        """A worker for every held camera without one (and whose old worker, if any, has
        stopped). A worker that stopped at its lease's deadline (Redis was away longer than a
        lease; the renewal that just worked re-claimed the camera) is replaced."""
        for public_id in sorted(self._held):
            worker = self.workers.get(public_id)
            if worker is not None and worker.lease_lapsed:
                self._retire(public_id, self.workers.pop(public_id), handed_over=True)
                continue  # started once it has stopped, at the turn that follows
            config = self._wanted.get(public_id)
            if config is None or worker is not None or public_id in self._retiring:
                continue
            self._start(config, loop=loop, channel_layer=channel_layer)
            logger.info("capturing camera %s", public_id)
        # At once, not at the next beat: the metrics say a worker runs before its first frame.
        self._count_workers()

    def _retire(
        self,
        public_id: str,
        worker: CaptureWorker | None,
        *,
        handed_over: bool = False,
        offline_reason: str | None = None,
        release: bool = False,
    ) -> None:
        """Stop `worker` now and, in the background once it has stopped, mark the camera
        offline and give its lease back. Until then the camera counts as retiring: no new
        worker of this process reads it, and its lease (no longer renewed) is not given back,
        so no other process reads it either."""
        if worker is not None:
            worker.stop(handed_over=handed_over)
        previous = self._retiring.get(public_id)
        task = asyncio.create_task(
            self._finish_retiring(public_id, worker, previous, offline_reason, release)
        )
        self._retiring[public_id] = task

    async def _finish_retiring(
        self,
        public_id: str,
        worker: CaptureWorker | None,
        previous: asyncio.Task | None,
        offline_reason: str | None,
        release: bool,
    ) -> None:
        try:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            if worker is not None:
                await self._join([worker])
            if offline_reason is not None and worker is not None:
                with self._reload_failures:
                    await database_sync_to_async(cameras_mark_offline)(
                        camera_pks=[worker.config.pk], reason=offline_reason
                    )
            if release:
                try:
                    await self._leases.release([public_id])
                except Exception:
                    logger.warning(
                        "Could not give back the lease of camera %s; it expires within %g s",
                        public_id,
                        settings.CAMERA_LEASE_SECONDS,
                        exc_info=True,
                    )
                else:
                    CAMERA_LEASE_CHANGES.labels(change="released").inc()
        finally:
            if self._retiring.get(public_id) is asyncio.current_task():
                del self._retiring[public_id]
                self._lease_turn_due.set()

    def revive(self, *, loop, channel_layer) -> None:
        """Restart workers whose thread died, each after its backoff; forget streaks of workers
        that have run well long enough. Cheap and non-blocking: runs on the loop every second."""
        now = time.monotonic()
        for public_id, worker in list(self.workers.items()):
            streak = self._streaks.get(public_id)
            if not worker.crashed:
                if (
                    streak is not None
                    and worker.is_alive()
                    and now - (worker.started_monotonic or now) >= self.restart_healthy
                ):
                    del self._streaks[public_id]
                    logger.info(
                        "camera %s has captured for %g s since its restart; backoff reset",
                        public_id,
                        self.restart_healthy,
                    )
                continue
            if streak is None:
                streak = self._streaks[public_id] = _RestartStreak()
            if streak.due is None:
                self._crash_noticed(public_id, worker, streak, now)
            if now >= streak.due:
                streak.due = None
                CAPTURE_WORKER_RESTARTS.labels(camera=public_id).inc()
                self._start(worker.config, loop=loop, channel_layer=channel_layer)
                logger.info("restarted the capture worker of camera %s", public_id)

    def _crash_noticed(
        self, public_id: str, worker: CaptureWorker, streak: _RestartStreak, now: float
    ) -> None:
        """Schedule the restart; log the crash with its traceback unless it repeats the last."""
        streak.crashes += 1
        streak.delay = (
            self.restart_first if streak.crashes == 1 else min(streak.delay * 2, self.restart_max)
        )
        streak.due = now + streak.delay
        failure = worker.failure
        described = f"{type(failure).__name__}: {failure}" if failure else "its thread ended"
        if described != streak.last_failure:
            logger.error(
                "The capture worker of camera %s crashed (%s); restarting it in %g s",
                public_id,
                described,
                streak.delay,
                exc_info=failure,
            )
        elif streak.crashes & (streak.crashes - 1) == 0:
            # The same crash again: said at the 2nd, 4th, 8th… time, ever more rarely.
            logger.warning(
                "The capture worker of camera %s crashed again (%d times in a row, same "
                "failure); restarting it in %g s",
                public_id,
                streak.crashes,
                streak.delay,
            )
        streak.last_failure = described

    def _start(self, config: CameraConfig, *, loop, channel_layer) -> None:
        worker = CaptureWorker(
            config,
            loop=loop,
            channel_layer=channel_layer,
            offline_after_seconds=self.offline_after,
            source_opener=self._source_opener,
            lease_deadline=self._lease_deadline,
        )
        self.workers[config.public_id] = worker
        worker.start()

    def _count_workers(self) -> int:
        alive = sum(1 for worker in self.workers.values() if worker.is_alive())
        CAPTURE_WORKERS.labels(state="running").set(alive)
        CAPTURE_WORKERS.labels(state="restarting").set(len(self.workers) - alive)
        return alive

    async def _beat(self) -> None:
        alive = self._count_workers()
        # Off the loop: with Redis as the cache a write can wait for its socket timeout, and
        # this loop carries every frame's broadcast.
        await asyncio.to_thread(
            heartbeat_beat,
            SUPERVISOR_HEARTBEAT,
            ttl=supervisor_heartbeat_ttl(self.reload_seconds),
            workers=len(self.workers),
            alive=alive,
            cameras=sorted(self.workers),
            process=_process_name(),
        )

    async def _join(self, workers: list[CaptureWorker]) -> None:
        for worker in workers:
            worker.stop()
        for worker in workers:
            # A blocked network read returns within its timeout; join off the loop meanwhile.
            if not await asyncio.to_thread(worker.join, SOURCE_READ_TIMEOUT_SECONDS * 2):
                logger.warning("camera %s did not stop in time", worker.config.public_id)

    async def _give_back_leases(self) -> None:
        """On the way out, after the workers stopped: the other processes take the cameras at
        their next turn instead of waiting for the leases to expire."""
        held, self._held = self._held, frozenset()
        CAMERA_LEASES.set(0)
        try:
            await self._leases.release(held)
            await self._leases.close()
        except Exception:
            logger.warning(
                "Could not give back the camera leases on the way out; the other camera "
                "processes take the cameras once the leases expire (CAMERA_LEASE_SECONDS)",
                exc_info=True,
            )
        else:
            CAMERA_LEASE_CHANGES.labels(change="released").inc(len(held))

    async def _stop_all(self, *, reason: str) -> None:
        workers = list(self.workers.values())
        self.workers.clear()
        self._streaks.clear()
        await self._join(workers)
        if workers:
            try:
                await database_sync_to_async(cameras_mark_offline)(
                    camera_pks=[worker.config.pk for worker in workers], reason=reason
                )
            except Exception:
                logger.warning("Could not mark the cameras offline on the way out", exc_info=True)


def _supervisor_ended(task: asyncio.Task) -> None:
    # Its turns contain their failures; should something still end it, it must not be silent.
    if not task.cancelled() and task.exception() is not None:
        logger.error("The camera supervisor stopped unexpectedly", exc_info=task.exception())


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
        task.add_done_callback(_supervisor_ended)
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
