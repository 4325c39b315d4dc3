"""Objects tracked through the real pipeline: a video this test writes, of two people who walk
past each other, decoded by OpenCV, through `FramePipeline` (the HOG person detector, motion,
the tracker), the recorder, the database, the storage, the API and the events page."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.test import Client

from cameras.pipeline import FramePipeline
from cameras.selectors import CameraConfig
from cameras.services import camera_create
from cameras.vision.demo import _render_background, draw_walker
from cameras.vision.frames import decode_jpeg
from events.models import DetectionEvent

pytestmark = pytest.mark.django_db

T0 = 1_763_900_000_000
FRAME_MS = 100  # 10 fps
FRAMES = 60
WIDTH, HEIGHT = 640, 480
WALKER_HEIGHT = int(HEIGHT * 0.3)
GROUND = int(HEIGHT * 0.72) - WALKER_HEIGHT + 10


def scene(index: int, background: np.ndarray) -> np.ndarray:
    """Frame `index`: one walker goes right along the pavement, the other left a little
    further back; they pass each other (and overlap) in the middle of the video."""
    frame = background.copy()
    t = index * FRAME_MS / 1000
    draw_walker(frame, 60 + index * 9, GROUND, WALKER_HEIGHT, shirt=(40, 40, 210), t=t)
    draw_walker(frame, 580 - index * 9, GROUND - 60, WALKER_HEIGHT, shirt=(200, 90, 30), t=t + 0.3)
    return frame


@pytest.fixture
def crossing_video(tmp_path) -> str:
    path = str(tmp_path / "crossing.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (WIDTH, HEIGHT))
    assert writer.isOpened()
    background = _render_background(WIDTH, HEIGHT, np.random.default_rng(3))
    for index in range(FRAMES):
        writer.write(scene(index, background))
    writer.release()
    return path


class Published:
    """The publisher side of a producer: keeps what the pipeline published."""

    def __init__(self):
        self.frames = []

    def wants_picture(self) -> bool:
        return True

    def publish(self, frame) -> None:
        self.frames.append(frame)


@pytest.fixture
def street(organization):
    return camera_create(
        organization=organization, name="Street", source="push:", detectors=["person", "motion"]
    )


def play(video: str, camera, recorder) -> Published:
    """The video through the camera's pipeline, with the recorder (installed as the events
    app's own receiver by the caller) flushed by hand every ten frames."""
    pipeline = FramePipeline(CameraConfig.of(camera))
    publisher = Published()
    capture = cv2.VideoCapture(video)
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        pipeline.process(frame, timestamp_ms=T0 + index * FRAME_MS, publisher=publisher)
        index += 1
        if index % 10 == 0:
            recorder.flush()
    capture.release()
    assert index == FRAMES
    pipeline.camera_stopped()
    recorder.flush()
    return publisher


@pytest.fixture
def played(crossing_video, street, recorder, monkeypatch, settings):
    settings.EVENTS_RECORDING = True
    monkeypatch.setattr("events.recording._recorder", recorder)
    return play(crossing_video, street, recorder)


def test_two_people_crossing_are_two_person_events_with_their_own_tracks(played, street):
    people = list(DetectionEvent.objects.filter(camera=street, label="person"))
    assert len(people) == 2, [(e.track_id, e.started_at, e.frames_seen) for e in people]
    # The one that came into view on the left is the one that walked right.
    rightwards, leftwards = sorted(people, key=lambda event: event.path[0][1])
    assert rightwards.track_id != leftwards.track_id
    for event in people:
        assert event.ended_at is not None
        assert event.duration_seconds >= 4.0
        assert len(event.path) >= 5
        assert event.path[0][0] == 0
        assert event.path[-1][0] == pytest.approx(event.duration_seconds * 1000, abs=1)
    # Their paths say who went where: the first walker right, the second left.
    assert rightwards.path[-1][1] - rightwards.path[0][1] > 0.3
    assert leftwards.path[-1][1] - leftwards.path[0][1] < -0.3


def test_the_published_detections_carry_the_same_track_ids(played, street):
    ids = {
        detection["track_id"]
        for frame in played.frames
        for detection in frame.detections or []
        if detection["class"] == "person"
    }
    stored = set(DetectionEvent.objects.filter(label="person").values_list("track_id", flat=True))
    assert ids == stored
    motion = [
        detection
        for frame in played.frames
        for detection in frame.detections or []
        if detection["class"] == "motion"
    ]
    assert motion and all("track_id" not in detection for detection in motion)


def test_each_person_events_snapshot_is_its_own_picture(played, street):
    people = DetectionEvent.objects.filter(label="person")
    names = {event.snapshot.name for event in people}
    assert len(names) == 2
    for event in people:
        assert f"person-{event.track_id}-" in event.snapshot.name
        with default_storage.open(event.snapshot.name) as stored:
            image = decode_jpeg(stored.read())
        assert image.shape == (HEIGHT, WIDTH, 3)


def test_motion_is_recorded_apart_and_hidden_on_the_events_page_until_asked(played, street, alice):
    motion = DetectionEvent.objects.filter(label="motion").count()
    assert motion >= 1
    assert DetectionEvent.objects.filter(label="motion", track_id__isnull=False).count() == 0
    client = Client()
    client.force_login(alice)
    html = client.get("/events/").content.decode()
    assert "2 events" in html
    assert f"{motion} motion event" in html
    assert "person #" in html
    shown = client.get("/events/?motion=1").content.decode()
    assert f"{motion + 2} events" in shown


def test_the_api_gives_each_events_track_path_and_duration(played, street, alice_api):
    body = alice_api.get("/api/v1/events?class=person").json()
    events = body["results"]
    assert len(events) == 2
    for event in events:
        stored = DetectionEvent.objects.get(pk=event["id"])
        assert event["track_id"] == stored.track_id
        assert event["path"] == stored.path
        assert event["duration_seconds"] == pytest.approx(stored.duration_seconds)
