"""Several `runcameras` processes sharing cameras through leases in Redis (cameras/leases.py),
while processes are killed (SIGKILL), stopped (SIGTERM) and started.

The cameras are real MJPEG-over-HTTP cameras on 127.0.0.1 that note every connection: when it
opened and when its reader went away (seen within milliseconds, by watching the socket). Two
processes reading one camera at the same time would show as two connections of that camera
open at once.
"""

from __future__ import annotations

import asyncio
import random
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import redis
from asgiref.sync import sync_to_async
from channels_redis.core import RedisChannelLayer

from cameras.leases import lease_key
from cameras.publishing import PublishedFrame, group_name
from cameras.services import camera_create
from cameras.vision.frames import encode_jpeg
from tests.cameras.camera_processes import camera_watched, runcameras_start
from tests.conftest import camera_lease_epoch_aged

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

MJPEG_INTERVAL = 0.1  # 10 frames a second, each camera


@dataclass
class Connection:
    camera: str
    opened: float  # monotonic
    closed: float | None = None


class NotingCameras:
    """MJPEG cameras at http://127.0.0.1:<port>/<name>.mjpg that note their connections."""

    def __init__(self):
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        jpeg = encode_jpeg(np.full((240, 320, 3), 90, dtype=np.uint8), 80)
        cameras = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                connection = cameras._opened(self.path.strip("/").removesuffix(".mjpg"))
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                    self.end_headers()
                    part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                    while not cameras._stopping.is_set():
                        self.wfile.write(part % len(jpeg) + jpeg + b"\r\n")
                        self.wfile.flush()
                        if cameras._reader_gone(self.connection, MJPEG_INTERVAL):
                            return
                except OSError:
                    return
                finally:
                    cameras._closed(connection)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}.mjpg"

    def _opened(self, camera: str) -> Connection:
        connection = Connection(camera=camera, opened=time.monotonic())
        with self._lock:
            self.connections.append(connection)
        return connection

    def _closed(self, connection: Connection) -> None:
        with self._lock:
            connection.closed = time.monotonic()

    @staticmethod
    def _reader_gone(sock: socket.socket, wait: float) -> bool:
        """Wait up to `wait`; True as soon as the reader closed (readable with nothing to read:
        a reader sends nothing after its request)."""
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def open_now(self) -> set[str]:
        with self._lock:
            return {c.camera for c in self.connections if c.closed is None}

    def overlaps(self) -> list[tuple[Connection, Connection]]:
        with self._lock:
            connections = sorted(self.connections, key=lambda c: (c.camera, c.opened))
        found = []
        for earlier, later in zip(connections, connections[1:], strict=False):
            if earlier.camera != later.camera:
                continue
            if earlier.closed is None or later.opened < earlier.closed:
                found.append((earlier, later))
        return found

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def noting_cameras(loopback_cameras_allowed) -> Iterator[NotingCameras]:
    cameras = NotingCameras()
    yield cameras
    cameras.close()


class CameraProcesses:
    """The runcameras processes of one test, each logging to its own file."""

    def __init__(self, redis_url: str, folder: Path, env: dict[str, str]):
        self.redis_url = redis_url
        self.folder = folder
        self.env = {"CAMERA_ALLOWED_NETWORKS": "127.0.0.1/32", **env}
        self.alive: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}
        self.stopped_cleanly: list[int] = []

    def start(self) -> subprocess.Popen:
        log = self.folder / f"runcameras-{len(self.logs)}.log"
        with log.open("wb") as output:
            process = runcameras_start(self.redis_url, env=self.env, output=output)
        self.logs[process.pid] = log
        self.alive.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        process.kill()
        process.wait()
        self.alive.remove(process)

    def terminate(self, process: subprocess.Popen) -> None:
        process.terminate()
        assert process.wait(timeout=30) == 0, self.log_of(process)
        self.alive.remove(process)
        self.stopped_cleanly.append(process.pid)

    def holder_pid(self, public_id: str) -> int | None:
        holder = redis.Redis.from_url(self.redis_url).get(lease_key(public_id))
        return int(holder.decode().split(":")[1]) if holder else None

    def by_pid(self, pid: int) -> subprocess.Popen:
        return next(process for process in self.alive if process.pid == pid)

    def log_of(self, process: subprocess.Popen) -> str:
        return self.logs[process.pid].read_text()

    def all_logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}" for path in self.logs.values()
        )

    def stop_all(self) -> None:
        for process in list(self.alive):
            process.terminate()
        for process in list(self.alive):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self.alive.remove(process)


