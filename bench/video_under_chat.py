"""Video under chat load: does a camera keep its frame rate while one daphne generates replies?

    python -m bench.video_under_chat --replies 200 --seconds 15

Starts one daphne serving Sightline on the embedded defaults (a temporary SQLite database, the
in-memory channel layer, the capture worker inside daphne) with one `demo:` camera at `--fps`
(10) and `--viewers` (3) WebSocket viewers on it. It measures the viewers twice in the same run:
first with no other load, then while `--replies` (200) chat replies stream at once, each loop
posting a prompt to its own chat with the builtin backend and reading the Server-Sent Events to
`done`, then posting again. The chat load runs in a client process of its own, so the viewers'
clock is not slowed by it; both share the machine's cores with the server, as they would.

Columns: `fps mean`/`fps min` frames per viewer per second in the window; latency p50/p99 is a
frame's arrival at a viewer minus its capture `timestamp` (same machine, same clock);
`replies/s` replies begun and done within the window, their done time p50, and the replies
begun in the window that failed; the server's CPU over warm-up and window; the load average.
The server's own settings come from the environment, e.g. `REQUEST_CONCURRENCY=0` to compare
with admission control off.

Everything talks to 127.0.0.1; counts and times are bounded; the server and the load process
are stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from bench.chat_streams import Daphne, cpu_seconds, manage_shell_json, one_stream, percentile

ROOT = Path(__file__).resolve().parent.parent
MAX_REPLIES = 1000
MAX_VIEWERS = 50
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

SETUP = """
import json, os
from django.contrib.auth import get_user_model
from cameras.services import camera_create
from chats.services import chat_create
from organizations.services import api_token_create, organization_create
user = get_user_model().objects.create_user("bench-video", password=None)
organization = organization_create(name="Bench video", owner=user)
camera = camera_create(
    organization=organization, name="Bench demo", source="demo:",
    target_fps=int(os.environ["BENCH_FPS"]), max_width=640, detectors=["motion"],
)
_, token = api_token_create(user=user, name="video_under_chat benchmark")
chats = [
    chat_create(user=user, organization=organization).pk
    for _ in range(int(os.environ["BENCH_CHATS"]))
]
print(json.dumps({"token": token, "camera": camera.public_id, "chats": chats}))
"""


# --- the chat load (its own process) ---------------------------------------------------------


async def _chat_load(pipe: Connection, base_url: str, token: str, chats: list[int]) -> dict:
    """Keep one reply streaming per chat until the parent says stop; count what finished."""
    headers = {"Authorization": f"Bearer {token}"}
    stopping = asyncio.Event()
    window = [float("inf"), float("inf")]
    done_in_window: list[float] = []
    errors: list[str] = []
    started = 0

    async def loop_one(client: httpx.AsyncClient, chat: int) -> None:
        nonlocal started
        url = f"{base_url}/chats/{chat}/messages"
        while not stopping.is_set():
            started += 1
            began = time.time()
            result = await one_stream(client, url, headers)
            in_window = window[0] <= began and time.time() <= window[1]
            if result.done is None:
                if in_window:
                    errors.append(result.error or "no done event")
                await asyncio.sleep(0.5)  # never hammer a failing server
            elif in_window:
                done_in_window.append(result.done)

    async def listen() -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not await loop.run_in_executor(None, pipe.poll, 600):
                stopping.set()
                return
            command = pipe.recv()
            if command[0] == "window":
                window[:] = command[1:]
            elif command[0] == "stop":
                stopping.set()
                return

    limits = httpx.Limits(max_connections=len(chats) + 10, max_keepalive_connections=len(chats))
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:
        listener = asyncio.create_task(listen())
        await asyncio.gather(*(loop_one(client, chat) for chat in chats))
        await listener
    return {"done": done_in_window, "errors": errors, "started": started}


def _chat_load_process(pipe: Connection, base_url: str, token: str, chats: list[int]) -> None:
    try:
        pipe.send(("done", asyncio.run(_chat_load(pipe, base_url, token, chats))))
    except BaseException as error:  # noqa: BLE001 - the parent must hear why
        pipe.send(("failed", f"{type(error).__name__}: {error}"))
        raise


# --- viewers (this process) ------------------------------------------------------------------


async def _viewer(url: str, headers: dict, start: float, end: float) -> tuple[int, list[float]]:
    """Frames received in [start, end) (Unix seconds) and their latencies in ms."""
    count, latencies = 0, []
    async with connect(
        url, additional_headers=headers, max_size=MAX_MESSAGE_BYTES, compression=None, proxy=None
    ) as connection:
        while True:
            remaining = end - time.time()
            if remaining <= 0:
                return count, latencies
            try:
                message = await asyncio.wait_for(connection.recv(decode=False), remaining)
            except TimeoutError:
                return count, latencies
            now = time.time()
            if now >= start:
                count += 1
                latencies.append(now * 1000 - json.loads(message)["timestamp"])


async def _watch(url: str, headers: dict, viewers: int, warmup: float, seconds: float) -> dict:
    start = time.time() + warmup
    results = await asyncio.gather(
        *(_viewer(url, headers, start, start + seconds) for _ in range(viewers))
    )
    fps = [count / seconds for count, _ in results]
    latencies = sorted(latency for _, samples in results for latency in samples)
    return {
        "fps_mean": statistics.mean(fps),
        "fps_min": min(fps),
        "latency_p50_ms": statistics.median(latencies) if latencies else None,
        "latency_p99_ms": percentile(latencies, 0.99) if latencies else None,
    }


def watch(server: Daphne, url: str, headers: dict, args: argparse.Namespace) -> dict:
    cpu_before = cpu_seconds(server.process.pid)
    figures = asyncio.run(_watch(url, headers, args.viewers, args.warmup, args.seconds))
    figures["server_cpu_s"] = cpu_seconds(server.process.pid) - cpu_before
    figures["load_average"] = os.getloadavg()[0]
    return figures


# --- the run ---------------------------------------------------------------------------------


def _receive(pipe: Connection, timeout: float) -> dict:
    if not pipe.poll(timeout):
        raise RuntimeError("the chat load process did not answer in time")
    kind, payload = pipe.recv()
    if kind != "done":
        raise RuntimeError(f"the chat load failed: {payload}")
    return payload


def measure(args: argparse.Namespace, env: dict[str, str], setup: dict, workdir: Path) -> list:
    server = Daphne(args.application, env, workdir / "sightline.log")
    try:
        url = f"ws://127.0.0.1:{server.port}/ws/stream/{setup['camera']}"
        headers = {"Authorization": f"Bearer {setup['token']}"}
        quiet = {"load": "camera only", **watch(server, url, headers, args)}

        parent, child = multiprocessing.Pipe()
        load = multiprocessing.get_context("spawn").Process(
            target=_chat_load_process,
            args=(child, server.url, setup["token"], setup["chats"]),
            daemon=True,
        )
        load.start()
        try:
            # The window opens after the viewers' warm-up, which also lets the load ramp up.
            opens = time.time() + args.warmup
            parent.send(("window", opens, opens + args.seconds))
            loaded = watch(server, url, headers, args)
            parent.send(("stop",))
            chat = _receive(parent, 120)
        finally:
            load.join(timeout=10)
            if load.is_alive():
                load.kill()
        done = chat["done"]
        loaded = {
            "load": f"camera + {args.replies} replies",
            **loaded,
            "replies_per_s": len(done) / args.seconds,
            "reply_done_p50_ms": statistics.median(done) * 1000 if done else None,
            "reply_errors": len(chat["errors"]),
            "first_error": chat["errors"][0] if chat["errors"] else "",
        }
        errors = [line for line in server.log.read_text().splitlines() if " ERROR " in line]
        if errors:
            print(f"server log: {len(errors)} ERROR lines; first: {errors[0]}")
        return [quiet, loaded]
    finally:
        server.stop()


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f} ms"

    print(
        f"\none daphne, {os.cpu_count()} cores; camera demo: at {args.fps} fps, "
        f"{args.viewers} viewers, {args.seconds:g} s windows:\n"
    )
    print(
        "| load | fps mean | fps min | latency p50 | latency p99 | replies/s | reply done p50 "
        "| reply errors | server CPU | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        replies = f"{row['replies_per_s']:.1f}" if "replies_per_s" in row else "-"
        print(
            f"| {row['load']} | {row['fps_mean']:.1f} | {row['fps_min']:.1f} "
            f"| {ms(row['latency_p50_ms'])} | {ms(row['latency_p99_ms'])} | {replies} "
            f"| {ms(row.get('reply_done_p50_ms'))} | {row.get('reply_errors', '-')} "
            f"| {row['server_cpu_s']:.1f} s | {row['load_average']:.1f} |"
        )
    for row in rows:
        if row.get("first_error"):
            print(f"\nfirst reply error: {row['first_error']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replies", type=int, default=200, help="concurrent replies (200)")
    parser.add_argument("--viewers", type=int, default=3, help="WebSocket viewers (3)")
    parser.add_argument("--fps", type=int, default=10, help="the camera's frame rate (10)")
    parser.add_argument("--seconds", type=float, default=15.0, help="each window (15 s)")
    parser.add_argument("--warmup", type=float, default=5.0, help="before each window (5 s)")
    parser.add_argument(
        "--delay-ms",
        type=int,
        default=15,
        help="ASSISTANT_BUILTIN_DELAY_MS: pause between the builtin backend's pieces (15)",
    )
    parser.add_argument(
        "--application",
        default="project.asgi:application",
        help="the ASGI application daphne serves (to compare an experimental entry point)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    if not 1 <= args.replies <= MAX_REPLIES or not 1 <= args.viewers <= MAX_VIEWERS:
        parser.error(f"--replies must be 1..{MAX_REPLIES} and --viewers 1..{MAX_VIEWERS}")
    if not 1 <= args.fps <= 30 or not 1 <= args.seconds <= 300 or not 0 <= args.warmup <= 60:
        parser.error("--fps must be 1..30, --seconds 1..300 and --warmup 0..60")

    workdir = Path(tempfile.mkdtemp(prefix="video-under-chat-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "ASSISTANT_BACKEND": "builtin",
        "ASSISTANT_BUILTIN_DELAY_MS": str(args.delay_ms),
        "CHAT_RATE_LIMIT_PER_MINUTE": "1000000",
        "CAMERAS_IN_PROCESS": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("REDIS_URL", None)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        setup_env = {**env, "BENCH_FPS": str(args.fps), "BENCH_CHATS": str(args.replies)}
        setup = manage_shell_json(setup_env, SETUP)
        rows = measure(args, env, setup, workdir)
        print_table(rows, args)
        if args.json:
            print(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
