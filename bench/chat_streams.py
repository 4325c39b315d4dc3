"""Chat streaming benchmark: N concurrent SSE replies through one daphne process.

    python bench/chat_streams.py --streams 50 --rounds 3

Starts one daphne serving Sightline (builtin backend, ASSISTANT_BUILTIN_DELAY_MS=0) on
127.0.0.1 against a temporary SQLite database it migrates itself (BENCH_DATABASE_URL and
BENCH_REDIS_URL select PostgreSQL and Redis instead), creates a user, an organization, a token
and one chat per stream, then runs N concurrent `POST /chats/<id>/messages` streams with httpx,
`--rounds` times. As a baseline in the same run, a second daphne serves a minimal SSE generator
(no auth, no database, no channel layer) that sends the very same events, and gets the same
load. Reported per target: time to first chunk p50/p99, time to `done` p50/p99, events per
second over the round, and the server process's CPU time. `--events N` gives the organization
N detection events first (months of history: every prompt reads the classes they have).

With `--through-nginx` the streams go through nginx running the shipped site (rendered by
deploy/render.py, as the Procfile does) in front of `--web-processes` daphne processes (e.g.
`1,2`, a row each; use PostgreSQL and Redis for more than one); the CPU is then all the daphne
processes' together, and nginx's (with its workers) apart. The baseline is still reached directly.

Everything talks to 127.0.0.1; counts and times are bounded; the servers are stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as `python bench/chat_streams.py` (README's command), `bench` is not importable yet.
    sys.path.insert(0, str(ROOT))

from bench.topology import (  # noqa: E402
    BEHIND_NGINX,
    Topology,
    add_topology_arguments,
    daphne_command,
    nginx_process,
    topologies_of,
    with_children,
)

PROMPT = "Who is on the team, and how many chats do I have?"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_STREAMS = 1000
MAX_EVENTS = 1_000_000
ROUND_TIMEOUT = 120.0

SETUP = """
import json, os
from django.contrib.auth import get_user_model
from chats.services import chat_create
from organizations.services import api_token_create, membership_add, organization_create
suffix = os.environ["BENCH_SUFFIX"]
user = get_user_model().objects.create_user(f"bench-{suffix}", password=None)
organization = organization_create(name=f"Bench {suffix}", owner=user)
for n in range(3):
    member = get_user_model().objects.create_user(f"bench-{suffix}-member-{n}", password=None)
    membership_add(organization=organization, user=member, role="member")
_, token = api_token_create(user=user, name="chat_streams benchmark")
chats = [chat_create(user=user, organization=organization).pk for _ in range(int(os.environ["BENCH_CHATS"]))]
events = int(os.environ["BENCH_EVENTS"])
if events:
    # Months of history: every prompt reads the classes the organization's events have.
    from datetime import timedelta
    from django.utils import timezone
    from cameras.services import camera_create
    from events.models import DetectionEvent
    camera = camera_create(organization=organization, name="Bench gate", source="push:")
    start = timezone.now() - timedelta(days=90)
    labels = ("person", "car", "dog", "cat", "bicycle", "motion", "face")
    DetectionEvent.objects.bulk_create(
        (
            DetectionEvent(
                organization=organization, camera=camera, label=labels[n % len(labels)],
                started_at=start + timedelta(seconds=n * 30), last_seen_at=start + timedelta(seconds=n * 30 + 5),
                peak_confidence=0.8,
            )
            for n in range(events)
        ),
        batch_size=5000,
    )
