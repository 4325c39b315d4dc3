"""Video benchmark (issue 13): H.264 over the WebSocket against the JPEG paths, in the same run.

    python -m bench.video

Part 1, offline, the same frames for every codec: `--frames` (300) frames of the 640x480 `demo:`
scene at `--fps` (30), from a fixed moment (a car crosses in every 8 s), encoded
  - as JPEG at `--jpeg-quality` (75, the camera default; `cameras.vision.frames.encode_jpeg`),
    its messages built by the server's `PublishedFrame.build` (the seed's FrameData JSON with
    base64, and `?format=binary`'s message);
  - as H.264 by the camera's own `cameras.video_track.VideoTrack` (`cameras.video.h264`:
    libx264, zerolatency, constrained baseline, VBV cap; `cameras.video.fmp4`: one fragment per
    frame), each fragment framed with its JSON header by the fan-out's `fragment_message`.
The JPEGs are decoded with OpenCV, the fMP4 stream (init segment + every fragment) with PyAV's
mp4 demuxer, and every decoded frame is compared with its source frame by SSIM (Wang et al.
2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, on the luma Y' = 0.299 R + 0.587 G +
0.114 B of the RGB picture a viewer is shown, border pixels the window does not fit left out).
Bytes are the WebSocket messages' payloads one viewer receives per second at the frame rate
(WebSocket framing, 2-10 bytes a message, left out). Encode times are wall-clock ms per frame in
this process, one thread, with that thread's CPU time beside them (libx264 runs in the
caller's thread, `threads=1`; the process's CPU time, tried first, also counted other
threads and came out above the wall time); the H.264 figure is `VideoTrack.encode`
(colour conversion, libx264, the fragment), and JPEG is measured again after it so a busy spell
shows. Encoder settings are the server's VIDEO_CRF, VIDEO_MAX_KBPS and VIDEO_KEYFRAME_SECONDS
unless `--crf` (e.g. `23,25,28` to compare), `--max-kbps` or `--key-every` say otherwise. The
demo scene's grain is fixed (the same in every frame, so free for H.264 after a key frame);
`--noise 3` adds fresh noise to every frame, as a real sensor's, to see the codecs on that.

Part 2, live, through a real daphne on 127.0.0.1 (the capture worker in daphne,
CAMERAS_IN_PROCESS, as `bench.fanout` starts it), one `demo:` camera at `--fps`, 640 px, motion
detection, in three steps:
  1. while the camera has never had an H.264 viewer, `--join-viewers` (2) JSON and binary viewers
     watch while as many H.264 viewers join mid-window: the JPEG viewers' longest gap between
     frames shows whether starting the encoder disturbs them, their delays before the join and
     from a second after it what the running encoder adds to them (the pipeline publishes a
     frame once its H.264 fragment is encoded too), the joiners' times to their first JPEG and
     first fragment what a new viewer waits;
  2. `--bytes-viewers` (2) viewers of each format at once, `?format=json` (the default),
     `?format=binary` and `?format=h264`, over the same `--seconds`: bytes per second per viewer
     as received (WebSocket payloads), messages per second, capture-to-receive delay (the
     header's capture `timestamp` against the arrival time, same clock); one more H.264 viewer
     joins halfway, mid-group: the init and the group so far at once, its stream decoded too;
  3. fan-out, `--viewers` (100,200) viewers of `binary`, then of `h264`, each alone on the
     server, alternating `--repeat` (2) times: frames (fragments) per second per viewer, p50/p99
     delay, the longest gap, daphne's CPU and RSS; h264 against binary as ratios of medians. Each
     H.264 run says whether it found the camera's encoder running or started it; after each,
     the bench waits until the encoder has stopped (VIDEO_WATCHED_SECONDS after the last H.264
     viewer left), so binary is measured without it.
Every H.264 viewer checks the protocol as it goes (a JPEG first, then init, fragments from a key
fragment, `seq` in order or resuming at a key fragment, `media_time` = (seq - 1) frame
intervals), and what one viewer received from its init on is decoded with PyAV afterwards.

Viewers are bare RFC 6455 clients (bench.fanout's) in `--processes` client processes sharing the
machine's cores with daphne; their CPU is reported too. Traffic stays on 127.0.0.1, every loop is
bounded in count and time, daphne is stopped on the way out. Tables are printed as Markdown with
the machine's size and load; the figures go to bench/results/video-<time>.json.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import io
import json
import math
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import cv2
import numpy as np

from bench.fanout import (
    CONNECT_CONCURRENCY,
    CONNECT_TIMEOUT,
    RESULTS_DIR,
    Sightline,
    ViewerProtocol,
    ViewerTally,
    Window,
    _receive,
    _split,
    _viewer,
    check_frame_data,
    client_workers,
    cpu_seconds,
    frame_timestamp,
    percentile,
    rss_kib,
    window_open,
)
from bench.topology import Topology

WIDTH, HEIGHT = 640, 480
# A fixed moment, so every run encodes the same pictures (the demo scene is a function of time).
SCENE_START = 1_800_000_000.0
# The camera id in the messages, at its real length (a camera's public id is 12 characters).
CAMERA_ID = "benchcam0001"
# At most this many fragments (about 20 s at 30 fps) are kept by the viewer whose stream is
# decoded afterwards.
RECORD_LIMIT = 600
FORMATS = ("json", "binary", "h264")
MID_GOP = "h264 joining mid-group"


# --- settings, machine ------------------------------------------------------------------------


def video_settings() -> dict:
    """The server's encoder settings (project.settings, from the environment like daphne's)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    from django.conf import settings

    names = ("VIDEO_CRF", "VIDEO_MAX_KBPS", "VIDEO_KEYFRAME_SECONDS")
    overridden = [name for name in names if name in os.environ]
    source = "project.settings" + (
        f", {', '.join(overridden)} from the environment" * bool(overridden)
    )
    return {**{name: getattr(settings, name) for name in names}, "source": source}


def machine() -> dict:
    memory_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "ram_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def machine_line(info: dict) -> str:
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"Machine: {info['cpus']} CPUs, {info['ram_gib']:g} GiB RAM, {info['platform']}, "
        f"Python {info['python']}; load average (1/5/15 min) now {load}"
    )


# --- part 1: quality and cost, offline ----------------------------------------------------------


def luma(bgr: np.ndarray) -> np.ndarray:
    """Y' = 0.299 R + 0.587 G + 0.114 B (BT.601, full range), as float32 (for SSIM, within
    1e-6 of float64 and twice as fast)."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)


SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
_SSIM_EDGE = 5  # half the 11-pixel window: pixels nearer the border than this are left out


def _window_mean(image: np.ndarray) -> np.ndarray:
    # The sampled, normalised 11x11 Gaussian of sigma 1.5 (MATLAB's fspecial('gaussian', 11,
    # 1.5)); cropping the border keeps only windows wholly inside the image ("valid").
    blurred = cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)
    return blurred[_SSIM_EDGE:-_SSIM_EDGE, _SSIM_EDGE:-_SSIM_EDGE]


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of two luma images (float, 0-255)."""
    if reference.shape != test.shape:
        raise ValueError(f"SSIM of a {reference.shape} and a {test.shape} image")
    mu_x, mu_y = _window_mean(reference), _window_mean(test)
    xx = _window_mean(reference * reference) - mu_x * mu_x
    yy = _window_mean(test * test) - mu_y * mu_y
    xy = _window_mean(reference * test) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (xx + yy + SSIM_C2)
    return float(np.mean(numerator / denominator))


