"""Event clips through the real parts: a video this test writes, of two people who walk past each
other after an empty street, through `FramePipeline` (HOG, the tracker), the events app's own
receivers (the recorder and the clip recorder), PyAV's libx264, the storage, the database and the
scoped clip endpoint; then the ways a clip goes: with its event, its camera, prune_events and the
disk budget."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from cameras.pipeline import FramePipeline
from cameras.selectors import CameraConfig
from cameras.services import camera_create
from cameras.vision.demo import _render_background
from events.clips import ClipRecorder
from events.models import DetectionEvent
from events.recording import Recorder
from events.services import (
    clips_over_budget_delete,
    event_clip_attach,
    events_delete,
)
from events.video.clips import FrameRing, RingFrame, clip_encode
from tests.events.conftest import event_make
from tests.events.test_object_events import FRAME_MS, HEIGHT, T0, WIDTH, scene

pytestmark = pytest.mark.django_db

PRE_MS = POST_MS = 1000
EMPTY_BEFORE = 20  # 2 s of empty street: room for the pre-roll
WALKING = 60
EMPTY_AFTER = 30  # 3 s: the events close (1 s gap) and their post-roll comes in


class NobodyWatching:
    """A producer's publisher with no viewer: the pipeline encodes a picture only if a
    receiver asks for one, and must publish nothing."""

    def __init__(self):
        self.published = 0

    def wants_picture(self) -> bool:
        return False

    def publish(self, frame) -> None:
        self.published += 1


@pytest.fixture
def street(organization):
    return camera_create(
        organization=organization, name="Street", source="push:", detectors=["person", "motion"]
    )


@pytest.fixture
def clips(media_root, monkeypatch, settings):
    """The events app's clip receiver records into this clip recorder, encoded by the test."""
    settings.EVENTS_RECORDING = True
    settings.EVENT_CLIPS = True
    clips = ClipRecorder(
        pre_seconds=PRE_MS / 1000,
        post_seconds=POST_MS / 1000,
        fps=10,
        buffer_seconds=30,
        buffer_bytes=32 * 1024 * 1024,
        run_worker=False,
    )
    monkeypatch.setattr("events.clips._clip_recorder", clips)
    return clips


@pytest.fixture
def played(street, clips, monkeypatch):
    """The street video through the camera's pipeline; the recorder tells `clips` of the events
    it stores as ended. Returns the clips encoded before the end, and the publisher."""
    recorder = Recorder(
        gap_seconds=1.0, flush_seconds=1.0, idle_seconds=10.0, run_flusher=False, clips=clips
    )
    monkeypatch.setattr("events.recording._recorder", recorder)
    pipeline = FramePipeline(CameraConfig.of(street))
    publisher = NobodyWatching()
    background = _render_background(WIDTH, HEIGHT, np.random.default_rng(3))
    total = EMPTY_BEFORE + WALKING + EMPTY_AFTER
    for index in range(total):
        walking = EMPTY_BEFORE <= index < EMPTY_BEFORE + WALKING
        frame = scene(index - EMPTY_BEFORE, background) if walking else background.copy()
        pipeline.process(frame, timestamp_ms=T0 + index * FRAME_MS, publisher=publisher)
        if index % 10 == 9:
            recorder.flush()
            clips.encode_due()
    pipeline.camera_stopped()
    recorder.flush()
    clips.encode_due()
    return publisher


