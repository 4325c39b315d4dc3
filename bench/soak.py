"""Soak benchmark: cameras, viewers and chat replies together for minutes, checked minute by minute.

    python -m bench.soak                                        # embedded defaults, 10 minutes
    python -m bench.soak --layer redis --database postgres      # the production set-up

It builds a throwaway installation in a temporary work directory (a SQLite file there, or with
`--database postgres` a new database it creates on `--postgres-url`'s server and drops at the
end), migrates it, and creates through the project's services an organization, its owner with an
API token, and N `demo:` cameras at `--fps`, each a different scene with a different detector
set (motion+person+face on the first). It starts the servers itself, each logging to its own
file: one daphne with the cameras in its process (default), or with `--layer redis` a daphne
with CAMERAS_IN_PROCESS=0 and `--camera-workers` `manage.py runcameras` processes (sharing the
cameras through their leases), all on `--redis-url`. Then,
from this process (asyncio, 127.0.0.1 only, bounded in count and time):

- M WebSocket viewers per camera (bearer token; half the seed's FrameData JSON, half
  `?format=binary`), plus `--h264-viewers` per camera watching `?format=h264`, each
  reconnecting a second after the server drops it;
- K chat loops, each sending a prompt through the real SSE endpoint (`POST /chats/<id>/messages`,
  builtin backend) and reading the reply to `done`, then the next (a new chat every 20 replies);
- notifications: an alert rule (people, to the browser and MQTT) and a webhook (people) whose
  receiver runs here (`bench.notification_peers`: every signature checked, every delivery id
  counted), and, unless `--mqtt-url ''`, the servers publish to the broker, where a subscriber
  counts the messages (a topic prefix of the run's own, its retained messages cleared at the end);

and after a warm-up it prints one row per minute (`--interval`):

- events written: DetectionEvent rows created that minute per camera (the events API's `count`);
- frames received: distinct frames each camera's viewers got (what reached them);
- H.264 fragments received: distinct fragments each camera's H.264 viewers got, each checked
  to follow the one before it (a jump is allowed only to a key frame: anything else would not
  decode);
- frames recorded: frames the recorder counted into each camera's sessions (`frames_processed`
  from the sessions API): it stops when recording stops, however few events a camera makes;
- replies completed and failed (HTTP error, `error` event, no `done` within a minute);
- alerts raised (rule / webhook), webhook deliveries received, MQTT messages received;
- each server process's RSS (/proc) and the ERROR (and CRITICAL) lines and Python tracebacks
  that appeared in its log; viewer connections dropped; the machine's load average (it is shared).

At the end it judges the run: every minute each camera's frames received, frames recorded and
events are within x2 of the first minute's (events, a few a minute, also within +-2, and all
cameras' together within x2); the server processes stay up; no ERROR line or traceback in any
log (warm-up and shutdown included); each server's RSS grows less than 50 MiB from the first
minute to the last; replies complete every minute and none fail; no viewer is dropped; no camera
records more frames than one reader of it can (two camera processes reading one camera would);
H.264 fragments are within x2 of the first minute too and none arrived out of decodable order;
every webhook alert reached the receiver once, signed, with its snapshot (after a drain of up to
30 s at the end); MQTT messages arrived every minute. It also
says what share of the recorded frames the viewers got, how many messages channels-redis dropped
for full channels (an INFO line, but frames or reply pieces lost), and what /readyz answered.
Exit status 1 when a target is missed (the work directory with the logs is then kept), 2 when
the installation could not be started. The table is markdown, for the README; the figures also
go to bench/results/ as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from bench.fanout import (
    LOCALHOST,
    MAX_MESSAGE_BYTES,
    cpu_seconds,
    frame_timestamp,
    free_port,
    rss_kib,
    running,
)
from bench.notification_peers import MqttCounter, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

# Scenes and detector sets, each camera different; the first runs all three built-in detectors.
# Beyond six cameras the sets repeat on new scenes.
CAMERA_PRESETS = (
    ("Street", "demo:", ["motion", "person", "face"]),
    ("Side street", "demo:street2", ["motion", "person"]),
    ("Gate", "demo:gate", ["motion"]),
    ("Lobby", "demo:lobby", ["person"]),
    ("Yard", "demo:yard", ["motion", "face"]),
    ("Dock", "demo:dock", ["person", "face"]),
)
MAX_CAMERAS = 24
# Every camera has a zone over the lower half of its picture and a motion mask over a strip at
# the top (where a camera's clock would be), so the soak runs masks and zones too.
SOAK_ZONES = [{"name": "Driveway", "points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}]
SOAK_MASKS = [{"name": "Clock", "points": [[0, 0], [1, 0], [1, 0.06], [0, 0.06]]}]
MAX_VIEWERS_PER_CAMERA = 20
MAX_CHATS = 200
MAX_MINUTES = 24 * 60
PROMPTS = (
    "What did the cameras see in the last few minutes?",
    "How many people on Street today?",
    "Which camera was busiest today?",
    "How many people entered the Driveway today?",
    "Who is on the team?",
)
REPLIES_PER_CHAT = 20
# Every fifth reply of a chat loop regenerates the one before it.
REGENERATE_EVERY = 5
REPLY_TIMEOUT = 60.0
FIRST_FRAME_TIMEOUT = 120.0
START_TIMEOUT = 60.0

# The targets.
FACTOR = 2.0
EVENT_SLACK = 2  # a 60 s event cut lands in one minute or the next: counts of a few jitter by 1-2
RSS_GROWTH_LIMIT_MIB = 50.0


# --- reading the server logs ---------------------------------------------------------------

# `%(asctime)s %(levelname)s %(name)s: %(message)s` (settings.LOGGING), daphne's own format
# before Django configures logging (`%(asctime)-15s %(levelname)-8s %(message)s`), and
# logging's last-resort `LEVEL:name:message`.
_ERROR_LINE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[ T][\d:.,]+\s+(?:ERROR|CRITICAL)\b|(?:ERROR|CRITICAL):)"
)
_WARNING_LINE = re.compile(r"^(?:\d{4}-\d\d-\d\d[ T][\d:.,]+\s+WARNING\b|WARNING:)")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:.,]+\s+")
# channels-redis drops a group message for a channel that is full and says so at INFO: not an
# error, but frames or reply pieces that never arrived (per kind of group: camera, message).
_LAYER_DROP = re.compile(r"channels over capacity in group ([a-z]+)_")
KEPT_LINES = 20


@dataclass
class LogTally:
    errors: int = 0
    warnings: int = 0
    tracebacks: int = 0
    layer_drops: int = 0


class LogScanner:
    """Counts ERROR/CRITICAL lines, WARNING lines and tracebacks in text fed to it in pieces.

    A piece may end mid-line: the tail waits for the next piece. It keeps the distinct ERROR
    lines (without their timestamps) and each traceback's last line (the exception), with counts.
    """

    def __init__(self) -> None:
        self._partial = ""
        self._in_traceback = False
        self.error_lines: Counter[str] = Counter()
        self.warning_lines: Counter[str] = Counter()
        self.exceptions: Counter[str] = Counter()
        self.layer_drops: Counter[str] = Counter()  # per kind of group

    def feed(self, text: str) -> LogTally:
        tally = LogTally()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line.rstrip("\r"), tally)
        return tally

    def _line(self, line: str, tally: LogTally) -> None:
        if self._in_traceback:
            # Frames are indented; the first line that is not is the exception itself.
            if line.startswith((" ", "\t")) or not line:
                return
            self._in_traceback = False
            self.exceptions[line[:300]] += 1
        if line.startswith("Traceback (most recent call last):"):
            tally.tracebacks += 1
            self._in_traceback = True
        elif _ERROR_LINE.match(line):
            tally.errors += 1
            self.error_lines[_TIMESTAMP.sub("", line)[:300]] += 1
        elif _WARNING_LINE.match(line):
            tally.warnings += 1
            self.warning_lines[_TIMESTAMP.sub("", line)[:300]] += 1
        elif drop := _LAYER_DROP.search(line):
            tally.layer_drops += 1
            self.layer_drops[drop.group(1)] += 1


class LogWatch:
    """A server log read as it grows."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.offset = 0
        self.scanner = LogScanner()

    def read_new(self) -> LogTally:
        if not self.path.exists():
            return LogTally()
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        return self.scanner.feed(data.decode("utf-8", errors="replace"))


