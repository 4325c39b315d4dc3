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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from cameras import source_policy
from cameras.source_policy import PolicyRefusal
from cameras.vision.frames import resize_to_width
from cameras.vision.yolo import (
    ModelOutputError,
    decode_output,
    letterbox,
    model_input_size,
    non_max_suppression,
)
from cameras.zones import Polygon

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


MAX_MOTION_CONTOURS = 64


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
    background after about 0.22 x `history` frames (about 4 s at 30 detections a second), and an
    object that was in the first frame leaves a "ghost" box where it stood for as long.
    The first `warmup_frames` frames only teach the model and report nothing. A frame where more
    than half the picture moves (lights switched, camera moved or reconnected) reports nothing and
    restarts the model from that frame.

    `masks` (polygons in fractions of the frame, `cameras.zones`) are areas where motion is
    ignored: their pixels are taken out of the foreground before anything is boxed.
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
        masks: Sequence[Polygon] = (),
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
        self._masks = tuple(masks)
        self._kept: np.ndarray | None = None  # 255 where motion counts, at processing size

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
            self._kept = _kept_area(self._masks, small.shape[1], small.shape[0])
            self.reset()
        # A fixed rate from the first frame: MOG2's default rate starts fast (1/2n) and would
        # learn an object that moves during the first seconds into the background.
        mask = self._subtractor.apply(small, learningRate=self._learning_rate)
        self._frames_seen += 1
        if self._frames_seen <= self.warmup_frames:
            return []
        if self._kept is not None:
            cv2.bitwise_and(mask, self._kept, dst=mask)
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
        if len(contours) > MAX_MOTION_CONTOURS:
            # A noisy picture breaks into specks; the largest regions are the ones worth boxing,
            # and merging stays cheap.
            contours = sorted(contours, key=cv2.contourArea, reverse=True)[:MAX_MOTION_CONTOURS]
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


def _kept_area(masks: Sequence[Polygon], width: int, height: int) -> np.ndarray | None:
    """255 outside every mask and 0 inside, at `width`×`height`; None without masks."""
    if not masks:
        return None
    kept = np.full((height, width), 255, np.uint8)
    for polygon in masks:
        points = np.array([[x * width, y * height] for x, y in polygon.points], np.int32)
        cv2.fillPoly(kept, [points], 0)
    return kept


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


class PersonDetector:
    """People, with OpenCV's HOG descriptor and its default linear SVM (Dalal-Triggs).

    The frame is scaled down to `processing_width` (cost grows with the pixel count); HOG's
    window is 64x128, so a person must be at least about 128/`processing_width` of the frame's
    width tall in the scaled frame: at the default 400, about a third of a 480-line picture.
    Boxes include HOG's margin around the body.

    Confidence maps the SVM margin w (how far past the decision boundary a window is; 0 is the
    boundary) to w / (1 + w): 0.5 at w = 1, 0.75 at w = 3. Overlapping boxes go through NMS.
    """

    name = "person"

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        processing_width: int = 400,
        scale: float = 1.1,
        nms_threshold: float = 0.45,
    ) -> None:
        self.min_confidence = min_confidence
        self.processing_width = processing_width
        self.scale = scale
        self.nms_threshold = nms_threshold
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frame: np.ndarray) -> list[Detection]:
        frame_height, frame_width = frame.shape[:2]
        small = resize_to_width(frame, self.processing_width)
        if small.shape[0] < 128 or small.shape[1] < 64:
            return []
        rects, weights = self._hog.detectMultiScale(
            small, winStride=(8, 8), padding=(8, 8), scale=self.scale
        )
        if len(rects) == 0:
            return []
        margins = np.clip(np.asarray(weights, dtype=np.float32).reshape(-1), 0.0, None)
        confidences = margins / (1.0 + margins)
        keep = cv2.dnn.NMSBoxes(
            rects.tolist(), confidences.tolist(), self.min_confidence, self.nms_threshold
        )
        factor = frame_width / small.shape[1]
        detections = []
        for index in np.asarray(keep, dtype=np.int64).reshape(-1):
            x, y, width, height = (float(value) * factor for value in rects[index])
            box = clip_box(x, y, width, height, frame_width, frame_height)
            if box is not None:
                detections.append(Detection("person", float(confidences[index]), box))
        return detections


