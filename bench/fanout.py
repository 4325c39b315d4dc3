"""Fan-out benchmark: one 30 fps 640x480 camera, N WebSocket viewers, Sightline against a minimal
`websockets` broadcast server (`bench/ws_baseline.py`) under the same load in the same run.

    python -m bench.fanout --viewers 100,200 --slow 5 --seconds 20

For every viewer count (and again with `--slow` extra viewers that read one frame a second) it
starts the baseline, measures, stops it, then starts a real daphne serving Sightline with one
`demo:` camera (capture worker in the daphne process, or in `runcameras` with `--layer redis`),
measures the same way and stops it. Each viewer records, per message, its arrival time minus the
frame's `timestamp` (the capture time; same machine, same clock) and counts the messages of the
measurement window after a warm-up. Viewers run in `--processes` client processes that share the
machine's cores with the server under test; their CPU use is reported next to the server's.

Columns: `src fps` distinct frames any viewer got (what the camera produced), `fps mean`/`fps min`
frames per viewer per second, latency p50/p99 over every message of every normal viewer,
`failed` viewers refused, closed early or never served a frame, the server's RSS as the window
opened and closed, its CPU (all its processes), the mean message size and the load average (the
machine is shared: with `--repeat N` servers alternate and ratios compare medians). The Sightline
camera runs the demo's motion detector by default; `--detectors ""` isolates the fan-out.

With `--tile` (default `width=320&fps=5`, a grid tile; `--tile ""` skips it) every Sightline
run measures the same viewers once more on the camera's reduced variant, in the same server
(`server` column `tile`), and `KiB/s` gives the bytes per second each viewer received: the
full stream against a grid tile, under the same load.

With `--through-nginx` the viewers reach Sightline as in production: through nginx running the
shipped site (deploy/nginx/sightline.conf, rendered by deploy/render.py as the Procfile does) in
front of `--web-processes` daphne processes (a comma-separated list, each count its own run,
`server` column `nginx+<n>web`), which it spreads the viewers over. More than one web process
needs `--layer redis` (one `runcameras` for all of them). The baseline is still reached
directly, so the ratio is what the whole production path costs. RSS is then that of all the
daphne processes together, and `CPU by part` splits the server's CPU into web (every daphne),
cameras (`runcameras`) and nginx (its workers).

Everything talks to 127.0.0.1 only; every loop is bounded in count and time; child processes are
killed on the way out. Results go to bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import hashlib
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.topology import (
    BEHIND_NGINX,
    Topology,
    add_topology_arguments,
    daphne_command,
    nginx_process,
    topologies_of,
    with_children,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
LOCALHOST = "127.0.0.1"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CONNECT_TIMEOUT = 30.0
# Viewers connect in bursts of this many at a time, as a crowd arriving would, not all at once.
CONNECT_CONCURRENCY = 20
FRESH_FRAME_MS = 1000
# Flat memory: a server that queued every frame for 5 slow viewers would grow by ~8 MiB a second.
FLAT_RSS_GROWTH_MIB = 16.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
_TIMESTAMP_VALUE = re.compile(rb"\s*:\s*(-?[0-9]+(?:\.[0-9]+)?)")


@dataclass(frozen=True)
class Target:
    """A server under test, ready for viewers."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int  # the process viewers connect to: its RSS must stay flat
    # Every process of the server (e.g. also `runcameras`): their CPU is the server's CPU.
    all_pids: tuple[int, ...]
    # The processes whose RSS (summed) must stay flat, when not just `pid`: behind nginx, the
    # daphne processes it spreads the viewers over.
    rss_pids: tuple[int, ...] = ()
    # The server's processes by role ("web", "cameras", "nginx"), for the CPU of each.
    parts: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.rss_pids or (self.pid,))


@dataclass(frozen=True)
class Load:
    viewers: int
    slow: int
    seconds: float
    warmup: float
    processes: int


def frame_timestamp(message: bytes | bytearray, start: int = 0, end: int | None = None) -> float:
    """The FrameData `timestamp` (Unix ms) of message[start:end], read without parsing 50 KB of JSON.

    Base64 never contains a quote, so a `"timestamp"` is the key and not frame data; searching from
    the end skips the frame, which comes first in the seed's layout (and costs a full scan only if
    it does not).
    """
    end = len(message) if end is None else end
    key = message.rfind(b'"timestamp"', start, end)
    match = _TIMESTAMP_VALUE.match(message, key + len(b'"timestamp"'), end) if key >= 0 else None
    if match is None:
        raise ValueError("the message has no numeric timestamp")
    return float(match.group(1))


