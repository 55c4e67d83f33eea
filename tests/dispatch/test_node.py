"""The node's connections to its stores."""

from __future__ import annotations

import asyncio

from dispatch.node import Node


async def test_a_burst_of_redis_commands_waits_for_a_free_connection(
    node: Node,
) -> None:
    """More commands at once than the pool holds connections all succeed.

    A plan sent to every caregiver of a region at once once failed with
    "Too many connections" in the live demo.
    """
    answers = await asyncio.gather(*(node.redis.ping() for _ in range(300)))

    assert all(answers)
