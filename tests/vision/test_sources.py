from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from cameras.vision.demo import DemoScene
from cameras.vision.frames import encode_jpeg
from cameras.vision.sources import (
    SourceError,
    VideoFileSource,
    open_source,
    validate_source,
)

FRAME_COUNT = 12
VIDEO_FPS = 60.0


def write_numbered_video(path: Path, *, count: int = FRAME_COUNT, fps: float = VIDEO_FPS) -> Path:
    """A real MJPG .avi whose frame i is a flat grey of brightness 20 * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    assert writer.isOpened()
    for index in range(count):
        writer.write(np.full((120, 160, 3), 20 * index, dtype=np.uint8))
    writer.release()
    return path


def frame_number(frame: np.ndarray) -> int:
    return round(float(frame.mean()) / 20)


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.fixture
def video(tmp_path) -> Path:
    return write_numbered_video(tmp_path / "numbered.avi")


MJPEG_FRAMES = 10


@pytest.fixture
def mjpeg_server(loopback_cameras_allowed) -> Iterator[str]:
    """A real MJPEG-over-HTTP camera on 127.0.0.1: numbered frames, 50 a second, then a stall."""
    release = threading.Event()

    class Camera(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for index in range(MJPEG_FRAMES):
                jpeg = encode_jpeg(np.full((120, 160, 3), 20 * index, dtype=np.uint8), 90)
                part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                try:
                    self.wfile.write(part % len(jpeg) + jpeg + b"\r\n")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.02)
            release.wait(10)  # connected but silent: a stalled camera

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_a_video_file_gives_its_frames_in_order(video):
    source = open_source(str(video))
    try:
        assert source.is_live is False
        assert str(video) in source.description
        frame = source.read()
        assert frame.shape == (120, 160, 3)
        numbers = [frame_number(frame)] + [frame_number(source.read()) for _ in range(5)]
    finally:
        source.close()
    # Reading as fast as it can, the caller gets every frame in order (a loaded machine may
    # make it skip one, as a camera would).
    assert numbers[0] == 0
    assert numbers == sorted(numbers)
    assert numbers[-1] <= 7


def test_a_video_file_loops_at_its_end(video):
    source = open_source(f"file://{video}")
    try:
        numbers = [frame_number(source.read()) for _ in range(FRAME_COUNT * 2 + 3)]
    finally:
        source.close()
    restart = numbers.index(0, 1)
    assert numbers[restart - 1] > numbers[restart]
    # And it plays on from the start.
    assert numbers[restart + 1] > 0


def test_a_video_file_is_paced_at_its_own_fps(tmp_path):
    video = write_numbered_video(tmp_path / "slow.avi", count=5, fps=20.0)
    source = VideoFileSource(str(video))
    try:
        started = time.monotonic()
        for _ in range(5):
            source.read()
        elapsed = time.monotonic() - started
    finally:
        source.close()
    # Five frames at 20 fps: the last is due 0.2 s after the first.
    assert 0.18 <= elapsed < 1.0


def test_a_slow_reader_of_a_video_file_skips_to_the_present(tmp_path):
    video = write_numbered_video(tmp_path / "skip.avi", count=12, fps=20.0)
    source = VideoFileSource(str(video))
    try:
        assert frame_number(source.read()) == 0
        time.sleep(0.26)  # five frames' time
        assert frame_number(source.read()) >= 4
    finally:
        source.close()


def test_an_mjpeg_stream_gives_its_frames_and_a_stall_gives_none_within_the_timeout(
    mjpeg_server,
):
    source = open_source(mjpeg_server, read_timeout=1.0)
    try:
        assert source.is_live is True
        assert source.description == mjpeg_server
        numbers = [frame_number(source.read()) for _ in range(MJPEG_FRAMES)]
        assert numbers == list(range(MJPEG_FRAMES))
        started = time.monotonic()
        assert source.read() is None
        assert time.monotonic() - started < 3.0
    finally:
        source.close()


def test_opening_a_missing_file_is_refused_by_policy(tmp_path):
    with pytest.raises(SourceError, match="not allowed by policy"):
        open_source(str(tmp_path / "missing.mp4"))


def test_opening_a_file_that_is_not_a_video_says_so(tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are not frames")
    with pytest.raises(SourceError, match="could not open"):
        open_source(str(not_video))


def test_an_unreachable_rtsp_server_fails_fast_with_the_reason(loopback_cameras_allowed):
    url = f"rtsp://127.0.0.1:{closed_port()}/stream"
    started = time.monotonic()
    with pytest.raises(SourceError, match="connection refused") as raised:
        open_source(url, read_timeout=2.0)
    assert time.monotonic() - started < 3.0
    assert url in str(raised.value)


def test_a_server_that_does_not_speak_the_protocol_is_refused_within_the_timeout(
    loopback_cameras_allowed,
):
    # A listener that accepts and never answers: FFmpeg must give up after its timeouts.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SourceError, match="no video stream"):
            open_source(f"http://127.0.0.1:{port}/video.mjpg", read_timeout=1.0)
        assert time.monotonic() - started < 10.0


def test_a_missing_capture_device_says_so(settings):
    settings.CAMERA_ALLOW_DEVICES = True
    started = time.monotonic()
    with pytest.raises(SourceError, match="could not open device:63"):
        open_source("device:63")
    assert time.monotonic() - started < 5.0


def test_push_sources_are_valid_but_cannot_be_opened():
    assert validate_source("push:") is None
    with pytest.raises(SourceError, match="ingest endpoint"):
        open_source("push:")


def test_the_demo_source_opens_as_a_live_scene():
    source = open_source("demo:")
    try:
        assert source.is_live is True
        frame = source.read()
        assert frame.shape == (480, 640, 3)
    finally:
        source.close()


def test_named_demo_sources_differ():
    lobby, street = open_source("demo:lobby"), open_source("demo:street")
    assert isinstance(lobby, DemoScene)
    assert not np.array_equal(lobby.frame_at(1000.0), street.frame_at(1000.0))


@pytest.mark.parametrize(
    "source",
    [
        "rtsp://camera.local:554/stream1",
        "rtsps://user:secret@camera.local/live",
        "https://example.org/cam.mjpg",
        "http://8.8.8.8:8080/video.mjpg",
        "demo:",
        "demo:lobby-2",
        "push:",
    ],
)
def test_valid_sources_are_accepted(source):
    assert validate_source(source) is None


def test_existing_files_are_valid_sources(video):
    assert validate_source(str(video)) is None
    assert validate_source(f"file://{video}") is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "enter a source"),
        ("   ", "enter a source"),
        ("ftp://camera.local/x", "unsupported source"),
        ("javascript:alert(1)", "unsupported source"),
        ("camera.local", "unsupported source"),
        ("rtsp://", "need a host"),
        ("http://cam era/x", "spaces"),
        ("rtsp://camera.local:99999/x", "not a valid URL"),
        ("device:", "device:N"),
        ("device:-1", "device:N"),
        ("device:64", "device:N"),
        ("demo:no spaces", "demo name"),
        ("push:extra", "unsupported source"),
        ("file://host/video.mp4", "three slashes"),
        ("/no/such/video.mp4", "not allowed by policy"),
        ("rtsp://camera.local/\x00", "control characters"),
        ("rtsp://camera.local/" + "a" * 2000, "longer than"),
    ],
)
def test_invalid_sources_get_a_message(source, message):
    error = validate_source(source)
    assert error is not None
    assert message in error


def test_demo_scene_objects_move():
    scene = DemoScene()
    first, later = scene.frame_at(1000.0), scene.frame_at(1000.5)
    changed = np.any(first != later, axis=2)
    # Something moved, but most of the picture (the background) did not.
    assert 0.005 < changed.mean() < 0.2
    # Over one car period (8 s), every object is somewhere else at some point.
    times = [1000.0 + step / 2 for step in range(16)]
    for box in (scene.person_box, scene.car_box, scene.ball_box):
        assert len({box(t) for t in times}) > 4


def test_demo_scene_is_deterministic_in_time():
    assert np.array_equal(DemoScene(seed=3).frame_at(1234.5), DemoScene(seed=3).frame_at(1234.5))


def test_demo_scene_jpegs_are_the_size_of_a_real_cameras():
    jpeg = encode_jpeg(DemoScene().frame_at(1000.0), 80)
    assert 25_000 < len(jpeg) < 70_000


def test_demo_scene_read_is_paced_like_a_camera():
    scene = DemoScene(fps=20.0)
    started = time.monotonic()
    for _ in range(5):
        scene.read()
    assert 0.18 <= time.monotonic() - started < 1.0


def test_demo_scene_frames_are_new_arrays():
    scene = DemoScene()
    first = scene.frame_at(10.0)
    scene.frame_at(20.0)
    assert np.array_equal(first, scene.frame_at(10.0))