# --- one row per minute, and the verdict --------------------------------------------------


@dataclass
class Row:
    label: str
    seconds: float
    events: list[int]  # per camera: DetectionEvent rows written
    recorded: list[int]  # per camera: frames the recorder counted into sessions
    frames: list[int]  # per camera
    video: list[int] = field(default_factory=list)  # per camera: H.264 fragments received
    video_out_of_order: int = 0  # fragments that would not decode after the one before
    replies_ok: int = 0
    replies_failed: int = 0
    viewer_drops: int = 0
    rss_mib: dict[str, float] = field(default_factory=dict)  # per server process
    errors: dict[str, int] = field(default_factory=dict)  # per server log
    tracebacks: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    alerts: int = 0  # raised by the rule
    webhook_alerts: int = 0  # raised by the webhook
    webhooks: int = 0  # distinct deliveries the receiver got
    mqtt: dict[str, int] = field(default_factory=dict)  # messages per topic kind
    layer_drops: dict[str, int] = field(default_factory=dict)  # channels-redis "over capacity"
    exited: list[str] = field(default_factory=list)  # server processes found dead
    cpu_percent: dict[str, float] = field(default_factory=dict)  # per server process
    load_average: float = 0.0  # the machine's, 1 minute, as the row ended: it is shared


@dataclass
class Check:
    target: str
    passed: bool
    detail: str


def _within(value: float, reference: float, slack: float = 0.0) -> bool:
    return reference / FACTOR - slack <= value <= reference * FACTOR + slack


def _misses(minutes: list[Row], cameras: list[str], attribute: str, slack: int) -> list[str]:
    """Where a per-camera series leaves the band around the first minute; for events (few a
    minute, hence `slack`) the total over all cameras must also stay within the factor, and
    nothing at all in the first minute is a miss (there is nothing to compare with)."""
    first = getattr(minutes[0], attribute)
    misses = [
        f"{cameras[c]} minute {i + 1}: {getattr(row, attribute)[c]} vs {first[c]}"
        for i, row in enumerate(minutes)
        for c in range(len(cameras))
        if not _within(getattr(row, attribute)[c], first[c], slack) or (not slack and first[c] == 0)
    ]
    totals = [sum(getattr(row, attribute)) for row in minutes]
    if slack:
        misses += [
            f"all cameras minute {i + 1}: {total} vs {totals[0]}"
            for i, total in enumerate(totals)
            if totals[0] == 0 or not _within(total, totals[0])
        ]
    return misses


