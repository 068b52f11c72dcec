"""The worker as it runs on a rig: real broker, worker and fake backend processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
from httpx_sse import aconnect_sse

from ..support import free_port, wait_until
from .conftest import ADMIN_HEADERS as ADMIN

pytestmark = pytest.mark.slow

WORDS = "the quick brown fox jumps over the lazy dog " * 3
REPLY = "echo: " + WORDS.strip()


def chat(model: str, text: str = "hello there garage", **extra) -> dict:
    return {"model": model, "request": {"messages": [{"role": "user", "content": text}]}} | extra


def submit_and_wait(url: str, body: dict, wait_s: float = 30) -> dict:
    reply = httpx.post(
        f"{url}/v1/jobs",
        json=body,
        headers={**ADMIN, "Prefer": f"wait={wait_s:g}"},
        timeout=wait_s + 10,
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


def submit(url: str, body: dict) -> str:
    return httpx.post(f"{url}/v1/jobs", json=body, headers=ADMIN).json()["id"]


def get_job(url: str, job_id: str, wait_s: float = 0) -> dict:
    return httpx.get(
        f"{url}/v1/jobs/{job_id}", params={"wait_s": wait_s}, headers=ADMIN, timeout=wait_s + 10
    ).json()


async def read_events(url: str, job_id: str, *, until: str | None = None) -> list[dict]:
    events = []
    async with (
        httpx.AsyncClient(timeout=90) as http,
        aconnect_sse(http, "GET", f"{url}/v1/jobs/{job_id}/events", headers=ADMIN) as sse,
    ):
        async for event in sse.aiter_sse():
            events.append(json.loads(event.data))
            if until and events[-1]["type"] == until:
                break
    return events


def first_delta(url: str, job_id: str) -> list[dict]:
    return asyncio.run(asyncio.wait_for(read_events(url, job_id, until="delta"), 30))


def shown_text(events: list[dict]) -> str:
    """What a reader shows: the text since the last restart."""
    shown: list[str] = []
    for event in events:
        if event["type"] == "restart":
            shown = []
        elif event["type"] == "delta":
            shown.append(event["text"])
    return "".join(shown)


def fleet(url: str) -> list[dict]:
    return httpx.get(f"{url}/v1/workers", headers=ADMIN).json()["data"]


def fake_requests(fake_url: str, outcome: str, count: int = 1) -> list[dict]:
    reply = httpx.get(
        f"{fake_url}/_fake/requests",
        params={"outcome": outcome, "count": count, "timeout_s": 20},
        timeout=30,
    )
    return reply.json()["requests"]


def test_chat_completion_embedding_on_both_backends(start_broker, start_fake, start_worker) -> None:
    broker = start_broker()
    ollama = start_fake("ollama", "--models", "llama3")
    openai = start_fake("openai", "--models", "qwen")
    start_worker(broker.url, "ollama", ollama.url, name="ollama-rig")
    start_worker(broker.url, "openai", openai.url, name="vllm-rig")

    for model, rig in (("llama3", "ollama-rig"), ("qwen", "vllm-rig")):
        done = submit_and_wait(broker.url, chat(model))
        assert done["status"] == "succeeded", done
        assert done["worker"].startswith(rig)
        message = done["result"]["choices"][0]["message"]
        assert message == {"role": "assistant", "content": "echo: hello there garage"}
        assert done["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "total_tokens": 7,
            "estimated": False,
        }
        timings = done["timings"]
        assert timings["run_ms"] >= 0 and timings["total_ms"] >= timings["run_ms"]
        assert timings["backend_ms"] > 0

        streamed_id = submit(broker.url, chat(model, WORDS))
        events = asyncio.run(read_events(broker.url, streamed_id))
        assert events[-1]["type"] == "done"
        assert sum(e["type"] == "delta" for e in events) >= 1
        assert shown_text(events) == REPLY
        assert events[-1]["result"]["choices"][0]["message"]["content"] == REPLY

        completion = submit_and_wait(
            broker.url, {"model": model, "kind": "completion", "request": {"prompt": "one two"}}
        )
        assert completion["result"]["object"] == "text_completion"
        assert completion["result"]["choices"][0]["text"] == "echo: one two"
        assert completion["usage"]["completion_tokens"] == 3

        embedding = submit_and_wait(
            broker.url,
            {"model": model, "kind": "embedding", "request": {"input": ["a", "b c"]}},
        )
        vectors = embedding["result"]["data"]
        assert [v["index"] for v in vectors] == [0, 1] and len(vectors[0]["embedding"]) == 8
        assert embedding["usage"]["prompt_tokens"] == 3


def test_a_job_the_backend_rejects_fails_with_its_reason(
    start_broker, start_fake, start_worker
) -> None:
    broker = start_broker()
    ollama = start_fake("ollama", "--models", "llama3")
    start_worker(broker.url, "ollama", ollama.url)
    reason = 'model "llama3" not found, try pulling it first'
    httpx.post(f"{ollama.url}/_fake/config", json={"fail_status": 404, "fail_message": reason})
    bad = submit_and_wait(broker.url, chat("llama3"))
    assert bad["status"] == "failed" and bad["attempt"] == 1
    assert bad["error"]["type"] == "backend_rejected" and bad["error"]["message"] == reason
    httpx.post(f"{ollama.url}/_fake/reset")
    assert submit_and_wait(broker.url, chat("llama3"))["status"] == "succeeded"  # it goes on


def test_sigkill_mid_stream_requeues_to_the_other_worker_without_splicing(
    start_broker, start_fake, start_worker
) -> None:
    broker = start_broker("--lease-s", "2")
    slow = start_fake("openai", "--models", "m", "--tokens-per-s", "20")
    doomed = start_worker(broker.url, "openai", slow.url, name="doomed")
    job_id = submit(broker.url, chat("m", WORDS))
    first_delta(broker.url, job_id)
    doomed.stop(signal.SIGKILL)
    start_worker(broker.url, "openai", slow.url, name="survivor")

    done = get_job(broker.url, job_id, wait_s=40)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2 and done["worker"].startswith("survivor")
    events = asyncio.run(read_events(broker.url, job_id))
    kinds = [e["type"] for e in events]
    assert "restart" in kinds
    assert shown_text(events) == REPLY  # the reader never sees two attempts glued together
    restart = kinds.index("restart")
    assert all(e["attempt"] == 1 for e in events[:restart] if e["type"] == "delta")
    assert all(e["attempt"] == 2 for e in events[restart:] if e["type"] == "delta")


def test_broker_restart_while_a_job_runs(start_broker, start_fake, start_worker) -> None:
    port = free_port()
    first = start_broker(name="broker", port=port)
    data_dir = next(a for a in first.process.args if a.endswith("-data"))
    slow = start_fake("ollama", "--models", "m", "--tokens-per-s", "10")
    start_worker(first.url, "ollama", slow.url)
    job_id = submit(first.url, chat("m", WORDS))
    first_delta(first.url, job_id)
    assert first.stop() == 0
    again = start_broker("--data-dir", data_dir, name="broker", port=port)
    done = get_job(again.url, job_id, wait_s=40)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 1  # the worker kept its lease through the outage
    assert done["result"]["choices"][0]["message"]["content"] == REPLY
    assert shown_text(asyncio.run(read_events(again.url, job_id))) == REPLY


def test_backend_down_stops_pulling_and_back_resumes(
    start_broker, start_fake, start_worker
) -> None:
    broker = start_broker()
    port = free_port()
    backend = start_fake("ollama", "--models", "m", port=port)
    start_worker(broker.url, "ollama", backend.url, name="rig")
    backend.stop(signal.SIGKILL)

    def critical() -> bool:
        [rig] = fleet(broker.url)
        return rig["health"]["state"] == "critical" and "backend unreachable" in "".join(
            rig["health"]["reasons"]
        )

    wait_until(critical, timeout_s=30, what="the worker to report its backend down")
    refused = httpx.post(f"{broker.url}/v1/jobs", json=chat("m"), headers=ADMIN)
    assert refused.status_code == 503  # nobody serves m now: fail fast...
    assert refused.json()["error"]["code"] == "model_not_served"
    job_id = submit(broker.url, chat("m", wait_for_worker=True))  # ...unless told to wait
    assert get_job(broker.url, job_id, wait_s=1.5)["status"] == "queued"  # not pulled
    start_fake("ollama", "--models", "m", port=port)
    done = get_job(broker.url, job_id, wait_s=30)
    assert done["status"] == "succeeded" and done["attempt"] == 1
    assert fleet(broker.url)[0]["health"]["state"] == "ok"


def test_cancel_reaches_the_backend(start_broker, start_fake, start_worker) -> None:
    broker = start_broker()
    slow = start_fake("openai", "--models", "m", "--tokens-per-s", "5")
    start_worker(broker.url, "openai", slow.url)
    job_id = submit(broker.url, chat("m", WORDS))
    first_delta(broker.url, job_id)
    cancelled = httpx.post(f"{broker.url}/v1/jobs/{job_id}/cancel", headers=ADMIN).json()
    assert cancelled["status"] == "cancelled"
    [aborted] = fake_requests(slow.url, "aborted")
    assert aborted["outcome"] == "aborted"
    assert get_job(broker.url, job_id)["status"] == "cancelled"


def test_sigterm_drains_finishing_running_jobs(start_broker, start_fake, start_worker) -> None:
    broker = start_broker()
    slow = start_fake("ollama", "--models", "m", "--tokens-per-s", "15")
    rig = start_worker(broker.url, "ollama", slow.url)
    job_id = submit(broker.url, chat("m", WORDS))
    first_delta(broker.url, job_id)
    rig.process.send_signal(signal.SIGTERM)
    later = submit(broker.url, chat("m"))
    assert rig.process.wait(timeout=30) == 0
    done = get_job(broker.url, job_id)
    assert done["status"] == "succeeded" and done["attempt"] == 1
    assert get_job(broker.url, later)["status"] == "queued"  # a draining worker pulls nothing


def test_second_sigterm_hands_back_at_once(start_broker, start_fake, start_worker) -> None:
    broker = start_broker()
    slow = start_fake("ollama", "--models", "m", "--tokens-per-s", "2")
    rig = start_worker(broker.url, "ollama", slow.url, "--drain-grace", "60")
    job_id = submit(broker.url, chat("m", WORDS, max_attempts=1))
    first_delta(broker.url, job_id)
    rig.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "worker.drain" in rig.log.read_text(), timeout_s=10, what="the drain")
    rig.process.send_signal(signal.SIGTERM)
    assert rig.process.wait(timeout=15) == 0
    back = get_job(broker.url, job_id)
    assert back["status"] == "queued"  # requeued at once, not after the lease ran out
    assert back["max_attempts"] == 2  # a handback uses no attempt
    fake_requests(slow.url, "aborted")  # and the backend request was dropped


def test_sigterm_with_the_broker_gone_exits_after_a_bounded_hand_back(
    start_broker, start_fake, start_worker
) -> None:
    broker = start_broker()
    slow = start_fake("ollama", "--models", "m", "--tokens-per-s", "2")
    rig = start_worker(broker.url, "ollama", slow.url, "--drain-grace", "1")
    job_id = submit(broker.url, chat("m", WORDS))
    first_delta(broker.url, job_id)
    broker.stop(signal.SIGKILL)  # the hand-back can reach nobody
    started = time.monotonic()
    rig.process.send_signal(signal.SIGTERM)
    assert rig.process.wait(timeout=30) == 0  # it tried for 10 s, then left
    assert time.monotonic() - started < 20
    assert "worker.hand_back_abandoned" in rig.log.read_text()
