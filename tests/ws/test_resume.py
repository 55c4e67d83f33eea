"""Resume: phones dropped mid-stream miss nothing and apply nothing twice."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from dispatch.domain import ActorRole
from dispatch.node import Node
from tests.conftest import token_for
from tests.ws.conftest import drop_keys, start_gateway
from ws.client import Phone
from ws.fanout import ProviderFanout, provider_history
from ws.protocol import OrderUpdate, encode
from ws.registry import Limits

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHONES = 500
ROUNDS = 20


async def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.1)


async def test_500_phones_dropped_mid_stream_resume_without_loss_or_repeat(
    node: Node, key_prefix: str
) -> None:
    """A gateway restart and dropped sockets: each phone applies 1..N once."""
    limits = Limits(idle_timeout_s=60.0, rate_per_s=50.0, burst=50)
    running = await start_gateway(node, key_prefix, limits)
    port = int(running.base.rsplit(":", 1)[1])
    ids = [f"cg-r-{i:03d}" for i in range(PHONES)]
    phones = [
        Phone(
            running.phone_url,
            token_for(node, ActorRole.CAREGIVER, cid),
            base_delay_s=0.1,
            max_delay_s=2.0,
        )
        for cid in ids
    ]
    tasks = [asyncio.create_task(phone.run()) for phone in phones]
    fanout = ProviderFanout(node.redis, prefix=key_prefix)
    rng = random.Random(5)
    try:
        await _wait(lambda: all(p.ready.is_set() for p in phones), 60)
        for round_no in range(ROUNDS):
            await fanout.publish_many(
                [
                    (
                        provider_history(cid),
                        f"u{round_no}",
                        encode(
                            OrderUpdate(
                                id=f"u{round_no}",
                                order_id=f"o-{cid}",
                                version=round_no + 1,
                                status="accepted",
                                trigger="accept",
                            )
                        ),
                    )
                    for cid in ids
                ]
            )
            if round_no == 6:
                # the node goes away mid-stream and comes back on its port
                await running.runner.cleanup()
                running = await start_gateway(node, key_prefix, limits, port=port)
            if round_no == 12:
                # every phone is back from the restart first, so the abrupt
                # drop below hits live sessions even on a loaded machine
                await _wait(lambda: all(p.connects >= 2 for p in phones), 60)
                # a fifth of the phones lose their network abruptly
                for phone in rng.sample(phones, PHONES // 5):
                    if phone.session is not None:
                        transport = phone.session.connection.transport
                        transport.abort()
            await asyncio.sleep(0.05)
        # a replay of an earlier round by an at-least-once publisher adds nothing
        replayed = await fanout.publish_many(
            [(provider_history(cid), "u3", b"{}") for cid in ids]
        )
        assert replayed == [None] * PHONES

        final = await fanout.positions([provider_history(cid) for cid in ids])
        await _wait(
            lambda: all(
                p.last_seq == seq for p, seq in zip(phones, final, strict=True)
            ),
            60,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await running.runner.cleanup()
        await drop_keys(node.redis, key_prefix)

    for phone, last in zip(phones, final, strict=True):
        assert phone.applied == list(range(last - ROUNDS + 1, last + 1))
        assert phone.gaps == 0
        assert phone.snapshots == 1  # only the first hello started from scratch
        assert phone.connects >= 2
    dropped_twice = sum(1 for p in phones if p.connects >= 3)
    assert dropped_twice >= PHONES // 5 * 0.9
