"""A broker that stops with requests waiting ends them cleanly first: an event stream ends
(its client resumes elsewhere with Last-Event-ID), a parked worker poll answers with no
jobs, a long-poll on a job answers with the job as it is. Nothing is cut mid-answer or
logged as an error, and the process exits at once, not after uvicorn's grace period."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from .conftest import ADMIN_HEADERS, make_key


def test_stopping_ends_waiting_requests_cleanly(start_broker) -> None:
    broker = start_broker()
    worker = {"Authorization": f"Bearer {make_key(broker.url, 'worker', 'rig')}"}
    body = {"model": "m", "request": {"messages": [{"role": "user", "content": "hi"}]},
            "wait_for_worker": True}  # fmt: skip
    job_id = httpx.post(f"{broker.url}/v1/jobs", json=body, headers=ADMIN_HEADERS).json()["id"]
    answers: dict[str, object] = {}

    def stream() -> None:
        with httpx.stream("GET", f"{broker.url}/v1/jobs/{job_id}/events",
                          headers=ADMIN_HEADERS, timeout=60) as reply:  # fmt: skip
            answers["stream"] = [line for line in reply.iter_lines() if line.startswith("data:")]

    def poll() -> None:
        parked = {"worker_id": "w", "models": ["other"], "slots_free": 1, "wait_s": 30}
        answers["poll"] = httpx.post(
            f"{broker.url}/v1/worker/poll", json=parked, headers=worker, timeout=60
        ).json()

    def wait() -> None:
        answers["wait"] = httpx.get(
            f"{broker.url}/v1/jobs/{job_id}", params={"wait_s": 30}, headers=ADMIN_HEADERS,
            timeout=60,
        ).json()  # fmt: skip

    threads = [threading.Thread(target=f) for f in (stream, poll, wait)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # all three are waiting in the broker
    started = time.monotonic()
    assert broker.stop(signal.SIGTERM) == 0
    stopped_in = time.monotonic() - started
    for thread in threads:
        thread.join(timeout=10)
    assert stopped_in < 4  # not uvicorn's 5 s grace period, then cancellation
    assert answers["poll"] == {"leases": []}
    assert answers["wait"]["status"] == "queued"  # type: ignore[index]
    assert answers["stream"]  # what it had (the job's queued status), then a clean end
    log = broker.log.read_text()
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log
