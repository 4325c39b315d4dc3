"""An event's clip in a real Chromium against a live daphne: the detail page's `<video>` loads the
clip from the scoped endpoint, seeks (which needs byte ranges), plays to `ended` with the clip's
duration, and the canvas draws the object's box while the path says it was in view."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.core.files.storage import default_storage

from cameras.services import camera_create
from cameras.vision.demo import _render_background
from events.services import event_clip_attach
from events.video.clips import RingFrame, clip_encode
from tests.conftest import login
from tests.events.conftest import event_make
from tests.events.test_object_events import scene

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FRAMES = 40  # 4 s at 10 fps
PREROLL_MS = 1000


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread (see test_browser.py).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


@pytest.fixture
def event_with_clip(media_root, organization):
    camera = camera_create(organization=organization, name="Street", source="push:")
    clip_start = datetime.now(UTC) - timedelta(minutes=5)
    event = event_make(
        camera,
        label="person",
        at=clip_start + timedelta(milliseconds=PREROLL_MS),
        seconds=2.0,
        track_id=4,
        path=[[0, 0.1, 0.5, 0.1, 0.3], [1000, 0.3, 0.5, 0.1, 0.3], [2000, 0.5, 0.5, 0.1, 0.3]],
    )
    background = _render_background(320, 240, np.random.default_rng(3))
    start_ms = int(clip_start.timestamp() * 1000)
    frames = []
    for index in range(FRAMES):
        image = cv2.resize(scene(index, cv2.resize(background, (640, 480))), (320, 240))
        ok, jpeg = cv2.imencode(".jpg", image)
        assert ok
        frames.append(RingFrame(start_ms + index * 100, jpeg.tobytes(), 320, 240))
    name = f"clips/{camera.public_id}/{event.pk}-person.mp4"
    clip = clip_encode(frames, Path(default_storage.path(name)), fps=10)
    event_clip_attach(
        event_pk=event.pk,
        name=name,
        started_at=clip_start,
        duration_ms=clip.duration_ms,
        size=clip.size,
    )
    return event, clip


def test_the_detail_page_plays_the_clip_to_its_end_with_the_box_over_it(
    page, live_daphne, media_root, alice, event_with_clip
):
    event, clip = event_with_clip
    server = live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="", MEDIA_ROOT=str(media_root))
    statuses = []
    page.on(
        "response",
        lambda response: statuses.append(response.status) if "/clip" in response.url else None,
    )
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/events/{event.pk}")
    assert page.evaluate(
        "() => document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64001e\"')"
    ), "this Chromium cannot play H.264"
    page.wait_for_function("() => document.querySelector('video.clip').readyState >= 1")
    duration = page.evaluate("() => document.querySelector('video.clip').duration")
    assert duration == pytest.approx(clip.duration_ms / 1000, abs=0.15)

    # Seeking needs the endpoint's byte ranges: inside the event, the box is drawn.
    page.evaluate(
        """() => new Promise((resolve) => {
            const video = document.querySelector('video.clip');
            video.addEventListener('seeked', resolve, { once: true });
            video.currentTime = 2.0;
        })"""
    )
    assert page.evaluate("() => document.querySelector('.clip-frame').dataset.boxShown") == "1"
    drawn = page.evaluate(
        """() => {
            const canvas = document.querySelector('canvas.clip-boxes');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let green = 0;
            for (let i = 0; i < data.length; i += 4) {
                if (data[i + 3] > 0 && data[i + 1] > 150 && data[i] < 100) green += 1;
            }
            return green;
        }"""
    )
    assert drawn > 50

    started = time.monotonic()
    ended = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const video = document.querySelector('video.clip');
            video.currentTime = 0;
            video.addEventListener('ended', () => resolve(video.currentTime), { once: true });
            video.addEventListener('error', () => reject(new Error('video error ' + video.error?.code)));
            video.play().catch(reject);
        })"""
    )
    assert ended == pytest.approx(clip.duration_ms / 1000, abs=0.15)
    assert time.monotonic() - started >= clip.duration_ms / 1000 * 0.8
    # Chromium fetched the video in byte ranges, as it does only from a server that serves them.
    assert 206 in statuses, statuses
    # After the path's end (and its post-roll) no box is left on the picture.
    assert page.evaluate("() => document.querySelector('.clip-frame').dataset.boxShown") == "0"
