"""Frames on their way out: resize, JPEG encode/decode, and the two wire formats of a frame.

Every frame is resized and encoded once and its message built once, whatever the number of
viewers; these helpers keep that work small. `decode_jpeg` is the gate for frames that arrive from
outside (the ingest endpoint): it checks the bytes before OpenCV decodes them.
"""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np

# 4096 x 4096: far above any camera we stream, far below what would exhaust memory when decoded.
DEFAULT_MAX_PIXELS = 4096 * 4096

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
# Start-of-frame markers carry the image size: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field: TEM, RST0-7, SOI.
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD9)])
_SOS = 0xDA
_HEADER_LENGTH = struct.Struct(">I")


class InvalidFrame(ValueError):
    """The bytes are not a frame we accept; the message says why, in words a user can act on."""


def resize_to_width(frame: np.ndarray, max_width: int) -> np.ndarray:
    """Scale `frame` down to at most `max_width` pixels wide, keeping its aspect ratio.

    Never upscales; returns `frame` itself when it is already narrow enough (no copy).
    """
    height, width = frame.shape[:2]
    if max_width <= 0 or width <= max_width:
        return frame
    new_height = max(1, round(height * max_width / width))
    return cv2.resize(frame, (max_width, new_height), interpolation=cv2.INTER_AREA)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """JPEG-encode a BGR (or grayscale) frame at `quality` (1-100)."""
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"could not JPEG-encode a frame of shape {frame.shape}")
    return buffer.tobytes()


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame header, without decoding the image.

    Raises InvalidFrame when the bytes are not a JPEG or its headers are cut short.
    """
    if not data:
        raise InvalidFrame("the frame is empty")
    if not data.startswith(_SOI):
        raise InvalidFrame("the frame is not a JPEG image (it does not start with FF D8)")
    position = 2
    size = len(data)
    while position < size:
        if data[position] != 0xFF:
            raise InvalidFrame("the JPEG headers are corrupt")
        # Any number of FF fill bytes may precede a marker.
        while position < size and data[position] == 0xFF:
            position += 1
        if position >= size:
            break
        marker = data[position]
        position += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == 0xD9 or marker == _SOS:
            raise InvalidFrame("the JPEG has no frame header before its image data")
        if position + 2 > size:
            break
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2:
            raise InvalidFrame("the JPEG headers are corrupt")
        if marker in _SOF_MARKERS:
            if position + 7 > size:
                break
            height, width = struct.unpack_from(">HH", data, position + 3)
            if width == 0 or height == 0:
                raise InvalidFrame("the JPEG header gives no image size")
            return width, height
        position += length
    raise InvalidFrame("the JPEG is truncated: its headers end before the image size")


def decode_jpeg(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG bytes from outside into a BGR frame, or raise InvalidFrame saying why.

    The size in the header is checked against `max_pixels` before anything is decoded, so a small
    file that claims a huge image cannot make us allocate for it. A JPEG without its end-of-image
    marker is refused as truncated (libjpeg would otherwise return it padded with grey).
    """
    width, height = jpeg_dimensions(data)
    if width * height > max_pixels:
        raise InvalidFrame(
            f"the JPEG is {width}x{height} ({width * height} pixels); "
            f"the limit is {max_pixels} pixels"
        )
    # Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so FF D9
    # found there is the real end of image; encoders may pad after it.
    if data.rfind(_EOI) < 4:
        raise InvalidFrame("the JPEG is truncated: it has no end-of-image marker")
    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.size == 0:
        raise InvalidFrame("the JPEG could not be decoded")
    return frame


def frame_data_json(
    *, frame_b64: str, timestamp_ms: int, camera_id: str, detections: list[dict] | None
) -> str:
    """The seed's FrameData message: `{"frame", "timestamp", "camera_id", "detections"?}`.

    `detections` is left out when detection did not run on this frame (an empty list means it ran
    and found nothing). Build it once per frame and send the same string to every viewer.
    """
    message: dict = {"frame": frame_b64, "timestamp": int(timestamp_ms), "camera_id": camera_id}
    if detections is not None:
        message["detections"] = detections
    return json.dumps(message, separators=(",", ":"))


def frame_data_binary(
    *, jpeg: bytes, timestamp_ms: int, camera_id: str, detections: list[dict] | None
) -> bytes:
    """The lean binary form of FrameData for our own player (no base64).

    Layout, in order:
      - 4 bytes: length N of the header, unsigned big-endian;
      - N bytes: UTF-8 JSON header `{"timestamp", "camera_id", "detections"?}` (the FrameData
        fields except `frame`; `detections` left out when detection did not run);
      - the rest: the JPEG bytes, as they are.
    """
    header: dict = {"timestamp": int(timestamp_ms), "camera_id": camera_id}
    if detections is not None:
        header["detections"] = detections
    return binary_message(header, jpeg)


def binary_message(header: dict, payload: bytes) -> bytes:
    """A message of our binary stream framing: 4-byte big-endian length of the UTF-8 JSON
    header, the header, then the payload (a JPEG, or H.264 as fragmented MP4)."""
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((_HEADER_LENGTH.pack(len(header_bytes)), header_bytes, payload))


def parse_frame_data_binary(message: bytes) -> tuple[dict, bytes]:
    """Split a `frame_data_binary` message into its header dict and JPEG bytes."""
    if len(message) < _HEADER_LENGTH.size:
        raise InvalidFrame("the binary frame is shorter than its length prefix")
    (length,) = _HEADER_LENGTH.unpack_from(message)
    end = _HEADER_LENGTH.size + length
    if end > len(message):
        raise InvalidFrame("the binary frame's header is longer than the message")
    try:
        header = json.loads(message[_HEADER_LENGTH.size : end])
    except ValueError as error:
        raise InvalidFrame(f"the binary frame's header is not JSON: {error}") from error
    return header, message[end:]
