"""How a reply's listeners get its text: from the run itself in the run's process, through the
channel layer (after asking with chat.follow) from any other."""

from __future__ import annotations

import json

import pytest
from channels.layers import channel_layers

from chats.services import chat_create
from chats.streaming.follow import RemoteFollower, reply_events
from chats.streaming.protocol import StoredReply
from chats.streaming.run import Run
from project.channel_layer import InMemoryLayerWithPeriodicExpiry
from tests.chats.asgi_http import request, runs_finished

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "Who is on the team?"
TEAM_ANSWER = "Alice Co has 2 members:\n\n- **bob** (member)\n- **alice** (owner)"


class RecordingLayer(InMemoryLayerWithPeriodicExpiry):
    """The in-memory layer, recording the type of every group message; it can drop the first
    `drop_follows` follow requests, as a layer that was away would."""

    def __init__(self, *, drop_follows: int = 0):
        super().__init__(capacity=200)
        self.sent: list[str] = []
        self.drop_follows = drop_follows

    async def group_send(self, group, message):
        self.sent.append(message["type"])
        if message["type"] == "chat.follow" and self.drop_follows:
            self.drop_follows -= 1
            return
        await super().group_send(group, message)


@pytest.fixture(autouse=True)
def _builtin(settings):
    settings.ASSISTANT_BACKEND = "builtin"
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0


@pytest.fixture
def chat(alice, organization):
    return chat_create(user=alice, organization=organization)


def layer_installed(monkeypatch, layer: RecordingLayer) -> RecordingLayer:
    monkeypatch.setitem(channel_layers.backends, "default", layer)
    return layer


def sse_events(body: bytes) -> list[dict]:
    return [
        json.loads(block[len("data: ") :])
        for block in body.decode().split("\n\n")
        if block.startswith("data: ")
    ]


def sse_text(body: bytes) -> str:
    return "".join(event["text"] for event in sse_events(body) if event["type"] == "chunk")


async def followed_elsewhere(follower: RemoteFollower, message_id: int) -> bytes:
    return b"".join([part async for part in reply_events(receiver=follower, message_id=message_id)])


async def test_the_stream_of_a_prompt_takes_the_text_from_its_run_not_the_layer(
    chat, alice_api, monkeypatch
):
    layer = layer_installed(monkeypatch, RecordingLayer())
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": PROMPT}
    )
    await stream.read_all()
    await runs_finished()
    assert stream.text() == TEAM_ANSWER
    assert stream.events()[-1]["status"] == "complete"
    assert "<strong>bob</strong>" in stream.events()[-1]["html"]
    # Nobody elsewhere asked: only the end crossed the layer.
    assert layer.sent == ["chat.end"]


async def test_a_listener_in_another_process_asks_and_gets_the_whole_text_live(
    chat, alice_api, monkeypatch, settings
):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 60
    layer = layer_installed(monkeypatch, RecordingLayer())
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": PROMPT}
    )
    await stream.read_until(b" has")  # generating, some text not yet stored
    message_id = int(stream.headers["x-message-id"])
    # What a resume on another web process makes: there is no run there to take text from.
    follower = await RemoteFollower(message_id).join(offset=0)
    body = await followed_elsewhere(follower, message_id)
    await stream.read_all()
    await runs_finished()
    assert sse_text(body) == TEAM_ANSWER
    assert sse_events(body)[-1]["status"] == "complete"
    assert layer.sent.count("chat.follow") >= 1
    # The text came published, not only from the database.
    assert layer.sent.count("chat.delta") >= 2


async def test_a_lost_follow_request_is_made_again_after_a_second_of_silence(
    chat, alice_api, monkeypatch, settings
):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 250  # 11 pieces: about 2.7 s
    layer = layer_installed(monkeypatch, RecordingLayer(drop_follows=1))
    stream = await request(
        "POST", f"/chats/{chat.pk}/messages", token=alice_api.raw_token, body={"prompt": PROMPT}
    )
    await stream.read_until(b"Alice")
    message_id = int(stream.headers["x-message-id"])
    follower = await RemoteFollower(message_id).join(offset=0)
    body = await followed_elsewhere(follower, message_id)
    await runs_finished()
    assert sse_text(body) == TEAM_ANSWER
    assert layer.sent.count("chat.follow") >= 2
    assert "chat.delta" in layer.sent  # published once asked again


def test_text_is_published_from_the_offset_of_the_listener_furthest_behind():
    run = Run(message_id=1)
    run.add_text("Hello")
    assert (run.unpublished, run.published_length) == ([], 0)  # nobody asked yet
    run.publish_from(5)  # holds it all
    assert (run.unpublished, run.published_length) == ([], 5)
    run.add_text(" world")
    assert run.unpublished == [" world"]
    run.publish_from(2)  # a second listener, further behind
    assert (run.unpublished, run.published_length) == (["llo world"], 2)
    run.publish_from(11)  # one up to date moves nothing back
    assert (run.unpublished, run.published_length) == (["llo world"], 2)
    run.publish_from(99)  # an offset past the text is taken as its end
    assert run.published_length == 2


async def test_a_follower_made_after_the_run_ended_gets_the_text_and_the_end_at_once():
    # Between handing out the end and its last publish the run is still found in this process.
    run = Run(message_id=1)
    run.add_text("Alice")
    run.end = {
        "type": "chat.end",
        "status": "complete",
        "error": "",
        "stored": StoredReply("Alice", "complete", "", "<p>Alice</p>"),
    }
    follower = run.follow()
    assert await follower.receive(within=0.1) == {"type": "chat.delta", "at": 0, "text": "Alice"}
    assert await follower.receive(within=0.1) == run.end
    assert await follower.receive(within=0.1) is None  # the end is given once
    await follower.close()
    assert run.followers == set()