def judge(
    warmup: Row,
    minutes: list[Row],
    cameras: list[str],
    after_stop: dict[str, int],
    *,
    frames_most: float | None = None,
) -> list[Check]:
    """The targets, each with what was seen. `after_stop`: ERROR lines + tracebacks written
    while the servers stopped (a clean shutdown logs none either). `frames_most`: the most
    frames one reader of a camera can record in a row (fps x seconds, with slack)."""
    if not minutes:
        return [Check("at least one minute measured", False, "the run ended in its warm-up")]
    checks = []
    first = minutes[0]

    series = [
        ("frames", "frames the viewers received", 0),
        ("recorded", "frames the recorder wrote", 0),
        ("events", "events written", EVENT_SLACK),
    ]
    if first.video:
        series.insert(1, ("video", "H.264 fragments the viewers received", 0))
    for attribute, what, slack in series:
        misses = _misses(minutes, cameras, attribute, slack)
        totals = [sum(getattr(row, attribute)) for row in minutes]
        checks.append(
            Check(
                f"{what}: per camera every minute within x{FACTOR:g}"
                + (f" (+-{slack}), all cameras together within x{FACTOR:g}," if slack else "")
                + " of the first",
                not misses,
                "; ".join(misses[:6]) or f"totals {' / '.join(map(str, totals))}",
            )
        )

    if frames_most is not None:
        # Two processes reading one camera would record each frame twice over.
        twice = [
            f"minute {index} {camera}: {count}"
            for index, row in enumerate(minutes, start=1)
            for camera, count in zip(cameras, row.recorded, strict=True)
            if count > frames_most
        ]
        checks.append(
            Check(
                f"each camera read by one process: at most {frames_most:g} frames recorded a row",
                not twice,
                "; ".join(twice[:6]),
            )
        )

    rows = [warmup, *minutes]
    lost = sorted({name for row in rows for name in row.exited})
    checks.append(
        Check("server processes stay up", not lost, f"exited: {', '.join(lost)}" if lost else "")
    )

    logs = {name for row in rows for name in row.errors} | set(after_stop)
    bad = {
        name: (
            sum(row.errors.get(name, 0) for row in rows),
            sum(row.tracebacks.get(name, 0) for row in rows),
        )
        for name in sorted(logs)
    }
    detail = ", ".join(
        f"{name}: {errors} ERROR, {tracebacks} tracebacks"
        for name, (errors, tracebacks) in bad.items()
    )
    stop_problems = sum(after_stop.values())
    checks.append(
        Check(
            "0 ERROR lines and 0 tracebacks in the server logs (warm-up and shutdown included)",
            not stop_problems and all(e == 0 and t == 0 for e, t in bad.values()),
            detail + (f"; {stop_problems} while stopping" if stop_problems else ""),
        )
    )

    growth = {
        name: minutes[-1].rss_mib[name] - first.rss_mib[name]
        for name in first.rss_mib
        if name in minutes[-1].rss_mib
    }
    checks.append(
        Check(
            f"RSS growth under {RSS_GROWTH_LIMIT_MIB:g} MiB per server process",
            all(g < RSS_GROWTH_LIMIT_MIB for g in growth.values()),
            ", ".join(f"{name} {g:+.1f} MiB" for name, g in growth.items()),
        )
    )

    failed = sum(row.replies_failed for row in rows)
    idle = [str(i + 1) for i, row in enumerate(minutes) if row.replies_ok == 0]
    checks.append(
        Check(
            "replies complete every minute, none fail",
            failed == 0 and not idle,
            f"{failed} failed" + (f"; none completed in minute {', '.join(idle)}" if idle else ""),
        )
    )

    drops = sum(row.viewer_drops for row in rows)
    checks.append(Check("no viewer connection dropped", drops == 0, f"{drops} dropped"))
    if first.video:
        broken = sum(row.video_out_of_order for row in rows)
        checks.append(
            Check(
                "H.264 fragments in decodable order (a jump only to a key frame)",
                broken == 0,
                f"{broken} out of order",
            )
        )
    return checks


def markdown_table(rows: list[Row], cameras: list[str], servers: list[str]) -> str:
    """One row per minute; per-camera figures in camera order, one RSS and one log column per
    server process."""
    lines = [
        f"| minute | events written ({' / '.join(cameras)}) | events | frames received "
        "| H.264 fragments | frames recorded | replies ok / failed "
        + "".join(f"| {s} RSS MiB " for s in servers)
        + "".join(f"| {s} ERROR / tracebacks " for s in servers)
        + "| viewer drops | load |",
        "|---|---|---:|---|---|---|---:" + "|---:" * (2 * len(servers)) + "|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {' / '.join(map(str, row.events))} | {sum(row.events)} "
            f"| {' / '.join(map(str, row.frames))} | {' / '.join(map(str, row.video)) or '–'} "
            f"| {' / '.join(map(str, row.recorded))} "
            f"| {row.replies_ok} / {row.replies_failed} "
            + "".join(f"| {row.rss_mib.get(s, 0):.0f} " for s in servers)
            + "".join(f"| {row.errors.get(s, 0)} / {row.tracebacks.get(s, 0)} " for s in servers)
            + f"| {row.viewer_drops} | {row.load_average:.1f} |"
        )
    return "\n".join(lines)


def delivery_note(minutes: list[Row], cameras: list[str]) -> str:
    """Not a target, a pointer: the share of the frames a camera processed that its viewers got
    (a camera skips a frame while the previous one is still on its way; far below 100 % means
    the fan-out cannot keep up)."""
    shares = [
        f"{name} {100 * sum(r.frames[c] for r in minutes) / recorded:.0f} %"
        for c, name in enumerate(cameras)
        if (recorded := sum(r.recorded[c] for r in minutes))
    ]
    return "viewers received, of the frames recorded: " + ", ".join(shares)


