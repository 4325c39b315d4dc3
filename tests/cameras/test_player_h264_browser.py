"""The player's H.264 mode in a real Chromium against a real daphne with a `demo:` camera: moving
video through Media Source Extensions, boxes drawn for the very frame shown, the live edge held
after the tab was hidden, a picture at once for a viewer joining mid-GOP, the seed's JSON clients
served beside it, and binary JPEG where MSE is missing.

The player exposes what these tests read as `window.sightlinePlayer` (static/js/player.js). The
hidden-tab test is the long one (~45 s); the others take ~10-15 s each. Run with -s to see the
measured latency and bitrate.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import struct
import subprocess
import time
import urllib.request

import pytest
import websockets.sync.client

from cameras.services import camera_create
from organizations.services import api_token_create
from tests.cameras.conftest import CANVAS_CHECKSUM
from tests.conftest import CHROMIUM_ARGS, free_port, login

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("orm_beside_playwright"),
]

FPS = 30
HIDDEN_SECONDS = 30


@pytest.fixture
def demo_camera(alice, organization):
    return camera_create(
        organization=organization,
        name="Street",
        source="demo:",
        target_fps=FPS,
        max_width=640,
        detectors=["motion"],
    )


@pytest.fixture
def server(live_daphne):
    return live_daphne(CAMERAS_IN_PROCESS="1", DJANGO_ALLOW_ASYNC_UNSAFE="")


def player(page) -> dict:
    return page.evaluate(PLAYER_NOW)


PLAYER_NOW = """() => {
  const p = window.sightlinePlayer;
  return {
    format: p.format,
    fallback: p.fallback,
    kbps: p.kbps,
    framesShown: p.framesShown,
    videoFrames: p.videoFrames,
    bufferedAhead: p.bufferedAhead,
    seeks: p.seeks,
    firsts: p.firsts,
    state: document.getElementById("player").dataset.state,
    hudFormat: document.getElementById("player-format").textContent,
    hudBitrate: document.getElementById("player-bitrate").textContent,
  };
}"""

# A checksum of the <video>'s current frame, drawn into a canvas of the test's own.
VIDEO_CHECKSUM = """() => {
  const video = document.getElementById("player-video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < data.length; i += 97) sum = (sum * 31 + data[i]) >>> 0;
  return sum;
}"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measured_kbps(page, seconds: float = 3) -> float:
    """The bitrate the player received over `seconds`, in kbit/s."""
    before = page.evaluate("[window.sightlinePlayer.bytesReceived, performance.now()]")
    page.wait_for_timeout(seconds * 1000)
    after = page.evaluate("[window.sightlinePlayer.bytesReceived, performance.now()]")
    return (after[0] - before[0]) * 8 / (after[1] - before[1])


def open_player(page, server, camera) -> None:
    login(page, server.url, "alice", "alice-password")
    page.goto(f"{server.url}/cameras/{camera.public_id}/")


def test_the_player_plays_h264_with_moving_pictures_and_says_so_with_its_bitrate(
    server, demo_camera, page
):
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    open_player(page, server, demo_camera)
    page.wait_for_function("window.sightlinePlayer.videoFrames > 15", timeout=15_000)

    assert any(url.endswith(f"{demo_camera.stream_path}?format=h264") for url in sockets), sockets
    now = player(page)
    assert now["format"] == "h264" and now["fallback"] == ""
    assert now["hudFormat"] == "H.264"
    assert now["state"] == "live"
    assert page.is_visible("#player-video")
    assert page.eval_on_selector("#player-video", "v => [v.videoWidth, v.videoHeight]") == [
        640,
        480,
    ]
    # The bitrate over the last second, in the HUD and for tests.
    page.wait_for_function("window.sightlinePlayer.kbps > 0")
    now = player(page)
    assert re.fullmatch(r"\d+ kbit/s", now["hudBitrate"]), now["hudBitrate"]
    print(f"H.264 at {FPS} fps, 640x480: {measured_kbps(page):.0f} kbit/s received over 3 s")

    # The <video>'s own pixels move (the canvas over it only draws boxes).
    first = page.evaluate(VIDEO_CHECKSUM)
    page.wait_for_timeout(500)
    assert page.evaluate(VIDEO_CHECKSUM) != first, "the video's picture did not change"
    assert page.evaluate("window.sightlinePlayer.frames.at(-1).mediaTime") > 0


# The test's own requestVideoFrameCallback, registered after the player's: for each frame
# presented, which frame the boxes on the canvas were drawn for by then, and whether the canvas
# has box-coloured pixels.
WATCH_BOXES = """() => {
  const video = document.getElementById("player-video");
  const canvas = document.getElementById("player-canvas");
  window.boxWatch = [];
  const watch = (now, metadata) => {
    const drawn = window.sightlinePlayer.frames.at(-1);
    let green = 0;
    if (drawn && drawn.boxes > 0) {
      const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] === 0 && data[i + 1] === 255 && data[i + 2] === 0 && data[i + 3] === 255) {
          green += 1;
        }
      }
    }
    window.boxWatch.push({
      mediaTime: metadata.mediaTime,
      drawnFor: drawn ? drawn.headerMediaTime : null,
      boxes: drawn ? drawn.boxes : 0,
      green,
    });
    if (window.boxWatch.length < 150) video.requestVideoFrameCallback(watch);
  };
  video.requestVideoFrameCallback(watch);
}"""


def test_boxes_are_drawn_for_the_frame_shown_and_the_player_adds_little_latency(
    server, demo_camera, page
):
    open_player(page, server, demo_camera)
    page.wait_for_function("window.sightlinePlayer.videoFrames > 30", timeout=15_000)
    # The demo scene moves: the motion detector boxes it.
    page.wait_for_function(
        "window.sightlinePlayer.frames.some((frame) => frame.boxes > 0)", timeout=10_000
    )
    warm = page.evaluate("window.sightlinePlayer.latencies.length")
    bytes_before = page.evaluate("[window.sightlinePlayer.bytesReceived, performance.now()]")
    page.evaluate(WATCH_BOXES)
    page.wait_for_function("window.boxWatch.length >= 150", timeout=15_000)
    page.wait_for_function(
        f"window.sightlinePlayer.latencies.length >= {warm + 240}", timeout=15_000
    )

    watched = page.evaluate("window.boxWatch")
    frame_interval = 1 / FPS
    # Every presented frame's boxes came from the header of that very frame (its media_time).
    out_of_sync = [
        w for w in watched if w["drawnFor"] is None or abs(w["drawnFor"] - w["mediaTime"]) > 0.001
    ]
    assert not out_of_sync, out_of_sync[:5]
    with_boxes = [w for w in watched if w["boxes"] > 0]
    assert len(with_boxes) > len(watched) / 2, "the demo's moving objects were rarely boxed"
    assert all(w["green"] > 0 for w in with_boxes), "boxes were counted but not drawn"
    # Frames follow each other on the timeline (no frame shown twice, none from the past).
    times = [w["mediaTime"] for w in watched]
    assert all(b > a for a, b in itertools.pairwise(times))
    records = page.evaluate("window.sightlinePlayer.frames.slice(-240)")
    assert all(abs(r["headerMediaTime"] - r["mediaTime"]) < frame_interval / 2 for r in records)

    latencies = page.evaluate(f"window.sightlinePlayer.latencies.slice({warm})")
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    # Of which the browser's share: from the fragment's arrival to its frame's presentation.
    in_browser = [r["inBrowser"] for r in records]
    bytes_after = page.evaluate("[window.sightlinePlayer.bytesReceived, performance.now()]")
    kbps = (bytes_after[0] - bytes_before[0]) * 8 / (bytes_after[1] - bytes_before[1])
    print(
        f"capture to display at {FPS} fps over {len(latencies)} frames: "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(latencies):.0f} ms "
        f"(arrival to display p50 {percentile(in_browser, 0.5):.0f} ms, "
        f"p99 {percentile(in_browser, 0.99):.0f} ms); {kbps:.0f} kbit/s"
    )
    # The player's own share is what this test holds to the 100 ms. The whole path's
    # p99 (26-43 ms on a quiet machine, README) also counts the server's capture, encode and
    # send, which a machine shared with other work stretches: here it only must not stall.
    assert percentile(in_browser, 0.99) <= 100, f"arrival to display p99 {in_browser}"
    assert p99 <= 250, f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    # What was played is removed from the buffer: a few seconds stay, however long it plays.
    kept = page.evaluate(
        "(() => { const v = document.getElementById('player-video');"
        " return v.currentTime - v.buffered.start(0); })()"
    )
    assert 0 < kept <= 6, kept


