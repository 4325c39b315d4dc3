"""H.264 over the stream's WebSocket (`?format=h264`): the real pipeline encodes real frames of
the demo scene, the real channel layer carries them, the real consumer and hub send them, and
FFmpeg's own MP4 demuxer (through PyAV) decodes what a viewer received."""

from __future__ import annotations

import asyncio
import io
import json
import time

import av
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache

from cameras import publishing, video_fanout, video_track
from cameras.fanout import hub_viewer_count
from cameras.pipeline import FramePipeline
from cameras.publishing import PublishedFrame, frame_broadcast, latest_frame_set
from cameras.selectors import CameraConfig
from cameras.services import camera_create
from cameras.vision.demo import DemoScene
from cameras.vision.frames import parse_frame_data_binary
from organizations.revocation import WEBSOCKET_CLOSE_CODE
from organizations.services import api_token_create
from project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

FPS = 10


class _Broadcaster:
    """The pipeline's publisher, as ingest's: every frame broadcast, and kept as the latest."""

    def __init__(self):
        self.published: list[PublishedFrame] = []

    def wants_picture(self) -> bool:
        return True

    def publish(self, frame: PublishedFrame) -> None:
        self.published.append(frame)
        latest_frame_set(frame)
        async_to_sync(frame_broadcast)(get_channel_layer(), frame)


class _Camera:
    """A demo-scene camera fed through its real frame pipeline, one frame per `step`."""

    def __init__(self, camera, *, detectors=("motion",)):
        camera.detectors = list(detectors)
        camera.target_fps = FPS
        self.config = CameraConfig.of(camera)
        self.pipeline = FramePipeline(self.config)
        self.scene = DemoScene(320, 240, seed=3)
        self.publisher = _Broadcaster()
        self.timestamp = int(time.time() * 1000)

    def _process(self, count: int) -> None:
        for _ in range(count):
            self.timestamp += 1000 // FPS
            self.pipeline.process(
                self.scene.frame_at(self.timestamp / 1000),
                timestamp_ms=self.timestamp,
                publisher=self.publisher,
            )

    async def step(self, count: int = 1) -> None:
        await sync_to_async(self._process, thread_sensitive=False)(count)

    async def until_encoding(self) -> None:
        # The pipeline reads the demand at most every DEMAND_CHECK_SECONDS.
        for _ in range(100):
            await self.step()
            if self.publisher.published[-1].video is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the camera never started encoding H.264")


@pytest.fixture
def camera(organization):
    return camera_create(organization=organization, name="Lobby", source="push:")


async def _headers(user) -> list[tuple[bytes, bytes]]:
    _, raw = await sync_to_async(api_token_create)(user=user)
    return [(b"authorization", f"Bearer {raw}".encode())]


async def _connect(path: str, user, **kwargs) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=await _headers(user), **kwargs)
    connected, _ = await communicator.connect(timeout=5)
    assert connected, f"{path} was refused"
    return communicator


async def _messages(communicator, *, until) -> list[tuple[dict, bytes]]:
    """Binary messages received until `until(messages)` holds."""
    messages = []
    while not until(messages):
        output = await communicator.receive_output(timeout=5)
        assert output["type"] == "websocket.send", output
        messages.append(parse_frame_data_binary(output["bytes"]))
    return messages


async def _all_waiting(communicator) -> list[tuple[dict, bytes]]:
    """What the viewer was sent, once nothing more comes for a moment."""
    messages = []
    # (Not receive_output with a short timeout: a timeout there cancels the consumer.)
    while not await communicator.receive_nothing(timeout=0.3):
        messages.append(parse_frame_data_binary((await communicator.receive_output())["bytes"]))
    return messages


def _decoded(messages: list[tuple[dict, bytes]]) -> list[av.VideoFrame]:
    stream = b"".join(payload for header, payload in messages if header.get("kind"))
    with av.open(io.BytesIO(stream), format="mp4") as container:
        return list(container.decode(video=0))


def _videos(messages) -> list[dict]:
    return [header for header, _ in messages if header.get("kind") == "video"]


