"""Shared fixtures: the personas, API clients, and the real services some tests need.

Personas (as in Healthchecks): Alice owns an organization, Bob is a member of it, Charlie owns
another organization and must see nothing of Alice's.

Tests that need PostgreSQL, Redis or Chromium ask for a fixture below. Without the service they
are skipped with the reason, unless SIGHTLINE_REQUIRE_SERVICES=1 (CI), where that is a failure.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from notifications.matching import rules_cache_clear
from organizations.models import Organization
from organizations.services import api_token_create, membership_add, organization_create
from tests.own_redis import OwnRedis

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def services_required() -> bool:
    return os.environ.get("SIGHTLINE_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Skip on a laptop; fail where the services are promised (CI)."""
    if services_required():
        pytest.fail(f"{reason} (SIGHTLINE_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Rate limits, latest frames and the like live in the cache; no test may see another's.
    cache.clear()
    _suite_redis_held_leases_before()
    # The alert rules cached per organization (a rolled-back test's rules send no signal).
    rules_cache_clear()
    yield
    cache.clear()
    rules_cache_clear()


def _suite_redis_held_leases_before() -> None:
    # With REDIS_URL (as in CI) the cache is that Redis, and clearing it empties the database,
    # camera leases' epoch included. The suite's Redis has held leases for long: no test waits
    # for the first-start grace; the tests of that grace use a Redis of their own.
    if not os.environ.get("REDIS_URL"):
        return
    import redis

    try:
        camera_lease_epoch_aged(_redis_url())
    except redis.RedisError:
        pass  # the tests that need Redis say it is unreachable


@pytest.fixture(autouse=True)
def _request_threads_let_go():
    yield
    # The ASGI application's request threads keep their connections between requests
    # (project/request_threads.py): none may hold the test database open when it is dropped.
    asgi = sys.modules.get("project.asgi")
    if asgi is not None:
        from django.db import connections

        asgi.request_threads.run_in_each(connections.close_all)


@pytest.fixture(autouse=True)
def _no_background_event_recording(settings):
    # The events recorder writes from its own thread; a test that is not about events must not
    # leave it writing into (or holding a connection to) the test database. tests/events build
    # their own Recorder; a test that wants the pipeline's recorder sets this back to True.
    settings.EVENTS_RECORDING = False


@pytest.fixture(autouse=True)
def _source_policy_for_tests(settings, tmp_path_factory):
    # The source policy's file roots for tests: the folders pytest makes for them (tmp_path),
    # where tests write their videos and models. Devices and private networks stay refused;
    # a test serving a camera on 127.0.0.1 asks for `loopback_cameras_allowed`.
    # (Named to sort after _fresh_cache: pytest sets autouse fixtures up in name order, and
    # `settings` must be restored before _fresh_cache clears a cache a test may have pointed at
    # a Redis that is gone.)
    settings.CAMERA_FILE_ROOTS = [tmp_path_factory.getbasetemp()]


@pytest.fixture
def loopback_cameras_allowed(settings):
    """Let camera sources connect to 127.0.0.1, where tests run their MJPEG and RTSP servers."""
    settings.CAMERA_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.org", "alice-password")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.org", "bob-password")


@pytest.fixture
def charlie(django_user_model):
    return django_user_model.objects.create_user(
        "charlie", "charlie@example.org", "charlie-password"
    )


@pytest.fixture
def organization(alice, bob) -> Organization:
    organization = organization_create(name="Alice Co", owner=alice)
    membership_add(organization=organization, user=bob, role="member")
    return organization


@pytest.fixture
def charlie_organization(charlie) -> Organization:
    return organization_create(name="Charlie Ltd", owner=charlie)


def _token_client(user) -> APIClient:
    _, raw = api_token_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    client.raw_token = raw  # type: ignore[attr-defined]
    return client


@pytest.fixture
def alice_api(alice, organization) -> APIClient:
    return _token_client(alice)


@pytest.fixture
def bob_api(bob, organization) -> APIClient:
    return _token_client(bob)


@pytest.fixture
def charlie_api(charlie, charlie_organization) -> APIClient:
    return _token_client(charlie)


# --- real services -------------------------------------------------------------------------


def _redis_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"


def camera_lease_epoch_aged(url: str) -> None:
    """Make the Redis at `url` one that has held camera leases for long, so that its first
    cameras start at once instead of after the grace a fresh Redis gives (cameras/leases.py)."""
    import redis

    from cameras.leases import EPOCH_KEY

    redis.Redis.from_url(url, socket_connect_timeout=1).set(EPOCH_KEY, 0, nx=True)


@pytest.fixture
def redis_url() -> str:
    import redis

    url = _redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {url}: {exc}")
    return url


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A redis-server of the test's own on a free port, to stop and start again (never the
    machine's); `.caches()` and `.channel_layers()` are production's settings for it."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install -y redis-server)")
    server = OwnRedis(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgresql(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        unavailable("needs PostgreSQL: set DATABASE_URL=postgres://…")
    return connection


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        unavailable("the playwright package is not installed")
    return CHROMIUM


@pytest.fixture
def browser(chromium_path, django_db_setup):
    # Per test, not per session: Playwright's sync API keeps an asyncio loop running in this
    # thread while it is open, and Django then refuses ORM calls (SynchronousOnlyOperation)
    # and pytest-asyncio cannot start loops, in every test that runs after it. The test
    # database is created before it for the same reason. A browser test's own ORM calls need
    # DJANGO_ALLOW_ASYNC_UNSAFE (see tests/chats/test_browser.py).
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    # ORM calls a test makes while Playwright's loop runs in this thread go through a
    # connection of that context, which the database teardown does not know about: close it,
    # or PostgreSQL refuses to drop the test database.
    from django.db import connections

    connections.close_all()
    context.close()


def start_with_room_in_the_window(seconds: float, *, window: float) -> None:
    """Rate limits count in fixed windows of the wall clock (`window` seconds: a second, a
    minute). A test whose counted requests must share one window waits for the next one to
    begin when fewer than `seconds` are left in the current one, so when it runs cannot matter."""
    left = window - time.time() % window
    if left < seconds:
        time.sleep(left)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url_of_test_database() -> str:
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


class LiveDaphne:
    """A real daphne process serving this test's database on 127.0.0.1."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.process: subprocess.Popen | None = None
        self.log_path = Path(f"/tmp/sightline-daphne-{self.port}.log")

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "project.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not start in 30 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def live_daphne(transactional_db) -> Iterator[callable]:
    """Factory: live_daphne(**extra_env) starts daphne against the test database."""
    servers: list[LiveDaphne] = []

    def start(**extra_env: str) -> LiveDaphne:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url_of_test_database(),
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "test-only-secret-key"),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MEDIA_ROOT": os.environ.get("MEDIA_ROOT", "/tmp/sightline-test-media"),
            **extra_env,
        }
        server = LiveDaphne(env)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def login(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


@pytest.fixture
def media_root(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT
