"""A redis-server of the test's own, that a test may stop and start again (the machine's Redis is
shared and never touched), and the Django settings production would build for it.

No persistence: a restart comes back empty, as a real Redis without persistence does. The port is
a free one, chosen once: a restart comes back on the same URL, as clients configured with it
expect. A server is only called started when the server answering on the port is this process
(its `process_id`), so a leftover redis-server holding the port is an error, never a stand-in
that a test's `stop()` would leave running."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

import project.settings as production


class OwnRedis:
    def __init__(self, port: int):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None
        # redis-server's own log, kept across restarts: why it did not start is said there.
        self._log = tempfile.TemporaryFile()

    def start(self, timeout: float = 10) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited ({self.process.returncode}) instead of serving "
                        f"port {self.port}:\n{self.log()[-2000:]}"
                    )
                try:
                    if client.info("server")["process_id"] == self.process.pid:
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not serve port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def layer_hosts(self) -> list[dict]:
        return layer_hosts(self.url)

    def channel_layers(self) -> dict:
        return channel_layers(self.url)

    def caches(self) -> dict:
        return caches(self.url)


# --- the settings production builds for a REDIS_URL (project/settings.py), for any URL ------------


def layer_hosts(url: str) -> list[dict]:
    """A channel layer host for `url` with production's socket options."""
    return channel_layers(url)["default"]["CONFIG"]["hosts"]


def channel_layers(url: str) -> dict:
    """Production's CHANNEL_LAYERS (options, capacity, expiry), on `url`."""
    return production.redis_channel_layers(url)


def caches(url: str) -> dict:
    """Production's CACHES (options, key prefix), on `url`."""
    return production.redis_caches(url)
