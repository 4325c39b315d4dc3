"""The bell in a real Chromium against a live daphne: frames pushed through the ingest endpoint
run the camera's motion detector in the server, its recorder stores the event, an alert rule
raises an alert, and the bell (and a browser notification, once) shows it within 2 s of the
event's start."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from cameras.services import camera_create
from events.models import DetectionEvent
from notifications.models import AlertRule
from organizations.services import api_token_create
from tests.conftest import login
from tests.events.test_browser import frame_b64, loaded_images, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What the page constructs, recorded while the real Notification is still called (so a
# notification the browser would refuse fails here too); and when the first alert was listed.
RECORDING = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  window.__permissionRequests = 0;
  if (Real) {
    class Recorded extends Real {
      constructor(title, options = {}) {
        super(title, options);
        window.__notifications.push({ title, ...options });
      }
      static requestPermission(...args) {
        window.__permissionRequests += 1;
        return Real.requestPermission(...args);
      }
    }
    window.Notification = Recorded;
  }
  window.__firstAlertAt = null;
  new MutationObserver(() => {
    if (window.__firstAlertAt === null && document.querySelector(".bell-list li")) {
      window.__firstAlertAt = Date.now();
    }
  }).observe(document, { childList: true, subtree: true });
})();
"""


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # As in tests/events/test_browser.py: this test's own ORM calls beside Playwright's loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


@pytest.fixture
def bell_context(browser):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, permissions=["notifications"]
    )
    context.add_init_script(RECORDING)
    yield context
    from django.db import connections

    connections.close_all()
    context.close()


