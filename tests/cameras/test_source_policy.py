"""The source policy through the cameras API and a real capture worker: what a member types as a
source or model is refused with a JSON 400 when it can be decided at once, and at the connect
otherwise, with a `last_error` that says "not allowed by policy" and nothing about the target."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys

import pytest

from cameras import source_policy
from cameras.models import Camera
from tests.cameras.test_capture import _camera, _frames, _status, _stop, _subscribe, _worker
from tests.conftest import ROOT
from tests.vision.test_source_policy import MjpegCamera
from tests.vision.test_sources import write_numbered_video

FILES_REFUSED = "not allowed by policy (an administrator can allow it with CAMERA_FILE_ROOTS)"
NETWORK_REFUSED = (
    "not allowed by policy (an administrator can allow it with CAMERA_ALLOWED_NETWORKS)"
)


def create(api, **body):
    return api.post("/api/v1/cameras", {"name": "Probe", **body}, format="json")


@pytest.mark.django_db
def test_a_file_outside_the_roots_and_a_missing_one_get_the_same_400(alice_api, tmp_path):
    write_numbered_video(tmp_path / "lobby.avi")
    answers = [
        create(alice_api, source=source)
        for source in ("/etc/shadow", "/nonexistent/x.mp4", "/etc/passwd", "file:///etc/shadow")
    ]
    assert {response.status_code for response in answers} == {400}
    assert all(response.json() == answers[0].json() for response in answers)
    assert answers[0].json() == {
        "error": f"source: {FILES_REFUSED}",
        "code": "invalid",
        "fields": {"source": [FILES_REFUSED]},
    }
    assert create(alice_api, source=str(tmp_path / "lobby.avi")).status_code == 201
    assert Camera.objects.count() == 1


@pytest.mark.django_db
def test_an_onnx_model_outside_the_roots_and_a_missing_one_get_the_same_400(alice_api, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("person\n")
    answers = [
        create(
            alice_api,
            source="demo:",
            detectors=["onnx"],
            onnx_model=model,
            onnx_labels=str(labels),
        )
        for model in ("/etc/passwd", "/nonexistent/model.onnx", str(tmp_path / "none.onnx"))
    ]
    assert {response.status_code for response in answers} == {400}
    assert all(response.json() == answers[0].json() for response in answers)
    assert answers[0].json()["fields"] == {"detectors": [f"the ONNX model: {FILES_REFUSED}"]}
    assert not Camera.objects.exists()


@pytest.mark.django_db
def test_devices_are_refused_unless_allowed(alice_api, settings):
    response = create(alice_api, source="device:0")
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "source": [
            "not allowed by policy (an administrator can allow it with CAMERA_ALLOW_DEVICES)"
        ]
    }
    settings.CAMERA_ALLOW_DEVICES = True
    assert create(alice_api, source="device:0").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    "source",
    [
        "rtsp://admin:pw@169.254.169.254/latest/meta-data",
        "http://127.0.0.1:6379/",
        "http://[::ffff:127.0.0.1]:22/",
        "rtsps://10.0.0.5/stream",
        "https://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0:8000/",
        "http://2130706433/",
    ],
)
def test_literal_addresses_in_refused_ranges_get_a_400(alice_api, source):
    response = create(alice_api, source=source)
    assert response.status_code == 400
    assert response.json()["fields"] == {"source": [NETWORK_REFUSED]}
    assert not Camera.objects.exists()


@pytest.mark.django_db
def test_an_allowed_network_may_be_configured(alice_api, settings):
    settings.CAMERA_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/24")]
    assert create(alice_api, source="rtsp://10.0.0.5/stream").status_code == 201
    assert create(alice_api, source="rtsp://10.0.1.5/stream").status_code == 400


@pytest.mark.django_db
def test_an_update_to_a_refused_source_is_a_400_and_changes_nothing(alice_api, organization):
    camera = Camera.objects.create(organization=organization, name="Door", source="demo:")
    response = alice_api.patch(
        f"/api/v1/cameras/{camera.public_id}", {"source": "rtsp://192.168.0.1/"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"source": [NETWORK_REFUSED]}
    camera.refresh_from_db()
    assert camera.source == "demo:"


@pytest.fixture
def table_resolver(monkeypatch) -> dict[str, list[str]]:
    """Host names the product resolves from this table, so a test can re-point one."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    monkeypatch.setattr(source_policy, "resolver", resolve)
    return table


async def _until_last_error(camera: Camera, wanted: str, seconds: float = 10) -> Camera:
    """The camera once its last_error is `wanted`; the last one seen if that never comes."""
    deadline = asyncio.get_running_loop().time() + seconds
    current = await _status(camera)
    while current.last_error != wanted and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        current = await _status(camera)
    return current


