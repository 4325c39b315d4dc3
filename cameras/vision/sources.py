"""Frame sources: turn a camera's source spec into something that yields BGR frames.

Specs:
- `rtsp://…`, `rtsps://…`, `http://…`, `https://…`: a network stream opened with OpenCV's FFmpeg
  backend (RTSP, MJPEG over HTTP, MPEG-TS, …; not playlists such as HLS, see below), with open
  and read timeouts so nothing hangs.
- `/abs/path/video.mp4` or `file:///abs/path/video.mp4`: a video file, replayed as if it were a
  live camera: paced at the file's own fps and looped at its end.
- `device:N`: local capture device N (`/dev/videoN` on Linux).
- `demo:` or `demo:<name>`: the synthetic `DemoScene`; each name gives a different scene.
- `push:`: no source is read; frames arrive through the ingest endpoint.

What a source may reach (files, devices, networks) is decided by `cameras.source_policy`, both
when a source is validated and every time it is opened.

Every source is paced like a camera: `read()` blocks until the next frame is there (for a network
stream, until it arrives, at most about `read_timeout`), and returns None when there is none. It
never reconnects by itself: after a stream breaks, `read()` keeps returning None (pausing briefly
each time so a loop around it does not spin) and the caller reopens it with its own backoff.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from cameras import source_policy
from cameras.source_policy import PolicyRefusal, source_masked
from cameras.vision.demo import DemoScene, demo_seed

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
MAX_SOURCE_LENGTH = 2000
MAX_DEVICE_INDEX = 63
_DEMO_NAME = re.compile(r"[A-Za-z0-9_-]{0,40}")
_SUPPORTED = (
    "use rtsp://, rtsps://, http(s)://, a video file's absolute path or file:///path, "
    "device:N, demo: or push:"
)
# After a failed read, wait this long before returning None, so a caller's loop does not spin.
_FAILED_READ_PAUSE = 0.1
# A file source skips at most this many seconds of frames to catch up with a slow caller; beyond
# that it restarts its clock instead (skipping costs a decode per frame).
_MAX_CATCH_UP_SECONDS = 1.0
# OpenCV passes this variable's options to FFmpeg at every open ("key;value|key;value").
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# The options a network stream is opened with besides the operator's. The source policy checks the
# one address FFmpeg is given, so FFmpeg should connect nowhere else: no HTTP redirects, and only
# demuxers that read the one stream they are given (HLS, DASH, concat or SDP would open whatever
# URLs the remote side lists, unchecked).
_POLICY_KEYS = ("max_redirects", "format_whitelist", "protocol_whitelist", "headers")
_NETWORK_FORMATS = (
    "mpjpeg,mjpeg,rtsp,mpegts,flv,live_flv,matroska,mov,avi,h264,hevc,mpegps,mpegvideo"
)
# `rtsp` and `rtsps` are left out on purpose. FFmpeg's RTSP demuxer opens its connection with
# `tcp`/`tls` (and `rtp`/`udp` for UDP transport) and checks the `rtsp` name against this list
# only when it follows a 3xx Location redirect, which `max_redirects` does not cover: without the
# name, FFmpeg logs "Protocol 'rtsp' not on whitelist" and the redirect, to wherever it points,
# is not followed (tests/vision/test_rtsp.py watches both with a fake RTSP server).
_NETWORK_PROTOCOLS = "http,https,tls,tcp,udp,rtp"
# Video files: the containers and image sequences of recorded or exported video, no playlists
# (hls, concat) or descriptions (sdp) that name further files or URLs.
_FILE_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,mpegvideo,flv,mjpeg,h264,hevc"
)
_HOST_NAME = re.compile(r"[a-z0-9.-]{1,253}")


def _operator_ffmpeg_options(configured: str | None) -> list[str]:
    """The operator's FFmpeg options without the ones the policy sets. RTSP over TCP unless the
    operator chose otherwise: it survives packet loss and NAT where UDP smears or stalls."""
    return [
        entry
        for entry in (configured if configured is not None else "rtsp_transport;tcp").split("|")
        if entry and entry.split(";", 1)[0] not in _POLICY_KEYS
    ]


_OPERATOR_OPTIONS = _operator_ffmpeg_options(os.environ.get(_FFMPEG_OPTIONS))
# OpenCV reads the options from the environment while it opens, so each open sets them for itself
# under this lock (OpenCV serializes FFmpeg opens in the process anyway).
_FFMPEG_OPEN_LOCK = threading.Lock()


def _ffmpeg_capture(target: str, params: list[int], *, host_header: str | None = None):
    """cv2.VideoCapture(target) with FFmpeg, the operator's options and, for a network stream
    (`host_header` given or not), the policy's."""
    options = list(_OPERATOR_OPTIONS)
    if target.startswith("/"):
        options += ["protocol_whitelist;file", f"format_whitelist;{_FILE_FORMATS}"]
    else:
        options += [
            "max_redirects;0",
            f"format_whitelist;{_NETWORK_FORMATS}",
            f"protocol_whitelist;{_NETWORK_PROTOCOLS}",
        ]
        if host_header is not None:
            options.append(f"headers;Host: {host_header}\r\n")
    with _FFMPEG_OPEN_LOCK:
        os.environ[_FFMPEG_OPTIONS] = "|".join(options)
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)


