"""The deploy files, rendered for this checkout by deploy/render.py (as the Procfile does), and
the real nginx and systemd-analyze that check and run them."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, unavailable

NGINX = "/usr/sbin/nginx"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
RENDER = ROOT / "deploy" / "render.py"


@pytest.fixture(scope="session")
def nginx() -> str:
    if not Path(NGINX).exists():
        unavailable(f"nginx is not installed at {NGINX} (apt-get install -y nginx)")
    return NGINX


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    if not Path(SYSTEMD_ANALYZE).exists():
        unavailable(
            f"systemd-analyze is not installed at {SYSTEMD_ANALYZE} (apt-get install systemd)"
        )
    return SYSTEMD_ANALYZE


def render(*args: str) -> str:
    """deploy/render.py's output (the paths it wrote), run as the Procfile runs it."""
    done = subprocess.run(
        [sys.executable, str(RENDER), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def nginx_rendered(
    directory: Path, *, port: int, backends: list[str], static_root: Path | None = None
) -> Path:
    args = ["nginx", "--dir", str(directory), "--port", str(port)]
    for backend in backends:
        args += ["--backend", backend]
    if static_root is not None:
        args += ["--static-root", str(static_root)]
    return Path(render(*args).strip())


def nginx_test(nginx: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [nginx, "-e", "stderr", "-t", "-c", str(config)], capture_output=True, text=True
    )


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def nginx_running(nginx: str, config: Path, port: int) -> Iterator[subprocess.Popen]:
    """nginx in the foreground (the rendered `daemon off;`), stopped gracefully at the end."""
    log = (config.parent / "stderr.log").open("ab")
    process = subprocess.Popen([nginx, "-e", "stderr", "-c", str(config)], stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"nginx did not start:\n{(config.parent / 'stderr.log').read_text()}"
                )
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that ran processes shows their logs' tails (`item.topology_log_tail`, set
    by the test's fixture), whatever failed: an assertion, a timeout, a closed connection."""
    report = yield
    log_tail = getattr(item, "topology_log_tail", None)
    if report.failed and log_tail is not None:
        report.sections.append(("topology logs", log_tail()))
    return report
