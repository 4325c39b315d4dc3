"""The webhook delivery worker: sends the outbox (`WebhookDelivery` rows), signed, and retries.

The recorder writes an alert's delivery row in the event's own transaction
(`notifications.services.alerts_create`); the API writes test sends. A worker (threads of
`DeliveryWorker`, inside runcameras, inside daphne with CAMERAS_IN_PROCESS, or alone with
`manage.py deliver_webhooks`) finds due rows, claims each with a conditional UPDATE (so two
workers, in two processes, never send the same row at once), POSTs it and writes the outcome:

- 2xx: delivered. Anything else (another status, a redirect, a timeout, a refused connection,
  a URL the network policy refuses) is a failed attempt, retried after
  WEBHOOK_RETRY_FIRST_SECONDS, doubling, at most an hour apart, until WEBHOOK_RETRY_PERIOD_SECONDS
  after the alert; then the delivery is given up (`failed`). Every status is retried, 4xx
  included (as Stripe does): a receiver answering 401 or 404 is usually one being deployed or
  reconfigured, and giving up early would lose the alert. Test sends are tried once: whoever
  pressed "send test" wants the answer now, not retries for a day.
- A worker killed mid-send leaves its claim; the row is due again once the claim expires (the
  claim outlasts any send: see `claim_seconds_for`). Receivers dedupe on `X-Sightline-Delivery`.

Signing (README, "Webhooks"): the body is the payload JSON, serialised once per attempt
(compact, keys sorted, so it is the same on every database); `X-Sightline-Signature` is
`sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>` with the webhook's secret, and
`X-Sightline-Timestamp` that Unix time. `signature_verify` is the receiver's check.

Network policy: a webhook URL obeys the camera sources' (`cameras.source_policy`) with its own
allowance, WEBHOOK_ALLOWED_NETWORKS: the host is resolved once per attempt, every address must be
public or allowed, and the POST goes to the checked address (the Host header and TLS name kept),
so a name re-pointed at loopback or a private address between check and connect reaches nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from cameras import source_policy
from cameras.source_policy import PolicyRefusal
from notifications.models import WebhookDelivery
from project.contained import ContainedFailures
from project.metrics import (
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERY_SECONDS,
    WEBHOOK_WORKER_FAILURES,
)

logger = logging.getLogger(__name__)

NETWORKS_SETTING = "WEBHOOK_ALLOWED_NETWORKS"
USER_AGENT = "Sightline-Webhook/1"
MAX_BACKOFF_SECONDS = 3600.0
# Threads of one worker: a receiver that never answers holds one of them for a timeout per
# attempt, not every other webhook's deliveries.
SENDERS = 4
# Due rows one claim looks at: enough that workers racing for the same rows still find one.
CLAIM_CANDIDATES = 32
# The longest the loop itself (not a receiver) waits after repeated failures (database away).
MAX_LOOP_BACKOFF_SECONDS = 60.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


# --- signing -------------------------------------------------------------------------------


def body_serialise(payload: Any) -> bytes:
    """The POST body: compact JSON with sorted keys, the same bytes for the same payload."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature_make(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Sightline-Signature` value: `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_verify(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    header: str,
    tolerance_seconds: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """A receiver's check: the signature is the secret's over this timestamp and body, and the
    timestamp is within `tolerance_seconds` of now (an old request replayed is refused; a
    receiver that also remembers `X-Sightline-Delivery` ids refuses replays inside the window).
    """
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return False
    if isinstance(body, str):
        body = body.encode()
    return hmac.compare_digest(signature_make(secret, sent_at, body), header.strip())


# --- network policy ------------------------------------------------------------------------


def _is_allowed_address(address: source_policy.IPAddress) -> bool:
    return source_policy.is_allowed_address(address, settings.WEBHOOK_ALLOWED_NETWORKS)


