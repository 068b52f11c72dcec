"""Probes and the OpenAPI document."""

from __future__ import annotations

import httpx

from .conftest import ADMIN, CHAT, poll_body


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


async def test_metrics_count_and_gauge(http: httpx.AsyncClient, user, worker) -> None:
    assert (await http.get("/metrics", headers=user)).status_code == 403
    for lane in ("interactive", "batch", "batch"):
        await http.post("/v1/jobs", json={**CHAT, "lane": lane}, headers=user)
    [lease] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()[
        "leases"
    ]
    await http.post(
        f"/v1/worker/jobs/{lease['job_id']}/complete",
        json={"lease_token": lease["lease_token"], "result": {}},
        headers=worker,
    )
    await http.post(
        f"/v1/worker/jobs/{lease['job_id']}/report",
        json={"lease_token": "stale"},
        headers=worker,
    )
    text = (await http.get("/metrics", headers=ADMIN)).text
    assert 'garage_jobs_queued{lane="batch",model="m"} 2.0' in text
    assert "garage_jobs_running 0.0" in text
    assert 'garage_workers_live{health="ok"} 1.0' in text
    assert 'garage_job_reports_total{outcome="succeeded"}' in text
    assert "garage_stale_reports_total" in text
    assert 'garage_jobs_submitted_total{lane="batch",model="m"}' in text


async def test_dashboard_page(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>garage fleet</title>" in page.text and "/v1/workers" in page.text