class SourceError(Exception):
    """A source could not be opened; the message is the reason, for logs and the camera status."""


class FrameSource(Protocol):
    description: str  # for logs and status; credentials in URLs are masked
    is_live: bool  # False only for a video file replayed as a camera

    def read(self) -> np.ndarray | None:
        """The next BGR frame, or None if the source has none right now."""
        ...

    def close(self) -> None: ...


def validate_source(source: str) -> str | None:
    """None if `source` is a valid source spec, else a message saying what is wrong.

    Checks the form and what the source policy can decide without the network (video files,
    devices, numeric addresses): it opens nothing and resolves no name.
    """
    try:
        _parse(source)
    except SourceError as error:
        return str(error)
    return None


def source_kind(source: str) -> str:
    """What kind of source a spec is ("file", "rtsp", "http", "device", "demo", "push", …),
    never more of it: safe to show to anyone who may see the camera."""
    if source.startswith("/") or source.startswith("file:"):
        return "file"
    scheme = source.split(":", 1)[0].lower()
    return scheme if scheme in (*NETWORK_SCHEMES, "device", "demo", "push") else "unknown"


def open_source(source: str, *, read_timeout: float = 5.0) -> FrameSource:
    """Open a source spec for reading. Raises SourceError with the reason when it cannot.

    Opening a network stream takes at most about `read_timeout` seconds for the connection check
    plus as long again for FFmpeg to open the stream.
    """
    kind, value = _parse(source)
    if kind == "push":
        raise SourceError("push: cameras receive frames through the ingest endpoint")
    if kind == "demo":
        return DemoScene(seed=demo_seed(value))
    if kind == "device":
        return _open_device(int(value))
    if kind == "file":
        return VideoFileSource(value)
    return _open_stream(value, read_timeout=read_timeout)


def _with_host(parts, address: str) -> str:
    """The URL with its host replaced by `address` (user, password, port and path kept).

    TLS servers then get no server name; HTTP servers get the name back through Host.
    """
    host = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _host_header(parts, scheme: str) -> str | None:
    """What an HTTP camera named by a host name expects in Host, though FFmpeg connects to the
    checked address; None for RTSP and for numeric hosts."""
    host = parts.hostname
    if not scheme.startswith("http") or not _HOST_NAME.fullmatch(host or ""):
        return None
    if source_policy.literal_address(host) is not None:
        return None
    return f"{host}:{parts.port}" if parts.port else host


class CaptureSource:
    """A network stream or local device read through cv2.VideoCapture."""

    def __init__(self, capture: cv2.VideoCapture, description: str) -> None:
        self._capture = capture
        self.description = description
        self.is_live = True

    def read(self) -> np.ndarray | None:
        started = time.monotonic()
        ok, frame = self._capture.read()
        if ok and frame is not None:
            return frame
        elapsed = time.monotonic() - started
        if elapsed < _FAILED_READ_PAUSE:
            time.sleep(_FAILED_READ_PAUSE - elapsed)
        return None

    def close(self) -> None:
        self._capture.release()


