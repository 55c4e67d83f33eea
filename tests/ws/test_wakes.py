"""Numbered wake-ups: histories are polled only when a wake-up was lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis

from ws import registry as registry_module
from ws.fanout import ProviderFanout, parse_wake
from ws.registry import Registry, WakeNumbers, follow_wakes

# long enough for a wake-up to cross Redis on a loaded machine
_WAIT_S = 5.0


class _CountingFanout(ProviderFanout):
    """A fanout that counts how often every followed position is read."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix=prefix)
        self.polls = 0
        self.polled = asyncio.Event()

    async def positions(self, histories: Sequence[str]) -> list[int]:
        self.polls += 1
        found = await super().positions(histories)
        self.polled.set()
        return found


class _Follower:
    """Stands for a connection: a history, a cursor, and its wake-ups."""

    def __init__(self, history: str) -> None:
        self.history = history
        self.cursor = 0
        self.token = history
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.woken.set()


@pytest.fixture
async def fanout(redis: Redis, key_prefix: str) -> AsyncIterator[_CountingFanout]:
    """A fanout under this test's own keys, deleted afterwards."""
    yield _CountingFanout(redis, key_prefix)
    keys = [key async for key in redis.scan_iter(match=f"{key_prefix}*")]
    if keys:
        await redis.delete(*keys)


async def _following(
    redis: Redis, fanout: _CountingFanout, *histories: str
) -> tuple[Registry, list[_Follower], asyncio.Task[None]]:
    registry = Registry()
    followers = [_Follower(h) for h in histories]
    for follower in followers:
        registry.open(follower, per_token=1)  # type: ignore[arg-type]  # duck-typed connection
        registry.attach(follower)  # type: ignore[arg-type]  # duck-typed connection
    task = asyncio.create_task(follow_wakes(redis, fanout, registry))
    # subscribed once the first poll (after subscribing) has read positions
    async with asyncio.timeout(_WAIT_S):
        await fanout.polled.wait()
    return registry, followers, task


async def _lose_wake_up(redis: Redis, prefix: str, history: str) -> None:
    """What a publish does, but its wake-up never arrives."""
    await redis.incr(f"{prefix}hc:ws:w")
    await redis.set(f"{prefix}hc:ws:n:{history}", 5)


def test_consecutive_numbers_lose_nothing_and_a_skipped_one_is_a_loss() -> None:
    """Numbers one after the other are fine; a gap means a wake-up was lost."""
    numbers = WakeNumbers(published=10)

    assert [numbers.seen(n) for n in (11, 12, 13)] == [False, False, False]
    assert numbers.seen(15) is True
    assert numbers.seen(16) is False


def test_numbers_from_before_the_subscription_and_unnumbered_ones_are_no_loss() -> None:
    """Wake-ups up to the count at subscription may or may not arrive."""
    numbers = WakeNumbers(published=10)

    assert numbers.seen(9) is False
    assert numbers.seen(None) is False
    assert numbers.seen(11) is False


def test_a_loss_at_the_end_of_a_burst_is_found_at_the_next_check() -> None:
    """The count read at one check must have arrived by the next."""
    numbers = WakeNumbers(published=0)
    numbers.seen(1)

    assert numbers.check(published=2) is False  # 2 may still be on its way
    assert numbers.check(published=2) is True  # it never came
    assert numbers.last == 2
    assert numbers.check(published=2) is False


def test_numbers_starting_again_are_a_loss() -> None:
    """Redis that lost its data counts from 1 again: poll once."""
    numbers = WakeNumbers(published=500)

    assert numbers.check(published=3) is True
    assert numbers.seen(4) is False


async def test_publish_numbers_its_wake_ups(
    redis: Redis, fanout: ProviderFanout
) -> None:
    """Each publish announces the history with the next wake-up number."""
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(fanout.wake_channel)
        await fanout.publish("p:cg-1", "m1", b'{"type":"plan"}')
        await fanout.publish("p:cg-2", "m2", b'{"type":"plan"}')
        await fanout.publish("p:cg-2", "m2", b'{"type":"plan"}')  # seen before
        got: list[tuple[int | None, str]] = []
        async with asyncio.timeout(_WAIT_S):
            while len(got) < 2:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    got.append(parse_wake(message["data"]))

    assert got == [(1, "p:cg-1"), (2, "p:cg-2")]
    assert await fanout.wake_count() == 2


async def test_follower_polls_only_after_subscribing_while_no_wake_up_is_lost(
    redis: Redis, fanout: _CountingFanout
) -> None:
    """Announced growth wakes its followers without reading every position."""
    _, (first, second), task = await _following(redis, fanout, "p:cg-1", "p:cg-2")
    try:
        await fanout.publish("p:cg-2", "m1", b'{"type":"plan"}')
        async with asyncio.timeout(_WAIT_S):
            await second.woken.wait()
    finally:
        task.cancel()

    assert not first.woken.is_set()
    assert fanout.polls == 1


async def test_a_skipped_number_wakes_the_follower_of_the_lost_wake_up(
    redis: Redis, fanout: _CountingFanout, key_prefix: str
) -> None:
    """The next wake-up's number shows the loss; the poll finds the history."""
    _, (first, second), task = await _following(redis, fanout, "p:cg-1", "p:cg-2")
    try:
        await _lose_wake_up(redis, key_prefix, "p:cg-1")
        await fanout.publish("p:cg-2", "m1", b'{"type":"plan"}')
        async with asyncio.timeout(_WAIT_S):
            await first.woken.wait()
            await second.woken.wait()
    finally:
        task.cancel()

    assert fanout.polls == 2


async def test_a_wake_up_lost_last_is_found_by_the_count_check(
    redis: Redis,
    fanout: _CountingFanout,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no later wake-up, reading the count published finds the loss."""
    monkeypatch.setattr(registry_module, "_CHECK_S", 0.1)
    _, (first,), task = await _following(redis, fanout, "p:cg-1")
    try:
        await _lose_wake_up(redis, key_prefix, "p:cg-1")
        async with asyncio.timeout(_WAIT_S):
            await first.woken.wait()
    finally:
        task.cancel()

    assert fanout.polls == 2