def check_frame_data(message: bytes) -> None:
    """Fails unless the message is the seed's FrameData (checked once per viewer, in full)."""
    data = json.loads(message)
    if not isinstance(data.get("frame"), str) or not data["frame"]:
        raise ValueError("FrameData has no base64 frame")
    if not isinstance(data.get("timestamp"), int | float):
        raise ValueError("FrameData has no numeric timestamp")
    if not isinstance(data.get("camera_id"), str):
        raise ValueError("FrameData has no camera_id")


# --- viewers (they run in client processes) -------------------------------------------------
#
# At 200 viewers a client process handles thousands of 50-70 KB messages a second on the same
# two cores as the server, so a viewer is a bare RFC 6455 client on asyncio.BufferedProtocol: the
# kernel writes straight into one buffer per viewer, frames are delimited and the timestamp is
# read in place, with no task, future or copy per message. (A `websockets` client spends about
# four times the CPU per message and became the bottleneck.) The library still checks every
# server's handshake and first message once, in `wait_for_frames`.

_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_INITIAL_BUFFER = 256 * 1024
_MIN_READ = 64 * 1024


class Window:
    """The measurement window in Unix seconds, unknown (infinitely far) until the parent says go."""

    def __init__(self) -> None:
        self.start = math.inf
        self.end = math.inf


@dataclass
class ViewerTally:
    connected: bool = False
    error: str = ""
    messages: int = 0
    payload_bytes: int = 0
    closed_early: bool = False


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 requires clients to mask), for pong and close only."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


