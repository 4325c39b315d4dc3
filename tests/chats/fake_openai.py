"""A real HTTP server on 127.0.0.1 that speaks the streaming chat-completions protocol.

Tests script what it answers (`script`, a list of steps), read what it received (`requests`)
and whether the client hung up (`disconnected`). `GET /models` lists `models` in the OpenAI
format, or answers `models_body` as it is (a garbled list); `status` refuses both routes. It writes a chunked `text/event-stream` from
a thread, byte by byte as scripted, so the client under test sees a real connection.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Hangup(Exception):
    pass


def chunk(text: str) -> tuple:
    return ("data", {"choices": [{"index": 0, "delta": {"content": text}}]})


def reply(*pieces: str, delay: float = 0.0) -> list[tuple]:
    """A normal answer: a role chunk, one chunk per piece (with a pause), then [DONE]."""
    steps: list[tuple] = [("data", {"choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    for piece in pieces:
        if delay:
            steps.append(("sleep", delay))
        steps.append(chunk(piece))
    steps.append(("raw", "data: [DONE]\n\n"))
    return steps


class FakeOpenAI:
    def __init__(self) -> None:
        self.script: list[tuple] = reply("Hello", " there")
        self.status = 200
        self.error_body: dict[str, Any] = {}
        self.models: list[str] = ["test-model"]
        self.models_body: bytes | None = None
        self.requests: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def send_body(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                fake.requests.append(
                    {"method": "GET", "path": self.path, "headers": dict(self.headers)}
                )
                if fake.status != 200:
                    self.send_body(fake.status, json.dumps(fake.error_body).encode())
                elif self.path.rstrip("/").endswith("/models"):
                    listing = {
                        "object": "list",
                        "data": [
                            {"id": model, "object": "model", "owned_by": "fake"}
                            for model in fake.models
                        ],
                    }
                    self.send_body(200, fake.models_body or json.dumps(listing).encode())
                else:
                    self.send_body(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                if fake.status != 200:
                    self.send_body(fake.status, json.dumps(fake.error_body).encode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for step in list(fake.script):
                        self.play(step)
                    self.write_chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    fake.disconnected.set()
                except _Hangup:
                    pass
                self.close_connection = True

            def write_chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def play(self, step: tuple) -> None:
                kind = step[0]
                if kind == "data":
                    self.write_chunk(f"data: {json.dumps(step[1])}\n\n".encode())
                elif kind == "raw":
                    self.write_chunk(step[1].encode())
                elif kind == "sleep":
                    time.sleep(step[1])
                elif kind == "until_disconnect":
                    # Keep-alive comments until the client hangs up (bounded by `step[1]` s).
                    deadline = time.monotonic() + step[1]
                    while time.monotonic() < deadline:
                        self.write_chunk(b": keep-alive\n\n")
                        time.sleep(0.05)
                elif kind == "close":
                    raise _Hangup  # end abruptly, without the final empty chunk

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
