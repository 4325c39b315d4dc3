"""The Procfile's topology, started with honcho as README says: two daphne processes, two camera
workers and nginx, on this test's database and Redis; then through nginx only, a reply streams
and a camera that only the camera workers capture plays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets.sync.client

from cameras.services import camera_create
from chats.services import chat_create
from organizations.services import api_token_create
from tests.conftest import ROOT, _database_url_of_test_database, free_port
from tests.deploy.conftest import port_open


@pytest.fixture
def topology(nginx, redis_url, transactional_db, tmp_path):
    ports = {"WEB1_PORT": free_port(), "WEB2_PORT": free_port(), "NGINX_PORT": free_port()}
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "PYTHON": sys.executable,
        "NGINX": nginx,
        "DATABASE_URL": _database_url_of_test_database(),
        "REDIS_URL": redis_url,
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test-only-secret-key"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "ASSISTANT_BUILTIN_DELAY_MS": "50",
    }
    env.pop("CAMERAS_IN_PROCESS", None)
    log_path = tmp_path / "honcho.log"
    with log_path.open("wb") as log:
        # Its own session, so the whole tree can be stopped by this one process group's id.
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-d", str(ROOT), "-f", str(ROOT / "Procfile")]
            + ["start"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not all(port_open(port) for port in ports.values()):
            if honcho.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the topology did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield f"127.0.0.1:{ports['NGINX_PORT']}", log_path
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()


def test_the_procfile_topology_serves_replies_and_cameras_through_nginx(
    topology, alice, organization
):
    site, log_path = topology
    token = api_token_create(user=alice)[1]
    headers = {"Authorization": f"Bearer {token}"}
    camera = camera_create(
        organization=organization, name="Lobby", source="demo:", target_fps=10, max_width=320
    )
    chat = chat_create(user=alice, organization=organization)
    with httpx.Client(timeout=30) as client:
        assert client.get(f"http://{site}/healthz").status_code == 200
        with client.stream(
            "POST",
            f"http://{site}/api/v1/chats/{chat.pk}/messages",
            headers=headers,
            json={"prompt": "Who is on the team?"},
        ) as stream:
            body = b"".join(stream.iter_raw())
    assert stream.status_code == 200
    assert b'"type": "done"' in body and b'"status": "complete"' in body
    # No daphne captures (REDIS_URL: CAMERAS_IN_PROCESS is off); the frames come from the camera
    # workers through Redis, once they have read the new camera (CAMERA_RELOAD_SECONDS).
    with websockets.sync.client.connect(
        f"ws://{site}{camera.stream_path}", additional_headers=headers, max_size=None
    ) as viewer:
        frame = json.loads(viewer.recv(timeout=30))
    assert frame["camera_id"] == camera.public_id, Path(log_path).read_text()[-3000:]
