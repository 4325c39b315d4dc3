"""H.264 from a real daphne whose capture worker reads a live 30 fps demo camera: the capture
thread's encoder path, the transport's framed writes, and the encoder stopping once the last
H.264 viewer left (read from the process's own /metrics)."""

from __future__ import annotations

import io
import json
import re
import time

import av
import httpx
import pytest
import websockets.sync.client

from cameras.vision.frames import parse_frame_data_binary

pytestmark = pytest.mark.django_db(transaction=True)

METRICS_TOKEN = "video-metrics-token"


def encoders_running(server, camera) -> float:
    metrics = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ).text
    match = re.search(
        rf'^sightline_video_encoders\{{camera="{camera.public_id}"\}} (\S+)$', metrics, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_a_live_camera_streams_h264_beside_json_and_its_encoder_stops_after_the_last_viewer(
    live_daphne, live_camera
):
    camera, token = live_camera
    server = live_daphne(CAMERAS_IN_PROCESS="1", METRICS_TOKEN=METRICS_TOKEN)
    url = f"ws://127.0.0.1:{server.port}{camera.stream_path}"
    headers = {"Authorization": f"Bearer {token}"}
    with websockets.sync.client.connect(url, additional_headers=headers, max_size=None) as first:
        first.recv(timeout=20)  # the camera is live: it has a latest frame
    with (
        websockets.sync.client.connect(
            url + "?format=h264", additional_headers=headers, max_size=None
        ) as video,
        websockets.sync.client.connect(url, additional_headers=headers, max_size=None) as seed,
    ):
        messages = []
        started = None
        while len([m for m in messages if m[0].get("kind") == "video"]) < 60:
            messages.append(parse_frame_data_binary(video.recv(timeout=10)))
            if started is None and messages[-1][0].get("kind") == "video":
                started = time.monotonic()
        seconds = time.monotonic() - started
        frame_data = json.loads(seed.recv(timeout=10))
        assert set(frame_data) == {"frame", "timestamp", "camera_id", "detections"}
        assert encoders_running(server, camera) == 1
    kinds = [header.get("kind") for header, _ in messages]
    assert kinds[0] is None  # the latest JPEG, at once
    assert "init" in kinds
    fragments = [header for header, _ in messages if header.get("kind") == "video"]
    assert fragments[0]["key"] is True
    assert 59 / seconds >= 15, f"only {59 / seconds:.1f} fragments a second"
    video_bytes = b"".join(payload for header, payload in messages if header.get("kind"))
    with av.open(io.BytesIO(video_bytes), format="mp4") as container:
        frames = list(container.decode(video=0))
    assert len(frames) == len(fragments)
    assert (frames[0].width, frames[0].height) == (640, 480)
    # A JPEG viewer does not keep the encoder: it stops once the H.264 mark lapses.
    with websockets.sync.client.connect(url + "?format=binary", additional_headers=headers):
        deadline = time.monotonic() + 10
        while encoders_running(server, camera):
            assert time.monotonic() < deadline, "the encoder kept running without H.264 viewers"
            time.sleep(0.25)
    assert "ERROR" not in server.log()
