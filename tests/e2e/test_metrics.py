"""`/metrics` of a running network: two broker processes on one Redis, a worker daemon with
a fake GPU and a fake Ollama, jobs through the public client. The exposition is parsed
with prometheus-client's own parser; both replicas must report the same fleet-wide values.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from garage.broker.metrics import FAMILIES
from garage.client import AsyncClient, JobCancelled, WorkerAPI
from garage.worker.backends import make_backend
from garage.worker.daemon import Worker
from garage.worker.gpu import NvmlProbe
from garage.worker.settings import WorkerSettings
from tests.fakes import FakeConfig, FakeServer, FakeState
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.fakes.ollama import build_app

from ..support import eventually
from .conftest import ADMIN_KEY, make_key

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    reply = await http.get(f"{url}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert reply.status_code == 200, reply.text
    return parse(reply.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def fleet_wide(samples: Samples) -> Samples:
    """Everything but this process's own gauge and the ages, which tick between scrapes."""
    skip = ("garage_broker_polls_parked", "garage_queue_oldest_age_seconds")
    return {k: v for k, v in samples.items() if k[0] not in skip}


@pytest.fixture
async def network(start_broker, redis_url: str, redis) -> AsyncIterator[tuple]:
    a = start_broker("--redis-url", redis_url, name="a")
    b = start_broker("--redis-url", redis_url, name="b")
    nvml = FakeNvml([FakeGpu(temperature_c=60, utilization_pct=40)])
    state = FakeState(FakeConfig(models=["m"]))
    with FakeServer(build_app(state)) as backend:
        settings = WorkerSettings(
            broker=a.url,
            token=make_key(a.url, "worker", "rig"),
            backend="ollama",
            backend_url=backend.url,
            name="rig",
            slots=2,
            health_interval_s=0.1,
            poll_wait_s=25,  # parked long: a GPU change must arrive by heartbeat
        )
        api = WorkerAPI(a.url, settings.token.get_secret_value())
        backend_http = httpx.AsyncClient(timeout=30)
        rig = make_backend("ollama", backend.url, backend_http)
        worker = Worker(settings, api=api, backend=rig, gpu=NvmlProbe(nvml))
        running = asyncio.create_task(worker.run())
        try:
            yield a, b, nvml
        finally:
            worker.request_stop()
            await asyncio.wait_for(running, 30)
            await api.aclose()
            await backend_http.aclose()


async def test_series_move_as_jobs_run_and_a_gpu_heats_up_alike_on_both_replicas(
    network,
) -> None:
    a, b, nvml = network
    user = make_key(a.url, "user", "alice")
    async with httpx.AsyncClient(timeout=30) as http, AsyncClient(b.url, user) as client:

        async def gpu_listed() -> bool:
            return value(await scrape(http, a.url), "garage_gpu_temperature_celsius") == 60

        await eventually(gpu_listed, timeout_s=10, what="the worker's GPU in /metrics")
        reply = await http.get(f"{a.url}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        exposed = {family.name for family in text_string_to_metric_families(reply.text)}
        assert exposed == set(FAMILIES)
        before = parse(reply.text)
        assert value(before, "garage_model_workers", model="m") == 1
        assert value(before, "garage_model_slots_total", model="m") == 2
        assert value(before, "garage_gpu_memory_total_bytes") == 80 * 1024**3
        assert value(before, "garage_gpu_utilization_ratio") == pytest.approx(0.4)
        assert value(before, "garage_worker_health", state="ok") == 1

        for prompt in ("one two three", "four five", "six"):
            await client.run("m", prompt, timeout_s=30)
        queued = await client.submit("nobody-serves-this", "hi", wait_for_worker=True)
        await queued.cancel()
        with pytest.raises(JobCancelled):
            await client.wait(queued.id, timeout_s=10)

        after = await scrape(http, b.url)
        finished = value(after, "garage_jobs_finished_total", model="m", status="succeeded")
        assert finished - value(before, "garage_jobs_finished_total", status="succeeded") == 3
        assert value(after, "garage_jobs_submitted_total", model="m", lane="interactive") >= 3
        assert value(after, "garage_cancellations_total", state="queued") >= 1
        # the fake's reply is "echo: " + the prompt, a token a word; prompt tokens are words
        assert value(after, "garage_completion_tokens_total", model="m") == 4 + 3 + 2
        assert value(after, "garage_prompt_tokens_total", model="m") == 3 + 2 + 1
        for histogram in ("garage_job_queue_wait_seconds", "garage_job_duration_seconds"):
            assert value(after, f"{histogram}_count", model="m") == 3
            assert value(after, f"{histogram}_bucket", model="m", le="+Inf") == 3
        assert value(after, "garage_job_first_token_seconds_count", model="m") == 3
        assert value(after, "garage_job_tokens_per_second_count", model="m") == 3

        nvml.gpus[0].temperature_c = 95  # the worker turns critical and sends a heartbeat

        async def hot_on_both() -> bool:
            seen = [await scrape(http, url) for url in (a.url, b.url)]
            return all(
                value(s, "garage_gpu_temperature_celsius") == 95
                and value(s, "garage_worker_health", state="critical") == 1
                for s in seen
            )

        await eventually(hot_on_both, timeout_s=5, what="the hot GPU in both brokers' metrics")
        assert value(await scrape(http, a.url), "garage_model_workers", model="m") == 0

        # Nothing moves now (the rig is critical, no job runs): both replicas agree.
        first, second = await scrape(http, a.url), await scrape(http, b.url)
        assert fleet_wide(first) == fleet_wide(second)
        assert value(first, "garage_gpu_temperature_critical_celsius") == 90
