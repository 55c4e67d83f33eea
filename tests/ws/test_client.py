"""The protocol's client side (``ws.client.Session``) on its own."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ws.client import Session


async def test_a_request_lost_to_a_closing_connection_leaves_no_unread_error() -> None:
    """The reader fails the waiting request as the send itself fails.

    Its error reaches the caller through the send; the request's own
    future must not be left holding an error nobody reads (asyncio logs
    that at error level, which the demo counts as a failure).
    """

    async def close_at_once(server_side: ServerConnection) -> None:
        await server_side.close()

    unread: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unread.append(context))
    try:
        async with serve(close_at_once, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            session = Session(await connect(f"ws://127.0.0.1:{port}"))
            real_send = session.connection.send

            async def send_once_closed(data: str) -> None:
                await session.connection.wait_closed()
                await asyncio.sleep(0)  # the reader fails what waits
                await real_send(data)

            session.connection.send = send_once_closed  # type: ignore[method-assign,assignment]
            with pytest.raises(ConnectionClosed):
                await session.request("location", lat=43.9, lon=125.3)
            await session.close()
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unread == []