def scene_detections(scene, t: float) -> list[dict]:
    """The demo scene's true boxes as the seed's detections: a realistic header, the same in
    every format."""
    return [
        {"class": name, "confidence": 0.87, "bbox": [int(v) for v in box]}
        for name, box in (
            ("person", scene.person_box(t)),
            ("car", scene.car_box(t)),
            ("sports ball", scene.ball_box(t)),
        )
    ]


def _timing(wall_ms: list[float], cpu_ms: list[float]) -> dict:
    ordered = sorted(wall_ms)
    return {
        "ms_mean": statistics.fmean(wall_ms),
        "ms_p50": percentile(ordered, 0.50),
        "ms_p99": percentile(ordered, 0.99),
        "ms_max": ordered[-1],
        "cpu_ms_mean": statistics.fmean(cpu_ms),
    }


def _ssim_summary(values: list[float]) -> dict:
    return {"ssim_mean": statistics.fmean(values), "ssim_min": min(values)}


def render_frames(
    frames: int, fps: int, noise: float = 0.0
) -> tuple[list[np.ndarray], list[float]]:
    """The `demo:` camera's own scene; with `noise`, Gaussian noise of that sigma (in 0-255
    levels), new in every frame as a real sensor's is, added to each (the scene's own grain is
    fixed: the same in every frame, which costs H.264 nothing after a key frame)."""
    from cameras.vision.demo import DemoScene, demo_seed

    scene = DemoScene(WIDTH, HEIGHT, seed=demo_seed(""))
    times = [SCENE_START + i / fps for i in range(frames)]
    pictures = [scene.frame_at(t) for t in times]
    if noise > 0:
        rng = np.random.default_rng(13)
        pictures = [
            np.clip(p + rng.normal(0, noise, p.shape), 0, 255).astype(np.uint8) for p in pictures
        ]
    return pictures, times


def measure_jpeg(frames, times, *, fps: int, quality: int, scene, lumas: list | None) -> dict:
    """JPEG at `quality`: sizes of the server's own messages (`PublishedFrame.build`, which
    builds both the seed's FrameData JSON and the binary message), encode times, and (given the
    source lumas) SSIM."""
    from cameras.publishing import PublishedFrame
    from cameras.vision.frames import encode_jpeg

    wall, cpu, build_wall = [], [], []
    jpeg_bytes = json_bytes = binary_bytes = 0
    similarity = []
    for frame, t in zip(frames, times, strict=True):
        started, cpu_started = time.perf_counter(), time.thread_time()
        jpeg = encode_jpeg(frame, quality)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - cpu_started) * 1000)
        started = time.perf_counter()
        published = PublishedFrame.build(
            camera_id=CAMERA_ID,
            jpeg=jpeg,
            timestamp=int(t * 1000),
            detections=scene_detections(scene, t),
        )
        build_wall.append((time.perf_counter() - started) * 1000)
        jpeg_bytes += len(jpeg)
        json_bytes += len(published.text.encode())
        binary_bytes += len(published.binary)
        if lumas is not None:
            decoded = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
            similarity.append(ssim(lumas[len(similarity)], luma(decoded)))
    seconds = len(frames) / fps
    return {
        "quality": quality,
        "jpeg_bytes_per_frame": jpeg_bytes / len(frames),
        "json_bytes_per_second": json_bytes / seconds,
        "binary_bytes_per_second": binary_bytes / seconds,
        "encode": _timing(wall, cpu),
        "message_build_ms_mean": statistics.fmean(build_wall),
        **(_ssim_summary(similarity) if similarity else {}),
    }


@contextmanager
def encoder_settings(*, crf: int, max_kbps: int, keyframe_interval: int, fps: int):
    """The server's VIDEO_* settings as given, for the encoders made meanwhile."""
    from django.conf import settings

    names = ("VIDEO_CRF", "VIDEO_MAX_KBPS", "VIDEO_KEYFRAME_SECONDS")
    saved = {name: getattr(settings, name) for name in names}
    settings.VIDEO_CRF = crf
    settings.VIDEO_MAX_KBPS = max_kbps
    settings.VIDEO_KEYFRAME_SECONDS = keyframe_interval / fps
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


def measure_h264(
    frames, times, *, fps: int, crf: int, max_kbps: int, keyframe_interval: int, scene, lumas
) -> dict:
    """H.264 as the server makes it: the camera's `cameras.video_track.VideoTrack` (its
    H264Encoder and fMP4 fragments), each fragment framed with its header by the fan-out's own
    `fragment_message`; the stream decoded back by PyAV."""
    from cameras.publishing import PublishedFrame
    from cameras.video_fanout import fragment_message, init_message
    from cameras.video_track import VideoTrack

    with encoder_settings(crf=crf, max_kbps=max_kbps, keyframe_interval=keyframe_interval, fps=fps):
        track = VideoTrack(CAMERA_ID, fps=fps)
        init = b""
        codec = ""
        fragments: list[bytes] = []
        wall, cpu = [], []
        wire_bytes = fragment_bytes = keys = missing = 0
        key_sizes, other_sizes = [], []
        key_ms, other_ms = [], []
        first_ms = math.nan
        try:
            for frame, t in zip(frames, times, strict=True):
                started, cpu_started = time.perf_counter(), time.thread_time()
                fragment = track.encode(frame, int(t * 1000))
                elapsed = (time.perf_counter() - started) * 1000
                if fragment is None:
                    missing += 1
                    continue
                wall.append(elapsed)
                cpu.append((time.thread_time() - cpu_started) * 1000)
                if not init:
                    init = init_message(CAMERA_ID, fragment).payload
                    codec = fragment.codec
                published = PublishedFrame(
                    camera_id=CAMERA_ID,
                    timestamp=int(t * 1000),
                    detections=scene_detections(scene, t),
                    text="",
                    binary=b"",
                    video=fragment,
                )
                wire_bytes += len(fragment_message(published).payload)
                fragments.append(fragment.data)
                fragment_bytes += len(fragment.data)
                keys += fragment.key
                (key_sizes if fragment.key else other_sizes).append(len(fragment.data))
                if len(fragments) == 1:
                    first_ms = elapsed  # starts the encoder (and loads FFmpeg, the first time)
                else:
                    (key_ms if fragment.key else other_ms).append(elapsed)
        finally:
            track.close()
    init_segment = init[4 + int.from_bytes(init[:4], "big") :]
    decoded = decode_fmp4(init_segment, fragments)
    if len(decoded) != len(fragments):
        raise RuntimeError(f"{len(fragments)} fragments decoded into {len(decoded)} frames")
    similarity, native = [], []
    for (bgr, y_plane), frame, source in zip(decoded, frames, lumas, strict=False):
        similarity.append(ssim(source, luma(bgr)))
        # The codec's own luma (limited range, as the encoder was given it), for reference.
        source_y = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)[:HEIGHT].astype(np.float32)
        native.append(ssim(source_y, y_plane.astype(np.float32)))
    seconds = len(frames) / fps
    return {
        "crf": crf,
        "max_kbps": max_kbps,
        "keyframe_interval": keyframe_interval,
        "codec": codec,
        "frames_encoded": len(fragments),
        "frames_missing": missing,
        "key_frames": keys,
        "init_bytes": len(init),
        "key_fragment_bytes_mean": statistics.fmean(key_sizes) if key_sizes else 0.0,
        "other_fragment_bytes_mean": statistics.fmean(other_sizes) if other_sizes else 0.0,
        "fragment_bytes_per_second": fragment_bytes / seconds,
        "wire_bytes_per_second": wire_bytes / seconds,
        "encode": _timing(wall, cpu),
        "encode_first_ms": first_ms,
        "encode_key_ms_mean": statistics.fmean(key_ms) if key_ms else math.nan,
        "encode_other_ms_mean": statistics.fmean(other_ms) if other_ms else math.nan,
        **_ssim_summary(similarity),
        "ssim_native_luma_mean": statistics.fmean(native),
    }