print(json.dumps({"token": token, "chats": chats}))
"""


# --- the baseline: a minimal SSE generator served by the same daphne ----------------------


async def baseline_app(scope, receive, send):
    """ASGI app: answer any request with the events in BENCH_BASELINE_EVENTS, then done."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            if kind == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    events = json.loads(os.environ["BENCH_BASELINE_EVENTS"])
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    for event in events:
        await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Listening:
    """A server process on 127.0.0.1:`port`, ready once the port takes connections."""

    def __init__(self, command: list[str], *, port: int, env: dict[str, str], log: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )
        name = Path(command[0]).name if command[0] != sys.executable else command[2]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{name} exited early:\n{log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{name} did not start within 30 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Daphne(Listening):
    def __init__(self, application: str, env: dict[str, str], log: Path):
        port = free_port()
        super().__init__(daphne_command(application, port), port=port, env=env, log=log)


class Nginx(Listening):
    """nginx with the shipped site in front of `backends`, as the Procfile runs it."""

    def __init__(self, backends: list[Daphne], log: Path):
        port = free_port()
        command, env = nginx_process(
            log.parent / f"nginx-{port}",
            port=port,
            backend_ports=[backend.port for backend in backends],
            env=dict(os.environ),
        )
        super().__init__(command, port=port, env=env, log=log)


# --- measuring -----------------------------------------------------------------------------


@dataclass
class StreamResult:
    first_chunk: float | None = None
    done: float | None = None
    events: int = 0
    error: str = ""


@dataclass
class RoundResult:
    wall: float
    cpu: float  # the web processes'
    proxy_cpu: float | None = None  # nginx's, with its workers, when there is one
    # The machine's 1-minute load average as the round began: it is shared with other work.
    load_average: float = 0.0
    streams: list[StreamResult] = field(default_factory=list)


async def one_stream(client: httpx.AsyncClient, url: str, headers: dict) -> StreamResult:
    result = StreamResult()
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, json={"prompt": PROMPT}, headers=headers) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return result
            buffer = b""
            async for part in response.aiter_raw():
                buffer += part
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    if not block.startswith(b"data: "):
                        continue
                    result.events += 1
                    if result.first_chunk is None and b'"type": "chunk"' in block:
                        result.first_chunk = time.perf_counter() - started
                    if b'"type": "done"' in block:
                        result.done = time.perf_counter() - started
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _cpu_of(pids) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def run_round(urls: list[str], headers: dict, *, server_pids, proxy_pids=()) -> RoundResult:
    """One round of a stream per URL; the CPU time of the server's processes (and apart, of the
    proxy's) over it."""
    limits = httpx.Limits(max_connections=len(urls) + 10, max_keepalive_connections=len(urls) + 10)
    # A stream may wait for its first byte as long as the round lasts: at 500 streams the last
    # prompts queue for setup for tens of seconds, which TTFC reports, not a client timeout.
    timeout = httpx.Timeout(ROUND_TIMEOUT, connect=30.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        cpu_before, proxy_before = _cpu_of(server_pids), _cpu_of(proxy_pids)
        load_average = os.getloadavg()[0]
        started = time.perf_counter()
        async with asyncio.timeout(ROUND_TIMEOUT):
            streams = await asyncio.gather(*(one_stream(client, url, headers) for url in urls))
        wall = time.perf_counter() - started
    return RoundResult(
        wall=wall,
        cpu=_cpu_of(server_pids) - cpu_before,
        proxy_cpu=_cpu_of(proxy_pids) - proxy_before if proxy_pids else None,
        streams=list(streams),
        load_average=load_average,
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarize(name: str, rounds: list[RoundResult]) -> dict:
    streams = [stream for r in rounds for stream in r.streams]
    ok = [s for s in streams if s.done is not None and s.first_chunk is not None]
    errors = [s.error or "no done event" for s in streams if s not in ok]
    first = [s.first_chunk * 1000 for s in ok]
    done = [s.done * 1000 for s in ok]
    events = sum(s.events for s in streams)
    wall = sum(r.wall for r in rounds)
    return {
        "target": name,
        "streams": len(streams),
        "failed": len(errors),
        "first_error": errors[0] if errors else "",
        "ttfc_p50_ms": statistics.median(first) if first else None,
        "ttfc_p99_ms": percentile(first, 0.99) if first else None,
        "done_p50_ms": statistics.median(done) if done else None,
        "done_p99_ms": percentile(done, 0.99) if done else None,
        "events_per_s": events / wall if wall else 0.0,
        "events_per_stream": events / len(streams) if streams else 0,
        "server_cpu_s": sum(r.cpu for r in rounds),
        "server_cpu_ms_per_reply": 1000 * sum(r.cpu for r in rounds) / len(streams)
        if streams
        else 0.0,
        "proxy_cpu_ms_per_reply": 1000 * sum(r.proxy_cpu for r in rounds) / len(streams)
        if streams and all(r.proxy_cpu is not None for r in rounds)
        else None,
        "load_average": statistics.mean(r.load_average for r in rounds),
    }


def print_table(rows: list[dict], streams: int, rounds: int) -> None:
    print(
        f"\n{streams} concurrent streams x {rounds} rounds, one daphne process each unless the "
        "target says otherwise (server CPU: all its daphne processes; nginx's apart):\n"
    )
    print(
        "| target | streams ok | TTFC p50 | TTFC p99 | done p50 | done p99 | events/s "
        "| events/stream | server CPU | CPU/reply | nginx CPU/reply | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        fmt = lambda v: "n/a" if v is None else f"{v:.1f} ms"  # noqa: E731
        print(
            f"| {row['target']} | {row['streams'] - row['failed']}/{row['streams']} "
            f"| {fmt(row['ttfc_p50_ms'])} | {fmt(row['ttfc_p99_ms'])} | {fmt(row['done_p50_ms'])} "
            f"| {fmt(row['done_p99_ms'])} | {row['events_per_s']:.0f} "
            f"| {row['events_per_stream']:.1f} | {row['server_cpu_s']:.2f} s "
            f"| {row['server_cpu_ms_per_reply']:.1f} ms | {fmt(row['proxy_cpu_ms_per_reply'])} "
            f"| {row['load_average']:.1f} |"
        )
    for row in rows:
        if row["failed"]:
            print(f"\n{row['target']}: {row['failed']} failed; first: {row['first_error']}")


def manage_shell_json(env: dict[str, str], script: str) -> dict:
    """Run `script` with `manage.py shell` under `env`; the JSON its last printed line holds."""
    output = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def create_fixtures(env: dict[str, str], streams: int, events: int) -> dict:
    """A user with a token, an organization with a few members and `events` detection events
    on one camera, and one chat per stream."""
    setup_env = {
        **env,
        "BENCH_SUFFIX": secrets.token_hex(4),
        "BENCH_CHATS": str(streams),
        "BENCH_EVENTS": str(events),
    }
    return manage_shell_json(setup_env, SETUP)


async def reply_once(base_url: str, chat: int, headers: dict) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{base_url}/chats/{chat}/messages", json={"prompt": PROMPT}, headers=headers
        )
    response.raise_for_status()
    return response


async def measure_sightline(
    topology: Topology, args: argparse.Namespace, env: dict[str, str], setup: dict, workdir: Path
) -> tuple[dict, httpx.Response]:
    """Sightline's row for `topology`, and a reply it gave (whose events feed the baseline)."""
    headers = {"Authorization": f"Bearer {setup['token']}"}
    env = {**env, **BEHIND_NGINX} if topology.through_nginx else env
    servers: list[Listening] = []
    try:
        for _ in range(topology.web_processes):
            servers.append(Daphne("project.asgi:application", env, workdir / "sightline.log"))
        web_pids = [server.process.pid for server in servers]
        if topology.through_nginx:
            servers.append(Nginx(servers[:], workdir / "nginx.log"))
        # Warm-up (imports, connections) on the first chat: every web process directly, since
        # nginx picks one, and then nginx.
        for server in servers:
            reply = await reply_once(server.url, setup["chats"][0], headers)
        front = servers[-1]
        # nginx's workers are up: they carried the warm-up's reply.
        proxy_pids = with_children(front.process.pid) if topology.through_nginx else ()
        urls = [f"{front.url}/chats/{chat}/messages" for chat in setup["chats"]]
        rounds = [
            await run_round(urls, headers, server_pids=web_pids, proxy_pids=proxy_pids)
            for _ in range(args.rounds)
        ]
        label = (
            f"Sightline through nginx, {topology.web_processes} daphne"
            if topology.through_nginx
            else "Sightline POST /chats/<id>/messages"
        )
        row = summarize(label, rounds)
        if row["failed"]:
            print(
                "Server log (last lines):\n"
                + "\n".join(servers[0].log.read_text().splitlines()[-20:])
            )
    finally:
        for server in reversed(servers):
            server.stop()
    return row, reply


async def measure(
    args: argparse.Namespace, env: dict[str, str], setup: dict, workdir: Path
) -> list[dict]:
    rows = []
    for topology in topologies_of(args):
        row, reply = await measure_sightline(topology, args, env, setup, workdir)
        rows.append(row)
    received = [json.loads(block[6:]) for block in reply.text.split("\n\n") if block]
    text = "".join(event["text"] for event in received if event["type"] == "chunk")
    events = [
        f"data: {json.dumps({'type': 'chunk', 'text': piece})}\n\n"
        for piece in re.findall(r"\s*\S+", text)
    ] + [f"data: {json.dumps(received[-1])}\n\n"]

    baseline_env = {**env, "BENCH_BASELINE_EVENTS": json.dumps(events)}
    baseline = Daphne("bench.chat_streams:baseline_app", baseline_env, workdir / "baseline.log")
    try:
        urls = [f"{baseline.url}/chats/{chat}/messages" for chat in setup["chats"]]
        rounds = [
            await run_round(urls, {}, server_pids=[baseline.process.pid])
            for _ in range(args.rounds)
        ]
        rows.insert(0, summarize("baseline: minimal SSE generator", rounds))
    finally:
        baseline.stop()
    print(
        f"Each reply: {len(text)} characters; the baseline sends it as {len(events) - 1} word "
        "pieces + done. Sightline sends a piece alone unless pieces arrive while the previous "
        "publish is in flight (then they share an event), hence its lower events/stream."
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of N streams (default 3)")
    parser.add_argument(
        "--events",
        type=int,
        default=0,
        help=f"detection events the organization has, 0..{MAX_EVENTS} (default 0)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    add_topology_arguments(parser)
    args = parser.parse_args()
    if not 1 <= args.streams <= MAX_STREAMS or not 1 <= args.rounds <= 20:
        parser.error(f"--streams must be 1..{MAX_STREAMS} and --rounds 1..20")
    if not 0 <= args.events <= MAX_EVENTS:
        parser.error(f"--events must be 0..{MAX_EVENTS}")
    try:
        topologies_of(args)
    except ValueError as error:
        parser.error(str(error))

    workdir = Path(tempfile.mkdtemp(prefix="chat-streams-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get(
            "BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"
        ),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "ASSISTANT_BACKEND": "builtin",
        "ASSISTANT_BUILTIN_DELAY_MS": "0",
        "CHAT_RATE_LIMIT_PER_MINUTE": str(args.streams * args.rounds * 10),
        "CAMERAS_IN_PROCESS": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("REDIS_URL", None)
    if os.environ.get("BENCH_REDIS_URL"):
        env["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        print(
            f"database: {env['DATABASE_URL'].split('@')[-1]}; channel layer: "
            f"{'redis' if env.get('REDIS_URL') else 'in-memory'}; cores: {os.cpu_count()}"
        )
        rows = asyncio.run(
            measure(args, env, create_fixtures(env, args.streams, args.events), workdir)
        )
        print_table(rows, args.streams, args.rounds)
        if args.json:
            print(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
