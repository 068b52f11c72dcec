"""Redis behind Sentinel: `redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db]`.

The broker asks the sentinels for the current primary of `master` whenever it opens a
connection, through redis-py's own Sentinel support: its connection pool re-resolves the
primary and drops connections to a demoted one, and the script channel resolves it
before each connect. So after a failover the broker's next connection goes to the new
primary; a call in flight on the old one fails (503, and workers and clients retry).
The password (and user) are the primary's; sentinels are asked without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

__all__ = ["SCHEME", "SentinelTarget", "is_sentinel_url"]

SCHEME = "redis+sentinel"


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME + "://")


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that waits for a free connection past its limit, as the broker's
    plain pool does, instead of failing the request."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        parts = urlsplit(url)
        if parts.scheme != SCHEME:
            raise ValueError(f"not a {SCHEME}:// URL: {url!r}")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username = password = None
        if userinfo:
            user, _, secret = userinfo.partition(":")
            username, password = unquote(user) or None, unquote(secret) or None
        sentinels = tuple(_host_port(host) for host in hosts.split(",") if host)
        path = [p for p in parts.path.split("/") if p]
        if not sentinels or not path or len(path) > 2:
            raise ValueError(
                f"a Sentinel URL is {SCHEME}://[:password@]host:port[,host:port]/master[/db]"
                f", not {url!r}"
            )
        db = int(path[1]) if len(path) == 2 else 0
        return cls(sentinels, unquote(path[0]), db, username, password)

    def sentinel(self) -> Sentinel:
        return Sentinel(list(self.sentinels), socket_timeout=5)

    def client(self, sentinel: Sentinel, *, max_connections: int) -> Any:
        """A redis-py client on the current primary, following it through failovers."""
        return sentinel.master_for(
            self.master,
            connection_pool_class=_BlockingSentinelPool,
            db=self.db,
            username=self.username,
            password=self.password,
            decode_responses=True,
            max_connections=max_connections,
            timeout=30,
        )

    def primary_url(self, host: str, port: int) -> str:
        """A `redis://` URL of the primary at host:port, with this target's password and
        database."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return f"redis://{auth}{host}:{port}/{self.db}"


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a sentinel is host:port, not {text!r}")
    return host, int(port)