def verdict_text(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "met" if check.passed else "MISSED"
        lines.append(f"- {mark}: {check.target}" + (f" ({check.detail})" if check.detail else ""))
    return "\n".join(lines)


# --- the installation ------------------------------------------------------------------------

# Run by `manage.py shell -c` in the soak's own database, through the project's services.
SETUP = """
import json, os
from django.contrib.auth import get_user_model
from cameras.services import camera_create
from organizations.services import api_token_create, membership_add, organization_create

spec = json.loads(os.environ["SOAK_SETUP"])
User = get_user_model()
owner = User.objects.create_user("soak-owner", password=None)
organization = organization_create(name="Soak", owner=owner)
for n in range(2):
    membership_add(organization=organization, user=User.objects.create_user(f"soak-member-{n}"), role="member")
cameras = [
    camera_create(organization=organization, name=name, source=source, detectors=detectors,
                  target_fps=spec["fps"], max_width=640, zones=spec["zones"],
                  motion_masks=spec["masks"]).public_id
    for name, source, detectors in spec["cameras"]
]
_, token = api_token_create(user=owner, name="soak benchmark")
from notifications.models import AlertRule, Webhook
rule = AlertRule.objects.create(organization=organization, name="People", classes=["person"],
                                cooldown_seconds=30, notify_browser=True, notify_mqtt=True)
webhook = Webhook.objects.create(organization=organization, name="Soak receiver",
                                 url=spec["webhook_url"], secret=spec["webhook_secret"],
                                 classes=["person"], cooldown_seconds=30)
print(json.dumps({"cameras": cameras, "token": token, "rule": rule.pk, "webhook": webhook.pk}))
"""


def camera_specs(count: int) -> list[tuple[str, str, list[str]]]:
    specs = []
    for n in range(count):
        name, source, detectors = CAMERA_PRESETS[n % len(CAMERA_PRESETS)]
        if n >= len(CAMERA_PRESETS):
            name, source = f"{name} {n + 1}", f"demo:soak{n + 1}"
        specs.append((name, source, list(detectors)))
    return specs


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of `admin_url`, dropped afterwards: the soak never
    touches an existing database."""
    name = f"sightline_soak_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_database(url: str, *, flush_first: bool) -> Iterator[None]:
    """The run's Redis database: empty at the start (or emptied with `flush_first`), emptied again
    at the end. Message ids start at 1 in every new database, so an earlier run's leftover
    `message_<id>` groups would otherwise receive this run's reply pieces."""
    client = redis.Redis.from_url(url)
    try:
        keys = client.dbsize()
        if keys and not flush_first:
            raise RuntimeError(
                f"the Redis database {url} holds {keys} keys: the soak needs one of its own "
                "(--flush-redis empties it first)"
            )
        client.flushdb()
    except BaseException:
        client.close()
        raise
    try:
        yield
    finally:
        try:
            client.flushdb()
        finally:
            client.close()


def manage(env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**env, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{completed.stderr[-3000:]}")
    return completed.stdout


def server_env(
    args: argparse.Namespace, work_dir: Path, database_url: str, mqtt_prefix: str
) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": f"{LOCALHOST},localhost",
        "MEDIA_ROOT": str(work_dir / "media"),
        "ASSISTANT_BACKEND": "builtin",
        # The loops send as fast as replies finish; the limit is not what is being soaked.
        "CHAT_RATE_LIMIT_PER_MINUTE": "1000000",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "PUBLIC_URL": f"http://{LOCALHOST}",
        # The webhook receiver runs here, on loopback.
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "MQTT_URL": args.mqtt_url,
        "MQTT_TOPIC_PREFIX": mqtt_prefix,
        "MQTT_DISCOVERY_PREFIX": f"{mqtt_prefix}-discovery",
    }
    env.pop("REDIS_URL", None)
    if args.layer == "redis":
        env.update({"REDIS_URL": args.redis_url, "CAMERAS_IN_PROCESS": "0"})
    else:
        env["CAMERAS_IN_PROCESS"] = "1"
    return env


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    log: LogWatch
    cpu_seconds: float = 0.0  # at the previous row


def wait_until_serving(base_url: str, server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = server.log.path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"daphne did not answer /healthz in time; log tail:\n{tail}")


# --- the load --------------------------------------------------------------------------------


def binary_header(message: bytes) -> dict:
    length = int.from_bytes(message[:4], "big")
    return json.loads(message[4 : 4 + length])


def binary_frame_timestamp(message: bytes) -> float:
    """The timestamp of a `?format=binary` frame: [4-byte length][JSON header][JPEG]."""
    return float(binary_header(message)["timestamp"])


@dataclass
class Tallies:
    """What the load saw since the last row; the driver takes and resets it each minute."""

    frames: list[set[float]]
    video: list[set[tuple[str, int]]]  # per camera: (stream, seq) of H.264 fragments
    replies_ok: int = 0
    replies_failed: int = 0
    viewer_drops: int = 0
    video_out_of_order: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # over the whole run
    streaming: asyncio.Event = field(default_factory=asyncio.Event)  # every camera has a frame

    def take(self) -> dict:
        """What the row reports (the Row's own field names), and a fresh count."""
        taken = {
            "frames": [len(s) for s in self.frames],
            "video": [len(s) for s in self.video],
            "replies_ok": self.replies_ok,
            "replies_failed": self.replies_failed,
            "viewer_drops": self.viewer_drops,
            "video_out_of_order": self.video_out_of_order,
        }
        for seen in (*self.frames, *self.video):
            seen.clear()
        self.replies_ok = self.replies_failed = self.viewer_drops = self.video_out_of_order = 0
        return taken


def frame_counter(camera: int, tallies: Tallies, *, binary: bool) -> Callable[[bytes], None]:
    """What a JSON or binary viewer does with each message: count its frame."""

    def take(message: bytes) -> None:
        timestamp = binary_frame_timestamp(message) if binary else frame_timestamp(message)
        tallies.frames[camera].add(timestamp)
        if not tallies.streaming.is_set() and all(tallies.frames):
            tallies.streaming.set()

    return take


def fragment_checker(camera: int, tallies: Tallies) -> Callable[[bytes], None]:
    """What an H.264 viewer does with each message on one connection: count its fragments, and
    check that each decodes after the one before (same stream, next number, or a key frame)."""
    last: tuple[str, int] | None = None

    def take(message: bytes) -> None:
        nonlocal last
        header = binary_header(message)
        if header.get("kind") != "video":
            return  # the first JPEG, an init segment
        this = (header["stream"], header["seq"])
        follows = last is not None and this == (last[0], last[1] + 1)
        if not header["key"] and not follows:
            tallies.video_out_of_order += 1
        last = this
        tallies.video[camera].add(this)

    return take


async def viewer(
    url: str,
    token: str,
    tallies: Tallies,
    *,
    taker: Callable[[], Callable[[bytes], None]],
    stop: asyncio.Event,
) -> None:
    """One viewer: each connection's messages go to a new `taker()`; it reconnects a second
    after a drop."""
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        try:
            async with connect(
                url,
                additional_headers=headers,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=30,
                proxy=None,
            ) as connection:
                take = taker()
                while True:
                    take(await connection.recv(decode=False))
        # Any failure (refused, a broken handshake, a drop, a malformed frame) is counted, and the
        # viewer comes back: a load task that died silently would read as a quiet camera.
        except (OSError, TimeoutError, WebSocketException, ValueError, KeyError) as error:
            if stop.is_set():
                return
            tallies.viewer_drops += 1
            tallies.failures[f"viewer: {type(error).__name__}: {error}"[:200]] += 1
            await asyncio.sleep(1.0)


async def one_reply(client: httpx.AsyncClient, url: str, body: dict) -> tuple[str, int | None]:
    """POST (a prompt, a regenerate) and read the reply to `done`: ("", the reply's id) when it
    completed, else why not."""
    async with asyncio.timeout(REPLY_TIMEOUT):
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread())[:120].decode(errors="replace")
                return f"HTTP {response.status_code}: {text}", None
            reply_id = int(response.headers["X-Message-Id"])
            buffer, error = "", ""
            async for text in response.aiter_text():
                buffer += text
                *blocks, buffer = buffer.split("\n\n")
                for block in blocks:
                    if not block.startswith("data: "):
                        continue  # a keep-alive comment
                    event = json.loads(block[6:])
                    if event["type"] == "error":
                        error = event.get("message", "")
                    elif event["type"] == "done":
                        status = event.get("status")
                        failure = "" if status == "complete" else f"done {status}: {error}"[:200]
                        return failure, reply_id
            return "the stream ended without done", reply_id