@pytest.fixture
def camera_processes(own_redis, tmp_path) -> Iterator[CameraProcesses]:
    camera_lease_epoch_aged(own_redis.url)
    processes = CameraProcesses(own_redis.url, tmp_path, {"CAMERA_LEASE_SECONDS": "2"})
    yield processes
    processes.stop_all()


def test_no_camera_is_read_by_two_processes_while_processes_are_killed_stopped_and_started(
    organization, noting_cameras, camera_processes
):
    names = [f"door{number}" for number in range(4)]
    for name in names:
        camera_create(
            organization=organization,
            name=name,
            source=noting_cameras.url(name),
            target_fps=5,
            max_width=320,
            detectors=[],
        )
    camera_processes.start()
    camera_processes.start()
    chance = random.Random(20261207)
    # Two lease lengths between changes: killed processes' cameras get picked up in between.
    for change in range(10):
        time.sleep(4)
        if len(camera_processes.alive) >= 3 or (len(camera_processes.alive) == 2 and change % 2):
            victim = chance.choice(camera_processes.alive)
            if change % 3 == 0:
                camera_processes.terminate(victim)
            else:
                camera_processes.kill(victim)
        else:
            camera_processes.start()
        assert not noting_cameras.overlaps(), noting_cameras.overlaps()
    if len(camera_processes.alive) < 2:
        camera_processes.start()
    # After the last change, every camera is read again within a lease and a few turns.
    deadline = time.monotonic() + 15
    while noting_cameras.open_now() != set(names):
        assert time.monotonic() < deadline, (noting_cameras.open_now(), camera_processes.all_logs())
        time.sleep(0.2)
    camera_processes.stop_all()

    assert not noting_cameras.overlaps(), noting_cameras.overlaps()
    for name in names:
        readers = [c for c in noting_cameras.connections if c.camera == name]
        assert len(readers) >= 2, f"{name} was never handed over"
    logs = camera_processes.all_logs()
    assert " ERROR " not in logs and "Traceback" not in logs, logs


async def frames_of(layer, channel: str, camera_id: str, after_ms: int, seconds: float) -> float:
    """Seconds until a frame of `camera_id` taken after `after_ms` arrives on `channel`."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while True:
            frame = PublishedFrame.from_message(await layer.receive(channel))
            if frame.camera_id == camera_id and frame.timestamp > after_ms:
                return time.monotonic() - started


async def test_a_killed_process_s_camera_plays_again_within_15_s_and_a_stopped_one_s_at_once(
    organization, own_redis, tmp_path, settings
):
    """Production's lease (10 s): the viewer stays subscribed throughout, as a web process's
    hub does, and sees frames again from whichever process reads the camera next."""
    settings.CACHES = own_redis.caches()  # where the camera processes look for viewers
    camera_lease_epoch_aged(own_redis.url)
    camera = await sync_to_async(camera_create)(
        organization=organization, name="Gate", source="demo:gate", target_fps=5, detectors=[]
    )
    processes = CameraProcesses(own_redis.url, tmp_path, {})
    layer = RedisChannelLayer(hosts=own_redis.layer_hosts(), capacity=100, expiry=10)

    try:
        processes.start()
        processes.start()
        channel = await layer.new_channel()
        await layer.group_add(group_name(camera.public_id), channel)
        async with camera_watched(camera.public_id):
            await frames_of(layer, channel, camera.public_id, 0, seconds=60)

            holder = processes.by_pid(processes.holder_pid(camera.public_id))
            killed_at = int(time.time() * 1000)
            await asyncio.to_thread(processes.kill, holder)
            after_kill = await frames_of(layer, channel, camera.public_id, killed_at, seconds=20)
            survivor = processes.holder_pid(camera.public_id)

            processes.start()
            await asyncio.sleep(3)  # the newcomer is up and registered
            stopped_at = int(time.time() * 1000)
            await asyncio.to_thread(processes.terminate, processes.by_pid(survivor))
            after_stop = await frames_of(layer, channel, camera.public_id, stopped_at, seconds=20)
    finally:
        await asyncio.to_thread(processes.stop_all)
        await layer.flush()

    assert after_kill < 15, processes.all_logs()
    assert survivor != holder.pid
    # Handed over at once: the next process's turn (2 s) and its opening of the source.
    assert after_stop < 5, processes.all_logs()
    logs = processes.all_logs()
    assert " ERROR " not in logs and "Traceback" not in logs, logs
