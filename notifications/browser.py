"""Alerts live in the browser: the `alerts_raised` receiver that tells the bell's WebSockets.

Each alert of a rule with `notify_browser` becomes one small message to the channel-layer group
`alerts_org_<organization pk>`, which every open `/ws/alerts` socket of a member of that
organization has joined (`notifications.consumers`). A message lost (the layer away, no socket
open) costs nothing lasting: the bell loads the latest alerts from `/api/v1/alerts` whenever it
connects again.

The receiver runs in the recorder's flusher thread, after the commit, never on the event loop.
How it reaches the layer depends on the layer, as for camera frames (cameras/publishing.py):

- channels-redis: any thread may send, through `async_to_sync` (bounded by SEND_TIMEOUT_SECONDS,
  so a hanging Redis holds the flusher that long at most);
- the in-memory layer lives on the loop of the process's server: the send is handed to that
  loop (the one the bell sockets of this process run on, registered by them) and not waited
  for. With no bell socket open in the process, nobody could hear it, so nothing is sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from notifications.services import RaisedAlert
from project.channel_layer import group_send_or_drop
from project.contained import ContainedFailures

logger = logging.getLogger(__name__)

ALERT_MESSAGE_TYPE = "alert.raised"
SEND_TIMEOUT_SECONDS = 2.0

_failures = ContainedFailures(
    what="Telling the browsers of new alerts",
    logger=logger,
    failed_message="%(what)s failed; the bells load them on their next connection",
)

# The event loop the in-memory layer lives on in this process: the one its bell sockets run on.
_server_loop: asyncio.AbstractEventLoop | None = None


def alerts_group(organization_pk: int) -> str:
    return f"alerts_org_{organization_pk}"


def server_loop_register(loop: asyncio.AbstractEventLoop) -> None:
    """Called by each bell socket as it connects (on the loop that owns the layer)."""
    global _server_loop
    _server_loop = loop


def browser_alert(body: dict[str, Any]) -> dict[str, Any]:
    """The alert JSON (notifications.payloads) with the two links the page itself follows:
    relative, so that the browser loads them with its session whatever PUBLIC_URL says."""
    event_pk = body["event"]["id"]
    return {
        **body,
        "snapshot_url": f"/api/v1/events/{event_pk}/snapshot",
        "url": f"/events/{event_pk}",
    }


async def _send_all(layer, messages: list[tuple[str, dict[str, Any]]]) -> None:
    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
        for group, message in messages:
            await group_send_or_drop(layer, group, message, where="alerts")


def _sent(future: concurrent.futures.Future) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is None:
        _failures.succeeded()
    elif isinstance(error, Exception):
        _failures.failed(error)


def alerts_push(sender, *, alerts: list[RaisedAlert], **kwargs) -> None:
    """`alerts_raised` receiver: one message per browser alert to its organization's group."""
    messages = [
        (
            alerts_group(alert.organization_pk),
            {"type": ALERT_MESSAGE_TYPE, "alert": browser_alert(alert.body)},
        )
        for alert in alerts
        if alert.notify_browser
    ]
    if not messages:
        return
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer):
            loop = _server_loop
            if loop is None or loop.is_closed():
                return  # no bell socket was ever open in this process: nobody to tell
            asyncio.run_coroutine_threadsafe(_send_all(layer, messages), loop).add_done_callback(
                _sent
            )
            return
        async_to_sync(_send_all)(layer, messages)
    except Exception as error:
        _failures.failed(error)
    else:
        _failures.succeeded()
