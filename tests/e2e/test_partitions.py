"""Partitions between the processes (issue 16): a TCP proxy between a worker (or a client)
and the broker stalls or cuts their traffic. A worker cut off past its lease has its job
re-run elsewhere and its late result fenced; a short blip costs nothing; a client whose
connection is cut mid-submit gets exactly one job."""

from __future__ import annotations

import json
import time
import urllib.parse

import httpx
import pytest

from garage.client import BrokerUnreachable, Client, WaitTimeout

from ..netproxy import Proxy
from ..support import wait_until
from .conftest import ADMIN_HEADERS, make_key

PROMPT = " ".join(f"w{i}" for i in range(40))  # the fake echoes it back, a word a token
ECHO = f"echo: {PROMPT}"
FAST_REPORTS = {"GARAGE_WORKER_HEARTBEAT_S": "0.3"}


def proxy_to(url: str) -> Proxy:
    parts = urllib.parse.urlsplit(url)
    return Proxy(parts.hostname or "127.0.0.1", parts.port or 80)


def job(broker_url: str, job_id: str) -> dict:
    return httpx.get(f"{broker_url}/v1/jobs/{job_id}", headers=ADMIN_HEADERS).json()


def events(broker_url: str, job_id: str) -> list[dict]:
    with httpx.stream(
        "GET", f"{broker_url}/v1/jobs/{job_id}/events", headers=ADMIN_HEADERS, timeout=30
    ) as stream:
        return [
            json.loads(line.removeprefix("data:").strip())
            for line in stream.iter_lines()
            if line.startswith("data:") and line.strip() != "data:"
        ]


def fenced(broker_url: str) -> float:
    metrics = httpx.get(f"{broker_url}/metrics", headers=ADMIN_HEADERS).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("garage_fenced_reports_total")
    )


def submit(broker_url: str) -> str:
    body = {
        "model": "m",
        "request": {"messages": [{"role": "user", "content": PROMPT}]},
        "wait_for_worker": True,
    }
    reply = httpx.post(f"{broker_url}/v1/jobs", json=body, headers=ADMIN_HEADERS)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def test_a_worker_cut_off_past_its_lease_is_fenced_and_its_job_runs_elsewhere(
    start_broker, start_fake, start_worker
) -> None:
    broker = start_broker("--lease-s", "2")
    fake = start_fake("ollama", "--models", "m", "--tokens-per-s", "10")  # a job lasts ~4 s
    with proxy_to(broker.url) as proxy:
        # One slot: busy with the job, it parks no poll that could be handed more work.
        start_worker(
            proxy.url, "ollama", fake.url, "--slots", "1", name="cut-off", env=FAST_REPORTS
        )
        job_id = submit(broker.url)
        wait_until(lambda: job(broker.url, job_id)["status"] == "running", timeout_s=10,
                   what="the job to start on the worker behind the proxy")  # fmt: skip
        proxy.stall()  # the link goes dark; the worker's reports hang in it
        wait_until(lambda: job(broker.url, job_id)["status"] == "queued", timeout_s=15,
                   what="the lease to run out and the job to be queued again")  # fmt: skip
        start_worker(broker.url, "ollama", fake.url, name="elsewhere", env=FAST_REPORTS)
        wait_until(lambda: job(broker.url, job_id)["status"] == "succeeded", timeout_s=20,
                   what="the job to finish on the other worker")  # fmt: skip
        before = fenced(broker.url)
        proxy.heal()  # the first worker's held reports arrive, late
        wait_until(lambda: fenced(broker.url) > before, timeout_s=15,
                   what="the late reports to be refused")  # fmt: skip
    done = job(broker.url, job_id)
    assert done["attempt"] == 2
    assert done["result"]["choices"][0]["message"]["content"] == ECHO
    seen = events(broker.url, job_id)
    [restart] = [i for i, event in enumerate(seen) if event["type"] == "restart"]
    after = "".join(e["text"] for e in seen[restart:] if e["type"] == "delta")
    assert after == ECHO  # the second attempt's text alone, nothing spliced onto it
    assert seen[-1]["type"] == "done"


def test_a_short_blip_costs_nothing(start_broker, start_fake, start_worker) -> None:
    broker = start_broker()
    fake = start_fake("ollama", "--models", "m", "--tokens-per-s", "20")  # ~2 s
    with proxy_to(broker.url) as proxy:
        start_worker(proxy.url, "ollama", fake.url, name="blip", env=FAST_REPORTS)
        job_id = submit(broker.url)
        wait_until(lambda: job(broker.url, job_id)["status"] == "running", timeout_s=10,
                   what="the job to start")  # fmt: skip
        time.sleep(0.5)
        proxy.cut(down_s=0.5)  # every connection dropped, none taken for half a second
        wait_until(lambda: job(broker.url, job_id)["status"] == "succeeded", timeout_s=20,
                   what="the job to finish through the blip")  # fmt: skip
    done = job(broker.url, job_id)
    assert done["attempt"] == 1
    seen = events(broker.url, job_id)
    assert not [e for e in seen if e["type"] in ("restart", "error")]
    assert "".join(e["text"] for e in seen if e["type"] == "delta") == ECHO


@pytest.mark.parametrize("waits", [False, True], ids=["submit", "run"])
def test_a_submit_cut_before_its_answer_makes_exactly_one_job(start_broker, waits: bool) -> None:
    broker = start_broker()
    user = make_key(broker.url, "user", "cut-client")
    with proxy_to(broker.url) as proxy, Client(proxy.url, user) as client:
        proxy.cut_answers(2)  # the broker reads the submit twice and answers neither
        if waits:
            with pytest.raises(WaitTimeout):  # no worker serves it: it waits, then gives up
                client.run("m", "hello", wait_for_worker=True, timeout_s=0.5)
        else:
            client.submit("m", "hello", wait_for_worker=True)
        assert proxy.answers_cut == 2
        listed = client.list().data
    assert len(listed) == 1  # three sends, one key, one job


def test_a_submit_that_never_gets_through_fails_clearly(start_broker) -> None:
    broker = start_broker()
    user = make_key(broker.url, "user", "cut-client")
    with proxy_to(broker.url) as proxy, Client(proxy.url, user) as client:
        proxy.cut_answers(10)
        with pytest.raises(BrokerUnreachable, match="cannot reach the broker"):
            client.submit("m", "hello", wait_for_worker=True)
    listed = httpx.get(f"{broker.url}/v1/jobs", headers={"Authorization": f"Bearer {user}"})
    assert len(listed.json()["data"]) == 1  # sent four times, queued once
