"""Probes for orchestrators (liveness, readiness) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from garage.client.schemas import Role

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