async def test_an_h264_viewer_gets_a_picture_at_once_then_video_that_decodes(alice, camera):
    source = _Camera(camera)
    await source.step()  # a latest frame, before anyone asked for H.264
    viewer = await _connect(f"/ws/stream/{camera.public_id}?format=h264", alice)
    first, jpeg = parse_frame_data_binary((await viewer.receive_output(timeout=5))["bytes"])
    assert "kind" not in first and jpeg.startswith(b"\xff\xd8")  # the latest JPEG, at once
    assert first["timestamp"] == source.timestamp
    await source.until_encoding()
    await source.step(12)
    messages = await _messages(viewer, until=lambda m: len(_videos(m)) >= 12)
    init, *fragments = [header for header, _ in messages]
    assert init["kind"] == "init" and init["codec"].startswith("avc1.42")
    assert (init["width"], init["height"]) == (320, 240)
    assert fragments[0]["key"] is True
    sequences = [header["seq"] for header in fragments]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    published = {frame.timestamp: frame for frame in source.publisher.published}
    for header in fragments:
        frame = published[header["timestamp"]]  # each fragment names its frame's capture time
        assert header["detections"] == frame.detections
        assert header["media_time"] == pytest.approx((header["seq"] - 1) / FPS)
        assert header["stream"] == init["stream"]
    frames = _decoded(messages)
    assert len(frames) == len(fragments)
    assert (frames[0].width, frames[0].height) == (320, 240)
    # The decoder's presentation times are the headers' media times: how the player matches
    # the boxes to the frame it shows.
    assert [round(float(f.time), 3) for f in frames] == [
        round(h["media_time"], 3) for h in fragments
    ]
    await viewer.disconnect()


async def test_a_viewer_joining_mid_group_starts_at_its_key_frame_at_once(alice, camera):
    source = _Camera(camera)
    first = await _connect(f"/ws/stream/{camera.public_id}?format=h264", alice)
    await source.until_encoding()
    await source.step(5)  # into the group of the stream's first key frame
    late = await _connect(f"/ws/stream/{camera.public_id}?format=h264", alice)
    # With nothing more published: the JPEG, the init and the whole group so far.
    messages = await _all_waiting(late)
    await source.step(2)
    received = await _messages(late, until=lambda m: len(_videos(m)) >= 2)
    headers = [h for h, _ in messages] + [h for h, _ in received]
    assert "kind" not in headers[0]
    videos = [h for h in headers if h.get("kind") == "video"]
    assert videos[0]["key"] is True
    # The key frame and everything since at once (the stream's first 6 frames), then live.
    assert len([h for h, _ in messages if h.get("kind") == "video"]) >= 6
    assert headers[1]["kind"] == "init"
    sequences = [h["seq"] for h in videos]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    await first.disconnect()
    await late.disconnect()


async def test_seed_json_viewers_get_unchanged_frame_data_beside_h264_viewers(alice, camera):
    source = _Camera(camera)
    video = await _connect(f"/ws/stream/{camera.public_id}?format=h264", alice)
    seed = await _connect(f"/ws/stream/{camera.public_id}", alice)
    binary = await _connect(f"/ws/stream/{camera.public_id}?format=binary", alice)
    await source.until_encoding()
    await source.step(3)
    message = json.loads(await seed.receive_from(timeout=5))
    assert set(message) == {"frame", "timestamp", "camera_id", "detections"}
    header, jpeg = parse_frame_data_binary((await binary.receive_output(timeout=5))["bytes"])
    assert set(header) == {"timestamp", "camera_id", "detections"} and jpeg[:2] == b"\xff\xd8"
    assert _videos(await _messages(video, until=lambda m: len(_videos(m)) >= 3))
    for communicator in (video, seed, binary):
        await communicator.disconnect()


async def test_the_encoder_runs_only_while_someone_watches_as_h264(alice, camera, monkeypatch):
    monkeypatch.setattr(publishing, "VIDEO_WATCHED_SECONDS", 1)
    monkeypatch.setattr(publishing, "VIDEO_WATCHED_REFRESH_SECONDS", 0.3)
    source = _Camera(camera)
    jpeg_viewer = await _connect(f"/ws/stream/{camera.public_id}?format=binary", alice)
    for _ in range(5):
        await source.step()
        await asyncio.sleep(video_track.DEMAND_CHECK_SECONDS)
    assert all(frame.video is None for frame in source.publisher.published)
    video = await _connect(f"/ws/stream/{camera.public_id}?format=h264", alice)
    await source.until_encoding()
    assert source.pipeline._video.running
    await video.disconnect()
    deadline = time.monotonic() + 5
    while source.pipeline._video.running:
        assert time.monotonic() < deadline, "the encoder kept running with no H.264 viewer"
        await source.step()
        await asyncio.sleep(0.1)
    await source.step()
    assert source.publisher.published[-1].video is None
    assert hub_viewer_count(camera.public_id) == 1  # the JPEG viewer, still watching
    await jpeg_viewer.disconnect()


