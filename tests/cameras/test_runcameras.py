from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cameras.models import Camera
from cameras.services import camera_create
from tests.conftest import ROOT, _database_url_of_test_database


def wait_for_status(camera: Camera, status: str, seconds: float) -> Camera:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        camera.refresh_from_db()
        if camera.status == status:
            return camera
        time.sleep(0.1)
    raise AssertionError(f"camera stayed {camera.status!r}, expected {status!r}")


@pytest.mark.django_db(transaction=True)
def test_runcameras_captures_the_named_camera_and_marks_it_offline_on_sigterm(organization):
    wanted = camera_create(organization=organization, name="Wanted", source="demo:", target_fps=5)
    other = camera_create(organization=organization, name="Other", source="demo:b", target_fps=5)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url_of_test_database(),
        "DJANGO_SECRET_KEY": "test-only-secret-key",
        "CAMERA_RELOAD_SECONDS": "0.5",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runcameras", "--camera", wanted.public_id],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        camera = wait_for_status(wanted, "online", 30)
        assert camera.measured_fps >= 0
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output.decode()
    assert b"Cameras stopped." in output
    wanted.refresh_from_db()
    assert wanted.status == "offline"
    assert "shut down" in wanted.last_error
    other.refresh_from_db()
    assert other.status == "connecting"  # not ours to capture
