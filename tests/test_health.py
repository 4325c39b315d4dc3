"""/healthz, /readyz and /metrics, with real failures: a database nobody listens for, a
redis-server of the test's own stopped (cache and channel layer), one that accepts and never
answers, a capture supervisor that is not running, a recorder that has not reported."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.error
import urllib.request

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from cameras.capture import CameraSupervisor, CaptureWorker
from cameras.models import Camera
from cameras.publishing import acamera_mark_watched, group_name
from cameras.selectors import CameraConfig
from cameras.services import camera_create, camera_status_update
from project.health import readiness
from project.heartbeats import heartbeat_beat
from tests.conftest import free_port
from tests.own_redis import caches, channel_layers


def redis_settings(settings, url: str) -> None:
    """The cache and the channel layer on `url`, configured as production configures them."""
    settings.CACHES = caches(url)
    settings.CHANNEL_LAYERS = channel_layers(url)


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers: a hung server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    # Closing resets the connections still waiting, which frees whatever waited on them.
    listener.close()


# --- /healthz ------------------------------------------------------------------------------


def test_healthz_answers_ok_and_is_never_cached(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


# Without the pool the check's connect fails at once; with it (the default on PostgreSQL) the
# check waits DATABASE_POOL_TIMEOUT for the pool, which keeps trying to connect.
@pytest.mark.parametrize(("pool_size", "says"), [("0", "connect"), ("4", "get a connection")])
def test_healthz_and_readyz_on_a_server_whose_database_is_gone(live_daphne, pool_size, says):
    dead_database = f"postgres://sightline@127.0.0.1:{free_port()}/gone"
    server = live_daphne(
        DATABASE_URL=dead_database,
        DATABASE_POOL_MAX_SIZE=pool_size,
        DATABASE_POOL_TIMEOUT="1",
        READYZ_CHECK_TIMEOUT_SECONDS="3",
        CAMERAS_IN_PROCESS="1",
    )
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"{server.url}/readyz", timeout=10)
    assert answer.value.code == 503
    import json

    report = json.loads(answer.value.read())
    assert report["status"] == "failing"
    assert "database" in report["failing"]
    assert says in report["checks"]["database"]["error"].lower()
    assert report["checks"]["cache"]["ok"] and report["checks"]["channel_layer"]["ok"]
    assert report["error"].startswith("database: ")
    # The in-process capture supervisor cannot read the cameras either: it says so once, with
    # its traceback, and keeps trying without saying it again.
    time.sleep(2.5)
    reloads = [line for line in server.log().splitlines() if "reload of the cameras" in line]
    assert len(reloads) == 1, reloads


# --- /readyz -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_readyz_is_ok_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    report = response.json()
    assert report["status"] == "ok"
    assert set(report["checks"]) == {"database", "channel_layer", "cache", "capture", "recorder"}
    assert all(check["ok"] for check in report["checks"].values())
    # Nothing to capture, nothing recorded: said, not hidden.
    assert report["checks"]["capture"]["skipped"] == "no enabled camera reads a source"
    assert report["checks"]["recorder"]["skipped"] == "EVENTS_RECORDING is off"


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_readyz_names_the_cache_and_the_channel_layer_when_redis_is_down(
    client, own_redis, settings, caplog
):
    redis_settings(settings, own_redis.url)
    assert client.get("/readyz").status_code == 200
    own_redis.stop()
    caplog.set_level(logging.INFO)
    response = client.get("/readyz")
    assert client.get("/readyz").status_code == 503
    assert response.status_code == 503
    report = response.json()
    assert report["failing"] == ["channel_layer", "cache"]
    assert "ConnectionError" in report["checks"]["cache"]["error"]
    assert "channel_layer: " in report["error"] and "cache: " in report["error"]
    assert report["checks"]["database"]["ok"]
    own_redis.start()
    assert client.get("/readyz").status_code == 200
    # Two failing probes, one warning naming what fails (no ERROR per probe); one recovery.
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "project.health"]
    assert [level for level, _ in said] == ["WARNING", "INFO"]
    assert said[0][1].startswith("Not ready: channel_layer: ")
    assert said[1][1] == "Ready again"
    assert not [r for r in caplog.records if r.name == "django.request"]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_readyz_is_ok_while_this_process_has_a_full_channel(client, own_redis, settings):
    # With channels-redis all of a process's channels share one Redis key and its capacity: a
    # busy process (hundreds of reply pieces queued) is loaded, not broken, and must stay in
    # the load balancer.
    redis_settings(settings, own_redis.url)
    layer = get_channel_layer()

    async def fill_one_channel() -> None:
        channel = await layer.new_channel()
        for _ in range(layer.capacity):
            await layer.send(channel, {"type": "chat.delta", "at": 0, "text": "x"})

    async_to_sync(fill_one_channel)()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["channel_layer"]["ok"]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_readyz_hears_the_channel_layer_while_a_receive_waits_on_a_quiet_group(
    own_redis, settings
):
    # channels-redis lets one receive at a time read the process's channels; a viewer of a
    # camera that sends nothing holds it. The probe must not need that reader.
    redis_settings(settings, own_redis.url)
    layer = get_channel_layer()
    quiet = await layer.new_channel()
    await layer.group_add("camera_quiet", quiet)
    waiting = asyncio.ensure_future(layer.receive(quiet))
    await asyncio.sleep(0.3)
    try:
        report = await readiness()
    finally:
        waiting.cancel()
    assert report["checks"]["channel_layer"]["ok"], report


@pytest.mark.django_db(transaction=True)
def test_readyz_gives_up_on_a_cache_that_never_answers(client, silent_server, settings):
    settings.READYZ_CHECK_TIMEOUT_SECONDS = 0.5
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{silent_server}/0",
        }
    }
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    assert response.json()["failing"] == ["cache"]
    assert response.json()["checks"]["cache"]["error"] == "no answer within 0.5 s"
    # Probes keep coming while the first one's thread still waits on the hung server: they do
    # not queue behind it (the pool would fill, and the database check time out with it).
    for _ in range(6):
        again = client.get("/readyz").json()
        assert again["failing"] == ["cache"]
        assert again["checks"]["cache"]["error"] == "the previous check has not answered yet"
        assert again["checks"]["database"]["ok"]


@pytest.mark.django_db(transaction=True)
async def test_readyz_fails_while_no_capture_supervisor_runs_for_cameras_that_need_one(
    async_client, organization, settings
):
    settings.CAMERA_RELOAD_SECONDS = 0.2
    await sync_to_async(camera_create)(organization=organization, name="Yard", source="demo:")
    response = await async_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["capture"]
    assert "no capture supervisor has reported" in response.json()["error"]
    supervisor = CameraSupervisor(reload_seconds=0.2)
    run = asyncio.create_task(supervisor.run())
    try:
        await asyncio.sleep(0.5)
        response = await async_client.get("/readyz")
    finally:
        await supervisor.stop()
        await run
    assert response.status_code == 200, response.json()
    capture = response.json()["checks"]["capture"]
    assert capture["workers"] == 1 and capture["alive"] == 1
    assert capture["age_seconds"] < 1


@pytest.mark.django_db(transaction=True)
def test_readyz_fails_while_cameras_are_online_and_the_recorder_does_not_report(
    client, organization, settings
):
    settings.EVENTS_RECORDING = True
    webcam = camera_create(organization=organization, name="Webcam", source="push:")
    # Nothing online: a silent recorder has nothing to record.
    assert client.get("/readyz").json()["checks"]["recorder"]["skipped"] == "no camera is online"
    camera_status_update(camera_pk=webcam.pk, status=Camera.Status.ONLINE)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["recorder"]
    assert "recorder has not reported" in response.json()["error"]
    # The recorder's heartbeat as the recorder leaves it after a flush.
    heartbeat_beat("recorder", ttl=10, flush_seconds=0.004, cameras=[webcam.public_id])
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["recorder"]["flush_seconds"] == 0.004


def test_readyz_and_healthz_need_no_login_but_only_read(client):
    assert client.post("/readyz").status_code == 405
    assert client.post("/healthz").status_code == 405


# --- /metrics ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_metrics_show_the_frames_a_camera_captured_and_published(async_client, organization):
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Lane", source="demo:lane", target_fps=15
    )
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_name(camera.public_id), channel)
    await acamera_mark_watched(camera.public_id)
    worker = CaptureWorker(
        CameraConfig.of(camera),
        loop=asyncio.get_running_loop(),
        channel_layer=layer,
        offline_after_seconds=10,
    )
    worker.start()
    try:
        received = 0
        async with asyncio.timeout(15):
            while received < 8:
                await layer.receive(channel)
                received += 1
    finally:
        worker.stop()
        assert await asyncio.to_thread(worker.join, 10)
    response = await async_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if f'camera="{camera.public_id}"' in line
    }
    assert samples[f'sightline_frames_captured_total{{camera="{camera.public_id}"}}'] >= 8
    assert samples[f'sightline_frames_published_total{{camera="{camera.public_id}"}}'] >= 8
    assert "# HELP sightline_capture_worker_restarts_total" in text
    assert "# TYPE sightline_ingest_frames_total counter" in text


def test_metrics_are_refused_to_other_networks_and_to_proxied_requests(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    # Through a proxy on this machine, the client's address is not ours to trust.
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert response.status_code == 403
    assert client.get("/metrics").status_code == 200


def test_metrics_with_a_token(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    outside = {"REMOTE_ADDR": "203.0.113.7"}
    response = client.get("/metrics", **outside)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **outside)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token", **outside)
    assert response.status_code == 200
    assert b"sightline_frames_captured" in response.content


def test_metrics_from_an_allowed_network(client, settings):
    import ipaddress

    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics").status_code == 403  # 127.0.0.1 is no longer listed


def test_runcameras_serves_its_own_metrics(organization, transactional_db):
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, _database_url_of_test_database

    camera = camera_create(organization=organization, name="Dock", source="demo:dock")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runcameras", "--metrics-port", str(port)],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": _database_url_of_test_database(),
            "DJANGO_SECRET_KEY": "test-only-secret-key",
            "CAMERA_RELOAD_SECONDS": "0.5",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        text = ""
        wanted = f'sightline_frames_captured_total{{camera="{camera.public_id}"}}'
        while wanted not in text:
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                continue
        assert 'sightline_capture_workers{state="running"} 1.0' in text
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"Metrics at http://127.0.0.1:{port}/metrics" in output.decode()
