"""Detectors: find things in a BGR frame and say where, as boxes in that frame's pixels.

- `motion`: background subtraction (MOG2) turned into boxes around what moves.
- `person`: OpenCV's HOG + linear SVM people detector.
- `face`: the Haar frontal-face cascade shipped with OpenCV.
- `onnx`: a user-supplied YOLO-format ONNX model (YOLOv5 or YOLOv8 output) run with cv2.dnn.

None needs downloaded weights except `onnx`, whose model the operator supplies. Detectors keep
state and caches per instance (the motion detector's background model above all), so each camera
gets its own instances from `build_detectors`, used from one thread at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from cameras.vision.frames import resize_to_width

AVAILABLE_DETECTORS = ("motion", "person", "face", "onnx")


class DetectorConfigError(ValueError):
    """A detector cannot be built as configured; the message says what to fix."""


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float  # 0..1
    bbox: tuple[int, int, int, int]  # x, y, width, height in pixels of the frame given to detect()

    def as_dict(self) -> dict:
        """The seed's Detection: `{"class", "confidence", "bbox": [x, y, width, height]}`."""
        x, y, width, height = self.bbox
        return {
            "class": self.label,
            "confidence": round(min(1.0, max(0.0, float(self.confidence))), 3),
            "bbox": [int(x), int(y), int(width), int(height)],
        }


class Detector(Protocol):
    name: str

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Detections in a BGR frame, boxes clipped to it, at or above the detector's threshold."""
        ...


def clip_box(
    x: float, y: float, width: float, height: float, frame_width: int, frame_height: int
) -> tuple[int, int, int, int] | None:
    """The box as whole pixels inside the frame, or None when nothing of it is inside."""
    left = max(0, min(frame_width, int(round(x))))
    top = max(0, min(frame_height, int(round(y))))
    right = max(0, min(frame_width, int(round(x + width))))
    bottom = max(0, min(frame_height, int(round(y + height))))
    if right <= left or bottom <= top:
        return None
    return left, top, right - left, bottom - top


