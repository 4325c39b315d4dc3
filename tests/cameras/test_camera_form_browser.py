"""Adding a camera in a real Chromium against a real daphne: Test source shows a frame of the
demo scene before anything is saved, Save adds the camera, and a grid that was already open
shows it without a reload, playing live like the tiles it had, and drops it (socket and all) once
it is deleted."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from cameras.models import Camera
from cameras.services import camera_delete
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread (see the player tests).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def tile_pixels(tile: str) -> str:
    return f"""() => {{
  const canvas = document.querySelector("{tile} [data-tile-canvas]");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < pixels.length; i += 4) sum = (sum * 31 + pixels[i] + pixels[i + 1]) % 1e9;
  return sum;
}}"""


def test_an_admin_adds_a_demo_camera_tests_its_source_and_the_open_grid_plays_it(
    live_daphne, alice, organization, page
):
    # The cameras run in daphne, so that the one added plays in the open grid.
    server = live_daphne(CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "alice", "alice-password")
    grid = page  # stays open on the grid while the camera is added in another tab
    polls = {"cameras": [], "events": []}  # when the grid asked the API, per endpoint
    sockets = []

    def note_poll(request):
        for name, times in polls.items():
            if request.url.startswith(f"{server.url}/api/v1/{name}?"):
                times.append(time.monotonic())

    grid.on("request", note_poll)
    grid.on("websocket", lambda socket: sockets.append(socket))
    grid.goto(f"{server.url}/cameras/")
    assert grid.is_visible("#cameras-empty")

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

    # Live, as a tile rendered with the page: the 320 px variant, its pixels moving.
    grid.wait_for_function(
        f'Number(document.querySelector("{tile}").dataset.frames) > 2', timeout=20_000
    )
    assert grid.eval_on_selector(f"{tile} [data-tile-canvas]", "c => c.width") == 320
    assert grid.is_hidden(f"{tile} .camera-still-empty")
    assert grid.get_attribute(f"{tile} [data-tile-canvas]", "aria-label") == (
        "Live video of Driveway"
    )
    first = grid.evaluate(tile_pixels(tile))
    for _ in range(3):  # each asks for a refresh, which must wait for the polls' periods
        grid.evaluate("window.dispatchEvent(new Event('online'))")
    time.sleep(2)
    assert grid.evaluate(tile_pixels(tile)) != first
    assert grid.eval_on_selector(tile, "el => el.dataset.link") == "open"
    [socket] = [socket for socket in sockets if camera.stream_path in socket.url]
    assert socket.url.endswith("?width=320&fps=5&format=binary")
    assert not socket.is_closed()

    # Deleted: the tile goes at the next poll, and its socket with it, for good.
    camera_delete(camera=camera)
    grid.wait_for_selector(tile, state="detached", timeout=15_000)
    grid.wait_for_function("document.getElementById('cameras-empty').hidden === false")
    deadline = time.monotonic() + 5
    while not socket.is_closed() and time.monotonic() < deadline:
        grid.wait_for_timeout(100)
    assert socket.is_closed()
    grid.wait_for_timeout(2000)  # a socket that reconnects tries again within 1 s
    assert [other for other in sockets if camera.stream_path in other.url] == [socket]

    # However many tiles and triggers, one cameras request per 5 s and one events request per
    # 10 s for the whole page. The times are when Playwright told this process of a request,
    # which a loaded machine can delay by a second: a gap may shrink by that much, and the
    # requests of the whole test may not outnumber its periods.
    for name, every in [("cameras", 5), ("events", 10)]:
        gaps = [later - earlier for earlier, later in pairwise(polls[name])]
        assert gaps and min(gaps) > every - 1.0, (name, gaps)
        assert len(gaps) <= (polls[name][-1] - polls[name][0] + 1.0) / every, (name, gaps)
