"""Requests through the real ASGI application, with Django's middlewares running their hooks on
the loop (project/inline_middleware.py) and requests on long-lived threads
(project/request_threads.py): sessions, CSRF and messages behave as with Django's own, and no
thread is started per request."""

from __future__ import annotations

import re
import threading
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async

from chats.models import Chat
from chats.services import chat_create
from project.inline_middleware import INLINE_BODY_MAX_BYTES
from tests.chats.asgi_http import Stream, request

pytestmark = pytest.mark.django_db(transaction=True)


class Browser:
    """Keeps cookies between ASGI requests and sends forms with the CSRF token, as a browser does."""

    def __init__(self):
        self.cookies: dict[str, str] = {}

    async def go(self, method: str, path: str, form: dict | None = None, *, token: bool = True):
        headers = {"origin": "http://127.0.0.1", "referer": "http://127.0.0.1/"}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        body = None
        if form is not None:
            if token:
                form = {**form, "csrfmiddlewaretoken": self.cookies["csrftoken"]}
            body = urlencode(form).encode()
        stream = await request(
            method,
            path,
            body=body,
            headers=headers,
            content_type="application/x-www-form-urlencoded",
        )
        await stream.read_all()
        self._keep_cookies(stream)
        return stream

    def _keep_cookies(self, stream: Stream) -> None:
        for name, value in stream.header_list:
            if name == "set-cookie":
                for cookie_name, morsel in SimpleCookie(value).items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(cookie_name, None)
                    else:
                        self.cookies[cookie_name] = morsel.value


async def _logged_in(username: str, password: str) -> Browser:
    browser = Browser()
    await browser.go("GET", "/login/")  # sets the CSRF cookie
    logged_in = await browser.go("POST", "/login/", {"username": username, "password": password})
    assert logged_in.status == 302, logged_in.body[:500]
    assert "sessionid" in browser.cookies  # the session was saved (a thread, not the loop)
    return browser


async def test_a_session_made_over_asgi_logs_the_browser_in(alice):
    browser = await _logged_in("alice", "alice-password")
    chats = await browser.go("GET", "/chats/")
    assert chats.status == 200
    assert b"alice" in chats.body


async def test_a_form_without_its_csrf_token_is_refused(alice, organization):
    chat = await sync_to_async(chat_create)(user=alice, organization=organization)
    browser = await _logged_in("alice", "alice-password")
    refused = await browser.go("POST", f"/chats/{chat.pk}/rename", {"title": "Night"}, token=False)
    assert refused.status == 403
    assert (await Chat.objects.aget(pk=chat.pk)).title != "Night"


async def test_a_form_with_its_token_is_accepted_and_its_message_shown(alice, organization):
    chat = await sync_to_async(chat_create)(user=alice, organization=organization)
    browser = await _logged_in("alice", "alice-password")
    renamed = await browser.go("POST", f"/chats/{chat.pk}/rename", {"title": ""})
    assert renamed.status == 302
    # The view added an error message: it went into the session (a thread) and shows once.
    page = await browser.go("GET", f"/chats/{chat.pk}/")
    assert re.search(rb"title must not be empty|must not be empty", page.body, re.IGNORECASE)
    again = await browser.go("GET", f"/chats/{chat.pk}/")
    assert not re.search(rb"must not be empty", again.body, re.IGNORECASE)


async def test_a_large_form_is_csrf_checked_too(alice, organization):
    # Over INLINE_BODY_MAX_BYTES the token is looked for in a thread: with and without it.
    chat = await sync_to_async(chat_create)(user=alice, organization=organization)
    browser = await _logged_in("alice", "alice-password")
    padding = "x" * (INLINE_BODY_MAX_BYTES + 1024)
    refused = await browser.go(
        "POST", f"/chats/{chat.pk}/rename", {"title": "Big", "padding": padding}, token=False
    )
    assert refused.status == 403
    accepted = await browser.go(
        "POST", f"/chats/{chat.pk}/rename", {"title": "Big", "padding": padding}
    )
    assert accepted.status == 302
    assert (await Chat.objects.aget(pk=chat.pk)).title == "Big"


async def test_no_thread_is_started_per_request(alice, monkeypatch):
    browser = await _logged_in("alice", "alice-password")
    await browser.go("GET", "/chats/")  # the request threads exist from here on
    started = []
    original_start = threading.Thread.start

    def counting_start(thread):
        started.append(thread.name)
        return original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(20):
        page = await browser.go("GET", "/chats/")
        assert page.status == 200
    # Django alone starts two per request (the request's thread and one to join it).
    assert started == []