class MotionDetector:
    """Boxes around what moves, from a MOG2 background model kept per camera.

    Each frame is scaled down to `processing_width`, fed to the background model (shadows off), and
    the foreground mask is cleaned (an opening removes specks, a closing joins the parts of one
    object). Each outer contour's box is kept when the moving pixels in it cover at least
    `min_area` of the frame; boxes that overlap or nearly touch are merged.

    Confidence is the fraction of the box's pixels that are moving (after the cleaning, with each
    moving outline filled): a solid moving object scores near 1, a walking person's box about 0.5-0.8,
    a box that mostly frames still background low. Boxes under `min_confidence` (0.3) are dropped.

    The model learns at a fixed rate of 1/`history` per frame: an object that stops becomes
    background after about 0.2 x `history` frames (about 3 s at 30 detections a second), and an
    object that was in the first frame leaves a "ghost" box where it stood for as long.
    The first `warmup_frames` frames only teach the model and report nothing. A frame where more
    than half the picture moves (lights switched, camera moved or reconnected) reports nothing and
    restarts the model from that frame.
    """

    name = "motion"

    def __init__(
        self,
        *,
        min_confidence: float = 0.3,
        min_area: float = 0.002,
        processing_width: int = 320,
        warmup_frames: int = 5,
        history: int = 500,
        var_threshold: float = 32.0,
    ) -> None:
        self.min_confidence = min_confidence
        self.min_area = min_area
        self.processing_width = processing_width
        self.warmup_frames = warmup_frames
        self._history = history
        self._learning_rate = 1.0 / history
        self._var_threshold = var_threshold
        self._open_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
        self._shape: tuple[int, ...] | None = None
        self._subtractor: cv2.BackgroundSubtractorMOG2 | None = None
        self._frames_seen = 0

    def reset(self) -> None:
        """Forget the background, as when the camera reconnects or its picture size changes."""
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=self._history, varThreshold=self._var_threshold, detectShadows=False
        )
        # Only a colour seen most of the time is background. With MOG2's 0.9, colours that keep
        # coming back (cars along a road, people along a corridor) add up and become background.
        self._subtractor.setBackgroundRatio(0.8)
        self._frames_seen = 0

    def detect(self, frame: np.ndarray) -> list[Detection]:
        frame_height, frame_width = frame.shape[:2]
        small = resize_to_width(frame, self.processing_width)
        if small.shape != self._shape or self._subtractor is None:
            self._shape = small.shape
            self.reset()
        # A fixed rate from the first frame: MOG2's default rate starts fast (1/2n) and would
        # learn an object that moves during the first seconds into the background.
        mask = self._subtractor.apply(small, learningRate=self._learning_rate)
        self._frames_seen += 1
        if self._frames_seen <= self.warmup_frames:
            return []
        cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open_kernel, dst=mask)
        cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close_kernel, dst=mask)
        small_height, small_width = mask.shape
        if cv2.countNonZero(mask) > 0.5 * small_width * small_height:
            self.reset()
            self._subtractor.apply(small, learningRate=self._learning_rate)
            self._frames_seen = self.warmup_frames
            return []
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        # Filled outlines: an object whose inside matches the background still counts as solid.
        cv2.drawContours(mask, contours, -1, 255, thickness=cv2.FILLED)
        boxes = [cv2.boundingRect(contour) for contour in contours]
        gap = max(2, small_width // 80)
        min_pixels = self.min_area * small_width * small_height
        scale_x = frame_width / small_width
        scale_y = frame_height / small_height
        detections = []
        for x, y, width, height in merge_boxes(boxes, gap=gap):
            moving = cv2.countNonZero(mask[y : y + height, x : x + width])
            if moving < min_pixels:
                continue
            confidence = moving / (width * height)
            if confidence < self.min_confidence:
                continue
            box = clip_box(
                x * scale_x,
                y * scale_y,
                width * scale_x,
                height * scale_y,
                frame_width,
                frame_height,
            )
            if box is not None:
                detections.append(Detection("motion", confidence, box))
        return detections


def merge_boxes(
    boxes: Sequence[tuple[int, int, int, int]], *, gap: int = 0
) -> list[tuple[int, int, int, int]]:
    """Merge (x, y, w, h) boxes that overlap or lie within `gap` pixels of each other."""
    merged = [list(box) for box in boxes]
    changed = True
    while changed:
        changed = False
        result: list[list[int]] = []
        for box in merged:
            x, y, w, h = box
            for other in result:
                ox, oy, ow, oh = other
                if (
                    x <= ox + ow + gap
                    and ox <= x + w + gap
                    and y <= oy + oh + gap
                    and oy <= y + h + gap
                ):
                    left, top = min(x, ox), min(y, oy)
                    right, bottom = max(x + w, ox + ow), max(y + h, oy + oh)
                    other[:] = [left, top, right - left, bottom - top]
                    changed = True
                    break
            else:
                result.append(box)
        merged = result
    return [(x, y, w, h) for x, y, w, h in merged]


def build_detectors(
    names: Sequence[str],
    *,
    min_confidence: float = 0.5,
    onnx_model: str | None = None,
    onnx_labels: str | None = None,
) -> list[Detector]:
    """New detector instances for one camera, in the order named (duplicates ignored).

    `min_confidence` applies to `person`, `face` and `onnx`; see MotionDetector for `motion`.

    Raises DetectorConfigError for an unknown name or an unusable ONNX model or labels file.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise DetectorConfigError("the minimum confidence must be between 0 and 1")
    detectors: list[Detector] = []
    for name in dict.fromkeys(names):
        if name == "motion":
            # Motion's confidence is a density, not a probability: its boxes are filtered by
            # size and its own density floor, not by the camera's minimum confidence.
            detectors.append(MotionDetector())
        else:
            raise DetectorConfigError(
                f"unknown detector {name!r}: choose from {', '.join(AVAILABLE_DETECTORS)}"
            )
    return detectors


def run_detectors(detectors: Sequence[Detector], frame: np.ndarray) -> list[Detection]:
    """All detections of all `detectors` on one frame, in detector order."""
    detections: list[Detection] = []
    for detector in detectors:
        detections.extend(detector.detect(frame))
    return detections
