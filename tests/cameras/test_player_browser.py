"""The player in a real Chromium against a real daphne: it never gives up while it is visible,
and what it says (HUD, overlay, status badge) is what the stream and the camera are doing.

The outage test stops the daphne process for a full minute and starts it again on the same port;
the page must come back by itself, without a click. It is the one long test here (~75 s).
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from cameras.services import camera_create
from organizations.services import api_token_create
from tests.cameras.conftest import jpeg_b64
from tests.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The steady retry period the outage test runs with (the default is 30 s; the first five tries,
# 1 s doubling, are not configurable and run as in production).
STEADY_RETRY_SECONDS = 5
OUTAGE_SECONDS = 60

# Every state and HUD text the player shows, from the first mutation of the document on.
RECORD_STATES = """
window.seenStates = new Set();
new MutationObserver(() => {
  const player = document.getElementById("player");
  const hud = document.getElementById("player-state");
  if (player && player.dataset.state) window.seenStates.add(player.dataset.state);
  if (hud) window.seenStates.add("hud:" + hud.textContent);
}).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
"""

RETRY_PLAN = """async () => {
  const player = document.querySelector("script[src*='player']").src;
  const policy = await import(new URL("reconnect.js", player).href);
  return [0, 1, 2, 3, 4, 5, 6, 100].map((attempt) => policy.retryDelay(attempt));
}"""


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # async code: allow this test's own ORM calls. The live daphne keeps the check on.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")


def frames_drawn(page) -> int:
    return int(page.eval_on_selector("#player", "el => el.dataset.frames || '0'"))


def player_state(page) -> str:
    return page.eval_on_selector("#player", "el => el.dataset.state")


def countdown(page) -> int | None:
    match = re.fullmatch(r"Reconnecting in (\d+) s", page.text_content("#player-message") or "")
    return int(match.group(1)) if match else None


def tile_frames_drawn(page) -> int:
    return int(page.eval_on_selector(".camera-tile", "el => el.dataset.frames || '0'"))


def test_the_player_and_the_grid_come_back_by_themselves_after_a_minute_long_outage(
    live_daphne, alice, organization, page
):
    camera = camera_create(
        organization=organization, name="Lobby", source="demo:", target_fps=10, detectors=[]
    )
    server = live_daphne(
        CAMERAS_IN_PROCESS="1",
        DJANGO_ALLOW_ASYNC_UNSAFE="",
        CAMERA_PLAYER_RETRY_SECONDS=str(STEADY_RETRY_SECONDS),
    )
    login(page, server.url, "alice", "alice-password")
    grid = page.context.new_page()
    grid.goto(f"{server.url}/cameras/")
    page.goto(f"{server.url}/cameras/{camera.public_id}/")

    page.wait_for_function("Number(document.getElementById('player').dataset.frames) > 5")
    assert player_state(page) == "live"
    assert page.text_content("#player-state") == "live"
    assert page.text_content("#camera-status") == "Online"
    # The default policy: the seed's five tries, then every 30 s for good.
    assert page.evaluate(RETRY_PLAN) == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    grid.wait_for_function("Number(document.querySelector('.camera-tile').dataset.frames) > 0")

    server.stop()
    stopped_at = time.monotonic()

    # It says what it does: when the next try is, with a live countdown, and a Retry now button.
    page.wait_for_selector("#player[data-state=reconnecting]", timeout=5_000)
    assert page.is_visible("#player-reconnect")
    assert page.text_content("#player-reconnect") == "Retry now"
    assert page.text_content("#player-state") == "reconnecting"
    assert page.text_content("#camera-status") == "No connection"
    assert "stale since" in page.text_content("#player-detail")
    page.wait_for_function(
        "/^Reconnecting in ([3-9]|1[0-6]) s$/.test(document.getElementById('player-message')"
        ".textContent)",
        timeout=20_000,
    )
    before = countdown(page)
    assert before is not None
    # It counts down while we watch (a second's step; allow for a busy machine).
    page.wait_for_function(
        "(before) => {"
        "  const message = document.getElementById('player-message').textContent;"
        "  const match = /^Reconnecting in (\\d+) s$/.exec(message);"
        "  return match && Number(match[1]) < before;"
        "}",
        arg=before,
        timeout=3_000,
    )

    # After the first five tries (~31 s) it keeps going at the steady period.
    page.wait_for_function(
        "document.getElementById('player-detail').textContent"
        f".includes('retrying every {STEADY_RETRY_SECONDS} s')",
        timeout=45_000,
    )
    assert player_state(page) == "reconnecting"
    assert 0 <= countdown(page) <= STEADY_RETRY_SECONDS
    # The grid says its pictures are old instead of going on as if they were current.
    assert grid.is_visible("#camera-grid-notice")
    assert grid.text_content(".camera-tile [data-status]") == "Unknown"
    tile_frames_before = tile_frames_drawn(grid)

    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
    server.start()
    restarted_at = time.monotonic()

    # Back by itself, without a click, within one steady period (plus the camera's start).
    page.wait_for_function(
        f"Number(document.getElementById('player').dataset.frames) > {frames_drawn(page) + 5}",
        timeout=(STEADY_RETRY_SECONDS + 15) * 1000,
    )
    recovered_after = time.monotonic() - restarted_at
    page.wait_for_selector("#player[data-state=live]", timeout=5_000)
    assert page.text_content("#player-state") == "live"
    assert page.is_hidden("#player-reconnect")
    assert page.is_hidden("#player-overlay")
    assert page.text_content("#camera-status") == "Online"
    print(f"player back {recovered_after:.1f} s after the server was")

    grid.wait_for_function(
        f"Number(document.querySelector('.camera-tile').dataset.frames) > {tile_frames_before + 1}",
        timeout=15_000,
    )
    grid.wait_for_selector("#camera-grid-notice", state="hidden", timeout=15_000)
    assert grid.text_content(".camera-tile [data-status]") == "Online"


def test_an_offline_camera_says_offline_with_its_reason_and_never_live(
    live_daphne, alice, organization, page, tmp_path
):
    not_a_video = tmp_path / "lobby.mp4"
    not_a_video.write_bytes(b"this is not a video")
    camera = camera_create(
        organization=organization, name="Lobby", source=str(not_a_video), detectors=[]
    )
    server = live_daphne(
        CAMERAS_IN_PROCESS="1",
        DJANGO_ALLOW_ASYNC_UNSAFE="",
        CAMERA_OFFLINE_AFTER_SECONDS="1",
        CAMERA_FILE_ROOTS=str(tmp_path),
    )
    login(page, server.url, "alice", "alice-password")
    page.add_init_script(RECORD_STATES)
    page.goto(f"{server.url}/cameras/{camera.public_id}/")

    page.wait_for_selector("#player[data-state=offline]", timeout=20_000)
    camera.refresh_from_db()
    assert camera.status == "offline" and "could not open" in camera.last_error
    assert page.text_content("#player-message") == "Offline"
    assert camera.last_error in page.text_content("#player-detail")
    assert page.text_content("#player-state") == "offline"
    assert page.text_content("#camera-status") == "Offline"
    page.wait_for_timeout(1_500)
    seen = page.evaluate("[...window.seenStates]")
    assert "live" not in seen and "hud:live" not in seen, seen
    assert player_state(page) == "offline"


def test_a_push_camera_waits_for_a_publisher_and_a_frozen_frame_says_stale_since(
    live_daphne, alice, organization, page
):
    camera = camera_create(organization=organization, name="Webcam", source="push:", detectors=[])
    _, token = api_token_create(user=alice)
    server = live_daphne(
        CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="", CAMERA_OFFLINE_AFTER_SECONDS="6"
    )
    login(page, server.url, "alice", "alice-password")
    page.add_init_script(RECORD_STATES)
    page.goto(f"{server.url}/cameras/{camera.public_id}/")

    # Nobody feeds it: it says so, not "Connecting" forever.
    page.wait_for_selector("#player[data-state=waiting-publisher]", timeout=10_000)
    assert page.text_content("#player-message") == "Waiting for a publisher"
    assert page.text_content("#player-state") == "waiting for a publisher"
    assert page.text_content("#camera-status") == "No publisher"

    # A publisher sends a second of frames: live.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for index in range(10):
            response = client.post(
                "/api/v1/actions/actions/send",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "streamName": "webcam",
                    "streamType": "frame",
                    "frame": jpeg_b64(seed=index),
                    "timestamp": int(time.time() * 1000),
                    "camera_id": camera.public_id,
                },
            )
            assert response.status_code == 200, response.text
            time.sleep(0.1)
    last_push = time.time()
    page.wait_for_selector("#player[data-state=live]", timeout=5_000)
    assert frames_drawn(page) >= 3

    # It stops: within a few seconds the frozen frame is "stale since <its local time>".
    page.wait_for_selector("#player[data-state=stale]", timeout=5_000)
    stale_after = time.time() - last_push
    message = page.text_content("#player-message")
    match = re.fullmatch(r"Stale since (\d\d):(\d\d):(\d\d)", message)
    assert match, message
    shown = page.evaluate(
        "([h, m, s]) => { const d = new Date(); d.setHours(h, m, s, 0); return d.getTime(); }",
        [int(part) for part in match.groups()],
    )
    assert abs(shown / 1000 - last_push) < 2, (message, time.strftime("%H:%M:%S"))
    assert page.text_content("#player-state") == "stale"
    print(f"stale shown {stale_after:.1f} s after the last frame")

    # Once the server marks the camera offline, it waits for a publisher again, frame kept.
    page.wait_for_selector("#player[data-state=waiting-publisher]", timeout=15_000)
    assert page.text_content("#player-message") == "Waiting for a publisher"
    assert "stale since" in page.text_content("#player-detail")
    assert page.text_content("#player-state") != "live"


# Counts the WebSockets the page opens (tries, refused or not).
# The player's sockets only: the header's alerts bell keeps a socket of its own (/ws/alerts).
COUNT_SOCKETS = """
window.socketsOpened = 0;
window.WebSocket = class extends window.WebSocket {
  constructor(...args) {
    super(...args);
    if (String(args[0]).includes("/ws/stream/")) window.socketsOpened += 1;
  }
};
"""

# Playwright's pages are always visible: say otherwise the way the browser would.
SET_HIDDEN = """(hidden) => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  Object.defineProperty(document, "visibilityState", {
    configurable: true,
    get: () => (hidden ? "hidden" : "visible"),
  });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def sockets_opened(page) -> int:
    return page.evaluate("window.socketsOpened")


