"""The production topology's pieces for the benchmarks: daphne started as the Procfile starts it,
and nginx in front of several of them, configured by the shipped site (`deploy/render.py`).

The benchmarks start, wait for and stop these processes their own way; this module only says
how each one is run, so that what a benchmark measures is what `honcho start` runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
# As the Procfile and scripts/serve: daphne's default backlog of 50 overflows at a burst of 500.
LISTEN_BACKLOG = 1024
# What the Procfile gives daphne behind nginx, so that nginx's X-Forwarded-For is believed.
BEHIND_NGINX = {"DJANGO_TRUSTED_PROXIES": "127.0.0.1"}


def daphne_command(application: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "daphne",
        "-e",
        f"tcp:port={port}:interface=127.0.0.1:backlog={LISTEN_BACKLOG}",
        application,
    ]


def nginx_process(
    directory: Path, *, port: int, backend_ports: list[int], env: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The command and environment of nginx on 127.0.0.1:port in front of daphne on
    `backend_ports`, its configuration rendered into `directory` from deploy/nginx/sightline.conf;
    unprivileged, in the foreground. nginx takes a variable NGINX for sockets inherited on an
    upgrade (as the Procfile says), so the one naming its binary here is not passed on."""
    backends = [f"--backend=127.0.0.1:{backend}" for backend in backend_ports]
    rendered = subprocess.run(
        [sys.executable, "deploy/render.py", "nginx", "--dir", str(directory)]
        + ["--port", str(port), *backends],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    command = [NGINX, "-e", "stderr", "-c", rendered.stdout.strip()]
    return command, {name: value for name, value in env.items() if name != "NGINX"}


def with_children(pid: int) -> tuple[int, ...]:
    """The process and its children (nginx's workers do its work: their CPU is not the master's)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return (pid,)
    return (pid, *(int(child) for child in children))


@dataclass(frozen=True)
class Topology:
    """How Sightline is served: one daphne clients reach directly, or N behind nginx."""

    web_processes: int = 1
    through_nginx: bool = False

    @property
    def name(self) -> str:
        return f"nginx+{self.web_processes}web" if self.through_nginx else "sightline"

    @property
    def tile_name(self) -> str:
        return f"tile+{self.web_processes}web" if self.through_nginx else "tile"


def add_topology_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--through-nginx",
        action="store_true",
        help="clients reach Sightline through nginx (deploy/nginx/sightline.conf, rendered)",
    )
    parser.add_argument(
        "--web-processes",
        default="1",
        help="with --through-nginx: comma-separated daphne counts behind it, e.g. 1,2",
    )


def topologies_of(args: argparse.Namespace) -> list[Topology]:
    """The topologies `--through-nginx` and `--web-processes` ask for, or ValueError."""
    counts = [int(n) for n in args.web_processes.split(",") if n.strip()]
    if not counts or min(counts) < 1:
        raise ValueError("--web-processes takes counts of 1 or more")
    if not args.through_nginx:
        if counts != [1]:
            raise ValueError("more than one web process needs --through-nginx")
        return [Topology()]
    return [Topology(web_processes=n, through_nginx=True) for n in counts]
