"""ASGI entry point: HTTP (pages, API, SSE) and WebSockets in one application."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

import sys  # noqa: E402

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from cameras.routing import websocket_urlpatterns  # noqa: E402
from notifications.routing import websocket_urlpatterns as notifications_websockets  # noqa: E402
from organizations.ws_auth import WebSocketAuthMiddleware  # noqa: E402
from project.request_admission import RequestAdmission  # noqa: E402
from project.request_threads import RequestThreads  # noqa: E402
from project.websocket_fallback import with_unknown_path_fallback  # noqa: E402

# Django's sync work for each request (signals, sync views, sync_to_async) on a few threads
# that live as long as the process, instead of a new thread per request.
request_threads = RequestThreads(django_asgi_app, threads=settings.REQUEST_THREADS)

application = ProtocolTypeRouter(
    {
        # Bounded request handling keeps the loop (and the camera frames on it) responsive
        # when hundreds of chat prompts arrive together.
        "http": RequestAdmission(request_threads, limit=settings.REQUEST_CONCURRENCY),
        "websocket": WebSocketAuthMiddleware(
            URLRouter(with_unknown_path_fallback(websocket_urlpatterns + notifications_websockets))
        ),
    }
)

# daphne has no ASGI lifespan: background loops start on daphne's own loop once its Twisted
# reactor runs. Tests and management commands never run that reactor, so nothing starts there.
if "twisted.internet.reactor" in sys.modules:
    from chats.sweeper import start_in_process_sweeper  # noqa: E402

    # Replies are generated in daphne processes, so each one sweeps for lost ones.
    start_in_process_sweeper()
    if settings.CAMERAS_IN_PROCESS:
        # With the in-memory channel layer the capture workers must run on daphne's loop.
        from cameras.capture import start_in_process_supervisor  # noqa: E402
        from notifications.delivery import start_in_process_worker  # noqa: E402

        start_in_process_supervisor()
        # The recorder raises webhook alerts in this process: send them from here too.
        start_in_process_worker()
        # The process that records publishes its events and counts over MQTT (if MQTT_URL).
        from notifications.mqtt import start_mqtt_publisher  # noqa: E402

        start_mqtt_publisher()
