"""The fleet page at `/` in headless Chromium, against a running network: a broker
subprocess, two worker daemons on fake GPUs, a worker whose name is markup, finished jobs
and a job no worker serves. The page must show all of it, turn a GPU's bar red within
seconds of the GPU heating up, without a reload, and say so when a key is refused or the
broker stops answering.

GARAGE_SCREENSHOT=docs/fleet-page.png writes the page's screenshot there as well.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from garage.client import AsyncClient, WorkerAPI
from garage.contract import WorkerState
from garage.worker.gpu import GpuThresholds
from tests.e2e.conftest import ADMIN_KEY, make_key
from tests.fakes.nvml import GIB, FakeGpu

from .conftest import StartRig, browser_api, wait_listed

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Request

expect = browser_api().expect
pytestmark = pytest.mark.timeout(60)

MARKUP_NAME = '<img src=x onerror="window.injected=1">'
UNSERVED_MODEL = "nobody-serves-this"
RED = "rgb(211, 47, 47)"  # --critical in dashboard.html
POLL_MS = 2000  # how often the page reads the broker

ALPHA_GPUS = [
    FakeGpu(
        name="NVIDIA GeForce RTX 4090",
        uuid="GPU-a1a1a1a1-0000-4000-8000-000000000001",
        memory_used_b=9 * GIB,
        memory_total_b=24 * GIB,
        utilization_pct=38,
        temperature_c=64,
        power_mw=212_000,
        power_limit_mw=450_000,
    ),
    FakeGpu(
        name="NVIDIA GeForce RTX 4090",
        uuid="GPU-a1a1a1a1-0000-4000-8000-000000000002",
        memory_used_b=int(22.5 * GIB),  # 94 %: over the rig's 90 % warning
        memory_total_b=24 * GIB,
        utilization_pct=97,
        temperature_c=86,  # over the 85 °C warning
        power_mw=447_000,
        power_limit_mw=450_000,
        reasons=0x4,  # sw_power_cap
    ),
]
BETA_GPU = FakeGpu(
    uuid="GPU-b2b2b2b2-0000-4000-8000-000000000001",
    memory_used_b=18 * GIB,
    utilization_pct=12,
    temperature_c=51,
)
# uuid -> metric -> the level its bar must show before anything heats up
EXPECTED_LEVELS = {
    ALPHA_GPUS[0].uuid: {"temperature": "ok", "memory": "ok", "utilization": "ok"},
    ALPHA_GPUS[1].uuid: {"temperature": "warn", "memory": "warn", "utilization": "ok"},
    BETA_GPU.uuid: {"temperature": "ok", "memory": "ok", "utilization": "ok"},
}


def gpu_bar(page: Page, uuid: str, metric: str) -> Locator:
    return page.locator(f'[data-gpu-uuid="{uuid}"][data-metric="{metric}"]')


async def enter_key(page: Page, key: str) -> None:
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Show fleet").click()


async def register_markup_named_worker(broker_url: str) -> str:
    """A worker entry whose name is markup, sent as a heartbeat: the daemon builds its id
    from its name, and an id must not hold such characters."""
    api = WorkerAPI(broker_url, make_key(broker_url, "worker", "markup"))
    try:
        state = WorkerState(
            worker_id="rig-gamma-1", name=MARKUP_NAME, models=["phi3:mini"], slots_free=1
        )
        await api.heartbeat(state)
    finally:
        await api.aclose()
    return state.worker_id


async def run_jobs(broker_url: str) -> tuple[list[str], str]:
    """Three finished jobs and one left queued for a model no worker serves."""
    async with AsyncClient(broker_url, make_key(broker_url, "user", "alice")) as client:
        finished = [
            (await client.run(model, prompt, timeout_s=30)).id
            for model, prompt in [
                ("llama3.1:8b", "What is NAT?"),
                ("llama3.1:8b", "Why pull work?"),
                ("qwen2.5:7b", "Hello!"),
            ]
        ]
        queued = await client.submit(UNSERVED_MODEL, "Anyone?", wait_for_worker=True)
    return finished, queued.id


def save_screenshot(png: bytes, tmp_path: Path) -> None:
    shot = tmp_path / "fleet-page.png"
    shot.write_bytes(png)
    if target := os.environ.get("GARAGE_SCREENSHOT"):
        shutil.copyfile(shot, target)


async def check_workers_and_gpus(page: Page, worker_ids: set[str]) -> None:
    cards = page.locator("article.worker")
    await expect(cards).to_have_count(3, timeout=10_000)
    ids = {await card.get_attribute("data-worker-id") for card in await cards.all()}
    assert ids == worker_ids
    names = await page.locator("article.worker h3").all_text_contents()
    assert sorted(names) == sorted(["rig-alpha", "rig-beta", MARKUP_NAME])
    for uuid, levels in EXPECTED_LEVELS.items():
        for metric, level in levels.items():
            await expect(gpu_bar(page, uuid, metric)).to_have_attribute("data-level", level)
    await expect(gpu_bar(page, ALPHA_GPUS[1].uuid, "temperature")).to_have_attribute(
        "aria-label", re.compile(r"86 °C; warn at 85 °C, critical at 90 °C")
    )
    await expect(gpu_bar(page, ALPHA_GPUS[1].uuid, "memory")).to_have_attribute(
        "aria-label", re.compile(r"22\.5 GiB / 24 GiB · 94 %; warn at 90 %, critical at 97 %")
    )
    alpha = cards.filter(has_text="rig-alpha")
    await expect(alpha.locator(".badge.health")).to_have_text("warn")
    await expect(alpha.locator(".reasons")).to_contain_text("86")


async def check_markup_stays_text(page: Page) -> None:
    assert await page.locator("main img").count() == 0
    assert await page.evaluate("window.injected") is None


async def check_queue_and_jobs(page: Page, finished: list[str], queued: str) -> None:
    queue = page.locator(f'#queues tr[data-model="{UNSERVED_MODEL}"]')
    await expect(queue).to_have_count(1)
    await expect(queue.locator("td")).to_have_text(
        [UNSERVED_MODEL, "interactive", "1", re.compile(r"^\d+ s$")]
    )
    for job_id in finished:
        row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
        await expect(row).to_contain_text("succeeded")
        await expect(row.locator("td").last).to_have_text(re.compile(r"^\d+ ms$|^[\d.]+ s$"))
    queued_row = page.locator(f'#jobs tr[data-job-id="{queued}"]')
    await expect(queued_row).to_contain_text("queued")
    await expect(queued_row.locator("td").last).to_have_text("n/a")


async def test_the_fleet_page_shows_workers_gpus_queues_and_jobs_and_follows_a_hot_gpu(
    start_broker, start_rig: StartRig, redis_url: str, redis, page: Page, tmp_path: Path
) -> None:
    broker = start_broker("--redis-url", redis_url)
    alpha = await start_rig(
        broker.url,
        "rig-alpha",
        ["llama3.1:8b"],
        ALPHA_GPUS,
        GpuThresholds(memory_warn_pct=90),
    )
    beta = await start_rig(broker.url, "rig-beta", ["qwen2.5:7b"], [BETA_GPU])
    markup_id = await register_markup_named_worker(broker.url)
    await wait_listed(broker.url, {"rig-alpha", "rig-beta"})
    finished, queued = await run_jobs(broker.url)

    await page.goto(broker.url)
    await expect(page.locator("#status")).to_have_attribute("data-state", "idle")
    await enter_key(page, ADMIN_KEY)
    await expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    await check_workers_and_gpus(page, {alpha.worker.worker_id, beta.worker.worker_id, markup_id})
    await check_markup_stays_text(page)
    await check_queue_and_jobs(page, finished, queued)

    beta.nvml.gpus[0].temperature_c = 95  # the worker turns critical and heartbeats
    heated_at = time.monotonic()
    hot = gpu_bar(page, BETA_GPU.uuid, "temperature")
    await expect(hot).to_have_attribute("data-level", "critical", timeout=5_000)
    assert time.monotonic() - heated_at < 5
    fill = hot.locator(".fill")
    assert await fill.evaluate("e => getComputedStyle(e).backgroundColor") == RED
    beta_card = page.locator(f'article.worker[data-worker-id="{beta.worker.worker_id}"]')
    await expect(beta_card.locator(".badge.health")).to_have_text("critical")
    await expect(beta_card.locator(".reasons")).to_contain_text("95")
    await check_markup_stays_text(page)

    save_screenshot(await page.screenshot(full_page=True), tmp_path)


async def test_the_fleet_page_says_when_a_key_is_refused_or_the_broker_is_gone(
    start_broker, redis_url: str, redis, page: Page
) -> None:
    broker = start_broker("--redis-url", redis_url)
    status = page.locator("#status")
    await page.goto(broker.url)

    await enter_key(page, "not-a-key")
    await expect(status).to_have_attribute("data-state", "refused")
    await expect(status).to_contain_text("401")

    await enter_key(page, make_key(broker.url, "worker", "rig"))
    await expect(status).to_have_attribute("data-state", "forbidden")
    await expect(status).to_contain_text("403")

    await enter_key(page, make_key(broker.url, "user", "alice"))
    await expect(status).to_have_attribute("data-state", "ok")
    await expect(page.locator("#workers")).to_contain_text("No live workers.")

    broker.stop()
    await expect(status).to_have_attribute("data-state", "unreachable", timeout=5_000)
    await expect(status).to_contain_text("does not answer")


def is_fleet_read(request: Request) -> bool:
    return request.url.endswith("/v1/workers")


async def set_visibility(page: Page, state: str) -> None:
    """What the browser does when the tab is hidden or shown again."""
    await page.evaluate(
        """state => {
          Object.defineProperty(document, "visibilityState", { value: state, configurable: true });
          document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


async def test_the_fleet_page_polls_every_2_s_only_while_the_tab_is_visible(
    start_broker, redis_url: str, redis, page: Page
) -> None:
    broker = start_broker("--redis-url", redis_url)
    reads: list[str] = []

    def count_read(request: Request) -> None:
        if is_fleet_read(request):
            reads.append(request.url)

    page.on("request", count_read)
    await page.clock.install()  # the page's timers run when the test moves this clock
    key = make_key(broker.url, "user", "alice")
    await page.goto(f"{broker.url}/#key={key}")  # the link `garage up` prints
    await expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    assert page.url == f"{broker.url}/", "the key stays in the address bar"
    assert len(reads) == 1

    async with page.expect_request(is_fleet_read):
        await page.clock.run_for(POLL_MS)
    assert len(reads) == 2

    await set_visibility(page, "hidden")
    await page.clock.run_for(30 * POLL_MS)
    async with page.expect_request(is_fleet_read):
        await set_visibility(page, "visible")  # reads at once, without waiting for a tick
    assert len(reads) == 3, "the page read the broker while its tab was hidden"
