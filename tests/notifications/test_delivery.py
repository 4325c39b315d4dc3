"""The webhook delivery worker against a real HTTP server on 127.0.0.1: signed POSTs, retries
with backoff, giving up, claims that keep two workers (and a restarted one) from sending a
delivery twice, and the network policy."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from cameras import source_policy
from notifications.delivery import (
    DeliveryWorker,
    body_serialise,
    delivery_claim,
    signature_make,
    signature_verify,
    webhook_url_check,
)
from notifications.models import Webhook, WebhookDelivery
from tests.conftest import ROOT, _database_url_of_test_database, unavailable
from tests.notifications.test_matching import person, see

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_test-secret"
LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


class Receiver:
    """A real threaded HTTP server: verifies every POST's signature and answers from a script
    (`statuses`, then 200), or never answers in time (`hang_seconds`)."""

    def __init__(self, *, statuses=(), hang_seconds: float = 0.0, delay_seconds: float = 0.0):
        self.statuses = list(statuses)
        self.hang_seconds = hang_seconds
        self.delay_seconds = delay_seconds
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "at": time.monotonic(),
                            "headers": dict(self.headers),
                            "body": body,
                            "verified": signature_verify(
                                SECRET,
                                self.headers["X-Sightline-Timestamp"],
                                body,
                                self.headers["X-Sightline-Signature"],
                            ),
                        }
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.hang_seconds:
                    time.sleep(receiver.hang_seconds)
                    return
                time.sleep(receiver.delay_seconds)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/sightline"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def per_delivery(self) -> Counter:
        with self.lock:
            return Counter(request["headers"]["X-Sightline-Delivery"] for request in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**options) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def workers():
    """Start delivery workers; every one still running is stopped (threads joined) at the end."""
    started: list[DeliveryWorker] = []

    def start(**options) -> DeliveryWorker:
        started.append(DeliveryWorker(**options).start())
        return started[-1]

    yield start
    for worker in started:
        worker.stop(timeout=10)


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0
    settings.WEBHOOK_RETRY_FIRST_SECONDS = 0.05
    settings.WEBHOOK_RETRY_PERIOD_SECONDS = 30.0
    settings.WEBHOOK_POLL_SECONDS = 0.05
    return settings


def webhook_make(organization, url: str, **fields) -> Webhook:
    return Webhook.objects.create(
        organization=organization, name=fields.pop("name", "Door bot"), url=url, secret=SECRET
    )


def delivery_make(webhook, *, kind="alert", **fields) -> WebhookDelivery:
    now = timezone.now()
    return WebhookDelivery.objects.create(
        webhook=webhook,
        kind=kind,
        payload=fields.pop("payload", {"type": kind, "n": 1, "text": "héllo"}),
        created_at=now,
        next_attempt_at=now,
        **fields,
    )


def wait_until(condition, seconds: float = 10.0, step: float = 0.02):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(step)
    return result


def outcome_count(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("sightline_webhook_deliveries_total", {"outcome": outcome}) or 0
    )


# --- signing -------------------------------------------------------------------------------


def test_the_signature_verifies_and_refuses_another_body_secret_or_an_old_timestamp():
    body = body_serialise({"b": 1, "a": "é"})
    assert body == '{"a":"é","b":1}'.encode()
    now = 1_765_000_000
    header = signature_make(SECRET, now, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert signature_verify(SECRET, str(now), body, header, now=now + 10)
    assert signature_verify(SECRET, now, body.decode(), header, now=now - 299)
    assert not signature_verify(SECRET, now, body + b" ", header, now=now)
    assert not signature_verify("whsec_other", now, body, header, now=now)
    assert not signature_verify(SECRET, now + 1, body, header, now=now)
    assert not signature_verify(SECRET, now, body, header, now=now + 301)  # a replay, later
    assert not signature_verify(SECRET, "soon", body, header, now=now)


# --- retries -------------------------------------------------------------------------------


def test_a_receiver_failing_twice_gets_one_delivery_at_the_third_attempt(
    organization, receivers, workers, fast_retries, caplog
):
    receiver = receivers(statuses=[500, 500])
    delivery = delivery_make(webhook_make(organization, receiver.url))
    delivered_before, retried_before = outcome_count("delivered"), outcome_count("retried")
    caplog.set_level(logging.INFO, logger="notifications.delivery")
    workers()
    wait_until(lambda: WebhookDelivery.objects.get().status == "delivered")

    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.response_status == 200
    assert delivery.delivered_at is not None and delivery.last_error == ""
    assert len(receiver.requests) == 3 and all(r["verified"] for r in receiver.requests)
    assert receiver.per_delivery() == {str(delivery.pk): 3}
    headers = receiver.requests[-1]["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Sightline-Webhook/1"
    assert headers["X-Sightline-Event"] == "alert"
    assert headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert json.loads(receiver.requests[-1]["body"]) == {"type": "alert", "n": 1, "text": "héllo"}

    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    failed = [m for level, m in messages if level == "WARNING"]
    assert len(failed) == 2
    assert "Webhook Door bot: attempt 1 of delivery" in failed[0]
    assert "answered HTTP 500" in failed[0] and "retried at" in failed[0]
    assert "attempt 2" in failed[1]
    assert ("INFO", f"Webhook Door bot: delivery {delivery.pk} delivered at attempt 3") in messages
    assert outcome_count("delivered") == delivered_before + 1
    assert outcome_count("retried") == retried_before + 2


def test_a_receiver_that_never_answers_is_retried_with_growing_waits_then_given_up(
    organization, receivers, workers, fast_retries, caplog
):
    fast_retries.WEBHOOK_TIMEOUT_SECONDS = 0.2
    fast_retries.WEBHOOK_RETRY_FIRST_SECONDS = 0.1
    fast_retries.WEBHOOK_RETRY_PERIOD_SECONDS = 2.5
    receiver = receivers(hang_seconds=4)
    delivery = delivery_make(webhook_make(organization, receiver.url))
    caplog.set_level(logging.WARNING, logger="notifications.delivery")
    workers()
    wait_until(lambda: WebhookDelivery.objects.get().status == "failed", seconds=12)

    delivery.refresh_from_db()
    assert delivery.attempts >= 3 and delivery.response_status is None
    assert delivery.last_error == (
        f"given up after {delivery.attempts} attempts: no answer within 0.2 s"
    )
    assert len(receiver.requests) == delivery.attempts
    # Every attempt within the period (the last one at its end), none after.
    assert delivery.last_attempt_at - delivery.created_at >= timedelta(seconds=2.5)
    assert delivery.last_attempt_at - delivery.created_at < timedelta(seconds=4)
    retries = [r for r in caplog.records if "retried at" in r.getMessage()]
    waits = [r.args[-1] for r in retries]
    assert len(waits) == delivery.attempts - 1
    # 0.1 s, 0.2 s, 0.4 s…; only the last may be cut short, to fall at the period's end.
    for number, wait in enumerate(waits[:-1]):
        assert wait == pytest.approx(0.1 * 2**number, abs=0.01)
    assert waits[-1] <= 0.1 * 2 ** (len(waits) - 1) + 0.01
    given_up = caplog.records[-1]
    assert given_up.levelname == "WARNING" and "given up after" in given_up.getMessage()


def test_a_failed_test_send_is_not_retried(organization, receivers, workers, fast_retries):
    receiver = receivers(statuses=[404])
    delivery = delivery_make(webhook_make(organization, receiver.url), kind="test")
    workers()
    wait_until(lambda: WebhookDelivery.objects.get().status == "failed")
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.response_status == 404
    assert delivery.last_error == "test send, not retried: answered HTTP 404"
    assert receiver.requests[0]["headers"]["X-Sightline-Event"] == "test"


def test_a_redirect_is_a_failure_and_is_not_followed(
    organization, receivers, workers, fast_retries
):
    receiver = receivers(statuses=[302])
    delivery = delivery_make(webhook_make(organization, receiver.url), kind="test")
    workers()
    wait_until(lambda: WebhookDelivery.objects.get().status == "failed")
    delivery.refresh_from_db()
    assert delivery.response_status == 302 and "redirects are not followed" in delivery.last_error
    assert len(receiver.requests) == 1


# --- claims ----------------------------------------------------------------------------------


def test_a_restarted_worker_sends_nothing_twice(organization, receivers, workers, fast_retries):
    receiver = receivers(delay_seconds=0.05)
    webhook = webhook_make(organization, receiver.url)
    deliveries = [delivery_make(webhook) for _ in range(8)]
    first = workers(senders=1)
    wait_until(lambda: len(receiver.requests) >= 2)
    first.stop()
    sent_by_the_first = len(receiver.requests)
    assert sent_by_the_first < 8
    workers(senders=2)
    wait_until(lambda: not WebhookDelivery.objects.exclude(status="delivered").exists())
    time.sleep(0.3)  # several polls more: nothing is sent again
    assert receiver.per_delivery() == {str(delivery.pk): 1 for delivery in deliveries}
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_delivery_claimed_by_a_killed_worker_is_sent_once_its_claim_expires(
    organization, receivers, workers, fast_retries
):
    receiver = receivers()
    delivery = delivery_make(webhook_make(organization, receiver.url))
    # A worker claims the row and dies before sending it (the claim is all it leaves).
    pk, claimed_until = delivery_claim(claim_seconds=0.6)
    assert pk == delivery.pk
    assert delivery_claim(claim_seconds=0.6) is None  # claimed: not due for anyone else
    workers()
    time.sleep(0.3)
    assert receiver.requests == []
    wait_until(lambda: WebhookDelivery.objects.get().status == "delivered")
    assert receiver.requests[0]["at"] and timezone.now() >= claimed_until
    assert receiver.per_delivery() == {str(delivery.pk): 1}


@pytest.mark.postgres
def test_two_workers_at_once_on_postgresql_send_each_delivery_once(
    organization, receivers, workers, fast_retries
):
    if connection.vendor != "postgresql":
        unavailable("needs PostgreSQL: set DATABASE_URL=postgres://…")
    receiver = receivers(delay_seconds=0.01)
    webhook = webhook_make(organization, receiver.url)
    deliveries = [delivery_make(webhook) for _ in range(40)]
    workers(senders=4)
    workers(senders=4)
    wait_until(lambda: not WebhookDelivery.objects.exclude(status="delivered").exists())
    time.sleep(0.2)
    assert receiver.per_delivery() == {str(delivery.pk): 1 for delivery in deliveries}


def failures_counted() -> float:
    return REGISTRY.get_sample_value("sightline_webhook_worker_failures_total") or 0


def test_the_database_away_is_logged_once_backed_off_and_recovered_from(
    organization, receivers, workers, fast_retries, caplog
):
    receiver = receivers()
    delivery = delivery_make(webhook_make(organization, receiver.url))

    def rename_outbox(old: str, new: str) -> None:
        # A real database failure: the worker's queries find no table while it is renamed.
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")

    rename_outbox("notifications_webhookdelivery", "notifications_webhookdelivery_away")
    before = failures_counted()
    caplog.set_level(logging.INFO, logger="notifications.delivery")
    try:
        workers(senders=2)
        time.sleep(1.0)
        failures = failures_counted() - before
        # Polling every 0.05 s, a loop without backoff would have failed 40 times by now.
        assert 2 <= failures <= 12
    finally:
        rename_outbox("notifications_webhookdelivery_away", "notifications_webhookdelivery")
    wait_until(lambda: WebhookDelivery.objects.get().status == "delivered", seconds=10)
    assert receiver.per_delivery() == {str(delivery.pk): 1}
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "Delivering webhooks failed; retrying with backoff" in errors[0].getMessage()
    assert any("Delivering webhooks works again" in m for m in caplog.messages)


# --- network policy ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_loopback_is_refused_without_the_allowance_and_receives_nothing(
    host, organization, receivers, workers, fast_retries
):
    fast_retries.WEBHOOK_ALLOWED_NETWORKS = []
    fast_retries.WEBHOOK_RETRY_PERIOD_SECONDS = 0
    receiver = receivers()
    delivery = delivery_make(webhook_make(organization, f"http://{host}:{receiver.port}/in"))
    workers()
    wait_until(lambda: WebhookDelivery.objects.get().status == "failed")
    delivery.refresh_from_db()
    assert delivery.last_error == (
        "given up after 1 attempt: not allowed by policy "
        "(an administrator can allow it with WEBHOOK_ALLOWED_NETWORKS)"
    )
    assert receiver.requests == []


def test_a_name_is_resolved_once_and_the_checked_address_is_used_with_the_name_as_host(
    organization, receivers, workers, fast_retries, monkeypatch
):
    resolved = []

    def table(host, port):
        resolved.append(host)
        return {"hooks.test": ["127.0.0.1"]}[host]

    monkeypatch.setattr(source_policy, "resolver", table)
    receiver = receivers()
    delivery_make(webhook_make(organization, f"http://hooks.test:{receiver.port}/in"))
    workers()
    wait_until(lambda: WebhookDelivery.objects.get().status == "delivered")
    assert resolved == ["hooks.test"]
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.test:{receiver.port}"


def test_a_name_with_any_private_address_is_refused(
    organization, receivers, workers, fast_retries, monkeypatch
):
    # The public address first, as a rebinding name would answer: the private one still counts.
    monkeypatch.setattr(source_policy, "resolver", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    fast_retries.WEBHOOK_RETRY_PERIOD_SECONDS = 0
    delivery = delivery_make(webhook_make(organization, "https://hooks.test/in"))
    workers()
    wait_until(lambda: WebhookDelivery.objects.get().status == "failed")
    delivery.refresh_from_db()
    assert "not allowed by policy" in delivery.last_error


def test_https_goes_to_the_checked_address_with_the_name_for_tls_and_verifies_it(
    organization, workers, fast_retries, monkeypatch, tmp_path
):
    # A TLS server on 127.0.0.1 with a self-signed certificate for hooks.test: the worker must
    # name hooks.test in its handshake (SNI) though it connects to the address, and must refuse
    # a certificate no authority signed.
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(certificate), "-subj", "/CN=hooks.test"]
        + ["-addext", "subjectAltName=DNS:hooks.test"],
        check=True,
        capture_output=True,
    )
    names_asked: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    context.sni_callback = lambda sock, name, ctx: names_asked.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setattr(source_policy, "resolver", lambda host, port: ["127.0.0.1"])
    delivery = delivery_make(
        webhook_make(organization, f"https://hooks.test:{port}/in"), kind="test"
    )
    try:
        workers()
        wait_until(lambda: WebhookDelivery.objects.get().status == "failed")
    finally:
        listener.close()
    delivery.refresh_from_db()
    assert names_asked == ["hooks.test"]
    assert delivery.last_error == (
        "test send, not retried: TLS failed: certificate verify failed: self-signed certificate"
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/in",
        "file:///etc/passwd",
        "http:///no-host",
        "not a url",
        "http://127.0.0.1:8000/in",
        "http://2130706433/in",
        "http://[::1]/in",
        "http://10.1.2.3/in",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:192.168.1.1]/in",
    ],
)
def test_webhook_url_check_refuses_other_schemes_and_literal_private_addresses(url):
    with pytest.raises(ValidationError):
        webhook_url_check(url)


def test_webhook_url_check_accepts_names_public_and_allowed_addresses(settings):
    webhook_url_check("https://hooks.example.com/in?token=1")
    webhook_url_check("http://93.184.216.34:8080/in")
    webhook_url_check("http://localhost/in")  # names are checked at each send
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK
    webhook_url_check("http://127.0.0.1:8000/in")
    with pytest.raises(ValidationError, match="WEBHOOK_ALLOWED_NETWORKS"):
        webhook_url_check("http://10.1.2.3/in")


# --- end to end ------------------------------------------------------------------------------


def test_a_person_seen_by_the_recorder_reaches_the_receiver_signed_with_its_snapshot(
    recorder, organization, front_door, receivers, workers, fast_retries
):
    # Polling too slowly to matter: the alert itself wakes the worker.
    fast_retries.WEBHOOK_POLL_SECONDS = 30
    receiver = receivers()
    webhook = Webhook.objects.create(
        organization=organization, name="Door bot", url=receiver.url, secret=SECRET
    )
    workers()
    time.sleep(0.1)  # the worker's first look finds nothing and waits
    see(recorder, front_door, 1_763_900_000_000, person(7))
    recorder.flush()
    committed = time.monotonic()
    wait_until(lambda: receiver.requests, seconds=5)
    assert time.monotonic() - committed < 2
    (request,) = receiver.requests
    assert request["verified"]
    body = json.loads(request["body"])
    assert body["type"] == "alert" and body["webhook"] == {"id": webhook.pk, "name": "Door bot"}
    assert body["event"]["track_id"] == 7 and body["event"]["camera"]["name"] == "Front door"
    jpeg = base64.b64decode(body["snapshot"]["base64"])
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (120, 160, 3)
    delivery = wait_until(lambda: WebhookDelivery.objects.filter(status="delivered").first())
    assert request["headers"]["X-Sightline-Delivery"] == str(delivery.pk)


# --- the processes that run a worker ----------------------------------------------------------

WORKER_ENV = {
    "DJANGO_SECRET_KEY": "test-only-secret-key",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "WEBHOOK_POLL_SECONDS": "0.1",
}


@pytest.mark.parametrize(
    ("command", "stopped"),
    [("deliver_webhooks", "Webhook delivery stopped."), ("runcameras", "Cameras stopped.")],
)
def test_the_commands_send_deliveries_until_sigterm(command, stopped, organization, receivers):
    receiver = receivers()
    delivery_make(webhook_make(organization, receiver.url))
    process = subprocess.Popen(
        [sys.executable, "manage.py", command],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": _database_url_of_test_database(), **WORKER_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: WebhookDelivery.objects.get().status == "delivered", seconds=30)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output.decode()
    assert stopped in output.decode()
    assert len(receiver.requests) == 1 and receiver.requests[0]["verified"]


def test_daphne_with_the_cameras_in_process_sends_deliveries(organization, receivers, live_daphne):
    receiver = receivers()
    delivery_make(webhook_make(organization, receiver.url), kind="test")
    server = live_daphne(CAMERAS_IN_PROCESS="1", **WORKER_ENV)
    wait_until(lambda: WebhookDelivery.objects.get().status == "delivered", seconds=30)
    server.stop()
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log()
    assert receiver.requests[0]["headers"]["X-Sightline-Event"] == "test"