async def chat_loop(
    client: httpx.AsyncClient, base_url: str, number: int, tallies: Tallies, stop: asyncio.Event
) -> None:
    chat_id, replies, last_reply = None, 0, None
    while not stop.is_set():
        try:
            if chat_id is None or replies >= REPLIES_PER_CHAT:
                response = await client.post(
                    f"{base_url}/api/v1/chats", json={"title": f"Soak {number}"}
                )
                response.raise_for_status()
                chat_id, replies, last_reply = response.json()["id"], 0, None
            if last_reply is not None and replies % REGENERATE_EVERY == REGENERATE_EVERY - 1:
                # Branches under load too: another reply to the last prompt.
                url = f"{base_url}/chats/{chat_id}/messages/{last_reply}/regenerate"
                failure, last_reply = await one_reply(client, url, {})
            else:
                prompt = PROMPTS[(number + replies) % len(PROMPTS)]
                url = f"{base_url}/chats/{chat_id}/messages"
                failure, last_reply = await one_reply(client, url, {"prompt": prompt})
            replies += 1
        except (httpx.HTTPError, TimeoutError, ValueError, KeyError) as error:
            failure = f"{type(error).__name__}: {error}"[:200] or type(error).__name__
        if stop.is_set():
            return  # cut short by the end of the run: neither completed nor failed
        if failure:
            tallies.replies_failed += 1
            tallies.failures[f"reply: {failure}"] += 1
            await asyncio.sleep(1.0)  # never spin on a server that refuses
        else:
            tallies.replies_ok += 1


async def recorded_totals(
    client: httpx.AsyncClient,
    base_url: str,
    cameras: list[str],
    previous: tuple[list[int], list[int]],
    tallies: Tallies,
) -> tuple[list[int], list[int]]:
    """Per camera, through the API: DetectionEvent rows so far (the events list's `count`), and
    frames the recorder has written into the camera's sessions (`frames_processed`, summed).
    If the API fails, that is a load failure and the previous totals stand (the difference goes
    to the next row)."""

    async def get(path: str, params: dict) -> dict:
        response = await client.get(f"{base_url}/api/v1/{path}", params=params)
        response.raise_for_status()
        return response.json()

    async def camera_totals(camera: str) -> tuple[int, int]:
        events = await get("events", {"camera": camera, "page_size": 1})
        sessions = await get(f"cameras/{camera}/sessions", {"page_size": 200})
        return events["count"], sum(s["frames_processed"] for s in sessions["results"])

    try:
        totals = await asyncio.gather(*(camera_totals(camera) for camera in cameras))
    except (httpx.HTTPError, ValueError, KeyError) as error:
        tallies.failures[f"events API: {type(error).__name__}: {error}"[:200]] += 1
        return previous
    return [events for events, _ in totals], [frames for _, frames in totals]


async def alert_totals(
    client: httpx.AsyncClient,
    base_url: str,
    setup: dict,
    previous: tuple[int, int],
    tallies: Tallies,
) -> tuple[int, int]:
    """Alerts raised so far by the soak's rule and by its webhook (the alerts API's `count`)."""
    try:
        counts = []
        for key in ("rule", "webhook"):
            response = await client.get(
                f"{base_url}/api/v1/alerts", params={key: setup[key], "limit": 1}
            )
            response.raise_for_status()
            counts.append(response.json()["count"])
    except (httpx.HTTPError, ValueError, KeyError) as error:
        tallies.failures[f"alerts API: {type(error).__name__}: {error}"[:200]] += 1
        return previous
    return counts[0], counts[1]


DRAIN_SECONDS = 30.0


@dataclass
class Drained:
    """The webhook deliveries at the end, once the receiver had DRAIN_SECONDS to catch up."""

    webhook_alerts: int
    received: int
    seconds: float


def notification_checks(
    warmup: Row, minutes: list[Row], receiver: WebhookReceiver, drained: Drained, *, mqtt_used: bool
) -> list[Check]:
    tally = receiver.tally
    checks = [
        Check(
            "alerts raised by the rule and the webhook every minute",
            all(row.alerts and row.webhook_alerts for row in minutes),
            f"rule {' / '.join(str(r.alerts) for r in minutes)}; "
            f"webhook {' / '.join(str(r.webhook_alerts) for r in minutes)}",
        ),
        Check(
            "every webhook alert delivered once, signed, with its snapshot",
            drained.received == drained.webhook_alerts
            and tally.bad_signatures == 0
            and tally.duplicates == 0
            and tally.with_snapshot == tally.distinct,
            f"{drained.received} of {drained.webhook_alerts} received "
            f"({drained.seconds:.1f} s to drain), {tally.received} POSTs, "
            f"{tally.bad_signatures} bad signatures, {tally.duplicates} sent twice, "
            f"{tally.with_snapshot} with a snapshot",
        ),
    ]
    if mqtt_used:
        quiet = [str(i) for i, row in enumerate(minutes, 1) if not row.mqtt.get("events")]
        totals = Counter()
        for row in [warmup, *minutes]:
            totals.update(row.mqtt)
        checks.append(
            Check(
                "MQTT: events every minute; alerts, availability and discovery published",
                not quiet and all(totals[kind] for kind in ("alerts", "available", "discovery")),
                ", ".join(f"{kind} {count}" for kind, count in sorted(totals.items()))
                + (f"; no events in minute {', '.join(quiet)}" if quiet else ""),
            )
        )
    return checks


def sample_servers(servers: list[Server], row: Row) -> None:
    row.load_average = os.getloadavg()[0]
    for server in servers:
        tally = server.log.read_new()
        row.errors[server.name] = tally.errors
        row.tracebacks[server.name] = tally.tracebacks
        row.warnings[server.name] = tally.warnings
        row.layer_drops[server.name] = tally.layer_drops
        if server.process.poll() is None:
            row.rss_mib[server.name] = rss_kib(server.process.pid) / 1024
            used, server.cpu_seconds = server.cpu_seconds, cpu_seconds(server.process.pid)
            row.cpu_percent[server.name] = 100 * (server.cpu_seconds - used) / row.seconds
        else:
            row.exited.append(f"{server.name} (status {server.process.returncode})")


async def drive(
    args: argparse.Namespace,
    base_url: str,
    setup: dict,
    servers: list[Server],
    names: list[str],
    receiver: WebhookReceiver,
    mqtt: MqttCounter | None,
) -> tuple[Row, list[Row], Tallies, Drained]:
    cameras, token = setup["cameras"], setup["token"]
    tallies = Tallies(frames=[set() for _ in cameras], video=[set() for _ in cameras])
    stop = asyncio.Event()
    ws_base = base_url.replace("http://", "ws://", 1)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(
        max_connections=args.chats + 20, max_keepalive_connections=args.chats + 20
    )
    async with httpx.AsyncClient(
        headers=headers, limits=limits, timeout=httpx.Timeout(30.0), trust_env=False
    ) as client:
        stream = f"{ws_base}/ws/stream/"
        tasks = [
            asyncio.create_task(
                viewer(
                    stream + camera + ("?format=binary" if v % 2 else ""),
                    token,
                    tallies,
                    taker=partial(frame_counter, c, tallies, binary=v % 2 == 1),
                    stop=stop,
                )
            )
            for c, camera in enumerate(cameras)
            for v in range(args.viewers)
        ] + [
            asyncio.create_task(
                viewer(
                    stream + camera + "?format=h264",
                    token,
                    tallies,
                    taker=partial(fragment_checker, c, tallies),
                    stop=stop,
                )
            )
            for c, camera in enumerate(cameras)
            for _ in range(args.h264_viewers)
        ]
        try:
            started = time.monotonic()
            try:
                await asyncio.wait_for(tallies.streaming.wait(), FIRST_FRAME_TIMEOUT)
            except TimeoutError:
                missing = [names[c] for c, frames in enumerate(tallies.frames) if not frames]
                raise RuntimeError(
                    f"no frame within {FIRST_FRAME_TIMEOUT:.0f} s from {missing}"
                ) from None
            print(f"every camera streaming after {time.monotonic() - started:.1f} s", flush=True)
            tasks += [
                asyncio.create_task(chat_loop(client, base_url, n, tallies, stop))
                for n in range(args.chats)
            ]
            nothing = [0] * len(cameras)
            previous = await recorded_totals(client, base_url, cameras, (nothing, nothing), tallies)
            alerts_before = await alert_totals(client, base_url, setup, (0, 0), tallies)
            received_before = receiver.tally.distinct
            rows: list[Row] = []
            period_start = time.monotonic()
            # Row -1 is the warm-up: counted for errors, not compared.
            for index in range(-1, args.intervals):
                length = args.warmup if index < 0 else args.interval
                await asyncio.sleep(max(0.0, period_start + length - time.monotonic()))
                now = time.monotonic()
                taken = tallies.take()
                totals = await recorded_totals(client, base_url, cameras, previous, tallies)
                alerts = await alert_totals(client, base_url, setup, alerts_before, tallies)
                received = receiver.tally.distinct
                row = Row(
                    label="warm-up" if index < 0 else str(index + 1),
                    seconds=now - period_start,
                    events=[t - p for t, p in zip(totals[0], previous[0], strict=True)],
                    recorded=[t - p for t, p in zip(totals[1], previous[1], strict=True)],
                    **taken,
                    alerts=alerts[0] - alerts_before[0],
                    webhook_alerts=alerts[1] - alerts_before[1],
                    webhooks=received - received_before,
                    mqtt=dict(mqtt.take()) if mqtt else {},
                )
                sample_servers(servers, row)
                rows.append(row)
                print(progress_line(row, names), flush=True)
                previous, period_start = totals, now
                alerts_before, received_before = alerts, received
                if row.exited:
                    break
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):  # a harness bug: say so, never hide it
                    tallies.failures[f"load task died: {outcome!r}"[:200]] += 1
        # Webhook deliveries still in flight get a little time to arrive.
        drain_start = time.monotonic()
        while True:
            _, webhook_alerts = await alert_totals(client, base_url, setup, (0, 0), tallies)
            if receiver.tally.distinct >= webhook_alerts:
                break
            if time.monotonic() - drain_start > DRAIN_SECONDS:
                break
            await asyncio.sleep(0.5)
        drained = Drained(
            webhook_alerts=webhook_alerts,
            received=receiver.tally.distinct,
            seconds=time.monotonic() - drain_start,
        )
    return rows[0], rows[1:], tallies, drained


