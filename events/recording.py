"""The recorder: turns the pipeline's frames into stored events, snapshots and sessions.

The recorder is one of the frame pipeline's receivers (`RecorderReceiver`, registered in
`EventsConfig.ready`): capture workers and frame ingest hand it every processed frame from
their own threads, never from the event loop. Taking a frame only updates memory (an
`EventTracker` and a `SessionTally` per camera). A flusher thread writes what changed every
`EVENTS_FLUSH_SECONDS` (sooner when an event closes or a camera stops), a few bulk queries per
camera, and encodes and stores snapshots there, so detection at full rate is a few queries a
second per process, not one write per frame.

Sessions: a camera's session starts with its first processed frame and ends when the camera's
capture worker stops (the pipeline's `camera_stopped`), or when no frame has arrived for
`EVENTS_SESSION_IDLE_SECONDS` (a `push:` camera whose publisher went away). Sessions and events
left open by a process that died are ended at their last stored frame and sighting by the
recorder's first flush, and by one more once the idle time has passed.

Nothing stops recording for good. Each camera is collected and written on its own, in its own
transaction: a camera whose part fails (a bad state, a failing write) is retried at the next
flush and holds up no other. A failure that repeats (FAILURES_BEFORE_REBUILD flushes in a row)
is logged once with its traceback, and the camera's in-memory state is rebuilt: its stored
events are ended at their real last sighting, its session with the events that are stored, and
its next frame starts a fresh tracker and session. The flusher contains whatever escapes a
flush and backs off. Every flush leaves heartbeats (`project.heartbeats`): `recorder`, and
`recorder:<camera public id>` with `state` ("recording" or "paused"), `reason` and
`last_event_at`; and Prometheus metrics (`project.metrics`).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count, F

from cameras.models import Camera
from cameras.receivers import ProcessedFrame
from cameras.selectors import CameraConfig
from events.clips import ClipRecorder, get_clip_recorder
from events.models import CameraSession, DetectionEvent, EventZone
from events.signals import RecordedEvent, events_recorded
from events.tracking import Closed, EventTracker, Extended, Opened, SessionTally, TrackedEvent
from project.contained import ContainedFailures
from project.heartbeats import heartbeat_beat
from project.metrics import (
    RECORDER_FLUSH_FAILURES,
    RECORDER_FLUSH_SECONDS,
    RECORDER_STATE_REBUILDS,
)

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

SNAPSHOT_QUALITY = 85
# An open event whose best frame keeps improving gets a new snapshot at most this often; its
# final snapshot is written when it closes.
SNAPSHOT_REFRESH_SECONDS = 10.0
_BOX_COLOR = (0, 255, 0)  # BGR, the same green the player draws


class CameraLike(Protocol):
    pk: int
    public_id: str


def _as_datetime(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def snapshot_name(
    *, camera_public_id: str, label: str, started_ms: int, track_id: int | None = None
) -> str:
    day = _as_datetime(started_ms).strftime("%Y/%m/%d")
    safe_label = "".join(c if c.isalnum() else "-" for c in label)[:40] or "event"
    if track_id is not None:
        safe_label = f"{safe_label}-{track_id}"
    return f"snapshots/{camera_public_id}/{day}/{safe_label}-{started_ms}.jpg"


def box_caption(label: str, track_id: int | None) -> str:
    """How a box is named on snapshots, as the live player names it: `person #3`."""
    return f"{label} #{track_id}" if track_id is not None else label


def snapshot_jpeg(frame: np.ndarray, *, label: str, boxes: list[tuple[list[int], float]]) -> bytes:
    """The frame as JPEG with each (bbox, confidence) box and `label (NN%)` drawn on a copy."""
    # Imported here, in the flusher's thread: registering the recorder at start-up (and every
    # management command) need not load OpenCV.
    import cv2

    image = frame.copy()
    for (x, y, w, h), confidence in boxes:
        cv2.rectangle(image, (x, y), (x + w, y + h), _BOX_COLOR, 2)
        cv2.putText(
            image,
            f"{label} ({confidence * 100:.0f}%)",
            (x, max(y - 6, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            _BOX_COLOR,
            1,
            cv2.LINE_AA,
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode the snapshot")
    return encoded.tobytes()


# A camera whose events could not be written at this many flushes in a row has its in-memory
# state rebuilt from the database: whatever went wrong in it, a fresh start beats a stall.
FAILURES_BEFORE_REBUILD = 3
# Ending a rebuilt camera's old session is tried at this many flushes, then left to the sweep.
ENDING_ATTEMPTS = 5
# A flush that failed as a whole (not one camera's part of it) is retried with backoff up to this.
FLUSHER_MAX_BACKOFF_SECONDS = 30.0
# While the database is away, a camera keeps the best frames of this many closed events for their
# snapshots; older ones are stored without, so an outage of hours does not fill the memory.
PENDING_SNAPSHOTS_KEPT = 20


class RecorderStateError(RuntimeError):
    """A camera's in-memory state cannot be trusted any more (recording a frame into it failed)."""