class ViewerProtocol(asyncio.BufferedProtocol):
    """One viewer's connection: handshake, then FrameData messages counted in the window.

    A slow viewer takes one message a second and stops reading the socket in between, so TCP
    pushes back to the server, which must skip it rather than buffer for it.
    """

    def __init__(
        self,
        *,
        key: bytes,
        window: Window,
        tally: ViewerTally,
        samples: array.array,
        frames_seen: set[float],
        slow: bool,
    ) -> None:
        self.key = key
        self.window = window
        self.tally = tally
        self.samples = samples
        self.frames_seen = frames_seen
        self.slow = slow
        self.buffer = bytearray(_INITIAL_BUFFER)
        self.start = 0  # first byte not parsed yet
        self.end = 0  # end of the received bytes
        self.fragments: list[bytes] = []
        self.holding = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.first_message: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self.buffer) - self.end < _MIN_READ:
            # Move the unparsed tail to the front; grow only when a frame is bigger than that.
            pending = self.end - self.start
            self.buffer[:pending] = self.buffer[self.start : self.end]
            self.start, self.end = 0, pending
            if len(self.buffer) - self.end < _MIN_READ:
                self.buffer.extend(bytes(len(self.buffer)))
        return memoryview(self.buffer)[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        if not self.upgraded.done() and not self._read_handshake():
            return
        self._parse(time.time())

    def _read_handshake(self) -> bool:
        head_end = self.buffer.find(b"\r\n\r\n", 0, self.end)
        if head_end < 0:
            if self.end > 16 * 1024:
                self._fail("the handshake response has no end")
            return False
        lines = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            self._fail(f"refused: {lines[0]}")
            return False
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        accept = base64.b64encode(hashlib.sha1(self.key + _WEBSOCKET_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            self._fail("the handshake response has a wrong Sec-WebSocket-Accept")
            return False
        self.start = head_end + 4
        self.upgraded.set_result(None)
        return True

    def _parse(self, now: float) -> None:
        buffer = self.buffer
        while not self.holding and self.end - self.start >= 2:
            first, second = buffer[self.start], buffer[self.start + 1]
            length, header = second & 0x7F, 2
            if second & 0x80:
                self._fail("the server sent a masked frame")
                return
            if length == 126:
                if self.end - self.start < 4:
                    return
                length, header = int.from_bytes(buffer[self.start + 2 : self.start + 4]), 4
            elif length == 127:
                if self.end - self.start < 10:
                    return
                length, header = int.from_bytes(buffer[self.start + 2 : self.start + 10]), 10
            payload_start = self.start + header
            payload_end = payload_start + length
            if payload_end > self.end:
                if length > MAX_MESSAGE_BYTES:
                    self._fail(f"a {length}-byte frame is over the {MAX_MESSAGE_BYTES} limit")
                return
            self.start = payload_end
            self._frame(first, buffer, payload_start, payload_end, now)
        if self.start == self.end:
            self.start = self.end = 0

    def _frame(self, first: int, buffer: bytearray, start: int, end: int, now: float) -> None:
        opcode, final = first & 0x0F, first & 0x80
        if opcode == 0x9:  # ping
            self.transport.write(_client_frame(0xA, bytes(buffer[start:end])))
        elif opcode == 0x8:  # close: answer it and let the server end the connection
            self.transport.write(_client_frame(0x8, bytes(buffer[start : start + 2])))
        elif opcode in (0x0, 0x1, 0x2):
            if not final or self.fragments:
                self.fragments.append(bytes(buffer[start:end]))
                if final:
                    message = bytearray(b"".join(self.fragments))
                    self.fragments.clear()
                    self._message(message, 0, len(message), now)
            else:
                self._message(buffer, start, end, now)

    def _message(self, buffer: bytearray, start: int, end: int, now: float) -> None:
        if not self.first_message.done():
            try:
                check_frame_data(bytes(buffer[start:end]))
            except ValueError as error:
                self._fail(f"not FrameData: {error}")
                return
            self.first_message.set_result(None)
        if self.slow:
            self.holding = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(1.0, self._release)
        if self.window.start <= now < self.window.end:
            timestamp = frame_timestamp(buffer, start, end)
            self.samples.append(now * 1000.0 - timestamp)
            self.frames_seen.add(timestamp)
            self.tally.messages += 1
            self.tally.payload_bytes += end - start

    def _release(self) -> None:
        if self.transport.is_closing():
            return
        self.holding = False
        self.transport.resume_reading()
        self._parse(time.time())

    def _fail(self, reason: str) -> None:
        self.tally.error = reason[:200]
        for future in (self.upgraded, self.first_message):
            if not future.done():
                future.set_exception(ConnectionError(reason))
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.time() < self.window.end:
            self.tally.closed_early = True
            self.tally.error = self.tally.error or f"closed by the server ({exc or 'clean'})"
        for future in (self.upgraded, self.first_message):
            if not future.done():
                future.set_exception(ConnectionError(self.tally.error))

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_client_frame(0x8, (1000).to_bytes(2, "big")))
            self.transport.close()


async def _viewer(
    url: str,
    headers: dict[str, str],
    gate: asyncio.Semaphore,
    protocol_factory: Callable[[bytes], ViewerProtocol],
) -> ViewerProtocol | None:
    """Open one viewer and wait for its first message; None (with the tally's error) if that fails."""
    parsed = urlsplit(url)
    key = base64.b64encode(os.urandom(16))
    protocol = protocol_factory(key)
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    request = [
        f"GET {target} HTTP/1.1",
        f"Host: {parsed.hostname}:{parsed.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    loop = asyncio.get_running_loop()
    async with gate:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(lambda: protocol, parsed.hostname, parsed.port)
                protocol.transport.write(("\r\n".join(request) + "\r\n\r\n").encode("latin-1"))
                await protocol.upgraded
                await protocol.first_message
        except (OSError, TimeoutError) as error:  # ConnectionError is an OSError
            protocol.tally.error = protocol.tally.error or f"{type(error).__name__}: {error}"[:200]
            if protocol.transport is not None:
                protocol.transport.abort()
            return None
    protocol.tally.connected = True
    return protocol


async def _client_main(pipe: Connection, spec: dict) -> dict:
    window = Window()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    latencies = array.array("d")
    # Timestamps of the frames the normal viewers saw: how many frames the server produced.
    frames_seen: set[float] = set()
    slow_frames: set[float] = set()
    ages = array.array("d")
    tallies: list[ViewerTally] = []
    openings = []
    for index in range(spec["normal"] + spec["slow"]):
        slow = index >= spec["normal"]
        tally = ViewerTally()
        tallies.append(tally)

        def factory(key: bytes, tally=tally, slow=slow) -> ViewerProtocol:
            return ViewerProtocol(
                key=key,
                window=window,
                tally=tally,
                samples=ages if slow else latencies,
                frames_seen=slow_frames if slow else frames_seen,
                slow=slow,
            )

        openings.append(_viewer(spec["url"], spec["headers"], gate, factory))
    viewers = [v for v in await asyncio.gather(*openings) if v is not None]
    try:
        pipe.send(("connected", len(viewers)))
        # The parent answers with the window once every client process has its viewers up.
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, pipe.poll, CONNECT_TIMEOUT * 2):
            raise TimeoutError("the parent never sent the measurement window")
        _, window.start, window.end = pipe.recv()
        await asyncio.sleep(max(0.0, window.end - time.time()))
    finally:
        for viewer in viewers:
            viewer.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "tallies": [asdict(t) for t in tallies[: spec["normal"]]],
        "slow_tallies": [asdict(t) for t in tallies[spec["normal"] :]],
        "latencies": latencies.tobytes(),
        "slow_ages": ages.tobytes(),
        "frames_seen": sorted(frames_seen),
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def _client_process(pipe: Connection, spec: dict) -> None:
    try:
        result = asyncio.run(_client_main(pipe, spec))
        pipe.send(("done", result))
    except BaseException as error:  # noqa: BLE001 - the parent must hear why, whatever it was
        pipe.send(("failed", f"{type(error).__name__}: {error}"))
        raise


# --- the parent: load, server sampling, figures ----------------------------------------------


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


def _receive(pipe: Connection, expected: str, timeout: float) -> object:
    if not pipe.poll(timeout):
        raise TimeoutError(f"a client process sent no {expected!r} within {timeout:.0f} s")
    kind, *payload = pipe.recv()
    if kind == "failed":
        raise RuntimeError(f"a client process failed: {payload[0]}")
    if kind != expected:
        raise RuntimeError(f"a client process sent {kind!r}, expected {expected!r}")
    return payload[0]


@contextmanager
def client_workers(
    client_process: Callable[[Connection, dict], None], specs: list[dict]
) -> Iterator[list[Connection]]:
    """One client process per spec (spawned: no state shared with this one), each connected
    before this yields their pipes; stopped (killed if need be) on the way out."""
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[multiprocessing.Process, Connection]] = []
    try:
        for spec in specs:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=client_process, args=(child_end, spec), daemon=True)
            process.start()
            child_end.close()
            workers.append((process, parent_end))
        pipes = [pipe for _, pipe in workers]
        for pipe in pipes:
            _receive(pipe, "connected", CONNECT_TIMEOUT * 3)
        yield pipes
    finally:
        for process, pipe in workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
            pipe.close()


