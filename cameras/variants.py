"""Reduced variants of a camera's stream, for grids of tiles: `?width=320&fps=5`.

A tile needs a small picture a few times a second, not the full stream. A variant is the
camera's frames scaled down to `width` pixels (never up) and thinned to at most `fps` a second.
The process's `CameraHub` (see `cameras.fanout`) keeps one encoder per variant watched in this
process, which runs `variant_encode` once per variant frame, whatever the number of its viewers.

The values are bounded so that a process holds a handful of variants per camera, not one per
client whim: widths from `WIDTH_MIN` to `WIDTH_MAX` in steps of `WIDTH_STEP`, whole frame rates
from `FPS_MIN` to `FPS_MAX`. A viewer that gives one of the two gets the default for the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from cameras.publishing import PublishedFrame
from cameras.vision.frames import InvalidFrame, encode_jpeg, jpeg_dimensions

WIDTH_MIN = 160
WIDTH_MAX = 640
WIDTH_STEP = 80
FPS_MIN = 1
FPS_MAX = 10
DEFAULT_WIDTH = 320
DEFAULT_FPS = 5
# Tiles are small: a lower quality than a camera's default costs little to the eye there.
VARIANT_JPEG_QUALITY = 70
VARIANT_CLOSE_CODE = 4400  # after HTTP's 400: a client can tell a bad request from a refusal

_WHOLE_NUMBER = re.compile(r"[0-9]{1,4}")
# libjpeg decodes straight to 1/2, 1/4 or 1/8 of the size (scaled IDCT): far cheaper than a full
# decode followed by a resize, and the resize that follows then has little left to do.
_REDUCED_DECODES = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
    (1, cv2.IMREAD_COLOR),
)


class InvalidVariant(ValueError):
    """The query asks for a variant outside the bounds; the message says which are allowed."""


@dataclass(frozen=True, slots=True)
class Variant:
    width: int
    fps: int

    @property
    def label(self) -> str:
        return f"{self.width}px@{self.fps}fps"

    @property
    def interval_seconds(self) -> float:
        return 1.0 / self.fps


def _whole_number(query: dict[str, list[str]], name: str, low: int, high: int, step: int) -> int:
    values = query[name]
    allowed = f"{name} must be a whole number from {low} to {high}" + (
        f" in steps of {step}" if step > 1 else ""
    )
    if len(values) != 1 or not _WHOLE_NUMBER.fullmatch(values[0]):
        raise InvalidVariant(f"{allowed}.")
    value = int(values[0])
    if not low <= value <= high or (value - low) % step:
        raise InvalidVariant(f"{allowed}; got {value}.")
    return value


def variant_from_query(query: dict[str, list[str]]) -> Variant | None:
    """The variant a stream's query string asks for (parsed with `parse_qs`), or None for the
    full stream. Raises InvalidVariant for values outside the bounds."""
    if "width" not in query and "fps" not in query:
        return None
    width = (
        _whole_number(query, "width", WIDTH_MIN, WIDTH_MAX, WIDTH_STEP)
        if "width" in query
        else DEFAULT_WIDTH
    )
    fps = _whole_number(query, "fps", FPS_MIN, FPS_MAX, 1) if "fps" in query else DEFAULT_FPS
    return Variant(width=width, fps=fps)


def _scaled_detections(
    detections: list[dict] | None, x_scale: float, y_scale: float
) -> list[dict] | None:
    # Boxes are in pixels of the frame they come with: the variant's boxes are in its pixels.
    if detections is None:
        return None
    scaled = []
    for detection in detections:
        x, y, width, height = detection["bbox"]
        bbox = [
            round(x * x_scale),
            round(y * y_scale),
            max(1, round(width * x_scale)),
            max(1, round(height * y_scale)),
        ]
        scaled.append({**detection, "bbox": bbox})
    return scaled


def variant_encode(frame: PublishedFrame, variant: Variant) -> PublishedFrame:
    """The variant's frame: decoded (at a reduced scale when it can be), resized, re-encoded
    once, its boxes scaled. CPU work that releases the GIL: run it in a worker thread.

    A full frame no wider than the variant is returned itself (never upscaled, not re-encoded):
    only its rate is reduced."""
    jpeg = frame.jpeg
    full_width, full_height = jpeg_dimensions(jpeg)
    if full_width <= variant.width:
        return frame
    width = variant.width
    height = max(1, round(full_height * width / full_width))
    flags = next(flags for factor, flags in _REDUCED_DECODES if full_width // factor >= width)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    if image is None:
        raise InvalidFrame("the frame's JPEG does not decode")
    if image.shape[1] != width or image.shape[0] != height:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return PublishedFrame.build(
        camera_id=frame.camera_id,
        jpeg=encode_jpeg(image, VARIANT_JPEG_QUALITY),
        timestamp=frame.timestamp,
        detections=_scaled_detections(frame.detections, width / full_width, height / full_height),
    )
