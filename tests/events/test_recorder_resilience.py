"""The recorder keeps recording for days: several cameras with overlapping detectors fed from
their own threads while the flusher writes, faults injected into the real database, a camera
whose state went bad, and a restart. The times are tiny (tenths of a second) so that a few
seconds cross many `EVENT_MAX_SECONDS` cuts and gap closes."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection
from prometheus_client import REGISTRY

from cameras.services import camera_create
from events.models import CameraSession, DetectionEvent
from events.recording import FAILURES_BEFORE_REBUILD, Recorder
from events.tracking import TrackedEvent
from project.heartbeats import heartbeats_read

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
        # What /readyz and the cameras pages read: a recent flush, every camera recording.
        beats = heartbeats_read(["recorder", *(f"recorder:{c.public_id}" for c in cameras)])
        assert beats["recorder"]["cameras"] == 3 and beats["recorder"]["paused"] == 0
        assert time.time() - beats["recorder"]["at"] < 2
        for camera in cameras:
            beat = beats[f"recorder:{camera.public_id}"]
            assert (beat["state"], beat["reason"]) == ("recording", "")
            assert time.time() - beat["last_event_at"] < 2
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


# --- faults, one camera at a time ----------------------------------------------------------

PERSON = {"class": "person", "confidence": 0.8, "bbox": [4, 4, 20, 30]}
CAR = {"class": "car", "confidence": 0.7, "bbox": [30, 20, 20, 10]}


@contextmanager
def failing_event_inserts(camera) -> Iterator[None]:
    """A real fault in the database: storing a new event of `camera` fails until the block ends
    (a trigger, so the recorder's own queries are the ones that fail)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER sightline_test_fault BEFORE INSERT ON events_detectionevent "
                f"WHEN NEW.camera_id = {camera.pk} "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION sightline_test_fault() RETURNS trigger AS $$ "
                # The error class SQLite's RAISE(ABORT) gives too: IntegrityError.
                "BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = 'integrity_constraint_violation'; "
                "END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER sightline_test_fault BEFORE INSERT ON events_detectionevent "
                f"FOR EACH ROW WHEN (NEW.camera_id = {camera.pk}) "
                "EXECUTE FUNCTION sightline_test_fault()"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("DROP TRIGGER sightline_test_fault")
            else:
                cursor.execute("DROP TRIGGER sightline_test_fault ON events_detectionevent")
                cursor.execute("DROP FUNCTION sightline_test_fault()")


def _metric(name: str, camera) -> float:
    return REGISTRY.get_sample_value(name, {"camera": camera.public_id}) or 0.0


def _failures(camera) -> float:
    return _metric("sightline_recorder_flush_failures_total", camera)


def _rebuilds(camera) -> float:
    return _metric("sightline_recorder_state_rebuilds_total", camera)


def _heartbeat(camera) -> dict:
    return heartbeats_read([f"recorder:{camera.public_id}"])[f"recorder:{camera.public_id}"]


def _ms(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def _logged(caplog, camera, level: int) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "events.recording"
        and record.levelno == level
        and camera.public_id in record.getMessage()
    ]


class _Clock:
    """Frame timestamps 100 ms apart, from a minute ago (recent, as a live camera's are)."""

    def __init__(self) -> None:
        self.ms = int(time.time() * 1000) - 60_000

    def tick(self) -> int:
        self.ms += 100
        return self.ms


@pytest.fixture
def manual_recorder(transactional_db, media_root):
    """A recorder flushed by the test, on the database's own transactions (as the flusher)."""
    return Recorder(gap_seconds=1, flush_seconds=1, idle_seconds=600, run_flusher=False)


def test_a_write_that_fails_once_is_written_at_the_next_flush_and_holds_up_no_other_camera(
    manual_recorder, cameras, caplog
):
    caplog.set_level(logging.INFO, logger="events.recording")
    front, back = cameras[:2]
    clock = _Clock()
    failures = _failures(front)
    first = clock.ms + 100
    for _ in range(3):
        now = clock.tick()
        for camera in (front, back):
            manual_recorder.record_frame(camera=camera, timestamp_ms=now, detections=[PERSON])
    with failing_event_inserts(front):
        manual_recorder.flush()

    assert _failures(front) == failures + 1
    assert not DetectionEvent.objects.filter(camera=front).exists()
    assert not CameraSession.objects.filter(camera=front).exists()  # rolled back with it
    assert DetectionEvent.objects.get(camera=back).frames_seen == 3
    paused = _heartbeat(front)
    assert paused["state"] == "paused"
    assert paused["reason"] == "events could not be written: IntegrityError"
    assert _heartbeat(back)["state"] == "recording"

    for _ in range(3):
        now = clock.tick()
        for camera in (front, back):
            manual_recorder.record_frame(camera=camera, timestamp_ms=now, detections=[PERSON])
    manual_recorder.flush()

    event = DetectionEvent.objects.get(camera=front)
    assert (event.started_at, event.last_seen_at) == (_ms(first), _ms(now))
    assert event.frames_seen == 6 and event.ended_at is None
    session = CameraSession.objects.get(camera=front)  # created once, by the write that held
    assert session.frames_processed == 6 and event.session_id == session.pk
    beat = _heartbeat(front)
    assert beat["state"] == "recording" and beat["reason"] == ""
    assert beat["last_event_at"] == pytest.approx(now / 1000)
    assert _failures(front) == failures + 1
    assert len(_logged(caplog, front, logging.WARNING)) == 1  # failed
    assert len(_logged(caplog, front, logging.INFO)) == 1  # recorded again
    assert not _logged(caplog, front, logging.ERROR)


def test_a_camera_whose_writes_keep_failing_is_rebuilt_told_once_and_records_again(
    manual_recorder, cameras, caplog
):
    front, back = cameras[:2]
    clock = _Clock()
    failures, rebuilds = _failures(front), _rebuilds(front)

    def frames(count: int, detections: list[dict]) -> None:
        for _ in range(count):
            now = clock.tick()
            for camera in (front, back):
                manual_recorder.record_frame(camera=camera, timestamp_ms=now, detections=detections)

    frames(2, [PERSON])
    manual_recorder.flush()
    stored = DetectionEvent.objects.get(camera=front)
    beats = []
    with failing_event_inserts(front):
        # A car appears: its event cannot be stored, and the person's frames wait with it.
        for _ in range(2 * FAILURES_BEFORE_REBUILD):
            frames(2, [PERSON, CAR])
            last_seen = clock.ms
            manual_recorder.flush()
            beats.append(_heartbeat(front))
            if len(beats) == FAILURES_BEFORE_REBUILD:
                # Rebuilt: the stored person event ends when the person was last seen, not
                # when it was last stored; its session counts what is stored.
                stored.refresh_from_db()
                assert stored.ended_at == stored.last_seen_at == _ms(last_seen)
                session = CameraSession.objects.get(pk=stored.session_id)
                assert session.ended_at == _ms(last_seen)
                assert session.counts == {"person": 1}
    assert [beat["state"] for beat in beats] == ["paused"] * len(beats)
    assert beats[FAILURES_BEFORE_REBUILD - 1]["reason"].startswith("rebuilding")
    assert _failures(front) == failures + 2 * FAILURES_BEFORE_REBUILD
    assert _rebuilds(front) == rebuilds + 2  # the fresh state failed the same way
    # Told once, with the traceback, however long it lasted.
    errors = _logged(caplog, front, logging.ERROR)
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert len(_logged(caplog, front, logging.WARNING)) == 1

    frames(2, [PERSON])
    manual_recorder.flush()
    assert _heartbeat(front)["state"] == "recording"
    newest = DetectionEvent.objects.filter(camera=front).latest("started_at")
    assert newest.pk != stored.pk and newest.frames_seen == 2 and newest.ended_at is None
    assert newest.session.ended_at is None
    # The other camera never missed a frame.
    assert sum(
        DetectionEvent.objects.filter(camera=back, label="person").values_list(
            "frames_seen", flat=True
        )
    ) == (2 + 2 * 2 * FAILURES_BEFORE_REBUILD + 2)
    assert (
        CameraSession.objects.get(camera=back).frames_processed == 4 + 4 * FAILURES_BEFORE_REBUILD
    )


def test_a_camera_whose_state_is_corrupt_does_not_stop_the_others_and_is_rebuilt(
    manual_recorder, cameras, caplog
):
    front, back = cameras[:2]
    clock = _Clock()
    rebuilds = _rebuilds(front)
    now = clock.tick()
    for camera in (front, back):
        manual_recorder.record_frame(camera=camera, timestamp_ms=now, detections=[PERSON])
    manual_recorder.flush()
    # The shape of the bug that once stopped every camera: an event to write that the camera's
    # state no longer has.
    manual_recorder._cameras[front.pk].dirty.add(-1)
    for _ in range(FAILURES_BEFORE_REBUILD):
        now = clock.tick()
        for camera in (front, back):
            manual_recorder.record_frame(camera=camera, timestamp_ms=now, detections=[PERSON])
        manual_recorder.flush()
        assert DetectionEvent.objects.get(camera=back).last_seen_at == _ms(now)
        assert _heartbeat(back)["state"] == "recording"
        assert _heartbeat(front)["state"] == "paused"
    assert _rebuilds(front) == rebuilds + 1
    front_event = DetectionEvent.objects.get(camera=front)
    assert front_event.ended_at == _ms(now)  # its real last sighting, not its last stored one

    now = clock.tick()
    manual_recorder.record_frame(camera=front, timestamp_ms=now, detections=[PERSON])
    manual_recorder.flush()
    assert _heartbeat(front)["state"] == "recording"
    assert DetectionEvent.objects.filter(camera=front, ended_at__isnull=True).get().started_at == (
        _ms(now)
    )
    assert CameraSession.objects.filter(camera=front).count() == 2


def test_a_frame_that_breaks_a_camera_state_never_reaches_the_worker_and_the_state_is_rebuilt(
    manual_recorder, cameras
):
    front, back = cameras[:2]
    clock = _Clock()
    rebuilds = _rebuilds(front)
    manual_recorder.record_frame(camera=front, timestamp_ms=clock.tick(), detections=[])
    # An open event the recorder never heard of: extending it cannot find its bookkeeping.
    stranger = TrackedEvent(
        label="person",
        started_ms=clock.ms,
        last_seen_ms=clock.ms,
        peak_confidence=0.5,
        best_bbox=[],
    )
    manual_recorder._cameras[front.pk].tracker.open[("person", None)] = stranger
    now = clock.tick()
    for camera in (front, back):
        manual_recorder.record_frame(camera=camera, timestamp_ms=now, detections=[PERSON])
    manual_recorder.flush()  # rebuilt at once: a broken state does not heal by waiting
    assert _rebuilds(front) == rebuilds + 1
    assert DetectionEvent.objects.filter(camera=back).exists()

    now = clock.tick()
    manual_recorder.record_frame(camera=front, timestamp_ms=now, detections=[PERSON])
    manual_recorder.flush()
    assert DetectionEvent.objects.get(camera=front).started_at == _ms(now)
    assert _heartbeat(front)["state"] == "recording"


def test_after_a_restart_open_events_are_ended_at_their_last_sighting(cameras):
    front = cameras[0]
    clock = _Clock()
    clock.ms = int(time.time() * 1000) - 1_600  # the person was there until just now
    crashed = Recorder(gap_seconds=1, flush_seconds=1, idle_seconds=1, run_flusher=False)
    first = clock.ms + 100
    for _ in range(15):
        crashed.record_frame(camera=front, timestamp_ms=clock.tick(), detections=[PERSON])
    crashed.flush()
    # The process dies here without closing anything; a new one starts.
    restarted = Recorder(gap_seconds=1, flush_seconds=0.1, idle_seconds=1, run_flusher=False)
    restarted.flush()
    event = DetectionEvent.objects.get()
    assert event.ended_at is None  # seen within the idle time: maybe another process's
    time.sleep(1.2)
    restarted.flush()
    event.refresh_from_db()
    assert event.ended_at == event.last_seen_at == _ms(clock.ms)
    assert event.duration_seconds == pytest.approx((clock.ms - first) / 1000)
    session = CameraSession.objects.get()
    assert session.ended_at == session.last_frame_at == _ms(clock.ms)


class _FlushFailsAtFirst(Recorder):
    """A recorder whose first flushes fail as a whole, as a bug outside any camera's part would."""

    def __init__(self, *, failures: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.failures_left = failures

    def flush(self) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("injected flush failure")
        super().flush()


def test_the_flusher_outlives_failed_flushes_backs_off_and_tells_it_once(cameras, caplog):
    front = cameras[0]
    recorder = _FlushFailsAtFirst(failures=4, gap_seconds=1, flush_seconds=0.02, idle_seconds=600)
    try:
        recorder.record_frame(
            camera=front, timestamp_ms=int(time.time() * 1000), detections=[PERSON]
        )
        started = time.monotonic()
        while recorder.failures_left and time.monotonic() < started + 10:
            recorder._wake.set()  # events closing must not make a failing flusher spin
            time.sleep(0.005)
        # It backed off: 0.04 + 0.08 + 0.16 s between the four failures, not back to back.
        assert time.monotonic() - started > 0.25
        deadline = time.monotonic() + 10
        # A flush that worked leaves the camera's heartbeat.
        camera_beat = f"recorder:{front.public_id}"
        while not heartbeats_read([camera_beat]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert heartbeats_read([camera_beat])
    finally:
        recorder.close()
    assert DetectionEvent.objects.filter(camera=front).exists()
    failed = [r for r in caplog.records if r.getMessage().startswith("Recording events failed")]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert any(r.getMessage().startswith("Recording events works again") for r in caplog.records)


def test_the_recorder_reports_alive_from_its_first_frame_not_its_first_flush(cameras):
    # A camera goes online just before its first frame reaches the recorder; /readyz must not
    # find an online camera and no recorder in the second before the first flush.
    recorder = Recorder(gap_seconds=1, flush_seconds=30, idle_seconds=600)
    try:
        recorder.record_frame(camera=cameras[0], timestamp_ms=_Clock().tick(), detections=[PERSON])
        deadline = time.monotonic() + 2
        while not heartbeats_read(["recorder"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.flushes == 0
        assert heartbeats_read(["recorder"])["recorder"]["flush_seconds"] is None
    finally:
        recorder.close()