def window_open(pipes: list[Connection], *, warmup: float, seconds: float) -> tuple[float, float]:
    """Tell every client the measured window (epoch seconds), `warmup` from now."""
    start = time.time() + warmup
    end = start + seconds
    for pipe in pipes:
        pipe.send(("window", start, end))
    return start, end


def measure(target: Target, load: Load) -> dict:
    """Run `load` against `target` and return its figures."""
    processes = min(load.processes, max(1, load.viewers + load.slow))
    normals, slows = _split(load.viewers, processes), _split(load.slow, processes)
    specs = [
        {"url": target.url, "headers": target.headers, "normal": normal, "slow": slow}
        for normal, slow in zip(normals, slows, strict=True)
    ]
    with client_workers(_client_process, specs) as pipes:
        start, end = window_open(pipes, warmup=load.warmup, seconds=load.seconds)
        time.sleep(max(0.0, start - time.time()))
        rss_start = target.rss_kib()
        load_average = os.getloadavg()[0]
        cpu_start = sum(cpu_seconds(pid) for pid in target.all_pids)
        parts_start = _cpu_of_parts(target)
        rss_max = rss_start
        # One sample a second; bounded by the window's length.
        for _ in range(int(load.seconds) + 1):
            time.sleep(max(0.0, min(1.0, end - time.time())))
            rss_max = max(rss_max, target.rss_kib())
            if time.time() >= end:
                break
        rss_end = target.rss_kib()
        cpu_end = sum(cpu_seconds(pid) for pid in target.all_pids)
        parts_end = _cpu_of_parts(target)
        results = [_receive(pipe, "done", load.seconds + 30) for pipe in pipes]
    return summarize(
        target,
        load,
        results,
        rss=(rss_start, rss_end, rss_max),
        server_cpu=cpu_end - cpu_start,
        parts_cpu={name: parts_end[name] - parts_start[name] for name in parts_start},
        load_average=load_average,
    )


def _cpu_of_parts(target: Target) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in target.parts}