def webhook_connect_address(host: str, port: int) -> str:
    """The one address to POST to for `host`: resolved now (cameras.source_policy.resolver),
    every address checked. PolicyRefusal if any is not allowed; socket.gaierror if the name
    does not resolve."""
    literal = source_policy.literal_address(host)
    names = [str(literal)] if literal is not None else source_policy.resolver(host, port)
    addresses = [ipaddress.ip_address(name.split("%", 1)[0]) for name in names]
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    for address in addresses:
        if not _is_allowed_address(address):
            raise PolicyRefusal(NETWORKS_SETTING)
    first = addresses[0]
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped is not None:
        return str(first.ipv4_mapped)
    return str(first)


def webhook_url_check(url: str) -> None:
    """At configuration time: ValidationError (with a message for people) unless `url` is an
    http(s) URL with a host, and, when that host is a numeric address, an allowed one. Names
    are resolved and checked at every send, where what they resolve to then is what counts."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ValidationError("Enter a valid http:// or https:// URL.") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise ValidationError("Only http:// and https:// webhook URLs can be used.")
    if not parsed.host:
        raise ValidationError("The webhook URL needs a host.")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ValidationError("The port must be between 1 and 65535.")
    address = source_policy.literal_address(parsed.host)
    if address is not None and not _is_allowed_address(address):
        raise ValidationError(f"This address is {source_policy.refusal_message(NETWORKS_SETTING)}.")


# --- one attempt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: delivered (2xx) or not, the status if one came, and why not."""

    delivered: bool
    response_status: int | None = None
    error: str = ""


def delivery_post(
    *,
    client: httpx.Client,
    url: str,
    secret: str,
    delivery_id: str,
    kind: str,
    payload: Any,
    timeout: float,
) -> Attempt:
    """POST one delivery to `url`, to the address the policy checked, and say how it went.
    Never raises for what the receiver or the network does."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return Attempt(False, error="the URL is not valid")
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
        return Attempt(False, error="only http:// and https:// URLs with a host can be used")
    host = parsed.host
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    try:
        address = webhook_connect_address(host, port)
    except PolicyRefusal as refusal:
        return Attempt(False, error=str(refusal))
    except (socket.gaierror, UnicodeError):
        return Attempt(False, error=f"host {host} not found")
    body = body_serialise(payload)
    timestamp = int(time.time())
    headers = {
        # The name as the receiver knows it, though the connection goes to the checked address.
        "Host": parsed.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Sightline-Timestamp": str(timestamp),
        "X-Sightline-Signature": signature_make(secret, timestamp, body),
        "X-Sightline-Delivery": delivery_id,
        "X-Sightline-Event": kind,
    }
    # TLS is verified against the name (SNI and certificate), not the address.
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    try:
        with client.stream(
            "POST",
            parsed.copy_with(host=address),
            content=body,
            headers=headers,
            extensions=extensions,
        ) as response:
            status = response.status_code
    except httpx.TimeoutException:
        return Attempt(False, error=f"no answer within {timeout:g} s")
    except httpx.ConnectError as error:
        return Attempt(False, error=_connect_error(error))
    except httpx.HTTPError as error:
        return Attempt(False, error=f"the request failed: {error}"[:200])
    if 200 <= status < 300:
        return Attempt(True, response_status=status)
    error = f"answered HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed: use the final URL)"
    return Attempt(False, response_status=status, error=error)


def _connect_error(error: httpx.ConnectError) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "connection refused"
    if "certificate" in text.lower() or "ssl" in text.lower():
        # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: … (_ssl.c:1006)" → the
        # words in the middle.
        text = re.sub(r"^\[SSL: \w+\] | \(_ssl\.c:\d+\)$", "", text)
        return f"TLS failed: {text}"[:200]
    return f"could not connect: {text}"[:200]


# --- claiming and recording outcomes --------------------------------------------------------


def claim_seconds_for(timeout: float) -> float:
    """How long a claim holds a row: longer than one send can take (connect, write and read
    each bounded by the timeout, plus name resolution), so a live worker's row is never sent
    by another; a dead worker's is due again after it."""
    return 3 * timeout + 5.0


