"""`ws/alerts` through the real ASGI application (auth middleware, routing, consumer), fed by the
real recorder: its flush, in a thread of its own as the flusher's, raises the alerts and the
`alerts_raised` receiver pushes them onto the channel layer (in-memory, or Redis with
REDIS_URL)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from notifications import browser
from notifications.browser import alerts_group
from notifications.consumers import ANONYMOUS_CLOSE_CODE
from notifications.models import Alert, AlertRule
from notifications.services import RaisedAlert
from organizations.models import Membership
from organizations.revocation import WEBSOCKET_CLOSE_CODE, open_access_count
from organizations.services import api_token_create, membership_add
from project.asgi import application
from tests.notifications.test_matching import T0, person, rule_make, see
from tests.own_redis import channel_layers

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://localhost"


async def _session_headers(username: str, origin: bytes = ORIGIN):
    client = Client()
    assert await sync_to_async(client.login)(username=username, password=f"{username}-password")
    return [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", origin),
    ]


async def _token_headers(user):
    _, raw = await sync_to_async(api_token_create)(user=user)
    return [(b"authorization", f"Bearer {raw}".encode())]


async def _open(headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/alerts", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected, "ws/alerts was refused"
    return communicator


async def _alert(communicator) -> dict:
    return json.loads(await communicator.receive_from(timeout=5))


async def _group_size(group: str) -> int:
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # InMemoryChannelLayer
        return len(layer.groups.get(group, {}))
    connection = layer.connection(layer.consistent_hash(group))
    return await connection.zcard(layer._group_key(group))


async def _flush_in_a_thread(recorder) -> None:
    # As the flusher does: never on the event loop, which must stay free to deliver.
    def flush() -> None:
        try:
            recorder.flush()
        finally:
            connections.close_all()  # this thread's, before the test database is dropped

    await asyncio.to_thread(flush)


async def test_a_member_gets_the_alert_of_a_person_seen_with_the_snapshot_link(
    recorder, organization, front_door
):
    await sync_to_async(rule_make)(organization, name="People", classes=["person"])
    socket = await _open(await _session_headers("bob"))
    see(recorder, front_door, T0, person(4))
    await _flush_in_a_thread(recorder)
    alert = await _alert(socket)
    assert alert["type"] == "alert"
    assert alert["rule"]["name"] == "People"
    event = alert["event"]
    assert event["camera"] == {"id": front_door.public_id, "name": "Front door"}
    assert event["label"] == "person" and event["track_id"] == 4
    assert alert["snapshot_url"] == f"/api/v1/events/{event['id']}/snapshot"
    assert alert["url"] == f"/events/{event['id']}"
    assert event["links"]["page"].endswith(f"/events/{event['id']}")
    await socket.disconnect()


async def test_another_organizations_alerts_never_reach_it(
    recorder, organization, charlie, charlie_organization, front_door, charlie_camera
):
    await sync_to_async(rule_make)(organization, name="Alice people")
    await sync_to_async(rule_make)(charlie_organization, name="Charlie people")
    alice = await _open(await _session_headers("alice"))
    charlie_socket = await _open(await _token_headers(charlie))
    see(recorder, charlie_camera, T0, person(1))
    await _flush_in_a_thread(recorder)
    assert (await _alert(charlie_socket))["event"]["camera"]["id"] == charlie_camera.public_id
    assert await alice.receive_nothing(timeout=0.5)
    see(recorder, front_door, T0 + 100, person(2))
    await _flush_in_a_thread(recorder)
    assert (await _alert(alice))["event"]["camera"]["id"] == front_door.public_id
    assert await charlie_socket.receive_nothing(timeout=0.5)
    for communicator in (alice, charlie_socket):
        await communicator.disconnect()


async def test_a_member_of_two_organizations_hears_both_and_a_viewer_gets_the_bell(
    recorder, organization, charlie_organization, front_door, charlie_camera, django_user_model
):
    dave = await sync_to_async(django_user_model.objects.create_user)(
        "dave", "dave@example.org", "dave-password"
    )
    await sync_to_async(membership_add)(organization=organization, user=dave, role="viewer")
    await sync_to_async(membership_add)(organization=charlie_organization, user=dave, role="viewer")
    await sync_to_async(rule_make)(organization)
    await sync_to_async(rule_make)(charlie_organization)
    socket = await _open(await _session_headers("dave"))
    see(recorder, front_door, T0, person(1))
    see(recorder, charlie_camera, T0, person(1))
    await _flush_in_a_thread(recorder)
    cameras = {(await _alert(socket))["event"]["camera"]["id"] for _ in range(2)}
    assert cameras == {front_door.public_id, charlie_camera.public_id}
    await socket.disconnect()


async def test_only_rules_that_notify_the_browser_are_sent(recorder, organization, front_door):
    await sync_to_async(rule_make)(organization, name="MQTT only", notify_browser=False)
    socket = await _open(await _session_headers("alice"))
    see(recorder, front_door, T0, person(1))
    await _flush_in_a_thread(recorder)
    assert await socket.receive_nothing(timeout=0.7)
    await socket.disconnect()


async def test_anonymous_is_closed_with_4401():
    communicator = WebsocketCommunicator(application, "/ws/alerts", headers=[(b"origin", ORIGIN)])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert await communicator.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": ANONYMOUS_CLOSE_CODE,
    }
    assert open_access_count() == 0


@pytest.mark.parametrize("origin", [b"http://evil.example", b"null", b""])
async def test_a_bad_origin_is_refused_like_the_camera_stream(alice, origin):
    headers = await _session_headers("alice", origin=origin)
    if not origin:
        headers = [header for header in headers if header[0] != b"origin"]
    communicator = WebsocketCommunicator(application, "/ws/alerts", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    await communicator.disconnect()


async def test_a_bad_token_is_refused(organization):
    communicator = WebsocketCommunicator(
        application, "/ws/alerts", headers=[(b"authorization", b"Bearer nope")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_it_leaves_its_groups_and_the_registry_on_disconnect(organization):
    group = alerts_group(organization.pk)
    socket = await _open(await _session_headers("alice"))
    assert await _group_size(group) == 1
    assert open_access_count() == 1
    await socket.send_to(text_data="ignored")  # one-way: nothing answered
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()
    assert await _group_size(group) == 0
    assert open_access_count() == 0


async def test_a_removed_member_is_closed_with_4403_and_hears_nothing_more(
    recorder, bob, organization, front_door
):
    await sync_to_async(rule_make)(organization)
    socket = await _open(await _token_headers(bob))
    membership = await Membership.objects.aget(user=bob, organization=organization)
    await sync_to_async(membership.delete)()
    assert await socket.receive_output(timeout=2) == {
        "type": "websocket.close",
        "code": WEBSOCKET_CLOSE_CODE,
    }
    await socket.disconnect()
    assert await _group_size(alerts_group(organization.pk)) == 0


@pytest.fixture
def hung_redis():
    """A port that accepts connections and never answers: a Redis that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_a_hanging_layer_holds_the_flusher_for_the_send_timeout_at_most_and_is_said_once(
    settings, hung_redis, caplog
):
    settings.CHANNEL_LAYERS = channel_layers(hung_redis)
    raised = RaisedAlert(
        alert=Alert(pk=1, organization_id=1, rule_id=1),
        rule=AlertRule(pk=1, notify_browser=True),
        body={"type": "alert", "event": {"id": 1}},
    )
    caplog.set_level(logging.INFO, logger="notifications.browser")
    for _ in range(2):
        started = time.monotonic()
        browser.alerts_push(None, alerts=[raised])  # in this thread, as in the flusher's
        assert time.monotonic() - started < browser.SEND_TIMEOUT_SECONDS + 1.5
    said = [record for record in caplog.records if record.name == "notifications.browser"]
    assert [record.levelno for record in said] == [logging.WARNING]
    assert "the bells load them on their next connection" in said[0].getMessage()
