"""Against a real daphne: transport backpressure with a client that stops reading, and the
player in a real Chromium, including reconnection after a server restart."""

from __future__ import annotations

import json
import socket
import time

import pytest
import websockets.sync.client

from cameras.services import camera_create
from tests.cameras.conftest import CANVAS_CHECKSUM
from tests.conftest import login


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stalled_viewer(port: int, path: str, token: str) -> socket.socket:
    """Open a WebSocket with a tiny receive buffer, then never read from it again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def test_viewers_that_stop_reading_neither_grow_memory_nor_slow_the_others(
    live_daphne, live_camera
):
    camera, token = live_camera
    server = live_daphne(CAMERAS_IN_PROCESS="1")
    url = f"ws://127.0.0.1:{server.port}{camera.stream_path}"
    with websockets.sync.client.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as viewer:
        viewer.recv(timeout=10)
        stalled = [stalled_viewer(server.port, camera.stream_path, token) for _ in range(5)]
        try:
            # Let the stalled connections fill their kernel buffers first.
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                viewer.recv(timeout=5)
            before = rss_bytes(server.process.pid)
            frames, started = 0, time.monotonic()
            while time.monotonic() - started < 8:
                message = json.loads(viewer.recv(timeout=5))
                frames += 1
            after = rss_bytes(server.process.pid)
        finally:
            for sock in stalled:
                sock.close()
    fps = frames / (time.monotonic() - started)
    # Five stalled viewers at ~55 kB x 30 fps would pin ~65 MB in 8 s without backpressure.
    assert after - before < 20 * 1024 * 1024, f"RSS grew {(after - before) / 1e6:.1f} MB"
    assert fps > 20, f"the reading viewer got {fps:.1f} fps"
    assert message["camera_id"] == camera.public_id


def test_frames_written_under_daphne_are_valid_json_and_binary_messages(live_daphne, live_camera):
    from cameras.vision.frames import decode_jpeg, parse_frame_data_binary

    camera, token = live_camera
    server = live_daphne(CAMERAS_IN_PROCESS="1")
    url = f"ws://127.0.0.1:{server.port}{camera.stream_path}"
    headers = {"Authorization": f"Bearer {token}"}
    with (
        websockets.sync.client.connect(url, additional_headers=headers, max_size=None) as text,
        websockets.sync.client.connect(
            url + "?format=binary", additional_headers=headers, max_size=None
        ) as binary,
    ):
        for _ in range(10):
            message = json.loads(text.recv(timeout=10))
            header, jpeg = parse_frame_data_binary(binary.recv(timeout=10))
        assert set(message) == {"frame", "timestamp", "camera_id", "detections"}
        assert header["camera_id"] == message["camera_id"] == camera.public_id
        assert decode_jpeg(jpeg).shape == (480, 640, 3)


def frames_drawn(page) -> int:
    return int(page.eval_on_selector("#player", "el => el.dataset.frames || '0'"))


@pytest.mark.browser
def test_player_draws_frames_toggles_boxes_and_reconnects_after_a_restart(
    orm_beside_playwright, live_daphne, live_camera, page
):
    camera, _ = live_camera
    server = live_daphne(CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/{camera.public_id}/")

    page.wait_for_function("Number(document.getElementById('player').dataset.frames) > 5")
    first = page.evaluate(CANVAS_CHECKSUM)
    page.wait_for_timeout(500)
    assert page.evaluate(CANVAS_CHECKSUM) != first, "the picture did not change"

    # The demo scene moves: motion boxes are drawn, and the toggle hides them.
    page.wait_for_function("Number(document.getElementById('player').dataset.boxes) > 0")
    page.uncheck("#show-detections")
    assert page.eval_on_selector("#player", "el => el.dataset.boxes") == "0"
    page.wait_for_timeout(300)
    assert page.eval_on_selector("#player", "el => el.dataset.boxes") == "0"
    page.check("#show-detections")
    page.wait_for_function("Number(document.getElementById('player').dataset.boxes) > 0")
    assert page.text_content("#player-fps") not in ("", "–")

    before_restart = frames_drawn(page)
    server.restart()
    page.wait_for_function(
        f"Number(document.getElementById('player').dataset.frames) > {before_restart + 5}",
        timeout=40_000,
    )
    assert page.eval_on_selector("#player", "el => el.dataset.state") == "live"
    assert page.is_hidden("#player-reconnect")


@pytest.mark.browser
def test_the_player_names_each_tracked_person_by_its_track_id(
    orm_beside_playwright, live_daphne, alice, organization, page
):
    camera = camera_create(
        organization=organization,
        name="Street",
        source="demo:",
        target_fps=10,
        max_width=640,
        detectors=["motion", "person"],
    )
    server = live_daphne(CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/{camera.public_id}/")
    # The demo's walker, tracked: "person #<id> (NN%)"; motion boxes carry no id.
    page.wait_for_function(
        "/(^|\\|)person #\\d+ \\(\\d+%\\)/.test(document.getElementById('player').dataset.boxLabels)",
        timeout=30_000,
    )
    labels = page.eval_on_selector("#player", "el => el.dataset.boxLabels").split("|")
    assert all("#" not in label for label in labels if label.startswith("motion"))


@pytest.mark.browser
def test_a_webcam_published_from_one_tab_plays_in_another(
    orm_beside_playwright, live_daphne, alice, organization, chromium_path
):
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM_ARGS

    camera = camera_create(
        organization=organization, name="Webcam", source="push:", detectors=["motion"]
    )
    server = live_daphne(CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="")
    # Chromium's fake camera (a moving test pattern), allowed without a permission prompt.
    fake_camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS + fake_camera
        )
        try:
            context = browser.new_context()
            publisher = context.new_page()
            login(publisher, server.url, "alice", "alice-password")
            publisher.goto(f"{server.url}/cameras/{camera.public_id}/publish")
            publisher.click("#publish-start")
            publisher.wait_for_function(
                "Number(document.getElementById('publish-sent').textContent) >= 3"
            )
            viewer = context.new_page()
            viewer.goto(f"{server.url}/cameras/{camera.public_id}/")
            viewer.wait_for_function(
                "Number(document.getElementById('player').dataset.frames) >= 3", timeout=20_000
            )
            assert publisher.eval_on_selector("#publisher", "el => el.dataset.state") == "live"
        finally:
            browser.close()
    camera.refresh_from_db()
    assert camera.status == "online"