@pytest.mark.django_db(transaction=True)
async def test_a_name_pointing_at_a_refused_address_is_refused_at_connect(
    organization, table_resolver
):
    """Accepted at creation (a name), refused by the worker: last_error is the policy, no more."""
    target = MjpegCamera("127.0.0.1")
    try:
        table_resolver["camera.test"] = ["127.0.0.1"]
        camera = await _camera(
            organization, name="Probe", source=f"http://camera.test:{target.port}/video.mjpg"
        )
        worker = _worker(camera, backoff_first_seconds=0.05, backoff_max_seconds=0.2)
        worker.start()
        try:
            camera = await _until_last_error(camera, NETWORK_REFUSED)
        finally:
            await _stop(worker)
    finally:
        target.close()
    assert camera.last_error == NETWORK_REFUSED
    assert target.requests == []


@pytest.mark.django_db(transaction=True)
async def test_a_name_re_pointed_while_streaming_is_refused_at_the_reconnect(
    organization, table_resolver, settings
):
    settings.CAMERA_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    allowed, internal = MjpegCamera("127.0.0.1"), MjpegCamera("127.0.0.2")
    # Both on the same port number, so only the address decides where a connect lands.
    internal.close()
    internal = MjpegCamera("127.0.0.2", port=allowed.port)
    try:
        table_resolver["camera.test"] = ["127.0.0.1"]
        camera = await _camera(
            organization, name="Cam", source=f"http://camera.test:{allowed.port}/video.mjpg"
        )
        layer, channel = await _subscribe(camera)
        worker = _worker(
            camera,
            layer,
            offline_after_seconds=1.0,
            backoff_first_seconds=0.05,
            backoff_max_seconds=0.2,
        )
        worker.start()
        try:
            await _frames(layer, channel, 3)
            # The name now points at an internal address; the MJPEG stream ends after 20 frames,
            # and the worker reconnects.
            table_resolver["camera.test"] = ["127.0.0.2"]
            camera = await _until_last_error(camera, NETWORK_REFUSED, seconds=15)
        finally:
            await _stop(worker)
    finally:
        allowed.close()
        internal.close()
    assert allowed.requests
    assert camera.last_error == NETWORK_REFUSED
    assert internal.requests == []


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` run in a fresh process with Django set up on the environment given (and none of
    this process's camera policy variables)."""
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CAMERA_") and name != "MEDIA_ROOT"
    }
    setup = "import django; django.setup(); "
    return subprocess.run(
        [sys.executable, "-c", setup + code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


PRINT_POLICY = (
    "from django.conf import settings as s; "
    "print([str(p) for p in s.CAMERA_FILE_ROOTS], s.CAMERA_ALLOW_DEVICES, "
    "[str(n) for n in s.CAMERA_ALLOWED_NETWORKS])"
)


def test_the_policy_settings_are_read_from_the_environment():
    result = _python(
        PRINT_POLICY,
        CAMERA_FILE_ROOTS="/srv/videos:/srv/models,/mnt/nas",
        CAMERA_ALLOW_DEVICES="on",
        CAMERA_ALLOWED_NETWORKS="192.168.1.0/24, fd00::/8",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "['/srv/videos', '/srv/models', '/mnt/nas'] True ['192.168.1.0/24', 'fd00::/8']"
    )
    result = _python("print(1)", CAMERA_FILE_ROOTS="videos")
    assert result.returncode != 0 and "CAMERA_FILE_ROOTS must list absolute paths" in result.stderr
    result = _python("print(1)", CAMERA_ALLOWED_NETWORKS="10.0.0.0/8,the-lan")
    assert result.returncode != 0 and "CAMERA_ALLOWED_NETWORKS" in result.stderr


def test_the_defaults_allow_the_videos_folder_and_nothing_local(tmp_path):
    # MEDIA_ROOT holds every organization's event snapshots: by default only its videos/ folder
    # is open to file sources, so no organization can open another's snapshots as a camera.
    media = tmp_path / "media"
    (media / "videos").mkdir(parents=True)
    (media / "snapshots" / "cam1").mkdir(parents=True)
    write_numbered_video(media / "videos" / "lobby.avi")
    (media / "snapshots" / "cam1" / "event.avi").write_bytes(
        (media / "videos" / "lobby.avi").read_bytes()
    )
    code = (
        "from cameras.vision.sources import validate_source as v; "
        f"print([v(s) for s in ['{media}/videos/lobby.avi', '{media}/snapshots/cam1/event.avi', "
        "'device:0', 'http://127.0.0.1:8000/', 'rtsp://camera.example/live']])"
    )
    result = _python(code, MEDIA_ROOT=str(media))
    assert result.returncode == 0, result.stderr
    files = "CAMERA_FILE_ROOTS"
    devices = "CAMERA_ALLOW_DEVICES"
    networks = "CAMERA_ALLOWED_NETWORKS"
    assert result.stdout.strip().splitlines()[-1] == repr(
        [
            None,
            f"not allowed by policy (an administrator can allow it with {files})",
            f"not allowed by policy (an administrator can allow it with {devices})",
            f"not allowed by policy (an administrator can allow it with {networks})",
            None,
        ]
    )
