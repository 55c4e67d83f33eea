"""What keeps the edge cheap per message: one idle timer, a chunked poll, tuning."""

from __future__ import annotations

import gc
import resource
from collections.abc import Callable, Sequence

from dispatch.node import GC_THRESHOLDS, raise_open_files_limit, tune_collector
from ws import registry as registry_module
from ws.registry import Registry
from ws.session import _IdleWatch


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _FakeLoop:
    """A loop whose time is set by the test and whose timers are a list."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        self.timers.append((when, callback))
        return _Handle()

    def fire(self) -> None:
        when, callback = self.timers.pop(0)
        self.now = max(self.now, when)
        callback()


def test_idle_watch_moves_its_one_timer_only_when_it_fires() -> None:
    """Frames keep the connection alive; the timer expires after a silent period."""
    loop = _FakeLoop()
    expired: list[float] = []
    watch = _IdleWatch(loop, 10.0, lambda: expired.append(loop.now))  # type: ignore[arg-type]  # only time() and call_at() are used

    loop.now = 4.0
    watch.last = loop.now  # a frame at 4 s
    loop.now = 7.0
    watch.last = loop.now  # and at 7 s: still one timer
    assert len(loop.timers) == 1

    loop.fire()  # due at 10 s, but the last frame was at 7 s
    assert expired == []
    assert loop.timers[0][0] == 17.0

    loop.fire()
    assert expired == [17.0]
    assert loop.timers == []
    watch.cancel()


class _Fanout:
    """Positions of histories; counts the round trips asked for."""

    def __init__(self, position: int) -> None:
        self.position = position
        self.calls: list[int] = []

    async def positions(self, histories: Sequence[str]) -> list[int]:
        self.calls.append(len(histories))
        return [self.position] * len(histories)


class _Follower:
    def __init__(self, history: str, cursor: int) -> None:
        self.history = history
        self.cursor = cursor
        self.token = history
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


async def test_poll_reads_positions_in_chunks_and_wakes_every_lagging_follower() -> (
    None
):
    """A poll over more histories than a chunk still wakes each one behind."""
    registry = Registry()
    followers = [
        _Follower(f"p:cg-{i}", cursor=5 if i % 2 else 7)
        for i in range(registry_module._POLL_CHUNK * 2 + 3)
    ]
    for follower in followers:
        registry.open(follower, per_token=1)  # type: ignore[arg-type]  # duck-typed connection
        registry.attach(follower)  # type: ignore[arg-type]  # duck-typed connection
    fanout = _Fanout(position=7)

    await registry_module._poll(fanout, registry)  # type: ignore[arg-type]  # duck-typed fanout

    assert fanout.calls == [registry_module._POLL_CHUNK] * 2 + [3]
    assert [f.woken for f in followers] == [
        1 if i % 2 else 0 for i in range(len(followers))
    ]


def test_node_raises_its_soft_open_file_limit_to_the_hard_one() -> None:
    """The soft limit ends at the hard limit, which never goes down."""
    _, hard_before = resource.getrlimit(resource.RLIMIT_NOFILE)

    soft, hard = raise_open_files_limit()

    assert soft == hard
    assert hard == resource.RLIM_INFINITY or hard >= hard_before
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


def test_node_collector_thresholds_are_set_at_start_up() -> None:
    """The young generation is collected every 50,000 allocations, not 700."""
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
