"""Probes for orchestrators (liveness, readiness), Prometheus metrics, and the fleet
dashboard page at `/` (static HTML that reads `/v1/workers` with the key you give it)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from garage.contract import Role

from ..deps import BrokerDep, Caller

__all__ = ["router"]

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(broker: BrokerDep) -> JSONResponse:
    """Redis answers and this process's pub/sub subscription is live."""
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


@router.get("/metrics", response_class=Response)
async def metrics(broker: BrokerDep, caller: Caller) -> Response:
    """Prometheus text exposition: this process's counters and the store-wide gauges.
    Needs an admin key (Prometheus: `authorization: {credentials: <key>}`), since model
    names and load are nobody else's business on a broker open to the internet."""
    caller.require(Role.admin)
    body = await broker.metrics.render(broker.store, len(broker.notifier.polls))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    """The fleet dashboard: workers, their health and GPUs, and the models served."""
    page = resources.files("garage.broker").joinpath("static/dashboard.html")
    return HTMLResponse(page.read_text(encoding="utf-8"))
