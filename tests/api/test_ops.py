"""Probes and the OpenAPI document."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

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
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    batch = (("lane", "batch"), ("model", "m"))
    interactive = (("lane", "interactive"), ("model", "m"))
    assert samples["garage_queue_depth", (("lane", "batch"), ("model", "m"))] == 2
    assert samples["garage_queue_oldest_age_seconds", batch] >= 0
    assert samples["garage_jobs_running", ()] == 0
    assert samples["garage_workers_live", (("health", "ok"),)] == 1
    assert samples["garage_jobs_submitted_total", batch] == 2
    succeeded = (*interactive, ("status", "succeeded"))
    assert samples["garage_jobs_finished_total", succeeded] == 1
    assert samples["garage_job_duration_seconds_count", succeeded] == 1
    assert samples["garage_job_queue_wait_seconds_count", interactive] == 1
    assert samples["garage_fenced_reports_total", ()] == 1


async def test_dashboard_page(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>garage fleet</title>" in page.text and "/v1/workers" in page.text
