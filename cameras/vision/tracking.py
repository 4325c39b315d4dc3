"""Objects tracked across frames: each detection of an object gets the same `track_id`.

A SORT-style tracker (Bewley et al., 2016), kept per camera by its frame pipeline:

- **Motion model.** Each track is a constant-velocity Kalman filter over its box's centre and
  size. Before a frame's detections are matched, every track is predicted to that frame's
  capture time (the real interval, so a camera that drops frames or varies its rate predicts
  right).
- **Association.** Per class, detections are assigned to predicted tracks by `scipy`'s linear
  assignment (the Hungarian method) on a cost of overlap (1 − IoU) plus centre distance. A pair
  may match when the boxes overlap or when the centres are close for their size, so an object
  that moves more than its own width between two detections (a car at 5 fps) keeps its id.
- **Confirmation.** A track counts once it has been detected `min_hits` times
  (TRACK_MIN_HITS): a detector's one-off false positive (HOG taking a shadow for a person for a
  frame or two) never becomes a box on the player or an event. Until then its detections are
  left out of the frame's detections.
- **Occlusion.** A track that finds no detection coasts on its prediction for up to
  `max_lost_ms` (TRACK_LOST_SECONDS), so an object hidden behind another, or missed by its
  detector for a few frames, comes back under its id; after that it is forgotten, and the
  object's next detection starts a new track.

`motion` is not an object: its boxes are blobs of changing pixels that merge and split as
things pass, so they are left untracked (no `track_id`), and the events made of them stay
per-camera presence (see `events.tracking`).

Track ids are whole numbers from 1, unique per pipeline (a camera's worker, or its ingest
process) until it restarts; an event's own identity is its database row.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

UNTRACKED_CLASSES = frozenset({"motion"})

# Process noise: how far a box may wander from constant velocity per second, as fractions of
# its height (the scale DeepSORT uses, per second rather than per frame).
_POSITION_NOISE = 1 / 4
_VELOCITY_NOISE = 1 / 2
_MEASUREMENT_NOISE = 1 / 20
_FORBIDDEN = 1e6


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Intersection over union of (x, y, width, height) boxes: of two boxes, or of arrays of
    them (shape (..., 4)) broadcast against each other, as the tracker's rows of predictions
    against its columns of detections."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ax, ay, aw, ah = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bx, by, bw, bh = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    width = np.minimum(ax + aw, bx + bw) - np.maximum(ax, bx)
    height = np.minimum(ay + ah, by + bh) - np.maximum(ay, by)
    overlap = np.maximum(width, 0.0) * np.maximum(height, 0.0)
    union = aw * ah + bw * bh - overlap
    # No overlap is 0, also between boxes of no area (whose union is 0).
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=overlap > 0)


def _box_to_state(bbox: Sequence[float]) -> np.ndarray:
    x, y, width, height = bbox
    return np.array([x + width / 2, y + height / 2, width, height], dtype=float)


@dataclass(eq=False)
class _Track:
    track_id: int
    label: str
    mean: np.ndarray  # cx, cy, w, h, and their velocities per second
    covariance: np.ndarray
    updated_ms: int  # the capture time of its last detection
    predicted_ms: int
    hits: int = 1

    @property
    def box(self) -> tuple[float, float, float, float]:
        cx, cy, width, height = self.mean[:4]
        width, height = max(width, 1.0), max(height, 1.0)
        return cx - width / 2, cy - height / 2, width, height

    def predict(self, timestamp_ms: int) -> None:
        dt = max(0, timestamp_ms - self.predicted_ms) / 1000
        if dt == 0:
            return
        transition = np.eye(8)
        transition[:4, 4:] = dt * np.eye(4)
        scale = max(self.mean[3], 1.0)
        noise = np.diag(
            np.square([_POSITION_NOISE * scale] * 4 + [_VELOCITY_NOISE * scale] * 4) * dt
        )
        self.mean = transition @ self.mean
        self.covariance = transition @ self.covariance @ transition.T + noise
        self.predicted_ms = timestamp_ms

    def update(self, bbox: Sequence[float], timestamp_ms: int) -> None:
        measured = _box_to_state(bbox)
        measurement_noise = np.diag(np.square([_MEASUREMENT_NOISE * max(measured[3], 1.0)] * 4))
        projected = self.covariance[:4, :4] + measurement_noise
        gain = self.covariance[:, :4] @ np.linalg.inv(projected)
        self.mean = self.mean + gain @ (measured - self.mean[:4])
        self.covariance = self.covariance - gain @ self.covariance[:4, :]
        self.updated_ms = max(self.updated_ms, timestamp_ms)
        self.hits += 1


def _new_track(track_id: int, label: str, bbox: Sequence[float], timestamp_ms: int) -> _Track:
    mean = np.zeros(8)
    mean[:4] = _box_to_state(bbox)
    height = max(mean[3], 1.0)
    # Position known to the detector's precision, velocity not at all yet.
    covariance = np.diag(np.square([_MEASUREMENT_NOISE * 2 * height] * 4 + [10 * height] * 4))
    return _Track(
        track_id=track_id,
        label=label,
        mean=mean,
        covariance=covariance,
        updated_ms=timestamp_ms,
        predicted_ms=timestamp_ms,
    )


def _match_costs(predicted: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """How unlikely it is that each detected box (columns) is the object predicted at each
    predicted box (rows), or _FORBIDDEN: no overlap and centres further apart than the boxes'
    mean size, or a size that changed more than threefold. All pairs at once in numpy: pair by
    pair in Python, the matrix cost more than the rest of the tracker from a few objects on."""
    # (tracks, 1) against (detections,): every pair, a row per track.
    px, py, pw, ph = predicted.T[:, :, None]
    dx, dy, dw, dh = detected.T
    area_ratio = (dw * dh) / (pw * ph)
    overlap = box_iou(predicted[:, None, :], detected[None, :, :])
    size = (np.hypot(pw, ph) + np.hypot(dw, dh)) / 2
    distance = np.hypot((px + pw / 2) - (dx + dw / 2), (py + ph / 2) - (dy + dh / 2)) / size
    forbidden = (area_ratio < 1 / 3) | (area_ratio > 3) | ((overlap == 0) & (distance > 1.0))
    return np.where(forbidden, _FORBIDDEN, (1 - overlap) + distance)


class ObjectTracker:
    """One camera's tracks. Not thread-safe: its pipeline calls it under its detection lock."""

    def __init__(self, *, max_lost_ms: int, min_hits: int = 1) -> None:
        if max_lost_ms < 0 or min_hits < 1:
            raise ValueError("max_lost_ms must not be negative, and min_hits must be at least 1")
        self.max_lost_ms = max_lost_ms
        self.min_hits = min_hits
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)

    @property
    def track_count(self) -> int:
        return len(self._tracks)

    def update(self, detections: list[dict], timestamp_ms: int) -> list[dict]:
        """The frame's detections to keep, in their order: untracked classes as they are, and
        the detections of confirmed tracks, each given its `"track_id"` (in place). Detections
        are the seed's dicts (`class`, `bbox`, …) of the frame captured at `timestamp_ms`."""
        # Forget tracks lost for too long, then predict the rest to this frame.
        self._tracks = [
            track for track in self._tracks if timestamp_ms - track.updated_ms <= self.max_lost_ms
        ]
        for track in self._tracks:
            track.predict(timestamp_ms)
        by_class: dict[str, list[dict]] = {}
        for detection in detections:
            label = str(detection["class"])
            if label not in UNTRACKED_CLASSES:
                by_class.setdefault(label, []).append(detection)
        for label, found in by_class.items():
            self._associate(label, found, timestamp_ms)
        confirmed = {track.track_id for track in self._tracks if track.hits >= self.min_hits}
        return [
            detection
            for detection in detections
            if "track_id" not in detection or detection["track_id"] in confirmed
        ]

    def _associate(self, label: str, found: list[dict], timestamp_ms: int) -> None:
        tracks = [track for track in self._tracks if track.label == label]
        unmatched = set(range(len(found)))
        if tracks:
            costs = _match_costs(
                np.array([track.box for track in tracks], dtype=float),
                np.array([detection["bbox"] for detection in found], dtype=float),
            )
            for row, column in zip(*linear_sum_assignment(costs), strict=True):
                if costs[row, column] >= _FORBIDDEN:
                    continue
                track = tracks[row]
                track.update(found[column]["bbox"], timestamp_ms)
                found[column]["track_id"] = track.track_id
                unmatched.discard(column)
        for column in sorted(unmatched):
            track = _new_track(next(self._ids), label, found[column]["bbox"], timestamp_ms)
            self._tracks.append(track)
            found[column]["track_id"] = track.track_id