# --- the hidden tab ------------------------------------------------------------------------
#
# No Playwright page is ever hidden in headless Chromium: Playwright turns on focus emulation
# (Emulation.setFocusEmulationEnabled) for every page it drives, which keeps the page's
# WebContents visible, so page2.bring_to_front(), a new tab, minimizing the window
# (Browser.setWindowBounds) or Page.setWebLifecycleState all leave document.visibilityState
# "visible" (tried). A Chromium driven over plain CDP does hide a tab when another tab opens in
# front of it, as any browser does. So this test starts its own headless Chromium, drives it with
# Playwright (connect_over_cdp) until the video plays, lets Playwright go (which ends its focus
# emulation), then opens a tab over the player with plain CDP: the player's tab is really hidden
# (document.visibilityState "hidden", its timers throttled, its video not rendered). Activating
# the player's tab again makes it visible.


def cdp_url(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=5) as answer:
        return json.load(answer)["webSocketDebuggerUrl"]


class Cdp:
    """The Chrome DevTools Protocol over a plain WebSocket, with flat sessions."""

    def __init__(self, socket):
        self.socket = socket
        self.ids = itertools.count(1)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        message_id = next(self.ids)
        message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(self.socket.recv(timeout=10))
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def evaluate(self, session: str, expression: str):
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(session, expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {timeout} s: {expression}")
            time.sleep(0.1)


@pytest.fixture
def own_chromium(chromium_path, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [
            chromium_path,
            "--headless",
            *CHROMIUM_ARGS,
            f"--remote-debugging-port={port}",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("Chromium did not start") from None
            time.sleep(0.1)
    yield port
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_the_live_edge_is_held_after_the_tab_was_hidden_for_30_seconds(
    server, demo_camera, own_chromium
):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.connect_over_cdp(f"http://127.0.0.1:{own_chromium}")
        page = browser.contexts[0].pages[0]
        open_player(page, server, demo_camera)
        page.wait_for_function("window.sightlinePlayer.videoFrames > 30", timeout=15_000)
        assert player(page)["format"] == "h264"
        browser.close()  # Playwright lets go; the Chromium goes on

    with websockets.sync.client.connect(cdp_url(own_chromium), max_size=None) as socket:
        cdp = Cdp(socket)
        [target] = [
            t
            for t in cdp.send("Target.getTargets")["targetInfos"]
            if t["type"] == "page" and demo_camera.public_id in t["url"]
        ]
        session = cdp.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        assert cdp.evaluate(session, "document.visibilityState") == "visible"
        frames_before = cdp.evaluate(session, "window.sightlinePlayer.videoFrames")

        # Another tab in front: the player's tab is hidden, its stream paused.
        cover = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        cdp.wait_for(session, "document.visibilityState === 'hidden'", timeout=5)
        cdp.wait_for(
            session, "document.getElementById('player').dataset.state === 'paused'", timeout=5
        )
        time.sleep(HIDDEN_SECONDS)
        assert cdp.evaluate(session, "document.hidden") is True

        # Seen again: back at the live edge within a few seconds.
        cdp.send("Target.activateTarget", {"targetId": target["targetId"]})
        cdp.send("Target.closeTarget", {"targetId": cover})
        cdp.wait_for(session, "document.visibilityState === 'visible'", timeout=5)
        shown_at_visible = cdp.evaluate(
            session, "[window.sightlinePlayer.videoFrames, window.sightlinePlayer.latencies.length]"
        )
        visible_at = time.monotonic()
        cdp.wait_for(
            session,
            f"window.sightlinePlayer.videoFrames > {max(frames_before, shown_at_visible[0]) + 30}",
            timeout=8,
        )
        recovered_after = time.monotonic() - visible_at
        ahead = []
        for _ in range(20):
            ahead.append(cdp.evaluate(session, "window.sightlinePlayer.bufferedAhead"))
            time.sleep(0.1)
        latencies = cdp.evaluate(
            session, f"window.sightlinePlayer.latencies.slice({shown_at_visible[1]})"
        )
        now = cdp.evaluate(session, f"({PLAYER_NOW})()")

    recent = latencies[-45:]
    print(
        f"after {HIDDEN_SECONDS} s hidden: 30 new frames {recovered_after:.1f} s after visible; "
        f"buffered ahead max {max(ahead) * 1000:.0f} ms; "
        f"latency of the last {len(recent)} frames p50 {percentile(recent, 0.5):.0f} ms, "
        f"max {max(recent):.0f} ms"
    )
    assert now["format"] == "h264" and now["state"] == "live"
    assert max(ahead) <= 0.16, ahead
    assert percentile(recent, 0.5) <= 100, recent
    assert max(recent) <= 200, recent


# --- joining mid-GOP -----------------------------------------------------------------------


def h264_message(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack(">I", data[:4])
    return json.loads(data[4 : 4 + length]), data[4 + length :]


def test_a_viewer_joining_mid_gop_sees_the_jpeg_at_once_then_video_within_a_second(
    server, demo_camera, alice, page
):
    _, token = api_token_create(user=alice)
    login(page, server.url, "alice", "alice-password")
    url = f"ws://127.0.0.1:{server.port}{demo_camera.stream_path}?format=h264"
    with websockets.sync.client.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as watcher:
        # Another H.264 viewer keeps the encoder going; wait for a key fragment, then join
        # half a second (half a GOP) after it.
        deadline = time.monotonic() + 20
        keys = 0
        while keys < 2:  # the second key: one that is live, not the join burst's
            header, _ = h264_message(watcher.recv(timeout=10))
            keys += header.get("kind") == "video" and header["key"]
            assert time.monotonic() < deadline, "no key fragment"
        key_seq = header["seq"]
        time.sleep(0.5)
        page.goto(f"{server.url}/cameras/{demo_camera.public_id}/")
        page.wait_for_function("window.sightlinePlayer.videoFrames > 5", timeout=10_000)
        now = player(page)
    firsts = now["firsts"]
    navigation = page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd")
    print(
        f"joined mid-GOP: JPEG drawn {firsts['jpegAt'] - navigation:.0f} ms after the page "
        f"loaded, video {firsts['videoAt'] - navigation:.0f} ms"
    )
    # A picture at once: the JPEG the server sends first, before any video frame...
    assert firsts["jpegAt"] is not None and firsts["videoAt"] is not None
    assert firsts["jpegAt"] < firsts["videoAt"]
    assert firsts["jpegAt"] - navigation < 1000
    # ...and the video within about a second, although it joined in the middle of a GOP: it was
    # sent from that GOP's key fragment on, and showed the live frame, not the key frame.
    assert firsts["videoAt"] - firsts["jpegAt"] < 1000
    assert firsts["fragment"]["key"] is True
    assert firsts["fragment"]["seq"] >= key_seq
    first_shown = page.evaluate("window.sightlinePlayer.frames[0]")
    assert first_shown["seq"] > firsts["fragment"]["seq"], (first_shown, firsts)


# --- the seed's clients --------------------------------------------------------------------


def test_the_seeds_json_client_gets_frame_data_from_the_same_camera_meanwhile(
    server, demo_camera, alice, page
):
    _, token = api_token_create(user=alice)
    open_player(page, server, demo_camera)
    page.wait_for_function("window.sightlinePlayer.videoFrames > 15", timeout=15_000)
    shown_before = player(page)["videoFrames"]

    url = f"ws://127.0.0.1:{server.port}{demo_camera.stream_path}"
    with websockets.sync.client.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as seed_client:
        messages = [seed_client.recv(timeout=10) for _ in range(30)]
    after = player(page)

    for message in messages:
        assert isinstance(message, str)
        frame_data = json.loads(message)
        assert (
            {"frame", "timestamp", "camera_id"}
            <= set(frame_data)
            <= {
                "frame",
                "timestamp",
                "camera_id",
                "detections",
            }
        )
        assert frame_data["camera_id"] == demo_camera.public_id
        assert base64.b64decode(frame_data["frame"])[:2] == b"\xff\xd8"  # a JPEG
    # Live frames, the same camera's as the page shows (the first may be the cached one).
    last = json.loads(messages[-1])
    assert abs(last["timestamp"] / 1000 - time.time()) < 5
    assert [json.loads(m)["timestamp"] for m in messages] == sorted(
        json.loads(m)["timestamp"] for m in messages
    )
    assert after["format"] == "h264" and after["videoFrames"] > shown_before + 15


# --- without MSE ---------------------------------------------------------------------------

BREAK_MSE = {
    # A browser without Media Source Extensions (Safari on an older iPhone): never asks for H.264.
    "no MediaSource": "delete window.MediaSource; delete window.ManagedMediaSource;",
    # MSE without the codec: never asks for H.264 either.
    "codec refused": "MediaSource.isTypeSupported = (type) => !type.includes('avc1');",
    # MSE that fails once the stream plays: H.264 first, then JPEG on a new socket.
    "appendBuffer fails": """
      SourceBuffer.prototype.appendBuffer = function () {
        throw new DOMException("broken for the test", "NotSupportedError");
      };""",
}


@pytest.mark.parametrize("broken", list(BREAK_MSE))
def test_without_working_mse_the_player_falls_back_to_binary_jpeg_with_boxes(
    server, demo_camera, page, broken
):
    page.add_init_script(BREAK_MSE[broken])
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    open_player(page, server, demo_camera)
    page.wait_for_function(
        "Number(document.getElementById('player').dataset.frames) > 10", timeout=15_000
    )
    now = player(page)
    assert now["format"] == "jpeg" and now["hudFormat"] == "JPEG"
    assert now["videoFrames"] == 0
    assert page.is_hidden("#player-video")
    streams = [url for url in sockets if "/ws/stream/" in url]
    asked = [url.rpartition("?")[2] for url in streams]
    if broken == "appendBuffer fails":
        assert asked == ["format=h264", "format=binary"], streams
        assert now["fallback"].startswith("appendBuffer"), now["fallback"]
    else:
        assert asked == ["format=binary"], streams
    first = page.evaluate(CANVAS_CHECKSUM)
    page.wait_for_timeout(500)
    assert page.evaluate(CANVAS_CHECKSUM) != first, "the picture did not change"
    page.wait_for_function("Number(document.getElementById('player').dataset.boxes) > 0")
    page.wait_for_function("window.sightlinePlayer.kbps > 0")
    print(f"JPEG fallback ({broken}): {measured_kbps(page):.0f} kbit/s received over 3 s")
