"""Camera leases: which capture process reads which camera, when several run.

Any number of processes may run the capture supervisor (`manage.py runcameras`, or daphne with
CAMERAS_IN_PROCESS). With REDIS_URL each camera is read by exactly one of them: the one holding
its lease, a Redis key `sightline:camera-lease:<public id>` whose value names the holder and
which expires CAMERA_LEASE_SECONDS after its last renewal. Every turn (a fifth of that) a
supervisor

- registers itself in the set of live holders and learns how many there are, so that each
  takes its fair share, ceil(cameras / holders), and gives back (after stopping its worker)
  one camera a turn above it;
- renews the leases it holds (one round trip for all of them), and learns which it lost;
- takes free leases up to its share.

So a process that dies (SIGKILL) lets its leases expire and the others take them up within a
lease and a turn (12 s by default); one that stops (SIGTERM) gives them back at once.

Two processes never read the same camera at the same time, even when a process stalls or loses
Redis: a worker stops capturing at its *deadline*, the moment its last renewal was sent plus
the lease less a safety margin, which is before the lease can expire in Redis and be taken by
anyone else. A process that cannot reach Redis therefore stops its cameras one lease after the
outage began (and picks them up again when it can renew).

Redis may also lose its keys (restarted without persistence, flushed): the holders' leases are
gone while their workers still capture up to their deadlines. An `epoch` key marks when Redis
last started to hold leases; until every deadline set before it has passed (the lease less the
margin: 8 s by default), nobody takes a camera it did not hold, and the holders re-claim theirs.
So on a Redis that has never held leases, the first cameras start after those 8 s. Everything is timed by Redis's own clock (TIME in the scripts),
so the processes' clocks never have to agree.

Without REDIS_URL there is one process: `LocalLeases` grants every camera.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio
import redis.exceptions
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)

KEY_PREFIX = "sightline:camera-lease:"
HOLDERS_KEY = "sightline:camera-lease-holders"
EPOCH_KEY = "sightline:camera-lease-epoch"

# A worker stops this much before its lease could expire: room for the renewal's trip to Redis
# and for a thread that is between two checks of its deadline (one frame read, at most).
DEADLINE_MARGIN_FRACTION = 0.2

# Register the holder, forget holders whose registration expired, and say how many are alive
# and how long the epoch's grace (ARGV[3] ms from its birth) still runs. Creates the epoch when
# Redis has none.
_REGISTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
local born = redis.call('GET', KEYS[2])
if not born then
  born = now
  redis.call('SET', KEYS[2], born)
end
local grace = tonumber(born) + tonumber(ARGV[3]) - now
if grace < 0 then grace = 0 end
return {redis.call('ZCARD', KEYS[1]), grace}
"""

