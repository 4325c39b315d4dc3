"""How many bytes a WebSocket viewer has not yet taken off our hands.

daphne's `websocket.send` has no backpressure: it hands the frame to Twisted, whose transport
buffers without limit when the client reads slowly. A viewer that stopped reading would make
the server hold every frame sent to it. The fan-out asks this function before each send and
skips frames for that viewer while its transport still holds more than a frame or two.

daphne passes applications `send = functools.partial(server.handle_reply, protocol)`; the
protocol's `.transport` is a Twisted `FileDescriptor` whose unsent bytes are
`len(dataBuffer) - offset` plus the small writes still joined in `_tempDataLen`. Channels'
session middleware wraps `send` in a bound method whose instance keeps the original as
`real_send`. Anything else (WebsocketCommunicator in tests, another server) answers None:
"unknown", and the caller sends as it would without backpressure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_MAX_WRAPPERS = 8


def transport_of(send: Callable[..., Any]) -> Any | None:
    for _ in range(_MAX_WRAPPERS):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            return getattr(protocol, "transport", None)
        wrapper = getattr(send, "__self__", None)
        inner = getattr(wrapper, "real_send", None)
        if inner is None:
            return None
        send = inner
    return None


def pending_send_bytes(send: Callable[..., Any]) -> int | None:
    """Bytes written to this connection but not yet accepted by the kernel, or None if unknown."""
    transport = transport_of(send)
    if transport is None:
        return None
    buffered = getattr(transport, "dataBuffer", None)
    offset = getattr(transport, "offset", None)
    temp_length = getattr(transport, "_tempDataLen", None)
    if buffered is None or offset is None or temp_length is None:
        return None
    return len(buffered) - offset + temp_length


def disable_nagle(send: Callable[..., Any]) -> None:
    """Send each frame at once (TCP_NODELAY), as asyncio servers do by default.

    Twisted leaves Nagle's algorithm on, which holds the tail of a frame until the client
    acknowledges the previous one: with delayed ACKs that adds tens of milliseconds to some frames.
    """
    transport = transport_of(send)
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except OSError:
            pass  # the connection is already gone