async def test_a_lost_fragment_holds_the_video_until_a_key_frame_it_asks_for(
    alice, camera, monkeypatch
):
    # The join asked for a key frame a moment ago; a loss may ask again at once here.
    monkeypatch.setattr(video_fanout, "KEYFRAME_ASK_SECONDS", 0)
    source = _Camera(camera)
    viewer = await _connect(f"/ws/stream/{camera.public_id}?format=h264", alice)
    await source.until_encoding()
    await source.step(3)
    before = await _messages(viewer, until=lambda m: len(_videos(m)) >= 4)
    last = _videos(before)[-1]["seq"]
    # The layer drops one message: the next frame never reaches the hub.
    layer_send = source.publisher.publish
    source.publisher.publish = lambda frame: None
    await source.step()
    source.publisher.publish = layer_send
    asked_before = cache.get(f"camera:{camera.public_id}:video:keyframe") or 0
    await source.step(2)  # decodes only with the lost one: not sent
    assert await viewer.receive_nothing(timeout=0.3)
    assert (cache.get(f"camera:{camera.public_id}:video:keyframe") or 0) > asked_before
    # The encoder reads the request and the next fragment is a key frame: the video resumes.
    after = []
    for _ in range(20):
        await asyncio.sleep(video_track.DEMAND_CHECK_SECONDS)
        await source.step()
        after = await _all_waiting(viewer)
        if after:
            break
    resumed = _videos(after)
    assert resumed and resumed[0]["key"] is True and resumed[0]["seq"] > last + 3
    await viewer.disconnect()


async def test_h264_is_for_the_full_stream_only(alice, camera):
    viewer = WebsocketCommunicator(
        application,
        f"/ws/stream/{camera.public_id}?format=h264&width=320",
        headers=await _headers(alice),
    )
    connected, _ = await viewer.connect(timeout=5)
    assert connected
    closed = await viewer.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4400
    assert "format=binary" in closed["reason"]


async def test_the_h264_subprotocol_is_accepted_and_echoed(alice, camera):
    viewer = WebsocketCommunicator(
        application,
        f"/ws/stream/{camera.public_id}",
        headers=await _headers(alice),
        subprotocols=["sightline.h264"],
    )
    connected, subprotocol = await viewer.connect(timeout=5)
    assert connected and subprotocol == "sightline.h264"
    source = _Camera(camera)
    await source.until_encoding()
    messages = await _messages(viewer, until=lambda m: bool(_videos(m)))
    assert messages[0][0]["kind"] == "init"
    await viewer.disconnect()


async def test_other_organizations_cannot_watch_as_h264(charlie, charlie_organization, camera):
    viewer = WebsocketCommunicator(
        application,
        f"/ws/stream/{camera.public_id}?format=h264",
        headers=await _headers(charlie),
    )
    connected, _ = await viewer.connect(timeout=5)
    assert not connected
    assert await viewer.receive_nothing(timeout=0.2)
    assert hub_viewer_count(camera.public_id) == 0


async def test_a_revoked_token_ends_its_h264_socket_and_the_feed_lets_it_go(alice, camera):
    source = _Camera(camera)
    token, raw = await sync_to_async(api_token_create)(user=alice)
    viewer = WebsocketCommunicator(
        application,
        f"/ws/stream/{camera.public_id}?format=h264",
        headers=[(b"authorization", f"Bearer {raw}".encode())],
    )
    assert (await viewer.connect(timeout=5))[0]
    await source.until_encoding()
    await _messages(viewer, until=lambda m: bool(_videos(m)))
    await sync_to_async(token.delete)()
    while True:  # fragments already on their way, then the close
        output = await viewer.receive_output(timeout=2)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == WEBSOCKET_CLOSE_CODE
    await viewer.disconnect()
    await source.step(2)  # nothing more is sent to it, and the hub is gone with its last viewer
    assert hub_viewer_count(camera.public_id) == 0
