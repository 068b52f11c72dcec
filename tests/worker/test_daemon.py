"""The worker daemon in-process, with a fake NVML and a fake backend injected, against the
session's broker: GPU health gating pulls, and a fallback worker waiting its turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from garage.client import WorkerAPI
from garage.worker.backends import make_backend
from garage.worker.daemon import Worker
from garage.worker.gpu import NvmlProbe
from garage.worker.settings import WorkerSettings
from tests.fakes import FakeConfig, FakeServer, FakeState
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.fakes.ollama import build_app

from ..conftest import ADMIN_KEY, LiveBroker
from ..support import eventually

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {
    "model": "m",
    "request": {"messages": [{"role": "user", "content": "hi"}]},
    "wait_for_worker": True,
}


@pytest.fixture
def backend_url(request: pytest.FixtureRequest) -> Iterator[str]:
    models = getattr(request, "param", ["m"])  # a test may name the backend's models
    with FakeServer(build_app(FakeState(FakeConfig(models=models)))) as server:
        yield server.url


@pytest.fixture
async def http(live_broker: LiveBroker, redis) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_broker.url, headers=ADMIN, timeout=30) as client:
        yield client


@pytest.fixture
async def run_worker(
    live_broker: LiveBroker, http: httpx.AsyncClient, backend_url: str
) -> AsyncIterator[Callable[..., Worker]]:
    running: list[tuple[Worker, asyncio.Task[None], httpx.AsyncClient, WorkerAPI]] = []

    async def start(name: str, *, gpu: NvmlProbe | None = None, **options) -> Worker:
        key = (await http.post("/v1/admin/keys", json={"role": "worker", "name": name})).json()
        settings = WorkerSettings(
            broker=live_broker.url,
            token=key["key"],
            backend="ollama",
            backend_url=backend_url,
            name=name,
            health_interval_s=0.1,
            poll_wait_s=2,
            **options,
        )
        backend_http = httpx.AsyncClient(timeout=30)
        api = WorkerAPI(live_broker.url, key["key"])
        worker = Worker(
            settings, api=api, backend=make_backend("ollama", backend_url, backend_http), gpu=gpu
        )
        running.append((worker, asyncio.create_task(worker.run()), backend_http, api))
        return worker

    yield start
    for worker, task, backend_http, api in running:
        worker.request_stop()
        worker.request_stop()
        await asyncio.wait_for(task, 20)
        await backend_http.aclose()
        await api.aclose()


async def status(http: httpx.AsyncClient, job_id: str, wait_s: float = 0) -> str:
    reply = await http.get(f"/v1/jobs/{job_id}", params={"wait_s": wait_s})
    return reply.json()["status"]


async def test_critical_gpu_temperature_stops_pulls_until_it_cools(
    http: httpx.AsyncClient, run_worker
) -> None:
    nvml = FakeNvml([FakeGpu(temperature_c=95)])
    await run_worker("hot-rig", gpu=NvmlProbe(nvml))

    async def reported_critical():
        fleet = (await http.get("/v1/workers")).json()["data"]
        return fleet and fleet[0]["health"]["state"] == "critical" and fleet[0]["gpus"]

    await eventually(reported_critical, what="the rig to report itself critical")
    [rig] = (await http.get("/v1/workers")).json()["data"]
    assert "95" in rig["health"]["reasons"][0] and rig["gpus"][0]["temperature_c"] == 95
    job_id = (await http.post("/v1/jobs", json=CHAT)).json()["id"]
    assert await status(http, job_id, wait_s=1.0) == "queued"  # a hot rig pulls nothing

    nvml.gpus[0].temperature_c = 60
    assert await status(http, job_id, wait_s=10) == "succeeded"


async def test_warm_gpu_only_warns_and_keeps_pulling(http: httpx.AsyncClient, run_worker) -> None:
    await run_worker("warm-rig", gpu=NvmlProbe(FakeNvml([FakeGpu(temperature_c=86)])))

    async def reported_warn():
        fleet = (await http.get("/v1/workers")).json()["data"]
        return fleet and fleet[0]["health"]["state"] == "warn"

    await eventually(reported_warn, what="a warning in the fleet view")
    job_id = (await http.post("/v1/jobs", json=CHAT)).json()["id"]
    assert await status(http, job_id, wait_s=10) == "succeeded"


async def test_fallback_worker_takes_only_jobs_that_waited(
    http: httpx.AsyncClient, run_worker, live_broker: LiveBroker
) -> None:
    fallback = await run_worker("cloud", fallback_after_s=30)
    job_id = (await http.post("/v1/jobs", json=CHAT)).json()["id"]
    assert await status(http, job_id, wait_s=1.5) == "queued"  # too fresh for the fallback
    live_broker.clock.advance(31)
    assert await status(http, job_id, wait_s=10) == "succeeded"
    done = (await http.get(f"/v1/jobs/{job_id}")).json()
    assert done["worker"] == fallback.worker_id

    local = await run_worker("garage-rig")

    async def local_listed():
        return len((await http.get("/v1/workers")).json()["data"]) == 2

    await eventually(local_listed, what="the local rig to poll")
    fresh = (await http.post("/v1/jobs", json=CHAT)).json()["id"]
    assert await status(http, fresh, wait_s=10) == "succeeded"
    assert (await http.get(f"/v1/jobs/{fresh}")).json()["worker"] == local.worker_id


@pytest.mark.parametrize("backend_url", [["x" * 300, "m"]], indirect=True)
async def test_a_model_name_no_poll_may_carry_is_left_out(
    http: httpx.AsyncClient, run_worker
) -> None:
    worker = await run_worker("rig-long-names")

    async def serving() -> bool:
        fleet = (await http.get("/v1/workers")).json()["data"]
        return bool(fleet) and fleet[0]["models"] == ["m"]

    await eventually(serving, what="the worker to poll with the names it may send")
    job = (await http.post("/v1/jobs", json=CHAT)).json()
    assert await status(http, job["id"], wait_s=10) == "succeeded"
    assert worker.models == ["m"]


async def test_a_name_with_spaces_and_markup_still_makes_a_valid_worker_id(
    http: httpx.AsyncClient, run_worker
) -> None:
    worker = await run_worker("rig 1 <b>")
    assert worker.worker_id.startswith("rig-1--b--")

    async def listed():
        fleet = (await http.get("/v1/workers")).json()["data"]
        return [w for w in fleet if w["worker_id"] == worker.worker_id]

    [entry] = await eventually(listed, what="the worker in the fleet view")
    assert entry["name"] == "rig 1 <b>"
