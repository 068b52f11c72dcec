"""A batch through two broker replicas on one Redis and four worker processes on fake
backends, while workers, replica B and Redis are killed and restarted at random.

Topology: Redis (append-only, fsync always); replicas A and B on it, both with 3 s leases;
workers rig-0..rig-3 with 3 slots each, two polling A and two polling B, on a fake Ollama
and a fake OpenAI-compatible server that stream a reply a word at a time, so a job lasts
about half a second and kills land mid-job. The client only talks to A: it creates the
batch, submits a few native jobs during the chaos and reads their events live, and rides
out Redis restarts by trying again.

Afterwards: every request has exactly one line across the batch's output and error files,
each custom_id once, each job once; every answer is the fake's echo of its own prompt; no
job lost; every job's event stream (replayed, and live for the native jobs) has a restart
between attempts and its last attempt's text is its result; no worker saw two results of
one job accepted, and the brokers accepted at most one per job. The counts are printed (run
with -s) and written to GARAGE_CHAOS_REPORT, if set.
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..e2e.conftest import ADMIN_HEADERS, Proc, Processes, make_key
from ..support import free_port, garage_command, wait_until
from .checks import WorkerLogs, accepted_by_brokers, scrape, stream_problem
from .client import Api, Streamer, read_events
from .driver import Chaos, Profile, RedisServer, Restartable

pytestmark = pytest.mark.slow

PROFILE = Profile.from_env()
MODEL = "chaos-m"
LEASE_S = "3"
SLOTS = "3"
TOKENS_PER_S = "15"
ACCEPTED = "garage_jobs_finished_total"
SUCCEEDED = 'status="succeeded"'
STALE = "garage_fenced_reports_total"
FINAL = ("completed", "failed", "expired", "cancelled")


def prompt(i: int) -> str:
    return f"request {i} of the chaos batch"


def text_of(result: dict[str, Any] | None) -> str | None:
    try:
        return (result or {})["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None


@pytest.mark.timeout(PROFILE.timeout_s)
def test_every_job_has_exactly_one_result_through_kills_and_restarts(
    chaos_redis: RedisServer, processes: Processes, start_broker, start_fake, tmp_path: Path
) -> None:
    began = time.monotonic()
    rng = random.Random(PROFILE.seed)
    store = ("--redis-url", chaos_redis.url, "--lease-s", LEASE_S)
    a = start_broker(*store, name="a")
    b_port = free_port()
    b = Restartable("b", lambda: start_broker(*store, name="b", port=b_port))
    pacing = ("--models", MODEL, "--tokens-per-s", TOKENS_PER_S, "--first-token-ms", "50")
    fakes = {kind: start_fake(kind, *pacing) for kind in ("ollama", "openai")}

    def worker(name: str, broker_url: str, backend: str) -> Restartable:
        args = garage_command("worker", "run", "--broker", broker_url, "--backend", backend,
                              "--backend-url", fakes[backend].url, "--name", name,
                              "--slots", SLOTS)  # fmt: skip
        env = {
            "GARAGE_WORKER_TOKEN": make_key(a.url, "worker", name),
            "GARAGE_WORKER_HEALTH_INTERVAL_S": "1",
            "GARAGE_WORKER_DRAIN_GRACE_S": "1",  # a quick teardown, even mid-batch
        }

        def start() -> Proc:
            return processes.spawn(
                args, f"worker-{name}", env=env, ready=lambda p, log: broker_url, what=name
            )

        return Restartable(name, start)

    workers = [
        worker("rig-0", a.url, "ollama"),
        worker("rig-1", b.url, "openai"),
        worker("rig-2", a.url, "openai"),
        worker("rig-3", b.url, "ollama"),
    ]

    def all_listed() -> bool:
        fleet = httpx.get(f"{a.url}/v1/workers", headers=ADMIN_HEADERS).json()["data"]
        return {w["name"] for w in fleet if w["models"]} >= {w.name for w in workers}

    wait_until(all_listed, timeout_s=60, what="every worker in the fleet")

    # The suite floods on purpose: its key has no quotas (tests/*/test_quotas.py test them).
    user = Api(a.url, make_key(a.url, "user", "chaos", requests_per_minute=0, max_active_jobs=0))
    lines = "".join(
        json.dumps(
            {
                "custom_id": f"req-{i:05d}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": MODEL, "messages": [{"role": "user", "content": prompt(i)}]},
            }
        )
        + "\n"
        for i in range(PROFILE.jobs)
    )
    upload = user.http.post(
        "/v1/files", files={"file": ("chaos.jsonl", lines.encode())}, data={"purpose": "batch"}
    )
    assert upload.status_code in (200, 201), upload.text
    created = user.http.post(
        "/v1/batches",
        json={
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert created.status_code in (200, 201), created.text
    batch_id = created.json()["id"]

    # B's counters die with it: read them just before each kill (what it takes between the
    # read and the kill is missed, so the sums below can only be short).
    streamer = Streamer(
        user, MODEL, [f"streamed job {i}" + " word" * 24 for i in range(PROFILE.streamed)]
    )

    def busy_worker() -> str | None:
        """The worker running the job read live last submitted, if it still runs."""
        if streamer.latest is None:
            return None
        try:
            job = user.http.get(f"/v1/jobs/{streamer.latest}", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return None
        if job.get("status") != "running" or not job.get("worker"):
            return None
        return job["worker"].rpartition("-")[0]  # worker ids are "<name>-<hex>"

    chaos = Chaos(
        rng,
        workers=workers,
        broker=b,
        redis_server=chaos_redis,
        busy_worker=busy_worker,
    )
    chaos_started = time.monotonic()
    deadline = began + PROFILE.timeout_s - 60
    try:
        chaos.start()
        streamer.start()
        batch = user.get(f"/v1/batches/{batch_id}")
        # Faults go on until the batch is written out and every kind of fault happened.
        while batch["status"] not in FINAL or not chaos.faults.every_kind:
            assert time.monotonic() < deadline, f"the batch did not end: {batch}"
            if not chaos.alive:
                chaos.stop()  # raises what stopped it
            batch = user.get(f"/v1/batches/{batch_id}", wait_s=2)
        batch_s = time.monotonic() - chaos_started
        faults = chaos.stop()
        streamer.stop()
    except BaseException:
        chaos.halt()
        streamer.halt()
        for worker in workers:  # no drain to wait for in the teardown
            worker.kill()
        raise
    print("\n" + "\n".join(faults.log))

    # The batch: one line per request across both files, each custom_id and job once.
    counts = batch["request_counts"]
    assert batch["status"] == "completed", batch
    assert counts["total"] == PROFILE.jobs, counts
    assert counts["completed"] + counts["failed"] == PROFILE.jobs, counts
    out = [
        json.loads(line)
        for file_id in (batch["output_file_id"], batch["error_file_id"])
        if file_id
        for line in user.call("GET", f"/v1/files/{file_id}/content").text.splitlines()
    ]
    custom_ids = [line["custom_id"] for line in out]
    assert sorted(custom_ids) == [f"req-{i:05d}" for i in range(PROFILE.jobs)]
    job_ids = [(line["response"] or {}).get("request_id") for line in out]
    assert None not in job_ids and len(set(job_ids)) == PROFILE.jobs
    succeeded = [line for line in out if (line["response"] or {}).get("status_code") == 200]
    for line in succeeded:
        i = int(line["custom_id"].removeprefix("req-"))
        assert text_of(line["response"]["body"]) == f"echo: {prompt(i)}", line
    assert len(succeeded) == counts["completed"]
    succeeded_ids = {line["custom_id"] for line in succeeded}

    # Every job, as the broker holds it.
    jobs: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = user.get("/v1/jobs", limit=100, **({"after": after} if after else {}))
        jobs |= {job["id"]: job for job in page["data"]}
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    batch_jobs = {i: job for i, job in jobs.items() if job.get("batch_id") == batch_id}
    assert set(batch_jobs) == set(job_ids)
    for line in out:
        job = batch_jobs[line["response"]["request_id"]]
        assert job["metadata"]["custom_id"] == line["custom_id"]
        if line["custom_id"] in succeeded_ids:
            assert job["status"] == "succeeded"
            assert text_of(job["result"]) == text_of(line["response"]["body"])
    failed = [job for job in batch_jobs.values() if job["status"] != "succeeded"]
    # The one failure a chaos run may cause: a job whose every lease was lost to a fault.
    for job in failed:
        assert job["status"] == "failed", job
        assert (job["error"] or {}).get("code") == "attempts_exhausted", job
        assert job["attempt"] == job["max_attempts"], job
    assert len(failed) <= max(1, PROFILE.jobs // 200), f"{len(failed)} jobs failed: {failed}"

    # The native jobs read live during the chaos: succeeded, and their stream unspliced.
    assert len(streamer.jobs) >= min(5, PROFILE.streamed)
    problems = []
    for job_id, text in streamer.jobs.items():
        job = jobs[job_id]
        assert job["status"] == "succeeded", job
        assert text_of(job["result"]) == f"echo: {text}", job
        if problem := stream_problem(streamer.events[job_id], text_of(job["result"]) or ""):
            problems.append(f"{job_id} read live: {problem}")

    # Every batch job's stream, replayed (all that ran more than once, and a sample).
    retried = [job for job in batch_jobs.values() if job["attempt"] > 1]
    once = [job for job in batch_jobs.values() if job["attempt"] == 1]
    replayed = retried + random.Random(PROFILE.seed).sample(once, min(len(once), 300))
    with ThreadPoolExecutor(4) as pool:
        streams = list(pool.map(lambda job: read_events(user, job["id"]), replayed))
    for job, events in zip(replayed, streams, strict=True):
        text = text_of(job["result"]) or ""
        if job["status"] == "succeeded" and (problem := stream_problem(events, text)):
            problems.append(f"{job['id']} (attempt {job['attempt']}): {problem}")
    assert not problems, "\n".join(problems)

    # Exactly one result accepted per job: no worker was told twice, no broker logged a job's
    # result twice, and the brokers' counters of accepted results add up to no more than
    # the jobs.
    all_jobs = {**batch_jobs, **{i: jobs[i] for i in streamer.jobs}}
    logs = WorkerLogs.read(tmp_path.glob("worker-*.log"))
    assert len(logs.accepted) >= len(all_jobs) // 2, "the workers' logs name few results"
    for job_id, attempts in logs.accepted.items():
        job = all_jobs[job_id]
        assert attempts == [job["attempt"]], f"{job_id} accepted {attempts}: {job}"
    by_brokers = accepted_by_brokers([*tmp_path.glob("a-*.log"), *tmp_path.glob("b-*.log")])
    assert set(by_brokers) <= set(all_jobs)
    assert len(by_brokers) >= len(all_jobs) // 2, "the brokers' logs name few results"
    twice = {job_id: n for job_id, n in by_brokers.items() if n > 1}
    assert not twice, f"results accepted more than once: {twice}"
    ended = {"a": scrape(a.url), "b": scrape(b.url)}
    # The counters are fleet-wide (kept in Redis), so a killed broker loses none of them
    # and both replicas report the same.
    counters = [{k: v for k, v in c.items() if "_total" in k} for c in ended.values()]
    assert counters[0] == counters[1], "the replicas' fleet-wide counters differ"
    accepted = sum(v for k, v in counters[0].items() if k.startswith(ACCEPTED) and SUCCEEDED in k)
    stale = counters[0][STALE]
    assert accepted <= len(all_jobs), f"{accepted} results accepted for {len(all_jobs)} jobs"
    backend_runs = sum(
        len(httpx.get(f"{fake.url}/_fake/requests", params={"outcome": "done"}).json()["requests"])
        for fake in fakes.values()
    )
    assert backend_runs >= len(all_jobs) - len(failed)

    report = {
        "jobs": PROFILE.jobs,
        "streamed_jobs": len(streamer.jobs),
        "seed": PROFILE.seed,
        "succeeded": counts["completed"],
        "failed": counts["failed"],
        "worker_kills": faults.worker_kills,
        "worker_kills_streaming": faults.streaming_kills,
        "broker_kills": faults.broker_kills,
        "redis_restarts": faults.redis_restarts,
        "redis_kills": faults.redis_kills,
        "retried_jobs": len([j for j in all_jobs.values() if j["attempt"] > 1]),
        "retried_streamed_jobs": len([i for i in streamer.jobs if jobs[i]["attempt"] > 1]),
        "extra_attempts": sum(j["attempt"] - 1 for j in all_jobs.values()),
        "fenced_reports_409": int(stale),
        "fenced_results_refused": logs.refused,
        "leases_lost_mid_job": logs.lease_lost,
        "results_accepted_counted": int(accepted),
        "backend_runs": backend_runs,
        "streams_checked": len(replayed) + len(streamer.jobs),
        "client_retries": user.retries,
        "batch_s": round(batch_s, 1),
        "total_s": round(time.monotonic() - began, 1),
    }
    user.close()
    print("chaos: " + " ".join(f"{k}={v}" for k, v in report.items()))
    if PROFILE.report is not None:
        PROFILE.report.write_text(json.dumps(report, indent=2) + "\n")
