"""The middleware stack runs async views on the event loop, and static files are still served.

A sync-only middleware anywhere in MIDDLEWARE makes Django adapt the handler: every request,
the SSE streams too, then goes to a worker thread and back to the loop (WhiteNoise did that).
"""

from __future__ import annotations

import logging
import threading

import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path
from django.utils.module_loading import import_string


async def loop_thread_view(request):
    return JsonResponse({"thread": threading.get_ident()})


urlpatterns = [path("loop-thread", loop_thread_view)]


def test_every_middleware_is_async_capable():
    sync_only = [
        name
        for name in settings.MIDDLEWARE
        if not getattr(import_string(name), "async_capable", False)
    ]
    assert sync_only == []


def test_the_async_handler_is_not_adapted_to_sync_for_any_middleware(caplog):
    # Django logs "Asynchronous handler adapted for middleware ..." on each adaptation.
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler().load_middleware(is_async=True)
    adapted = [record.getMessage() for record in caplog.records if "adapted" in record.getMessage()]
    assert adapted == []


@override_settings(ROOT_URLCONF=__name__)
async def test_an_async_view_runs_on_the_event_loop_thread(async_client):
    response = await async_client.get("/loop-thread")
    assert response.status_code == 200
    assert response.json()["thread"] == threading.get_ident()


@pytest.mark.parametrize("method", ["get", "head"])
def test_static_files_are_served_with_caching_headers(client, method):
    response = getattr(client, method)("/static/css/site.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert response["Cache-Control"] == "max-age=60, public"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Last-Modified" in response and "ETag" in response


def test_a_static_file_not_modified_since_its_etag_answers_304(client):
    etag = client.get("/static/css/site.css")["ETag"]
    assert client.get("/static/css/site.css", HTTP_IF_NONE_MATCH=etag).status_code == 304


async def test_static_files_are_served_to_async_requests(async_client):
    response = await async_client.get("/static/js/camera_grid.js")
    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    body = b"".join([part async for part in response.streaming_content])
    assert body == (settings.BASE_DIR / "static/js/camera_grid.js").read_bytes()


def test_a_missing_static_file_is_404(client):
    assert client.get("/static/css/no-such-file.css").status_code == 404
