"""Capture workers on real sources (a video file the test writes, the demo scene), publishing to
a real channel layer; the supervisor; backoff and offline marking."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from cameras.capture import CameraSupervisor, CaptureWorker
from cameras.models import Camera
from cameras.publishing import (
    PublishedFrame,
    acamera_mark_watched,
    frame_record_get,
    group_name,
    latest_frame_get,
)
from cameras.selectors import CameraConfig
from cameras.services import camera_create, camera_update
from cameras.vision.frames import decode_jpeg

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def video_file(tmp_path):
    """A real 4-second MJPEG video of a square crossing a grey background."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (480, 360))
    assert writer.isOpened()
    for index in range(80):
        image = np.full((360, 480, 3), 90, np.uint8)
        x = 10 + index * 5
        cv2.rectangle(image, (x, 120), (x + 60, 200), (250, 250, 250), -1)
        writer.write(image)
    writer.release()
    return path


async def _camera(organization, **fields) -> Camera:
    return await sync_to_async(camera_create)(organization=organization, **fields)


async def _subscribe(camera: Camera, layer=None):
    layer = layer or get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_name(camera.public_id), channel)
    await acamera_mark_watched(camera.public_id)
    return layer, channel


async def _frames(layer, channel, count: int) -> list[PublishedFrame]:
    frames = []
    async with asyncio.timeout(15):
        while len(frames) < count:
            frames.append(PublishedFrame.from_message(await layer.receive(channel)))
    return frames


def _worker(camera: Camera, layer=None, **kwargs) -> CaptureWorker:
    return CaptureWorker(
        CameraConfig.of(camera),
        loop=asyncio.get_running_loop(),
        channel_layer=layer or get_channel_layer(),
        offline_after_seconds=kwargs.pop("offline_after_seconds", 10.0),
        **kwargs,
    )


async def _stop(worker: CaptureWorker) -> None:
    worker.stop()
    assert await asyncio.to_thread(worker.join, 10)


async def _status(camera: Camera) -> Camera:
    return await Camera.objects.aget(pk=camera.pk)


async def test_worker_publishes_a_video_file_resized_with_detections(organization, video_file):
    camera = await _camera(
        organization,
        name="File",
        source=str(video_file),
        target_fps=10,
        max_width=240,
        detectors=["motion"],
    )
    layer, channel = await _subscribe(camera)
    worker = _worker(camera)
    worker.start()
    try:
        frames = await _frames(layer, channel, 12)
    finally:
        await _stop(worker)
    timestamps = [frame.timestamp for frame in frames]
    assert timestamps == sorted(set(timestamps))
    image = decode_jpeg(frames[-1].jpeg)
    assert image.shape == (180, 240, 3)
    # The square moves: after the background model settles, motion finds it.
    assert all(frame.detections is not None for frame in frames)
    assert any(frame.detections for frame in frames[3:])
    box = next(d for frame in frames[3:] for d in frame.detections)
    assert box["class"] == "motion" and len(box["bbox"]) == 4
    # Throttled to the camera's 10 fps although the file plays at 20.
    seconds = (timestamps[-1] - timestamps[0]) / 1000
    assert 11 / seconds < 13
    # Each published frame is remembered for ingest, and the latest is kept.
    assert await sync_to_async(frame_record_get)(camera.public_id, timestamps[-1]) is not None
    assert (await sync_to_async(latest_frame_get)(camera.public_id)).timestamp >= timestamps[-1]
    assert (await _status(camera)).status == "online"


async def test_worker_publishes_the_demo_scene_with_motion_boxes(organization):
    camera = await _camera(
        organization, name="Demo", source="demo:", target_fps=30, detectors=["motion"]
    )
    layer, channel = await _subscribe(camera)
    worker = _worker(camera)
    worker.start()
    try:
        started = time.monotonic()
        frames = await _frames(layer, channel, 30)
        elapsed = time.monotonic() - started
    finally:
        await _stop(worker)
    assert decode_jpeg(frames[0].jpeg).shape == (480, 640, 3)
    assert any(frame.detections for frame in frames[5:])
    assert elapsed < 4  # about a second at 30 fps, with slack for a busy machine
    camera = await _status(camera)
    assert camera.status == "online"
    assert camera.last_frame_at is not None


@pytest.mark.redis
async def test_worker_publishes_through_redis(organization, redis_url):
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_url], capacity=50, expiry=10)
    camera = await _camera(
        organization, name="Demo", source="demo:redis", target_fps=15, detectors=[]
    )
    layer, channel = await _subscribe(camera, layer)
    worker = _worker(camera, layer)
    worker.start()
    try:
        frames = await _frames(layer, channel, 5)
    finally:
        await _stop(worker)
        await layer.flush()
    assert [frame.camera_id for frame in frames] == [camera.public_id] * 5
    assert frames[0].detections is None  # no detectors configured: FrameData says null
    assert decode_jpeg(frames[-1].jpeg).shape == (480, 640, 3)


async def test_unwatched_camera_is_not_broadcast_but_keeps_a_fresh_latest_frame(organization):
    camera = await _camera(organization, name="Quiet", source="demo:", target_fps=30)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_name(camera.public_id), channel)  # listening, not watching
    worker = _worker(camera)
    worker.start()
    try:
        await asyncio.sleep(1.5)
        latest = await sync_to_async(latest_frame_get)(camera.public_id)
    finally:
        await _stop(worker)
    assert worker.frames_published == 0
    assert latest is not None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await layer.receive(channel)


async def test_missing_source_is_retried_then_marked_offline_keeping_the_last_frame(
    organization, video_file
):
    camera = await _camera(organization, name="Gone", source=str(video_file))
    video_file.unlink()
    worker = _worker(
        camera, offline_after_seconds=0.6, backoff_first_seconds=0.05, backoff_max_seconds=0.2
    )
    worker.start()
    try:
        await asyncio.sleep(0.2)
        early = await _status(camera)
        for _ in range(200):
            if (await _status(camera)).status == "offline":
                break
            await asyncio.sleep(0.05)
    finally:
        await _stop(worker)
    assert early.status == "connecting"
    assert "not allowed by policy" in early.last_error
    camera = await _status(camera)
    assert camera.status == "offline"
    assert "not allowed by policy" in camera.last_error


async def test_supervisor_starts_restarts_and_stops_workers_as_cameras_change(organization):
    demo = await _camera(organization, name="Demo", source="demo:", target_fps=5)
    await _camera(organization, name="Pushed", source="push:")
    supervisor = CameraSupervisor(reload_seconds=0.1, offline_after_seconds=5)
    run = asyncio.create_task(supervisor.run())

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.05)

    try:
        await until(lambda: demo.public_id in supervisor.workers, "worker never started")
        # push: cameras get no worker: their frames come through ingest.
        assert list(supervisor.workers) == [demo.public_id]
        first = supervisor.workers[demo.public_id]
        await sync_to_async(camera_update)(camera=demo, target_fps=10)
        await until(
            lambda: supervisor.workers.get(demo.public_id) not in (None, first),
            "worker was not restarted with the new configuration",
        )
        assert supervisor.workers[demo.public_id].config.target_fps == 10
        await sync_to_async(camera_update)(camera=demo, enabled=False)
        await until(lambda: not supervisor.workers, "worker of a disabled camera kept running")
        for _ in range(100):
            if (await _status(demo)).status == "offline":
                break
            await asyncio.sleep(0.05)
        assert (await _status(demo)).last_error.startswith("Capture stopped")
    finally:
        await supervisor.stop()
        await run
