"""WebSocket routes; project/asgi.py wraps them in organizations.ws_auth."""

from __future__ import annotations

from django.urls import re_path

from cameras.consumers import StreamConsumer

websocket_urlpatterns = [
    # The seed's URL has no trailing slash; accept one too.
    re_path(r"^ws/stream/(?P<camera_id>[A-Za-z0-9_-]{1,64})/?$", StreamConsumer.as_asgi()),
]
