"""The recorder on the real pipeline parts: a video written here, the motion detector, the
database and the storage."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cameras.vision.detectors import build_detectors, run_detectors
from events.models import CameraSession, DetectionEvent
from events.recording import Recorder, snapshot_jpeg

pytestmark = pytest.mark.django_db

T0 = 1_763_900_000_000  # Unix ms; frames are 100 ms apart (10 fps)
FRAME_MS = 100
# Frames in which the square is in the picture: a 0.5 s gap inside the first visit (within the
# 1 s tolerance of the recorder fixture), then a 2.5 s absence before a second visit.
PRESENT = [*range(15, 30), *range(35, 45), *range(70, 80)]
FRAMES = 90


def scene(index: int) -> np.ndarray:
    image = np.full((240, 320, 3), (90, 120, 80), np.uint8)
    cv2.rectangle(image, (0, 180), (320, 240), (60, 60, 60), -1)
    if index in PRESENT:
        x = 20 + (index % 15) * 15
        cv2.rectangle(image, (x, 80), (x + 40, 160), (20, 20, 200), -1)
    return image


@pytest.fixture
def video_path(tmp_path):
    path = str(tmp_path / "visitor.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    assert writer.isOpened()
    for index in range(FRAMES):
        writer.write(scene(index))
    writer.release()
    return path


def play(video_path: str, recorder: Recorder, camera, *, flush_every: int = 10) -> None:
    """Decode the video, detect motion and record each frame, flushing once a (video) second."""
    capture = cv2.VideoCapture(video_path)
    detectors = build_detectors(["motion"])
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        detections = [d.as_dict() for d in run_detectors(detectors, frame)]
        recorder.record_frame(
            camera=camera, timestamp_ms=T0 + index * FRAME_MS, detections=detections, frame=frame
        )
        index += 1
        if index % flush_every == 0:
            recorder.flush()
    capture.release()
    assert index == FRAMES


def ms(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def test_a_video_with_a_moving_object_yields_two_events_and_a_session(
    video_path, recorder, front_door
):
    play(video_path, recorder, front_door)
    recorder.camera_stopped(camera_pk=front_door.pk)
    recorder.flush()

    events = list(DetectionEvent.objects.order_by("started_at"))
    assert [event.label for event in events] == ["motion", "motion"]
    first, second = events
    # The 0.5 s gap did not split the first visit; the 2.5 s absence did.
    assert first.started_at == ms(T0 + 15 * FRAME_MS)
    assert first.ended_at == ms(T0 + 44 * FRAME_MS)
    assert first.frames_seen == 25
    assert second.started_at == ms(T0 + 70 * FRAME_MS)
    assert second.ended_at == ms(T0 + 79 * FRAME_MS)
    assert second.frames_seen == 10
    for event in events:
        assert event.organization_id == front_door.organization_id
        assert event.peak_confidence > 0.9
        x, y, w, h = event.best_bbox
        assert 75 <= y <= 85 and 38 <= w <= 48 and 78 <= h <= 86

    session = CameraSession.objects.get()
    assert session.camera == front_door
    assert session.started_at == ms(T0)
    assert session.ended_at == ms(T0 + (FRAMES - 1) * FRAME_MS)
    assert session.frames_processed == FRAMES
    assert session.measured_fps == pytest.approx(10.0, abs=0.01)
    assert session.counts == {"motion": 2}
    assert {event.session_id for event in events} == {session.pk}


def test_each_event_has_a_jpeg_snapshot_of_its_best_frame_with_the_box_drawn(
    video_path, recorder, front_door
):
    play(video_path, recorder, front_door)
    recorder.camera_stopped(camera_pk=front_door.pk)
    recorder.flush()
    for event in DetectionEvent.objects.all():
        assert event.snapshot.name.startswith(f"snapshots/{front_door.public_id}/")
        with default_storage.open(event.snapshot.name) as handle:
            data = handle.read()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
        x, y, w, h = event.best_bbox
        # The box's outline is drawn in green on the copy.
        b, g, r = image[y, x + w // 2].astype(int)
        assert g > 200 and r < 80 and b < 80


def test_an_open_event_is_stored_at_the_first_flush_and_closed_later(recorder, front_door):
    frame = np.zeros((120, 160, 3), np.uint8)
    detection = {"class": "person", "confidence": 0.7, "bbox": [1, 2, 30, 40]}
    recorder.record_frame(camera=front_door, timestamp_ms=T0, detections=[detection], frame=frame)
    recorder.flush()
    event = DetectionEvent.objects.get()
    assert event.ended_at is None
    assert event.snapshot
    assert CameraSession.objects.get().ended_at is None

    recorder.record_frame(camera=front_door, timestamp_ms=T0 + 500, detections=[], frame=frame)
    recorder.record_frame(camera=front_door, timestamp_ms=T0 + 1_600, detections=[], frame=frame)
    recorder.flush()
    event.refresh_from_db()
    assert event.ended_at == ms(T0)
    assert CameraSession.objects.get().frames_processed == 3


def test_a_better_frame_replaces_the_snapshot_file_when_the_event_closes(recorder, front_door):
    frame = np.zeros((120, 160, 3), np.uint8)
    weak = {"class": "person", "confidence": 0.5, "bbox": [1, 2, 30, 40]}
    strong = {"class": "person", "confidence": 0.9, "bbox": [50, 20, 30, 40]}
    recorder.record_frame(camera=front_door, timestamp_ms=T0, detections=[weak], frame=frame)
    recorder.flush()
    first_name = DetectionEvent.objects.get().snapshot.name
    recorder.record_frame(
        camera=front_door, timestamp_ms=T0 + 100, detections=[strong], frame=frame
    )
    recorder.camera_stopped(camera_pk=front_door.pk)
    recorder.flush()
    event = DetectionEvent.objects.get()
    assert event.peak_confidence == 0.9
    assert event.best_bbox == [50, 20, 30, 40]
    assert event.snapshot.name != first_name
    assert default_storage.exists(event.snapshot.name)
    assert not default_storage.exists(first_name)


def test_frames_without_detection_count_for_the_session_but_not_for_presence(recorder, front_door):
    detection = {"class": "car", "confidence": 0.6, "bbox": [0, 0, 10, 10]}
    recorder.record_frame(camera=front_door, timestamp_ms=T0, detections=[detection])
    recorder.record_frame(camera=front_door, timestamp_ms=T0 + 100, detections=None)
    recorder.record_frame(camera=front_door, timestamp_ms=T0 + 200, detections=[detection])
    recorder.flush()
    event = DetectionEvent.objects.get()
    assert event.frames_seen == 2 and event.ended_at is None
    assert event.snapshot == ""  # no frame was given
    assert CameraSession.objects.get().frames_processed == 3


def test_recording_at_full_rate_costs_a_few_queries_per_flush_not_one_per_frame(
    recorder, front_door, back_yard
):
    frame = np.zeros((120, 160, 3), np.uint8)
    frames = 300  # 30 s of two cameras at 10 fps, flushed once a second
    with CaptureQueriesContext(connection) as queries:
        for index in range(frames):
            for camera in (front_door, back_yard):
                detections = [
                    {"class": "person", "confidence": 0.5 + (index % 7) / 20, "bbox": [1, 1, 9, 9]}
                ]
                if index % 50 < 5:  # a car comes and goes every 5 s
                    detections.append({"class": "car", "confidence": 0.6, "bbox": [2, 2, 8, 8]})
                recorder.record_frame(
                    camera=camera, timestamp_ms=T0 + index * 100, detections=detections, frame=frame
                )
            if index % 10 == 9:
                recorder.flush()
    flushes = frames // 10
    # Each camera is written in its own transaction: savepoints here, inside the test's own
    # transaction; BEGIN and COMMIT in the flusher thread, which are not statements.
    statements = [
        query["sql"]
        for query in queries.captured_queries
        if not query["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
    ]
    # 2 cameras x 300 frames = 600 recorded frames; the budget is a handful per flush.
    assert len(statements) <= flushes * 6, [sql[:80] for sql in statements[:20]]
    assert len(statements) < 600 / 3
    assert DetectionEvent.objects.filter(label="car").count() == 2 * 6
    assert CameraSession.objects.count() == 2


def test_a_camera_without_frames_for_the_idle_time_ends_its_session(media_root, front_door):
    recorder = Recorder(gap_seconds=1, flush_seconds=1, idle_seconds=1, run_flusher=False)
    detection = {"class": "person", "confidence": 0.7, "bbox": [1, 2, 3, 4]}
    recorder.record_frame(camera=front_door, timestamp_ms=T0, detections=[detection])
    recorder.flush()
    assert CameraSession.objects.get().ended_at is None
    time.sleep(1.1)
    recorder.flush()
    session = CameraSession.objects.get()
    assert session.ended_at == ms(T0)
    assert DetectionEvent.objects.get().ended_at == ms(T0)


def test_frames_after_a_stop_start_a_new_session(recorder, front_door):
    recorder.record_frame(camera=front_door, timestamp_ms=T0, detections=[])
    recorder.camera_stopped(camera_pk=front_door.pk)
    recorder.record_frame(camera=front_door, timestamp_ms=T0 + 60_000, detections=[])
    recorder.flush()
    sessions = list(CameraSession.objects.order_by("started_at"))
    assert len(sessions) == 2
    assert sessions[0].ended_at == ms(T0)
    assert sessions[1].ended_at is None


def test_sessions_and_events_a_dead_process_left_open_are_ended_at_the_first_flush(
    recorder, front_door
):
    from tests.events.conftest import event_make, session_make

    session = session_make(front_door, at=ms(T0))
    CameraSession.objects.filter(pk=session.pk).update(ended_at=None)
    event = event_make(front_door, label="person", at=ms(T0), ongoing=True)
    recorder.flush()
    session.refresh_from_db()
    event.refresh_from_db()
    assert session.ended_at == session.last_frame_at
    assert event.ended_at == event.last_seen_at


def test_a_camera_deleted_while_recording_is_dropped_without_breaking_the_others(
    recorder, front_door, back_yard
):
    detection = {"class": "person", "confidence": 0.7, "bbox": [1, 2, 3, 4]}
    recorder.record_frame(camera=front_door, timestamp_ms=T0, detections=[detection])
    front_door.delete()
    recorder.record_frame(camera=back_yard, timestamp_ms=T0, detections=[detection])
    recorder.flush()
    assert list(DetectionEvent.objects.values_list("camera_id", flat=True)) == [back_yard.pk]


def test_the_flusher_thread_writes_without_being_asked(transactional_db, media_root, organization):
    from cameras.services import camera_create

    camera = camera_create(organization=organization, name="Threaded", source="push:")
    recorder = Recorder(gap_seconds=1, flush_seconds=0.05, idle_seconds=10)
    try:
        recorder.record_frame(
            camera=camera,
            timestamp_ms=T0,
            detections=[{"class": "person", "confidence": 0.7, "bbox": [1, 2, 3, 4]}],
        )
        deadline = time.monotonic() + 5
        while not DetectionEvent.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert DetectionEvent.objects.filter(camera=camera).exists()
    finally:
        recorder.close()
    assert CameraSession.objects.get(camera=camera).ended_at is not None


def test_snapshot_jpeg_draws_on_a_copy():
    frame = np.zeros((50, 60, 3), np.uint8)
    data = snapshot_jpeg(frame, label="person", boxes=[([5, 5, 20, 20], 0.5)])
    assert data[:2] == b"\xff\xd8"
    assert not frame.any()


def test_every_box_of_the_class_in_the_best_frame_is_drawn_on_the_snapshot(recorder, front_door):
    frame = np.zeros((120, 160, 3), np.uint8)
    people = [
        {"class": "person", "confidence": 0.9, "bbox": [10, 20, 30, 60]},
        {"class": "person", "confidence": 0.6, "bbox": [100, 20, 30, 60]},
        {"class": "car", "confidence": 0.7, "bbox": [60, 90, 20, 10]},
    ]
    recorder.record_frame(camera=front_door, timestamp_ms=T0, detections=people, frame=frame)
    recorder.flush()
    person = DetectionEvent.objects.get(label="person")
    assert person.best_bbox == [10, 20, 30, 60]
    with default_storage.open(person.snapshot.name) as handle:
        image = cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR)
    green = lambda x, y: image[y, x][1] > 150  # noqa: E731
    assert green(25, 80) and green(115, 80)  # the bottom edges of both people's boxes
    assert not green(70, 100)  # the car is another event, drawn on its own snapshot
