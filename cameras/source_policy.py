"""What a camera source may reach on the server: the files, devices and networks the operator allows.

A camera's source and ONNX model are typed by organization members, and the server opens them.
Without limits that turns the server into a probe: a file path answers whether a file exists, a
URL makes the server connect to any host and port of its own network and report the outcome.
The rules, all read from settings (README, "Camera sources"):

- Files (video sources, ONNX models and their labels) only inside `CAMERA_FILE_ROOTS`, checked on
  the path with every symlink resolved. A path that does not exist and one outside the roots get
  the same answer, after the same work (one path resolution, no open), so the answer says nothing
  about the file system outside the roots.
- `device:N` only when `CAMERA_ALLOW_DEVICES` is on.
- Network sources only to addresses that are globally routable, or inside `CAMERA_ALLOWED_NETWORKS`.
  A host name is resolved once per connect, every address it resolves to must pass, and the caller
  connects to the address that was checked (never to the name again), so a name cannot be pointed
  at another address between the check and the connect. What the stream's server then tells its
  reader (redirects, playlists) is the reader's to refuse: `cameras.vision.sources` says how far
  FFmpeg is held to the checked address.

A refusal says "not allowed by policy" and names the setting that would allow it, nothing else:
not whether the file exists, not what answers at the address.

`source_masked` is the one way a source is shown to people who may not see its credentials, and
to everyone in error messages (`last_error`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Sequence
from urllib.parse import unquote_plus

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FILE_ROOTS_SETTING = "CAMERA_FILE_ROOTS"
DEVICES_SETTING = "CAMERA_ALLOW_DEVICES"
NETWORKS_SETTING = "CAMERA_ALLOWED_NETWORKS"

# Shared address space (RFC 6598): carrier-grade NAT, the provider's network, not the internet.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class PolicyRefusal(Exception):
    """The source (or model file) is not allowed; the message is safe to show to anyone."""

    def __init__(self, setting: str) -> None:
        super().__init__(refusal_message(setting))
        self.setting = setting


def refusal_message(setting: str) -> str:
    return f"not allowed by policy (an administrator can allow it with {setting})"


# --- files -------------------------------------------------------------------------------------


def file_roots() -> list[str]:
    """The configured roots, symlinks resolved, so they compare with resolved paths."""
    return [os.path.realpath(root) for root in settings.CAMERA_FILE_ROOTS]


def allowed_file(path: str) -> str:
    """The resolved path of `path` if it is an existing regular file inside a root, else
    PolicyRefusal, the same one whether the file is missing, outside the roots or both.

    Callers open the returned path, not `path`, so what was checked is what is opened.
    """
    # Lexically clean paths only: with `..` parts, whether an outside folder exists or is a
    # symlink could decide where the path lands.
    if not os.path.isabs(path) or os.path.normpath(path) != path.rstrip("/") or "//" in path:
        raise PolicyRefusal(FILE_ROOTS_SETTING)
    try:
        resolved = os.path.realpath(path)
    except ValueError:  # a NUL character
        raise PolicyRefusal(FILE_ROOTS_SETTING) from None
    inside = any(_is_within(resolved, root) for root in file_roots())
    # Checked in this order for every path, so a path outside the roots costs exactly what a
    # missing one does (a resolution and one stat) and nothing outside the roots is opened.
    exists = os.path.isfile(resolved)
    if not (inside and exists):
        raise PolicyRefusal(FILE_ROOTS_SETTING)
    return resolved


def _is_within(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


# --- devices -----------------------------------------------------------------------------------


def check_device() -> None:
    if not settings.CAMERA_ALLOW_DEVICES:
        raise PolicyRefusal(DEVICES_SETTING)


# --- networks ----------------------------------------------------------------------------------


def _system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, by the system's resolver (getaddrinfo)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


# How host names are resolved before a connect. Production always uses getaddrinfo; tests swap
# this for a table to re-point a name between two connects, which no real resolver lets them do.
resolver: Callable[[str, int], list[str]] = _system_resolver


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a translated IPv6 form carries (6to4, Teredo, NAT64): where a packet may
    end up on a network that translates it."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True for an address on the internet: not loopback, link-local (cloud metadata at
    169.254.169.254 included), private, CGNAT, unspecified, multicast or reserved."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4-mapped address (::ffff:a.b.c.d) is that IPv4 address on a dual-stack socket.
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if address.is_site_local or (embedded is not None and not is_public(embedded)):
            return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_link_local
        and address not in _CGNAT
    )


def is_allowed_address(
    address: IPAddress,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None,
) -> bool:
    """Public, or inside `networks` (default CAMERA_ALLOWED_NETWORKS; webhooks pass theirs)."""
    if networks is None:
        networks = settings.CAMERA_ALLOWED_NETWORKS
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    if any(candidate in network for candidate in candidates for network in networks):
        return True
    return is_public(address)


def literal_address(host: str) -> IPAddress | None:
    """The address if `host` is a numeric address in any form getaddrinfo accepts (`127.1`,
    `2130706433`, `0x7f.0.0.1`, `[::1]`), without asking any DNS server; None for a name."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return ipaddress.ip_address(infos[0][4][0].split("%", 1)[0])