def test_retry_now_and_coming_online_try_at_once_and_a_hidden_tab_waits_until_it_is_seen(
    live_daphne, alice, organization, page
):
    camera = camera_create(
        organization=organization, name="Lobby", source="demo:", target_fps=10, detectors=[]
    )
    server = live_daphne(CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="")
    login(page, server.url, "alice", "alice-password")
    page.add_init_script(COUNT_SOCKETS)
    page.goto(f"{server.url}/cameras/{camera.public_id}/")
    page.wait_for_function("Number(document.getElementById('player').dataset.frames) > 3")
    server.stop()

    # Waiting 4 s for the third try: Retry now tries at once.
    page.wait_for_function(
        "document.getElementById('player-message').textContent === 'Reconnecting in 4 s'",
        timeout=10_000,
    )
    before = sockets_opened(page)
    page.click("#player-reconnect")
    page.wait_for_function(f"window.socketsOpened === {before + 1}", timeout=2_000)

    # Waiting 8 s for the next: the browser coming back online tries at once.
    page.wait_for_function(
        "/^Reconnecting in [5-8] s$/.test(document.getElementById('player-message').textContent)",
        timeout=5_000,
    )
    before = sockets_opened(page)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    page.wait_for_function(f"window.socketsOpened === {before + 1}", timeout=2_000)

    # Hidden, it does not retry at all, not even once the server is back...
    page.evaluate(SET_HIDDEN, True)
    page.wait_for_selector("#player[data-state=paused]", state="attached", timeout=2_000)
    hidden_at = sockets_opened(page)
    server.start()
    page.wait_for_timeout(4_000)
    assert sockets_opened(page) == hidden_at
    assert player_state(page) == "paused"

    # ...and seen again, it connects at once.
    page.evaluate(SET_HIDDEN, False)
    page.wait_for_function(f"window.socketsOpened === {hidden_at + 1}", timeout=2_000)
    page.wait_for_selector("#player[data-state=live]", timeout=10_000)
