"""The reply streaming protocol in one place: the channel-layer groups of a reply, the events
a run publishes on them, and the Server-Sent Events framing clients read.

Between processes (channel layer):
- group `message_<id>`: the run publishes `{"type": DELTA, "at": <offset>, "text": ...}` for
  each new piece of text (offsets count characters, Unicode code points) and, after storing the
  final text and status, `{"type": END, "status": ..., "error": ...}`;
- group `message_<id>_control`: anyone publishes `{"type": STOP}`; only the run listens.

To clients (SSE, the seed's framing byte for byte): `data: {"type": "chunk", "text": "..."}`,
`{"type": "error", "message": ...}` before `done` when the reply failed, and a final
`data: {"type": "done", ...}`, each followed by a blank line; `: keep-alive` comments while
the backend is silent.
"""

from __future__ import annotations

import json
from typing import Any

# Layer events.
DELTA = "chat.delta"
END = "chat.end"
STOP = "chat.stop"

# A run writes its text this often while it grows, and at least every HEARTBEAT_INTERVAL while
# the backend is silent: that write is the heartbeat stale expiry looks at.
FLUSH_INTERVAL = 0.25
HEARTBEAT_INTERVAL = 5.0

KEEP_ALIVE = b": keep-alive\n\n"


def message_group(message_id: int) -> str:
    return f"message_{message_id}"


def control_group(message_id: int) -> str:
    return f"message_{message_id}_control"


def sse_event(payload: dict[str, Any]) -> bytes:
    # Default separators, so the bytes read exactly like the seed's examples.
    return f"data: {json.dumps(payload)}\n\n".encode()


def sse_chunk(text: str) -> bytes:
    return sse_event({"type": "chunk", "text": text})