def progress_line(row: Row, names: list[str]) -> str:
    logs = ", ".join(
        f"{name} {row.rss_mib.get(name, 0):.0f} MiB {row.cpu_percent.get(name, 0):.0f}% CPU "
        f"{row.errors[name]} ERROR "
        f"{row.tracebacks[name]} tb {row.warnings[name]} WARNING "
        f"{row.layer_drops[name]} layer drops"
        for name in row.errors
    )
    return (
        f"[{row.label:>7} {row.seconds:5.1f} s] events {'/'.join(map(str, row.events))} "
        f"frames {'/'.join(map(str, row.frames))} h264 {'/'.join(map(str, row.video))} "
        f"recorded {'/'.join(map(str, row.recorded))} "
        f"replies {row.replies_ok} ok "
        f"{row.replies_failed} failed, drops {row.viewer_drops}; "
        f"alerts {row.alerts}+{row.webhook_alerts} webhooks {row.webhooks} "
        f"mqtt {sum(row.mqtt.values())}; {logs}"
        + (f"; EXITED {', '.join(row.exited)}" if row.exited else "")
    )


# --- the run ----------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> int:
    if args.work_dir:
        work_dir = args.work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    specs = camera_specs(args.cameras)
    names = [name for name, _, _ in specs]
    keep = args.keep_logs or args.work_dir is not None
    mqtt_prefix = f"soak-{secrets.token_hex(4)}"
    with ExitStack() as stack:
        try:
            receiver = stack.enter_context(WebhookReceiver(secret=secrets.token_urlsafe(24)))
            mqtt = None
            if args.mqtt_url:
                broker = urlsplit(args.mqtt_url)
                mqtt = stack.enter_context(
                    MqttCounter(
                        host=broker.hostname or LOCALHOST,
                        port=broker.port or 1883,
                        prefix=mqtt_prefix,
                        discovery_prefix=f"{mqtt_prefix}-discovery",
                    )
                )
                stack.callback(mqtt.clear_retained)
            if args.database == "postgres":
                database_url = stack.enter_context(postgres_database(args.postgres_url))
            else:
                database_url = f"sqlite:///{work_dir / 'soak.sqlite3'}"
            env = server_env(args, work_dir, database_url, mqtt_prefix)
            if args.layer == "redis":
                stack.enter_context(redis_database(args.redis_url, flush_first=args.flush_redis))
            manage(env, "migrate", "--no-input", "--verbosity", "0")
            spec = json.dumps(
                {
                    "fps": args.fps,
                    "cameras": specs,
                    "zones": SOAK_ZONES,
                    "masks": SOAK_MASKS,
                    "webhook_url": receiver.url,
                    "webhook_secret": receiver.secret,
                }
            )
            output = manage(env, "shell", "-c", SETUP, extra_env={"SOAK_SETUP": spec})
            setup = json.loads(output.strip().splitlines()[-1])

            port = args.port or free_port()
            base_url = f"http://{LOCALHOST}:{port}"
            daphne = [sys.executable, "-m", "daphne", "-b", LOCALHOST, "-p", str(port)]
            commands = [("daphne", [*daphne, "project.asgi:application"])]
            if args.layer == "redis":
                for number in range(1, args.camera_workers + 1):
                    name = "runcameras" if args.camera_workers == 1 else f"runcameras{number}"
                    commands.append((name, [sys.executable, "manage.py", "runcameras"]))
            servers = []
            for name, command in commands:
                log = work_dir / f"{name}.log"
                (process,) = stack.enter_context(running([(command, env)], log))
                servers.append(Server(name, process, LogWatch(name, log)))
            wait_until_serving(base_url, servers[0])
        except (
            RuntimeError,
            OSError,
            subprocess.SubprocessError,
            psycopg.Error,
            redis.RedisError,
        ) as error:
            print(f"Could not start the installation: {error}\nwork directory: {work_dir}")
            return 2

        print(describe(args, specs, database_url))
        try:
            warmup, minutes, tallies, drained = asyncio.run(
                drive(args, base_url, setup, servers, names, receiver, mqtt)
            )
        except (RuntimeError, httpx.HTTPError) as error:
            print(f"The load could not run: {error}\nlogs: {work_dir}")
            return 2
        # The servers stop as the stack closes: read their logs after that for shutdown errors.
        ready = readiness(base_url)
        stack.close()
    after_stop = {}
    for server in servers:
        tally = server.log.read_new()
        after_stop[server.name] = tally.errors + tally.tracebacks

    server_names = [server.name for server in servers]
    # One reader of a camera records at most its fps (10 % slack for the row's edges).
    frames_most = round(args.fps * args.interval * 1.1)
    checks = judge(warmup, minutes, names, after_stop, frames_most=frames_most)
    checks += notification_checks(warmup, minutes, receiver, drained, mqtt_used=mqtt is not None)
    passed = all(check.passed for check in checks)
    print()
    print(describe(args, specs, database_url))
    print()
    print(markdown_table([warmup, *minutes], names, server_names))
    print()
    print(verdict_text(checks))
    print(f"\n{delivery_note(minutes, names)}")
    print(f"\n/readyz at the end: {ready}")
    report_problems(servers, tallies)
    save_results(args, specs, [warmup, *minutes], checks, servers, tallies)
    if not passed or keep:
        print(f"\nlogs kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if passed else 1


def readiness(base_url: str) -> str:
    """What /readyz said as the run ended (a cross-check: it should agree with the verdict)."""
    try:
        response = httpx.get(f"{base_url}/readyz", timeout=10, trust_env=False)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    if "json" not in response.headers.get("content-type", ""):
        return f"{response.status_code} (not JSON: no /readyz on this version)"
    return f"{response.status_code} {response.text[:500]}"


def describe(args: argparse.Namespace, specs: list, database_url: str) -> str:
    database = "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"
    layer = "Redis, runcameras" if args.layer == "redis" else "in-memory, cameras in daphne"
    cameras = "; ".join(f"{name} `{source}` {'+'.join(d)}" for name, source, d in specs)
    return (
        f"Soak: {database}, {layer}; {args.cameras} cameras at {args.fps} fps ({cameras}); "
        f"{args.viewers} viewers per camera (+{args.h264_viewers} H.264); {args.chats} chat "
        f"loops; {args.intervals} x "
        f"{args.interval:g} s after a {args.warmup:g} s warm-up; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def report_problems(servers: list[Server], tallies: Tallies) -> None:
    for server in servers:
        scanner = server.log.scanner
        for title, lines in (
            ("ERROR lines", scanner.error_lines),
            ("exceptions (last line of each traceback)", scanner.exceptions),
            ("WARNING lines", scanner.warning_lines),
        ):
            if lines:
                print(f"\n{server.name} log, {title} (distinct, with counts):")
                for line, count in lines.most_common(KEPT_LINES):
                    print(f"  {count:>5} x {line}")
        if scanner.layer_drops:
            drops = ", ".join(f"{n} to {kind}_* groups" for kind, n in scanner.layer_drops.items())
            print(f"\n{server.name}: channels-redis dropped messages for full channels: {drops}")
    if tallies.failures:
        print("\nload failures (distinct, with counts):")
        for line, count in tallies.failures.most_common(KEPT_LINES):
            print(f"  {count:>5} x {line}")


def save_results(args, specs, rows: list[Row], checks: list[Check], servers, tallies) -> None:
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    report = {
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "postgres_url"
        },
        "cameras": specs,
        "rows": [asdict(row) for row in rows],
        "checks": [asdict(check) for check in checks],
        "logs": {
            server.name: {
                "error_lines": dict(server.log.scanner.error_lines.most_common(KEPT_LINES)),
                "exceptions": dict(server.log.scanner.exceptions.most_common(KEPT_LINES)),
                "warning_lines": dict(server.log.scanner.warning_lines.most_common(KEPT_LINES)),
                "layer_drops": dict(server.log.scanner.layer_drops),
            }
            for server in servers
        },
        "load_failures": dict(tallies.failures.most_common(KEPT_LINES)),
    }
    path.write_text(json.dumps(report, indent=2))
    print(f"results: {path}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cameras", type=int, default=6, help="demo cameras (default 6)")
    parser.add_argument("--viewers", type=int, default=2, help="viewers per camera (default 2)")
    parser.add_argument(
        "--h264-viewers",
        type=int,
        default=1,
        help="?format=h264 viewers per camera, besides --viewers (default 1; 0 = none)",
    )
    parser.add_argument("--chats", type=int, default=10, help="concurrent chat loops (default 10)")
    parser.add_argument("--minutes", type=float, default=10, help="measured minutes (default 10)")
    parser.add_argument(
        "--fps",
        type=int,
        default=5,
        help="each camera's target fps (default 5: the six cameras' detectors and the chats fit "
        "two cores; at 10 the three face cameras alone need about 1.5 cores)",
    )
    parser.add_argument("--layer", choices=["memory", "redis"], default="memory")
    parser.add_argument(
        "--camera-workers",
        type=int,
        default=1,
        help="with --layer redis: runcameras processes, sharing the cameras through their leases "
        "(default 1)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--port", type=int, default=0, help="daphne's port (default: a free one)")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/7",
        help="a database of the soak's own: it must be empty, and is emptied at the end",
    )
    parser.add_argument(
        "--flush-redis", action="store_true", help="empty the --redis-url database first"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="a server where a new database is created for the run, and dropped after it",
    )
    parser.add_argument(
        "--mqtt-url",
        default="mqtt://127.0.0.1:1883",
        help="the broker the servers publish to and the soak subscribes at ('' = no MQTT)",
    )
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before minute 1")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds per row (default 60: per minute)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where the database, media and logs go (kept); default: a new temporary one",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    return parser


