"""The client's address: forwarded headers believed only from DJANGO_TRUSTED_PROXIES, read from
the right, and one value (REMOTE_ADDR) for every consumer."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest
from django.test import RequestFactory
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle

from project.client_address import ClientAddressMiddleware, client_address
from tests.conftest import ROOT


@pytest.fixture
def trust(settings):
    def trust(*networks: str, header: str = "X-Forwarded-For") -> None:
        settings.TRUSTED_PROXIES = [ipaddress.ip_network(n) for n in networks]
        settings.TRUSTED_PROXY_UNIX_SOCKET = False
        settings.TRUSTED_PROXY_HEADER = header

    return trust


def test_without_trusted_proxies_every_forwarding_header_is_ignored(settings):
    assert settings.TRUSTED_PROXIES == []  # the default
    meta = {
        "HTTP_X_FORWARDED_FOR": "198.51.100.1",
        "HTTP_X_REAL_IP": "198.51.100.2",
        "HTTP_FORWARDED": "for=198.51.100.3",
    }
    assert client_address("203.0.113.9", meta) == "203.0.113.9"
    assert client_address("127.0.0.1", meta) == "127.0.0.1"


def test_from_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(trust):
    trust("127.0.0.1", "10.0.0.0/8")
    # The client wrote "1.1.1.1" itself; nginx appended the address it saw (203.0.113.5); an
    # inner proxy on 10.0.0.2 appended nginx's.
    meta = {"HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.5, 10.0.0.2"}
    assert client_address("127.0.0.1", meta) == "203.0.113.5"
    # Every hop trusted: the farthest one is the client.
    assert client_address("127.0.0.1", {"HTTP_X_FORWARDED_FOR": "10.1.1.1"}) == "10.1.1.1"
    # No header from the proxy: the proxy itself.
    assert client_address("127.0.0.1", {}) == "127.0.0.1"
    # A peer outside the list gets no say, whatever it sends.
    assert client_address("192.0.2.1", meta) == "192.0.2.1"


def test_garbage_in_the_chain_stops_at_the_last_trusted_hop(trust):
    trust("127.0.0.1")
    assert client_address("127.0.0.1", {"HTTP_X_FORWARDED_FOR": "not-an-ip"}) == "127.0.0.1"
    assert client_address("127.0.0.1", {"HTTP_X_FORWARDED_FOR": ""}) == "127.0.0.1"


def test_ports_brackets_and_ipv4_mapped_addresses(trust):
    trust("127.0.0.1", "::1")
    assert client_address("127.0.0.1", {"HTTP_X_FORWARDED_FOR": "203.0.113.5:4711"}) == (
        "203.0.113.5"
    )
    assert client_address("::1", {"HTTP_X_FORWARDED_FOR": "[2001:db8::17]:4711"}) == (
        "2001:db8::17"
    )
    assert client_address("::ffff:127.0.0.1", {"HTTP_X_FORWARDED_FOR": "2001:db8::1"}) == (
        "2001:db8::1"
    )


def test_a_unix_socket_peer_is_trusted_only_when_unix_is_listed(trust, settings):
    # daphne -u: the peer has no address; only processes on this machine can connect.
    meta = {"HTTP_X_FORWARDED_FOR": "9.9.9.9, 203.0.113.5"}
    trust("127.0.0.1")
    assert client_address("", meta) == ""
    settings.TRUSTED_PROXY_UNIX_SOCKET = True
    assert client_address("", meta) == "203.0.113.5"
    assert client_address("", {}) == ""


def test_only_the_configured_header_is_read(trust):
    # nginx sets X-Real-IP and passes on whatever X-Forwarded-For the client sent.
    trust("127.0.0.1", header="X-Real-IP")
    meta = {"HTTP_X_REAL_IP": "203.0.113.5", "HTTP_X_FORWARDED_FOR": "198.51.100.66"}
    assert client_address("127.0.0.1", meta) == "203.0.113.5"
    trust("127.0.0.1", header="Forwarded")
    meta = {"HTTP_FORWARDED": 'for=198.51.100.1;proto=https, for="[2001:db8::17]:4711"'}
    assert client_address("127.0.0.1", meta) == "2001:db8::17"
    assert client_address("127.0.0.1", {"HTTP_FORWARDED": "for=unknown"}) == "127.0.0.1"


def test_the_middleware_sets_remote_addr_and_drf_throttles_use_it(trust):
    trust("10.0.0.1")
    seen = {}

    def view(request):
        seen["remote"] = request.META["REMOTE_ADDR"]
        seen["peer"] = request.peer_address
        seen["throttle"] = AnonRateThrottle().get_ident(Request(request))

    factory = RequestFactory()
    ClientAddressMiddleware(view)(
        factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5")
    )
    assert seen == {"remote": "203.0.113.5", "peer": "10.0.0.1", "throttle": "203.0.113.5"}
    # From an untrusted peer DRF's throttle identity no longer follows the header (NUM_PROXIES=0).
    ClientAddressMiddleware(view)(
        factory.get("/", REMOTE_ADDR="192.0.2.7", HTTP_X_FORWARDED_FOR="9.9.9.9")
    )
    assert seen == {"remote": "192.0.2.7", "peer": "192.0.2.7", "throttle": "192.0.2.7"}


def test_only_a_trusted_proxy_may_say_the_request_came_over_https(trust, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    trust("10.0.0.1")
    seen = {}

    def view(request):
        seen["secure"] = request.is_secure()

    factory = RequestFactory()
    ClientAddressMiddleware(view)(
        factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    )
    assert seen == {"secure": True}
    ClientAddressMiddleware(view)(
        factory.get("/", REMOTE_ADDR="192.0.2.7", HTTP_X_FORWARDED_PROTO="https")
    )
    assert seen == {"secure": False}


def test_metrics_follow_the_client_address_through_a_trusted_proxy(client, trust):
    trust("10.0.0.1")
    through_proxy = {"REMOTE_ADDR": "10.0.0.1"}
    # The proxy vouches for a client on this machine: allowed without the token.
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1", **through_proxy)
    assert response.status_code == 200
    # A remote client behind the same proxy is not.
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7", **through_proxy)
    assert response.status_code == 403
    # An untrusted local proxy (nginx before DJANGO_TRUSTED_PROXIES is set) is not taken for a
    # local caller.
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403


def _settings_error(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    return result.stderr


def test_bad_proxy_settings_stop_start_up_with_the_variable_named():
    assert "DJANGO_TRUSTED_PROXIES" in _settings_error(DJANGO_TRUSTED_PROXIES="nginx.local")
    assert "DJANGO_TRUSTED_PROXY_HEADER" in _settings_error(DJANGO_TRUSTED_PROXY_HEADER="Via")


def test_scripts_serve_does_not_let_daphne_trust_proxy_headers():
    serve = (ROOT / "scripts" / "serve").read_text()
    daphne_lines = [line for line in serve.splitlines() if "bin/daphne" in line]
    assert daphne_lines and not any("--proxy-headers" in line for line in daphne_lines)
