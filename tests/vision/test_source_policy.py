"""The source policy, through the product's own entry points (validate_source, open_source) on
real files, real sockets, real getaddrinfo and real OpenCV/FFmpeg.

The one stand-in is `source_policy.resolver`, swapped for a table where a test must re-point a
host name between two connects (no real resolver lets a test do that offline); the checks, the
connect and FFmpeg are the real ones.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from cameras import source_policy
from cameras.vision.frames import encode_jpeg
from cameras.vision.sources import SourceError, open_source, validate_source
from tests.vision.test_sources import write_numbered_video

FILES_REFUSED = "not allowed by policy (an administrator can allow it with CAMERA_FILE_ROOTS)"
DEVICES_REFUSED = "not allowed by policy (an administrator can allow it with CAMERA_ALLOW_DEVICES)"
NETWORK_REFUSED = (
    "not allowed by policy (an administrator can allow it with CAMERA_ALLOWED_NETWORKS)"
)


def refusal_of(source: str, **kwargs) -> str:
    with pytest.raises(SourceError) as raised:
        open_source(source, **kwargs)
    return str(raised.value)


def allow(settings, *networks: str) -> None:
    settings.CAMERA_ALLOWED_NETWORKS = [ipaddress.ip_network(network) for network in networks]


# --- files -------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path, settings):
    """An allowed folder with a real video in it, and a video outside it."""
    inside = tmp_path / "allowed"
    inside.mkdir()
    write_numbered_video(inside / "lobby.avi")
    write_numbered_video(tmp_path / "outside.avi")
    settings.CAMERA_FILE_ROOTS = [inside]
    return inside


def test_a_video_inside_the_roots_is_valid_and_opens(root):
    assert validate_source(str(root / "lobby.avi")) is None
    assert validate_source(f"file://{root}/lobby.avi") is None
    source = open_source(str(root / "lobby.avi"))
    try:
        assert source.read().shape == (120, 160, 3)
    finally:
        source.close()


def test_missing_and_outside_files_get_the_same_answer_at_validation_and_at_open(root, tmp_path):
    probes = [
        "/etc/shadow",  # exists, outside
        "/etc/passwd",  # exists and readable, outside
        str(tmp_path / "outside.avi"),  # a real video, outside
        "/nonexistent/x.mp4",  # missing, outside
        str(root / "missing.avi"),  # missing, inside
        str(root / "../outside.avi"),  # climbs out
        str(root) + "//lobby.avi",  # not a normalized path
        str(root),  # the root itself is no file
        "file:///etc/shadow",
        f"file://{root}/missing.avi",
    ]
    for probe in probes:
        assert validate_source(probe) == FILES_REFUSED, probe
        assert refusal_of(probe) == FILES_REFUSED, probe


def test_missing_and_outside_files_take_the_same_time_to_refuse(root):
    # Same timing class: neither opens anything, so both are answered in well under a
    # millisecond (a real open of /etc/passwd by FFmpeg would take far longer).
    def median_seconds(probe: str) -> float:
        times = []
        for _ in range(200):
            started = time.perf_counter()
            validate_source(probe)
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    outside, missing = median_seconds("/etc/passwd"), median_seconds("/nonexistent/x.mp4")
    assert outside < 0.002 and missing < 0.002, (outside, missing)


def test_a_symlink_out_of_the_roots_is_refused_and_one_inside_is_followed(root, tmp_path):
    (root / "escape.avi").symlink_to(tmp_path / "outside.avi")
    (root / "etc").symlink_to("/etc")
    (root / "alias.avi").symlink_to(root / "lobby.avi")
    assert validate_source(str(root / "escape.avi")) == FILES_REFUSED
    assert validate_source(str(root / "etc" / "passwd")) == FILES_REFUSED
    assert refusal_of(str(root / "escape.avi")) == FILES_REFUSED
    assert validate_source(str(root / "alias.avi")) is None


def test_a_symlinked_root_is_resolved_too(root, tmp_path, settings):
    (tmp_path / "media-link").symlink_to(root)
    settings.CAMERA_FILE_ROOTS = [tmp_path / "media-link"]
    assert validate_source(str(root / "lobby.avi")) is None
    assert validate_source(str(tmp_path / "media-link" / "lobby.avi")) is None


def test_a_file_that_passed_is_checked_again_when_opened(root, settings):
    source = str(root / "lobby.avi")
    assert validate_source(source) is None
    settings.CAMERA_FILE_ROOTS = []  # the operator narrowed the roots after the camera was made
    assert refusal_of(source) == FILES_REFUSED


def test_a_playlist_inside_the_roots_cannot_read_a_file_outside_them(root, tmp_path):
    # The file passes the policy (it is inside), but FFmpeg's HLS demuxer would open the
    # segments it lists, wherever they are: file sources read video containers only.
    playlist = root / "list.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{tmp_path / 'outside.avi'}\n"
        "#EXT-X-ENDLIST\n"
    )
    assert validate_source(str(playlist)) is None
    assert "not a video file OpenCV can read" in refusal_of(str(playlist))


def test_the_usual_video_containers_open_as_files(root):
    for name, fourcc in [("clip.mp4", "mp4v"), ("clip.mkv", "MJPG"), ("clip.avi", "XVID")]:
        writer = cv2.VideoWriter(str(root / name), cv2.VideoWriter_fourcc(*fourcc), 10, (160, 120))
        assert writer.isOpened(), name
        for index in range(5):
            writer.write(np.full((120, 160, 3), 40 * index, dtype=np.uint8))
        writer.release()
        source = open_source(str(root / name))
        try:
            assert source.read().shape == (120, 160, 3), name
        finally:
            source.close()


# --- devices -----------------------------------------------------------------------------------


def test_devices_are_refused_unless_allowed(settings):
    assert validate_source("device:0") == DEVICES_REFUSED
    assert refusal_of("device:0") == DEVICES_REFUSED
    settings.CAMERA_ALLOW_DEVICES = True
    assert validate_source("device:0") is None
    # Allowed, it is opened for real: here there is no such camera.
    assert "could not open device:63" in refusal_of("device:63")


# --- networks: what is refused -----------------------------------------------------------------


REFUSED_HOSTS = [
    "127.0.0.1",  # loopback
    "127.9.9.9",
    "127.1",  # short form
    "2130706433",  # 127.0.0.1 as one number
    "0x7f.0.0.1",  # hex
    "0177.0.0.1",  # octal
    "0.0.0.0",  # unspecified: the local host
    "10.1.2.3",  # RFC 1918
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.10",
    "169.254.169.254",  # link-local: cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # CGNAT (RFC 6598)
    "100.127.255.254",
    "192.0.0.1",  # IETF protocol assignments
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "[::1]",  # IPv6 loopback
    "[::]",  # unspecified
    "[fe80::1]",  # link-local
    "[fc00::1]",  # unique local
    "[fd12:3456::1]",
    "[fec0::1]",  # site-local
    "[ff02::1]",  # multicast
    "[::ffff:127.0.0.1]",  # IPv4-mapped forms of the above
    "[::ffff:169.254.169.254]",
    "[::ffff:10.0.0.1]",
    "[::ffff:7f00:1]",
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
    "[2001:db8::1]",  # documentation
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
@pytest.mark.parametrize("scheme", ["rtsp", "rtsps", "http", "https"])
def test_numeric_hosts_in_refused_ranges_are_refused_when_configured(scheme, host):
    assert validate_source(f"{scheme}://user:pw@{host}:8554/stream") == NETWORK_REFUSED


@pytest.mark.parametrize(
    "host", ["8.8.8.8", "1.1.1.1", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]", "camera.example"]
)
def test_public_addresses_and_names_pass_configuration(host):
    # Names are only resolved at connect time, where they are checked.
    assert validate_source(f"rtsp://{host}/stream") is None


def test_allowed_networks_let_private_ranges_through(settings):
    allow(settings, "192.168.1.0/24", "fd00::/8")
    assert validate_source("rtsp://192.168.1.20/stream") is None
    assert validate_source("rtsp://[::ffff:192.168.1.20]/stream") is None
    assert validate_source("rtsp://[fd00::20]/stream") is None
    assert validate_source("rtsp://192.168.2.20/stream") == NETWORK_REFUSED
    assert validate_source("rtsp://169.254.169.254/stream") == NETWORK_REFUSED


# --- networks: at connect, on real sockets -----------------------------------------------------


class Listener:
    """A TCP listener that counts the connections it accepts (and answers none)."""

    def __init__(self, host: str) -> None:
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.socket.bind((host, 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.socket.close()


@contextmanager
def listening(host: str) -> Iterator[Listener]:
    listener = Listener(host)
    try:
        yield listener
    finally:
        listener.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_a_refused_address_is_never_connected_to_and_the_error_says_only_policy(host):
    with listening(host) as listener:
        shown = f"[{host}]" if ":" in host else host
        for scheme in ("rtsp", "http"):
            assert refusal_of(f"{scheme}://{shown}:{listener.port}/x", read_timeout=1) == (
                NETWORK_REFUSED
            )
        time.sleep(0.3)
        assert listener.accepted == 0


def test_a_closed_port_and_an_open_one_get_the_same_refusal():
    # No port scanning: whatever is (or is not) behind a refused address, the answer is one.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    with listening("127.0.0.1") as open_listener:
        answers = {
            refusal_of(f"http://127.0.0.1:{port}/", read_timeout=1)
            for port in (closed_port, open_listener.port)
        }
        answers.add(refusal_of("http://10.255.255.1:81/", read_timeout=1))  # nothing answers
    assert answers == {NETWORK_REFUSED}


def test_a_name_that_resolves_to_loopback_is_refused_at_connect_by_real_getaddrinfo():
    # `localhost` is resolved by the system (getaddrinfo, /etc/hosts): valid as a name, refused
    # once it resolves to a loopback address.
    with listening("127.0.0.1") as listener:
        url = f"http://localhost:{listener.port}/video.mjpg"
        assert validate_source(url) is None
        assert refusal_of(url, read_timeout=1) == NETWORK_REFUSED
        time.sleep(0.3)
        assert listener.accepted == 0


class MjpegCamera:
    """An MJPEG-over-HTTP camera on a loopback address that records the requests it gets (or a
    server that redirects, or answers one fixed body)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        port: int = 0,
        redirect_to: str | None = None,
        body: tuple[str, bytes] | None = None,
    ) -> None:
        self.requests: list[dict[str, str]] = []
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                camera.requests.append({"path": self.path, "host": self.headers.get("Host", "")})
                if body is not None:
                    content_type, content = body
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                    return
                if redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for index in range(20):
                    jpeg = encode_jpeg(np.full((120, 160, 3), 10 * index, dtype=np.uint8), 90)
                    part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                    try:
                        self.wfile.write(part % len(jpeg) + jpeg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.02)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cameras() -> Iterator[list[MjpegCamera]]:
    started: list[MjpegCamera] = []
    yield started
    for camera in started:
        camera.close()


