"""The frame pipeline and its receivers: capture workers and ingest take every frame through
`FramePipeline.process`, which hands the processed frame to each registered receiver; one
that raises is contained (logged once, counted) and the rest, the publish included, go on."""

from __future__ import annotations

import ast
import asyncio
import logging
import sys
import threading
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY

from cameras.ingest import frame_ingest
from cameras.pipeline import FramePipeline
from cameras.publishing import PublishedFrame, latest_frame_get
from cameras.receivers import (
    ProcessedFrame,
    frame_receiver_register,
    frame_receiver_unregister,
    frame_receivers,
)
from cameras.selectors import CameraConfig
from cameras.services import camera_create
from cameras.vision.frames import decode_jpeg
from tests.cameras.conftest import jpeg_b64, jpeg_bytes, now_ms
from tests.cameras.test_capture import _frames, _stop, _subscribe, _worker

ROOT = Path(__file__).resolve().parents[2]


class Collecting:
    """Keeps what it is handed, and which function handed it each frame."""

    name = "collecting"

    def __init__(self, *, wanted: int = 1):
        self.frames: list[ProcessedFrame] = []
        self.callers: set[object] = set()
        self.stopped: list[CameraConfig] = []
        self.wanted = wanted
        self.enough = threading.Event()

    def frame_processed(self, frame: ProcessedFrame) -> None:
        self.callers.add(sys._getframe(1).f_code)
        self.frames.append(frame)
        if len(self.frames) >= self.wanted:
            self.enough.set()

    def camera_stopped(self, camera: CameraConfig) -> None:
        self.stopped.append(camera)


class Exploding:
    name = "exploding"

    def __init__(self):
        self.calls = 0

    def frame_processed(self, frame: ProcessedFrame) -> None:
        self.calls += 1
        raise RuntimeError(f"receiver bug at frame {frame.timestamp_ms}")

    def camera_stopped(self, camera: CameraConfig) -> None:
        raise RuntimeError("receiver bug on stop")


@pytest.fixture
def registered():
    """Register receivers for one test; the ones registered before (events') stay."""
    added = []

    def register(receiver):
        frame_receiver_register(receiver)
        added.append(receiver)
        return receiver

    yield register
    for receiver in added:
        frame_receiver_unregister(receiver)


def _receiver_failures(camera_id: str, name: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "sightline_capture_errors_total", {"camera": camera_id, "stage": name}
        )
        or 0.0
    )


async def _capture(camera, collecting: Collecting) -> list[PublishedFrame]:
    """Capture `camera` until as many frames were broadcast as `collecting` wants, and it got
    them too; then stop the worker (which must not have crashed)."""
    layer, channel = await _subscribe(camera)
    worker = _worker(camera)
    worker.start()
    try:
        published = await _frames(layer, channel, collecting.wanted)
        assert await asyncio.to_thread(collecting.enough.wait, 15)
    finally:
        await _stop(worker)
    assert worker.failure is None
    return published


def test_events_registers_its_recorder_as_a_receiver():
    assert "recorder" in [receiver.name for receiver in frame_receivers()]


@pytest.mark.django_db(transaction=True)
async def test_a_receiver_gets_every_captured_frame_with_the_published_jpeg(
    organization, registered
):
    camera = await sync_to_async(camera_create)(
        organization=organization,
        name="Demo",
        source="demo:",
        target_fps=30,
        detectors=["motion", "person"],
    )
    collecting = registered(Collecting(wanted=10))

    published = await _capture(camera, collecting)

    frame = collecting.frames[-1]
    assert frame.camera == CameraConfig.of(camera)
    assert frame.camera.organization_pk == organization.pk
    assert (frame.width, frame.height) == (640, 480)
    assert frame.image.shape == (480, 640, 3)
    # The demo scene moves: the detectors ran on every frame, and found it.
    assert all(frame.detections is not None for frame in collecting.frames)
    assert any(frame.detections for frame in collecting.frames)
    # What the viewers got is what the receivers got: the same JPEG, encoded once.
    received = {frame.timestamp_ms: frame for frame in collecting.frames}
    for sent in published:
        assert received[sent.timestamp].jpeg == sent.jpeg
        assert received[sent.timestamp].detections == sent.detections
    assert decode_jpeg(published[0].jpeg).shape == (480, 640, 3)
    assert collecting.callers == {FramePipeline.process.__code__}
    # The worker's end is told to the receivers, once.
    assert collecting.stopped == [CameraConfig.of(camera)]


@pytest.mark.django_db(transaction=True)
async def test_a_raising_receiver_is_logged_once_and_the_others_and_the_publish_go_on(
    organization, registered, caplog
):
    caplog.set_level(logging.INFO, logger="cameras.pipeline")
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Demo", source="demo:", target_fps=30
    )
    exploding = registered(Exploding())
    collecting = registered(Collecting(wanted=10))

    published = await _capture(camera, collecting)

    assert len(published) == 10
    assert exploding.calls >= 10
    assert len(collecting.frames) >= 10
    failures = [r for r in caplog.records if "'exploding'" in r.getMessage()]
    # One line, with the traceback, for the whole streak: every frame and the stop.
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert failures[0].levelname == "WARNING"
    assert failures[0].exc_info is not None
    assert "receiver bug at frame" in str(failures[0].exc_info[1])
    assert _receiver_failures(camera.public_id, "exploding") == exploding.calls + 1


