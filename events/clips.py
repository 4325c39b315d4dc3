"""Event clips: each tracked object's event gets a short MP4, from CLIP_PRE_SECONDS before it
started to CLIP_POST_SECONDS after it ended.

Three parts, each in its own thread:

- **The frame path** (`ClipReceiver`, a receiver of `cameras.pipeline`, in the capture worker's
  or the ingest request's thread): asks for the JPEG of at most CLIP_FPS frames a second
  (`wants_picture`), and appends each to its camera's `FrameRing`; once no tracked object has
  been in view for a while and no clip waits, the ring keeps only the pre-roll, so a quiet
  camera holds a few megabytes, not CLIP_BUFFER_MB. That is all it does there:
  one dictionary look-up and one append per kept frame, so clips cost the capture thread the JPEG
  encoding of the frames nobody watched (a viewer's frames are encoded for the viewer anyway).
  Keeping JPEGs rather than the decoded pictures keeps the ring ~20 times smaller, so seconds of
  pre-roll fit in memory for every camera; the pictures are decoded again only for the events'
  clips, off the frame path.
- **The recorder's flusher** tells `ClipRecorder.event_ended` once a tracked event is stored as
  ended: the clip is then due once the camera's frames reach its end plus the post-roll, when
  the camera stops, or after CLIP_POST_SECONDS plus a margin of wall-clock time (a pushed camera
  whose frames stopped).
- **The clip worker** (`events-clips`) copies the due clip's frames out of the ring, encodes
  them (`events.video.clips.clip_encode`: H.264, faststart, written atomically), names the file
  on the event and keeps all clips within RECORDINGS_MAX_GB. The encoding never runs on an event
  loop nor on a frame's path.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from cameras.receivers import ProcessedFrame
from cameras.selectors import CameraConfig
from events.services import clips_over_budget_delete, event_clip_attach, recordings_max_bytes
from events.video.clips import FrameRing, RingFrame, clip_encode
from project.contained import ContainedFailures

logger = logging.getLogger(__name__)

# A clip still waiting for its post-roll frames is encoded with what there is once this long
# (beyond the post-roll itself) has passed on the wall clock without them.
POST_ROLL_MARGIN_SECONDS = 5.0
# Kept frames are due every interval; 10 % early counts, so a 30 fps camera's every third frame
# (99 ms apart) makes a 10 fps clip despite capture-time jitter.
_EARLY = 0.9
_UNTRACKED = frozenset({"motion"})
# Beyond the event gap, the post-roll and the flush interval: how long a camera's ring is kept
# whole after its last tracked object, for the recorder to close that event and ask for its clip.
QUIET_MARGIN_SECONDS = 10.0
# A stopped camera's ring is kept this long: the recorder closes the camera's events at its next
# flush, and only then asks for their clips.
STOPPED_RING_KEPT_SECONDS = 60.0


def _as_datetime(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def clip_name(*, camera_public_id: str, event_pk: int, label: str, started_ms: int) -> str:
    day = _as_datetime(started_ms).strftime("%Y/%m/%d")
    safe_label = "".join(c if c.isalnum() else "-" for c in label)[:40] or "event"
    return f"clips/{camera_public_id}/{day}/{event_pk}-{safe_label}.mp4"


@dataclass
class _ClipRequest:
    camera_pk: int
    camera_public_id: str
    event_pk: int
    label: str
    started_ms: int
    ended_ms: int
    deadline: float  # time.monotonic() after which it is encoded with the frames there are


@dataclass(eq=False)
class _CameraClips:
    ring: FrameRing
    next_due_ms: int = 0  # the capture time from which the next frame is kept
    last_tracked_ms: int = 0  # the capture time of the last kept frame with a tracked object
    stopped_at: float | None = None  # time.monotonic() when its worker stopped


class ClipRecorder:
    """Per-process clip recorder: every camera's ring, the clips waiting for their post-roll,
    and the worker that encodes them. `run_worker=False` (tests, benchmarks) leaves encoding to
    explicit `encode_due()` calls."""

    def __init__(
        self,
        *,
        pre_seconds: float,
        post_seconds: float,
        fps: float,
        buffer_seconds: float,
        buffer_bytes: int,
        quiet_seconds: float = 15.0,
        run_worker: bool = True,
    ) -> None:
        """`quiet_seconds`: once no tracked object has been in a camera's frames for this long
        and no clip waits for its frames, its ring keeps only the pre-roll (the recorder has
        closed and asked for every clip by then: build it from EVENT_GAP_SECONDS, the post-roll
        and a margin for the flush)."""
        self.pre_ms = int(pre_seconds * 1000)
        self.quiet_ms = int(quiet_seconds * 1000)
        self.post_ms = int(post_seconds * 1000)
        self.fps = fps
        self.buffer_seconds = buffer_seconds
        self.buffer_bytes = buffer_bytes
        self._interval_ms = int(1000 / fps * _EARLY)
        self._cameras: dict[int, _CameraClips] = {}
        self._pending: list[_ClipRequest] = []
        self._lock = threading.Lock()  # guards the two above and the rings in them
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._run_worker = run_worker
        self._thread: threading.Thread | None = None
        self._failures = ContainedFailures(
            what="Encoding event clips",
            logger=logger,
            failed_message="%(what)s failed; the next clips are tried all the same",
            recovered_message="%(what)s works again after %(failures)d failures",
        )
        self.clips_written = 0

    # --- the frame path (capture and ingest threads) --------------------------------------

    def wants_frame(self, *, camera_pk: int, timestamp_ms: int) -> bool:
        # Read without the lock: a stale answer costs one frame kept or skipped, never a wrong clip.
        state = self._cameras.get(camera_pk)
        return state is None or timestamp_ms >= state.next_due_ms

    def frame(
        self,
        *,
        camera_pk: int,
        timestamp_ms: int,
        jpeg: bytes,
        width: int,
        height: int,
        tracked: bool = True,
    ) -> None:
        """Keep the frame in its camera's ring if one is due (`tracked`: a tracked object is in
        it); wake the worker when it brings a waiting clip's post-roll to its end."""
        with self._lock:
            state = self._cameras.get(camera_pk)
            if state is None:
                state = self._cameras[camera_pk] = _CameraClips(
                    ring=FrameRing(max_seconds=self.buffer_seconds, max_bytes=self.buffer_bytes)
                )
            elif timestamp_ms < state.next_due_ms:
                return
            state.stopped_at = None
            state.ring.append(RingFrame(timestamp_ms, jpeg, width, height))
            state.next_due_ms = timestamp_ms + self._interval_ms
            if tracked:
                state.last_tracked_ms = timestamp_ms
            waiting = [request for request in self._pending if request.camera_pk == camera_pk]
            if not waiting and timestamp_ms - state.last_tracked_ms > self.quiet_ms:
                # A quiet street: a few seconds of pre-roll are all a coming event can use, so
                # an idle camera holds a few megabytes, not the whole ring.
                state.ring.keep_last(self.pre_ms)
            if any(timestamp_ms >= request.ended_ms + self.post_ms for request in waiting):
                self._wake.notify()

    def camera_stopped(self, *, camera_pk: int) -> None:
        """No more frames will come: clips waiting for theirs are encoded with what there is."""
        with self._lock:
            state = self._cameras.get(camera_pk)
            if state is not None:
                state.stopped_at = time.monotonic()
            self._wake.notify()

    # --- the recorder's flusher -----------------------------------------------------------

    def event_ended(
        self,
        *,
        camera_pk: int,
        camera_public_id: str,
        event_pk: int,
        label: str,
        started_ms: int,
        ended_ms: int,
    ) -> None:
        """A tracked event is stored as ended: encode its clip once its post-roll is in."""
        with self._lock:
            if any(request.event_pk == event_pk for request in self._pending):
                return
            self._pending.append(
                _ClipRequest(
                    camera_pk=camera_pk,
                    camera_public_id=camera_public_id,
                    event_pk=event_pk,
                    label=label,
                    started_ms=started_ms,
                    ended_ms=ended_ms,
                    deadline=time.monotonic() + self.post_ms / 1000 + POST_ROLL_MARGIN_SECONDS,
                )
            )
            self._wake.notify()
        self._ensure_worker()

    # --- the worker -----------------------------------------------------------------------

    def encode_due(self, *, everything: bool = False) -> int:
        """Encode the clips that are due (with `everything`, all that wait); returns how many
        were written. Safe from any thread but an event loop's."""
        written = 0
        while True:
            with self._lock:
                job = self._next_due(everything=everything)
            if job is None:
                return written
            request, frames = job
            with self._failures:
                if frames and self._store(request, frames):
                    written += 1

    def close(self) -> None:
        """Stop the worker after encoding every clip that waits (process exit, tests)."""
        with self._lock:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.encode_due(everything=True)

    def ring_of(self, camera_pk: int) -> FrameRing | None:
        return state.ring if (state := self._cameras.get(camera_pk)) else None

    def _is_due(self, request: _ClipRequest, now: float) -> bool:
        state = self._cameras.get(request.camera_pk)
        if state is None or state.stopped_at is not None or now >= request.deadline:
            return True
        newest = state.ring.newest_ms
        return newest is not None and newest >= request.ended_ms + self.post_ms

    def _next_due(self, *, everything: bool) -> tuple[_ClipRequest, list[RingFrame]] | None:
        """Take the first due clip and copy out its frames (call holding the lock); forget the
        rings of cameras stopped long enough ago that no clip can still ask for them."""
        now = time.monotonic()
        for request in self._pending:
            if not (everything or self._is_due(request, now)):
                continue
            self._pending.remove(request)
            state = self._cameras.get(request.camera_pk)
            frames = (
                state.ring.between(
                    request.started_ms - self.pre_ms, request.ended_ms + self.post_ms
                )
                if state is not None
                else []
            )
            if not frames:
                logger.warning(
                    "No frames were kept for the clip of event %s (camera %s)",
                    request.event_pk,
                    request.camera_public_id,
                )
            return request, frames
        waiting = {request.camera_pk for request in self._pending}
        for camera_pk, state in list(self._cameras.items()):
            if (
                state.stopped_at is not None
                and now - state.stopped_at > STOPPED_RING_KEPT_SECONDS
                and camera_pk not in waiting
            ):
                del self._cameras[camera_pk]
        return None

    def _store(self, request: _ClipRequest, frames: list[RingFrame]) -> bool:
        name = clip_name(
            camera_public_id=request.camera_public_id,
            event_pk=request.event_pk,
            label=request.label,
            started_ms=request.started_ms,
        )
        # Clips are encoded straight into their file (PyAV writes a path, and the rename that
        # makes the write atomic needs one): MEDIA_ROOT on a local disk, as snapshots are.
        clip = clip_encode(frames, Path(default_storage.path(name)), fps=self.fps)
        attached = event_clip_attach(
            event_pk=request.event_pk,
            name=name,
            started_at=_as_datetime(clip.started_ms),
            duration_ms=clip.duration_ms,
            size=clip.size,
        )
        if attached:
            self.clips_written += 1
            clips_over_budget_delete(max_bytes=recordings_max_bytes())
        return attached

    def _ensure_worker(self) -> None:
        if not self._run_worker or self._stop:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            thread = threading.Thread(target=self._work, name="events-clips", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                # The interpreter is shutting down (the recorder's last flush at exit): `close`,
                # registered to run after it, encodes what waits.
                return
            self._thread = thread

    def _work(self) -> None:
        while True:
            with self._lock:
                # Woken by a frame that completes a post-roll, a stop or a new request; the
                # timeout catches the deadlines.
                while not self._stop and not any(
                    self._is_due(request, time.monotonic()) for request in self._pending
                ):
                    self._wake.wait(timeout=0.5)
                if self._stop:
                    return
            try:
                self.encode_due()
            except Exception as error:  # a database away: that clip is lost, the next one not
                self._failures.failed(error)
            finally:
                try:
                    connection.close()  # hold no connection between clips
                except Exception:
                    pass  # closing a dead connection can raise; Django has forgotten it anyway


_clip_recorder: ClipRecorder | None = None
_clip_recorder_lock = threading.Lock()


def clip_recorder_build(*, run_worker: bool = True) -> ClipRecorder:
    """A clip recorder with the configured rules (CLIP_*, and the event gap and flush interval
    for how long a quiet camera's ring stays whole)."""
    return ClipRecorder(
        pre_seconds=settings.CLIP_PRE_SECONDS,
        post_seconds=settings.CLIP_POST_SECONDS,
        fps=settings.CLIP_FPS,
        buffer_seconds=settings.CLIP_BUFFER_SECONDS,
        buffer_bytes=settings.CLIP_BUFFER_MB * 1024 * 1024,
        quiet_seconds=(
            settings.EVENT_GAP_SECONDS
            + settings.CLIP_POST_SECONDS
            + settings.EVENTS_FLUSH_SECONDS
            + QUIET_MARGIN_SECONDS
        ),
        run_worker=run_worker,
    )


def get_clip_recorder() -> ClipRecorder:
    """This process's clip recorder, created on first use from the settings."""
    global _clip_recorder
    if _clip_recorder is None:
        with _clip_recorder_lock:
            if _clip_recorder is None:
                _clip_recorder = clip_recorder_build()
                atexit.register(_close_at_exit, _clip_recorder)
    return _clip_recorder


def _close_at_exit(clips: ClipRecorder) -> None:
    try:
        clips.close()
    except Exception:
        logger.exception("Could not encode the waiting clips at exit")


def clips_recording() -> bool:
    return settings.EVENTS_RECORDING and settings.EVENT_CLIPS


def _has_tracked_detector(camera: CameraConfig) -> bool:
    # Only tracked objects' events get clips: a motion-only camera needs no ring.
    return any(name not in _UNTRACKED for name in camera.detectors)


class ClipReceiver:
    """The clip recorder as a frame receiver of `cameras.pipeline`; takes nothing with
    EVENTS_RECORDING or EVENT_CLIPS off, nor from a camera without an object detector."""

    name = "clips"

    def wants_picture(self, camera: CameraConfig, timestamp_ms: int) -> bool:
        return (
            clips_recording()
            and _has_tracked_detector(camera)
            and get_clip_recorder().wants_frame(camera_pk=camera.pk, timestamp_ms=timestamp_ms)
        )

    def frame_processed(self, frame: ProcessedFrame) -> None:
        if frame.jpeg is None or not clips_recording() or not _has_tracked_detector(frame.camera):
            return
        get_clip_recorder().frame(
            camera_pk=frame.camera.pk,
            timestamp_ms=frame.timestamp_ms,
            jpeg=frame.jpeg,
            width=frame.width,
            height=frame.height,
            tracked=any("track_id" in detection for detection in frame.detections or ()),
        )

    def camera_stopped(self, camera: CameraConfig) -> None:
        if _clip_recorder is not None:
            _clip_recorder.camera_stopped(camera_pk=camera.pk)
