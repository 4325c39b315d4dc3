"""What the fan-out uses of the connection under daphne's ASGI `send`: backpressure, no Nagle
delay, and writing an already-framed WebSocket message.

daphne passes applications `send = functools.partial(server.handle_reply, protocol)`, where
`protocol` is autobahn's WebSocketServerProtocol and `protocol.transport` is a Twisted TCP
transport. Channels' session middleware wraps `send` in a bound method whose instance keeps the
original as `real_send`. Anywhere else (WebsocketCommunicator in tests, another server) these
helpers answer "unknown" and callers fall back to plain ASGI sends.

Why reach under ASGI at all:
- Backpressure. daphne's `websocket.send` has none: Twisted buffers without limit when a client
  reads slowly, so a viewer that stopped reading would make the server hold every frame. The
  fan-out reads the transport's unsent bytes (`len(dataBuffer) - offset + _tempDataLen`) and
  skips frames for that viewer while more than a frame or two wait.
- Cost per viewer. Through ASGI every viewer costs several coroutines, a UTF-8 copy of the
  frame and autobahn's framing (another copy). Server-to-client WebSocket frames are not
  masked, so the same framed bytes are valid for every viewer: the hub frames each message once
  and `transport.write`s those bytes, as `websockets.broadcast` does. autobahn writes each of its
  own frames (pings, close) with one `transport.write` too, so whole frames never interleave;
  daphne negotiates no compression, so plain frames are what the client expects.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Any

_MAX_WRAPPERS = 8
_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_FIN = 0x80


def protocol_of(send: Callable[..., Any]) -> Any | None:
    for _ in range(_MAX_WRAPPERS):
        if isinstance(send, functools.partial):
            return send.args[0] if send.args else None
        wrapper = getattr(send, "__self__", None)
        inner = getattr(wrapper, "real_send", None)
        if inner is None:
            return None
        send = inner
    return None


def transport_of(send: Callable[..., Any]) -> Any | None:
    return getattr(protocol_of(send), "transport", None)


def _unsent_bytes(transport: Any) -> int | None:
    buffered = getattr(transport, "dataBuffer", None)
    offset = getattr(transport, "offset", None)
    temp_length = getattr(transport, "_tempDataLen", None)
    if buffered is None or offset is None or temp_length is None:
        return None
    return len(buffered) - offset + temp_length


def pending_send_bytes(send: Callable[..., Any]) -> int | None:
    """Bytes written to this connection but not yet accepted by the kernel, or None if unknown."""
    transport = transport_of(send)
    return None if transport is None else _unsent_bytes(transport)


def disable_nagle(send: Callable[..., Any]) -> None:
    """Send each frame at once (TCP_NODELAY), as asyncio servers do by default.

    Twisted leaves Nagle's algorithm on, which holds the tail of a frame until the client
    acknowledges the previous one: with delayed ACKs that adds tens of milliseconds to some frames.
    """
    set_no_delay = getattr(transport_of(send), "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except (OSError, AttributeError):
            # The connection is already gone: a closed Twisted transport has no socket left
            # (seen when daphne's handshake timeout closed it while the consumer connected).
            pass


def websocket_frame(payload: bytes, *, binary: bool) -> bytes:
    """One unmasked, unfragmented server-to-client WebSocket message (RFC 6455, section 5.2)."""
    first = _FIN | (_OPCODE_BINARY if binary else _OPCODE_TEXT)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def framed_writer(send: Callable[..., Any]) -> Callable[[bytes], bool] | None:
    """A function writing framed messages straight to this connection, or None if unavailable.

    It returns False (writing nothing) once the WebSocket is no longer open. On a plain TCP
    connection with nothing queued it hands the bytes to the kernel at once, as asyncio's
    transports do, instead of queueing them for Twisted's next write pass: the first viewers
    need not wait for the frame to be queued for all the others. What the kernel does not take
    is queued with `transport.write` as usual, so the byte order is kept.
    """
    from twisted.internet.tcp import Connection as TcpConnection

    protocol = protocol_of(send)
    transport = getattr(protocol, "transport", None)
    open_state = getattr(protocol, "STATE_OPEN", None)
    if transport is None or open_state is None or not hasattr(transport, "write"):
        return None
    # Under TLS the transport is a TLS protocol over the TCP connection: only queue there.
    direct = isinstance(transport, TcpConnection)

    def write(framed: bytes) -> bool:
        if protocol.state != open_state:
            return False
        if (
            direct
            and transport.connected
            and not transport.disconnecting
            and not transport._writeDisconnected
            and _unsent_bytes(transport) == 0
        ):
            sent = transport.writeSomeData(framed)
            if not isinstance(sent, int):
                return False  # the connection is lost; Twisted notices on its own
            if sent == len(framed):
                return True
            framed = framed[sent:]
        transport.write(framed)
        return True

    return write
