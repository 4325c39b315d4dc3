"""Revoked access ends within 2 s, against real daphne processes, real WebSocket clients and a
real SSE client: for each kind of revocation (member removed, token revoked, user deactivated,
role lowered), a token socket, a session socket and an SSE stream of the user lose access and
are closed (code 4403 / `error` + `done`), measured from the moment the revoking request (or
ORM call) was made; an unrelated user's socket keeps receiving; the reply of a closed stream is
generated to the end and stored.

- On the in-memory layer (one daphne, as `scripts/serve`), revocations go through the product's
  own HTTP paths: the tokens page, the Django admin and the members API.
- On Redis with two daphne processes, revocations are made through the ORM in this process and
  close sockets on both daphnes.
- When the broadcast is missed (here: the in-memory layer of a daphne cannot hear this process),
  the periodic re-check still ends the access.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time

import httpx
import pytest
import websockets.sync.client
from django.test import Client
from websockets.exceptions import ConnectionClosed

from cameras.services import camera_create
from chats.models import Message
from chats.services import chat_create
from organizations.models import ApiToken, Membership
from organizations.services import api_token_create
from tests.chats.fake_openai import FakeOpenAI, reply

CLOSE_WITHIN_SECONDS = 2.0
REVOKED_CODE = 4403
PIECES = [f" piece{index}" for index in range(60)]  # 60 x 0.1 s: still streaming when revoked


class SocketWatcher:
    """A real WebSocket client reading frames on its own thread until the server closes."""

    def __init__(self, url: str, headers: dict[str, str]):
        self._exit = contextlib.ExitStack()
        self.ws = self._exit.enter_context(
            websockets.sync.client.connect(
                url, additional_headers=headers, max_size=None, open_timeout=10
            )
        )
        self.frames = 0
        self.closed_at: float | None = None
        self.code: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                self.ws.recv()
                self.frames += 1
        except ConnectionClosed as closed:
            self.closed_at = time.monotonic()
            self.code = closed.rcvd.code if closed.rcvd else None

    def wait_frames(self, count: int, timeout: float = 20) -> None:
        target = self.frames + count
        deadline = time.monotonic() + timeout
        while self.frames < target:
            assert self.closed_at is None, f"closed early with {self.code}"
            assert time.monotonic() < deadline, f"only {self.frames} frames in {timeout} s"
            time.sleep(0.02)

    def wait_closed(self, timeout: float) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        self._exit.close()
        self._thread.join(5)


class SseWatcher:
    """A real SSE client (httpx) sending a prompt and reading the reply's events until the end."""

    def __init__(self, url: str, headers: dict[str, str]):
        self.events: list[dict] = []
        self.ended_at: float | None = None
        self.message_id: int | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", url, headers=headers, json={"prompt": "hi"}) as response:
                assert response.status_code == 200, response.read()
                self.message_id = int(response.headers["X-Message-Id"])
                buffer = ""
                for text in response.iter_text():
                    buffer += text
                    while "\n\n" in buffer:
                        block, buffer = buffer.split("\n\n", 1)
                        if block.startswith("data: "):
                            self.events.append(json.loads(block[len("data: ") :]))
                            self._started.set()
        self.ended_at = time.monotonic()

    def wait_chunks(self, count: int = 3, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while sum(event["type"] == "chunk" for event in self.events) < count:
            assert self.ended_at is None, f"ended early: {self.events}"
            assert time.monotonic() < deadline, "the reply did not stream"
            time.sleep(0.02)

    def wait_ended(self, timeout: float) -> None:
        self._thread.join(timeout)


def _session_cookie(username: str, password: str) -> str:
    client = Client()
    assert client.login(username=username, password=password)
    return client.cookies["sessionid"].value


@pytest.fixture
def fake_openai():
    server = FakeOpenAI().start()
    server.script = reply(*PIECES, delay=0.1)
    yield server
    server.stop()


@pytest.fixture
def scene(django_user_model, alice, bob, organization):
    """Bob (admin of Alice's organization) with two tokens and a chat; Alice with a token."""
    Membership.objects.filter(user=bob, organization=organization).update(role="admin")
    camera = camera_create(
        organization=organization, name="Lobby", source="demo:", target_fps=10, max_width=320
    )
    bob_token, bob_raw = api_token_create(user=bob, name="revoked one")
    _, bob_other_raw = api_token_create(user=bob, name="kept one")
    _, alice_raw = api_token_create(user=alice)
    django_user_model.objects.create_superuser("root", "root@example.org", "root-password")
    return {
        "camera": camera,
        "bob_token": bob_token,
        "bob_raw": bob_raw,
        "bob_other_raw": bob_other_raw,
        "alice_raw": alice_raw,
        "chat": chat_create(user=bob, organization=organization),
    }


class Viewers:
    """Bob's token socket, second-token socket, session socket and SSE stream; Alice's socket."""

    def __init__(self, servers, scene):
        first, second = servers[0], servers[-1]
        path = scene["camera"].stream_path
        bob_session = _session_cookie("bob", "bob-password")
        self.bob_token = SocketWatcher(
            f"ws://127.0.0.1:{first.port}{path}",
            {"Authorization": f"Bearer {scene['bob_raw']}"},
        )
        self.bob_other_token = SocketWatcher(
            f"ws://127.0.0.1:{second.port}{path}",
            {"Authorization": f"Bearer {scene['bob_other_raw']}"},
        )
        self.bob_session = SocketWatcher(
            f"ws://127.0.0.1:{second.port}{path}",
            {"Cookie": f"sessionid={bob_session}", "Origin": f"http://127.0.0.1:{second.port}"},
        )
        self.alice = SocketWatcher(
            f"ws://127.0.0.1:{second.port}{path}",
            {"Authorization": f"Bearer {scene['alice_raw']}"},
        )
        self.sockets = [self.bob_token, self.bob_other_token, self.bob_session, self.alice]
        for socket in self.sockets:
            socket.wait_frames(3)
        self.bob_stream = SseWatcher(
            f"{first.url}/chats/{scene['chat'].pk}/messages",
            {"Authorization": f"Bearer {scene['bob_raw']}"},
        )
        self.bob_stream.wait_chunks()

    def close(self) -> None:
        for socket in self.sockets:
            socket.close()


def _assert_closed_in_time(viewers: Viewers, revoked_at: float, *, session_closed: bool) -> dict:
    closed = [viewers.bob_token] + ([viewers.bob_session] if session_closed else [])
    if session_closed:
        closed.append(viewers.bob_other_token)
    for socket in closed:
        socket.wait_closed(CLOSE_WITHIN_SECONDS + 3)
    viewers.bob_stream.wait_ended(CLOSE_WITHIN_SECONDS + 3)
    times = {
        "token socket": viewers.bob_token.closed_at,
        "SSE stream": viewers.bob_stream.ended_at,
    }
    if session_closed:
        times["session socket"] = viewers.bob_session.closed_at
        times["other token socket"] = viewers.bob_other_token.closed_at
    measured = {}
    for name, at in times.items():
        assert at is not None, f"the {name} was not closed"
        measured[name] = round(at - revoked_at, 3)
        assert at - revoked_at < CLOSE_WITHIN_SECONDS, (
            f"the {name} closed after {at - revoked_at:.2f} s"
        )
    for socket in closed:
        assert socket.code == REVOKED_CODE
    events = viewers.bob_stream.events
    assert [event["type"] for event in events[-2:]] == ["error", "done"]
    assert events[-2]["code"] == "access_revoked"
    assert events[-1]["resumable"] is True and events[-1]["status"] == "failed"
    # Who kept access keeps receiving, after the revocation.
    kept = [viewers.alice] + (
        [] if session_closed else [viewers.bob_session, viewers.bob_other_token]
    )
    for socket in kept:
        socket.wait_frames(5)
    print(f"measured close times: {measured}")
    return measured


def _reply_stored_complete(message_id: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        message = Message.objects.get(pk=message_id)
        if message.status != Message.Status.STREAMING:
            break
        assert time.monotonic() < deadline, "the reply never finished"
        time.sleep(0.1)
    assert message.status == Message.Status.COMPLETE
    assert message.content == "".join(PIECES)


# --- revocations through the product's HTTP paths (in-memory layer, one daphne) ---------------


class AdminSession:
    """A superuser's session against daphne, with a CSRF token of its own."""

    def __init__(self, server, username="root", password="root-password"):
        self.csrf = secrets.token_hex(16)  # 32 characters: an unmasked secret Django accepts
        self.client = httpx.Client(
            base_url=server.url,
            cookies={"sessionid": _session_cookie(username, password), "csrftoken": self.csrf},
            timeout=10,
        )

    def post(self, path: str, data: dict) -> None:
        response = self.client.post(path, data={**data, "csrfmiddlewaretoken": self.csrf})
        assert response.status_code == 302, response.text[-2000:]


def _revocation_over_http(kind: str, server, scene, bob, organization):
    """The request that revokes, ready to send (logging in beforehand is not timed)."""
    membership = Membership.objects.get(user=bob, organization=organization)
    if kind == "token revoked":
        # Bob revokes one of his tokens on his own tokens page.
        own = AdminSession(server, "bob", "bob-password")
        return lambda: own.post(f"/account/tokens/{scene['bob_token'].pk}/revoke", {})
    admin = AdminSession(server)
    if kind == "member removed":
        path, data = f"/admin/organizations/membership/{membership.pk}/delete/", {"post": "yes"}
    elif kind == "role lowered":
        path = f"/admin/organizations/membership/{membership.pk}/change/"
        data = {"user": bob.pk, "organization": organization.pk, "role": "member"}
    else:
        path = f"/admin/auth/user/{bob.pk}/change/"
        data = {
            "username": "bob",
            "email": "bob@example.org",
            "first_name": "",
            "last_name": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            # is_active left out: the checkbox is cleared.
        }
    return lambda: admin.post(path, data)


KINDS = ["member removed", "token revoked", "user deactivated", "role lowered"]


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_access_ends_within_2_s_on_the_in_memory_layer(
    kind, live_daphne, fake_openai, scene, bob, organization
):
    server = live_daphne(
        REDIS_URL="",  # the in-memory layer, whatever this run's environment says
        CAMERAS_IN_PROCESS="1",
        ASSISTANT_BACKEND="openai",
        OPENAI_BASE_URL=fake_openai.base_url,
    )
    viewers = Viewers([server], scene)
    try:
        revoke = _revocation_over_http(kind, server, scene, bob, organization)
        revoked_at = time.monotonic()  # before the request: its own time counts too
        revoke()
        _assert_closed_in_time(viewers, revoked_at, session_closed=kind != "token revoked")
    finally:
        viewers.close()
    _reply_stored_complete(viewers.bob_stream.message_id)
    _assert_revoked_in_database(kind, scene, bob, organization)


def _assert_revoked_in_database(kind, scene, bob, organization) -> None:
    # The HTTP path really made the change it stands for.
    bob.refresh_from_db()
    membership = Membership.objects.filter(user=bob, organization=organization).first()
    if kind == "member removed":
        assert membership is None
    elif kind == "role lowered":
        assert membership.role == "member"
    elif kind == "user deactivated":
        assert not bob.is_active
    else:
        assert not ApiToken.objects.filter(pk=scene["bob_token"].pk).exists()


# --- revocations through the ORM, on Redis, two daphne processes -----------------------------


def _revoke_with_the_orm(kind: str, scene, bob, organization) -> None:
    membership = Membership.objects.get(user=bob, organization=organization)
    if kind == "member removed":
        membership.delete()
    elif kind == "token revoked":
        scene["bob_token"].delete()
    elif kind == "user deactivated":
        bob.is_active = False
        bob.save()
    elif kind == "role lowered":
        membership.role = "member"
        membership.save()


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_access_ends_within_2_s_across_daphne_processes_on_redis(
    kind, own_redis, settings, live_daphne, fake_openai, scene, bob, organization
):
    # This process broadcasts through the same Redis as the daphnes.
    settings.CHANNEL_LAYERS = own_redis.channel_layers()
    settings.CACHES = own_redis.caches()
    common = {
        "REDIS_URL": own_redis.url,
        "ASSISTANT_BACKEND": "openai",
        "OPENAI_BASE_URL": fake_openai.base_url,
    }
    # One daphne captures the camera (as `runcameras` would); both serve viewers.
    servers = [live_daphne(CAMERAS_IN_PROCESS="1", **common), live_daphne(**common)]
    viewers = Viewers(servers, scene)
    try:
        revoked_at = time.monotonic()
        _revoke_with_the_orm(kind, scene, bob, organization)
        _assert_closed_in_time(viewers, revoked_at, session_closed=kind != "token revoked")
    finally:
        viewers.close()
    _reply_stored_complete(viewers.bob_stream.message_id)


def test_a_raised_role_closes_nothing(own_redis, settings, live_daphne, scene, bob, organization):
    settings.CHANNEL_LAYERS = own_redis.channel_layers()
    server = live_daphne(CAMERAS_IN_PROCESS="1", REDIS_URL=own_redis.url)
    socket = SocketWatcher(
        f"ws://127.0.0.1:{server.port}{scene['camera'].stream_path}",
        {"Authorization": f"Bearer {scene['bob_raw']}"},
    )
    try:
        socket.wait_frames(3)
        membership = Membership.objects.get(user=bob, organization=organization)
        membership.role = "owner"
        membership.save()
        time.sleep(CLOSE_WITHIN_SECONDS)
        socket.wait_frames(5)
    finally:
        socket.close()


# --- a missed broadcast: the periodic re-check ------------------------------------------------


@pytest.mark.parametrize("kind", ["member removed", "token revoked", "user deactivated"])
def test_the_periodic_recheck_ends_access_whose_broadcast_was_missed(
    kind, live_daphne, fake_openai, scene, bob, organization
):
    # The daphne's in-memory layer cannot hear a revocation made in this process: only its
    # re-check (every second here) can find it.
    server = live_daphne(
        REDIS_URL="",
        CAMERAS_IN_PROCESS="1",
        ACCESS_RECHECK_SECONDS="1",
        ASSISTANT_BACKEND="openai",
        OPENAI_BASE_URL=fake_openai.base_url,
    )
    socket = SocketWatcher(
        f"ws://127.0.0.1:{server.port}{scene['camera'].stream_path}",
        {"Authorization": f"Bearer {scene['bob_raw']}"},
    )
    try:
        socket.wait_frames(3)
        stream = SseWatcher(
            f"{server.url}/chats/{scene['chat'].pk}/messages",
            {"Authorization": f"Bearer {scene['bob_raw']}"},
        )
        stream.wait_chunks()
        # A bulk update or a queryset delete in this process: no broadcast reaches the daphne.
        if kind == "member removed":
            Membership.objects.filter(user=bob, organization=organization).delete()
        elif kind == "token revoked":
            ApiToken.objects.filter(pk=scene["bob_token"].pk).delete()
        else:
            type(bob).objects.filter(pk=bob.pk).update(is_active=False)
        revoked_at = time.monotonic()
        socket.wait_closed(10)
        stream.wait_ended(10)
        assert socket.closed_at is not None, "the re-check did not close the socket"
        assert stream.ended_at is not None, "the re-check did not end the stream"
        assert socket.code == REVOKED_CODE
        assert stream.events[-2]["code"] == "access_revoked"
        # Re-check period (1 s) plus its query: well under 3 s.
        assert socket.closed_at - revoked_at < 3.0
        assert stream.ended_at - revoked_at < 3.0
    finally:
        socket.close()
    _reply_stored_complete(stream.message_id)


@pytest.mark.parametrize("change", ["remove", "lower to viewer"])
def test_revoked_access_through_the_members_api_ends_within_2_s(
    change, live_daphne, fake_openai, scene, bob, organization
):
    server = live_daphne(
        REDIS_URL="",
        CAMERAS_IN_PROCESS="1",
        ASSISTANT_BACKEND="openai",
        OPENAI_BASE_URL=fake_openai.base_url,
    )
    viewers = Viewers([server], scene)
    member_url = f"{server.url}/api/v1/organizations/{organization.pk}/members/{bob.pk}"
    owner = {"Authorization": f"Bearer {scene['alice_raw']}"}
    try:
        with httpx.Client(timeout=10, headers=owner) as alice_api:
            revoked_at = time.monotonic()
            if change == "remove":
                assert alice_api.delete(member_url).status_code == 204
            else:
                assert alice_api.patch(member_url, json={"role": "viewer"}).status_code == 200
        _assert_closed_in_time(viewers, revoked_at, session_closed=True)
    finally:
        viewers.close()
    _reply_stored_complete(viewers.bob_stream.message_id)
