"""A WebSocket to a path outside the routes is closed with 4404, never a 500 handshake."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from organizations.services import api_token_create
from project.asgi import application
from project.websocket_fallback import NO_SUCH_ROUTE_CLOSE_CODE

pytestmark = pytest.mark.django_db(transaction=True)


async def _token_headers(user) -> list[tuple[bytes, bytes]]:
    _, raw = await sync_to_async(api_token_create)(user=user)
    return [(b"authorization", f"Bearer {raw}".encode())]


@pytest.mark.parametrize(
    "path",
    [
        "/ws/stream/" + "a" * 65,  # one character longer than a camera id may be
        "/ws/stream/not%20an%20id",
        "/ws/stream/",
        "/ws/elsewhere",
        "/",
    ],
)
async def test_an_authenticated_socket_to_an_unknown_path_is_closed_with_4404(
    alice, organization, path
):
    communicator = WebsocketCommunicator(application, path, headers=await _token_headers(alice))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": NO_SUCH_ROUTE_CLOSE_CODE}
    # The client answers the close as a browser does; the consumer then ends on its own.
    await communicator.disconnect(timeout=5)
    assert not communicator.future.cancelled(), "the consumer had to be cancelled"


async def test_an_unknown_camera_on_the_real_route_is_still_refused_at_the_handshake(
    alice, organization
):
    # The fallback only catches paths no route matches; a matching path keeps its own rules.
    communicator = WebsocketCommunicator(
        application, "/ws/stream/nosuchcamera", headers=await _token_headers(alice)
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    await communicator.disconnect()