def summarize(
    target: Target,
    load: Load,
    results: list,
    *,
    rss: tuple[int, int, int],
    server_cpu: float,
    load_average: float,
    parts_cpu: dict[str, float] | None = None,
) -> dict:
    tallies = [t for r in results for t in r["tallies"]]
    slow_tallies = [t for r in results for t in r["slow_tallies"]]
    latencies: list[float] = []
    ages: list[float] = []
    for r in results:
        latencies.extend(array.array("d", r["latencies"]))
        ages.extend(array.array("d", r["slow_ages"]))
    latencies.sort()
    ages.sort()
    # A viewer that got not one frame in the whole window was not served either.
    produced = set().union(*(r["frames_seen"] for r in results))
    healthy = [t for t in tallies if t["connected"] and not t["closed_early"] and t["messages"]]
    fps = [t["messages"] / load.seconds for t in healthy]
    messages = sum(t["messages"] for t in tallies)
    errors = sorted({t["error"] for t in tallies + slow_tallies if t["error"]})
    return {
        "server": target.name,
        "viewers": load.viewers,
        "slow": load.slow,
        "seconds": load.seconds,
        "failed": len(tallies) - len(healthy),
        "fps_mean": sum(fps) / len(fps) if fps else 0.0,
        "fps_min": min(fps) if fps else 0.0,
        # Distinct frames any viewer got: what the camera produced. Delivered fps below this is
        # the fan-out's loss; this below the camera's rate is the capture side's.
        "source_fps": len(produced) / load.seconds,
        "latency_ms_p50": percentile(latencies, 0.50),
        "latency_ms_p99": percentile(latencies, 0.99),
        "latency_ms_max": latencies[-1] if latencies else math.nan,
        "payload_kib_mean": (
            sum(t["payload_bytes"] for t in tallies) / messages / 1024 if messages else 0.0
        ),
        # What one viewer costs the network: its payload bytes per second, averaged.
        "kib_per_second_per_viewer": (
            sum(t["payload_bytes"] for t in healthy) / len(healthy) / load.seconds / 1024
            if healthy
            else 0.0
        ),
        "slow_failed": sum(1 for t in slow_tallies if not t["connected"] or t["closed_early"]),
        "slow_frames_mean": (
            sum(t["messages"] for t in slow_tallies) / len(slow_tallies) if slow_tallies else 0.0
        ),
        "slow_age_ms_p50": percentile(ages, 0.50),
        "server_rss_mib_start": rss[0] / 1024,
        "server_rss_mib_end": rss[1] / 1024,
        "server_rss_mib_max": rss[2] / 1024,
        "server_cpu_percent": 100.0 * server_cpu / load.seconds,
        # The same by role (web, cameras, nginx), where the server has more than one.
        "cpu_percent_by_part": {
            name: 100.0 * seconds / load.seconds for name, seconds in (parts_cpu or {}).items()
        },
        # Whole-life CPU of the client processes (connecting and warm-up included).
        "clients_cpu_seconds": sum(r["cpu_seconds"] for r in results),
        # The machine's 1-minute load average as the window opened: other work skews figures.
        "load_average": load_average,
        "errors": errors[:10],
    }


# --- servers under test ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


async def _live_frames(url: str, headers: dict[str, str], deadline: float) -> None:
    """Wait for a fresh FrameData message: a latest frame cached from an earlier run does not
    prove the camera is capturing now, so a frame must be under `FRESH_FRAME_MS` old."""
    last_error: Exception | str | None = None
    while time.monotonic() < deadline:
        try:
            async with connect(
                url,
                additional_headers=headers,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=CONNECT_TIMEOUT,
                proxy=None,  # never route benchmark traffic through a proxy from the environment
            ) as connection:
                while time.monotonic() < deadline:
                    message = await asyncio.wait_for(
                        connection.recv(decode=False), max(0.1, deadline - time.monotonic())
                    )
                    check_frame_data(message)
                    age = time.time() * 1000 - frame_timestamp(message)
                    if age < FRESH_FRAME_MS:
                        return
                    last_error = f"the newest frame is {age:.0f} ms old"
        except (OSError, TimeoutError, ConnectionClosed, InvalidStatus, ValueError) as error:
            last_error = error
            await asyncio.sleep(0.2)
    raise RuntimeError(f"no live frame from {url} in time: {last_error}")


def wait_for_frames(process: subprocess.Popen, url: str, headers: dict[str, str], log: Path):
    """Wait until the server streams FrameData, or fail with the tail of its log."""
    try:
        asyncio.run(_live_frames(url, headers, time.monotonic() + 60))
    except RuntimeError as error:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        exited = process.poll()
        raise RuntimeError(f"{error}\n(exit status {exited}) log {log}:\n{tail}") from None


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running(commands: list[tuple[list[str], dict[str, str]]], log: Path) -> Iterator[list]:
    """Start the processes (all logging to `log`) and stop every one of them on the way out."""
    processes: list[subprocess.Popen] = []
    try:
        with log.open("ab") as sink:
            for command, env in commands:
                processes.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
                    )
                )
        yield processes
    finally:
        for process in reversed(processes):
            _stop(process)


