"""The Procfile's topology (two daphne processes, two camera workers, nginx) on this test's
PostgreSQL database and a redis-server of the test's own, used through nginx only, as a browser
and a camera viewer would: the real log-in form, a reply streamed over SSE, a camera over the
WebSocket, a frame ingested, a reply resumed on the other web process; then with faults
injected: a web process SIGKILLed, the camera process reading a camera SIGKILLed (the other takes
the camera over), Redis restarted.

How the topology is started. The first test runs `honcho start`, exactly as README says. honcho
ends every process as soon as one of them exits, so a killed daphne would take the whole topology
down with it, and "service continues" could not be shown under it. The fault test therefore
starts one `honcho start <name>` per Procfile entry: the same Procfile lines, run by the same
honcho the same way (a shell each, the same environment), only not tied to each other's fate, as
systemd's units are not in production. Nothing of the Procfile is re-typed here; its entries are
read from it.

A web process is reached directly by its port only to find out or choose which process serves
something (the `sightline_viewers` and `sightline_sse_streams` gauges of its /metrics) and to
resume a reply on a chosen one; everything a user does goes through nginx.

Every wait has a deadline; a failure shows the tail of every process's log and Redis's (the
report section "topology logs", from tests/deploy/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from cameras.leases import lease_key
from cameras.services import camera_create
from chats.models import Message
from chats.services import chat_create
from tests.cameras.conftest import jpeg_b64, now_ms
from tests.conftest import ROOT, _database_url_of_test_database, free_port
from tests.deploy.conftest import port_open
from tests.own_redis import OwnRedis

PROCFILE = ROOT / "Procfile"
WEB_PROCESSES = ("web1", "web2")
CAMERA_PROCESSES = ("cameras1", "cameras2")
# A pause between the builtin answer's word pieces, so a reply lasts long enough to time.
PIECE_DELAY_MS = 120
TEAM_PROMPT = "Who is on the team?"  # 11 pieces: about 1.3 s
# Three of the builtin assistant's answers in one: 24 pieces, about 3 s, long enough to resume
# the reply or to restart Redis under it while it is being generated.
LONG_PROMPT = "Who is on the team, how many chats do I have, and which organization is this?"
STARTS_WITHIN = 60
FRAMES_WITHIN = 20
# A dead camera worker's cameras are read by another within CAMERA_LEASE_SECONDS (10) and a
# lease turn (2); a little more for the source to open under load.
TAKEN_OVER_WITHIN = 15
# README "Health, metrics and recovery": video is back 1-3 s after Redis is.
RECOVERS_WITHIN = 15
LOG_TAIL_CHARS = 4000


def procfile_entries() -> list[str]:
    return re.findall(r"^([A-Za-z0-9_-]+):", PROCFILE.read_text(), re.MULTILINE)


@dataclass
class Topology:
    site: str  # nginx's host:port, the only address users are given
    web_ports: dict[str, int]
    logs: dict[str, Path]  # one log per honcho
    redis: OwnRedis

    def log_tail(self) -> str:
        tails = [
            f"--- {name} ({path}) ---\n{path.read_text(errors='replace')[-LOG_TAIL_CHARS:]}"
            for name, path in self.logs.items()
            if path.exists()
        ]
        access = ROOT / ".topology" / "nginx" / "access.log"
        if access.exists():
            tails.append(f"--- nginx access.log ---\n{access.read_text()[-LOG_TAIL_CHARS:]}")
        tails.append(f"--- redis-server ---\n{self.redis.log()[-LOG_TAIL_CHARS:]}")
        return "\n".join(tails)

    def pid(self, process: str) -> int:
        """The pid honcho started `process` (a Procfile entry) with: with the line's `exec`,
        daphne's or runcameras' own, not a shell's."""
        # Under one `honcho start` every entry is in its one log.
        log = self.logs.get(process, self.logs.get("honcho")).read_text()
        found = re.search(rf"\| {re.escape(process)}\.1 started \(pid=(\d+)\)$", log, re.M)
        assert found, f"honcho did not say it started {process}"
        return int(found[1])

    def web(self, process: str) -> str:
        return f"127.0.0.1:{self.web_ports[process]}"


