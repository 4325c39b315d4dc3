"""Adding a camera in a real Chromium against a real daphne: Test source shows a frame of the
demo scene before anything is saved, Save adds the camera, and a grid that was already open
shows it without a reload."""

from __future__ import annotations

import pytest

from cameras.models import Camera
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread (see the player tests).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def test_an_admin_adds_a_demo_camera_tests_its_source_and_the_open_grid_shows_it(
    live_daphne, alice, organization, page
):
    server = live_daphne(CAMERAS_IN_PROCESS="0")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/")
    assert page.is_visible("#cameras-empty")
    grid = page  # stays open on the grid while the camera is added in another tab

    form = page.context.new_page()
    form.goto(f"{server.url}/cameras/")
    form.click("#camera-add")
    form.wait_for_url(f"{server.url}/cameras/add/")
    form.fill("#id_name", "Driveway")
    form.fill("#id_source", "demo:driveway")
    form.check("input[name=detectors][value=person]")

    form.click("#source-test-button")
    form.wait_for_function(
        "() => { const image = document.getElementById('source-test-image');"
        " return !image.hidden && image.complete && image.naturalWidth > 0; }",
        timeout=15_000,
    )
    assert form.evaluate("document.getElementById('source-test-image').naturalWidth") == 640
    assert form.text_content("#source-test-status") == "Got a 640×480 frame."
    assert form.is_hidden("#source-test-error")
    assert not Camera.objects.exists()  # a test saves nothing

    # A source the policy refuses: the reason in words, the frame gone.
    form.fill("#id_source", "rtsp://127.0.0.1/stream")
    form.click("#source-test-button")
    form.wait_for_selector("#source-test-error", state="visible", timeout=15_000)
    assert "not allowed by policy" in form.text_content("#source-test-error")
    assert form.is_hidden("#source-test-image")

    form.fill("#id_source", "demo:driveway")
    form.click("#camera-save")
    form.wait_for_url(lambda url: url.startswith(f"{server.url}/cameras/") and "add" not in url)
    camera = Camera.objects.get(name="Driveway")
    # Ticked here; motion as well once new cameras default to it (issue 9, section 2).
    assert "person" in camera.detectors
    assert form.url == f"{server.url}/cameras/{camera.public_id}/"
    assert "Added Driveway." in form.text_content(".flash")

    # The grid opened before the camera existed shows its tile at its next poll.
    grid.wait_for_selector(
        f".camera-tile[data-camera-id='{camera.public_id}']", state="visible", timeout=15_000
    )
    tile = f".camera-tile[data-camera-id='{camera.public_id}']"
    assert grid.text_content(f"{tile} [data-name]") == "Driveway"
    assert grid.text_content(f"{tile} [data-organization]") == organization.name
    assert grid.get_attribute(f"{tile} a.camera-tile-link", "href") == (
        f"/cameras/{camera.public_id}/"
    )
    assert grid.is_hidden("#cameras-empty")