class VideoFileSource:
    """A video file replayed as a live camera: at the file's fps, looped at its end.

    `read()` returns the frame that is due now by the file's clock: it sleeps when called early
    and skips frames when called late (up to a second's worth), so a caller reading at its own
    rate sees the video at its real speed.
    """

    is_live = False

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"video file {path}"
        self._capture = _open_file_capture(path)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        # Files without a usable frame rate play at 25 fps, the common PAL rate.
        self.fps = fps if 1.0 <= fps <= 240.0 else 25.0
        self._started: float | None = None
        self._position = 0  # index of the next frame to read, since the last loop

    def read(self) -> np.ndarray | None:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        due = int((now - self._started) * self.fps)
        if self._position > due:
            time.sleep(self._started + self._position / self.fps - now)
        elif due - self._position > self.fps * _MAX_CATCH_UP_SECONDS:
            self._started = now - self._position / self.fps
        else:
            for _ in range(due - self._position):
                if not self._capture.grab():
                    break
                self._position += 1
        frame = self._read_frame()
        if frame is None:
            # End of the file: start it again.
            self._rewind()
            frame = self._read_frame()
            if frame is None:
                time.sleep(_FAILED_READ_PAUSE)
                return None
        return frame

    def close(self) -> None:
        self._capture.release()

    def _read_frame(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        self._position += 1
        return frame

    def _rewind(self) -> None:
        # Reopening is slower than seeking to 0 but works for every container and codec.
        self._capture.release()
        self._capture = _open_file_capture(self.path)
        self._position = 0
        self._started = time.monotonic()


def _parse(source: str) -> tuple[str, str]:
    """(kind, value) for a spec, or SourceError with a message a user can act on."""
    if not isinstance(source, str) or not source.strip():
        raise SourceError(f"enter a source: {_SUPPORTED}")
    source = source.strip()
    if len(source) > MAX_SOURCE_LENGTH:
        raise SourceError(f"the source is longer than {MAX_SOURCE_LENGTH} characters")
    if any(ord(character) < 32 or ord(character) == 127 for character in source):
        raise SourceError("the source contains control characters")
    if source == "push:":
        return "push", ""
    if source.startswith("demo:"):
        name = source[len("demo:") :]
        if not _DEMO_NAME.fullmatch(name):
            raise SourceError(
                "a demo name may only use letters, digits, - and _ (at most 40), as in demo:lobby"
            )
        return "demo", name
    if source.startswith("device:"):
        index = source[len("device:") :]
        if not index.isdigit() or int(index) > MAX_DEVICE_INDEX:
            raise SourceError(f"a device is device:N with N from 0 to {MAX_DEVICE_INDEX}")
        _policy(source_policy.check_device)
        return "device", str(int(index))
    if source.startswith("/") or source.startswith("file:"):
        return "file", _file_path(source)
    scheme = source.split(":", 1)[0].lower() if ":" in source else ""
    if scheme in NETWORK_SCHEMES:
        if any(character.isspace() for character in source):
            raise SourceError("a stream URL cannot contain spaces (encode them as %20)")
        try:
            parts = urlsplit(source)
            parts.port  # noqa: B018 - parsing the port is what raises on a bad one
        except ValueError as error:
            raise SourceError(f"not a valid URL: {error}") from error
        if not parts.hostname:
            raise SourceError(f"{scheme}:// URLs need a host, as in {scheme}://camera.local/stream")
        _policy(source_policy.check_literal_host, parts.hostname)
        return "stream", source
    raise SourceError(f"unsupported source: {_SUPPORTED}")


def _file_path(source: str) -> str:
    if source.startswith("file:"):
        parts = urlsplit(source)
        if not source.startswith("file:///") or parts.netloc:
            raise SourceError("a file URL is file:///absolute/path (three slashes)")
        path = unquote(parts.path)
    else:
        path = source
    if not os.path.isabs(path):
        raise SourceError("a video file needs an absolute path")
    # The same answer for a missing file as for one outside the allowed folders.
    return _policy(source_policy.allowed_file, path)


def _policy(check, *args):
    try:
        return check(*args)
    except PolicyRefusal as refusal:
        raise SourceError(str(refusal)) from None


def _open_file_capture(path: str) -> cv2.VideoCapture:
    # FFmpeg explicitly: the default backend list would read a path containing %d as an image
    # sequence.
    capture = _ffmpeg_capture(path, [])
    if not capture.isOpened():
        capture.release()
        if not Path(path).is_file():
            raise SourceError(f"no such video file: {path}")
        raise SourceError(f"could not open {path}: not a video file OpenCV can read")
    return capture


def _open_device(index: int) -> CaptureSource:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"could not open device:{index}: no such camera, or it is in use")
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return CaptureSource(capture, f"device {index}")


def _open_stream(url: str, *, read_timeout: float) -> CaptureSource:
    shown = source_masked(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS[scheme]
    # Resolved and checked now, at every open; from here on only the checked address is used,
    # so the name cannot point somewhere else for the connect (DNS rebinding).
    try:
        address = _policy(source_policy.connect_address, parts.hostname, port)
    except (socket.gaierror, UnicodeError):
        # A password holding `#` or `/` makes urlsplit take a piece of it for the host: the host
        # is named only if the masked URL shows it too.
        host = f"host {parts.hostname}" if parts.hostname in shown else "its host"
        raise SourceError(f"could not open {shown}: {host} not found") from None
    # A plain TCP connect first: FFmpeg only says "could not open", this says why.
    try:
        with socket.create_connection((address, port), timeout=read_timeout):
            pass
    except ConnectionRefusedError:
        raise SourceError(f"could not open {shown}: connection refused") from None
    except TimeoutError:
        raise SourceError(f"could not open {shown}: no answer within {read_timeout:g} s") from None
    except OSError as error:
        raise SourceError(f"could not open {shown}: {error.strerror or error}") from None
    timeout_ms = max(1, int(read_timeout * 1000))
    capture = _ffmpeg_capture(
        _with_host(parts, address),
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms],
        host_header=_host_header(parts, scheme),
    )
    if not capture.isOpened():
        capture.release()
        reason = "the server answered but no video stream could be read"
        if scheme.startswith("rtsp"):
            reason += " (if it redirects: RTSP redirects are not followed, use the final address)"
        raise SourceError(f"could not open {shown}: {reason}")
    # Keep at most one frame queued: viewers want the newest frame, not a backlog.
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return CaptureSource(capture, shown)
