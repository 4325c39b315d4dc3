"""The client's address, computed once per request, so every consumer agrees on it.

A request's direct peer is the client unless the peer is one of DJANGO_TRUSTED_PROXIES
(`settings.TRUSTED_PROXIES`). Only then is the proxy's header (`settings.TRUSTED_PROXY_HEADER`,
X-Forwarded-For by default) read, from its right end: each trusted proxy appended the address it
saw, so the first address from the right that is not a trusted proxy is the client. What a client
wrote further left is never reached, so sending a new X-Forwarded-For each time changes nothing.

`ClientAddressMiddleware` runs first and puts that address in `REMOTE_ADDR`, which the login
limits, DRF's throttles (NUM_PROXIES = 0), the /metrics network check and logging read.
daphne itself runs without `--proxy-headers`, so the ASGI scope always holds the direct peer.
"""

from __future__ import annotations

import ipaddress
import re

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The headers a proxy may use to name the client, as they appear in request.META.
PROXY_HEADER_META_KEYS = {
    "X-Forwarded-For": "HTTP_X_FORWARDED_FOR",
    "X-Real-IP": "HTTP_X_REAL_IP",
    "Forwarded": "HTTP_FORWARDED",
}
# RFC 7239: `for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`.
_FORWARDED_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`), or None."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _hops(header: str, value: str) -> list[str]:
    """The addresses a header lists, leftmost (farthest from us) first."""
    if header == "Forwarded":
        hops = []
        for element in value.split(","):
            match = _FORWARDED_FOR.search(element)
            hops.append(match.group(1) if match else "")
        return hops
    return value.split(",")


def is_trusted_proxy(address: IPAddress | None) -> bool:
    return address is not None and any(address in net for net in settings.TRUSTED_PROXIES)


def _peer_is_trusted(peer: str, address: IPAddress | None) -> bool:
    if address is None:
        # No address at all: daphne on a Unix socket, reachable only on this machine.
        return not peer and settings.TRUSTED_PROXY_UNIX_SOCKET
    return is_trusted_proxy(address)


def client_address(peer: str, meta: dict) -> str:
    """The client's address for a request whose direct peer is `peer` and headers are `meta`:
    the rightmost hop that is not a trusted proxy. A hop that is not an address (garbage,
    `unknown`, an obfuscated name) ends the walk at the trusted proxy that sent it."""
    current = parse_address(peer)
    if not _peer_is_trusted(peer, current):
        return peer if current is None else str(current)
    header = settings.TRUSTED_PROXY_HEADER
    value = meta.get(PROXY_HEADER_META_KEYS[header], "")
    hops = _hops(header, value) if value else []
    while hops:
        previous = parse_address(hops.pop())
        if previous is None:
            break
        current = previous
        if not is_trusted_proxy(current):
            break
    return peer if current is None else str(current)


def came_through_untrusted_proxy(request: HttpRequest) -> bool:
    """True when the request names a client in a proxy header its direct peer may not set:
    REMOTE_ADDR may then be a proxy's (say nginx on 127.0.0.1 before DJANGO_TRUSTED_PROXIES is
    set), not the client's, and must not be taken for a local caller."""
    peer = getattr(request, "peer_address", request.META.get("REMOTE_ADDR", ""))
    if _peer_is_trusted(peer, parse_address(peer)):
        return False
    return any(key in request.META for key in PROXY_HEADER_META_KEYS.values())


def _apply(request: HttpRequest) -> None:
    peer = request.META.get("REMOTE_ADDR", "")
    request.peer_address = peer
    request.META["REMOTE_ADDR"] = client_address(peer, request.META)
    if not _peer_is_trusted(peer, parse_address(peer)):
        # With DJANGO_SECURE_PROXY_SSL_HEADER on, Django believes this header: only a trusted
        # proxy may say a request came over HTTPS (secure cookies, CSRF, the SSL redirect).
        request.META.pop("HTTP_X_FORWARDED_PROTO", None)


class ClientAddressMiddleware:
    """First in MIDDLEWARE: REMOTE_ADDR becomes the client's address, `request.peer_address`
    keeps the direct peer. Sync and async, so it never moves a request to a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self._acall(request)
        _apply(request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest):
        _apply(request)
        return await self.get_response(request)
