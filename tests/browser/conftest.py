"""A headless Chromium for the broker's pages, and the real network it looks at.

The browser is the system's Chromium (Debian's `chromium` package, or any Chrome on PATH)
driven by playwright-python: its Python package carries its own driver, so nothing is
downloaded at test time and `playwright install` is never needed. Without a browser (or
without playwright) these tests skip, unless GARAGE_REQUIRE_BROWSER=1 (CI sets it), in
which case they fail.

The network: `garage broker run` as a subprocess on the session's Redis (the e2e
fixtures), and worker daemons in this process, each on fake GPUs (`FakeNvml`) and its own
fake Ollama, so a test can heat a GPU up by setting its temperature.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

import httpx
import pytest

from garage.client import WorkerAPI
from garage.worker.backends import make_backend
from garage.worker.daemon import Worker
from garage.worker.gpu import GpuThresholds, NvmlProbe
from garage.worker.settings import WorkerSettings
from tests.e2e.conftest import ADMIN_HEADERS, Processes, make_key, processes, start_broker
from tests.fakes import FakeConfig, FakeServer, FakeState
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.fakes.ollama import build_app

from ..support import eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

__all__ = ["Rig", "browser", "page", "processes", "start_broker", "start_rig"]

_BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1280, "height": 900}


def _browser_missing(reason: str) -> NoReturn:
    if os.environ.get("GARAGE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GARAGE_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(f"{reason} (GARAGE_REQUIRE_BROWSER=1 fails instead)", allow_module_level=True)


def find_chromium() -> str:
    found = next(filter(None, map(shutil.which, _BROWSER_NAMES)), None)
    if found is None:
        _browser_missing(f"no Chromium on PATH (looked for {', '.join(_BROWSER_NAMES)})")
    return found


def browser_api() -> ModuleType:
    """`playwright.async_api`, once a Chromium is known to be there. A test module calls it
    as it loads, so that without a browser it skips (or fails, see above) before any
    fixture starts a broker."""
    find_chromium()
    try:
        return importlib.import_module("playwright.async_api")
    except ImportError:
        _browser_missing("playwright is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with browser_api().async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=find_chromium())
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab (its own sessionStorage) at 1280 px, in English and UTC; the test fails
    if the page's script throws."""
    context = await browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        await context.close()
    assert not errors, f"the page threw: {errors}"


@dataclass
class Rig:
    """A worker daemon running in this process, and the fake NVML it reads."""

    name: str
    worker: Worker
    nvml: FakeNvml


@asynccontextmanager
async def running_rig(
    broker_url: str,
    name: str,
    models: list[str],
    gpus: list[FakeGpu],
    thresholds: GpuThresholds,
) -> AsyncIterator[Rig]:
    nvml = FakeNvml(gpus)
    with FakeServer(build_app(FakeState(FakeConfig(models=models)))) as backend:
        settings = WorkerSettings(
            broker=broker_url,
            token=make_key(broker_url, "worker", name),
            backend="ollama",
            backend_url=backend.url,
            name=name,
            slots=2,
            health_interval_s=0.1,
            poll_wait_s=25,  # parked long: a health change must arrive by heartbeat
            gpu=thresholds,
        )
        api = WorkerAPI(broker_url, settings.token.get_secret_value())
        async with httpx.AsyncClient(timeout=30) as backend_http:
            worker = Worker(
                settings,
                api=api,
                backend=make_backend("ollama", backend.url, backend_http),
                gpu=NvmlProbe(nvml),
            )
            running = asyncio.create_task(worker.run())
            try:
                yield Rig(name, worker, nvml)
            finally:
                worker.request_stop()
                await asyncio.wait_for(running, 30)
                await api.aclose()


async def wait_listed(broker_url: str, names: set[str]) -> None:
    """Until the fleet view lists every worker named, with its models."""

    async def listed() -> bool:
        async with httpx.AsyncClient(timeout=5) as http:
            reply = await http.get(f"{broker_url}/v1/workers", headers=ADMIN_HEADERS)
        return names <= {w["name"] for w in reply.json()["data"] if w["models"]}

    await eventually(listed, timeout_s=10, what=f"workers {sorted(names)} in the fleet view")


StartRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def start_rig(processes: Processes) -> AsyncIterator[StartRig]:
    """Starts worker daemons on fake GPUs; each is drained and stopped when the test ends,
    before `processes` stops the broker they talk to."""
    async with AsyncExitStack() as stack:

        async def start(
            broker_url: str,
            name: str,
            models: list[str],
            gpus: list[FakeGpu],
            thresholds: GpuThresholds | None = None,
        ) -> Rig:
            rig = running_rig(broker_url, name, models, gpus, thresholds or GpuThresholds())
            return await stack.enter_async_context(rig)

        yield start
