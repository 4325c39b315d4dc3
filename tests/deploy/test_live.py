"""nginx with the shipped site in front of a real daphne, on 127.0.0.1; every request goes
through nginx only: static files from STATIC_ROOT, an SSE reply that streams, a camera's
WebSocket, and the client address the app sees."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import websockets.sync.client
from django.core.management import call_command

from cameras.services import camera_create
from chats.services import chat_create
from organizations.services import api_token_create
from tests.conftest import ROOT, free_port
from tests.deploy.conftest import nginx_rendered, nginx_running

# A pause between the builtin answer's pieces: "Who is on the team?" is 11 of them, ~1 s.
PIECE_DELAY_MS = 100
CLIENT, OTHER_CLIENT = "127.0.0.5", "127.0.0.6"
HASHED_NAME = "css/site.0123456789ab.css"


@pytest.fixture
def static_root(tmp_path, settings) -> Path:
    """collectstatic's real output, as an operator's STATIC_ROOT holds it."""
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    call_command("collectstatic", "--no-input", "--verbosity", "0")
    return settings.STATIC_ROOT


@pytest.fixture
def site(nginx, live_daphne, static_root, tmp_path):
    """nginx on a free port in front of one daphne that trusts it as its proxy."""
    server = live_daphne(
        CAMERAS_IN_PROCESS="1",
        ASSISTANT_BUILTIN_DELAY_MS=str(PIECE_DELAY_MS),
        DJANGO_TRUSTED_PROXIES="127.0.0.1",
        # Only CLIENT may read /metrics without a token: whether it may shows which address
        # the app took for the client.
        METRICS_ALLOWED_NETWORKS=f"{CLIENT}/32",
    )
    port = free_port()
    config = nginx_rendered(
        tmp_path / "nginx",
        port=port,
        backends=[f"127.0.0.1:{server.port}"],
        static_root=static_root,
    )
    with nginx_running(nginx, config, port):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def token(alice, organization) -> str:
    return api_token_create(user=alice)[1]


def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_static_files_are_served_by_nginx_from_static_root(site, static_root):
    (static_root / HASHED_NAME).write_text("/* a name with a content hash */")
    with httpx.Client(timeout=10) as client:
        plain = client.get(f"http://{site}/static/css/site.css")
        compressed = client.get(
            f"http://{site}/static/css/site.css", headers={"Accept-Encoding": "gzip"}
        )
        hashed = client.get(f"http://{site}/static/{HASHED_NAME}")
    assert plain.status_code == 200
    assert plain.content == (ROOT / "static" / "css" / "site.css").read_bytes()
    assert plain.headers["server"].startswith("nginx")
    assert plain.headers["cache-control"] == "max-age=3600"
    # The .gz collectstatic wrote, sent as it is (gzip_static).
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.content == plain.content
    # Only nginx knows this file (daphne's ServeStatic indexed STATIC_ROOT before it existed).
    assert hashed.status_code == 200
    assert "immutable" in hashed.headers.get_list("cache-control")[-1]
    assert "max-age=315360000" in hashed.headers["cache-control"]


def test_an_sse_reply_streams_through_nginx_piece_by_piece(site, alice, organization, token):
    chat = chat_create(user=alice, organization=organization)
    arrivals = []
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"http://{site}/api/v1/chats/{chat.pk}/messages",
            headers={"Authorization": f"Bearer {token}"},
            json={"prompt": "Who is on the team?"},
        ) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert "content-encoding" not in stream.headers
        buffered = b""
        for data in stream.iter_raw():
            buffered += data
            while b"\n\n" in buffered:
                event, buffered = buffered.split(b"\n\n", 1)
                if event.startswith(b"data: "):
                    arrivals.append((time.monotonic(), json.loads(event[6:])))
    chunks = [at for at, event in arrivals if event["type"] == "chunk"]
    assert arrivals[-1][1]["type"] == "done" and arrivals[-1][1]["status"] == "complete"
    assert len(chunks) >= 5
    # Buffered, they would all arrive together at the end; streamed, ~100 ms apart.
    assert chunks[-1] - chunks[0] > (len(chunks) - 1) * PIECE_DELAY_MS / 1000 * 0.5


def test_a_camera_websocket_upgrades_through_nginx_and_receives_frames(site, organization, token):
    camera = camera_create(
        organization=organization, name="Lobby", source="demo:", target_fps=10, max_width=320
    )
    with websockets.sync.client.connect(
        f"ws://{site}{camera.stream_path}",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    ) as viewer:
        assert viewer.response.status_code == 101
        frames = [json.loads(viewer.recv(timeout=20)) for _ in range(3)]
    assert {frame["camera_id"] for frame in frames} == {camera.public_id}
    assert all(frame["frame"] for frame in frames)


def test_the_app_sees_the_client_address_nginx_forwarded_and_nothing_the_client_wrote(site):
    # The app allows /metrics to CLIENT only; daphne's peer is always nginx (127.0.0.1).
    with client_from(CLIENT) as client, client_from(OTHER_CLIENT) as other:
        allowed = client.get(f"http://{site}/metrics")
        assert allowed.status_code == 200, allowed.text
        assert other.get(f"http://{site}/metrics").status_code == 403
        # nginx appends the address it saw; what the client wrote before it is not believed.
        spoofed = other.get(f"http://{site}/metrics", headers={"X-Forwarded-For": CLIENT})
        assert spoofed.status_code == 403
