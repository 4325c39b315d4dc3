"""The recorder: turns the pipeline's frames into stored events, snapshots and sessions.

The capture workers (and frame ingest) call `record_frame` for every processed frame, from
their own threads, never from the event loop. That call only updates memory (an
`EventTracker` and a `SessionTally` per camera). A flusher thread writes what changed every
`EVENTS_FLUSH_SECONDS` (sooner when an event closes or a camera stops), for all cameras in a
few bulk queries, and encodes and stores snapshots there, so detection at full rate is a few
queries a second per process, not one write per frame.

Sessions: a camera's session starts with its first processed frame and ends when the worker
reports the camera stopped (`camera_stopped`), or when no frame has arrived for
`EVENTS_SESSION_IDLE_SECONDS` (a `push:` camera whose publisher went away). Sessions and events
left open by a process that died are ended at their last frame on the recorder's first flush.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import cv2
import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from cameras.models import Camera
from events.models import CameraSession, DetectionEvent
from events.tracking import Closed, EventTracker, Extended, Opened, SessionTally, TrackedEvent

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


def snapshot_name(*, camera_public_id: str, label: str, started_ms: int) -> str:
    day = _as_datetime(started_ms).strftime("%Y/%m/%d")
    safe_label = "".join(c if c.isalnum() else "-" for c in label)[:40] or "event"
    return f"snapshots/{camera_public_id}/{day}/{safe_label}-{started_ms}.jpg"


def snapshot_jpeg(frame: np.ndarray, *, label: str, boxes: list[tuple[list[int], float]]) -> bytes:
    """The frame as JPEG with each (bbox, confidence) box and `label (NN%)` drawn on a copy."""
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


@dataclass
class _EventState:
    """What the recorder knows about one tracked event beyond the tracker's view."""

    tracked: TrackedEvent
    pk: int | None = None
    snapshot: str = ""
    best_version: int = 0  # bumped whenever the best frame changes
    snapshot_version: int = -1
    snapshot_written_at: float = 0.0


@dataclass
class _CameraState:
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