@pytest.mark.django_db
def test_an_ingested_frame_goes_through_the_same_pipeline_and_a_raising_receiver_is_contained(
    push_camera, registered, caplog
):
    caplog.set_level(logging.INFO, logger="cameras.pipeline")
    exploding = registered(Exploding())
    collecting = registered(Collecting())
    sent = jpeg_bytes(seed=1)
    timestamp = now_ms()

    result = frame_ingest(
        camera=push_camera, frame_b64=jpeg_b64(seed=1), timestamp=timestamp, role="owner"
    )
    frame_ingest(
        camera=push_camera, frame_b64=jpeg_b64(seed=2), timestamp=timestamp + 1, role="owner"
    )

    assert result.duplicate is False
    assert [frame.timestamp_ms for frame in collecting.frames] == [timestamp, timestamp + 1]
    first = collecting.frames[0]
    assert first.camera == CameraConfig.of(push_camera)
    assert (first.width, first.height) == (320, 240)
    assert first.image.shape == (240, 320, 3)
    # Narrow enough: the bytes as sent are what is published and received (no re-encode).
    assert first.jpeg == sent
    assert latest_frame_get(push_camera.public_id).jpeg == jpeg_bytes(seed=2)
    assert collecting.callers == {FramePipeline.process.__code__}
    assert exploding.calls == 2
    assert len([r for r in caplog.records if "'exploding'" in r.getMessage()]) == 1


@pytest.mark.django_db
def test_an_ingested_frame_wider_than_the_camera_is_resized_and_encoded_once(
    organization, registered
):
    camera = camera_create(organization=organization, name="Wide", source="push:", max_width=160)
    collecting = registered(Collecting())

    frame_ingest(camera=camera, frame_b64=jpeg_b64(), timestamp=now_ms(), role="owner")

    (frame,) = collecting.frames
    assert (frame.width, frame.height) == (160, 120)
    assert decode_jpeg(frame.jpeg).shape == (120, 160, 3)
    assert latest_frame_get(camera.public_id).jpeg == frame.jpeg


class WantingPictures(Collecting):
    """A receiver that needs every frame's JPEG, watched or not (as events' clips do)."""

    name = "wanting-pictures"

    def __init__(self, *, wants: bool = True, raises: bool = False):
        super().__init__()
        self.wants = wants
        self.raises = raises
        self.asked: list[int] = []

    def wants_picture(self, camera: CameraConfig, timestamp_ms: int) -> bool:
        self.asked.append(timestamp_ms)
        if self.raises:
            raise RuntimeError("wants_picture bug")
        return self.wants


class Publishing:
    def __init__(self, *, wants: bool):
        self.wants = wants
        self.published: list[PublishedFrame] = []

    def wants_picture(self) -> bool:
        return self.wants

    def publish(self, frame: PublishedFrame) -> None:
        self.published.append(frame)


def _still(seed: int = 0):
    return decode_jpeg(jpeg_bytes(seed=seed))


@pytest.mark.django_db
def test_a_receiver_that_wants_pictures_gets_a_jpeg_nobody_watched_and_nothing_is_published(
    organization, registered
):
    camera = camera_create(organization=organization, name="Quiet", source="push:")
    wanting = registered(WantingPictures())
    plain = registered(Collecting())
    publisher = Publishing(wants=False)
    pipeline = FramePipeline(CameraConfig.of(camera))

    pipeline.process(_still(), timestamp_ms=1000, publisher=publisher)

    assert wanting.asked == [1000]
    assert publisher.published == []
    assert decode_jpeg(wanting.frames[0].jpeg).shape == (240, 320, 3)
    # Encoded once, for every receiver alike.
    assert plain.frames[0].jpeg is wanting.frames[0].jpeg


@pytest.mark.django_db
def test_a_watched_frame_is_encoded_once_for_the_publisher_and_the_receivers(
    organization, registered
):
    camera = camera_create(organization=organization, name="Watched", source="push:")
    wanting = registered(WantingPictures())
    publisher = Publishing(wants=True)
    FramePipeline(CameraConfig.of(camera)).process(_still(), timestamp_ms=1000, publisher=publisher)

    (published,) = publisher.published
    assert published.jpeg == wanting.frames[0].jpeg


@pytest.mark.django_db
def test_without_a_receiver_wanting_it_an_unwatched_frame_is_not_encoded(organization, registered):
    camera = camera_create(organization=organization, name="Idle", source="push:")
    not_wanting = registered(WantingPictures(wants=False))
    FramePipeline(CameraConfig.of(camera)).process(
        _still(), timestamp_ms=1000, publisher=Publishing(wants=False)
    )
    assert not_wanting.frames[0].jpeg is None


@pytest.mark.django_db
def test_a_receiver_whose_wants_picture_raises_is_contained(organization, registered, caplog):
    camera = camera_create(organization=organization, name="Buggy", source="push:")
    buggy = registered(WantingPictures(raises=True))
    publisher = Publishing(wants=True)
    pipeline = FramePipeline(CameraConfig.of(camera))
    with caplog.at_level(logging.WARNING):
        pipeline.process(_still(), timestamp_ms=1000, publisher=Publishing(wants=False))
        pipeline.process(_still(), timestamp_ms=1100, publisher=publisher)
    assert len(buggy.frames) == 2 and buggy.frames[0].jpeg is None
    assert len(publisher.published) == 1
    # Asked only when the publisher wants no picture; its failure counted like a receiver's.
    assert buggy.asked == [1000]
    assert _receiver_failures(camera.public_id, "wanting-pictures") == 1


# The steps of the way of a frame, which only cameras/pipeline.py may take.
FRAME_STEPS = {"resize_to_width", "build_detectors", "run_detectors", "encode_jpeg", "build"}


@pytest.mark.parametrize("producer", ["cameras/capture.py", "cameras/ingest.py"])
def test_the_producers_leave_every_step_of_the_frame_to_the_pipeline(producer):
    tree = ast.parse((ROOT / producer).read_text())
    used = {
        node.id if isinstance(node, ast.Name) else node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Name | ast.Attribute)
    }
    assert used & FRAME_STEPS == set()
    assert "FramePipeline" in used
