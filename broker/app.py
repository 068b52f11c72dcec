"""Assembles the broker: its runtime parts, every endpoint, and the background loops.

One Starlette `Router` is the ASGI app: each route is declared as an `Endpoint` in `api/`
and answered through `routing.py`, which handles every error itself; `openapi.py`
documents the same declarations. One middleware stands in front of the router:
`BodyTimeout` (`slow_clients.py`), which answers 408 to a request body that stops coming.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.datastructures import State
from starlette.responses import JSONResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .api import admin, batches, contributions, files, jobs, models, openai, ops, usage, workers
from .auth import Authenticator
from .clock import Clock, system_clock
from .errors import not_found
from .finalizer import run_finalizer
from .jobs import JobService, LeaseService, Notifier
from .metrics import Metrics
from .openapi import document
from .reaper import run_reaper
from .routing import Call, Endpoint, routes
from .runtime import Broker
from .settings import BrokerSettings
from .slow_clients import BodyTimeout
from .store import Store

__all__ = ["BrokerApp", "build_app"]

_SUMMARY = "Pull-based job network for LLM work on GPUs behind NAT."


class BrokerApp:
    """The ASGI app: the router behind its middleware, and `state.broker` (the runtime
    parts) for tests to reach."""

    def __init__(self, router: Router, broker: Broker, *, body_timeout_s: float) -> None:
        self.router = router
        self.state = State({"broker": broker})
        self._app: ASGIApp = BodyTimeout(router, timeout_s=body_timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def build_app(settings: BrokerSettings, *, store: Store, clock: Clock = system_clock) -> BrokerApp:
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    auth = Authenticator(store.apikeys, admin_key=admin_key, cache_s=settings.key_cache_s)
    notifier = Notifier(store, on_revoked=auth.forget)
    metrics = Metrics(clock)
    store.capacity.full_at = settings.store_full_at
    store.fleet.max_per_key = settings.max_workers_per_key
    broker = Broker(
        settings=settings,
        store=store,
        clock=clock,
        auth=auth,
        metrics=metrics,
        notifier=notifier,
        jobs=JobService(settings, store, notifier, clock),
        leases=LeaseService(settings, store, notifier),
    )
    # The routes every job crosses come first: Starlette tries them in order.
    endpoints: list[Endpoint] = [
        *workers.endpoints,
        *jobs.endpoints,
        *openai.endpoints,
        *batches.endpoints,
        *files.endpoints,
        *models.endpoints,
        *usage.endpoints,
        *contributions.endpoints,
        *admin.endpoints,
        *ops.endpoints,
    ]
    spec = document(endpoints, title="garage broker", version=__version__, summary=_SUMMARY)

    async def openapi(call: Call[None, None]) -> Response:
        return JSONResponse(spec)

    endpoints.append(
        Endpoint("GET", "/openapi.json", openapi, "This document", ("ops",), None, documented=False)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(notifier.run()),
                tasks.create_task(run_reaper(store, interval_s=settings.reap_interval_s)),
                tasks.create_task(run_finalizer(store, interval_s=settings.finalize_interval_s)),
                tasks.create_task(store.capacity.watch()),
            ]
            yield
            for task in background:
                task.cancel()

    router = Router(
        routes(endpoints, broker), redirect_slashes=False, default=not_found, lifespan=lifespan
    )
    return BrokerApp(router, broker, body_timeout_s=settings.body_timeout_s)