def honcho_started(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        # Its own session, so the whole tree can be stopped by this one process group's id.
        return subprocess.Popen(
            [sys.executable, "-m", "honcho", "-d", str(ROOT), "-f", str(PROCFILE), "start"] + args,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def honcho_stopped(honcho: subprocess.Popen) -> None:
    if honcho.poll() is not None:
        return
    os.killpg(honcho.pid, signal.SIGTERM)
    try:
        honcho.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(honcho.pid, signal.SIGKILL)
        honcho.wait()


@pytest.fixture
def start_topology(request, nginx, own_redis, transactional_db, tmp_path):
    """start(separately=False): `honcho start`, or with separately=True one `honcho start
    <entry>` per Procfile entry (the module docstring says why)."""
    honchos: list[subprocess.Popen] = []

    def start(*, separately: bool = False) -> Topology:
        ports = {"WEB1_PORT": free_port(), "WEB2_PORT": free_port(), "NGINX_PORT": free_port()}
        env = {
            **os.environ,
            **{name: str(port) for name, port in ports.items()},
            "PYTHON": sys.executable,
            "NGINX": nginx,
            "DATABASE_URL": _database_url_of_test_database(),
            "REDIS_URL": own_redis.url,
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test-only-secret-key"),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MEDIA_ROOT": str(tmp_path / "media"),
            "ASSISTANT_BUILTIN_DELAY_MS": str(PIECE_DELAY_MS),
            # Camera workers read a new camera within a second instead of three.
            "CAMERA_RELOAD_SECONDS": "1",
        }
        env.pop("CAMERAS_IN_PROCESS", None)
        names = procfile_entries() if separately else ["honcho"]
        topology = Topology(
            site=f"127.0.0.1:{ports['NGINX_PORT']}",
            web_ports={"web1": ports["WEB1_PORT"], "web2": ports["WEB2_PORT"]},
            logs={name: tmp_path / f"{name}.log" for name in names},
            redis=own_redis,
        )
        request.node.topology_log_tail = topology.log_tail
        for name, log_path in topology.logs.items():
            honchos.append(honcho_started([name] if separately else [], env, log_path))
        deadline = time.monotonic() + STARTS_WITHIN
        while not all(port_open(port) for port in ports.values()):
            exited = [honcho for honcho in honchos if honcho.poll() is not None]
            assert not exited and time.monotonic() < deadline, "the topology did not start"
            time.sleep(0.2)
        return topology

    yield start
    for honcho in honchos:
        honcho_stopped(honcho)


# --- waiting, with deadlines ------------------------------------------------------------


def wait_until(condition: Callable[[], object], *, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.1)
    return value


# --- a browser, logged in through nginx -----------------------------------------------------


class Browser:
    """A browser's session: the real log-in form (its CSRF token, the session cookie), then
    requests with the CSRF header and Origin a page's scripts send."""

    def __init__(self, site: str):
        self.site = site
        # A read timeout above nothing the topology does: a hung stream fails, never hangs.
        self.client = httpx.Client(base_url=f"http://{site}", timeout=20)

    def log_in(self, username: str, password: str) -> None:
        form = self.client.get("/login/")
        assert form.status_code == 200, form.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)[1]
        answer = self.client.post(
            "/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        assert answer.status_code == 302, answer.text
        assert "sessionid" in self.client.cookies

    @property
    def origin(self) -> str:
        return f"http://{self.site}"

    @property
    def csrf_headers(self) -> dict[str, str]:
        # Django rotates the token at log-in: the cookie has the current one.
        return {"X-CSRFToken": self.client.cookies["csrftoken"], "Origin": self.origin}

    def viewer(self, camera, *, site: str | None = None):
        """A camera's WebSocket with the session cookie and this page's Origin."""
        return websockets.sync.client.connect(
            f"ws://{site or self.site}{camera.stream_path}",
            origin=self.origin,
            additional_headers={"Cookie": f"sessionid={self.client.cookies['sessionid']}"},
            max_size=None,
            open_timeout=10,
        )

    def ingest(self, camera, timestamp: int) -> httpx.Response:
        # The seed client's body (postFrameToBackend), from a browser session.
        body = {
            "streamName": "webcam",
            "streamType": "frame",
            "frame": jpeg_b64(seed=timestamp),
            "timestamp": timestamp,
            "camera_id": camera.public_id,
        }
        return self.client.post(
            "/api/v1/actions/actions/send", json=body, headers=self.csrf_headers
        )

    def send_prompt(self, chat, prompt: str):
        """The reply's SSE response (a context manager) for a prompt sent through nginx."""
        return self.client.stream(
            "POST",
            f"/chats/{chat.pk}/messages",
            json={"prompt": prompt},
            headers=self.csrf_headers,
        )


def logged_in(topology: Topology, user, password: str) -> Browser:
    browser = Browser(topology.site)
    browser.log_in(user.username, password)
    return browser


# --- replies over SSE --------------------------------------------------------------------


def sse_events(response: httpx.Response) -> Iterator[tuple[float, dict]]:
    """(arrival time, event) for each `data:` event, as it arrives."""
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"] == "text/event-stream"
    buffered = b""
    for data in response.iter_raw():
        buffered += data
        while b"\n\n" in buffered:
            event, buffered = buffered.split(b"\n\n", 1)
            if event.startswith(b"data: "):
                yield time.monotonic(), json.loads(event[6:])


@dataclass
class Streamed:
    arrivals: list[tuple[float, dict]]

    @property
    def chunk_times(self) -> list[float]:
        return [at for at, event in self.arrivals if event["type"] == "chunk"]

    @property
    def text(self) -> str:
        return "".join(event["text"] for _, event in self.arrivals if event["type"] == "chunk")

    @property
    def done(self) -> dict:
        assert self.arrivals and self.arrivals[-1][1]["type"] == "done", self.arrivals
        return self.arrivals[-1][1]


def assert_streamed_piece_by_piece(streamed: Streamed) -> None:
    """Buffered (by nginx or anything), the chunks would arrive together at the end; streamed,
    one every PIECE_DELAY_MS, the first long before the last."""
    assert streamed.done["status"] == "complete", streamed.arrivals
    times = streamed.chunk_times
    assert len(times) >= 5, streamed.arrivals
    assert times[-1] - times[0] > (len(times) - 1) * PIECE_DELAY_MS / 1000 * 0.5, times


def reply_streamed(browser: Browser, chat, prompt: str) -> Streamed:
    with browser.send_prompt(chat, prompt) as response:
        return Streamed(list(sse_events(response)))


def stored_reply(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


# --- cameras ---------------------------------------------------------------------------


def lease_holder_pid(topology: Topology, camera) -> int:
    """The pid of the camera process holding `camera`'s lease (cameras/leases.py names the
    holder host:pid:suffix)."""
    holder = redis.Redis.from_url(topology.redis.url).get(lease_key(camera.public_id))
    assert holder, f"nobody holds the lease of {camera.public_id}"
    return int(holder.decode().split(":")[1])


def frame_after(viewer, camera, after_ms: int, *, seconds: float = FRAMES_WITHIN) -> dict:
    """The first frame of `camera` captured after `after_ms` (Unix ms) that `viewer` receives;
    frames already on their way are skipped."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no frame of {camera.name} after {after_ms} within {seconds} s"
        try:
            frame = json.loads(viewer.recv(timeout=left))
        except TimeoutError:
            continue
        assert frame["camera_id"] == camera.public_id
        if frame["timestamp"] > after_ms:
            assert frame["frame"]
            return frame


def ingested_at(browser: Browser, camera) -> int | None:
    """The timestamp of a new frame ingested now, or None when Redis is not back yet (503)."""
    timestamp = now_ms()
    answer = browser.ingest(camera, timestamp)
    assert answer.status_code in (200, 503), answer.text
    return timestamp if answer.status_code == 200 else None


def gauge(topology: Topology, process: str, name: str, labels: str = "") -> float:
    """A gauge of one web process's own /metrics (from 127.0.0.1 without a proxy: allowed)."""
    metrics = httpx.get(f"http://{topology.web(process)}/metrics", timeout=5)
    assert metrics.status_code == 200, metrics.text
    found = re.search(rf"^{name}{re.escape(labels)} (\S+)$", metrics.text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def serving(topology: Topology, name: str, labels: str = "") -> str:
    """The one web process whose gauge says it serves the one open stream."""

    def the_one() -> str | None:
        processes = [p for p in WEB_PROCESSES if gauge(topology, p, name, labels) >= 1]
        return processes[0] if len(processes) == 1 else None

    return wait_until(the_one, seconds=5, what=f"one web process with {name}{labels}")


def the_other(process: str) -> str:
    """The other web process, or the other camera process."""
    pair = WEB_PROCESSES if process in WEB_PROCESSES else CAMERA_PROCESSES
    return next(p for p in pair if p != process)


# --- the tests --------------------------------------------------------------------------


def test_under_honcho_a_browser_logs_in_streams_resumes_and_watches_through_nginx(
    start_topology, alice, organization
):
    topology = start_topology()
    browser = logged_in(topology, alice, "alice-password")
    assert browser.client.get("/healthz").status_code == 200

    # A reply streams through nginx as it is written.
    chat = chat_create(user=alice, organization=organization)
    assert_streamed_piece_by_piece(reply_streamed(browser, chat, TEAM_PROMPT))

    # A reply being generated by one web process is followed live from the other: its deltas
    # cross over Redis, and the text resumed from an offset ends as the stored reply.
    with browser.send_prompt(chat, LONG_PROMPT) as original:
        message_id = int(original.headers["x-message-id"])
        events = sse_events(original)
        before = [next(events) for _ in range(3)]
        offset = len("".join(event["text"] for _, event in before))
        generating = serving(topology, "sightline_sse_streams")
        resumed_on = the_other(generating)
        resume_url = (
            f"http://{topology.web(resumed_on)}/api/v1/chats/{chat.pk}/messages/{message_id}/stream"
        )
        with browser.client.stream("GET", resume_url, params={"offset": offset}) as response:
            resumed = Streamed(list(sse_events(response)))
        original_rest = Streamed(before + list(events))
    stored = stored_reply(message_id)
    assert stored.status == "complete"
    assert original_rest.text == stored.content
    assert resumed.done["status"] == "complete"
    assert resumed.text == stored.content[offset:]
    # Live, not the finished reply read at the end: its pieces kept arriving over time.
    assert len(resumed.chunk_times) >= 3, resumed.arrivals
    assert resumed.chunk_times[-1] - resumed.chunk_times[0] > 2 * PIECE_DELAY_MS / 1000

    # A camera only the camera workers capture plays (no daphne captures with REDIS_URL).
    yard = camera_create(
        organization=organization, name="Yard", source="demo:", target_fps=10, max_width=320
    )
    with browser.viewer(yard) as viewer:
        assert viewer.response.status_code == 101
        frame_after(viewer, yard, 0)

    # A frame ingested through nginx reaches a viewer through nginx, and viewers on each web
    # process whichever one took the frame.
    webcam = camera_create(organization=organization, name="Webcam", source="push:")
    with (
        browser.viewer(webcam) as through_nginx,
        browser.viewer(webcam, site=topology.web("web1")) as on_web1,
        browser.viewer(webcam, site=topology.web("web2")) as on_web2,
    ):
        labels = f'{{camera="{webcam.public_id}"}}'
        for process in WEB_PROCESSES:
            wait_until(
                lambda p=process: gauge(topology, p, "sightline_viewers", labels) >= 1,
                seconds=5,
                what=f"viewer on {process}",
            )
        timestamp = now_ms()
        ingested = browser.ingest(webcam, timestamp)
        assert ingested.status_code == 200, ingested.text
        assert ingested.json()["duplicate"] is False
        for viewer in (through_nginx, on_web1, on_web2):
            assert frame_after(viewer, webcam, timestamp - 1)["timestamp"] == timestamp
    # nginx as the Procfile starts it found nothing to complain about (its NGINX variable once
    # made it read the binary's path as inherited sockets).
    assert not re.search(r"\[(emerg|alert|crit)\]", topology.logs["honcho"].read_text())


def test_service_continues_through_nginx_when_a_web_process_is_killed_and_redis_restarts(
    start_topology, alice, organization
):
    topology = start_topology(separately=True)
    browser = logged_in(topology, alice, "alice-password")
    yard = camera_create(
        organization=organization, name="Yard", source="demo:", target_fps=10, max_width=320
    )
    webcam = camera_create(organization=organization, name="Webcam", source="push:")
    chat = chat_create(user=alice, organization=organization)
    yard_labels = f'{{camera="{yard.public_id}"}}'

    # --- a web process dies (SIGKILL): the one serving a viewer ---
    with browser.viewer(yard) as doomed_viewer:
        frame_after(doomed_viewer, yard, 0)
        victim = serving(topology, "sightline_viewers", yard_labels)
        survivor = the_other(victim)
        pid = topology.pid(victim)
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"daphne" in command and any(
            f"port={topology.web_ports[victim]}".encode() in part for part in command
        ), command
        os.kill(pid, signal.SIGKILL)
        killed_at = now_ms()
        wait_until(lambda: not port_open(topology.web_ports[victim]), seconds=5, what="port closed")
        with pytest.raises(ConnectionClosed):
            frame_after(doomed_viewer, yard, killed_at + 60_000, seconds=10)

    # The viewer reconnects through nginx, to the survivor, and gets new frames.
    with browser.viewer(yard) as viewer:
        frame_after(viewer, yard, killed_at)
        assert gauge(topology, survivor, "sightline_viewers", yard_labels) >= 1
        # nginx passes every request to the survivor: none is answered 502 (a refused connection
        # is tried on the next server; the dead one is left out for fail_timeout).
        for _ in range(10):
            answer = browser.client.get("/api/v1/chats")
            assert answer.status_code == 200, answer.text
        assert_streamed_piece_by_piece(reply_streamed(browser, chat, TEAM_PROMPT))

        # --- a camera worker dies (SIGKILL): the one holding the yard's lease ---
        holder = lease_holder_pid(topology, yard)
        reader = next(name for name in CAMERA_PROCESSES if topology.pid(name) == holder)
        os.kill(holder, signal.SIGKILL)
        killed_at = now_ms()
        # The other one takes the camera once the lease expires; the viewer, still connected,
        # gets its frames.
        frame_after(viewer, yard, killed_at, seconds=TAKEN_OVER_WITHIN)
        assert lease_holder_pid(topology, yard) == topology.pid(the_other(reader))

        # --- Redis restarts (empty: no persistence), under a reply and a viewer ---
        with browser.send_prompt(chat, LONG_PROMPT) as response:
            message_id = int(response.headers["x-message-id"])
            events = sse_events(response)
            first = next(events)
            topology.redis.stop()
            time.sleep(1)
            topology.redis.start()
            restarted_at, restarted = now_ms(), time.monotonic()
            across_restart = Streamed([first, *events])
        # The reply streamed across the restart goes on after it and ends complete, with its
        # whole text.
        assert across_restart.chunk_times[-1] > restarted, across_restart.arrivals
        assert across_restart.done["status"] == "complete", across_restart.arrivals
        assert across_restart.text == stored_reply(message_id).content
        # The viewer gets frames again without reconnecting.
        frame_after(viewer, yard, restarted_at, seconds=RECOVERS_WITHIN)
        # New replies stream, and ingested frames reach viewers (the first requests may still
        # find a connection pool's dead connection: 503 with Retry-After, as while Redis is down).
        assert_streamed_piece_by_piece(reply_streamed(browser, chat, TEAM_PROMPT))
        with browser.viewer(webcam) as webcam_viewer:
            timestamp = wait_until(
                lambda: ingested_at(browser, webcam),
                seconds=RECOVERS_WITHIN,
                what="frame ingested after the Redis restart",
            )
            assert frame_after(webcam_viewer, webcam, timestamp - 1)["timestamp"] == timestamp