@contextmanager
def baseline_server(*, fps: float, jpeg_quality: int, log_dir: Path) -> Iterator[Target]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.ws_baseline",
        "--port",
        str(port),
        "--fps",
        str(fps),
        "--jpeg-quality",
        str(jpeg_quality),
    ]
    log = log_dir / f"baseline-{port}.log"
    with running([(command, dict(os.environ))], log) as (process,):
        url = f"ws://{LOCALHOST}:{port}/"
        wait_for_frames(process, url, {}, log)
        yield Target(name="baseline", url=url, headers={}, pid=process.pid, all_pids=(process.pid,))


class Sightline:
    """A throwaway Sightline installation: its own database, one `demo:` camera, one token."""

    def __init__(
        self,
        *,
        work_dir: Path,
        fps: int,
        detectors: list[str],
        layer: str,
        redis_url: str,
        database_url: str,
        asgi_application: str = "project.asgi:application",
    ):
        self.work_dir = work_dir
        self.asgi_application = asgi_application
        self.fps = fps
        self.detectors = detectors
        self.layer = layer
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url or f"sqlite:///{work_dir / 'sightline.sqlite3'}",
            "DJANGO_SECRET_KEY": "bench-only-secret-key",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MEDIA_ROOT": str(work_dir / "media"),
            "LOG_LEVEL": "WARNING",
        }
        if layer == "redis":
            self.env.update({"REDIS_URL": redis_url, "CAMERAS_IN_PROCESS": "0"})
        else:
            self.env.pop("REDIS_URL", None)
            self.env["CAMERAS_IN_PROCESS"] = "1"
        self.camera_id = ""
        self.token = ""
        self.jpeg_quality = 0

    def _manage(self, *args: str) -> str:
        completed = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{completed.stderr[-3000:]}")
        return completed.stdout

    def prepare(self) -> None:
        self._manage("migrate", "--no-input", "--verbosity", "0")
        output = self._manage(
            "shell", "-c", SIGHTLINE_SETUP.format(fps=self.fps, detectors=self.detectors)
        )
        setup = json.loads(output.strip().splitlines()[-1])
        self.camera_id, self.token = setup["camera_id"], setup["token"]
        self.jpeg_quality = setup["jpeg_quality"]

    @contextmanager
    def server(self, topology: Topology) -> Iterator[Target]:
        """Sightline served as `topology` says, with `runcameras` beside it on the Redis layer."""
        web_ports = [free_port() for _ in range(topology.web_processes)]
        env = {**self.env, **BEHIND_NGINX} if topology.through_nginx else self.env
        commands = [(daphne_command(self.asgi_application, port), env) for port in web_ports]
        if self.layer == "redis":
            runcameras = [sys.executable, "manage.py", "runcameras", "--camera", self.camera_id]
            commands.append((runcameras, self.env))
        port = web_ports[0]
        if topology.through_nginx:
            port = free_port()
            nginx_dir = self.work_dir / f"nginx-{port}"
            commands.append(
                nginx_process(nginx_dir, port=port, backend_ports=web_ports, env=self.env)
            )
        log = self.work_dir / f"sightline-{port}.log"
        with running(commands, log) as processes:
            url = f"ws://{LOCALHOST}:{port}/ws/stream/{self.camera_id}"
            headers = {"Authorization": f"Bearer {self.token}"}
            # Every web process serves frames before nginx may send a viewer to it: nginx
            # answers 502 for one still starting, and then leaves it out for a while.
            web_processes = processes[: topology.web_processes]
            for web_port, process in zip(web_ports, web_processes, strict=True):
                web_url = f"ws://{LOCALHOST}:{web_port}/ws/stream/{self.camera_id}"
                wait_for_frames(process, web_url, headers, log)
            front = processes[-1] if topology.through_nginx else processes[0]
            if topology.through_nginx:
                wait_for_frames(front, url, headers, log)
            web = tuple(process.pid for process in web_processes)
            parts = [("web", web)]
            if self.layer == "redis":
                parts.append(("cameras", (processes[topology.web_processes].pid,)))
            if topology.through_nginx:
                # Its workers are up: they carried the frames wait_for_frames saw.
                parts.append(("nginx", with_children(front.pid)))
            yield Target(
                name=topology.name,
                url=url,
                headers=headers,
                pid=front.pid,
                all_pids=tuple(pid for _, pids in parts for pid in pids),
                rss_pids=web,
                parts=tuple(parts),
            )