# Renew the holder's leases (KEYS); a lease that expired and that nobody took is re-claimed.
# Returns 1 per lease still held, 0 per lease someone else holds now.
_RENEW = """
local held = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[i] = 1
  elseif not holder then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

# Take up to ARGV[3] free leases among KEYS[2..], in order; none during the epoch's grace
# (KEYS[1] missing means Redis lost its keys since the register call: no grace has run yet).
# Returns the 1-based positions, among the lease keys, of the leases taken.
_ACQUIRE = """
local born = redis.call('GET', KEYS[1])
if not born then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(born) + tonumber(ARGV[4]) > now then return {} end
local taken = {}
local wanted = tonumber(ARGV[3])
for i = 2, #KEYS do
  if #taken >= wanted then break end
  -- (Already ours: this script ran before, and its answer was lost with the connection.)
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2])
      or redis.call('GET', KEYS[i]) == ARGV[1] then
    taken[#taken + 1] = i - 1
  end
end
return taken
"""

# Give back the holder's leases among KEYS (those someone else holds are left alone).
_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""


def holder_name() -> str:
    """This process, unique even when a pid is reused: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_key(public_id: str) -> str:
    return f"{KEY_PREFIX}{public_id}"


@dataclass(frozen=True)
class LeaseTurn:
    """What one turn found: the cameras this process holds now and until when (monotonic) its
    workers may capture them; the ones it lost and took in the turn; the one it holds above its
    fair share, to stop and give back (`release`); how many holders are alive."""

    held: frozenset[str]
    deadline: float
    lost: frozenset[str]
    taken: frozenset[str]
    surplus: str | None
    holders: int


class LocalLeases:
    """One process reads every camera: every lease is granted, forever."""

    turn_seconds = math.inf

    async def turn(self, *, wanted: Iterable[str], held: Iterable[str]) -> LeaseTurn:
        wanted = frozenset(wanted)
        return LeaseTurn(
            held=wanted,
            deadline=math.inf,
            lost=frozenset(),
            taken=wanted - frozenset(held),
            surplus=None,
            holders=1,
        )

    async def release(self, public_ids: Iterable[str]) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisLeases:
    """Leases in Redis, as the module says. Every method may raise redis' errors: the
    supervisor contains them, and its workers stop at their deadline meanwhile."""

    def __init__(self, url: str, *, lease_seconds: float, holder: str | None = None):
        self.holder = holder or holder_name()
        self.lease_ms = int(lease_seconds * 1000)
        self.turn_seconds = lease_seconds / 5
        self._margin = lease_seconds * DEADLINE_MARGIN_FRACTION
        # Every deadline set before the epoch was born has passed once this much time has.
        self._grace_ms = self.lease_ms - int(self._margin * 1000)
        # Quick single commands: a lease turn must fail fast rather than outlast the deadline.
        # One retry on a fresh connection, because the first command after a Redis restart
        # meets the pool's dead one (every script is safe to run twice).
        self._redis = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=self.turn_seconds,
            socket_connect_timeout=self.turn_seconds,
            retry=Retry(NoBackoff(), retries=1),
            retry_on_error=[redis.exceptions.ConnectionError],
        )
        self._register = self._redis.register_script(_REGISTER)
        self._renew = self._redis.register_script(_RENEW)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)

    async def turn(self, *, wanted: Iterable[str], held: Iterable[str]) -> LeaseTurn:
        wanted = sorted(set(wanted))
        held = sorted(set(held))
        # Sent before anything is renewed: a renewal executes after this instant, so its lease
        # lasts at least until sent + lease, and the deadline comes before that.
        sent = time.monotonic()
        holders, grace_ms = await self._register(
            keys=[HOLDERS_KEY, EPOCH_KEY], args=[self.holder, self.lease_ms, self._grace_ms]
        )
        holders = max(1, int(holders))
        kept = set()
        if held:
            still = await self._renew(
                keys=[lease_key(public_id) for public_id in held], args=[self.holder, self.lease_ms]
            )
            kept = {public_id for public_id, ok in zip(held, still, strict=True) if ok}
        lost = set(held) - kept
        share = math.ceil(len(wanted) / holders)
        # Cameras no longer wanted (disabled, removed) are the supervisor's to stop and give
        # back; they do not count towards the share.
        wanted_kept = kept.intersection(wanted)
        taken: set[str] = set()
        surplus: str | None = None
        if int(grace_ms) == 0:
            if len(wanted_kept) > share:
                # One a turn, given back by the supervisor once its worker has stopped: a
                # newcomer takes it before the next is given back.
                surplus = max(wanted_kept)
            elif len(wanted_kept) < share:
                free = [
                    public_id for public_id in _spread(wanted, self.holder) if public_id not in kept
                ]
                if free:
                    positions = await self._acquire(
                        keys=[EPOCH_KEY] + [lease_key(public_id) for public_id in free],
                        args=[
                            self.holder,
                            self.lease_ms,
                            share - len(wanted_kept),
                            self._grace_ms,
                        ],
                    )
                    taken = {free[int(position) - 1] for position in positions}
        return LeaseTurn(
            held=frozenset(kept | taken),
            deadline=sent + self.lease_ms / 1000 - self._margin,
            lost=frozenset(lost),
            taken=frozenset(taken),
            surplus=surplus,
            holders=holders,
        )

    async def release(self, public_ids: Iterable[str]) -> None:
        keys = [lease_key(public_id) for public_id in public_ids]
        if keys:
            await self._release(keys=keys, args=[self.holder])

    async def close(self) -> None:
        """Leave the holders' set (the others' shares grow at once) and close the client."""
        try:
            await self._redis.zrem(HOLDERS_KEY, self.holder)
        finally:
            await self._redis.aclose()


def _spread(public_ids: list[str], holder: str) -> list[str]:
    """The cameras in an order of this holder's own, so that holders starting together try
    different cameras first instead of racing for the same ones."""
    return sorted(public_ids, key=lambda public_id: hash((holder, public_id)))


def leases_for_settings() -> LocalLeases | RedisLeases:
    if not settings.REDIS_URL:
        return LocalLeases()
    return RedisLeases(settings.REDIS_URL, lease_seconds=settings.CAMERA_LEASE_SECONDS)
