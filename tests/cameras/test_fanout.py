"""The per-viewer latest-frame slot: a congested viewer skips to the newest frame."""

from __future__ import annotations

import asyncio

from cameras.fanout import Outgoing, Viewer
from cameras.publishing import PublishedFrame


def frame(timestamp: int) -> Outgoing:
    return Outgoing(
        PublishedFrame(
            camera_id="cam", timestamp=timestamp, detections=None, text="x" * 1000, binary=b""
        )
    )


class Connection:
    """Records what was sent; `buffered` plays the transport's unsent bytes."""

    def __init__(self):
        self.sent: list[int] = []
        self.buffered: int | None = 0

    async def send(self, item: PublishedFrame) -> None:
        self.sent.append(item.timestamp)


async def test_a_free_viewer_gets_every_frame_at_once():
    connection = Connection()
    viewer = Viewer(
        send_frame=connection.send, pending_bytes=lambda: connection.buffered, binary=False
    )
    for timestamp in range(1, 6):
        await viewer.offer(frame(timestamp))
    assert connection.sent == [1, 2, 3, 4, 5]


async def test_a_congested_viewer_skips_to_the_newest_frame_once_drained():
    connection = Connection()
    viewer = Viewer(
        send_frame=connection.send, pending_bytes=lambda: connection.buffered, binary=False
    )
    await viewer.offer(frame(1))
    connection.buffered = 10_000  # more than two frames still unsent
    for timestamp in range(2, 30):
        await viewer.offer(frame(timestamp))
    await asyncio.sleep(0.05)
    assert connection.sent == [1]
    connection.buffered = 0
    await asyncio.sleep(0.05)
    assert connection.sent == [1, 29]
    viewer.close()


async def test_an_unknown_buffer_never_blocks_and_old_frames_are_never_sent():
    connection = Connection()
    connection.buffered = None  # e.g. WebsocketCommunicator: no transport to ask
    viewer = Viewer(
        send_frame=connection.send, pending_bytes=lambda: connection.buffered, binary=False
    )
    await viewer.offer(frame(5))
    await viewer.offer(frame(3))
    await viewer.offer(frame(6))
    assert connection.sent == [5, 6]


def test_websocket_frames_use_the_right_length_encoding():
    from cameras.transport import websocket_frame

    assert websocket_frame(b"x" * 125, binary=False)[:2] == bytes([0x81, 125])
    assert websocket_frame(b"x" * 126, binary=True)[:4] == bytes([0x82, 126, 0, 126])
    big = websocket_frame(b"x" * 70_000, binary=False)
    assert big[:2] == bytes([0x81, 127])
    assert int.from_bytes(big[2:10], "big") == 70_000
    assert len(big) == 10 + 70_000
