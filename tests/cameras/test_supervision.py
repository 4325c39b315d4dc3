"""Capture workers that crash are restarted by their supervisor, with backoff; workers that lose
Redis (cache and channel layer) go on and deliver frames again once it is back, in-process and
under `runcameras`. Real failures throughout: a source whose sensor raises in the worker's own
thread, and a redis-server of the test's own that is killed and started again."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import time
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from channels_redis.core import RedisChannelLayer
from prometheus_client import REGISTRY

from cameras.capture import CameraSupervisor, CaptureWorker
from cameras.models import Camera
from cameras.publishing import PublishedFrame, acamera_mark_watched, group_name
from cameras.selectors import CameraConfig
from cameras.services import camera_create
from cameras.vision.sources import open_source
from project.heartbeats import heartbeats_read
from tests.cameras.camera_processes import camera_watched, runcameras_start
from tests.conftest import camera_lease_epoch_aged, free_port

pytestmark = pytest.mark.django_db(transaction=True)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class ExplodingSource:
    """A real demo scene whose sensor fails: its `explode_at`-th read raises."""

    def __init__(self, source, *, explode_at: int, explosions: list[float]):
        self._source = source
        self._explosions = explosions
        self._reads = 0
        self._explode_at = explode_at
        self.description = source.description
        self.is_live = True

    def read(self):
        self._reads += 1
        if self._reads == self._explode_at:
            self._explosions.append(time.monotonic())
            raise RuntimeError("the sensor exploded")
        return self._source.read()

    def close(self) -> None:
        self._source.close()


def opener_that_explodes(times: int):
    """A source opener whose first `times` sources explode; when they were opened and exploded."""
    openings: list[float] = []
    explosions: list[float] = []

    def opener(spec: str, *, read_timeout: float):
        source = open_source(spec, read_timeout=read_timeout)
        openings.append(time.monotonic())
        if len(openings) <= times:
            return ExplodingSource(source, explode_at=3, explosions=explosions)
        return source

    return opener, openings, explosions


async def until(condition, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def frames_after(layer, channel, moment_ms: int, count: int, seconds: float = 15):
    frames: list[PublishedFrame] = []
    async with asyncio.timeout(seconds):
        while len(frames) < count:
            frame = PublishedFrame.from_message(await layer.receive(channel))
            if frame.timestamp > moment_ms:
                frames.append(frame)
    return frames


async def test_a_crashed_worker_is_restarted_with_backoff_and_frames_flow_again(
    organization, caplog
):
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Fragile", source="demo:fragile", target_fps=10
    )
    opener, openings, explosions = opener_that_explodes(times=2)
    layer_name = "cameras.capture"
    caplog.set_level(logging.INFO, logger=layer_name)
    supervisor = CameraSupervisor(
        reload_seconds=0.3,
        check_seconds=0.05,
        restart_first_seconds=0.3,
        restart_max_seconds=5,
        restart_healthy_seconds=1.0,
        source_opener=opener,
    )
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_name(camera.public_id), channel)
    await acamera_mark_watched(camera.public_id)
    restarts_before = metric("sightline_capture_worker_restarts_total", camera=camera.public_id)
    run = asyncio.create_task(supervisor.run())
    try:

        async def third_opening():
            return len(openings) >= 3

        await until(third_opening, "the worker was not restarted twice")
        frames = await frames_after(layer, channel, int(time.time() * 1000), 5)

        async def backoff_forgotten():
            return any("backoff reset" in r.getMessage() for r in caplog.records)

        await until(backoff_forgotten, "a worker running well did not reset its backoff")
        beats: dict = {}

        async def fps_measured():
            nonlocal beats
            names = ["capture", f"capture:{camera.public_id}"]
            beats = await sync_to_async(heartbeats_read)(names)
            return (beats[names[1]]["fps"] or 0) > 0

        await until(fps_measured, "the camera's heartbeat never had a measured fps")
        camera = await Camera.objects.aget(pk=camera.pk)
    finally:
        await supervisor.stop()
        await run

    assert [frame.camera_id for frame in frames] == [camera.public_id] * 5
    restarts = metric("sightline_capture_worker_restarts_total", camera=camera.public_id)
    assert restarts - restarts_before == 2
    # 0.3 s before the first restart, twice that before the second.
    first_wait, second_wait = openings[1] - explosions[0], openings[2] - explosions[1]
    assert first_wait >= 0.3
    assert second_wait >= 0.6
    # The crash is logged once with its traceback; its repetition in one line without one.
    errors = [r for r in caplog.records if r.name == layer_name and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "the sensor exploded" in errors[0].getMessage()
    assert errors[0].exc_info and errors[0].exc_info[0] is RuntimeError
    again = [r for r in caplog.records if "crashed again" in r.getMessage()]
    assert len(again) == 1 and again[0].exc_info is None
    assert "restarting it in 0.3 s" in errors[0].getMessage()
    assert "restarting it in 0.6 s" in again[0].getMessage()
    # What the pages and /readyz read.
    assert camera.status == "online"
    assert beats["capture"]["workers"] == 1 and beats["capture"]["alive"] == 1
    assert beats["capture"]["cameras"] == [camera.public_id]
    camera_beat = beats[f"capture:{camera.public_id}"]
    assert camera_beat["state"] == "online"
    assert camera_beat["last_error"] == ""


async def test_a_worker_that_crashed_says_so_in_its_status_while_it_waits(organization):
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Fragile", source="demo:fragile", target_fps=10
    )
    opener, openings, _ = opener_that_explodes(times=1)
    supervisor = CameraSupervisor(
        reload_seconds=0.3, check_seconds=0.05, restart_first_seconds=30, source_opener=opener
    )
    run = asyncio.create_task(supervisor.run())
    try:

        async def offline():
            camera_now = await Camera.objects.aget(pk=camera.pk)
            return camera_now.status == "offline"

        await until(offline, "the crash was not reported")
        camera = await Camera.objects.aget(pk=camera.pk)
        beat = (await sync_to_async(heartbeats_read)([f"capture:{camera.public_id}"]))[
            f"capture:{camera.public_id}"
        ]
        supervisor_beat = (await sync_to_async(heartbeats_read)(["capture"]))["capture"]
        await asyncio.sleep(0.3)
        assert len(openings) == 1  # waiting its 30 s, not hammering
    finally:
        await supervisor.stop()
        await run
    assert "The capture worker crashed (RuntimeError: the sensor exploded)" in camera.last_error
    assert beat["state"] == "offline" and "the sensor exploded" in beat["last_error"]
    assert supervisor_beat["workers"] == 1


@pytest.mark.redis
async def test_a_worker_goes_on_through_a_redis_outage_and_delivers_again(
    organization, own_redis, settings, caplog
):
    settings.CACHES = own_redis.caches()
    caplog.set_level(logging.INFO, logger="cameras.capture")
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Street", source="demo:street", target_fps=10
    )
    layer = RedisChannelLayer(hosts=own_redis.layer_hosts(), capacity=50, expiry=10)

    async def subscribe() -> str:
        channel = await layer.new_channel()
        await layer.group_add(group_name(camera.public_id), channel)
        await acamera_mark_watched(camera.public_id)  # at once, not a first mark later
        return channel

    channel = await subscribe()
    worker = CaptureWorker(
        CameraConfig.of(camera),
        loop=asyncio.get_running_loop(),
        channel_layer=layer,
        offline_after_seconds=10,
    )
    errors_before = metric(
        "sightline_capture_errors_total", camera=camera.public_id, stage="latest_frame"
    )
    worker.start()
    try:
        await frames_after(layer, channel, 0, 3)
        own_redis.stop()
        await asyncio.sleep(3)
        assert worker.is_alive() and not worker.crashed
        own_redis.start()  # empty: group and watch marks are gone, as after a real restart
        channel = await subscribe()
        frames = await frames_after(layer, channel, int(time.time() * 1000), 5)
    finally:
        worker.stop()
        assert await asyncio.to_thread(worker.join, 10)
        await layer.flush()

    assert [frame.camera_id for frame in frames] == [camera.public_id] * 5
    errors = metric("sightline_capture_errors_total", camera=camera.public_id, stage="latest_frame")
    assert errors - errors_before >= 10  # ~30 frames could not be stored: counted, not raised
    # Each kind of failure is logged once, with its traceback, and its end once.
    latest_failures = [r for r in caplog.records if "Storing the latest frame" in r.getMessage()]
    assert [r.levelname for r in latest_failures] == ["WARNING", "INFO"]
    assert latest_failures[0].exc_info is not None
    # (The test's own receiving side may log channels-redis' complaints; the worker logs none.)
    ours = [r for r in caplog.records if r.name.startswith(("cameras", "project", "events"))]
    assert not [r for r in ours if r.levelno >= logging.ERROR]


def _runcameras(camera: Camera, redis_url: str, metrics_port: int) -> subprocess.Popen:
    return runcameras_start(
        redis_url, args=("--camera", camera.public_id, "--metrics-port", str(metrics_port))
    )


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _sample(text: str, name: str, camera: Camera, **labels: str) -> float:
    wanted = {"camera": camera.public_id, **labels}
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in wanted.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.redis
async def test_runcameras_survives_a_five_second_redis_outage(organization, own_redis, settings):
    settings.CACHES = own_redis.caches()
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Gate", source="demo:gate", target_fps=5
    )
    metrics_port = free_port()
    # A Redis that held leases before (no first-start grace); the restart below loses them,
    # and the camera process must re-claim its camera.
    camera_lease_epoch_aged(own_redis.url)
    process = _runcameras(camera, own_redis.url, metrics_port)
    layer = RedisChannelLayer(hosts=own_redis.layer_hosts(), capacity=50, expiry=10)

    async def subscribe() -> str:
        channel = await layer.new_channel()
        await layer.group_add(group_name(camera.public_id), channel)
        await acamera_mark_watched(camera.public_id)  # at once, not a first mark later
        return channel

    try:
        channel = await subscribe()
        try:
            # However long the process takes to start on a loaded machine.
            async with camera_watched(camera.public_id):
                await frames_after(layer, channel, 0, 3, seconds=30)
        except TimeoutError:
            process.kill()
            raise AssertionError(process.communicate()[0].decode()) from None
        own_redis.stop()
        await asyncio.sleep(5)
        own_redis.start()
        back_at = int(time.time() * 1000)
        channel = await subscribe()
        frames = await frames_after(layer, channel, back_at, 5)
        received_after = (time.time() * 1000 - back_at) / 1000
        metrics = await asyncio.to_thread(_scrape, metrics_port)
        camera = await Camera.objects.aget(pk=camera.pk)
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await layer.flush()

    log = output.decode()
    assert [frame.camera_id for frame in frames] == [camera.public_id] * 5
    assert received_after < 5  # about a second at 5 fps, with slack
    assert camera.status == "online"
    assert "crashed" not in log
    assert " ERROR " not in log, log
    assert _sample(metrics, "sightline_capture_worker_restarts_total", camera) == 0
    assert _sample(metrics, "sightline_frames_captured_total", camera) > 25
    assert _sample(metrics, "sightline_frames_published_total", camera) >= 8
    assert _sample(metrics, "sightline_frames_dropped_total", camera, reason="error") > 0
    assert _sample(metrics, "sightline_capture_errors_total", camera, stage="latest_frame") > 0