# Run by `manage.py shell -c` in the benchmark's own database, through the app's services.
SIGHTLINE_SETUP = """
import json
import secrets
from django.contrib.auth import get_user_model
from organizations.models import Organization
from organizations.services import api_token_create, organization_create
from cameras.services import camera_create

# A database given with --database-url is reused: earlier runs' cameras must not capture too.
User = get_user_model()
Organization.objects.filter(name="Bench", members__username__startswith="bench-").delete()
User.objects.filter(username__startswith="bench-").delete()
user = User.objects.create_user("bench-" + secrets.token_hex(4))
organization = organization_create(name="Bench", owner=user)
camera = camera_create(
    organization=organization,
    name="Bench demo",
    source="demo:",
    target_fps={fps},
    max_width=640,
    detectors={detectors!r},
)
_, token = api_token_create(user=user, name="fan-out benchmark")
print(json.dumps({{
    "camera_id": camera.public_id, "token": token, "jpeg_quality": camera.jpeg_quality
}}))
"""


# --- the report --------------------------------------------------------------------------------


def _row(result: dict) -> str:
    rss = f"{result['server_rss_mib_start']:.0f}->{result['server_rss_mib_end']:.0f}"
    parts = " ".join(
        f"{name} {percent:.0f}%" for name, percent in result["cpu_percent_by_part"].items()
    )
    return (
        f"{result['viewers']:>7} {result['slow']:>4}  {result['server']:<11} "
        f"{result['source_fps']:>7.1f} {result['fps_mean']:>8.1f} {result['fps_min']:>7.1f} "
        f"{result['latency_ms_p50']:>7.1f} {result['latency_ms_p99']:>7.1f} "
        f"{result['failed']:>6} {rss:>11} {result['server_cpu_percent']:>6.0f}% "
        f"{result['payload_kib_mean']:>6.1f} {result['kib_per_second_per_viewer']:>7.1f} "
        f"{result['load_average']:>5.2f}  {parts}"
    )


HEADER = (
    "viewers slow  server      src fps fps mean fps min  p50 ms  p99 ms failed  RSS MiB s->e   CPU"
    "   KiB   KiB/s  load  CPU by part\n" + "-" * 129
)


def ratios(baselines: list[dict], sightlines: list[dict]) -> dict:
    """Sightline against the baseline: medians over repeated runs, worst case for failures and
    memory (a shared machine's noise moves single runs; a leak or a refusal is never noise)."""

    def median_of(results: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in results)

    baseline_fps, baseline_p99 = (
        median_of(baselines, "fps_mean"),
        median_of(baselines, "latency_ms_p99"),
    )
    fps_ratio = median_of(sightlines, "fps_mean") / baseline_fps if baseline_fps else math.nan
    p99_ratio = median_of(sightlines, "latency_ms_p99") / baseline_p99 if baseline_p99 else math.nan
    rss_growth = max(r["server_rss_mib_end"] - r["server_rss_mib_start"] for r in sightlines)
    failed = max(r["failed"] for r in sightlines)
    return {
        "fps_ratio": fps_ratio,
        "p99_ratio": p99_ratio,
        "rss_growth_mib": rss_growth,
        "failed": failed,
        "meets_targets": (
            fps_ratio >= 0.98
            and p99_ratio <= 1.5
            and failed == 0
            and rss_growth <= FLAT_RSS_GROWTH_MIB
        ),
    }


def _ratio_row(ratio: dict, name: str) -> str:
    verdict = "meets targets" if ratio["meets_targets"] else "MISSES targets"
    return (
        f"{'':>13}  ratio of {name}: fps x{ratio['fps_ratio']:.3f} (>= 0.98)   "
        f"p99 x{ratio['p99_ratio']:.2f} (<= 1.5)   RSS {ratio['rss_growth_mib']:+.1f} MiB   {verdict}"
    )


def _tile_of(target: Target, query: str, name: str) -> Target:
    """The same server and camera, viewed through a reduced variant (`?width=&fps=`)."""
    return replace(target, name=name, url=f"{target.url}?{query}")


