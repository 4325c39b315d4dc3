"""Admission control in front of Django: few requests handled at once, the rest wait their turn."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chats.services import chat_create
from project.request_admission import RequestAdmission
from tests.chats.asgi_http import request, runs_finished

HTTP = {"type": "http", "method": "GET", "path": "/", "headers": []}


class Handler:
    """A plain ASGI application that says how many requests it is handling at once; each
    waits for `proceed` at the point the test chooses (before or after its response starts)."""

    def __init__(self, *, respond_first: bool = False):
        self.respond_first = respond_first
        self.proceed = asyncio.Event()
        self.active = 0
        self.most_active = 0
        self.started = 0

    async def __call__(self, scope, receive, send) -> None:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.respond_first:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                self.started += 1
                self.active -= 1  # from here on it only streams
            await self.proceed.wait()
            if not self.respond_first:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                self.started += 1
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            if not self.respond_first:
                self.active -= 1


async def call(application, scope=HTTP) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await application(scope, receive, send)
    return sent


async def test_no_more_requests_than_the_limit_are_handled_at_once():
    handler = Handler()
    admission = RequestAdmission(handler, limit=2)
    requests = [asyncio.create_task(call(admission)) for _ in range(6)]
    await asyncio.sleep(0.1)
    assert (handler.active, handler.started) == (2, 0)
    handler.proceed.set()
    answers = await asyncio.wait_for(asyncio.gather(*requests), 5)
    assert handler.most_active == 2
    assert all(sent[0]["status"] == 200 for sent in answers)


async def test_a_stream_gives_its_slot_up_once_its_response_starts():
    handler = Handler(respond_first=True)
    admission = RequestAdmission(handler, limit=1)
    streams = [asyncio.create_task(call(admission)) for _ in range(5)]
    await asyncio.sleep(0.1)
    # All five are streaming at once although only one may be set up at a time.
    assert handler.started == 5
    handler.proceed.set()
    await asyncio.wait_for(asyncio.gather(*streams), 5)


async def test_a_request_that_waits_long_before_responding_lets_the_next_one_in():
    handler = Handler()
    admission = RequestAdmission(handler, limit=1, hold_max_seconds=0.2)
    first = asyncio.create_task(call(admission))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(call(admission))
    await asyncio.sleep(0.05)
    assert handler.active == 1
    await asyncio.sleep(0.3)
    assert handler.active == 2
    handler.proceed.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)


async def test_websockets_are_never_held_back():
    handler = Handler()
    admission = RequestAdmission(handler, limit=1)
    busy = asyncio.create_task(call(admission))
    await asyncio.sleep(0.05)
    websocket = asyncio.create_task(call(admission, {"type": "websocket", "path": "/ws/"}))
    await asyncio.sleep(0.05)
    assert handler.active == 2
    handler.proceed.set()
    await asyncio.wait_for(asyncio.gather(busy, websocket), 5)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_health_probes_never_wait_behind_busy_requests(path):
    handler = Handler()
    admission = RequestAdmission(handler, limit=1)
    busy = asyncio.create_task(call(admission))
    await asyncio.sleep(0.05)
    probe = asyncio.create_task(call(admission, {**HTTP, "path": path}))
    await asyncio.sleep(0.05)
    assert handler.active == 2
    handler.proceed.set()
    await asyncio.wait_for(asyncio.gather(busy, probe), 5)


async def test_a_limit_of_zero_admits_everything():
    handler = Handler()
    admission = RequestAdmission(handler, limit=0)
    requests = [asyncio.create_task(call(admission)) for _ in range(5)]
    await asyncio.sleep(0.1)
    assert handler.active == 5
    handler.proceed.set()
    await asyncio.wait_for(asyncio.gather(*requests), 5)


@pytest.mark.django_db(transaction=True)
async def test_many_more_prompts_than_the_limit_all_stream_to_done(
    alice, organization, alice_api, settings
):
    settings.ASSISTANT_BUILTIN_DELAY_MS = 0
    count = 3 * max(1, settings.REQUEST_CONCURRENCY)
    chats = [
        await sync_to_async(chat_create)(user=alice, organization=organization)
        for _ in range(count)
    ]

    async def prompt(chat) -> list[dict]:
        stream = await request(
            "POST",
            f"/api/v1/chats/{chat.pk}/messages",
            token=alice_api.raw_token,
            body={"prompt": "Who is on the team?"},
        )
        await stream.read_all()
        return stream.events()

    replies = await asyncio.wait_for(asyncio.gather(*(prompt(chat) for chat in chats)), 60)
    assert [events[-1]["status"] for events in replies] == ["complete"] * count
    await runs_finished()


def test_the_project_application_admits_few_requests_at_once(settings):
    from project.asgi import application

    admission = application.application_mapping["http"]
    assert isinstance(admission, RequestAdmission)
    assert admission.limit == settings.REQUEST_CONCURRENCY > 0