def _due(now: datetime) -> Q:
    return Q(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at__lte=now,
    ) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def delivery_claim(*, claim_seconds: float) -> tuple[Any, datetime] | None:
    """Claim one due delivery: its pk and the claim's end, or None when nothing is due.

    The conditional UPDATE is the claim: of two workers racing for a row, the database lets
    one update it (PostgreSQL re-checks the condition on the row the other committed)."""
    now = timezone.now()
    candidates = (
        WebhookDelivery.objects.filter(_due(now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:CLAIM_CANDIDATES]
    )
    until = now + timedelta(seconds=claim_seconds)
    for pk in list(candidates):
        if WebhookDelivery.objects.filter(_due(now), pk=pk).update(claimed_until=until):
            return pk, until
    return None


def retry_delay_seconds(attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt: first, doubling, at most an hour."""
    first = settings.WEBHOOK_RETRY_FIRST_SECONDS
    return min(first * 2 ** min(attempts - 1, 32), MAX_BACKOFF_SECONDS)


def delivery_send(*, pk: Any, claimed_until: datetime, client: httpx.Client) -> str | None:
    """Send one claimed delivery and write the outcome: "delivered", "retried" or "failed"
    (None if the row was gone or its claim lost before the outcome could be written)."""
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=pk).first()
    if delivery is None:
        return None
    webhook = delivery.webhook
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    started = time.monotonic()
    attempt = delivery_post(
        client=client,
        url=webhook.url,
        secret=webhook.secret,
        delivery_id=str(delivery.pk),
        kind=delivery.kind,
        payload=delivery.payload,
        timeout=timeout,
    )
    WEBHOOK_DELIVERY_SECONDS.observe(time.monotonic() - started)
    now = timezone.now()
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "response_status": attempt.response_status,
        "claimed_until": None,
    }
    if attempt.delivered:
        outcome = "delivered"
        fields.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now, last_error="")
    else:
        give_up_at = delivery.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_PERIOD_SECONDS)
        retry_at = now + timedelta(seconds=retry_delay_seconds(attempts))
        if delivery.kind == WebhookDelivery.Kind.TEST or now >= give_up_at:
            outcome = "failed"
            given_up = (
                "test send, not retried"
                if delivery.kind == WebhookDelivery.Kind.TEST
                else f"given up after {attempts} attempt{'s' if attempts != 1 else ''}"
            )
            fields.update(
                status=WebhookDelivery.Status.FAILED, last_error=f"{given_up}: {attempt.error}"
            )
        else:
            outcome = "retried"
            # The last retry falls at the end of the period, not after it.
            fields.update(next_attempt_at=min(retry_at, give_up_at), last_error=attempt.error)
        fields["last_error"] = fields["last_error"][:500]
    written = WebhookDelivery.objects.filter(pk=pk, claimed_until=claimed_until).update(**fields)
    if not written:
        logger.warning(
            "Webhook %s: the claim on delivery %s expired before its outcome (%s) was written",
            webhook.name,
            pk,
            outcome,
        )
        return None
    WEBHOOK_DELIVERIES.labels(outcome).inc()
    if outcome == "delivered":
        if attempts > 1:
            logger.info(
                "Webhook %s: delivery %s delivered at attempt %d", webhook.name, pk, attempts
            )
    elif outcome == "retried":
        logger.warning(
            "Webhook %s: attempt %d of delivery %s failed (%s); retried at %s (in %.1f s)",
            webhook.name,
            attempts,
            pk,
            attempt.error,
            fields["next_attempt_at"].isoformat(timespec="seconds"),
            (fields["next_attempt_at"] - now).total_seconds(),
        )
    else:
        logger.warning("Webhook %s: delivery %s failed: %s", webhook.name, pk, fields["last_error"])
    return outcome


# --- the worker ----------------------------------------------------------------------------

# Running workers of this process, woken when the recorder raises webhook alerts here.
_running: set[DeliveryWorker] = set()
_running_lock = threading.Lock()


def deliveries_wake(sender: Any = None, alerts: Any = (), **kwargs: Any) -> None:
    """`alerts_raised` receiver: wake this process's workers for new webhook alerts (rows other
    processes write are found by polling)."""
    if any(alert.webhook_pk is not None for alert in alerts):
        with _running_lock:
            workers = list(_running)
        for worker in workers:
            worker.wake()


class DeliveryWorker:
    """Threads that send due deliveries until `stop`; woken at once by `wake` (new alerts in
    this process), and every WEBHOOK_POLL_SECONDS otherwise."""

    def __init__(self, *, senders: int = SENDERS, claim_seconds: float | None = None):
        self.senders = senders
        self.claim_seconds = claim_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failures = ContainedFailures(
            what="Delivering webhooks",
            count=WEBHOOK_WORKER_FAILURES.inc,
            logger=logger,
            failed_message="%(what)s failed; retrying with backoff",
            failed_level=logging.ERROR,
        )

    def start(self) -> DeliveryWorker:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, name=f"webhook-delivery-{n}", daemon=True)
            for n in range(self.senders)
        ]
        for thread in self._threads:
            thread.start()
        with _running_lock:
            _running.add(self)
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and join the threads; a send under way finishes (within its timeout) first."""
        with _running_lock:
            _running.discard(self)
        self._stop.set()
        self._wake.set()
        wait = (
            timeout if timeout is not None else claim_seconds_for(settings.WEBHOOK_TIMEOUT_SECONDS)
        )
        for thread in self._threads:
            thread.join(wait)

    def _run(self) -> None:
        # No environment proxies (they would connect instead of the checked address), and no
        # kept-alive connections: the pool knows them by address, so one opened with another
        # webhook's TLS name on a shared address could be reused for this one.
        client = httpx.Client(
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        try:
            while not self._stop.is_set():
                busy = False
                with self._failures:
                    busy = self._send_due(client)
                if self._stop.is_set():
                    break
                if self._failures.failing:
                    backoff = settings.WEBHOOK_POLL_SECONDS * 2 ** min(self._failures.failures, 10)
                    self._stop.wait(min(backoff, MAX_LOOP_BACKOFF_SECONDS))
                elif not busy:
                    self._wake.wait(settings.WEBHOOK_POLL_SECONDS)
                    self._wake.clear()
        finally:
            client.close()
            try:
                connection.close()
            except Exception:
                pass  # closing a dead connection can raise; Django has forgotten it anyway

    def _send_due(self, client: httpx.Client) -> bool:
        """Send one due delivery if there is one (True), else False."""
        timeout = settings.WEBHOOK_TIMEOUT_SECONDS
        client.timeout = httpx.Timeout(timeout)
        claim = delivery_claim(claim_seconds=self.claim_seconds or claim_seconds_for(timeout))
        if claim is None:
            # Keep the connection between idle polls (a new one each second per thread would
            # cost PostgreSQL a backend each time without the pool), but never a broken or
            # expired one into the next round.
            close_old_connections()
            return False
        pk, claimed_until = claim
        delivery_send(pk=pk, claimed_until=claimed_until, client=client)
        return True


def start_in_process_worker() -> None:
    """Run a delivery worker in daphne (CAMERAS_IN_PROCESS: the recorder raises alerts there),
    stopped when the reactor shuts down. Outside a running reactor nothing starts."""
    from twisted.internet import reactor, threads

    worker = DeliveryWorker()

    def start() -> None:
        worker.start()
        reactor.addSystemEventTrigger("before", "shutdown", threads.deferToThread, worker.stop)

    reactor.callWhenRunning(start)
