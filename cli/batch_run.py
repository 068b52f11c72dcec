"""Runs the requests of `garage job submit` and collects one result line per request.

The batch lane goes through OpenAI's Batch API (one batch per endpoint in the input);
the interactive lane runs native jobs with `AsyncClient.map`. Either way every request
gets one line in OpenAI's batch output format, in input order.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tqdm.auto import tqdm

from garage.client import AsyncClient
from garage.contract import BatchStatus, Kind
from garage.contract.batch_file import URL_KINDS

from .batch_input import InputItem

__all__ = ["run_batches", "run_interactive", "submit_batches"]

_ENDPOINTS = {kind: url for url, kind in URL_KINDS.items()}
_FINAL = {BatchStatus.completed, BatchStatus.expired, BatchStatus.cancelled, BatchStatus.failed}
_POLL_S = 0.5


async def submit_batches(client: AsyncClient, items: list[InputItem]) -> list[str]:
    """Uploads and starts one batch per endpoint; returns the batch ids."""
    batch_ids = []
    for kind in Kind:
        group = [item for item in items if item.spec.kind is kind]
        if not group:
            continue
        url = _ENDPOINTS[kind]
        text = "".join(
            json.dumps(
                {
                    "custom_id": item.custom_id,
                    "method": "POST",
                    "url": url,
                    "body": {**item.spec.request, "model": item.spec.model},
                }
            )
            + "\n"
            for item in group
        )
        uploaded = await client.upload_batch_file(f"garage-{kind.value}.jsonl", text)
        batch_ids.append((await client.create_batch(uploaded.id, url)).id)
    return batch_ids


async def run_batches(
    client: AsyncClient, items: list[InputItem], *, timeout_s: float | None
) -> list[dict[str, Any]]:
    batch_ids = await submit_batches(client, items)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with tqdm(total=len(items), unit="req", desc="batch") as bar:
        while True:
            batches = [await client.batch(batch_id) for batch_id in batch_ids]
            done = sum(b.request_counts.completed + b.request_counts.failed for b in batches)
            bar.update(done - bar.n)
            if all(b.status in _FINAL for b in batches):
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            await asyncio.sleep(_POLL_S)
    lines: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                for raw in (await client.file_text(file_id)).splitlines():
                    line = json.loads(raw)
                    lines[line["custom_id"]] = line
    unfinished = {
        "code": "timeout",
        "message": f"not finished within {timeout_s} s; see batches " + ", ".join(batch_ids),
    }
    return [
        lines.get(item.custom_id)
        or {"id": None, "custom_id": item.custom_id, "response": None, "error": unfinished}
        for item in items
    ]


async def run_interactive(
    client: AsyncClient, model: str, items: list[InputItem], *, timeout_s: float | None
) -> list[dict[str, Any]]:
    outcomes = await client.map(
        model, [item.spec for item in items], lane="interactive", timeout_s=timeout_s
    )
    lines = []
    for item, outcome in zip(items, outcomes, strict=True):
        job = outcome.job
        line: dict[str, Any] = {
            "id": f"batch_req_{job.id}" if job else None,
            "custom_id": item.custom_id,
            "response": None,
            "error": None,
        }
        if outcome.ok and job is not None:
            line["response"] = {"status_code": 200, "request_id": job.id, "body": job.result}
        elif job is not None and job.error is not None:
            status = 400 if job.error.type == "backend_rejected" else 500
            line["response"] = {
                "status_code": status,
                "request_id": job.id,
                "body": {"error": job.error.model_dump()},
            }
        else:
            line["error"] = {"code": type(outcome.error).__name__, "message": str(outcome.error)}
        lines.append(line)
    return lines