def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> dict:
    viewer_counts = [int(v) for v in args.viewers.split(",") if v.strip()]
    slow_counts = [0, args.slow] if args.slow else [0]
    work_dir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    servers = ["baseline", "sightline"] if args.only == "both" else [args.only]
    topologies = topologies_of(args)
    report: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "settings": {
            "fps": args.fps,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "processes": args.processes,
            "repeat": args.repeat,
            "layer": args.layer,
            "detectors": args.detectors,
            "tile": args.tile,
            "topologies": [asdict(topology) for topology in topologies],
        },
        "scenarios": [],
    }
    try:
        sightline = None
        jpeg_quality = args.jpeg_quality
        if "sightline" in servers:
            sightline = Sightline(
                work_dir=work_dir,
                fps=args.fps,
                detectors=[d for d in args.detectors.split(",") if d.strip()],
                layer=args.layer,
                redis_url=args.redis_url,
                database_url=args.database_url,
                asgi_application=args.asgi_application,
            )
            sightline.prepare()
            # The baseline sends the same picture at the same quality, so the same bytes.
            jpeg_quality = sightline.jpeg_quality
        emit(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; logs in {work_dir}")
        emit(HEADER)
        for viewers in viewer_counts:
            for slow in slow_counts:
                load = Load(viewers, slow, args.seconds, args.warmup, args.processes)
                scenario: dict = {"viewers": viewers, "slow": slow}
                report["scenarios"].append(scenario)
                # Alternate the servers run by run, so a busy moment hits both alike.
                for _ in range(args.repeat):
                    if "baseline" in servers:
                        with baseline_server(
                            fps=args.fps, jpeg_quality=jpeg_quality, log_dir=work_dir
                        ) as target:
                            result = measure(target, load)
                        scenario.setdefault("baseline", []).append(result)
                        emit(_row(result))
                    for topology in topologies if sightline is not None else []:
                        with sightline.server(topology) as target:
                            result = measure(target, load)
                            scenario.setdefault(topology.name, []).append(result)
                            emit(_row(result))
                            if args.tile:
                                tile_target = _tile_of(target, args.tile, topology.tile_name)
                                tile = measure(tile_target, load)
                                scenario.setdefault(topology.tile_name, []).append(tile)
                                emit(_row(tile))
                if "baseline" in scenario:
                    for topology in topologies:
                        if topology.name not in scenario:
                            continue
                        ratio = ratios(scenario["baseline"], scenario[topology.name])
                        scenario.setdefault("ratios", {})[topology.name] = ratio
                        emit(_ratio_row(ratio, topology.name))
    finally:
        if not args.keep_logs:
            shutil.rmtree(work_dir, ignore_errors=True)
        # Whatever was measured is kept, even when a later server failed to start.
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"fanout-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        path.write_text(json.dumps(report, indent=2))
        emit(f"results: {path}")
    return report


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--viewers", default="100,200", help="comma-separated viewer counts")
    parser.add_argument("--slow", type=int, default=5, help="extra 1-frame-a-second viewers")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--fps", type=int, default=30, help="camera frame rate")
    parser.add_argument(
        "--detectors", default="motion", help="the Sightline camera's detectors (as the demo's)"
    )
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per server and scenario (ratios of medians)"
    )
    parser.add_argument("--only", choices=["both", "baseline", "sightline"], default="both")
    parser.add_argument(
        "--layer",
        choices=["memory", "redis"],
        default="memory",
        help="memory: capture worker inside daphne; redis: channels-redis and runcameras",
    )
    add_topology_arguments(parser)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    parser.add_argument(
        "--jpeg-quality", type=int, default=75, help="baseline only (else the camera's)"
    )
    parser.add_argument(
        "--asgi-application",
        default="project.asgi:application",
        help="what daphne serves, e.g. a module wrapping it to try a change before making it",
    )
    parser.add_argument(
        "--tile",
        default="width=320&fps=5",
        help='a stream variant measured too in every Sightline run ("" for none)',
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs")
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.viewers.strip() == "" or args.seconds <= 0 or args.processes < 1 or args.repeat < 1:
        parser().error("need viewer counts, a positive --seconds, --processes and --repeat")
    try:
        topologies = topologies_of(args)
    except ValueError as error:
        parser().error(str(error))
    if any(t.web_processes > 1 for t in topologies) and args.layer != "redis":
        # On the in-memory layer every daphne would capture the camera for its own viewers.
        parser().error("more than one web process needs --layer redis")
    run(args)


if __name__ == "__main__":
    main()