class FaceDetector:
    """Frontal faces, with the Haar cascade shipped in `cv2.data.haarcascades`.

    Runs on a grayscale, histogram-equalized copy scaled down to `processing_width`; the smallest
    face found is `min_size` pixels there (at the defaults, 18/360 of the frame's width, 32 px in a
    640-wide frame). Only roughly frontal, upright faces are found.

    Confidence comes from the cascade's last-stage weight w (`detectMultiScale3` with
    `outputRejectLevels=True`): how far past the final stage's threshold the window scored,
    mapped to w / (2 + w), so 0.5 at w = 2 and about 0.8 for a clear face (w around 7).
    """

    name = "face"
    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        processing_width: int = 360,
        scale_factor: float = 1.15,
        min_neighbors: int = 5,
        min_size: int = 18,
    ) -> None:
        self.min_confidence = min_confidence
        self.processing_width = processing_width
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        path = cv2.data.haarcascades + self.CASCADE
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorConfigError(f"could not load OpenCV's face cascade from {path}")

    def detect(self, frame: np.ndarray) -> list[Detection]:
        frame_height, frame_width = frame.shape[:2]
        small = resize_to_width(frame, self.processing_width)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        gray = cv2.equalizeHist(gray)
        rects, _, level_weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        factor = frame_width / small.shape[1]
        detections = []
        for rect, weight in zip(rects, np.asarray(level_weights).reshape(-1), strict=True):
            margin = max(0.0, float(weight))
            confidence = margin / (2.0 + margin)
            if confidence < self.min_confidence:
                continue
            x, y, width, height = (float(value) * factor for value in rect)
            box = clip_box(x, y, width, height, frame_width, frame_height)
            if box is not None:
                detections.append(Detection("face", confidence, box))
        return detections


MAX_LABELS = 10_000
MAX_LABELS_FILE_BYTES = 1_000_000


def load_labels(path: str) -> list[str]:
    """Class names from a labels file, one per line (index = line number, from 0)."""
    try:
        if os.path.getsize(path) > MAX_LABELS_FILE_BYTES:
            raise DetectorConfigError(f"the labels file {path} is larger than 1 MB")
        with open(path, encoding="utf-8") as labels_file:
            lines = [line.strip() for line in labels_file.read().splitlines()]
    except FileNotFoundError:
        raise DetectorConfigError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DetectorConfigError(f"could not read the labels file {path}: {error}") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DetectorConfigError(f"the labels file {path} is empty")
    if len(lines) > MAX_LABELS:
        raise DetectorConfigError(f"the labels file {path} has more than {MAX_LABELS} labels")
    if "" in lines:
        raise DetectorConfigError(
            f"line {lines.index('') + 1} of the labels file {path} is empty: "
            "each line names the class of that index"
        )
    return lines


