"""Probes and the OpenAPI document."""

from __future__ import annotations

import httpx


async def test_probes(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["redis"] is True


async def test_openapi_lists_every_endpoint(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/events",
        "/v1/worker/poll",
        "/v1/worker/jobs/{job_id}/report",
        "/v1/worker/jobs/{job_id}/complete",
        "/v1/worker/jobs/{job_id}/fail",
        "/v1/workers",
        "/v1/admin/keys",
        "/healthz",
        "/readyz",
    } <= paths
