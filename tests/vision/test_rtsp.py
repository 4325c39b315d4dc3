"""RTSP through the product's open_source and the real OpenCV/FFmpeg, against a small RTSP server
on loopback that answers OPTIONS, DESCRIBE (an SDP with one MJPEG track), SETUP (interleaved over
the TCP connection) and PLAY, and records what it was asked.

It sends no media: a source that got through PLAY opens, which is how far the policy's FFmpeg
options could stop it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cameras.vision.sources import SourceError, open_source


class FakeRtspServer:
    """Answers each RTSP request on its own thread; `redirect_to` makes DESCRIBE answer 302."""

    def __init__(self, host: str, redirect_to: str | None = None) -> None:
        self.listener = socket.socket()
        self.listener.bind((host, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.redirect_to = redirect_to
        self.requests: list[str] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        buffer = b""
        with connection:
            try:
                while chunk := connection.recv(4096):
                    buffer += chunk
                    while b"\r\n\r\n" in buffer:
                        head, buffer = buffer.split(b"\r\n\r\n", 1)
                        connection.sendall(self._answer(head.decode("latin-1")))
            except OSError:
                return

    def _answer(self, head: str) -> bytes:
        lines = head.split("\r\n")
        self.requests.append(lines[0])
        method, url = lines[0].split(" ")[:2]
        cseq = next(
            line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("cseq")
        )
        headers = [f"CSeq: {cseq}"]
        body = ""
        if method == "OPTIONS":
            headers.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN")
        elif method == "DESCRIBE" and self.redirect_to:
            return f"RTSP/1.0 302 Moved\r\nCSeq: {cseq}\r\nLocation: {self.redirect_to}\r\n\r\n".encode()
        elif method == "DESCRIBE":
            body = (
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                "m=video 0 RTP/AVP 26\r\na=control:track1\r\n"
            )
            headers += [
                f"Content-Base: {url.rstrip('/')}/",
                "Content-Type: application/sdp",
                f"Content-Length: {len(body)}",
            ]
        elif method == "SETUP":
            headers += ["Session: 4711", "Transport: RTP/AVP/TCP;unicast;interleaved=0-1"]
        else:
            headers.append("Session: 4711")
        return ("RTSP/1.0 200 OK\r\n" + "\r\n".join(headers) + "\r\n\r\n" + body).encode()

    def methods(self) -> list[str]:
        return [request.split(" ")[0] for request in self.requests]

    def close(self) -> None:
        self.listener.close()


@contextmanager
def rtsp_server(host: str = "127.0.0.1", **kwargs) -> Iterator[FakeRtspServer]:
    server = FakeRtspServer(host, **kwargs)
    try:
        yield server
    finally:
        server.close()


def test_an_rtsp_camera_is_set_up_and_played(loopback_cameras_allowed):
    # The policy's protocol whitelist leaves `rtsp` out: FFmpeg must still get through the whole
    # handshake (OPTIONS, DESCRIBE, SETUP, PLAY) to the checked address.
    with rtsp_server() as camera:
        source = open_source(f"rtsp://admin:S3CRET@127.0.0.1:{camera.port}/live", read_timeout=2)
        try:
            assert camera.methods()[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
            assert source.description == f"rtsp://admin:***@127.0.0.1:{camera.port}/live"
        finally:
            source.close()


def test_an_rtsp_redirect_is_not_followed(loopback_cameras_allowed):
    # 127.0.0.2 is loopback too but not in the allowed networks: were FFmpeg to follow the 302
    # (max_redirects covers only HTTP), it would reach an address the policy never checked.
    with rtsp_server("127.0.0.2") as elsewhere:
        target = f"rtsp://127.0.0.2:{elsewhere.port}/live"
        with rtsp_server(redirect_to=target) as camera:
            started = time.monotonic()
            with pytest.raises(SourceError) as raised:
                open_source(f"rtsp://127.0.0.1:{camera.port}/live", read_timeout=2)
            assert time.monotonic() - started < 10
            assert camera.methods() == ["OPTIONS", "DESCRIBE"]
    assert elsewhere.connections == 0
    assert "RTSP redirects are not followed" in str(raised.value)
