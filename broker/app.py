"""Assembles the broker: routes, middleware, error handlers and background tasks.

`BrokerApp` is FastAPI with one difference: the routes every job crosses (submit, poll,
lease reports; see `plain_routes.py`) are answered before FastAPI's middleware stack.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from garage.contract import MAX_BATCH_FILE_BYTES, ErrorBody

from . import __version__
from .api import admin, batches, files, inference, jobs, models, ops, workers
from .auth import Authenticator
from .clock import Clock, system_clock
from .deps import Broker
from .errors import install_error_handlers
from .finalizer import run_finalizer
from .metrics import Metrics
from .middleware.body_limit import BodyLimitMiddleware
from .notify import Notifier
from .plain_routes import PlainRouter, document
from .reaper import run_reaper
from .settings import BrokerSettings
from .store import Store

__all__ = ["BrokerApp", "build_app"]

_ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 503)}


class BrokerApp(FastAPI):
    def __init__(self, plain: PlainRouter, **options: Any) -> None:
        super().__init__(**options)
        self.plain = plain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            matched = self.plain.match(scope["method"], scope["path"])
            if matched is not None:
                response = await self.plain.answer(*matched, scope, receive)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = document(super().openapi(), self.plain.routes)
        return self.openapi_schema


def build_app(settings: BrokerSettings, *, store: Store, clock: Clock = system_clock) -> BrokerApp:
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    broker = Broker(
        settings=settings,
        store=store,
        clock=clock,
        notifier=Notifier(store),
        auth=Authenticator(store.apikeys, admin_key=admin_key, cache_s=settings.key_cache_s),
        metrics=Metrics(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(broker.notifier.run()),
                tasks.create_task(run_reaper(store, interval_s=settings.reap_interval_s)),
                tasks.create_task(run_finalizer(store, interval_s=settings.finalize_interval_s)),
            ]
            yield
            for task in background:
                task.cancel()

    plain = PlainRouter(
        broker, [*jobs.plain_routes, *workers.plain_routes], max_body_bytes=settings.max_body_bytes
    )
    app = BrokerApp(
        plain,
        title="garage broker",
        version=__version__,
        summary="Pull-based job network for LLM work on GPUs behind NAT.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.broker = broker
    install_error_handlers(app)
    for module in (inference, jobs, workers, models, files, batches, admin, ops):
        app.include_router(module.router)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # a batch input file may be far larger than any request (plus the multipart framing)
        overrides={"/v1/files": MAX_BATCH_FILE_BYTES + 1024 * 1024},
    )
    return app