@dataclass(eq=False)
class _EventState:
    """What the recorder knows about one tracked event beyond the tracker's view."""

    tracked: TrackedEvent
    pk: int | None = None
    snapshot: str = ""
    best_version: int = 0  # bumped whenever the best frame changes
    snapshot_version: int = -1
    snapshot_written_at: float = 0.0
    zones_written: set[str] = field(default_factory=set)  # committed EventZone rows


@dataclass(eq=False)
class _CameraState:
    """One camera session in memory. Guarded by the recorder's lock, except the bookkeeping
    only the flush touches (`failures`, `stale_snapshots`, the primary keys)."""

    camera_pk: int
    public_id: str
    tracker: EventTracker
    tally: SessionTally
    last_arrival: float  # time.monotonic() of the last frame
    organization_pk: int | None = None
    session_pk: int | None = None
    stopping: bool = False
    events: dict[int, _EventState] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)  # local ids of events to write
    session_dirty: bool = True
    failures: int = 0  # flushes in a row at which this state could not be written
    # Why the state cannot be trusted any more; it is rebuilt at the next flush.
    broken: Exception | None = None
    # Snapshot files replaced by a newer one, deleted once no row names them any more.
    stale_snapshots: list[str] = field(default_factory=list)


@dataclass
class _EventWrite:
    state: _EventState
    values: dict[str, Any]
    snapshot_frame: np.ndarray | None
    snapshot_boxes: list[tuple[list[int], float]]
    snapshot_version: int
    zones: dict[str, int]  # zone -> first entered (Unix ms), as the tracker knew it
    # Whether the event was closed when it was collected: only then is this write its last. Its
    # `closed` flag read later may have been set by a worker meanwhile, with the close not written.
    final: bool


@dataclass
class _CameraWrite:
    """One camera state's changes, copied out under the lock and written outside it."""

    state: _CameraState
    events: list[_EventWrite]
    session_values: dict[str, Any]
    # The camera had stopped when this was collected: once written, the state can be forgotten.
    ends_session: bool


@dataclass(eq=False)
class _Ending:
    """What a camera state given up on knew for sure, to end its session and events with."""

    camera_pk: int
    public_id: str
    session_pk: int
    session_values: dict[str, Any]
    events_last_seen: dict[int, datetime]  # event pk -> when its class was last seen
    attempts: int = 0


@dataclass
class _CameraHealth:
    """What the recorder says about one camera: its heartbeat, and failures told once."""

    public_id: str
    rebuild_logged: bool = False
    last_event_at: float | None = None  # epoch seconds: the newest stored event's last sighting
    last_event_loaded: bool = False
    # The camera's failing flushes, told once until all its states are written again.
    failures: ContainedFailures = field(init=False)

    def __post_init__(self) -> None:
        self.failures = ContainedFailures(
            what=self.public_id,
            logger=logger,
            failed_message=(
                "Could not record the events of camera %(what)s (%(description)s); retrying at "
                "the next flush"
            ),
            recovered_message="The events of camera %(what)s are recorded again",
        )


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _connection_reset_if_broken() -> None:
    """After a failed write, drop a connection the failure broke, so the next camera's write
    (or the next flush) reconnects instead of failing on it too."""
    if connection.in_atomic_block:
        return  # a caller's transaction (tests flushing by hand) owns the connection
    try:
        connection.close_if_unusable_or_obsolete()
    except Exception:
        # Closing a dead connection can raise; Django has forgotten it all the same.
        pass


def _database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return False
    return True


