"""docs/notebook.md runs, cell by cell, as a notebook would run it: in one namespace,
inside a running event loop, against a live broker and a worker on the demo backend."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import Iterator

import httpx
import pytest

from garage.worker.backends import DemoBackend

from ..conftest import ADMIN_KEY, LiveBroker
from ..support import ROOT, WorkerThread

CELL = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.fixture
def demo_network(live_broker: LiveBroker, redis, monkeypatch) -> Iterator[None]:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def key(role: str) -> str:
        reply = httpx.post(
            f"{live_broker.url}/v1/admin/keys", json={"role": role, "name": role}, headers=admin
        )
        return reply.json()["key"]

    monkeypatch.setenv("GARAGE_URL", live_broker.url)
    monkeypatch.setenv("GARAGE_API_KEY", key("user"))
    backend = DemoBackend(tokens_per_s=400)
    with WorkerThread(live_broker.url, key("worker"), backend, admin_key=ADMIN_KEY, slots=8):
        yield


async def test_every_cell_runs(demo_network: None) -> None:
    asyncio.get_running_loop()  # a loop runs in this thread, as in Jupyter
    cells = CELL.findall((ROOT / "docs" / "notebook.md").read_text())
    assert len(cells) >= 6
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        for cell in cells:
            exec(compile(cell, "docs/notebook.md", "exec"), namespace)
    out = printed.getvalue()
    assert "['garage-demo']" in out
    assert "You said: Why do GPUs like batches?" in out
    assert "succeeded" in out and "What is a lease?" in out and "length" in out
    assert "0 ok  [garage demo backend, not a model] You said: one" in out
    assert "3 err input 3:" in out
    assert "no capacity: no live worker serves model 'a-model-nobody-serves'" in out
    assert "still running after 0.2 s; cancelling" in out and "cancelled" in out
