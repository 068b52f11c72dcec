"""The client's Batch API runs against a live broker and worker: `run_batch` returns one
line per input in input order, `wait_batch` follows a batch's progress with the broker's
long-poll and gives up after its timeout, and the blocking `Client` does the same."""

from __future__ import annotations

import httpx
import pytest

from garage.client import AsyncClient, Client
from garage.contract import Batch, BatchStatus

from ..conftest import Network

IMAGE_URL_MESSAGE = [  # Ollama takes images only inline, so its adapter rejects a URL
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
]


def _ended(batch: Batch) -> int:
    return batch.request_counts.completed + batch.request_counts.failed


async def test_run_batch_returns_a_line_per_input_in_input_order(network: Network) -> None:
    seen: list[Batch] = []
    async with AsyncClient(network.url, network.user_key) as client:
        lines = await client.run_batch(
            "m",
            ["alpha", {"input": "vector"}, IMAGE_URL_MESSAGE, "omega"],
            timeout_s=60,
            on_progress=seen.append,
        )
    assert [line["custom_id"] for line in lines] == ["item-0", "item-1", "item-2", "item-3"]
    texts = [lines[i]["response"]["body"]["choices"][0]["message"]["content"] for i in (0, 3)]
    assert texts == ["echo: alpha", "echo: omega"]
    assert lines[1]["response"]["body"]["object"] == "list"  # an embedding, in its own batch
    assert lines[2]["response"]["status_code"] == 400 and lines[2]["error"] is None
    assert all(line["id"].startswith("batch_req_job_") for line in lines)
    # Two batches (chat, embeddings), each reported from its start to its last count.
    by_batch: dict[str, list[int]] = {}
    for batch in seen:
        by_batch.setdefault(batch.id, []).append(_ended(batch))
    assert sorted(counts[-1] for counts in by_batch.values()) == [1, 3]
    assert all(counts == sorted(counts) for counts in by_batch.values())


async def test_a_batch_unfinished_at_the_timeout_gets_unfinished_lines(network: Network) -> None:
    network.backend.configure(hang=True)
    async with AsyncClient(network.url, network.user_key) as client:
        lines = await client.run_batch("m", ["a", "b"], custom_ids=["x", "y"], timeout_s=0.5)
        assert [line["custom_id"] for line in lines] == ["x", "y"]
        assert all(line["id"] is None and line["response"] is None for line in lines)
        assert {line["error"]["code"] for line in lines} == {"unfinished"}
        batch_id = lines[0]["error"]["message"].rsplit(" ", 1)[-1]
        assert batch_id.startswith("batch_")

        still = await client.wait_batch(batch_id, timeout_s=0.2)
        assert still.id == batch_id and still.status is BatchStatus.in_progress

        await client.cancel_batch(batch_id)
        cancelled = await client.wait_batch(batch_id, timeout_s=30)
        assert cancelled.status is BatchStatus.cancelled and _ended(cancelled) == 2


def test_the_blocking_client_runs_and_waits_on_batches(network: Network) -> None:
    with Client(network.url, network.user_key) as client:
        lines = client.run_batch("m", ["one", "two"], kind="completion", custom_ids=["p", "q"])
        assert [line["response"]["body"]["choices"][0]["text"] for line in lines] == [
            "echo: one",
            "echo: two",
        ]
        [started] = client.submit_batch("m", ["three"])
        done = client.wait_batch(started.id, timeout_s=60)
        assert done.status is BatchStatus.completed and done.request_counts.completed == 1
        assert client.batch(started.id).output_file_id == done.output_file_id


@pytest.mark.parametrize(
    ("inputs", "custom_ids", "says"),
    [
        (["a", "b"], ["x"], "1 custom_ids for 2 inputs"),
        (["a", "b"], ["x", "x"], "unique"),
        ([], None, "at least one input"),
        (["a", {"no_messages": True}], None, "input 1 (item-1)"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_sent(
    network: Network, inputs: list, custom_ids: list[str] | None, says: str
) -> None:
    with Client(network.url, network.user_key) as client, pytest.raises(ValueError) as refused:
        client.run_batch("m", inputs, custom_ids=custom_ids)
    assert says in str(refused.value)
    files = httpx.get(
        f"{network.url}/v1/files", headers={"Authorization": f"Bearer {network.user_key}"}
    )
    assert files.json()["data"] == []  # nothing was uploaded
