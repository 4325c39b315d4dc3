"""The recorder keeps recording for days: several cameras with overlapping detectors fed from
their own threads while the flusher writes, faults injected into the real database, a camera
whose state went bad, and a restart. The times are tiny (tenths of a second) so that a few
seconds cross many `EVENT_MAX_SECONDS` cuts and gap closes."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest

from cameras.services import camera_create
from events.models import CameraSession, DetectionEvent
from events.recording import Recorder

GAP_SECONDS = 0.1
MAX_SECONDS = 0.4
FLUSH_SECONDS = 0.03


def _detections(camera_index: int, elapsed: float) -> list[dict] | None:
    """What each camera's detectors find `elapsed` seconds in: motion almost always (so events
    are cut at the longest length), people and faces coming and going (so gaps close them)."""
    box = {"bbox": [4, 4, 20, 30]}
    detections = [{"class": "motion", "confidence": 0.6 + (int(elapsed * 50) % 5) / 20, **box}]
    if camera_index == 0:
        if elapsed % 0.55 < 0.3:
            detections.append({"class": "person", "confidence": 0.8, **box})
    elif camera_index == 1:
        if elapsed % 0.7 < 0.45:
            detections.append({"class": "person", "confidence": 0.7, **box})
        if elapsed % 0.9 < 0.2:
            detections.append({"class": "face", "confidence": 0.9, **box})
    elif int(elapsed * 100) % 7 == 0:
        return None  # detection did not run on this frame
    return detections


class _Feeder(threading.Thread):
    """A capture worker's part: frames with detections into the recorder, as fast as it goes."""

    def __init__(self, recorder: Recorder, camera, camera_index: int, seconds: float) -> None:
        super().__init__(daemon=True)
        self.recorder = recorder
        self.camera = camera
        self.camera_index = camera_index
        self.seconds = seconds
        self.frames = 0
        self.labels: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        frame = np.full((48, 64, 3), 40 * self.camera_index, np.uint8)
        started = time.monotonic()
        last_ms = 0
        try:
            while (elapsed := time.monotonic() - started) < self.seconds:
                timestamp_ms = max(int(time.time() * 1000), last_ms + 1)
                last_ms = timestamp_ms
                detections = _detections(self.camera_index, elapsed)
                self.recorder.record_frame(
                    camera=self.camera,
                    timestamp_ms=timestamp_ms,
                    detections=detections,
                    frame=frame,
                )
                self.frames += 1
                self.labels.update(d["class"] for d in detections or [])
                time.sleep(0.005)
        except BaseException as error:  # the test asserts there was none
            self.error = error


@pytest.fixture
def cameras(transactional_db, media_root, organization):
    return [
        camera_create(organization=organization, name=f"Street {index}", source="push:")
        for index in range(3)
    ]


def _assert_events_are_consistent(camera, feeder: _Feeder) -> None:
    events = list(DetectionEvent.objects.filter(camera=camera).order_by("label", "started_at"))
    assert events, f"{camera.name} recorded nothing"
    # Every frame that saw a class is in exactly one stored event of that class.
    frames_seen = Counter()
    for event in events:
        frames_seen[event.label] += event.frames_seen
    assert frames_seen == feeder.labels
    previous = {}
    for event in events:
        assert event.ended_at == event.last_seen_at, event  # closed at its real last sighting
        assert event.started_at <= event.last_seen_at
        assert event.duration_seconds < MAX_SECONDS, event
        if event.frames_seen > 1:
            assert event.duration_seconds > 0, event  # seen in several frames: not 0 s
        if event.label in previous:
            assert event.started_at > previous[event.label].last_seen_at  # no overlap
        previous[event.label] = event
    # Sessions count what the events are.
    sessions = list(CameraSession.objects.filter(camera=camera))
    assert len(sessions) == 1
    session = sessions[0]
    assert session.counts == dict(Counter(event.label for event in events))
    assert session.frames_processed == feeder.frames
    assert session.ended_at is not None


def test_three_cameras_with_overlapping_detectors_keep_recording_across_cuts_and_gaps(
    cameras, caplog
):
    recorder = Recorder(
        gap_seconds=GAP_SECONDS,
        max_event_seconds=MAX_SECONDS,
        flush_seconds=FLUSH_SECONDS,
        idle_seconds=5,
    )
    seconds = 3.0
    feeders = [_Feeder(recorder, camera, index, seconds) for index, camera in enumerate(cameras)]
    caplog.set_level(logging.WARNING, logger="events.recording")
    try:
        for feeder in feeders:
            feeder.start()
        for feeder in feeders:
            feeder.join(timeout=seconds + 10)
    finally:
        recorder.close()
    assert [feeder.error for feeder in feeders] == [None, None, None]
    assert not [record for record in caplog.records if record.name == "events.recording"]
    for camera, feeder in zip(cameras, feeders, strict=True):
        _assert_events_are_consistent(camera, feeder)
        # Each camera kept writing to the end: its last motion event began in the last cut.
        newest = DetectionEvent.objects.filter(camera=camera, label="motion").latest("started_at")
        session = CameraSession.objects.get(camera=camera)
        assert newest.started_at >= session.last_frame_at - timedelta(seconds=MAX_SECONDS + 0.1)
    # Crossed many cuts and gap closes.
    assert DetectionEvent.objects.filter(label="motion").count() >= 3 * 5
    assert DetectionEvent.objects.filter(label="person").count() >= 2 * 3
