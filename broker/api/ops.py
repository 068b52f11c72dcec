"""Probes for orchestrators (liveness, readiness), Prometheus metrics, the fleet page at
`/` (static HTML that reads `/v1/workers`, `/v1/queues` and `/v1/jobs` with the key you
give it), and the OpenAPI document."""

from __future__ import annotations

from importlib import resources

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import HTMLResponse, JSONResponse, Response

from garage.contract import Role

from ..routing import Call, Endpoint

__all__ = ["endpoints"]


async def healthz(call: Call[None, None]) -> Response:
    """The process is up."""
    return JSONResponse({"status": "ok"})


async def readyz(call: Call[None, None]) -> Response:
    """Redis answers and this process's pub/sub subscription is live."""
    broker = call.broker
    try:
        redis_ok = await broker.store.ping()
    except Exception:  # any Redis failure means not ready; the probe must answer anyway
        redis_ok = False
    ready = redis_ok and broker.notifier.connected
    body = {
        "status": "ready" if ready else "not ready",
        "store": broker.store.kind,
        "redis": redis_ok,
        "pubsub": broker.notifier.connected,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(call: Call[None, None]) -> Response:
    """Prometheus text exposition: this process's counters and the store-wide gauges.
    Needs an admin key (Prometheus: `authorization: {credentials: <key>}`), since model
    names and load are nobody else's business on a broker open to the internet."""
    broker = call.broker
    body = await broker.metrics.render(broker.store, len(broker.notifier.polls))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def dashboard(call: Call[None, None]) -> Response:
    """The fleet page: static HTML with its script inline, no build step and nothing
    fetched from elsewhere. It asks for a user or admin key (kept in the tab's
    sessionStorage, sent only to this broker as a bearer token) and reads `/v1/workers`,
    `/v1/queues` and `/v1/jobs?limit=20` every 2 s while the tab is visible: each worker's
    health and why, its GPUs as bars with the worker's thresholds marked, the queues and
    the recent jobs with their timings. Tested in Chromium by tests/browser/."""
    page = resources.files("garage.broker").joinpath("static/dashboard.html")
    return HTMLResponse(page.read_text(encoding="utf-8"))


_TAGS = ("ops",)
endpoints = [
    Endpoint("GET", "/healthz", healthz, "Liveness", _TAGS, None),
    Endpoint("GET", "/readyz", readyz, "Readiness: Redis and pub/sub", _TAGS, None),
    Endpoint("GET", "/metrics", metrics, "Prometheus metrics", _TAGS, Role.admin,
             media_type=CONTENT_TYPE_LATEST),
    Endpoint("GET", "/", dashboard, "The fleet dashboard", _TAGS, None, media_type="text/html",
             documented=False),
]  # fmt: skip
