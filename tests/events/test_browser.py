"""End to end in a real Chromium against a live daphne: frames pushed through the ingest
endpoint run the camera's motion detector in the server, the recorder stores events with
snapshots, and the pages show them."""

from __future__ import annotations

import base64
import time

import cv2
import httpx
import numpy as np
import pytest

from cameras.services import camera_create
from events.models import CameraSession, DetectionEvent
from organizations.services import api_token_create
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # async code: allow this test's own ORM calls. The live daphne keeps the check on.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def wait_for(predicate, *, limit: float, what: str):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {limit:g} s waiting for {what}")


def loaded_images(page, selector: str) -> int:
    return page.evaluate(
        "(selector) => [...document.querySelectorAll(selector)]"
        ".filter((img) => img.complete && img.naturalWidth > 0).length",
        selector,
    )


def frame_b64(index: int) -> str:
    """A street-ish picture; from frame 10 on, a red square crosses it."""
    image = np.full((240, 320, 3), (90, 120, 80), np.uint8)
    cv2.rectangle(image, (0, 180), (320, 240), (60, 60, 60), -1)
    if index >= 10:
        x = 10 + (index - 10) * 8
        cv2.rectangle(image, (x, 80), (x + 40, 160), (20, 20, 200), -1)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return base64.b64encode(jpeg.tobytes()).decode()


def push_frames(server, camera, token: str, count: int) -> None:
    start = int(time.time() * 1000)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for index in range(count):
            response = client.post(
                "/api/v1/actions/actions/send",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "streamName": "webcam",
                    "streamType": "frame",
                    "frame": frame_b64(index),
                    "timestamp": start + index * 100,
                    "camera_id": camera.public_id,
                },
            )
            assert response.status_code == 200, response.text
            time.sleep(0.05)


def test_the_pipeline_records_events_that_the_pages_show(
    page, live_daphne, media_root, alice, organization
):
    camera = camera_create(
        organization=organization, name="Webcam street", source="push:", detectors=["motion"]
    )
    _, token = api_token_create(user=alice)
    server = live_daphne(
        DJANGO_ALLOW_ASYNC_UNSAFE="",
        EVENTS_RECORDING="1",
        EVENTS_FLUSH_SECONDS="0.5",
        MEDIA_ROOT=str(media_root),
    )
    push_frames(server, camera, token, count=40)
    event = wait_for(
        lambda: DetectionEvent.objects.filter(camera=camera).exclude(snapshot="").first(),
        limit=40,
        what=f"an event with a snapshot (daphne log:\n{server.log()[-2000:]})",
    )
    assert event.label == "motion"
    assert CameraSession.objects.filter(camera=camera, ended_at__isnull=True).exists()

    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/events/")
    # Motion is all this camera has seen: the page says so and shows it on request.
    page.click("#hidden-motion a")
    page.wait_for_selector("img.thumb")
    wait_for(lambda: loaded_images(page, "img.thumb"), limit=10, what="a thumbnail to load")
    assert "Webcam street" in page.text_content(".event-grid")

    page.click(".event-card a")
    page.wait_for_selector("img.snapshot")
    wait_for(lambda: loaded_images(page, "img.snapshot"), limit=10, what="the snapshot to load")
    size = page.evaluate("() => document.querySelector('img.snapshot').naturalWidth")
    assert size == 320

    page.goto(f"{server.url}/")
    page.wait_for_selector(".activity-chart svg rect.bar")
    bar = page.locator(".activity-chart svg rect.bar").first.bounding_box()
    assert bar is not None and bar["height"] > 0 and bar["width"] > 0
    assert "motion" in page.text_content(".activity-chart .legend")


def test_the_assistant_links_to_the_events_it_cites(
    page, live_daphne, media_root, alice, organization
):
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from chats.services import chat_create
    from events.recording import snapshot_jpeg
    from tests.events.conftest import event_make

    camera = camera_create(organization=organization, name="Front door", source="push:")
    event = event_make(camera, label="person", at=timezone.now() - timezone.timedelta(minutes=2))
    jpeg = snapshot_jpeg(
        np.zeros((240, 320, 3), np.uint8), label="person", boxes=[([10, 10, 50, 90], 0.8)]
    )
    event.snapshot.save("person.jpg", ContentFile(jpeg), save=True)
    chat = chat_create(user=alice, organization=organization)
    # The snapshot is written here; the server must read the same media folder.
    server = live_daphne(
        DJANGO_ALLOW_ASYNC_UNSAFE="", ASSISTANT_BUILTIN_DELAY_MS="0", MEDIA_ROOT=str(media_root)
    )

    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/chats/{chat.pk}/")
    page.fill("#prompt", "How many people on Front door in the last hour?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".message.assistant[data-status=complete]", timeout=15000)
    bubble = page.text_content(".message.assistant .bubble")
    assert "1 person event on Front door in the last hour" in bubble
    link = page.locator(f'.message.assistant .bubble a[href="/events/{event.pk}"]')
    link.click()
    page.wait_for_url(f"{server.url}/events/{event.pk}")
    page.wait_for_selector("img.snapshot")
    wait_for(lambda: loaded_images(page, "img.snapshot"), limit=10, what="the snapshot to load")
