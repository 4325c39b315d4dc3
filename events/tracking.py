"""Turn a camera's stream of per-frame detections into detection events and session totals.

Plain Python (no Django), so the rules can be read and tested alone:

- **One event per tracked object.** The frame pipeline gives each object's detections the
  `track_id` of its track (`cameras.vision.tracking`); an event is one track on one camera: two
  people walking together are two `person` events. Each keeps its own best box and a short
  **path**: where its box was over time (see `Path`).
- **Motion is presence.** Detections without a track id (`motion`'s blobs, and frames from
  before tracking) make one event per *class* per camera at a time, as long as the class is in
  view; its best frame shows every box of that class in it.
- **Gap tolerance.** An object (or untracked class) that disappears for at most `gap_seconds`
  (the `EVENT_GAP_SECONDS` setting) and comes back continues the same event, so a detector
  missing a few frames does not split one visit into many. An event is closed once a frame
  arrives more than `gap_seconds` after it was last seen, or when the camera stops
  (`close_all`). Its end is the time it was last seen, not the time the closing was noticed.
- **Longest event.** A presence that lasts longer than `max_seconds` (`EVENT_MAX_SECONDS`) is
  cut into consecutive events, like ZoneMinder's section length: a scene that never gets still
  (a street, the `demo:` camera) still yields dated events and fresh snapshots hour by hour,
  instead of one event that never ends.
- **Best frame.** Each event keeps the frame of its most confident detection and that
  detection's box.
- **Session counts** are *events started per class* during the session: the same unit the API,
  the pages and the assistant count, so every number in the product means "events".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_local_ids = itertools.count(1)

# A path keeps at most this many points; when it would hold more, every other point goes and
# points are kept half as often from then on, so a path spans its whole event at a bounded size.
PATH_MAX_POINTS = 64
PATH_FIRST_INTERVAL_MS = 200


@dataclass
class Path:
    """Where an event's box was: `[ms since the event started, x, y, width, height]` points,
    the box as fractions of the frame (4 decimals), oldest first. The newest sighting is always
    its last point."""

    points: list[list[float]] = field(default_factory=list)
    interval_ms: int = PATH_FIRST_INTERVAL_MS
    # Whether the last point is the newest sighting kept only until the next one is due.
    _provisional: bool = False

    def add(self, offset_ms: int, bbox: list[int], frame_size: tuple[int, int]) -> None:
        width, height = frame_size
        x, y, w, h = bbox
        point = [
            offset_ms,
            round(x / width, 4),
            round(y / height, 4),
            round(w / width, 4),
            round(h / height, 4),
        ]
        if self._provisional:
            self.points.pop()
        due = not self.points or offset_ms - self.points[-1][0] >= self.interval_ms
        self.points.append(point)
        self._provisional = not due
        if len(self.points) > PATH_MAX_POINTS:
            newest = self.points[-1]
            self.points = self.points[:-1:2] + [newest]
            self.interval_ms *= 2


@dataclass
class TrackedEvent:
    """An event as the tracker sees it; `local_id` identifies it until it has a database row."""

    label: str
    started_ms: int
    last_seen_ms: int
    peak_confidence: float
    best_bbox: list[int]
    # The object's track id; None for an untracked class (motion).
    track_id: int | None = None
    best_frame: Any = None
    # (bbox, confidence) of the boxes to draw on the best frame, strongest first: the object's
    # own box, or every box of an untracked class in that frame.
    best_frame_boxes: list[tuple[list[int], float]] = field(default_factory=list)
    frames_seen: int = 1
    path: Path = field(default_factory=Path)
    # The zones its object entered (the pipeline's `zones` of its detections): name -> the
    # capture time (Unix ms) it was first seen in it.
    zones: dict[str, int] = field(default_factory=dict)
    closed: bool = False
    local_id: int = field(default_factory=lambda: next(_local_ids))


@dataclass(frozen=True)
class Opened:
    event: TrackedEvent


@dataclass(frozen=True)
class Extended:
    """The event was seen again; `new_best` says its peak (and best box/frame) improved."""

    event: TrackedEvent
    new_best: bool


@dataclass(frozen=True)
class Closed:
    event: TrackedEvent


Operation = Opened | Extended | Closed
# What an open event is known by: its class and its track id (None for an untracked class).
EventKey = tuple[str, int | None]


def _boxes_per_object(
    detections: Iterable[Mapping[str, Any]],
) -> dict[EventKey, tuple[list[tuple[list[int], float]], set[str]]]:
    """Each object's (or untracked class's) (bbox, confidence) pairs in one frame, strongest
    first, and the zones they stand in."""
    found: dict[EventKey, tuple[list[tuple[list[int], float]], set[str]]] = {}
    for detection in detections:
        bbox = [int(round(v)) for v in detection["bbox"]]
        track_id = detection.get("track_id")
        key = (str(detection["class"]), int(track_id) if track_id is not None else None)
        boxes, zones = found.setdefault(key, ([], set()))
        boxes.append((bbox, float(detection["confidence"])))
        zones.update(detection.get("zones") or ())
    for boxes, _ in found.values():
        boxes.sort(key=lambda pair: -pair[1])
    return found


class EventTracker:
    """Per-camera event state. Not thread-safe: one caller (the camera's recorder) feeds it."""

    def __init__(self, *, gap_seconds: float, max_seconds: float = 0.0):
        """`max_seconds` 0 means events are never cut, however long they last."""
        if gap_seconds < 0 or max_seconds < 0:
            raise ValueError("gap_seconds and max_seconds must not be negative")
        self.gap_ms = int(round(gap_seconds * 1000))
        self.max_ms = int(round(max_seconds * 1000))
        self.open: dict[EventKey, TrackedEvent] = {}

    def observe(
        self,
        timestamp_ms: int,
        detections: Iterable[Mapping[str, Any]],
        frame: Any = None,
        *,
        frame_size: tuple[int, int] | None = None,
    ) -> list[Operation]:
        """Feed one processed frame (its detections may be empty); return what changed.

        `frame` is kept by reference when it becomes an event's best frame: callers that reuse
        frame buffers must pass a copy. `frame_size` (width, height) places the boxes in the
        frame for the events' paths; without it no path is kept.
        """
        operations: list[Operation] = []
        # Close first, so an object that comes back after a long gap opens a *new* event, and
        # one still present after the longest event continues in a new one from this frame.
        operations.extend(self._close_stale(timestamp_ms))
        operations.extend(self._close_long(timestamp_ms))
        for key, (boxes, zones) in _boxes_per_object(detections).items():
            label, track_id = key
            bbox, confidence = boxes[0]
            event = self.open.get(key)
            if event is None:
                event = TrackedEvent(
                    label=label,
                    started_ms=timestamp_ms,
                    last_seen_ms=timestamp_ms,
                    peak_confidence=confidence,
                    best_bbox=bbox,
                    track_id=track_id,
                    best_frame=frame,
                    best_frame_boxes=boxes,
                )
                self.open[key] = event
                operations.append(Opened(event))
            else:
                event.frames_seen += 1
                event.last_seen_ms = max(event.last_seen_ms, timestamp_ms)
                new_best = confidence > event.peak_confidence
                if new_best:
                    event.peak_confidence = confidence
                    event.best_bbox = bbox
                    event.best_frame = frame
                    event.best_frame_boxes = boxes
                operations.append(Extended(event, new_best))
            for zone in zones:
                entered = event.zones.get(zone)
                if entered is None or timestamp_ms < entered:
                    event.zones[zone] = timestamp_ms
            if frame_size is not None and timestamp_ms >= event.started_ms:
                event.path.add(timestamp_ms - event.started_ms, bbox, frame_size)
        return operations

    def close_stale(self, now_ms: int) -> list[Closed]:
        """Close events not seen for longer than the gap, as of `now_ms`."""
        return self._close_stale(now_ms)

    def close_all(self) -> list[Closed]:
        """The camera stopped: every open event ends when it was last seen."""
        closed = [Closed(event) for event in self.open.values()]
        for operation in closed:
            operation.event.closed = True
        self.open.clear()
        return closed

    def _close_stale(self, now_ms: int) -> list[Closed]:
        return self._close(
            [key for key, event in self.open.items() if now_ms - event.last_seen_ms > self.gap_ms]
        )

    def _close_long(self, now_ms: int) -> list[Closed]:
        if not self.max_ms:
            return []
        return self._close(
            [key for key, event in self.open.items() if now_ms - event.started_ms >= self.max_ms]
        )

    def _close(self, keys: list[EventKey]) -> list[Closed]:
        closed = []
        for key in keys:
            event = self.open.pop(key)
            event.closed = True
            closed.append(Closed(event))
        return closed


@dataclass
class SessionTally:
    """What a camera session has processed so far; `counts` are events started per class."""

    started_ms: int
    last_frame_ms: int
    frames_processed: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add_frame(self, timestamp_ms: int, operations: Iterable[Operation]) -> None:
        self.frames_processed += 1
        self.last_frame_ms = max(self.last_frame_ms, timestamp_ms)
        for operation in operations:
            if isinstance(operation, Opened):
                label = operation.event.label
                self.counts[label] = self.counts.get(label, 0) + 1

    @property
    def measured_fps(self) -> float:
        """Frames per second between the first and the last frame (0 until two frames span time)."""
        span_ms = self.last_frame_ms - self.started_ms
        if self.frames_processed < 2 or span_ms <= 0:
            return 0.0
        return round((self.frames_processed - 1) * 1000 / span_ms, 2)
