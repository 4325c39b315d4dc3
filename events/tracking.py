"""Turn a camera's stream of per-frame detections into detection events and session totals.

Plain Python (no Django), so the rules can be read and tested alone:

- **Per-class presence.** A detection event is a continuous presence of one *class* on one
  camera: at most one event per class per camera is open at a time. Two people in view at once
  are one `person` event (its peak confidence and best box come from the most confident of
  them); we do not try to tell individuals apart, because none of the built-in detectors can.
- **Gap tolerance.** A class that disappears for at most `gap_seconds` (the
  `EVENT_GAP_SECONDS` setting) and comes back continues the same event, so a detector missing a
  few frames does not split one visit into many. An event is closed once a frame arrives more
  than `gap_seconds` after the class was last seen, or when the camera stops (`close_all`).
  Its end is the time the class was last seen, not the time the closing was noticed.
- **Longest event.** A presence that lasts longer than `max_seconds` (`EVENT_MAX_SECONDS`) is
  cut into consecutive events, like ZoneMinder's section length: a scene that never gets still
  (a street, the `demo:` camera) still yields dated events and fresh snapshots hour by hour,
  instead of one event that never ends.
- **Best frame.** Each event keeps the frame of its most confident detection, that detection's
  box, and every box of its class in that frame (two people in view: both are drawn on the
  snapshot).
- **Session counts** are *events started per class* during the session: the same unit the API,
  the pages and the assistant count, so every number in the product means "events".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_local_ids = itertools.count(1)


@dataclass
class TrackedEvent:
    """An event as the tracker sees it; `local_id` identifies it until it has a database row."""

    label: str
    started_ms: int
    last_seen_ms: int
    peak_confidence: float
    best_bbox: list[int]
    best_frame: Any = None
    # (bbox, confidence) of every detection of this class in the best frame, strongest first.
    best_frame_boxes: list[tuple[list[int], float]] = field(default_factory=list)
    frames_seen: int = 1
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


def _boxes_per_class(
    detections: Iterable[Mapping[str, Any]],
) -> dict[str, list[tuple[list[int], float]]]:
    """Each class's (bbox, confidence) pairs in one frame, strongest first."""
    boxes: dict[str, list[tuple[list[int], float]]] = {}
    for detection in detections:
        bbox = [int(round(v)) for v in detection["bbox"]]
        boxes.setdefault(str(detection["class"]), []).append((bbox, float(detection["confidence"])))
    for pairs in boxes.values():
        pairs.sort(key=lambda pair: -pair[1])
    return boxes


class EventTracker:
    """Per-camera event state. Not thread-safe: one caller (the camera's recorder) feeds it."""

    def __init__(self, *, gap_seconds: float, max_seconds: float = 0.0):
        """`max_seconds` 0 means events are never cut, however long they last."""
        if gap_seconds < 0 or max_seconds < 0:
            raise ValueError("gap_seconds and max_seconds must not be negative")
        self.gap_ms = int(round(gap_seconds * 1000))
        self.max_ms = int(round(max_seconds * 1000))
        self.open: dict[str, TrackedEvent] = {}

    def observe(
        self,
        timestamp_ms: int,
        detections: Iterable[Mapping[str, Any]],
        frame: Any = None,
    ) -> list[Operation]:
        """Feed one processed frame (its detections may be empty); return what changed.

        `frame` is kept by reference when it becomes an event's best frame: callers that reuse
        frame buffers must pass a copy.
        """
        operations: list[Operation] = []
        # Close first, so a class that comes back after a long gap opens a *new* event, and a
        # class still present after the longest event continues in a new one from this frame.
        operations.extend(self._close_stale(timestamp_ms))
        operations.extend(self._close_long(timestamp_ms))
        for label, boxes in _boxes_per_class(detections).items():
            bbox, confidence = boxes[0]
            event = self.open.get(label)
            if event is None:
                event = TrackedEvent(
                    label=label,
                    started_ms=timestamp_ms,
                    last_seen_ms=timestamp_ms,
                    peak_confidence=confidence,
                    best_bbox=bbox,
                    best_frame=frame,
                    best_frame_boxes=boxes,
                )
                self.open[label] = event
                operations.append(Opened(event))
                continue
            event.frames_seen += 1
            event.last_seen_ms = max(event.last_seen_ms, timestamp_ms)
            new_best = confidence > event.peak_confidence
            if new_best:
                event.peak_confidence = confidence
                event.best_bbox = bbox
                event.best_frame = frame
                event.best_frame_boxes = boxes
            operations.append(Extended(event, new_best))
        return operations

    def close_stale(self, now_ms: int) -> list[Closed]:
        """Close events whose class has not been seen for longer than the gap, as of `now_ms`."""
        return self._close_stale(now_ms)

    def close_all(self) -> list[Closed]:
        """The camera stopped: every open event ends when its class was last seen."""
        closed = [Closed(event) for event in self.open.values()]
        for operation in closed:
            operation.event.closed = True
        self.open.clear()
        return closed

    def _close_stale(self, now_ms: int) -> list[Closed]:
        return self._close(
            [
                label
                for label, event in self.open.items()
                if now_ms - event.last_seen_ms > self.gap_ms
            ]
        )

    def _close_long(self, now_ms: int) -> list[Closed]:
        if not self.max_ms:
            return []
        return self._close(
            [
                label
                for label, event in self.open.items()
                if now_ms - event.started_ms >= self.max_ms
            ]
        )

    def _close(self, labels: list[str]) -> list[Closed]:
        closed = []
        for label in labels:
            event = self.open.pop(label)
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
