"""A real HTTP server on 127.0.0.1 that plays an OpenAI-compatible model which uses tools.

`FakeToolModel(mode="tools")`: asked with `tools`, it streams a `count_events` call (its
arguments split over two chunks, as real servers do); asked again with the tool's result, it
streams an answer quoting the result's `count`. `mode="no_tools"`: like a server without tool
support, it answers 400 to any request carrying `tools` and otherwise streams a reply that
quotes the system prompt's first session-data line. `mode="always_tools"`: calls the tool
whenever tools are offered and not forbidden. `tool` names another tool to call (the
alerts tests call `alerts`). Every request body is kept in `requests`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SESSION_LINE_PREFIX = "- All cameras, last 24 hours:"


def _delta(delta: dict[str, Any]) -> bytes:
    return f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode()


class FakeToolModel:
    def __init__(
        self, *, mode: str, arguments: dict[str, Any] | None = None, tool: str = "count_events"
    ):
        self.mode = mode
        self.tool = tool
        self.arguments = arguments or {"class": "person"}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                if fake.mode == "no_tools" and "tools" in body:
                    self.reply_json(400, {"error": {"message": "tools are not supported"}})
                elif fake.mode == "refuse_key":
                    self.reply_json(401, {"error": {"message": "bad key"}})
                else:
                    self.stream(fake.events_for(body))

            def reply_json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def stream(self, events: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in [*events, b"data: [DONE]\n\n", b""]:
                    self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                    self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events_for(self, body: dict[str, Any]) -> list[bytes]:
        messages = body["messages"]
        results = [m for m in messages if m["role"] == "tool"]
        keeps_calling = self.mode == "always_tools" and body.get("tool_choice") != "none"
        if results and not keeps_calling:
            count = json.loads(results[-1]["content"]).get("count")
            return [_delta({"content": f"There were {count} "}), _delta({"content": "events."})]
        if "tools" in body:
            arguments = json.dumps(self.arguments)
            middle = len(arguments) // 2
            return [
                _delta({"role": "assistant"}),
                _delta(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {
                                    "name": self.tool,
                                    "arguments": arguments[:middle],
                                },
                            }
                        ]
                    }
                ),
                _delta(
                    {"tool_calls": [{"index": 0, "function": {"arguments": arguments[middle:]}}]}
                ),
            ]
        system = messages[0]["content"]
        line = next((row for row in system.splitlines() if row.startswith(SESSION_LINE_PREFIX)), "")
        return [_delta({"content": f"From the summary: {line}"})]

    def start(self) -> FakeToolModel:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
