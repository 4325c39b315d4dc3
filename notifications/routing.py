"""WebSocket routes of the notifications app; project/asgi.py adds them to the camera's."""

from __future__ import annotations

from django.urls import re_path

from notifications.consumers import AlertsConsumer

websocket_urlpatterns = [
    re_path(r"^ws/alerts/?$", AlertsConsumer.as_asgi()),
]