class Recorder:
    """Per-process recorder for every camera this process processes frames of."""

    def __init__(
        self,
        *,
        gap_seconds: float,
        max_event_seconds: float = 0.0,
        flush_seconds: float,
        idle_seconds: float,
        run_flusher: bool = True,
        clips: ClipRecorder | None = None,
    ) -> None:
        """`clips`: told of every tracked event stored as ended, to encode its clip."""
        self.gap_seconds = gap_seconds
        self._clips = clips
        self.max_event_seconds = max_event_seconds
        self.flush_seconds = flush_seconds
        self.idle_seconds = idle_seconds
        self._cameras: dict[int, _CameraState] = {}
        # Stopped camera states replaced by a new one before their end was written.
        self._retired: list[_CameraState] = []
        self._lock = threading.Lock()  # guards _cameras, _retired and the states in them
        self._flush_lock = threading.Lock()  # one flush at a time; only it touches these two:
        self._endings: list[_Ending] = []
        self._health: dict[int, _CameraHealth] = {}
        # Sessions and events a dead process left open are ended at the first flush, and once
        # more when all it can have left is older than the idle time (before that, a row may
        # belong to another process that is recording the camera right now).
        self._sweeps_left = 2
        self._sweep_due = 0.0  # time.monotonic()
        self._sweep_failures = ContainedFailures(
            what="Ending the sessions a previous process left open",
            logger=logger,
            failed_message=(
                "Could not end the sessions a previous process left open; retrying at the "
                "next flush"
            ),
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._run_flusher = run_flusher
        self._thread: threading.Thread | None = None
        self.flushes = 0

    # --- called by the pipeline (worker threads) ------------------------------------------

    def record_frame(
        self,
        *,
        camera: CameraLike,
        timestamp_ms: int,
        detections: list[dict[str, Any]] | None,
        frame: np.ndarray | None = None,
    ) -> None:
        """Account one processed frame. `detections=None` means detection did not run on it
        (the frame still counts for the session, but says nothing about presence).

        Never raises for a bad state: the capture worker must go on. A state that fails here is
        marked broken and rebuilt by the next flush (its frames until then are not recorded)."""
        now = time.monotonic()
        with self._lock:
            state = self._cameras.get(camera.pk)
            if state is None or state.stopping:
                if state is not None:
                    # A stopped session not flushed yet: keep it to be ended, start afresh.
                    self._retired.append(state)
                state = _CameraState(
                    camera_pk=camera.pk,
                    public_id=camera.public_id,
                    tracker=EventTracker(
                        gap_seconds=self.gap_seconds, max_seconds=self.max_event_seconds
                    ),
                    tally=SessionTally(started_ms=timestamp_ms, last_frame_ms=timestamp_ms),
                    last_arrival=now,
                )
                self._cameras[camera.pk] = state
            state.last_arrival = now
            wake = False
            if state.broken is None:
                try:
                    wake = self._observe(state, timestamp_ms, detections, frame)
                except Exception as error:
                    state.broken = error
                    wake = True
        self._ensure_flusher()
        if wake:
            self._wake.set()

    def _observe(
        self,
        state: _CameraState,
        timestamp_ms: int,
        detections: list[dict[str, Any]] | None,
        frame: np.ndarray | None,
    ) -> bool:
        """Feed the frame to the camera's tracker and tally (call holding the lock); returns
        whether an event closed, so the flusher should write soon."""
        operations = (
            state.tracker.observe(
                timestamp_ms,
                detections,
                frame,
                frame_size=(frame.shape[1], frame.shape[0]) if frame is not None else None,
            )
            if detections is not None
            else state.tracker.close_stale(timestamp_ms)
        )
        state.tally.add_frame(timestamp_ms, operations)
        state.session_dirty = True
        closed = False
        for operation in operations:
            tracked = operation.event
            if isinstance(operation, Opened):
                event_state = _EventState(tracked=tracked)
                state.events[tracked.local_id] = event_state
            else:
                event_state = state.events[tracked.local_id]
            if isinstance(operation, Opened) or (
                isinstance(operation, Extended) and operation.new_best
            ):
                # Workers may reuse their buffers; the best frame must not change under us.
                if tracked.best_frame is not None:
                    tracked.best_frame = tracked.best_frame.copy()
                event_state.best_version += 1
            if isinstance(operation, Closed):
                closed = True
            state.dirty.add(tracked.local_id)
        return closed

    def camera_stopped(self, *, camera_pk: int) -> None:
        """The camera went offline or its worker stopped: close its events and its session."""
        with self._lock:
            state = self._cameras.get(camera_pk)
            if state is None:
                return
            state.stopping = True
        self._wake.set()

    # --- writing --------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what changed, camera by camera. Safe to call from any thread except the event
        loop. A camera whose part fails is retried at the next flush and holds up no other;
        after FAILURES_BEFORE_REBUILD failures in a row its state is rebuilt."""
        with self._flush_lock:
            started = time.monotonic()
            self._sweep_abandoned()
            with self._lock:
                states = [*self._cameras.values(), *self._retired]
            self._expire_idle(states)
            # Per camera: why its recording is paused, "" when all its states were written.
            reasons: dict[int, str] = {}
            for state in states:
                self._camera_health(state)
                reason = self._flush_camera(state)
                reasons[state.camera_pk] = reasons.get(state.camera_pk) or reason
            self._write_endings()
            for camera_pk, reason in reasons.items():
                health = self._health[camera_pk]
                if not reason and health.failures.succeeded():
                    health.rebuild_logged = False
            duration = time.monotonic() - started
            RECORDER_FLUSH_SECONDS.observe(duration)
            self._beat(reasons, duration)
            self.flushes += 1

    def close(self) -> None:
        """Stop the flusher, end every session and write it all (process shutdown, tests)."""
        with self._lock:
            for state in self._cameras.values():
                state.stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _ensure_flusher(self) -> None:
        """Start the flusher thread, or start it again if it ever ended (it should not)."""
        if not self._run_flusher or self._stop.is_set():
            return
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._thread is not None:
                if self._thread.is_alive():
                    return
                logger.error("The events recorder's flusher thread had ended; starting it again")
            self._thread = threading.Thread(
                target=self._flusher, name="events-recorder", daemon=True
            )
            self._thread.start()

    def _flusher(self) -> None:
        # Whole flushes that raised (each camera's part is contained on its own).
        failures = ContainedFailures(
            what="Recording events",
            logger=logger,
            failed_message="%(what)s failed; retrying with backoff",
            failed_level=logging.ERROR,
            recovered_message="%(what)s works again after %(failures)d failures",
            recovered_level=logging.WARNING,
        )
        # Alive from the first frame on, not only from the first flush a second later: a
        # camera goes online just before its first frame reaches us, and /readyz would call
        # the process unready (and log it) in between.
        heartbeat_beat("recorder", ttl=self._heartbeat_ttl, flush_seconds=None, cameras=0, paused=0)
        while not self._stop.is_set():
            if failures.failing:
                backoff = self.flush_seconds * 2 ** min(failures.failures, 10)
                self._stop.wait(min(backoff, FLUSHER_MAX_BACKOFF_SECONDS))
            else:
                self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception as error:
                failures.failed(error)
            else:
                failures.succeeded()
            finally:
                # Hold no connection between flushes (a second idle connection per process
                # is wasted, and a dropped one must not break the next flush).
                try:
                    connection.close()
                except Exception:
                    pass  # closing a dead connection can raise; Django has forgotten it anyway

    @property
    def _heartbeat_ttl(self) -> float:
        return max(30.0, 10 * self.flush_seconds)

    def _beat(self, reasons: dict[int, str], duration: float) -> None:
        """Leave the recorder's heartbeat and one per camera this flush concerned."""
        ttl = self._heartbeat_ttl
        heartbeat_beat(
            "recorder",
            ttl=ttl,
            flush_seconds=round(duration, 4),
            cameras=len(reasons),
            paused=sum(1 for reason in reasons.values() if reason),
        )
        for camera_pk, reason in reasons.items():
            health = self._health[camera_pk]
            heartbeat_beat(
                f"recorder:{health.public_id}",
                ttl=ttl,
                state="paused" if reason else "recording",
                reason=reason,
                last_event_at=health.last_event_at,
            )

    def _camera_health(self, state: _CameraState) -> _CameraHealth:
        health = self._health.get(state.camera_pk)
        if health is None:
            health = self._health[state.camera_pk] = _CameraHealth(public_id=state.public_id)
        return health

    def _sweep_abandoned(self) -> None:
        """End sessions and events a previous process left open (it died without closing)."""
        if not self._sweeps_left or time.monotonic() < self._sweep_due:
            return
        with self._lock:
            states = [*self._cameras.values(), *self._retired]
            held_sessions = [state.session_pk for state in states if state.session_pk]
            held_events = [
                event.pk for state in states for event in state.events.values() if event.pk
            ]
        horizon = datetime.now(tz=UTC) - timedelta(seconds=self.idle_seconds)
        try:
            CameraSession.objects.filter(ended_at__isnull=True, last_frame_at__lt=horizon).exclude(
                pk__in=held_sessions
            ).update(ended_at=F("last_frame_at"))
            DetectionEvent.objects.filter(ended_at__isnull=True, last_seen_at__lt=horizon).exclude(
                pk__in=held_events
            ).update(ended_at=F("last_seen_at"))
        except Exception as error:
            self._sweep_failures.failed(error)
            _connection_reset_if_broken()
            return
        self._sweep_failures.succeeded()
        self._sweeps_left -= 1
        self._sweep_due = time.monotonic() + self.idle_seconds + self.flush_seconds

    def _sweep_again(self) -> None:
        """Sweep once more when rows left open now are older than the idle time."""
        self._sweeps_left += 1
        self._sweep_due = max(
            self._sweep_due, time.monotonic() + self.idle_seconds + self.flush_seconds
        )

    def _expire_idle(self, states: list[_CameraState]) -> None:
        now = time.monotonic()
        with self._lock:
            for state in states:
                if state.stopping or state.broken is not None:
                    continue
                try:
                    idle_for = now - state.last_arrival
                    if idle_for > self.idle_seconds:
                        state.stopping = True
                    else:
                        # Frames stopped for a moment: close what has been absent past the gap.
                        frame_now = state.tally.last_frame_ms + int(idle_for * 1000)
                        for operation in state.tracker.close_stale(frame_now):
                            state.dirty.add(operation.event.local_id)
                except Exception as error:
                    state.broken = error

    def _flush_camera(self, state: _CameraState) -> str:
        """Collect and write one camera state; returns why its recording is paused, or ""."""
        try:
            write = self._collect(state)
            if write is not None:
                self._write(write)
        except Exception as error:
            return self._failed(state, error)
        state.failures = 0
        return ""

    def _failed(self, state: _CameraState, error: Exception) -> str:
        """Count and tell (once) a camera's failed flush; rebuild its state when it repeats."""
        state.failures += 1
        RECORDER_FLUSH_FAILURES.labels(camera=state.public_id).inc()
        _connection_reset_if_broken()
        health = self._camera_health(state)
        health.failures.failed(error, description=_describe(error))
        reason = f"events could not be written: {type(error).__name__}"
        if state.broken is None and state.failures < FAILURES_BEFORE_REBUILD:
            return reason
        if state.broken is None and not _database_reachable():
            # The database is away: nothing to rebuild from. Keep what is in memory for when
            # it is back, retrying at every flush.
            self._shed_snapshots(state)
            return reason
        if not health.rebuild_logged:
            health.rebuild_logged = True
            logger.error(
                "The events of camera %s could not be recorded at %d flushes in a row; "
                "rebuilding its recorder state from the database",
                state.public_id,
                state.failures,
                exc_info=error,
            )
        self._rebuild(state)
        return f"rebuilding after repeated failures ({type(error).__name__})"

    def _rebuild(self, state: _CameraState) -> None:
        """Give up on a camera's state: its stored session and events are ended with what it
        knew for sure, and the camera's next frame starts a fresh tracker and session."""
        with self._lock:
            self._forget(state)
            events = list(state.events.values())
            state.events.clear()
            state.dirty.clear()
        RECORDER_STATE_REBUILDS.labels(camera=state.public_id).inc()
        for event in events:
            event.tracked.best_frame = None
        if state.session_pk is None:
            return  # nothing of it was ever stored
        tally = state.tally
        last_frame_at = _as_datetime(tally.last_frame_ms)
        self._endings.append(
            _Ending(
                camera_pk=state.camera_pk,
                public_id=state.public_id,
                session_pk=state.session_pk,
                session_values={
                    "last_frame_at": last_frame_at,
                    "ended_at": last_frame_at,
                    "frames_processed": tally.frames_processed,
                    "measured_fps": tally.measured_fps,
                },
                events_last_seen={
                    event.pk: _as_datetime(event.tracked.last_seen_ms)
                    for event in events
                    if event.pk is not None
                },
            )
        )

    def _shed_snapshots(self, state: _CameraState) -> None:
        """Let go of the best frames of all but the newest closed events waiting to be written."""
        with self._lock:
            waiting = [
                event
                for event in state.events.values()
                if event.tracked.closed and event.tracked.best_frame is not None
            ]
            waiting.sort(key=lambda event: event.tracked.started_ms)
            for event in waiting[: max(0, len(waiting) - PENDING_SNAPSHOTS_KEPT)]:
                event.tracked.best_frame = None

    def _forget(self, state: _CameraState) -> None:
        """Drop a state from the recorder (call holding the lock)."""
        if self._cameras.get(state.camera_pk) is state:
            del self._cameras[state.camera_pk]
        elif state in self._retired:
            self._retired.remove(state)

    def _write_endings(self) -> None:
        for ending in list(self._endings):
            try:
                with transaction.atomic():
                    self._end(ending)
            except Exception as error:
                RECORDER_FLUSH_FAILURES.labels(camera=ending.public_id).inc()
                _connection_reset_if_broken()
                if _database_reachable():
                    ending.attempts += 1  # a database that is away will be back: wait for it
                if ending.attempts < ENDING_ATTEMPTS:
                    continue
                self._endings.remove(ending)
                self._sweep_again()
                logger.error(
                    "Could not end session %s of camera %s (%s); its open events will be ended "
                    "at their last stored sighting",
                    ending.session_pk,
                    ending.public_id,
                    _describe(error),
                )
            else:
                self._endings.remove(ending)

    def _end(self, ending: _Ending) -> None:
        for pk, last_seen_at in ending.events_last_seen.items():
            DetectionEvent.objects.filter(pk=pk, ended_at__isnull=True).update(
                last_seen_at=last_seen_at, ended_at=last_seen_at
            )
        session_events = DetectionEvent.objects.filter(session_id=ending.session_pk)
        session_events.filter(ended_at__isnull=True).update(ended_at=F("last_seen_at"))
        # The session counts the events that are stored, not the ones memory lost.
        counts = dict(
            session_events.order_by()
            .values("label")
            .annotate(n=Count("pk"))
            .values_list("label", "n")
        )
        CameraSession.objects.filter(pk=ending.session_pk).update(
            counts=counts, **ending.session_values
        )

    def _collect(self, state: _CameraState) -> _CameraWrite | None:
        """Under the lock, copy out what must be written of one camera state."""
        with self._lock:
            if state.broken is not None:
                raise RecorderStateError(
                    f"recording a frame failed: {_describe(state.broken)}"
                ) from state.broken
            if state.stopping:
                for operation in state.tracker.close_all():
                    state.dirty.add(operation.event.local_id)
            if not state.dirty and not state.session_dirty and not state.stopping:
                return None
            now = time.monotonic()
            writes = [
                self._event_write(state.events[local_id], now) for local_id in sorted(state.dirty)
            ]
            tally = state.tally
            session_values = {
                "started_at": _as_datetime(tally.started_ms),
                "last_frame_at": _as_datetime(tally.last_frame_ms),
                "ended_at": _as_datetime(tally.last_frame_ms) if state.stopping else None,
                "frames_processed": tally.frames_processed,
                "measured_fps": tally.measured_fps,
                "counts": dict(tally.counts),
            }
            state.dirty.clear()
            state.session_dirty = False
            return _CameraWrite(
                state=state,
                events=writes,
                session_values=session_values,
                ends_session=state.stopping,
            )

    @staticmethod
    def _event_write(event_state: _EventState, now: float) -> _EventWrite:
        tracked = event_state.tracked
        wants_snapshot = (
            tracked.best_frame is not None
            and event_state.best_version != event_state.snapshot_version
            and (
                not event_state.snapshot
                or tracked.closed
                or now - event_state.snapshot_written_at >= SNAPSHOT_REFRESH_SECONDS
            )
        )
        return _EventWrite(
            state=event_state,
            values={
                "label": tracked.label,
                "track_id": tracked.track_id,
                "started_at": _as_datetime(tracked.started_ms),
                "last_seen_at": _as_datetime(tracked.last_seen_ms),
                "ended_at": _as_datetime(tracked.last_seen_ms) if tracked.closed else None,
                "peak_confidence": round(tracked.peak_confidence, 4),
                "frames_seen": tracked.frames_seen,
                "best_bbox": list(tracked.best_bbox),
                # Points are replaced, never changed in place: a shallow copy stays true.
                "path": list(tracked.path.points),
            },
            snapshot_frame=tracked.best_frame if wants_snapshot else None,
            snapshot_boxes=list(tracked.best_frame_boxes),
            snapshot_version=event_state.best_version,
            zones=dict(tracked.zones),
            final=tracked.closed,
        )

    def _write(self, write: _CameraWrite) -> None:
        state = write.state
        health = self._camera_health(state)
        try:
            # Snapshots first, outside the transaction: encoding and file writes are the slow part.
            self._write_snapshots(write)
            with transaction.atomic():
                session_pk, created = self._write_rows(write, health)
        except Exception:
            # Written at the next flush, or by nobody if the state is rebuilt meanwhile.
            with self._lock:
                state.session_dirty = True
                state.dirty.update(event.state.tracked.local_id for event in write.events)
            raise
        # Primary keys are kept only once committed: a rolled-back row must be inserted again.
        state.session_pk = session_pk
        for event_state, pk in created:
            event_state.pk = pk
        for event in write.events:
            event.state.zones_written.update(event.zones)
            if (
                self._clips is not None
                and event.final
                and event.values["track_id"] is not None
                and event.state.pk is not None  # None: the camera was deleted meanwhile
            ):
                tracked = event.state.tracked
                self._clips.event_ended(
                    camera_pk=state.camera_pk,
                    camera_public_id=state.public_id,
                    event_pk=event.state.pk,
                    label=tracked.label,
                    started_ms=tracked.started_ms,
                    ended_ms=tracked.last_seen_ms,
                )
        stale, state.stale_snapshots = state.stale_snapshots, []
        for name in stale:
            try:
                default_storage.delete(name)
            except Exception:
                logger.warning("Could not delete the replaced snapshot %s", name, exc_info=True)
        with self._lock:
            for event in write.events:
                local_id = event.state.tracked.local_id
                if event.final and local_id not in state.dirty:
                    # Written for good: drop the frame and the bookkeeping.
                    event.state.tracked.best_frame = None
                    state.events.pop(local_id, None)
            if write.ends_session:
                self._forget(state)
        if write.events and state.organization_pk is not None:
            newest = max(event.values["last_seen_at"] for event in write.events).timestamp()
            health.last_event_at = max(health.last_event_at or newest, newest)

    def _write_snapshots(self, write: _CameraWrite) -> None:
        state = write.state
        for event in write.events:
            if event.snapshot_frame is None:
                continue
            values = event.values
            jpeg = snapshot_jpeg(
                event.snapshot_frame,
                label=box_caption(values["label"], values["track_id"]),
                boxes=event.snapshot_boxes,
            )
            name = default_storage.save(
                snapshot_name(
                    camera_public_id=state.public_id,
                    label=values["label"],
                    started_ms=event.state.tracked.started_ms,
                    track_id=values["track_id"],
                ),
                ContentFile(jpeg),
            )
            if event.state.snapshot:
                state.stale_snapshots.append(event.state.snapshot)
            event.state.snapshot = name
            event.state.snapshot_version = event.snapshot_version
            event.state.snapshot_written_at = time.monotonic()

    def _write_rows(
        self, write: _CameraWrite, health: _CameraHealth
    ) -> tuple[int | None, list[tuple[_EventState, int]]]:
        """Write one camera's rows (call in a transaction); returns the session's primary key
        and those of the events created, for the caller to keep once the transaction commits."""
        state = write.state
        if state.organization_pk is None:
            state.organization_pk = (
                Camera.objects.filter(pk=state.camera_pk)
                .values_list("organization_id", flat=True)
                .first()
            )
            if state.organization_pk is None:
                # The camera was deleted while it was recording: nothing to record into.
                return None, []
            if not health.last_event_loaded:
                newest = (
                    DetectionEvent.objects.filter(camera_id=state.camera_pk)
                    .order_by("-started_at")
                    .values_list("last_seen_at", flat=True)
                    .first()
                )
                health.last_event_at = newest.timestamp() if newest else None
                health.last_event_loaded = True

        session_pk = state.session_pk
        if session_pk is None:
            session_pk = CameraSession.objects.create(
                camera_id=state.camera_pk,
                organization_id=state.organization_pk,
                **write.session_values,
            ).pk
        else:
            values = dict(write.session_values)
            del values["started_at"]
            CameraSession.objects.filter(pk=session_pk).update(**values)

        new_rows, new_states, changed_rows = [], [], []
        rows = []  # (the event's write, its row), in order
        for event in write.events:
            row = DetectionEvent(
                pk=event.state.pk,
                camera_id=state.camera_pk,
                organization_id=state.organization_pk,
                session_id=session_pk,
                snapshot=event.state.snapshot,
                **event.values,
            )
            rows.append((event, row))
            if event.state.pk is None:
                new_rows.append(row)
                new_states.append(event.state)
            else:
                changed_rows.append(row)
        created = []
        if new_rows:
            # Both PostgreSQL and SQLite (3.35+) hand back the new keys, set on the rows.
            DetectionEvent.objects.bulk_create(new_rows)
            created = [
                (event_state, row.pk) for event_state, row in zip(new_states, new_rows, strict=True)
            ]
        if changed_rows:
            DetectionEvent.objects.bulk_update(
                changed_rows,
                [
                    "last_seen_at",
                    "ended_at",
                    "peak_confidence",
                    "frames_seen",
                    "best_bbox",
                    "path",
                    "snapshot",
                ],
            )
        zone_rows = [
            EventZone(event_id=row.pk, zone=zone, entered_at=_as_datetime(entered_ms))
            for event, row in rows
            for zone, entered_ms in event.zones.items()
            if zone not in event.state.zones_written
        ]
        if zone_rows:
            # A retried write after a commit whose answer was lost must not fail on the rows.
            EventZone.objects.bulk_create(zone_rows, ignore_conflicts=True)
        if rows:
            created_pks = {pk for _, pk in created}
            events_recorded.send(
                sender=type(self),
                organization_pk=state.organization_pk,
                camera_pk=state.camera_pk,
                camera_public_id=state.public_id,
                events=[
                    RecordedEvent(
                        pk=row.pk,
                        label=row.label,
                        track_id=row.track_id,
                        started_at=row.started_at,
                        last_seen_at=row.last_seen_at,
                        ended_at=row.ended_at,
                        peak_confidence=row.peak_confidence,
                        zones=frozenset(event.zones),
                        snapshot=row.snapshot.name or "",
                        created=row.pk in created_pks,
                    )
                    for event, row in rows
                ],
            )
        return session_pk, created


_recorder: Recorder | None = None
_recorder_lock = threading.Lock()


def get_recorder() -> Recorder:
    """This process's recorder, created on first use from the settings."""
    global _recorder
    if _recorder is None:
        with _recorder_lock:
            if _recorder is None:
                _recorder = Recorder(
                    gap_seconds=settings.EVENT_GAP_SECONDS,
                    max_event_seconds=settings.EVENT_MAX_SECONDS,
                    flush_seconds=settings.EVENTS_FLUSH_SECONDS,
                    idle_seconds=settings.EVENTS_SESSION_IDLE_SECONDS,
                    clips=get_clip_recorder() if settings.EVENT_CLIPS else None,
                )
                atexit.register(_close_at_exit, _recorder)
    return _recorder


def _close_at_exit(recorder: Recorder) -> None:
    # A clean shutdown (daphne or runcameras stopping) ends the sessions now rather than at
    # the next start's recovery; a failure here must not hide the reason the process exits.
    try:
        recorder.close()
    except Exception:
        logger.exception("Could not end the camera sessions at exit")


class RecorderReceiver:
    """This process's recorder as a frame receiver of `cameras.pipeline`; takes nothing with
    EVENTS_RECORDING off."""

    name = "recorder"

    def frame_processed(self, frame: ProcessedFrame) -> None:
        if settings.EVENTS_RECORDING:
            get_recorder().record_frame(
                camera=frame.camera,
                timestamp_ms=frame.timestamp_ms,
                detections=frame.detections,
                frame=frame.image,
            )

    def camera_stopped(self, camera: CameraConfig) -> None:
        if settings.EVENTS_RECORDING and _recorder is not None:
            _recorder.camera_stopped(camera_pk=camera.pk)
