"""A batch of 10,000 requests across two worker processes: exactly 10,000 output lines,
each custom_id once."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from ..support import wait_until
from .conftest import make_key

pytestmark = pytest.mark.slow

REQUESTS = 10_000


def test_ten_thousand_requests_two_workers(start_broker, start_fake, start_worker) -> None:
    broker = start_broker()
    for name in ("rig-a", "rig-b"):
        backend = start_fake("openai", "--models", "m")
        start_worker(broker.url, "openai", backend.url, "--slots", "64", name=name)
    key = make_key(broker.url, "user")
    user = {"Authorization": f"Bearer {key}"}
    sdk = openai.OpenAI(base_url=f"{broker.url}/v1", api_key=key, max_retries=0, timeout=120)
    lines = "".join(
        json.dumps(
            {
                "custom_id": f"req-{i:05d}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "m", "messages": [{"role": "user", "content": f"prompt {i}"}]},
            }
        )
        + "\n"
        for i in range(REQUESTS)
    )
    uploaded = sdk.files.create(file=("big.jsonl", lines.encode()), purpose="batch")
    started = time.monotonic()
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.request_counts.total == REQUESTS

    def completed():
        current = sdk.batches.retrieve(batch.id)
        return current if current.status == "completed" else None

    done = wait_until(completed, timeout_s=300, what="the batch to complete")
    took_s = time.monotonic() - started
    assert (done.request_counts.completed, done.request_counts.failed) == (REQUESTS, 0)
    output = sdk.files.content(done.output_file_id).text.splitlines()
    assert len(output) == REQUESTS
    ids = [json.loads(line)["custom_id"] for line in output]
    assert ids == [f"req-{i:05d}" for i in range(REQUESTS)]  # each once, in input order
    assert done.error_file_id is None
    sample = [json.loads(line)["response"]["request_id"] for line in output[::500]]
    workers = {
        httpx.get(f"{broker.url}/v1/jobs/{job_id}", headers=user).json()["worker"].split("-")[1]
        for job_id in sample
    }
    assert workers == {"a", "b"}  # both rigs pulled their share
    print(f"10,000-request batch: {took_s:.1f} s from create to completed")
