"""The reply streaming protocol in one place: the channel-layer groups of a reply, the events
a run publishes on them, and the Server-Sent Events framing clients read.

In the run's own process a listener takes the text straight from the run (`RunFollower`): the
reply that answers a prompt is always followed that way. Between processes (channel layer):
- group `message_<id>_control`: only the run listens. Anyone publishes `{"type": STOP}`; a
  listener in another process publishes `{"type": FOLLOW, "at": <offset>}` (offsets count
  characters, Unicode code points) once it has joined the reply's group, and again after each
  second of silence, so a lost one costs a second, not the stream;
- group `message_<id>`: once followed from another process, the run publishes
  `{"type": DELTA, "at": <offset>, "text": ...}` for the text from the asker's offset on and
  each new piece after it; and always, after storing the final text and status,
  `{"type": END, "status": ..., "error": ...}`.

To clients (SSE, the seed's framing byte for byte): `data: {"type": "chunk", "text": "..."}`,
`{"type": "error", "message": ...}` before `done` when the reply failed, and a final
`data: {"type": "done", ...}`, each followed by a blank line; `: keep-alive` comments while
the backend is silent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chats.models import Message

# Layer events.
DELTA = "chat.delta"
END = "chat.end"
STOP = "chat.stop"
FOLLOW = "chat.follow"

# A run writes its text this often while it grows, and at least every HEARTBEAT_INTERVAL while
# the backend is silent: that write is the heartbeat stale expiry looks at.
FLUSH_INTERVAL = 0.25
HEARTBEAT_INTERVAL = 5.0

KEEP_ALIVE = b": keep-alive\n\n"


@dataclass(frozen=True)
class StoredReply:
    """A reply as stored: what a listener ends its stream with (`html` once finished)."""

    content: str
    status: str
    error: str
    html: str = ""

    @property
    def finished(self) -> bool:
        return self.status != Message.Status.STREAMING


def message_group(message_id: int) -> str:
    return f"message_{message_id}"


def control_group(message_id: int) -> str:
    return f"message_{message_id}_control"


def sse_event(payload: dict[str, Any]) -> bytes:
    # Default separators, so the bytes read exactly like the seed's examples.
    return f"data: {json.dumps(payload)}\n\n".encode()


def sse_chunk(text: str) -> bytes:
    return sse_event({"type": "chunk", "text": text})
