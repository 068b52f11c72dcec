"""The connections of the broker's Redis pool: redis-py's, with three changes.

- **Scripts loaded on connect.** Each new connection sends `SCRIPT LOAD` for every garage
  script (pipelined, one round trip) before its first command. redis-py calls a script
  with EVALSHA and, on NOSCRIPT (a fresh or restarted Redis, a promoted replica), loads it
  and calls again: three round trips, which would let a worker's report on a handed-off
  job overtake the job's own `submit.lua` (see `enqueue` in `broker/api/jobs.py`).
- **Writes that do not wait.** `write_now` puts commands on the socket in the order they
  are called, for the command channel (`command_channel.py`), which reads the replies itself.
- **Commands packed by hiredis, in C.** redis-py's asyncio connections pack in Python:
  36 µs for `submit.lua`'s 22 arguments against 5.5 µs through `hiredis.pack_command`,
  which redis-py's blocking client already uses. The bytes on the wire are the same;
  without hiredis, redis-py packs as before.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from .scripts import NAMES, source

__all__ = ["GarageConnection", "connection_class", "connection_pool"]

try:
    import hiredis
except ImportError:  # redis[hiredis] is the broker extra's; plain redis-py still works
    hiredis = None


class GarageConnection(AbstractConnection):
    """redis-py's connection, loading the scripts on connect and packing with hiredis; the
    command channel (`command_channel.py`) writes through it without waiting for each reply."""

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health=check_health)
        loads = [("SCRIPT", "LOAD", source(name)) for name in NAMES]
        await self.send_packed_command(self.pack_commands(loads), check_health=False)
        for _ in loads:
            await self.read_response()

    def write_now(self, packed: list[bytes]) -> None:
        """Writes packed commands at once, in call order (the command channel's writes)."""
        self._writer.writelines(packed)

    async def drained(self) -> None:
        """Returns once the socket takes more writes (flow control)."""
        await self._writer.drain()

    def pack_command(self, *args: Any) -> list[bytes]:
        if hiredis is None:
            return super().pack_command(*args)
        # As redis-py does: a command name like "CONFIG GET" is sent as two arguments.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis refuses: let redis-py say what is wrong
            return super().pack_command(*args)


class _TcpConnection(GarageConnection, Connection):
    pass


class _TlsConnection(GarageConnection, SSLConnection):
    pass


class _UnixConnection(GarageConnection, UnixDomainSocketConnection):
    pass


_BY_SCHEME: dict[str, type[AbstractConnection]] = {
    "redis": _TcpConnection,
    "rediss": _TlsConnection,
    "unix": _UnixConnection,
}


def connection_class(url: str) -> type[AbstractConnection] | None:
    """The connection class for a Redis URL, or None for a scheme redis-py alone knows."""
    return _BY_SCHEME.get(urlsplit(url).scheme)


def connection_pool(url: str, **options: Any) -> BlockingConnectionPool:
    """redis-py's blocking pool for `url`, on these connections. `from_url` sets its own
    class for unix:// and rediss:// URLs over the one it is given, so it is set after."""
    pool = BlockingConnectionPool.from_url(url, **options)
    if (connection := connection_class(url)) is not None:
        pool.connection_class = connection
    return pool
