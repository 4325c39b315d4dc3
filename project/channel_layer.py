"""Channel-layer receives that live for minutes or days and survive silence and layer outages.

Everything that listens for long (an SSE reply listener, a camera hub, a run's stop channel)
receives through a `GroupReceiver`, never through a bare `layer.receive()`:

- **Silence is "nothing yet".** channels-redis waits for a message with a blocking BZPOPMIN
  of 5 s; a Redis socket timeout no longer than that (redis-py 8's default is 5 s) made a
  silent channel raise `TimeoutError`. Settings give the layer a longer socket timeout; should a
  timeout still happen, it is received again at once, never an error.
- **An outage is waited out.** A lost connection (Redis restarted or unreachable) is retried
  with backoff (0.25 s doubling to 5 s). The first failure in the process is logged once with
  its traceback, the recovery once at info; each receiver that resumes counts
  `CHANNEL_LAYER_RECONNECTS{where}`.
- **Groups are joined again.** A restarted Redis has forgotten every group, so after an outage
  a receiver joins its groups again before it receives. A receiver that never saw the outage
  itself (in channels-redis one receive per process waits in Redis for all of them) notices
  the process's recovery within `REJOIN_CHECK_SECONDS`; and every receiver re-joins every
  `REJOIN_SECONDS` anyway, because channels-redis drops group members older than a day.

A receiver that takes a steady flow (a camera hub: every frame of its camera) asks for a
`dedicated` channel. channels-redis files all of a process's own channels (`new_channel()`,
"specific.…!…") under ONE Redis key, drained one message at a time by one reader, with one
capacity for all of them: a burst of reply deltas there made frames be dropped, and a dropped
H.264 fragment stops that camera's video until the next key frame. A dedicated channel is a key
of its own, with its own capacity, drained by its own receive, beside the process's.

Publishers that must not fail because the layer is away (a reply's deltas, which listeners
can read from the database) send through `group_send_or_drop`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from collections.abc import Iterable
from typing import Any

import redis.exceptions
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, InMemoryChannelLayer

from project.contained import ContainedFailures
from project.metrics import CHANNEL_LAYER_RECONNECTS
from project.unavailable import REDIS_UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)

# What a layer raises when Redis is away: refused, reset, restarted, too slow (and a socket
# error that slipped through redis-py's wrapping).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (*REDIS_UNAVAILABLE_ERRORS, OSError)

BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 5.0
# How often a waiting receiver checks whether it must join its groups again.
REJOIN_CHECK_SECONDS = 1.0
REJOIN_SECONDS = 300.0
# How long `close` may take (waking its pending receive, leaving its groups).
CLOSE_WAIT_SECONDS = 1.0
RELEASE_MESSAGE_TYPE = "receiver.release"


class _LayerHealth:
    """What this process knows about one layer: whether it is failing (told once per outage),
    and how often it recovered (receivers join their groups again after each recovery)."""

    def __init__(self) -> None:
        self.recoveries = 0
        self._outage = ContainedFailures(
            what="The channel layer",
            logger=logger,
            failed_message=(
                "%(what)s is unreachable (first noticed by %(where)s: %(error)s); receives and "
                "publishers retry with backoff until it is back"
            ),
            recovered_message=(
                "%(what)s is reachable again after %(seconds).1f s; receivers join their "
                "groups again"
            ),
        )

    def failed(self, where: str, error: BaseException) -> None:
        self._outage.failed(error, where=where)

    def recovered(self) -> None:
        if self._outage.succeeded():
            self.recoveries += 1


_health_by_layer: weakref.WeakKeyDictionary[BaseChannelLayer, _LayerHealth] = (
    weakref.WeakKeyDictionary()
)


def _health(layer: BaseChannelLayer) -> _LayerHealth:
    health = _health_by_layer.get(layer)
    if health is None:
        health = _health_by_layer[layer] = _LayerHealth()
    return health


async def group_send_or_drop(
    layer: BaseChannelLayer, group: str, message: dict[str, Any], *, where: str
) -> bool:
    """Send `message` to `group`; False (logged once per outage) if the layer is away.

    For messages whose loss a receiver makes up for (a reply's text is in the database)."""
    health = _health(layer)
    try:
        await layer.group_send(group, message)
    except UNAVAILABLE_ERRORS as error:
        health.failed(where, error)
        return False
    health.recovered()
    return True


class GroupReceiver:
    """One channel, member of `groups`, whose `receive` survives silence and outages.

    Call `join` first and `close` at the end. `receive` is meant for one task at a time.
    """

    def __init__(
        self,
        layer: BaseChannelLayer,
        *,
        where: str,
        groups: Iterable[str],
        dedicated: bool = False,
    ):
        self.layer = layer
        self.where = where
        self.groups = list(groups)
        self.dedicated = dedicated
        self.channel: str | None = None
        self._health = _health(layer)
        # One receive stays pending across `receive(within)` calls that return None, so a
        # message arriving between two calls is never lost to a cancellation.
        self._pending: asyncio.Future | None = None
        self._joined_generation = -1
        self._joined_at = 0.0
        self._failing = False
        self._backoff = BACKOFF_FIRST_SECONDS
        # Set by `interrupt`: the waiting (or next) `receive` returns None at once.
        self._interrupted = False
        self._wakeup: asyncio.Future | None = None

    async def join(self) -> None:
        """Take a channel and join the groups. An unreachable layer does not raise: the
        receiver then keeps trying in `receive`, and callers that can go on without it do."""
        if self.channel is None:
            self.channel = (
                f"{self.where}.{secrets.token_hex(12)}"
                if self.dedicated
                else await self.layer.new_channel()
            )
        try:
            await self._join_groups()
        except UNAVAILABLE_ERRORS as error:
            self._fail(error)

    async def receive(self, within: float | None = None) -> dict[str, Any] | None:
        """The next message; None if `within` seconds passed without one (never raises for
        an unreachable layer: it waits for it to come back)."""
        assert self.channel is not None, "join() first"
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while True:
            if self._interrupted:
                self._interrupted = False
                return None
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._next_message())
            if self._wakeup is None or self._wakeup.done():
                self._wakeup = loop.create_future()
            wait = REJOIN_CHECK_SECONDS
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - loop.time()))
            done, _ = await asyncio.wait(
                [self._pending, self._wakeup], timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if self._pending in done:
                pending, self._pending = self._pending, None
                return pending.result()
            if self._interrupted:
                continue
            if not self._failing and self._rejoin_due():
                try:
                    await self._join_groups()
                except UNAVAILABLE_ERRORS:
                    pass  # the pending receive meets the same outage and handles it
            if deadline is not None and loop.time() >= deadline:
                return None

    def interrupt(self) -> None:
        """Make the `receive` waiting now (or the next one) return None at once, from this
        process (a stream whose access was revoked stops waiting for the layer). The layer's
        pending receive is kept, so no message is lost to it."""
        self._interrupted = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def close(self) -> None:
        """Stop receiving and leave the groups, within CLOSE_WAIT_SECONDS (best effort: a
        member that could not leave expires with its channel)."""
        pending, self._pending = self._pending, None
        try:
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                if pending is not None and not pending.done():
                    # Wake the pending receive with a message of our own rather than cancel
                    # it: a receive cancelled while channels-redis reads a BZPOPMIN reply
                    # loses that message, which may be for another channel of this process.
                    await self.layer.send(self.channel, {"type": RELEASE_MESSAGE_TYPE})
                    await asyncio.wait([pending])
                if self.channel is not None:
                    for group in self.groups:
                        await self.layer.group_discard(group, self.channel)
        except (TimeoutError, ChannelFull, *UNAVAILABLE_ERRORS):
            logger.debug("%s receiver closed without the layer", self.where, exc_info=True)
        finally:
            if pending is not None and not pending.done():
                # channels-redis drops the channel's buffer itself as the cancellation lands
                # (and must find it there: it deletes it, and holds the process's receive lock
                # until it has).
                pending.cancel()
            elif self.channel is not None:
                _forget_buffered(self.layer, self.channel)
            if self.channel is not None:
                _forget_buffered_later(self.layer, self.channel)

    def _rejoin_due(self) -> bool:
        return (
            self._joined_generation != self._health.recoveries
            or time.monotonic() - self._joined_at >= REJOIN_SECONDS
        )

    async def _join_groups(self) -> None:
        generation = self._health.recoveries
        for group in self.groups:
            await self.layer.group_add(group, self.channel)
        self._joined_generation, self._joined_at = generation, time.monotonic()

    async def _next_message(self) -> dict[str, Any]:
        while True:
            try:
                if self._failing or self._rejoin_due():
                    await self._join_groups()
                    if self._failing:
                        self._recover()
                return await self.layer.receive(self.channel)
            except redis.exceptions.TimeoutError:
                # The channel stayed silent longer than the socket timeout: nothing yet. (A
                # Redis that hangs altogether is asked again, each time for at most the
                # socket timeout; /readyz names it.)
                continue
            except UNAVAILABLE_ERRORS as error:
                self._fail(error)
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)

    def _fail(self, error: BaseException) -> None:
        self._failing = True
        self._health.failed(self.where, error)

    def _recover(self) -> None:
        self._failing = False
        self._backoff = BACKOFF_FIRST_SECONDS
        CHANNEL_LAYER_RECONNECTS.labels(where=self.where).inc()
        self._health.recovered()
        # Joined just now: the recovery this receiver reported needs no second join.
        self._joined_generation = self._health.recoveries