def decoded(name: str) -> dict:
    with av.open(default_storage.path(name)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return {
            "duration_ms": container.duration / 1000,
            "frames": len(frames),
            "size": (stream.codec_context.width, stream.codec_context.height),
            "pix_fmt": stream.codec_context.pix_fmt,
            "codec": stream.codec_context.name,
            # No B-frames: every frame is shown in the order it is decoded.
            "in_order": [f.pts for f in frames] == sorted(f.pts for f in frames),
        }


def test_each_person_event_gets_a_clip_from_its_pre_roll_to_its_post_roll(played, street):
    people = list(DetectionEvent.objects.filter(camera=street, label="person"))
    assert len(people) == 2
    for event in people:
        assert event.clip.name.startswith(f"clips/{street.public_id}/")
        assert event.clip.name.endswith(f"/{event.pk}-person.mp4")
        video = decoded(event.clip.name)
        expected_ms = PRE_MS + event.duration_seconds * 1000 + POST_MS
        # Within a frame or two: the clip's frames are the camera's, 100 ms apart.
        assert video["duration_ms"] == pytest.approx(expected_ms, abs=2 * FRAME_MS)
        assert event.clip_duration_ms == pytest.approx(video["duration_ms"], abs=1)
        assert video["frames"] == pytest.approx(expected_ms / FRAME_MS, abs=2)
        assert video["size"] == (WIDTH, HEIGHT)
        assert (video["codec"], video["pix_fmt"]) == ("h264", "yuv420p")
        assert video["in_order"]
        assert event.clip_preroll_ms == PRE_MS
        assert event.clip_bytes == default_storage.size(event.clip.name)


def test_a_clip_is_made_for_browsers_to_play_as_it_arrives(played, street):
    event = DetectionEvent.objects.filter(camera=street, label="person").first()
    with default_storage.open(event.clip.name) as stored:
        data = stored.read()
    # +faststart: the index (moov) comes before the media data, so playing starts at once.
    assert 0 < data.find(b"moov") < data.find(b"mdat")
    with av.open(default_storage.path(event.clip.name)) as container:
        assert container.streams.video[0].codec_context.has_b_frames is False


def test_nobody_watching_still_records_clips_and_publishes_nothing(played, street):
    assert played.published == 0
    assert (
        DetectionEvent.objects.filter(camera=street, label="person").exclude(clip="").count() == 2
    )


def test_motion_events_get_no_clip(played, street):
    motion = DetectionEvent.objects.filter(camera=street, label="motion")
    assert motion.exists()
    assert not motion.exclude(clip="").exists()


def test_clips_are_encoded_by_the_clip_worker_not_on_the_frame_path(street, clips, monkeypatch):
    """Frames and the recorder's news only queue work: nothing is encoded until the worker's
    `encode_due` runs (here called by the test, in production by the `events-clips` thread)."""
    recorder = Recorder(
        gap_seconds=1.0, flush_seconds=1.0, idle_seconds=10.0, run_flusher=False, clips=clips
    )
    monkeypatch.setattr("events.recording._recorder", recorder)
    pipeline = FramePipeline(CameraConfig.of(street))
    background = _render_background(WIDTH, HEIGHT, np.random.default_rng(3))
    for index in range(EMPTY_BEFORE + WALKING + EMPTY_AFTER):
        walking = EMPTY_BEFORE <= index < EMPTY_BEFORE + WALKING
        frame = scene(index - EMPTY_BEFORE, background) if walking else background.copy()
        pipeline.process(frame, timestamp_ms=T0 + index * FRAME_MS, publisher=NobodyWatching())
        if index % 10 == 9:
            recorder.flush()
    recorder.flush()
    assert DetectionEvent.objects.filter(label="person").count() == 2
    assert not DetectionEvent.objects.exclude(clip="").exists()
    assert not (default_storage.exists("clips"))
    assert clips.encode_due() == 2


# --- serving ------------------------------------------------------------------------------


def test_the_clip_is_served_to_members_as_mp4_with_byte_ranges(played, alice_api, bob_api):
    event = DetectionEvent.objects.filter(label="person").exclude(clip="").first()
    with default_storage.open(event.clip.name) as stored:
        data = stored.read()
    url = f"/api/v1/events/{event.pk}/clip"

    whole = alice_api.get(url)
    assert whole.status_code == 200
    assert whole["Content-Type"] == "video/mp4"
    assert whole["Accept-Ranges"] == "bytes"
    assert int(whole["Content-Length"]) == len(data)
    assert b"".join(whole.streaming_content) == data

    first = bob_api.get(url, HTTP_RANGE="bytes=0-99")
    assert first.status_code == 206
    assert first["Content-Range"] == f"bytes 0-99/{len(data)}"
    assert first["Content-Length"] == "100"
    assert b"".join(first.streaming_content) == data[:100]

    rest = alice_api.get(url, HTTP_RANGE="bytes=1000-")
    assert rest.status_code == 206
    assert rest["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert b"".join(rest.streaming_content) == data[1000:]

    tail = alice_api.get(url, HTTP_RANGE="bytes=-500")
    assert b"".join(tail.streaming_content) == data[-500:]

    past = alice_api.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert past.status_code == 416
    assert past["Content-Range"] == f"bytes */{len(data)}"

    stale = alice_api.get(url, HTTP_RANGE="bytes=0-99", HTTP_IF_RANGE='"not-this-file"')
    assert stale.status_code == 200
    assert b"".join(stale.streaming_content) == data

    listed = alice_api.get(f"/api/v1/events/{event.pk}").json()
    assert listed["clip_url"] == url
    assert listed["clip_duration_ms"] == event.clip_duration_ms


def test_charlie_gets_404_for_alices_clip(played, charlie_api, client):
    event = DetectionEvent.objects.exclude(clip="").first()
    assert charlie_api.get(f"/api/v1/events/{event.pk}/clip").status_code == 404
    assert client.get(f"/api/v1/events/{event.pk}/clip").status_code in (401, 403)


def test_an_event_without_a_clip_is_404(alice_api, street):
    event = event_make(street, label="person", at=datetime.now(UTC), track_id=1)
    assert alice_api.get(f"/api/v1/events/{event.pk}/clip").status_code == 404
    assert alice_api.get(f"/api/v1/events/{event.pk}").json()["clip_url"] is None


def test_the_detail_page_plays_the_clip_with_the_path_over_it(played, client, alice):
    event = DetectionEvent.objects.filter(label="person").exclude(clip="").first()
    client.force_login(alice)
    html = client.get(f"/events/{event.pk}").content.decode()
    assert f'src="/api/v1/events/{event.pk}/clip"' in html
    assert "<video" in html and "<canvas" in html
    assert f'data-preroll-ms="{event.clip_preroll_ms}"' in html
    assert 'id="event-clip-path"' in html


# --- where clips go -----------------------------------------------------------------------


def stored_clip(camera, *, at: datetime, frames: int = 10) -> DetectionEvent:
    """A person event with a real clip of `frames` frames of the demo street."""
    event = event_make(camera, label="person", at=at, track_id=7)
    background = _render_background(160, 120, np.random.default_rng(1))
    ok, jpeg = cv2.imencode(".jpg", background)
    assert ok
    started_ms = int(at.timestamp() * 1000)
    ring = [RingFrame(started_ms + i * 100, jpeg.tobytes(), 160, 120) for i in range(frames)]
    name = f"clips/{camera.public_id}/{event.pk}-person.mp4"
    clip = clip_encode(ring, Path(default_storage.path(name)), fps=10)
    assert event_clip_attach(
        event_pk=event.pk, name=name, started_at=at, duration_ms=clip.duration_ms, size=clip.size
    )
    event.refresh_from_db()
    return event


def test_a_clip_goes_with_its_event(media_root, street):
    event = stored_clip(street, at=datetime.now(UTC))
    assert default_storage.exists(event.clip.name)
    events_delete(events=DetectionEvent.objects.filter(pk=event.pk))
    assert not default_storage.exists(event.clip.name)


def test_a_clip_goes_with_its_camera(media_root, street):
    event = stored_clip(street, at=datetime.now(UTC))
    street.delete()
    assert not default_storage.exists(event.clip.name)


def test_deleting_events_in_the_admin_deletes_their_clips(
    media_root, street, client, django_user_model
):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    one, other = (stored_clip(street, at=datetime.now(UTC) - timedelta(hours=h)) for h in (1, 2))
    client.force_login(root)

    client.post(f"/admin/events/detectionevent/{one.pk}/delete/", {"post": "yes"})
    assert not DetectionEvent.objects.filter(pk=one.pk).exists()
    assert not default_storage.exists(one.clip.name)

    client.post(
        "/admin/events/detectionevent/",
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )
    assert not DetectionEvent.objects.exists()
    assert not default_storage.exists(other.clip.name)


def test_prune_events_deletes_old_events_clips(media_root, street, settings):
    settings.EVENTS_RETENTION_DAYS = 7
    old = stored_clip(street, at=datetime.now(UTC) - timedelta(days=8))
    recent = stored_clip(street, at=datetime.now(UTC) - timedelta(days=1))
    out = StringIO()
    call_command("prune_events", stdout=out)
    assert "and 1 clip files" in out.getvalue()
    assert not default_storage.exists(old.clip.name)
    assert default_storage.exists(recent.clip.name)


def test_over_the_disk_budget_the_oldest_clips_go_first(media_root, street, settings):
    now = datetime.now(UTC)
    oldest, older, newer = (stored_clip(street, at=now - timedelta(hours=h)) for h in (3, 2, 1))
    # Room for two clips and a half: the oldest goes, its event stays.
    settings.RECORDINGS_MAX_GB = (older.clip_bytes + newer.clip_bytes * 1.5) / 1e9
    assert clips_over_budget_delete(max_bytes=int(settings.RECORDINGS_MAX_GB * 1e9)) == 1
    oldest.refresh_from_db()
    assert oldest.clip == "" and oldest.clip_bytes == 0
    assert not default_storage.exists(f"clips/{street.public_id}/{oldest.pk}-person.mp4")
    assert default_storage.exists(older.clip.name) and default_storage.exists(newer.clip.name)
    # prune_events keeps the budget too.
    settings.RECORDINGS_MAX_GB = newer.clip_bytes * 1.5 / 1e9
    call_command("prune_events", stdout=StringIO())
    assert list(DetectionEvent.objects.exclude(clip="")) == [newer]
    assert DetectionEvent.objects.count() == 3


def test_writing_a_clip_keeps_the_budget(played, settings, street, clips):
    """The clip worker deletes the oldest clips once a new one takes the total past it."""
    kept = list(DetectionEvent.objects.exclude(clip="").order_by("started_at"))
    assert len(kept) == 2
    newest = stored_clip(street, at=datetime.now(UTC))
    settings.RECORDINGS_MAX_GB = newest.clip_bytes * 1.5 / 1e9
    clips_over_budget_delete(max_bytes=int(settings.RECORDINGS_MAX_GB * 1e9))
    assert list(DetectionEvent.objects.exclude(clip="")) == [newest]
    assert not any(default_storage.exists(event.clip.name) for event in kept)


# --- the ring -----------------------------------------------------------------------------


def test_the_ring_keeps_at_most_its_seconds_and_its_bytes():
    ring = FrameRing(max_seconds=2.0, max_bytes=10_000)
    for index in range(100):
        ring.append(RingFrame(index * 100, b"x" * 100, 64, 48))
    assert ring.newest_ms - ring.oldest_ms <= 2000
    assert len(ring) == 21
    for index in range(100, 200):
        ring.append(RingFrame(index * 100, b"x" * 1000, 64, 48))
    assert ring.bytes <= 10_000
    assert len(ring) == 10


def test_a_camera_whose_size_changes_starts_its_ring_afresh():
    ring = FrameRing(max_seconds=10, max_bytes=10_000)
    ring.append(RingFrame(0, b"x", 64, 48))
    ring.append(RingFrame(100, b"y", 128, 96))
    assert len(ring) == 1 and ring.oldest_ms == 100


def test_the_clip_recorder_keeps_clip_fps_frames_of_a_faster_camera(clips):
    # A 30 fps camera, 10 fps clips: every third frame is asked for and kept.
    asked = []
    for index in range(90):
        timestamp_ms = T0 + index * 33
        if clips.wants_frame(camera_pk=1, timestamp_ms=timestamp_ms):
            asked.append(index)
            clips.frame(camera_pk=1, timestamp_ms=timestamp_ms, jpeg=b"j", width=64, height=48)
    assert len(asked) == 30
    assert len(clips.ring_of(1)) == 30


def test_a_clip_recorders_ring_is_bounded_by_its_settings(clips):
    clips.buffer_bytes = 50_000
    for index in range(2000):
        clips.frame(
            camera_pk=2, timestamp_ms=T0 + index * 100, jpeg=b"z" * 1000, width=64, height=48
        )
    ring = clips.ring_of(2)
    assert ring.bytes <= 50_000
    assert ring.newest_ms - ring.oldest_ms <= 30_000


def test_a_quiet_cameras_ring_keeps_only_the_pre_roll(clips):
    for index in range(200):  # 20 s of street without a tracked object
        clips.frame(
            camera_pk=3,
            timestamp_ms=T0 + index * 100,
            jpeg=b"q" * 100,
            width=64,
            height=48,
            tracked=False,
        )
    ring = clips.ring_of(3)
    assert ring.newest_ms - ring.oldest_ms <= PRE_MS


def test_a_ring_with_a_clip_waiting_keeps_its_frames(clips):
    for index in range(50):
        clips.frame(camera_pk=4, timestamp_ms=T0 + index * 100, jpeg=b"w", width=64, height=48)
    clips.event_ended(
        camera_pk=4,
        camera_public_id="cam4",
        event_pk=99,
        label="person",
        started_ms=T0 + 2000,
        ended_ms=T0 + 4000,
    )
    for index in range(50, 250):  # 20 quiet seconds while the clip has not been encoded
        clips.frame(
            camera_pk=4,
            timestamp_ms=T0 + index * 100,
            jpeg=b"w",
            width=64,
            height=48,
            tracked=False,
        )
    assert clips.ring_of(4).oldest_ms <= T0 + 2000 - PRE_MS


@pytest.mark.django_db(transaction=True)
def test_the_clip_worker_thread_encodes_and_stores_a_clip(media_root, street, settings):
    """The production path: the `events-clips` thread, its own database connection."""
    settings.RECORDINGS_MAX_GB = 1.0
    clips = ClipRecorder(
        pre_seconds=1, post_seconds=1, fps=10, buffer_seconds=30, buffer_bytes=10**7
    )
    event = event_make(
        street, label="person", at=datetime.fromtimestamp(T0 / 1000 + 2, UTC), seconds=2, track_id=3
    )
    background = _render_background(160, 120, np.random.default_rng(1))
    ok, jpeg = cv2.imencode(".jpg", background)
    for index in range(60):
        clips.frame(
            camera_pk=street.pk,
            timestamp_ms=T0 + index * 100,
            jpeg=jpeg.tobytes(),
            width=160,
            height=120,
        )
    clips.event_ended(
        camera_pk=street.pk,
        camera_public_id=street.public_id,
        event_pk=event.pk,
        label="person",
        started_ms=T0 + 2000,
        ended_ms=T0 + 4000,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not DetectionEvent.objects.get(pk=event.pk).clip:
        time.sleep(0.1)
    event.refresh_from_db()
    assert event.clip and default_storage.exists(event.clip.name)
    # From 1 s before to 1 s after, frames 100 ms apart: 4.1 s.
    assert event.clip_duration_ms == 4100
    assert event.clip_preroll_ms == 1000
    clips.close()
