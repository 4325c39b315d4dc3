"""cameras.transport on a real Twisted TCP transport, the kind daphne hands the consumer."""

from __future__ import annotations

import functools
import socket
import types

import pytest
from twisted.internet import error, protocol, reactor, tcp
from twisted.python.failure import Failure

from cameras.transport import disable_nagle


@pytest.fixture
def twisted_connection():
    """A connected TCP socket wrapped in Twisted's server transport, and its protocol."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, address = listener.accept()
    web_socket = protocol.Protocol()
    # Only the listening port's number is read from the port object.
    port = types.SimpleNamespace(_realPortNumber=listener.getsockname()[1])
    web_socket.transport = tcp.Server(accepted, web_socket, address, port, 1, reactor)
    yield web_socket, accepted
    client.close()
    listener.close()
    accepted.close()


def daphne_send(web_socket):
    # daphne's ASGI send: functools.partial(server.handle_reply, protocol).
    return functools.partial(lambda protocol, message: None, web_socket)


def test_disable_nagle_sets_tcp_nodelay_on_the_connection(twisted_connection):
    web_socket, sock = twisted_connection
    disable_nagle(daphne_send(web_socket))
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_disable_nagle_on_a_connection_closed_meanwhile_does_nothing(twisted_connection):
    # daphne's handshake timeout can close the connection while the consumer still connects:
    # Twisted's transport then has no socket left, and setTcpNoDelay raises AttributeError.
    web_socket, _ = twisted_connection
    web_socket.transport.connectionLost(Failure(error.ConnectionDone()))
    disable_nagle(daphne_send(web_socket))