def check_literal_host(host: str) -> None:
    """At configuration time: refuse a numeric host that is not allowed (names wait for the
    connect, where they are resolved)."""
    address = literal_address(host)
    if address is not None and not is_allowed_address(address):
        raise PolicyRefusal(NETWORKS_SETTING)


def connect_address(host: str, port: int) -> str:
    """The one address to connect to for `host`: resolved now, every address checked.

    PolicyRefusal if any address is not allowed (a name that also resolves to a private
    address is refused, whatever order the resolver returns); socket.gaierror if the name does not
    resolve. IPv4-mapped IPv6 answers come back as the IPv4 address they stand for.
    """
    literal = literal_address(host)
    names = [str(literal)] if literal is not None else resolver(host, port)
    addresses = [ipaddress.ip_address(name.split("%", 1)[0]) for name in names]
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    for address in addresses:
        if not is_allowed_address(address):
            raise PolicyRefusal(NETWORKS_SETTING)
    first = addresses[0]
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped is not None:
        return str(first.ipv4_mapped)
    return str(first)


# --- showing a source --------------------------------------------------------------------------

# Parameter names that carry credentials in camera URLs, in the query (`?password=`) or, for some
# vendors, in the path (`rtsp://host/user=admin&password=…&channel=1`).
_SECRET_PARAMETERS = re.compile(
    r"(?i)^(pass(word)?|pwd|passwd|token|access_token|auth|authorization|key|api_?key|secret|"
    r"sig(nature)?|credentials?)$"
)
_SECRET_IN_PATH = re.compile(
    r"(?i)(?<![a-z0-9])(pass(?:word)?|pwd|passwd|token|access_token|auth|authorization|key|"
    r"api_?key|secret|sig(?:nature)?|credentials?)=[^&/?#;]*"
)
MASK = "***"


def source_masked(source: str) -> str:
    """The source as people without the secrets may see it: a password in the URL becomes
    `***` (`rtsp://admin:***@host/…`), as do credential parameters in the query (`?password=`,
    `token=`) and in the path (`/user=admin&password=***&channel=1`).

    Plain string work rather than urlsplit: a password holding `/`, `?` or `#` must not make
    the parser misplace the userinfo and show it. When unsure, more is masked, never less (a
    path parameter's value runs to the next `&`, `/`, `;`, `?` or `#`)."""
    if "://" not in source:
        return source  # demo:, push:, device:N and file paths carry no credentials
    scheme, _, rest = source.partition("://")
    userinfo, at, rest = rest.rpartition("@")
    username, colon, _ = userinfo.partition(":")
    if at and colon and not any(mark in username for mark in "/?#"):
        # The last @ ends the userinfo: everything between the first : and it is the password.
        userinfo = f"{username}:{MASK}"
    elif at:
        rest = f"{userinfo}@{rest}"  # no password there: an @ in the path or query
        userinfo, at = "", ""
    before_fragment, hash_sign, fragment = rest.partition("#")
    address, question_mark, query = before_fragment.partition("?")
    address = _SECRET_IN_PATH.sub(lambda found: f"{found.group(1)}={MASK}", address)
    if query:
        pieces = []
        for piece in query.split("&"):
            name, equals, _ = piece.partition("=")
            secret = equals and _SECRET_PARAMETERS.match(unquote_plus(name))
            pieces.append(f"{name}={MASK}" if secret else piece)
        query = "&".join(pieces)
    return f"{scheme}://{userinfo}{at}{address}{question_mark}{query}{hash_sign}{fragment}"