def push_frames_now(server, camera, token: str, count: int) -> None:
    """The events test's frames (a red square crossing from frame 10), stamped with the wall
    clock as a live camera would, so the event's start is when it really was."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for index in range(count):
            response = client.post(
                "/api/v1/actions/actions/send",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "streamName": "webcam",
                    "streamType": "frame",
                    "frame": frame_b64(index),
                    "timestamp": int(time.time() * 1000),
                    "camera_id": camera.public_id,
                },
            )
            assert response.status_code == 200, response.text
            time.sleep(0.08)


def bell_open(page) -> None:
    page.click(".bell-button")
    page.wait_for_selector("[data-bell-panel]:not([hidden])")


def bell_close(page) -> None:
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-bell-panel]", state="hidden")


def test_the_bell_shows_a_new_alert_within_2_s_of_its_start_and_notifies_once(
    bell_context, live_daphne, media_root, alice, organization
):
    camera = camera_create(
        organization=organization, name="Webcam street", source="push:", detectors=["motion"]
    )
    rule = AlertRule.objects.create(organization=organization, name="Anything moving")
    _, token = api_token_create(user=alice)
    server = live_daphne(
        DJANGO_ALLOW_ASYNC_UNSAFE="",
        EVENTS_RECORDING="1",
        EVENTS_FLUSH_SECONDS="0.25",
        MEDIA_ROOT=str(media_root),
    )
    page = bell_context.new_page()
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/")

    # Nothing yet: the empty state, which says where alerts come from.
    bell_open(page)
    page.wait_for_selector("[data-bell-empty]:not([hidden])")
    assert "No alerts yet. Alert rules decide what shows here." in page.text_content(
        "[data-bell-empty]"
    )
    assert page.get_attribute("[data-bell-empty] a", "href") == "/notifications/"
    assert page.get_attribute(".bell-foot a[href='/alerts/']", "href") == "/alerts/"
    assert page.evaluate("window.__permissionRequests") == 0  # never asked on load
    page.check("[data-bell-notify]")
    assert page.is_checked("[data-bell-notify]")
    bell_close(page)

    # A second tab of the same browser hears the alert too, and must not notify again.
    other_tab = bell_context.new_page()
    other_tab.goto(f"{server.url}/events/")
    for tab in (page, other_tab):
        tab.wait_for_selector("#alerts-bell[data-link=open]", timeout=10_000)

    pushing = threading.Thread(target=push_frames_now, args=(server, camera, token, 40))
    pushing.start()
    try:
        page.wait_for_selector(".bell-list li", state="attached", timeout=20_000)
        page.wait_for_selector("[data-bell-badge]:not([hidden])")
    finally:
        pushing.join()
    event = DetectionEvent.objects.filter(camera=camera).order_by("started_at").first()
    assert event is not None and event.label == "motion"
    listed_at = page.evaluate("window.__firstAlertAt") / 1000
    assert listed_at - event.started_at.timestamp() < 2.0, (
        f"listed {listed_at - event.started_at.timestamp():.2f} s after the event started"
    )
    assert page.text_content("[data-bell-badge]") == "1"

    wait_for(
        lambda: (
            page.evaluate("window.__notifications.length")
            + other_tab.evaluate("window.__notifications.length")
        ),
        limit=5,
        what="a notification",
    )
    time.sleep(0.5)  # a second tab's late duplicate would land by now
    shown = page.evaluate("window.__notifications") + other_tab.evaluate("window.__notifications")
    assert len(shown) == 1, shown
    notification = shown[0]
    assert notification["title"] == "motion on Webcam street"
    assert notification["image"] == f"/api/v1/events/{event.pk}/snapshot"
    assert notification["icon"] == notification["image"]
    assert notification["tag"].startswith("sightline-alert-")
    assert page.evaluate(
        "async (url) => { const r = await fetch(url); "
        "return r.ok && r.headers.get('content-type') === 'image/jpeg'; }",
        notification["image"],
    )

    # The dropdown: the thumbnail, the line in the browser's local time, the event's link.
    bell_open(page)
    item = page.locator(".bell-list li").first
    line = item.text_content()
    local = page.evaluate(
        "(iso) => new Date(iso).toLocaleTimeString([], "
        "{hour: '2-digit', minute: '2-digit', hourCycle: 'h23'})",
        event.started_at.isoformat(),
    )
    assert line == f"motion on Webcam street · {local}"
    assert item.locator("a").get_attribute("href") == f"/events/{event.pk}"
    wait_for(lambda: loaded_images(page, ".bell-list img"), limit=10, what="the thumbnail")
    # Opened: seen, so the badge is gone, and stays gone after a reload that lists it again.
    assert page.is_hidden("[data-bell-badge]")
    page.reload()
    page.wait_for_selector(".bell-list li", state="attached")
    assert page.locator(".bell-list li").count() == 1
    assert page.is_hidden("[data-bell-badge]")
    assert page.get_attribute(".bell-list li a", "href") == f"/events/{event.pk}"

    # The alerts page lists it, with the rule that raised it.
    page.goto(f"{server.url}/alerts/")
    assert f"Rule: {rule.name}" in page.text_content(".alert-list")


def test_a_refused_permission_says_how_to_allow_it(browser, live_daphne, alice, organization):
    context = browser.new_context()
    context.add_init_script(RECORDING)
    try:
        page = context.new_page()
        server = live_daphne(DJANGO_ALLOW_ASYNC_UNSAFE="")
        # As if the user had blocked notifications for the site in the browser's settings.
        cdp = context.new_cdp_session(page)
        target = cdp.send("Target.getTargetInfo")["targetInfo"]
        cdp.send(
            "Browser.setPermission",
            {
                "permission": {"name": "notifications"},
                "setting": "denied",
                "origin": server.url,
                "browserContextId": target["browserContextId"],
            },
        )
        login(page, server.url, "alice", "alice-password")
        bell_open(page)
        assert page.evaluate("Notification.permission") == "denied"
        # Nobody asked yet: no sentence about it.
        assert page.is_hidden("[data-bell-notify-denied]")
        page.click("[data-bell-notify]")
        page.wait_for_selector("[data-bell-notify-denied]:not([hidden])")
        assert "set Notifications to “Allow”" in page.text_content("[data-bell-notify-denied]")
        assert not page.is_checked("[data-bell-notify]")
        # Remembered: the next page says it again, still without asking on load.
        page.reload()
        bell_open(page)
        assert page.is_visible("[data-bell-notify-denied]")
        assert page.evaluate("window.__permissionRequests") == 0
    finally:
        from django.db import connections

        connections.close_all()
        context.close()
