"""The last WebSocket route: any path the routes do not know is closed with code 4404.

Without it Channels' URLRouter raises ValueError("No route found") for such a path and the
server answers the handshake with a 500. Accepting and then closing gives the client an
application close code it can act on (4404, after HTTP's 404); nothing else is ever sent.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

NO_SUCH_ROUTE_CLOSE_CODE = 4404


class UnknownPathConsumer(AsyncWebsocketConsumer):
    # No channel layer: this socket never joins a group, so it should not hold a layer channel
    # (and a receive on Redis) open for a path that does not exist.
    channel_layer_alias = "no layer for unknown paths"

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=NO_SUCH_ROUTE_CLOSE_CODE)


def with_unknown_path_fallback(urlpatterns: list) -> list:
    """`urlpatterns` followed by the route that closes every other path with 4404."""
    return [*urlpatterns, re_path(r"", UnknownPathConsumer.as_asgi())]