class OnnxDetector:
    """A YOLO-format ONNX model (YOLOv5 or YOLOv8 output) with its labels, run with cv2.dnn.

    The frame is letterboxed into the model's input size (read from the model; 640x640 when it
    is dynamic), scaled to 0..1 RGB, and the output decoded here (see `cameras.vision.yolo`):
    candidates under `min_confidence` are dropped, then per-class NMS. Confidence is the model's
    own score (class score, times objectness for YOLOv5). Boxes are mapped back to frame pixels.
    """

    name = "onnx"
    DEFAULT_INPUT_SIZE = 640

    def __init__(
        self,
        model_path: str,
        labels_path: str,
        *,
        min_confidence: float = 0.5,
        nms_threshold: float = 0.45,
    ) -> None:
        self.min_confidence = min_confidence
        self.nms_threshold = nms_threshold
        self.labels = load_labels(labels_path)
        try:
            with open(model_path, "rb") as model_file:
                model_bytes = model_file.read()
        except FileNotFoundError:
            raise DetectorConfigError(f"ONNX model not found: {model_path}") from None
        except OSError as error:
            raise DetectorConfigError(
                f"could not read the ONNX model {model_path}: {error}"
            ) from None
        try:
            size = model_input_size(model_bytes)
            self._net = cv2.dnn.readNetFromONNX(np.frombuffer(model_bytes, dtype=np.uint8))
        except (ValueError, cv2.error) as error:
            raise DetectorConfigError(
                f"{model_path} is not an ONNX model OpenCV can load: {_error_summary(error)}"
            ) from None
        self.input_width, self.input_height = size or (
            self.DEFAULT_INPUT_SIZE,
            self.DEFAULT_INPUT_SIZE,
        )
        self._output_names = self._net.getUnconnectedOutLayersNames()
        self._canvas: np.ndarray | None = None
        # One run now, so a model whose output does not fit the labels fails at configuration,
        # not on the first frame.
        try:
            self.detect(np.zeros((self.input_height, self.input_width, 3), dtype=np.uint8))
        except (ModelOutputError, cv2.error) as error:
            raise DetectorConfigError(f"{model_path}: {_error_summary(error)}") from None

    def detect(self, frame: np.ndarray) -> list[Detection]:
        frame_height, frame_width = frame.shape[:2]
        canvas, placement = letterbox(frame, self.input_width, self.input_height, self._canvas)
        self._canvas = canvas
        blob = cv2.dnn.blobFromImage(canvas, scalefactor=1 / 255.0, swapRB=True)
        self._net.setInput(blob)
        output = self._net.forward(self._output_names)[0]
        boxes, scores, class_ids = decode_output(output, len(self.labels), self.min_confidence)
        keep = non_max_suppression(boxes, scores, class_ids, self.nms_threshold)
        frame_boxes = placement.to_frame(boxes[keep])
        detections = []
        for (x, y, width, height), score, class_id in zip(
            frame_boxes, scores[keep], class_ids[keep], strict=True
        ):
            box = clip_box(x, y, width, height, frame_width, frame_height)
            if box is not None:
                detections.append(Detection(self.labels[int(class_id)], float(score), box))
        return detections


def _error_summary(error: Exception) -> str:
    """The useful part of an error: OpenCV's end with "... error: (-215:...) what went wrong"."""
    lines = str(error).strip().splitlines()
    return lines[-1].split(" error: ", 1)[-1] if lines else type(error).__name__


def build_detectors(
    names: Sequence[str],
    *,
    min_confidence: float = 0.5,
    onnx_model: str | None = None,
    onnx_labels: str | None = None,
    motion_masks: Sequence[Polygon] = (),
) -> list[Detector]:
    """New detector instances for one camera, in the order named (duplicates ignored).

    `min_confidence` applies to `person`, `face` and `onnx`; see MotionDetector for `motion`,
    which ignores what moves inside `motion_masks`.

    Raises DetectorConfigError for an unknown name or an unusable ONNX model or labels file.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise DetectorConfigError("the minimum confidence must be between 0 and 1")
    detectors: list[Detector] = []
    for name in dict.fromkeys(names):
        if name == "motion":
            # Motion's confidence is a density, not a probability: its boxes are filtered by
            # size and its own density floor, not by the camera's minimum confidence.
            detectors.append(MotionDetector(masks=motion_masks))
        elif name == "person":
            detectors.append(PersonDetector(min_confidence=min_confidence))
        elif name == "face":
            detectors.append(FaceDetector(min_confidence=min_confidence))
        elif name == "onnx":
            if not onnx_model or not onnx_labels:
                raise DetectorConfigError(
                    "the onnx detector needs a model file and a labels file "
                    "(a YOLOv5/YOLOv8 .onnx export and its class names, one per line)"
                )
            model_path = _allowed_file("the ONNX model", onnx_model)
            labels_path = _allowed_file("the labels file", onnx_labels)
            detectors.append(OnnxDetector(model_path, labels_path, min_confidence=min_confidence))
        else:
            raise DetectorConfigError(
                f"unknown detector {name!r}: choose from {', '.join(AVAILABLE_DETECTORS)}"
            )
    return detectors


def _allowed_file(what: str, path: str) -> str:
    """The resolved path, if the source policy lets cameras read it; the same refusal whether the
    file is missing or outside the allowed folders."""
    try:
        return source_policy.allowed_file(path)
    except PolicyRefusal as refusal:
        raise DetectorConfigError(f"{what}: {refusal}") from None


def run_detectors(detectors: Sequence[Detector], frame: np.ndarray) -> list[Detection]:
    """All detections of all `detectors` on one frame, in detector order."""
    detections: list[Detection] = []
    for detector in detectors:
        detections.extend(detector.detect(frame))
    return detections
