"""Closing a request's connection without answering: the "job created, answer lost" fault.

ASGI has no message for "hang up without a response", so `serve` hands over uvicorn's own set of open
connections (`uvicorn.Server.server_state.connections`) and the fault aborts the transport of the one
whose peer address is the request's client. The client sees the connection close with no response at
all, as when a proxy or the network fails after the service has processed the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

#: The status a hung-up request is counted under in /_emulator/stats (nginx's "closed without response").
HUNG_UP_STATUS = 444


class OpenConnections:
    """uvicorn's live connections, once `attach`ed; each has `.client` (peer address) and `.transport`."""

    def __init__(self) -> None:
        self._connections: Collection[Any] = ()

    def attach(self, connections: Collection[Any]) -> None:
        self._connections = connections

    async def hang_up(self, client: Sequence[Any] | None) -> bool:
        """Abort the connection from `client`; False when it is unknown (the app is not run by `serve`)."""
        if not client:
            return False
        for connection in list(self._connections):
            if tuple(getattr(connection, "client", None) or ()) == tuple(client):
                connection.transport.abort()
                # Let uvicorn see the loss first, so whatever the route returns is never written.
                await asyncio.sleep(0)
                return True
        return False