@dataclass
class _EventWrite:
    state: _EventState
    camera_pk: int
    values: dict[str, Any]
    snapshot_frame: np.ndarray | None
    snapshot_boxes: list[tuple[list[int], float]]
    snapshot_version: int
    # Whether the event was closed when it was collected: only then is this write its last. Its
    # `closed` flag read later may have been set by a worker meanwhile, with the close not written.
    final: bool = False


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
    ) -> None:
        self.gap_seconds = gap_seconds
        self.max_event_seconds = max_event_seconds
        self.flush_seconds = flush_seconds
        self.idle_seconds = idle_seconds
        self._cameras: dict[int, _CameraState] = {}
        # Stopped sessions replaced by a new one before their end was written.
        self._retired: list[tuple[int, _CameraState]] = []
        self._lock = threading.Lock()  # guards _cameras and everything in it
        self._flush_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._run_flusher = run_flusher
        self._thread: threading.Thread | None = None
        self._recovered = False
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
        (the frame still counts for the session, but says nothing about presence)."""
        now = time.monotonic()
        with self._lock:
            state = self._cameras.get(camera.pk)
            if state is None or state.stopping:
                state = _CameraState(
                    public_id=camera.public_id,
                    tracker=EventTracker(
                        gap_seconds=self.gap_seconds, max_seconds=self.max_event_seconds
                    ),
                    tally=SessionTally(started_ms=timestamp_ms, last_frame_ms=timestamp_ms),
                    last_arrival=now,
                )
                if camera.pk in self._cameras:
                    # A stopped session not flushed yet: keep it to be ended, start afresh.
                    self._retired.append((camera.pk, self._cameras[camera.pk]))
                self._cameras[camera.pk] = state
            state.last_arrival = now
            operations = (
                state.tracker.observe(timestamp_ms, detections, frame)
                if detections is not None
                else state.tracker.close_stale(timestamp_ms)
            )
            state.tally.add_frame(timestamp_ms, operations)
            state.session_dirty = True
            wake = False
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
                    wake = True
                state.dirty.add(tracked.local_id)
        self._ensure_flusher()
        if wake:
            self._wake.set()

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
        """Write everything that changed. Safe to call from any thread except the event loop."""
        with self._flush_lock:
            if not self._recovered:
                self._end_abandoned()
                self._recovered = True
            self._expire_idle()
            batch = self._collect()
            if batch:
                self._write(batch)
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
        if not self._run_flusher or self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._flusher, name="events-recorder", daemon=True
                )
                self._thread.start()

    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:
                # A failed flush must not end recording for the life of the process.
                logger.exception("Recording events failed; retrying at the next flush")
            finally:
                # Hold no connection between flushes (a second idle connection per process
                # is wasted, and a dropped one must not break the next flush).
                connection.close()

    def _end_abandoned(self) -> None:
        """End sessions and events a previous process left open (it died without closing)."""
        horizon = datetime.now(tz=UTC) - timedelta(seconds=self.idle_seconds)
        CameraSession.objects.filter(ended_at__isnull=True, last_frame_at__lt=horizon).update(
            ended_at=F("last_frame_at")
        )
        DetectionEvent.objects.filter(ended_at__isnull=True, last_seen_at__lt=horizon).update(
            ended_at=F("last_seen_at")
        )

    def _expire_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            for state in self._cameras.values():
                idle_for = now - state.last_arrival
                if idle_for > self.idle_seconds:
                    state.stopping = True
                elif not state.stopping:
                    # Frames stopped for a moment: close what has been absent past the gap.
                    frame_now = state.tally.last_frame_ms + int(idle_for * 1000)
                    for operation in state.tracker.close_stale(frame_now):
                        state.dirty.add(operation.event.local_id)

    def _collect(self) -> list[tuple[int, _CameraState, list[_EventWrite], dict[str, Any]]]:
        """Under the lock, copy out what must be written and forget what is finished."""
        now = time.monotonic()
        batch = []
        with self._lock:
            cameras = list(self._cameras.items()) + self._retired
            self._retired = []
            for camera_pk, state in cameras:
                if state.stopping:
                    for operation in state.tracker.close_all():
                        state.dirty.add(operation.event.local_id)
                if not state.dirty and not state.session_dirty and not state.stopping:
                    continue
                writes = []
                for local_id in sorted(state.dirty):
                    event_state = state.events[local_id]
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
                    writes.append(
                        _EventWrite(
                            state=event_state,
                            camera_pk=camera_pk,
                            values={
                                "label": tracked.label,
                                "started_at": _as_datetime(tracked.started_ms),
                                "last_seen_at": _as_datetime(tracked.last_seen_ms),
                                "ended_at": _as_datetime(tracked.last_seen_ms)
                                if tracked.closed
                                else None,
                                "peak_confidence": round(tracked.peak_confidence, 4),
                                "frames_seen": tracked.frames_seen,
                                "best_bbox": list(tracked.best_bbox),
                            },
                            snapshot_frame=tracked.best_frame if wants_snapshot else None,
                            snapshot_boxes=list(tracked.best_frame_boxes),
                            snapshot_version=event_state.best_version,
                            final=tracked.closed,
                        )
                    )
                state.dirty.clear()
                tally = state.tally
                session_values = {
                    "started_at": _as_datetime(tally.started_ms),
                    "last_frame_at": _as_datetime(tally.last_frame_ms),
                    "ended_at": _as_datetime(tally.last_frame_ms) if state.stopping else None,
                    "frames_processed": tally.frames_processed,
                    "measured_fps": tally.measured_fps,
                    "counts": dict(tally.counts),
                }
                state.session_dirty = False
                batch.append((camera_pk, state, writes, session_values))
            for camera_pk, state in cameras:
                if state.stopping and self._cameras.get(camera_pk) is state:
                    del self._cameras[camera_pk]
        return batch

    def _write(
        self, batch: list[tuple[int, _CameraState, list[_EventWrite], dict[str, Any]]]
    ) -> None:
        # Snapshots first, outside the transaction: encoding and file writes are the slow part.
        replaced: list[str] = []
        for _, state, writes, _ in batch:
            for write in writes:
                if write.snapshot_frame is None:
                    continue
                values = write.values
                jpeg = snapshot_jpeg(
                    write.snapshot_frame, label=values["label"], boxes=write.snapshot_boxes
                )
                name = default_storage.save(
                    snapshot_name(
                        camera_public_id=state.public_id,
                        label=values["label"],
                        started_ms=write.state.tracked.started_ms,
                    ),
                    ContentFile(jpeg),
                )
                if write.state.snapshot:
                    replaced.append(write.state.snapshot)
                write.state.snapshot = name
                write.state.snapshot_version = write.snapshot_version
                write.state.snapshot_written_at = time.monotonic()
        try:
            with transaction.atomic():
                self._write_rows(batch)
        except DatabaseError:
            logger.exception("Could not store events; they will be written at the next flush")
            self._requeue(batch)
            return
        for name in replaced:
            default_storage.delete(name)
        with self._lock:
            for _, state, writes, _ in batch:
                for write in writes:
                    if write.final:
                        # Written for good: drop the frame and the bookkeeping.
                        write.state.tracked.best_frame = None
                        state.events.pop(write.state.tracked.local_id, None)

    def _write_rows(self, batch) -> None:
        missing_organization = [state for _, state, _, _ in batch if state.organization_pk is None]
        if missing_organization:
            organizations = dict(
                Camera.objects.filter(
                    pk__in=[pk for pk, state, _, _ in batch if state.organization_pk is None]
                ).values_list("pk", "organization_id")
            )
            for camera_pk, state, _, _ in batch:
                if state.organization_pk is None:
                    state.organization_pk = organizations.get(camera_pk)
        # A camera deleted while it was recording has nothing left to record into.
        live = [item for item in batch if item[1].organization_pk is not None]

        sessions_to_update = []
        for camera_pk, state, _, session_values in live:
            if state.session_pk is None:
                session = CameraSession.objects.create(
                    camera_id=camera_pk, organization_id=state.organization_pk, **session_values
                )
                state.session_pk = session.pk
            else:
                sessions_to_update.append(CameraSession(pk=state.session_pk, **session_values))
        if sessions_to_update:
            CameraSession.objects.bulk_update(
                sessions_to_update,
                ["last_frame_at", "ended_at", "frames_processed", "measured_fps", "counts"],
            )

        new_rows, new_states, changed_rows = [], [], []
        for camera_pk, state, writes, _ in live:
            for write in writes:
                row = DetectionEvent(
                    pk=write.state.pk,
                    camera_id=camera_pk,
                    organization_id=state.organization_pk,
                    session_id=state.session_pk,
                    snapshot=write.state.snapshot,
                    **write.values,
                )
                if write.state.pk is None:
                    new_rows.append(row)
                    new_states.append(write.state)
                else:
                    changed_rows.append(row)
        if new_rows:
            for row, event_state in zip(
                DetectionEvent.objects.bulk_create(new_rows), new_states, strict=True
            ):
                event_state.pk = row.pk
        if changed_rows:
            DetectionEvent.objects.bulk_update(
                changed_rows,
                [
                    "last_seen_at",
                    "ended_at",
                    "peak_confidence",
                    "frames_seen",
                    "best_bbox",
                    "snapshot",
                ],
            )

    def _requeue(self, batch) -> None:
        with self._lock:
            for camera_pk, state, writes, _ in batch:
                state.session_dirty = True
                state.dirty.update(write.state.tracked.local_id for write in writes)
                for write in writes:
                    state.events.setdefault(write.state.tracked.local_id, write.state)
                if state.stopping and camera_pk not in self._cameras:
                    self._retired.append((camera_pk, state))


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


def record_frame(
    *,
    camera: CameraLike,
    timestamp_ms: int,
    detections: list[dict[str, Any]] | None,
    frame: np.ndarray | None = None,
) -> None:
    """The pipeline's one call per processed frame (a no-op with EVENTS_RECORDING off)."""
    if settings.EVENTS_RECORDING:
        get_recorder().record_frame(
            camera=camera, timestamp_ms=timestamp_ms, detections=detections, frame=frame
        )


def camera_stopped(*, camera_pk: int) -> None:
    """The pipeline's call when a camera goes offline or its worker stops."""
    if settings.EVENTS_RECORDING and _recorder is not None:
        _recorder.camera_stopped(camera_pk=camera_pk)
