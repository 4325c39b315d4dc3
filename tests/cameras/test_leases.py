"""Camera leases (cameras/leases.py) in a real Redis of the test's own, with one-second leases:
fair shares, hand-over, expiry, deadlines, and a Redis that loses its keys.

Each `Holder` plays one capture process's supervisor: it turns, keeps what it holds and gives
back its surplus, as `CameraSupervisor.lease_turn` does (without workers to stop). At every
step no two holders may hold the same camera.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from cameras.leases import EPOCH_KEY, HOLDERS_KEY, RedisLeases, lease_key
from tests.conftest import camera_lease_epoch_aged

CAMERAS = [f"camera{number}" for number in range(6)]
LEASE = 1.0


class Holder:
    def __init__(self, url: str, name: str, wanted=CAMERAS):
        self.leases = RedisLeases(url, lease_seconds=LEASE, holder=name)
        self.wanted = list(wanted)
        self.held: frozenset[str] = frozenset()
        self.deadline = 0.0

    async def turn(self):
        turn = await self.leases.turn(wanted=self.wanted, held=self.held)
        self.held = turn.held
        self.deadline = turn.deadline
        if turn.surplus is not None:
            self.held -= {turn.surplus}
            await self.leases.release([turn.surplus])
        return turn

    async def stop(self):
        await self.leases.release(self.held)
        self.held = frozenset()
        await self.leases.close()


def assert_exclusive(*holders: Holder) -> None:
    seen: dict[str, str] = {}
    for holder in holders:
        for camera in holder.held:
            assert camera not in seen, f"{camera} held by {seen[camera]} and {holder.leases.holder}"
            seen[camera] = holder.leases.holder


async def turn_all(*holders: Holder, rounds: int = 1, pause: float = 0.05) -> None:
    for _ in range(rounds):
        for holder in holders:
            await holder.turn()
            assert_exclusive(*holders)
        await asyncio.sleep(pause)


@pytest.fixture
def url(own_redis) -> str:
    camera_lease_epoch_aged(own_redis.url)
    return own_redis.url


async def test_two_holders_share_six_cameras_three_each_and_never_the_same(url):
    first, second = Holder(url, "first"), Holder(url, "second")
    await turn_all(first)
    assert first.held == set(CAMERAS)  # alone, it reads them all
    # A second process arrives: the first gives one back a turn, the second takes it.
    await turn_all(first, second, rounds=6)
    assert len(first.held) == len(second.held) == 3
    assert first.held | second.held == set(CAMERAS)
    await first.stop()
    await second.stop()


async def test_holders_starting_together_spread_the_cameras(url):
    holders = [Holder(url, f"holder{index}") for index in range(3)]
    for holder in holders:
        # All three registered before anyone takes: each takes its share of two at once.
        await holder.leases._register(
            keys=[HOLDERS_KEY, EPOCH_KEY],
            args=[holder.leases.holder, holder.leases.lease_ms, 0],
        )
    await turn_all(*holders, rounds=2)
    assert sorted(len(holder.held) for holder in holders) == [2, 2, 2]
    for holder in holders:
        await holder.stop()


async def test_a_holder_that_dies_loses_its_cameras_to_the_other_after_its_lease(url):
    dead, alive = Holder(url, "dead"), Holder(url, "alive")
    await turn_all(dead, alive, rounds=6)
    orphans = set(dead.held)
    assert len(orphans) == 3
    died_at = time.monotonic()
    # The dead one turns no more. Until its leases expire the other takes none of them.
    while time.monotonic() - died_at < LEASE * 0.7:
        await alive.turn()
        assert not alive.held & orphans
        await asyncio.sleep(0.1)
    while alive.held != set(CAMERAS):
        assert time.monotonic() - died_at < LEASE * 3, alive.held
        await alive.turn()
        await asyncio.sleep(0.1)
    took_over = time.monotonic() - died_at
    assert LEASE <= took_over + 0.05 < LEASE * 3
    await alive.stop()


async def test_a_holder_stopping_hands_its_cameras_over_at_the_next_turn(url):
    leaving, staying = Holder(url, "leaving"), Holder(url, "staying")
    await turn_all(leaving, staying, rounds=6)
    await leaving.stop()
    # Its registration went with it: the share is all six at once, and all six are free.
    turn = await staying.turn()
    assert turn.holders == 1
    assert staying.held == set(CAMERAS)
    await staying.stop()


async def test_a_camera_held_by_another_is_lost_and_said_so(url, own_redis):
    holder = Holder(url, "holder")
    await turn_all(holder)
    # Someone else holds camera0 now (as after an expiry the holder did not notice).
    client = redis.Redis.from_url(own_redis.url)
    client.set(lease_key("camera0"), "intruder", px=5000)
    turn = await holder.turn()
    assert turn.lost == {"camera0"}
    assert "camera0" not in holder.held
    await holder.stop()
    assert client.get(lease_key("camera0")) == b"intruder"  # giving back never frees another's


async def test_the_deadline_comes_before_the_lease_can_expire_in_redis(url, own_redis):
    holder = Holder(url, "holder")
    await turn_all(holder)
    client = redis.Redis.from_url(own_redis.url)
    left_in_redis = min(client.pttl(lease_key(camera)) for camera in CAMERAS) / 1000
    left_to_deadline = holder.deadline - time.monotonic()
    assert 0 < left_to_deadline < left_in_redis
    assert left_in_redis - left_to_deadline >= LEASE * 0.15  # the margin, less a round trip
    await holder.stop()


async def test_a_redis_that_lost_its_keys_lets_holders_reclaim_and_nobody_else_take(url, own_redis):
    keeper, other = Holder(url, "keeper"), Holder(url, "other")
    await turn_all(keeper, other, rounds=6)
    keepers = set(keeper.held)
    own_redis.stop()
    own_redis.start()  # empty: no leases, no holders, no epoch
    lost_at = time.monotonic()
    # The other one comes back first and turns for the whole grace; the keeper has not yet.
    while time.monotonic() - lost_at < LEASE * 0.7:
        await other.turn()
        assert not other.held & keepers, "took a camera whose holder may still read it"
        await asyncio.sleep(0.1)
    # The keeper re-claims its own, even during the grace.
    await keeper.turn()
    assert keeper.held == keepers
    await turn_all(keeper, other, rounds=3)
    assert keeper.held | other.held == set(CAMERAS)
    await keeper.stop()
    await other.stop()


async def test_a_redis_that_never_held_leases_gives_its_first_cameras_after_the_grace(own_redis):
    holder = Holder(own_redis.url, "first")
    started = time.monotonic()
    await holder.turn()
    assert holder.held == set()
    while not holder.held:
        await asyncio.sleep(0.1)
        await holder.turn()
    # The grace: every deadline set before the epoch began has passed (the lease less 20%).
    assert time.monotonic() - started >= LEASE * 0.8 - 0.05
    await holder.stop()


async def test_cameras_no_longer_wanted_are_not_counted_in_the_share(url):
    holder = Holder(url, "holder")
    await turn_all(holder)
    holder.wanted = CAMERAS[:2]
    turn = await holder.turn()
    # Still held (the supervisor stops their workers and gives them back) but no surplus.
    assert turn.surplus is None
    assert turn.held == set(CAMERAS)
    await holder.stop()
