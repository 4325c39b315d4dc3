from __future__ import annotations

import base64
import json
import struct

import cv2
import numpy as np
import pytest

from cameras.vision.frames import (
    InvalidFrame,
    decode_jpeg,
    encode_jpeg,
    frame_data_binary,
    frame_data_json,
    jpeg_dimensions,
    parse_frame_data_binary,
    resize_to_width,
)


def gradient_frame(width: int = 320, height: int = 240) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = x
    frame[..., 1] = y
    frame[..., 2] = 128
    return frame


def with_size_in_header(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its start-of-frame header claiming another size."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def test_resize_keeps_the_aspect_ratio():
    resized = resize_to_width(gradient_frame(640, 480), 320)
    assert resized.shape == (240, 320, 3)


def test_resize_never_upscales():
    frame = gradient_frame(320, 240)
    assert resize_to_width(frame, 640) is frame


def test_jpeg_round_trip_keeps_the_picture():
    frame = gradient_frame()
    jpeg = encode_jpeg(frame, 90)
    assert jpeg[:2] == b"\xff\xd8"
    decoded = decode_jpeg(jpeg)
    assert decoded.shape == frame.shape
    assert np.abs(decoded.astype(int) - frame.astype(int)).mean() < 3


def test_lower_quality_gives_smaller_jpegs():
    frame = gradient_frame()
    frame[::7] = 255  # detail that costs bytes
    assert len(encode_jpeg(frame, 30)) < len(encode_jpeg(frame, 95))


def test_jpeg_dimensions_reads_the_header():
    assert jpeg_dimensions(encode_jpeg(gradient_frame(320, 240), 80)) == (320, 240)


def test_decode_refuses_empty_bytes():
    with pytest.raises(InvalidFrame, match="empty"):
        decode_jpeg(b"")


def test_decode_refuses_random_bytes():
    noise = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidFrame, match="not a JPEG"):
        decode_jpeg(b"\x00" + noise)


def test_decode_refuses_garbage_after_a_jpeg_marker():
    noise = np.random.default_rng(2).integers(0, 255, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidFrame, match="corrupt"):
        decode_jpeg(b"\xff\xd8" + b"\x12" + noise)


def test_decode_refuses_a_png():
    ok, png = cv2.imencode(".png", gradient_frame())
    assert ok
    with pytest.raises(InvalidFrame, match="not a JPEG"):
        decode_jpeg(png.tobytes())


def test_decode_refuses_a_truncated_jpeg():
    jpeg = encode_jpeg(gradient_frame(), 80)
    with pytest.raises(InvalidFrame, match="truncated"):
        decode_jpeg(jpeg[: len(jpeg) // 2])


def test_decode_refuses_a_jpeg_cut_inside_its_headers():
    jpeg = encode_jpeg(gradient_frame(), 80)
    with pytest.raises(InvalidFrame, match="truncated"):
        decode_jpeg(jpeg[:100])


def test_decode_refuses_a_header_claiming_a_huge_image_before_decoding_it():
    jpeg = with_size_in_header(encode_jpeg(gradient_frame(), 80), 20000, 20000)
    with pytest.raises(InvalidFrame, match="20000x20000"):
        decode_jpeg(jpeg)


def test_decode_applies_the_pixel_limit_it_is_given():
    jpeg = encode_jpeg(gradient_frame(640, 480), 80)
    with pytest.raises(InvalidFrame, match="limit is 100000 pixels"):
        decode_jpeg(jpeg, max_pixels=100_000)
    assert decode_jpeg(jpeg, max_pixels=640 * 480).shape == (480, 640, 3)


def test_decode_refuses_a_jpeg_without_image_data():
    jpeg = encode_jpeg(gradient_frame(), 80)
    headers_only = jpeg[: jpeg.index(b"\xff\xda")]
    with pytest.raises(InvalidFrame, match="truncated"):
        decode_jpeg(headers_only)
    with pytest.raises(InvalidFrame, match="could not be decoded"):
        decode_jpeg(headers_only + b"\xff\xd9")


def test_invalid_frame_is_a_value_error():
    assert issubclass(InvalidFrame, ValueError)


def test_frame_data_json_has_the_seed_shape():
    jpeg = encode_jpeg(gradient_frame(), 80)
    frame_b64 = base64.b64encode(jpeg).decode()
    detections = [{"class": "person", "confidence": 0.875, "bbox": [1, 2, 30, 40]}]
    message = frame_data_json(
        frame_b64=frame_b64,
        timestamp_ms=1_700_000_000_123,
        camera_id="cam-1",
        detections=detections,
    )
    parsed = json.loads(message)
    assert list(parsed) == ["frame", "timestamp", "camera_id", "detections"]
    assert parsed == {
        "frame": frame_b64,
        "timestamp": 1_700_000_000_123,
        "camera_id": "cam-1",
        "detections": detections,
    }
    assert base64.b64decode(parsed["frame"]) == jpeg


def test_frame_data_json_leaves_out_detections_when_detection_did_not_run():
    message = frame_data_json(frame_b64="AAAA", timestamp_ms=5, camera_id="c", detections=None)
    assert json.loads(message) == {"frame": "AAAA", "timestamp": 5, "camera_id": "c"}
    ran_and_found_nothing = frame_data_json(
        frame_b64="AAAA", timestamp_ms=5, camera_id="c", detections=[]
    )
    assert json.loads(ran_and_found_nothing)["detections"] == []


def test_frame_data_binary_is_length_header_then_jpeg():
    jpeg = encode_jpeg(gradient_frame(), 80)
    detections = [{"class": "motion", "confidence": 0.5, "bbox": [0, 0, 10, 10]}]
    message = frame_data_binary(
        jpeg=jpeg, timestamp_ms=42, camera_id="cam-1", detections=detections
    )
    (length,) = struct.unpack(">I", message[:4])
    header = json.loads(message[4 : 4 + length].decode("utf-8"))
    assert header == {"timestamp": 42, "camera_id": "cam-1", "detections": detections}
    assert message[4 + length :] == jpeg
    assert parse_frame_data_binary(message) == (header, jpeg)


def test_frame_data_binary_leaves_out_detections_when_detection_did_not_run():
    message = frame_data_binary(
        jpeg=b"\xff\xd8\xff\xd9", timestamp_ms=1, camera_id="c", detections=None
    )
    header, jpeg = parse_frame_data_binary(message)
    assert header == {"timestamp": 1, "camera_id": "c"}
    assert jpeg == b"\xff\xd8\xff\xd9"


def test_parse_frame_data_binary_refuses_a_short_message():
    with pytest.raises(InvalidFrame):
        parse_frame_data_binary(b"\x00\x00\x01\x00{}")
