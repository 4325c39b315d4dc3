"""Drive the real ASGI application over HTTP, event by event, with Channels' ApplicationCommunicator.

Unlike a test client that collects a whole body, this sees each `http.response.body` message
as it is sent, and can disconnect mid-stream like a closing browser tab.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from channels.testing import ApplicationCommunicator

from chats.streaming import run as runs


def _application():
    from project.asgi import application

    return application


@dataclass
class Stream:
    communicator: ApplicationCommunicator
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    # Every header as sent, repeated ones (Set-Cookie) included.
    header_list: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    finished: bool = False

    async def start(self, limit: float = 20) -> Stream:
        message = await self.communicator.receive_output(limit)
        assert message["type"] == "http.response.start", message
        self.status = message["status"]
        self.header_list = [(k.decode().lower(), v.decode()) for k, v in message["headers"]]
        self.headers = dict(self.header_list)
        return self

    async def next_part(self, limit: float = 20) -> bytes:
        message = await self.communicator.receive_output(limit)
        assert message["type"] == "http.response.body", message
        part = message.get("body", b"")
        self.body += part
        if not message.get("more_body", False):
            self.finished = True
        return part

    async def read_until(self, needle: bytes, limit: float = 30) -> bytes:
        async with asyncio.timeout(limit):
            while needle not in self.body and not self.finished:
                await self.next_part(limit)
        return self.body

    async def read_all(self, limit: float = 30) -> bytes:
        async with asyncio.timeout(limit):
            while not self.finished:
                await self.next_part(limit)
        await self.communicator.wait(limit)
        return self.body

    def json(self) -> dict:
        return json.loads(self.body)

    async def disconnect(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(5)

    def events(self) -> list[dict]:
        return [
            json.loads(block[len("data: ") :])
            for block in self.body.decode().split("\n\n")
            if block.startswith("data: ")
        ]

    def text(self) -> str:
        return "".join(event["text"] for event in self.events() if event["type"] == "chunk")


async def request(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | dict | list | str | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Stream:
    if isinstance(body, (dict, list, str)) and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    path, _, query = path.partition("?")
    raw_headers = [(b"host", b"127.0.0.1"), (b"content-type", content_type.encode())]
    if body:
        # As every real client sends it: DRF reads no body without it.
        raw_headers.append((b"content-length", str(len(body)).encode()))
    if token:
        raw_headers.append((b"authorization", f"Bearer {token}".encode()))
    for name, value in (headers or {}).items():
        raw_headers.append((name.lower().encode(), value.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    communicator = ApplicationCommunicator(_application(), scope)
    await communicator.send_input({"type": "http.request", "body": body or b"", "more_body": False})
    return await Stream(communicator).start()


async def runs_finished(limit: float = 30) -> None:
    """Wait until every generation run of this process has ended."""
    tasks = [run.task for run in list(runs._runs.values()) if run.task is not None]
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=limit)
        assert not pending, "a generation run did not finish in time"