def test_an_allowed_network_connects_by_name_and_by_address(settings, cameras):
    allow(settings, "127.0.0.1/32", "::1/128")
    camera = MjpegCamera()
    cameras.append(camera)
    for url in (
        f"http://127.0.0.1:{camera.port}/video.mjpg",
        f"http://localhost:{camera.port}/video.mjpg",
    ):
        assert validate_source(url) is None
        source = open_source(url, read_timeout=2)
        try:
            assert source.read().shape == (120, 160, 3)
            assert source.description == url  # the status shows what the user typed
            host = url.split("/")[2]
            assert camera.requests[-1]["host"] == host
        finally:
            source.close()


@pytest.fixture
def table_resolver(monkeypatch) -> dict[str, list[str]]:
    """Host names the product resolves from this table (see the module docstring)."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    monkeypatch.setattr(source_policy, "resolver", resolve)
    return table


def test_a_name_re_pointed_after_it_was_allowed_is_caught_at_the_next_connect(
    settings, cameras, table_resolver
):
    allow(settings, "127.0.0.1/32")
    allowed, target = MjpegCamera("127.0.0.1"), MjpegCamera("127.0.0.2")
    cameras.extend([allowed, target])
    table_resolver["camera.test"] = ["127.0.0.1"]
    url = f"http://camera.test:{allowed.port}/video.mjpg"

    source = open_source(url, read_timeout=2)
    try:
        assert source.read() is not None
    finally:
        source.close()
    # No real resolver knows camera.test: FFmpeg was handed the checked address, and the name
    # only went into the Host header, as a camera behind a virtual host needs.
    assert allowed.requests[-1]["host"] == f"camera.test:{allowed.port}"

    # The same port on 127.0.0.2 has nothing; re-point the name at the other camera's address.
    url = f"http://camera.test:{target.port}/video.mjpg"
    table_resolver["camera.test"] = ["127.0.0.2"]
    assert refusal_of(url, read_timeout=2) == NETWORK_REFUSED
    assert target.requests == []


def test_a_name_with_one_refused_address_among_public_ones_is_refused(
    settings, cameras, table_resolver
):
    allow(settings, "127.0.0.1/32")
    camera = MjpegCamera("127.0.0.1")
    cameras.append(camera)
    for answers in (
        ["127.0.0.1", "169.254.169.254"],
        ["169.254.169.254", "127.0.0.1"],
        ["127.0.0.1", "::ffff:10.0.0.1"],
    ):
        table_resolver["camera.test"] = answers
        assert (
            refusal_of(f"http://camera.test:{camera.port}/video.mjpg", read_timeout=2)
            == NETWORK_REFUSED
        )
    assert camera.requests == []


def test_an_ipv4_mapped_answer_is_checked_and_connected_as_ipv4(settings, cameras, table_resolver):
    allow(settings, "127.0.0.1/32")
    camera = MjpegCamera("127.0.0.1")
    cameras.append(camera)
    table_resolver["camera.test"] = ["::ffff:127.0.0.1"]
    source = open_source(f"http://camera.test:{camera.port}/video.mjpg", read_timeout=2)
    try:
        assert source.read() is not None
    finally:
        source.close()
    assert camera.requests


def test_an_unknown_name_says_so_without_connecting(table_resolver):
    assert "host nowhere.test not found" in refusal_of("rtsp://nowhere.test/x", read_timeout=1)


def test_http_redirects_are_not_followed_even_between_allowed_addresses(settings, cameras):
    # A camera at an allowed address could otherwise send FFmpeg anywhere, past the check.
    allow(settings, "127.0.0.0/8")
    target = MjpegCamera("127.0.0.2")
    redirector = MjpegCamera("127.0.0.1", redirect_to=f"http://127.0.0.2:{target.port}/video.mjpg")
    cameras.extend([target, redirector])
    with pytest.raises(SourceError, match="no video stream could be read"):
        open_source(f"http://127.0.0.1:{redirector.port}/video.mjpg", read_timeout=2)
    assert redirector.requests and target.requests == []
    # And the target itself is a working camera: only the redirect was refused.
    source = open_source(f"http://127.0.0.2:{target.port}/video.mjpg", read_timeout=2)
    try:
        assert source.read() is not None
    finally:
        source.close()


def test_a_playlist_cannot_send_ffmpeg_to_addresses_nobody_checked(settings, cameras):
    # An HLS playlist at an allowed address lists its segments at any URL; FFmpeg would fetch
    # them (here from 127.0.0.2), past the check. Network sources are read only by demuxers that
    # read the one stream they are given.
    allow(settings, "127.0.0.0/8")
    segments = MjpegCamera("127.0.0.2")
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n"
        f"http://127.0.0.2:{segments.port}/segment.ts\n#EXT-X-ENDLIST\n"
    )
    server = MjpegCamera("127.0.0.1", body=("application/vnd.apple.mpegurl", playlist.encode()))
    cameras.extend([segments, server])
    with pytest.raises(SourceError, match="no video stream could be read"):
        open_source(f"http://127.0.0.1:{server.port}/live.m3u8", read_timeout=2)
    assert server.requests and segments.requests == []


def test_an_rtsp_source_reaches_ffmpegs_rtsp_client_at_the_checked_address(
    settings, table_resolver
):
    # The policy's FFmpeg options must leave RTSP working: the RTSP demuxer speaks, over TCP, to
    # the address that was checked (this server answers nothing, so the open then fails).
    allow(settings, "127.0.0.1/32")
    table_resolver["camera.test"] = ["127.0.0.1"]
    received: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]

        def serve() -> None:
            server.settimeout(5)
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                with connection:
                    connection.settimeout(2)
                    try:
                        received.append(connection.recv(4096))
                    except OSError:
                        pass
                    if received[-1].startswith(b"OPTIONS"):
                        return

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with pytest.raises(SourceError, match="no video stream could be read"):
            open_source(f"rtsp://user:pw@camera.test:{port}/stream", read_timeout=1)
        thread.join(5)
    request = next(data for data in received if data)
    assert request.startswith(f"OPTIONS rtsp://127.0.0.1:{port}/stream RTSP/1.0".encode())
