"""The cameras grid in a real Chromium against a real daphne: its health lines follow the
heartbeats with the markup and wording the server renders, and when the statuses cannot be had
it says why (signed out, temporarily unavailable) instead of "cannot be reached" for everything.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from cameras.services import camera_create
from cameras.templatetags.camera_health import age
from project.heartbeats import heartbeat_beat
from project.unavailable import unavailable_body
from tests.conftest import free_port, login
from tests.own_redis import OwnRedis

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Ties included: Python's f"{x:.0f}" rounds them to even (2.5 s -> "2 s", 150 s -> "2 min").
AGES = [0, 0.4, 0.5, 1.5, 2.5, 59.9, 89.4, 89.5, 90, 150, 5399, 5400, 9000, 172_799, 172_800, 1e6]

AGES_IN_THE_PAGE = """async (ages) => {
  const grid = document.querySelector("script[src*='camera_grid']").src;
  const format = await import(new URL("time_format.js", grid).href);
  return ages.map(format.age);
}"""

# Refresh the statuses now rather than at the next 5 s poll (the grid does so on "online").
REFRESH_NOW = "window.dispatchEvent(new Event('online'))"


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread (see the player tests).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


@pytest.fixture
def shared_cache(settings):
    """A Redis of this test's own, as the cache of both this process and the daphne it starts,
    so that heartbeats beaten here are the ones the server reads."""
    redis_server = OwnRedis(free_port())
    redis_server.start()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": "sightline",  # as project/settings.py configures it for REDIS_URL
        }
    }
    yield redis_server.url
    redis_server.stop()


def health_markup(page) -> str:
    """The tile's health line, with each datetime attribute read as the moment it names (the
    API writes UTC as "Z", the template as "+00:00")."""
    html = page.inner_html(".camera-tile [data-health]")
    return re.sub(
        r'datetime="([^"]+)"',
        lambda match: f'datetime="{datetime.fromisoformat(match.group(1)).timestamp():.3f}"',
        html,
    )


def test_the_grid_health_line_follows_the_heartbeats_with_the_pages_markup_and_wording(
    live_daphne, shared_cache, alice, organization, page
):
    camera = camera_create(organization=organization, name="Lobby", source="demo:", detectors=[])
    beat_at = time.time()
    heartbeat_beat(
        f"capture:{camera.public_id}",
        ttl=120,
        state="online",
        fps=9.84,
        last_frame_at=beat_at - 3 * 3600,
        last_error="",
    )
    heartbeat_beat(f"recorder:{camera.public_id}", ttl=120, state="recording")
    server = live_daphne(REDIS_URL=shared_cache, CAMERAS_IN_PROCESS="0", EVENTS_RECORDING="1")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/")
    assert page.is_hidden(".camera-tile [data-health-last-event]")

    # An event is recorded: the live line says so, without a reload.
    heartbeat_beat(
        f"recorder:{camera.public_id}", ttl=120, state="recording", last_event_at=beat_at - 180
    )
    page.evaluate(REFRESH_NOW)
    page.wait_for_selector(".camera-tile [data-health-last-event] time", timeout=10_000)
    assert page.text_content(".camera-tile [data-health-last-event]") == " · last event 3 min ago"
    live = health_markup(page)

    # The same line as the server renders it now: same elements, same words, same moments.
    page.reload()
    assert health_markup(page) == live
    assert "last frame <time" in live and ">3 h ago</time>" in live

    # The page's `age` reads exactly like the templates' filter.
    assert page.evaluate(AGES_IN_THE_PAGE, AGES) == [age(seconds) for seconds in AGES]


def test_the_grid_says_temporarily_unavailable_on_a_503_and_signed_out_on_a_401(
    live_daphne, alice, organization, page
):
    camera_create(organization=organization, name="Webcam", source="push:", detectors=[])
    server = live_daphne(CAMERAS_IN_PROCESS="0")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/")
    notice = "#camera-grid-notice"

    # The answer the server gives while Redis is away (project/unavailable.py).
    def redis_away(route):
        route.fulfill(status=503, json=unavailable_body(), headers={"Retry-After": "5"})

    page.route("**/api/v1/cameras?*", redis_away)
    page.evaluate(REFRESH_NOW)
    page.wait_for_selector(notice, state="visible", timeout=10_000)
    assert "running but temporarily unavailable; retrying" in page.text_content(notice)
    assert "cannot be reached" not in page.text_content(notice)
    assert page.text_content(".camera-tile [data-status]") == "Unknown"
    page.unroute("**/api/v1/cameras?*", redis_away)
    page.evaluate(REFRESH_NOW)
    page.wait_for_selector(notice, state="hidden", timeout=10_000)

    # The session is gone (the real server answers 401): a way back, not "cannot be reached".
    page.context.clear_cookies()
    page.evaluate(REFRESH_NOW)
    page.wait_for_selector(notice, state="visible", timeout=10_000)
    assert page.text_content(notice).startswith("Signed out: log in again.")
    page.click(f"{notice} a")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/cameras/")
    assert page.is_hidden(notice) or page.query_selector(notice) is None


TILE_PIXELS = """() => {
  const canvas = document.querySelector(".camera-tile [data-tile-canvas]");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < pixels.length; i += 4) sum = (sum * 31 + pixels[i] + pixels[i + 1]) % 1e9;
  return sum;
}"""


def test_the_grid_plays_each_camera_live_at_tile_size_and_a_click_opens_its_player(
    live_daphne, alice, organization, page
):
    camera = camera_create(
        organization=organization,
        name="Lobby",
        source="demo:",
        target_fps=10,
        max_width=640,
        detectors=["motion"],
    )
    server = live_daphne(CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/")
    tile = ".camera-tile"
    page.wait_for_function(
        "Number(document.querySelector('.camera-tile').dataset.frames) > 2", timeout=20_000
    )
    # The 320 px variant, not the camera's 640 px stream.
    assert page.eval_on_selector(f"{tile} [data-tile-canvas]", "c => c.width") == 320
    assert page.is_hidden(f"{tile} .camera-still-empty")
    first = page.evaluate(TILE_PIXELS)
    frames = int(page.eval_on_selector(tile, "el => el.dataset.frames"))
    time.sleep(3)
    # The demo scene moves: the picture changed, at the variant's 5 fps (not the camera's 10).
    assert page.evaluate(TILE_PIXELS) != first
    drawn = int(page.eval_on_selector(tile, "el => el.dataset.frames")) - frames
    assert 5 <= drawn <= 5 * 3 + 3
    assert page.eval_on_selector(tile, "el => el.dataset.link") == "open"
    assert page.text_content(f"{tile} [data-status]") == "Online"

    page.click(f"{tile} [data-tile-canvas]")
    page.wait_for_url(f"{server.url}/cameras/{camera.public_id}/")
    page.wait_for_function("Number(document.getElementById('player').dataset.frames) > 2")