def decode_fmp4(init: bytes, fragments: list[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every frame of init + fragments, decoded by PyAV (FFmpeg's mp4 demuxer and h264 decoder),
    as (BGR picture, Y plane)."""
    import av

    pictures = []
    with av.open(io.BytesIO(init + b"".join(fragments)), format="mp4") as container:
        for frame in container.decode(video=0):
            if frame.format.name != "yuv420p":
                raise RuntimeError(f"decoded {frame.format.name}, not the encoder's yuv420p")
            y_plane = frame.to_ndarray()[: frame.height]  # yuv420p: the Y rows, then U and V
            pictures.append((frame.to_ndarray(format="bgr24"), y_plane))
    return pictures


def run_offline(
    *,
    frames: int,
    fps: int,
    jpeg_quality: int,
    crfs: list[int],
    max_kbps: int,
    key_every: int,
    noise: float = 0.0,
) -> dict:
    from cameras.vision.demo import DemoScene, demo_seed

    scene = DemoScene(WIDTH, HEIGHT, seed=demo_seed(""))
    pictures, times = render_frames(frames, fps, noise)
    lumas = [luma(picture) for picture in pictures]
    jpeg = measure_jpeg(pictures, times, fps=fps, quality=jpeg_quality, scene=scene, lumas=lumas)
    h264 = [
        measure_h264(
            pictures,
            times,
            fps=fps,
            crf=crf,
            max_kbps=max_kbps,
            keyframe_interval=key_every,
            scene=scene,
            lumas=lumas,
        )
        for crf in crfs
    ]
    # JPEG once more after H.264, so a machine busier in one half does not favour either.
    again = measure_jpeg(pictures, times, fps=fps, quality=jpeg_quality, scene=scene, lumas=None)
    jpeg["encode_again"] = again["encode"]
    return {"frames": frames, "fps": fps, "noise": noise, "jpeg": jpeg, "h264": h264}


def _kbit(bytes_per_second: float) -> str:
    return f"{bytes_per_second * 8 / 1000:,.0f}"


def offline_tables(offline: dict) -> list[str]:
    jpeg, fps = offline["jpeg"], offline["fps"]
    json_rate = jpeg["json_bytes_per_second"]
    lines = [
        f"### Quality and bytes: {offline['frames']} frames of the 640x480 `demo:` scene "
        f"at {fps} fps, the same frames for every row"
        + (f", with sensor noise of sigma {offline['noise']:g}" if offline["noise"] else ""),
        "",
        "| stream | KiB/s | kbit/s | ÷ JSON | SSIM mean | SSIM min |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, rate: float, similarity: dict) -> str:
        return (
            f"| {name} | {rate / 1024:,.1f} | {_kbit(rate)} | 1/{json_rate / rate:.1f} | "
            f"{similarity['ssim_mean']:.4f} | {similarity['ssim_min']:.4f} |"
        )

    quality = jpeg["quality"]
    lines.append(row(f"FrameData JSON (base64 JPEG q{quality})", json_rate, jpeg))
    lines.append(row(f"binary JPEG q{quality}", jpeg["binary_bytes_per_second"], jpeg))
    for h264 in offline["h264"]:
        name = (
            f"H.264 fMP4 crf {h264['crf']}, cap {h264['max_kbps']} kbit/s, "
            f"key every {h264['keyframe_interval']}"
        )
        lines.append(row(name, h264["wire_bytes_per_second"], h264))
    lines += [
        "",
        "Bytes are the WebSocket messages' payloads as the server builds them (H.264: each "
        "fragment with its framed JSON header); the init message, sent once per viewer, is "
        + ", ".join(f"{h['init_bytes']} bytes" for h in offline["h264"][:1])
        + ". Fragment sizes (crf "
        + "; crf ".join(
            f"{h['crf']}): key {h['key_fragment_bytes_mean'] / 1024:.1f} KiB, "
            f"others {h['other_fragment_bytes_mean'] / 1024:.2f} KiB"
            for h in offline["h264"]
        )
        + f". JPEG q{quality}: {jpeg['jpeg_bytes_per_frame'] / 1024:.1f} KiB a frame.",
        "",
        "### Encode cost per frame, same run, one thread",
        "",
        "| encoder | ms mean | ms p50 | ms p99 | ms max | thread CPU ms mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cost(name: str, timing: dict) -> str:
        return (
            f"| {name} | {timing['ms_mean']:.2f} | {timing['ms_p50']:.2f} | "
            f"{timing['ms_p99']:.2f} | {timing['ms_max']:.2f} | {timing['cpu_ms_mean']:.2f} |"
        )

    lines.append(cost(f"JPEG q{quality} (cv2.imencode)", jpeg["encode"]))
    for h264 in offline["h264"]:
        lines.append(
            cost(f"H.264 crf {h264['crf']} (convert + libx264 + fragment)", h264["encode"])
        )
    lines.append(cost(f"JPEG q{quality} again, after H.264", jpeg["encode_again"]))
    lines += [
        "",
        "H.264 by frame type (ms mean): "
        + "; ".join(
            f"crf {h['crf']}: key frames {h['encode_key_ms_mean']:.2f} ({h['key_frames'] - 1} "
            f"of {h['frames_encoded']} after the first), others {h['encode_other_ms_mean']:.2f}, "
            f"the first frame {h['encode_first_ms']:.1f} (it starts the encoder)"
            for h in offline["h264"]
        )
        + ".",
        f"Building the JPEG messages (base64, FrameData JSON, binary: `PublishedFrame.build`) "
        f"adds {jpeg['message_build_ms_mean']:.2f} ms a frame. SSIM: luma of the RGB picture shown, against the source's; H.264 on its "
        "own (limited-range) Y plane: "
        + ", ".join(f"crf {h['crf']} {h['ssim_native_luma_mean']:.4f}" for h in offline["h264"])
        + ".",
    ]
    return lines


# --- part 2: live, through daphne ---------------------------------------------------------------


@dataclass
class VideoTally(ViewerTally):
    """A viewer's counts; messages/payload_bytes are those of the window, the rest of its life."""

    format: str = ""
    window_video: int = 0  # fragments (h264) or frames (JPEG formats) in the window
    jpeg_messages: int = 0
    init_messages: int = 0
    video_messages: int = 0
    key_messages: int = 0
    seq_jumps: int = 0  # fragments skipped by the server (seq did not follow on)
    skipped_fragments: int = 0
    stream_changes: int = 0
    streams: list[str] = field(default_factory=list)  # the stream ids of the inits received
    protocol_errors: list[str] = field(default_factory=list)
    # Milliseconds from the TCP connection to the first JPEG, the init, the first fragment.
    first_jpeg_ms: float = math.nan
    first_init_ms: float = math.nan
    first_video_ms: float = math.nan
    # Fragments that arrived within 20 ms of the first one: the join burst (init to live edge).
    burst_fragments: int = 0
    # The longest wait between two counted messages in the window: a stall shows here.
    max_gap_ms: float = 0.0
    first_kinds: list[str] = field(default_factory=list)

    def error(self, problem: str) -> None:
        if len(self.protocol_errors) < 5 and problem not in self.protocol_errors:
            self.protocol_errors.append(problem)


class FormatViewer(ViewerProtocol):
    """A viewer of one format: JSON FrameData, binary JPEG, or H.264 (JPEG, init, fragments)."""

    def __init__(
        self, *, format: str, fps: int, record: list | None, arrivals: array.array, **kwargs
    ) -> None:
        super().__init__(slow=False, **kwargs)
        self.arrivals = arrivals  # beside each latency sample, when it arrived
        self.format = format
        self.fps = fps
        self.record = record
        self.opened = time.time()
        self.stream = ""
        self.last_seq: int | None = None
        self.need_key = True
        self.first_video_at = math.nan
        self.last_counted = math.nan

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.opened = time.time()  # join times count from the TCP connection, not the queue

    def _message(self, buffer: bytearray, start: int, end: int, now: float) -> None:
        tally: VideoTally = self.tally  # type: ignore[assignment]
        if self.format == "json":
            if not self.first_message.done():
                try:
                    check_frame_data(bytes(buffer[start:end]))
                except ValueError as error:
                    self._fail(f"not FrameData: {error}")
                    return
            timestamp = frame_timestamp(buffer, start, end)
            kind = "frame"
        else:
            try:
                length = int.from_bytes(buffer[start : start + 4], "big")
                header = json.loads(buffer[start + 4 : start + 4 + length])
                timestamp = header.get("timestamp")
            except ValueError as error:
                self._fail(f"not a binary frame: {error}")
                return
            kind = header.get("kind") or "jpeg"
            if self.format == "h264" and not self._check(header, kind, now):
                if self.record is not None:
                    self.record = None  # a broken stream is not decoded
            if self.record is not None and kind in ("init", "video") and self.stream:
                if len(self.record) < RECORD_LIMIT and header.get("stream") == self.stream:
                    self.record.append((kind, bytes(buffer[start + 4 + length : end])))
        if len(tally.first_kinds) < 4:
            tally.first_kinds.append(kind)
        if not self.first_message.done():
            self.first_message.set_result(None)
        if self.window.start <= now < self.window.end:
            tally.messages += 1
            tally.payload_bytes += end - start
            counted = kind == "video" if self.format == "h264" else True
            if counted and isinstance(timestamp, int | float):
                if not math.isnan(self.last_counted):
                    tally.max_gap_ms = max(tally.max_gap_ms, (now - self.last_counted) * 1000)
                self.last_counted = now
                tally.window_video += 1
                self.samples.append(now * 1000.0 - timestamp)
                self.arrivals.append(now)
                self.frames_seen.add(float(timestamp))

    def _check(self, header: dict, kind: str, now: float) -> bool:
        """The issue 13 protocol, message by message; False (and an error noted) when broken."""
        tally: VideoTally = self.tally  # type: ignore[assignment]
        since = (now - self.opened) * 1000.0
        if kind == "jpeg":
            tally.jpeg_messages += 1
            if math.isnan(tally.first_jpeg_ms):
                tally.first_jpeg_ms = since
            if tally.video_messages:
                tally.error("a JPEG frame after video had started")
            return True
        if kind == "init":
            tally.init_messages += 1
            if math.isnan(tally.first_init_ms):
                tally.first_init_ms = since
            elif header.get("stream") != self.stream:
                tally.stream_changes += 1
            if not str(header.get("codec", "")).startswith("avc1."):
                tally.error(f"init codec {header.get('codec')!r}")
            self.stream = str(header.get("stream", ""))
            if self.stream not in tally.streams and len(tally.streams) < 10:
                tally.streams.append(self.stream)
            self.last_seq, self.need_key = None, True
            return True
        if kind != "video":
            tally.error(f"unknown kind {kind!r}")
            return False
        tally.video_messages += 1
        tally.key_messages += bool(header.get("key"))
        if math.isnan(tally.first_video_ms):
            tally.first_video_ms = since
            self.first_video_at = now
        if now - self.first_video_at <= 0.020:
            tally.burst_fragments += 1
        ok = True
        if not self.stream or header.get("stream") != self.stream:
            tally.error("a fragment without its stream's init")
            ok = False
        seq = header.get("seq")
        if not isinstance(seq, int):
            tally.error("a fragment without an integer seq")
            return False
        if self.last_seq is not None and seq != self.last_seq + 1:
            if seq <= self.last_seq:
                tally.error(f"seq went from {self.last_seq} to {seq}")
                ok = False
            else:
                tally.seq_jumps += 1
                tally.skipped_fragments += seq - self.last_seq - 1
                self.need_key = True
        if self.need_key and not header.get("key"):
            tally.error("fragments resumed at a non-key fragment")
            ok = False
        self.need_key = False
        self.last_seq = seq
        media_time = header.get("media_time")
        # (seq - 1) frame intervals, the interval a whole number of 90 kHz ticks (fmp4).
        expected = (seq - 1) * (90_000 // self.fps) / 90_000
        if not isinstance(media_time, int | float) or abs(media_time - expected) > 1e-6:
            tally.error(f"media_time {media_time!r} for seq {seq} at {self.fps} fps")
            ok = False
        if not isinstance(header.get("timestamp"), int | float):
            tally.error("a fragment without a capture timestamp")
            ok = False
        return ok


async def _client_main(pipe: Connection, spec: dict) -> dict:
    window = Window()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    groups = {}
    openings, late = [], []
    for group in spec["groups"]:
        name = group["name"]
        state = {
            "tallies": [],
            "latencies": array.array("d"),
            "arrivals": array.array("d"),
            "frames_seen": set(),
            "record": [] if group["record"] else None,
        }
        groups[name] = state
        for index in range(group["count"]):
            tally = VideoTally(format=group["format"])
            state["tallies"].append(tally)
            record = state["record"] if index == 0 else None

            def factory(key: bytes, tally=tally, state=state, group=group, record=record):
                return FormatViewer(
                    key=key,
                    window=window,
                    tally=tally,
                    samples=state["latencies"],
                    arrivals=state["arrivals"],
                    frames_seen=state["frames_seen"],
                    format=group["format"],
                    fps=spec["fps"],
                    record=record,
                )

            opening = (group["join_after"], _viewer(group["url"], spec["headers"], gate, factory))
            (late if group["join_after"] else openings).append(opening)
    viewers = [v for v in await asyncio.gather(*(o for _, o in openings)) if v is not None]

    async def join_late(after: float, opening) -> None:
        await asyncio.sleep(max(0.0, window.start + after - time.time()))
        viewer = await opening
        if viewer is not None:
            viewers.append(viewer)

    joining = []
    try:
        pipe.send(("connected", len(viewers)))
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, pipe.poll, CONNECT_TIMEOUT * 2):
            raise TimeoutError("the parent never sent the measurement window")
        _, window.start, window.end = pipe.recv()
        joining = [asyncio.create_task(join_late(after, opening)) for after, opening in late]
        await asyncio.sleep(max(0.0, window.end - time.time()))
    finally:
        for task in joining:
            task.cancel()
        for viewer in viewers:
            viewer.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "groups": {
            name: {
                "tallies": [asdict(t) for t in state["tallies"]],
                "latencies": state["latencies"].tobytes(),
                "arrivals": state["arrivals"].tobytes(),
                "frames_seen": sorted(state["frames_seen"]),
                "record": state["record"],
            }
            for name, state in groups.items()
        },
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def _client_process(pipe: Connection, spec: dict) -> None:
    try:
        pipe.send(("done", asyncio.run(_client_main(pipe, spec))))
    except BaseException as error:  # noqa: BLE001 - the parent must hear why, whatever it was
        pipe.send(("failed", f"{type(error).__name__}: {error}"))
        raise


@dataclass(frozen=True)
class Group:
    name: str
    format: str
    count: int
    record: bool = False
    # Seconds into the window at which these viewers connect (0: before the window opens).
    join_after: float = 0.0


def _url(base: str, format: str) -> str:
    return base if format == "json" else f"{base}?format={format}"


def measure_live(
    *,
    base_url: str,
    headers: dict[str, str],
    server_pid: int,
    groups: list[Group],
    fps: int,
    seconds: float,
    warmup: float,
    processes: int,
    split_at: float | None = None,
) -> dict:
    """All `groups` connected at once, then measured over the same window. With `split_at`
    (seconds into the window), each group's delays are also given before that moment and from
    a second after it on."""
    total = sum(group.count for group in groups)
    processes = max(1, min(processes, total))
    shares = {group.name: _split(group.count, processes) for group in groups}
    specs = [
        {
            "headers": headers,
            "fps": fps,
            "groups": [
                {
                    "name": group.name,
                    "format": group.format,
                    "url": _url(base_url, group.format),
                    "count": shares[group.name][index],
                    "record": group.record and index == 0,
                    "join_after": group.join_after,
                }
                for group in groups
            ],
        }
        for index in range(processes)
    ]
    with client_workers(_client_process, specs) as pipes:
        start, end = window_open(pipes, warmup=warmup, seconds=seconds)
        time.sleep(max(0.0, start - time.time()))
        load_average = os.getloadavg()[0]
        rss_start = rss_kib(server_pid)
        cpu_start = cpu_seconds(server_pid)
        time.sleep(max(0.0, end - time.time()))
        cpu_end = cpu_seconds(server_pid)
        rss_end = rss_kib(server_pid)
        results = [_receive(pipe, "done", seconds + 60) for pipe in pipes]
    figures = {
        group.name: summarize_group(group, [r["groups"][group.name] for r in results], seconds)
        for group in groups
    }
    if split_at is not None:
        for group in groups:
            parts = [r["groups"][group.name] for r in results]
            figures[group.name]["phases"] = phases(parts, start + split_at, settle=1.0)
    return {
        "seconds": seconds,
        "groups": figures,
        "server_cpu_percent": 100.0 * (cpu_end - cpu_start) / seconds,
        "server_rss_mib_start": rss_start / 1024,
        "server_rss_mib_end": rss_end / 1024,
        "clients_cpu_seconds": sum(r["cpu_seconds"] for r in results),
        "load_average": load_average,
    }


def phases(parts: list[dict], split: float, *, settle: float) -> dict:
    """Delays (p50/p99, ms) of the messages that arrived before `split` (Unix s) and of those
    from `settle` seconds after it on."""
    before, after = [], []
    for part in parts:
        latencies = array.array("d", part["latencies"])
        arrivals = array.array("d", part["arrivals"])
        for latency, arrival in zip(latencies, arrivals, strict=True):
            if arrival < split:
                before.append(latency)
            elif arrival >= split + settle:
                after.append(latency)
    before.sort()
    after.sort()
    return {
        "before_p50": percentile(before, 0.5),
        "before_p99": percentile(before, 0.99),
        "before_samples": len(before),
        "after_p50": percentile(after, 0.5),
        "after_p99": percentile(after, 0.99),
        "after_samples": len(after),
        "settle_seconds": settle,
    }


def _nan_stats(values: list[float]) -> tuple[float, float]:
    values = sorted(v for v in values if not math.isnan(v))
    return (percentile(values, 0.5), values[-1]) if values else (math.nan, math.nan)


def summarize_group(group: Group, parts: list[dict], seconds: float) -> dict:
    tallies = [t for part in parts for t in part["tallies"]]
    latencies: list[float] = []
    for part in parts:
        latencies.extend(array.array("d", part["latencies"]))
    latencies.sort()
    produced = set().union(*(part["frames_seen"] for part in parts))
    healthy = [t for t in tallies if t["connected"] and not t["closed_early"] and t["window_video"]]
    # Viewers that joined during the window are counted over the part of it they saw.
    fps = [t["window_video"] / (seconds - group.join_after) for t in healthy]
    errors = sorted({e for t in tallies for e in ([t["error"]] if t["error"] else [])})
    protocol_errors = sorted({e for t in tallies for e in t["protocol_errors"]})
    figures = {
        "name": group.name,
        "format": group.format,
        "viewers": group.count,
        "failed": len(tallies) - len(healthy),
        "fps_mean": statistics.fmean(fps) if fps else 0.0,
        "fps_min": min(fps) if fps else 0.0,
        "source_fps": len(produced) / seconds,
        "latency_ms_p50": percentile(latencies, 0.50),
        "latency_ms_p99": percentile(latencies, 0.99),
        "latency_ms_max": latencies[-1] if latencies else math.nan,
        "max_gap_ms": max((t["max_gap_ms"] for t in healthy), default=math.nan),
        "bytes_per_second_per_viewer": (
            sum(t["payload_bytes"] for t in healthy) / len(healthy) / seconds if healthy else 0.0
        ),
        "messages_per_second_per_viewer": (
            sum(t["messages"] for t in healthy) / len(healthy) / seconds if healthy else 0.0
        ),
        "errors": errors[:10],
        "protocol_errors": protocol_errors[:10],
    }
    if group.format == "h264":
        join_jpeg = _nan_stats([t["first_jpeg_ms"] for t in tallies])
        join_video = _nan_stats([t["first_video_ms"] for t in tallies])
        figures.update(
            {
                "first_kinds": sorted({"/".join(t["first_kinds"][:3]) for t in tallies}),
                "viewers_without_jpeg_first": sum(
                    1 for t in tallies if t["first_kinds"][:1] != ["jpeg"]
                ),
                "seq_jumps": sum(t["seq_jumps"] for t in tallies),
                "skipped_fragments": sum(t["skipped_fragments"] for t in tallies),
                "stream_changes": sum(t["stream_changes"] for t in tallies),
                "streams": sorted({stream for t in tallies for stream in t["streams"]}),
                "key_fragments_per_viewer": (
                    statistics.fmean(t["key_messages"] for t in tallies) if tallies else 0.0
                ),
                "join_first_jpeg_ms_p50": join_jpeg[0],
                "join_first_jpeg_ms_max": join_jpeg[1],
                "join_first_video_ms_p50": join_video[0],
                "join_first_video_ms_max": join_video[1],
                "join_burst_fragments_mean": (
                    statistics.fmean(t["burst_fragments"] for t in tallies) if tallies else 0.0
                ),
            }
        )
        record = next((part["record"] for part in parts if part["record"]), None)
        if record is not None:
            figures["decoded"] = check_recorded(record)
    return figures


def check_recorded(record: list[tuple[str, bytes]]) -> dict:
    """Decode what one viewer received from its init on, as a browser's MSE would be fed it."""
    inits = [payload for kind, payload in record if kind == "init"]
    fragments = [payload for kind, payload in record if kind == "video"]
    if not inits or not fragments:
        return {"fragments": len(fragments), "frames": 0, "error": "no init or no fragment"}
    try:
        frames = decode_fmp4(inits[0], fragments)
    except Exception as error:  # noqa: BLE001 - a broken stream is a finding, not a crash
        return {
            "fragments": len(fragments),
            "frames": 0,
            "error": f"{type(error).__name__}: {error}",
        }
    size = f"{frames[0][0].shape[1]}x{frames[0][0].shape[0]}" if frames else ""
    return {"fragments": len(fragments), "frames": len(frames), "size": size, "error": ""}


def server_log(work_dir: Path) -> dict:
    """What daphne logged (LOG_LEVEL WARNING): its warnings and errors are findings."""
    text = "".join(path.read_text(errors="replace") for path in sorted(work_dir.glob("*.log")))
    problems = [
        line.strip()
        for line in text.splitlines()
        if "Traceback" in line or "ERROR" in line or "WARNING" in line or "Exception" in line
    ]
    return {"problem_lines": len(problems), "first_problems": problems[:20], "tail": text[-3000:]}


def run_live(args: argparse.Namespace, emit: Callable[[str], None], work_dir: Path) -> dict:
    sightline = Sightline(
        work_dir=work_dir,
        fps=args.fps,
        detectors=[d for d in args.detectors.split(",") if d.strip()],
        layer="memory",
        redis_url="",
        database_url="",
    )
    sightline.prepare()
    live: dict = {"jpeg_quality": sightline.jpeg_quality, "bytes": None, "fanout": []}
    viewer_counts = [int(v) for v in args.viewers.split(",") if v.strip()]
    with sightline.server(Topology()) as target:
        common = {
            "base_url": target.url,
            "headers": target.headers,
            "server_pid": target.pid,
            "fps": args.fps,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "processes": args.processes,
        }
        if args.join_viewers:
            # First, while the camera has never had an H.264 viewer: its encoder starts cold.
            join_after = round(args.seconds * 0.4, 2)
            groups = [
                Group("json", "json", args.join_viewers),
                Group("binary", "binary", args.join_viewers),
                Group("h264", "h264", args.join_viewers, join_after=join_after),
            ]
            # Longer after the join than before it: the delays with the encoder running.
            join_common = {**common, "seconds": args.seconds + 3}
            live["join"] = measure_live(groups=groups, split_at=join_after, **join_common)
            live["join"]["join_after"] = join_after
            for line in join_table(live["join"], args):
                emit(line)
            emit("")
        if args.bytes_viewers:
            groups = [
                Group(name, name, args.bytes_viewers, record=name == "h264") for name in FORMATS
            ]
            # And one more H.264 viewer joining mid-window, so mid-group while the others watch:
            # it gets the init and the group so far at once; its stream is decoded too.
            mid_gop = round(args.seconds * 0.55, 2)
            groups.append(Group(MID_GOP, "h264", 1, record=True, join_after=mid_gop))
            live["bytes"] = measure_live(groups=groups, **common)
            live["bytes"]["mid_gop_join_after"] = mid_gop
            for line in bytes_table(live["bytes"], args):
                emit(line)
        if viewer_counts:
            emit("")
            emit(FANOUT_HEADER)
        streams_seen = {
            stream
            for part in (live.get("join"), live["bytes"])
            if part
            for stream in part["groups"]["h264"].get("streams", [])
        }
        for viewers in viewer_counts:
            for run in range(1, args.repeat + 1):
                for format in args.fanout_formats.split(","):
                    result = measure_live(groups=[Group(format, format, viewers)], **common)
                    result.update(viewers=viewers, format=format, run=run)
                    streams = set(result["groups"][format].get("streams", []))
                    # A stream id not seen before: the encoder was (re)started for these viewers.
                    result["new_stream"] = bool(streams - streams_seen) if streams else None
                    streams_seen |= streams
                    live["fanout"].append(result)
                    emit(fanout_row(result))
                    if format == "h264":
                        encoder_stopped()
        live["fanout_ratios"] = fanout_ratios(live["fanout"])
        for line in ratio_lines(live["fanout_ratios"]):
            emit(line)
    # After daphne stopped: its log is complete.
    live["server_log"] = server_log(work_dir)
    problems = live["server_log"]["first_problems"]
    emit("")
    emit(
        f"daphne's log: {live['server_log']['problem_lines']} warning/error lines"
        + (":" if problems else ".")
    )
    for line in problems[:8]:
        emit(f"    {line[:300]}")
    return live


def encoder_stopped() -> None:
    """Wait until the camera's encoder has stopped: it stops within VIDEO_WATCHED_SECONDS of
    the last H.264 viewer leaving, noticed at its next demand check."""
    from cameras.publishing import VIDEO_WATCHED_SECONDS
    from cameras.video_track import DEMAND_CHECK_SECONDS

    time.sleep(VIDEO_WATCHED_SECONDS + DEMAND_CHECK_SECONDS + 0.5)


def join_table(result: dict, args: argparse.Namespace) -> list[str]:
    groups = result["groups"]
    h264 = groups["h264"]
    lines = [
        f"### Live: the first H.264 viewers join a camera watched as JPEG ({args.join_viewers} "
        f"viewer(s) of each format; H.264 joins {result['join_after']:g} s into a "
        f"{result['seconds']:g} s window)",
        "",
        "| format | fps per viewer | p50 ms | p99 ms | max gap ms | failed | p50 / p99 ms before "
        "the join | p50 / p99 ms from 1 s after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in FORMATS:
        group = groups[name]
        phase = group.get("phases", {})
        before = (
            f"{phase.get('before_p50', math.nan):.1f} / {phase.get('before_p99', math.nan):.1f}"
        )
        after = f"{phase.get('after_p50', math.nan):.1f} / {phase.get('after_p99', math.nan):.1f}"
        lines.append(
            f"| {name}{' (joining)' if name == 'h264' else ''} | {group['fps_mean']:.1f} | "
            f"{group['latency_ms_p50']:.1f} | {group['latency_ms_p99']:.1f} | "
            f"{group['max_gap_ms']:.0f} | {group['failed']} | "
            f"{before if name != 'h264' else '-'} | {after} |"
        )
    lines += [
        "",
        f"The joining H.264 viewers (encoder cold): first messages "
        f"{', '.join(h264.get('first_kinds', [])) or 'none'}; first JPEG after "
        f"{h264.get('join_first_jpeg_ms_p50', math.nan):.0f} ms (max "
        f"{h264.get('join_first_jpeg_ms_max', math.nan):.0f}), first fragment after "
        f"{h264.get('join_first_video_ms_p50', math.nan):.0f} ms (max "
        f"{h264.get('join_first_video_ms_max', math.nan):.0f}) from connecting; protocol "
        f"errors: {', '.join(h264['protocol_errors']) or 'none'}; daphne CPU "
        f"{result['server_cpu_percent']:.0f} %, load average {result['load_average']:.2f}.",
    ]
    failures = [
        f"{name}: {', '.join(groups[name]['errors'])}" for name in FORMATS if groups[name]["errors"]
    ]
    if failures:
        lines.append("Viewer errors: " + "; ".join(failures))
    return lines


def bytes_table(result: dict, args: argparse.Namespace) -> list[str]:
    groups = result["groups"]
    json_rate = groups["json"]["bytes_per_second_per_viewer"]
    lines = [
        f"### Live, one daphne on 127.0.0.1: {args.bytes_viewers} viewer(s) of each format at "
        f"once, the same {result['seconds']:g} s",
        "",
        f"One `demo:` camera at {args.fps} fps, 640 px, detectors `{args.detectors}`; daphne "
        f"CPU {result['server_cpu_percent']:.0f} % of a core, load average "
        f"{result['load_average']:.2f}.",
        "",
        "| format | KiB/s per viewer | kbit/s | ÷ JSON | msgs/s | frames/s | p50 ms | p99 ms "
        "| max gap ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in FORMATS:
        group = groups[name]
        rate = group["bytes_per_second_per_viewer"]
        ratio = f"1/{json_rate / rate:.1f}" if rate and json_rate else "-"
        lines.append(
            f"| `{'?format=' + name if name != 'json' else 'default (JSON)'}` | "
            f"{rate / 1024:,.1f} | {_kbit(rate)} | {ratio} | "
            f"{group['messages_per_second_per_viewer']:.1f} | {group['fps_mean']:.1f} | "
            f"{group['latency_ms_p50']:.1f} | {group['latency_ms_p99']:.1f} | "
            f"{group['max_gap_ms']:.0f} |"
        )
    h264 = groups["h264"]
    decoded = h264.get("decoded", {})
    lines += [
        "",
        f"H.264 viewers: first messages {', '.join(h264.get('first_kinds', []))}; first JPEG "
        f"after {h264.get('join_first_jpeg_ms_p50', math.nan):.0f} ms, first fragment after "
        f"{h264.get('join_first_video_ms_p50', math.nan):.0f} ms (p50), "
        f"{h264.get('join_burst_fragments_mean', 0):.1f} fragments in the join burst; "
        f"{h264.get('seq_jumps', 0)} seq jumps, {h264.get('stream_changes', 0)} stream changes; "
        f"protocol errors: {', '.join(h264['protocol_errors']) or 'none'}; one viewer's stream "
        f"decoded by PyAV: {decoded.get('frames', 0)} frames of {decoded.get('fragments', 0)} "
        f"fragments {decoded.get('size', '')}"
        + (f" ERROR {decoded['error']}" if decoded.get("error") else "")
        + ".",
    ]
    joiner = groups.get(MID_GOP)
    if joiner is not None:
        decoded = joiner.get("decoded", {})
        lines += [
            "",
            f"One more H.264 viewer joined {result['mid_gop_join_after']:g} s into the window, "
            f"while those watched: first messages {', '.join(joiner.get('first_kinds', []))}; "
            f"first JPEG after {joiner.get('join_first_jpeg_ms_p50', math.nan):.0f} ms, first "
            f"fragment after {joiner.get('join_first_video_ms_p50', math.nan):.0f} ms, "
            f"{joiner.get('join_burst_fragments_mean', 0):.0f} fragments in its join burst; "
            f"protocol errors: {', '.join(joiner['protocol_errors']) or 'none'}; its stream "
            f"decoded by PyAV: {decoded.get('frames', 0)} frames of "
            f"{decoded.get('fragments', 0)} fragments"
            + (f" ERROR {decoded['error']}" if decoded.get("error") else "")
            + ".",
        ]
    failures = [
        f"{name}: {', '.join(group['errors'])}" for name, group in groups.items() if group["errors"]
    ]
    if failures:
        lines.append("Viewer errors: " + "; ".join(failures))
    return lines


def fanout_ratios(fanout: list[dict]) -> list[dict]:
    """h264 against binary at each viewer count: fps, p99 and daphne CPU as ratios."""
    ratios = []

    def median(runs: list[dict], format: str, key: str) -> float:
        values = [
            run["groups"][format][key] if key in run["groups"][format] else run[key] for run in runs
        ]
        return statistics.median(values)

    def ratio(x: float, y: float) -> float:
        return x / y if y else math.nan

    for viewers in sorted({run["viewers"] for run in fanout}):
        h264 = [r for r in fanout if r["viewers"] == viewers and r["format"] == "h264"]
        binary = [r for r in fanout if r["viewers"] == viewers and r["format"] == "binary"]
        if not h264 or not binary:
            continue
        ratios.append(
            {
                "viewers": viewers,
                "runs": min(len(h264), len(binary)),
                "cpu_points": median(h264, "h264", "server_cpu_percent")
                - median(binary, "binary", "server_cpu_percent"),
                **{
                    f"{name}_ratio": ratio(median(h264, "h264", key), median(binary, "binary", key))
                    for name, key in (
                        ("fps", "fps_mean"),
                        ("p99", "latency_ms_p99"),
                        ("cpu", "server_cpu_percent"),
                        ("bytes", "bytes_per_second_per_viewer"),
                    )
                },
            }
        )
    return ratios


def ratio_lines(ratios: list[dict]) -> list[str]:
    if not ratios:
        return []
    lines = ["", "h264 ÷ binary at the same viewer count (medians of the runs):", ""]
    for r in ratios:
        lines.append(
            f"- {r['viewers']} viewers ({r['runs']} runs each): fps x{r['fps_ratio']:.3f}, "
            f"p99 x{r['p99_ratio']:.2f}, daphne CPU x{r['cpu_ratio']:.2f} "
            f"({r['cpu_points']:+.0f} points of a core), bytes per viewer x{r['bytes_ratio']:.3f}"
        )
    return lines


FANOUT_HEADER = "\n".join(
    [
        "### Live fan-out, one daphne, each format alone on the server",
        "",
        "| viewers | run | format | src fps | fps per viewer | fps min | p50 ms | p99 ms "
        "| max gap ms | failed | KiB/s per viewer | daphne CPU | RSS MiB | clients CPU s | load | notes |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
)


def fanout_row(result: dict) -> str:
    group = result["groups"][result["format"]]
    notes = []
    if group["format"] == "h264":
        jpeg = f"{group['join_first_jpeg_ms_p50']:.0f}/{group['join_first_jpeg_ms_max']:.0f}"
        video = f"{group['join_first_video_ms_p50']:.0f}/{group['join_first_video_ms_max']:.0f}"
        notes.append(f"join: JPEG {jpeg} ms, video {video} ms (p50/max)")
        if group["seq_jumps"]:
            notes.append(f"{group['seq_jumps']} seq jumps ({group['skipped_fragments']} skipped)")
        if group["stream_changes"]:
            notes.append(f"{group['stream_changes']} stream changes")
        if result.get("new_stream") is not None:
            notes.append("encoder started for them" if result["new_stream"] else "same stream")
    notes += group["protocol_errors"][:3] + group["errors"][:3]
    return (
        f"| {result['viewers']} | {result['run']} | {group['format']} | "
        f"{group['source_fps']:.1f} | {group['fps_mean']:.1f} | {group['fps_min']:.1f} | {group['latency_ms_p50']:.1f} | "
        f"{group['latency_ms_p99']:.1f} | {group['max_gap_ms']:.0f} | {group['failed']} | "
        f"{group['bytes_per_second_per_viewer'] / 1024:,.1f} | "
        f"{result['server_cpu_percent']:.0f}% | "
        f"{result['server_rss_mib_start']:.0f}→{result['server_rss_mib_end']:.0f} | "
        f"{result['clients_cpu_seconds']:.1f} | {result['load_average']:.2f} | "
        f"{'; '.join(notes)} |"
    )


# --- against issue 13's targets ----------------------------------------------------------------


def targets(report: dict) -> list[dict]:
    """Issue 13's figures, each with what this run measured and whether it meets it."""
    found = []

    def add(target: str, measured: str, met: bool) -> None:
        found.append({"target": target, "measured": measured, "met": bool(met)})

    offline = report.get("offline")
    if offline:
        jpeg = offline["jpeg"]
        for h264 in offline["h264"]:
            ratio = jpeg["json_bytes_per_second"] / h264["wire_bytes_per_second"]
            add(
                f"crf {h264['crf']}: H.264 bytes <= 1/10 of FrameData JSON (offline)",
                f"1/{ratio:.1f}",
                ratio >= 10,
            )
            add(
                f"crf {h264['crf']}: SSIM >= JPEG q{jpeg['quality']}'s",
                f"{h264['ssim_mean']:.4f} vs {jpeg['ssim_mean']:.4f}",
                h264["ssim_mean"] >= jpeg["ssim_mean"],
            )
            encode = h264["encode"]
            add(
                f"crf {h264['crf']}: encoding <= 3 ms a frame",
                f"mean {encode['ms_mean']:.2f} ms wall, {encode['cpu_ms_mean']:.2f} ms thread CPU; "
                f"key frames {h264['encode_key_ms_mean']:.1f} ms",
                encode["cpu_ms_mean"] <= 3,
            )
    live = report.get("live") or {}
    if live.get("bytes"):
        groups = live["bytes"]["groups"]
        json_rate = groups["json"]["bytes_per_second_per_viewer"]
        h264_rate = groups["h264"]["bytes_per_second_per_viewer"]
        if json_rate and h264_rate:
            add(
                "live: H.264 bytes per viewer <= 1/10 of JSON's",
                f"1/{json_rate / h264_rate:.1f}",
                json_rate / h264_rate >= 10,
            )
    for ratio in live.get("fanout_ratios", []):
        add(
            f"live fan-out, {ratio['viewers']} viewers: H.264 holds the JPEG path's fps and p99",
            f"fps x{ratio['fps_ratio']:.3f}, p99 x{ratio['p99_ratio']:.2f}",
            ratio["fps_ratio"] >= 0.98 and ratio["p99_ratio"] <= 1.5,
        )
    return found


def target_lines(found: list[dict]) -> list[str]:
    if not found:
        return []
    lines = [
        "### Against issue 13's figures (fan-out: fps >= 0.98x and p99 <= 1.5x binary's, as bench.fanout judges)",
        "",
        "| target | this run | |",
        "|---|---|---|",
    ]
    for item in found:
        lines.append(
            f"| {item['target']} | {item['measured']} | {'meets' if item['met'] else 'MISSES'} |"
        )
    return [*lines, ""]


# --- the command --------------------------------------------------------------------------------


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return len(value)
    return value


def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> dict:
    encoder = video_settings()
    crfs = [int(c) for c in args.crf.split(",")] if args.crf else [int(encoder["VIDEO_CRF"])]
    max_kbps = args.max_kbps or int(encoder["VIDEO_MAX_KBPS"])
    key_every = args.key_every or max(1, round(float(encoder["VIDEO_KEYFRAME_SECONDS"]) * args.fps))
    info = machine()
    report: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "encoder_settings": encoder,
        "settings": {
            **{k: v for k, v in vars(args).items()},
            "crfs": crfs,
            "max_kbps": max_kbps,
            "key_every": key_every,
        },
    }
    work_dir = Path(tempfile.mkdtemp(prefix="bench-video-"))
    started = time.monotonic()
    try:
        emit(f"## `python -m bench.video` ({report['started']})")
        emit("")
        emit(machine_line(info))
        emit("")
        emit(
            f"Encoder settings: crf {', '.join(map(str, crfs))}, cap {max_kbps} kbit/s, key frame "
            f"every {key_every} frames (from {encoder['source']})."
        )
        emit("")
        if args.frames:
            report["offline"] = run_offline(
                frames=args.frames,
                fps=args.fps,
                jpeg_quality=args.jpeg_quality,
                crfs=crfs,
                max_kbps=max_kbps,
                key_every=key_every,
                noise=args.noise,
            )
            for line in offline_tables(report["offline"]):
                emit(line)
            emit("")
        if args.live:
            report["live"] = run_live(args, emit, work_dir)
            emit("")
        report["targets"] = targets(report)
        for line in target_lines(report["targets"]):
            emit(line)
        report["seconds"] = round(time.monotonic() - started, 1)
        emit(
            f"Load average at the end {' / '.join(f'{v:.2f}' for v in os.getloadavg())}; "
            f"the whole run took {report['seconds']:.0f} s."
        )
    finally:
        if not args.keep_logs:
            shutil.rmtree(work_dir, ignore_errors=True)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"video-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        path.write_text(json.dumps(_json_safe(report), indent=2))
        emit(f"results: {path}")
    return report


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.video", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--frames", type=int, default=300, help="offline frames (0: skip)")
    parser.add_argument("--fps", type=int, default=30, help="frame rate, offline and live")
    parser.add_argument("--jpeg-quality", type=int, default=75, help="offline JPEG quality")
    parser.add_argument("--crf", default="", help="comma-separated CRFs (default: VIDEO_CRF)")
    parser.add_argument("--max-kbps", type=int, default=0, help="default: VIDEO_MAX_KBPS")
    parser.add_argument(
        "--key-every",
        type=int,
        default=0,
        help="frames per key frame (default: VIDEO_KEYFRAME_SECONDS x fps)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="offline: sigma of fresh Gaussian noise in every frame, as a real sensor's (0: none)",
    )
    parser.add_argument("--no-live", dest="live", action="store_false", help="offline part only")
    parser.add_argument(
        "--join-viewers",
        type=int,
        default=2,
        help="JSON and binary viewers watching while as many H.264 viewers join (0: skip)",
    )
    parser.add_argument(
        "--bytes-viewers", type=int, default=2, help="live viewers of each format at once (0: skip)"
    )
    parser.add_argument("--viewers", default="100,200", help="fan-out viewer counts ('' : skip)")
    parser.add_argument("--fanout-formats", default="binary,h264", help="formats for the fan-out")
    parser.add_argument(
        "--repeat", type=int, default=2, help="fan-out runs per format and count (alternating)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="each live measurement window")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each window")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--detectors", default="motion", help="the live camera's detectors")
    parser.add_argument("--keep-logs", action="store_true", help="keep the server's log")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if not 0 <= args.frames <= 3000 or not 1 <= args.fps <= 60:
        parser().error("--frames must be in 0..3000 and --fps in 1..60")
    if not 1 <= args.repeat <= 5:
        parser().error("--repeat takes 1 to 5")
    if args.seconds <= 0 or args.processes < 1 or min(args.bytes_viewers, args.join_viewers) < 0:
        parser().error("need a positive --seconds and --processes")
    counts = [int(v) for v in args.viewers.split(",") if v.strip()]
    if any(not 1 <= c <= 500 for c in counts) or max(args.bytes_viewers, args.join_viewers) > 50:
        parser().error("fan-out viewer counts in 1..500, --bytes-viewers, --join-viewers <= 50")
    if any(f not in FORMATS for f in args.fanout_formats.split(",")):
        parser().error(f"--fanout-formats takes {', '.join(FORMATS)}")
    return run(args)


if __name__ == "__main__":
    main()