def _forget_buffered(layer: BaseChannelLayer, channel: str) -> None:
    """Drop what the layer holds in this process for a channel nobody will read again.

    channels-redis reads one Redis list per process and files each message under its channel
    in `receive_buffer`, whoever asked: messages for a closed receiver (the deltas after a
    reply ended, the wake-up of `close`) would stay there for the life of the process, a few
    KiB a reply. Never call it while a receive on the channel is pending or being cancelled.
    """
    buffer = getattr(layer, "receive_buffer", None)
    if buffer is not None:  # (the in-memory layer expires its channels' messages itself)
        buffer.pop(channel, None)


def _forget_buffered_later(layer: BaseChannelLayer, channel: str) -> None:
    """Once more when anything still in Redis for the channel has expired, and so can no longer
    arrive and be filed."""
    if getattr(layer, "receive_buffer", None) is not None:
        expiry = getattr(layer, "expiry", 60)
        asyncio.get_running_loop().call_later(expiry + 1, _forget_buffered, layer, channel)


class InMemoryLayerWithPeriodicExpiry(InMemoryChannelLayer):
    """channels' in-memory layer, with its expiry scan run at most every `expiry_scan_seconds`.

    The stock layer walks every channel and every group member on each `receive` and
    `group_send`: with hundreds of live streams, each a channel in a group, that scan was ~9 %
    of a reply's CPU and grew with the number of streams. The semantics stay those of channels:
    a message older than `expiry` is dropped and its channel leaves its groups, a membership
    older than `group_expiry` ends; only now up to `expiry_scan_seconds` later.
    """

    def __init__(self, *args: Any, expiry_scan_seconds: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.expiry_scan_seconds = expiry_scan_seconds
        self._next_expiry_scan = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_expiry_scan:
            return
        self._next_expiry_scan = now + self.expiry_scan_seconds
        super()._clean_expired()
