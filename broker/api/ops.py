"""Probes for orchestrators: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import BrokerDep

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
