"""Which revocations end which sockets, through the real ASGI application in this process (the
in-memory layer): narrowed to the organization, the token or the session that lost access.
Timings against real daphne processes are in test_revocation_live.py."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from cameras.services import camera_create
from chats.models import Message
from chats.services import chat_create
from chats.streaming.follow import ACCESS_REVOKED
from organizations.models import Membership
from organizations.revocation import WEBSOCKET_CLOSE_CODE, open_access_count
from organizations.services import api_token_create, membership_add
from project.asgi import application
from tests.chats.asgi_http import request, runs_finished

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(camera, headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, camera.stream_path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def _token(user):
    token, raw = await sync_to_async(api_token_create)(user=user)
    return token, [(b"authorization", f"Bearer {raw}".encode())]


async def _session(username: str):
    client = Client()
    await sync_to_async(client.login)(username=username, password=f"{username}-password")
    headers = [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
    ]
    return client, headers


async def _closed_for_revocation(communicator: WebsocketCommunicator) -> None:
    output = await communicator.receive_output(timeout=2)
    assert output == {"type": "websocket.close", "code": WEBSOCKET_CLOSE_CODE}
    # What daphne then tells the consumer: it leaves the hub and the registry.
    await communicator.disconnect()


async def _still_open(communicator: WebsocketCommunicator) -> None:
    assert await communicator.receive_nothing(timeout=0.5)


@pytest.fixture
def cameras(organization, charlie_organization, bob):
    # Bob also belongs to Charlie's organization: losing one must not end the other.
    membership_add(organization=charlie_organization, user=bob, role="member")
    return (
        camera_create(organization=organization, name="Alice's", source="push:"),
        camera_create(organization=charlie_organization, name="Charlie's", source="push:"),
    )


async def test_a_removed_member_loses_that_organization_only(bob, organization, cameras):
    alice_camera, charlie_camera = cameras
    _, headers = await _token(bob)
    in_alice = await _open(alice_camera, headers)
    in_charlie = await _open(charlie_camera, headers)
    membership = await Membership.objects.aget(user=bob, organization=organization)
    await sync_to_async(membership.delete)()
    await _closed_for_revocation(in_alice)
    await _still_open(in_charlie)
    await in_charlie.disconnect()


async def test_a_revoked_token_closes_its_sockets_not_the_session_or_other_tokens(bob, cameras):
    camera, _ = cameras
    revoked, revoked_headers = await _token(bob)
    _, other_headers = await _token(bob)
    _, session_headers = await _session("bob")
    by_revoked = await _open(camera, revoked_headers)
    by_other = await _open(camera, other_headers)
    by_session = await _open(camera, session_headers)
    await sync_to_async(revoked.delete)()
    await _closed_for_revocation(by_revoked)
    await _still_open(by_other)
    await _still_open(by_session)
    for communicator in (by_other, by_session):
        await communicator.disconnect()


async def test_logging_out_closes_that_session_s_sockets_only(bob, cameras):
    camera, _ = cameras
    client, headers = await _session("bob")
    _, other_session_headers = await _session("bob")
    _, token_headers = await _token(bob)
    logged_out = await _open(camera, headers)
    other_session = await _open(camera, other_session_headers)
    by_token = await _open(camera, token_headers)
    response = await sync_to_async(client.post)("/logout/")
    assert response.status_code == 302
    await _closed_for_revocation(logged_out)
    await _still_open(other_session)
    await _still_open(by_token)
    for communicator in (other_session, by_token):
        await communicator.disconnect()


async def test_a_lowered_role_closes_and_a_raised_one_does_not(bob, organization, cameras):
    camera, _ = cameras
    _, headers = await _token(bob)
    socket = await _open(camera, headers)
    membership = await Membership.objects.aget(user=bob, organization=organization)
    membership.role = "admin"
    await sync_to_async(membership.save)()
    await _still_open(socket)
    membership.role = "member"
    await sync_to_async(membership.save)()
    await _closed_for_revocation(socket)


async def test_a_deactivated_user_loses_every_socket(bob, alice, cameras):
    alice_camera, charlie_camera = cameras
    _, headers = await _token(bob)
    _, session_headers = await _session("bob")
    _, alice_headers = await _token(alice)
    sockets = [
        await _open(alice_camera, headers),
        await _open(charlie_camera, headers),
        await _open(alice_camera, session_headers),
    ]
    unrelated = await _open(alice_camera, alice_headers)
    bob.is_active = False
    await sync_to_async(bob.save)()
    for socket in sockets:
        await _closed_for_revocation(socket)
    await _still_open(unrelated)
    await unrelated.disconnect()


async def test_a_socket_that_closes_leaves_the_registry(bob, cameras):
    camera, _ = cameras
    _, headers = await _token(bob)
    socket = await _open(camera, headers)
    assert open_access_count() == 1
    await socket.disconnect()
    for _ in range(100):
        if open_access_count() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the closed socket stayed registered")


async def test_a_refused_handshake_leaves_nothing_registered(charlie, cameras):
    alice_camera, _ = cameras
    _, headers = await _token(charlie)
    communicator = WebsocketCommunicator(application, alice_camera.stream_path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    assert open_access_count() == 0


async def test_every_closed_socket_leaves_the_registry(bob, organization, cameras):
    camera, _ = cameras
    _, headers = await _token(bob)
    sockets = [await _open(camera, headers) for _ in range(3)]
    assert open_access_count() == 3
    membership = await Membership.objects.aget(user=bob, organization=organization)
    await sync_to_async(membership.delete)()
    for socket in sockets:
        await _closed_for_revocation(socket)
    assert open_access_count() == 0


async def test_a_revoked_token_ends_its_sse_stream_while_a_session_stream_reads_to_the_end(
    bob, organization, settings
):
    settings.ASSISTANT_BACKEND, settings.ASSISTANT_BUILTIN_DELAY_MS = "builtin", 40
    chat = await sync_to_async(chat_create)(user=bob, organization=organization)
    token, raw = await sync_to_async(api_token_create)(user=bob)
    by_token = await request("POST", f"/chats/{chat.pk}/messages", token=raw, body={"prompt": "hi"})
    message_id = int(by_token.headers["x-message-id"])
    _, session_headers = await _session("bob")
    by_session = await request(
        "GET",
        f"/chats/{chat.pk}/messages/{message_id}/stream",
        headers={"cookie": session_headers[0][1].decode()},
    )
    assert by_session.status == 200
    await by_token.read_until(b'"chunk"')
    await sync_to_async(token.delete)()
    await by_token.read_all(limit=2)
    assert by_token.events()[-2] == {
        "type": "error",
        "message": ACCESS_REVOKED["message"],
        "code": "access_revoked",
    }
    assert by_token.events()[-1]["resumable"] is True
    # The session's stream, and the reply, go on to the end.
    await by_session.read_all()
    await runs_finished()
    assert by_session.events()[-1]["status"] == "complete"
    reply = await Message.objects.aget(pk=message_id)
    assert reply.status == "complete" and by_session.text() == reply.content


async def test_a_handshake_whose_camera_lookup_fails_leaves_nothing_registered(
    bob, cameras, monkeypatch
):
    # The database going away during the handshake: Channels sends no disconnect to a consumer
    # whose connect raised, so connect itself must release what it registered.
    from django.db import OperationalError

    def database_away(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("cameras.consumers.camera_get_for_user", database_away)
    camera, _ = cameras
    _, headers = await _token(bob)
    communicator = WebsocketCommunicator(application, camera.stream_path, headers=headers)
    with pytest.raises(OperationalError):
        await communicator.connect(timeout=5)
    assert open_access_count() == 0


async def test_a_removal_committed_just_after_the_stream_s_access_check_still_ends_it(
    bob, organization, monkeypatch
):
    # The stream registers before the view checks access, so a revocation committed right
    # after the check (here: by the check itself, once it has answered) reaches it at once,
    # not at the periodic re-check 30 s later.
    import chats.views
    from chats.selectors import message_get_for_user

    chat = await sync_to_async(chat_create)(user=bob, organization=organization)
    reply = await Message.objects.acreate(
        chat=chat, role="assistant", content="Half a", status="streaming"
    )
    membership = await Membership.objects.aget(user=bob, organization=organization)

    def check_then_remove(**kwargs):
        found = message_get_for_user(**kwargs)
        membership.delete()
        return found

    monkeypatch.setattr(chats.views, "message_get_for_user", check_then_remove)
    _, raw = await sync_to_async(api_token_create)(user=bob)
    stream = await request("GET", f"/chats/{chat.pk}/messages/{reply.pk}/stream", token=raw)
    assert stream.status == 200
    await stream.read_all(limit=2)
    assert stream.events()[-2]["code"] == "access_revoked"
    assert open_access_count() == 0


async def test_a_password_change_closes_the_user_s_session_sockets_not_tokens(bob, alice, cameras):
    camera, _ = cameras
    _, session_headers = await _session("bob")
    _, other_session_headers = await _session("bob")
    _, token_headers = await _token(bob)
    _, alice_headers = await _session("alice")
    by_session = await _open(camera, session_headers)
    by_other_session = await _open(camera, other_session_headers)
    by_token = await _open(camera, token_headers)
    alice_socket = await _open(camera, alice_headers)
    bob.set_password("a-new-password")
    await sync_to_async(bob.save)()
    await _closed_for_revocation(by_session)
    await _closed_for_revocation(by_other_session)
    await _still_open(by_token)
    await _still_open(alice_socket)
    for communicator in (by_token, alice_socket):
        await communicator.disconnect()


async def test_the_recheck_closes_sockets_of_deleted_sessions_and_changed_passwords(
    bob, alice, cameras, settings
):
    # Neither sends a signal: a session flushed or deleted elsewhere, a password written
    # straight to the table. The periodic re-check compares with the database.
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.models import Session

    settings.ACCESS_RECHECK_SECONDS = 0.3
    camera, _ = cameras
    client, session_headers = await _session("bob")
    _, alice_headers = await _session("alice")
    _, token_headers = await _token(alice)
    by_session = await _open(camera, session_headers)
    alice_by_session = await _open(camera, alice_headers)
    alice_by_token = await _open(camera, token_headers)
    await Session.objects.filter(session_key=client.session.session_key).adelete()
    await _closed_for_revocation(by_session)
    await _still_open(alice_by_session)
    await type(alice).objects.filter(pk=alice.pk).aupdate(password=make_password("changed"))
    await _closed_for_revocation(alice_by_session)
    await _still_open(alice_by_token)
    await alice_by_token.disconnect()