def main() -> None:
    args = parser().parse_args()
    if not 1 <= args.cameras <= MAX_CAMERAS:
        parser().error(f"--cameras must be 1..{MAX_CAMERAS}")
    if not 1 <= args.viewers <= MAX_VIEWERS_PER_CAMERA or not 1 <= args.chats <= MAX_CHATS:
        parser().error(f"--viewers must be 1..{MAX_VIEWERS_PER_CAMERA}, --chats 1..{MAX_CHATS}")
    if not 0 <= args.h264_viewers <= MAX_VIEWERS_PER_CAMERA:
        parser().error(f"--h264-viewers must be 0..{MAX_VIEWERS_PER_CAMERA}")
    if not 0 < args.minutes <= MAX_MINUTES or not 1 <= args.interval <= 3600:
        parser().error("--minutes must be positive (at most a day), --interval 1..3600 s")
    if not 1 <= args.fps <= 30 or args.warmup < 0:
        parser().error("--fps must be 1..30 and --warmup not negative")
    args.intervals = max(1, round(args.minutes * 60 / args.interval))
    # SIGTERM (a supervisor, `timeout`) unwinds like Ctrl-C: the servers are stopped and the
    # PostgreSQL database is dropped on the way out, nothing is left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(soak(args))


if __name__ == "__main__":
    main()
