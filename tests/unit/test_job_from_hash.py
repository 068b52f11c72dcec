"""A job read back from its Redis hash (broker/store/jobs.py `job_from_hash`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from garage.broker.store.jobs import job_from_hash
from garage.contract import Job, JobError, JobStatus, Timings, Usage

CREATED_MS = 1_764_590_400_123  # 2025-12-01T12:00:00.123Z


def queued_fields(**changes: str) -> dict[str, str]:
    """The hash of a queued job as submit.lua writes it (empty strings for unset fields)."""
    fields = {
        "id": "job_1",
        "owner": "key_1",
        "model": "llama3",
        "kind": "chat",
        "lane": "interactive",
        "request": json.dumps({"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}),
        "status": "queued",
        "attempt": "0",
        "max_attempts": "3",
        "created_ms": str(CREATED_MS),
        "start_deadline_ms": str(CREATED_MS + 60_000),
        "deadline_ms": "",
        "worker": "",
        "batch_id": "",
        "idem": "",
        "metadata": "{}",
        "lease_token": "",
    }
    return fields | changes


def test_a_queued_job_leaves_unset_fields_empty() -> None:
    job = job_from_hash(queued_fields())
    assert job == Job(
        id="job_1",
        owner="key_1",
        model="llama3",
        kind="chat",
        lane="interactive",
        request={"model": "llama3", "messages": [{"role": "user", "content": "hi"}]},
        status=JobStatus.queued,
        attempt=0,
        max_attempts=3,
        created_at=datetime(2025, 12, 1, 12, 0, 0, 123_000, tzinfo=UTC),
        start_deadline_at=datetime(2025, 12, 1, 12, 1, 0, 123_000, tzinfo=UTC),
    )
    assert job.created_at.utcoffset() is not None and job.created_at.utcoffset().seconds == 0
    assert job.worker is None and job.batch_id is None and job.deadline_at is None
    assert job.result is None and job.usage is None and job.metadata == {}


def test_a_finished_job_carries_its_result_usage_and_timings() -> None:
    job = job_from_hash(
        queued_fields(
            status="succeeded",
            attempt="2",
            started_ms=str(CREATED_MS + 5),
            finished_ms=str(CREATED_MS + 905),
            worker="rig-7",
            batch_id="batch_1",
            result=json.dumps({"choices": [{"message": {"content": "hello"}}]}),
            usage=json.dumps({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
            timings=json.dumps({"queued_ms": 5, "run_ms": 900, "total_ms": 905}),
            metadata=json.dumps({"run": "a"}),
        )
    )
    assert job.status is JobStatus.succeeded and job.attempt == 2
    assert job.finished_at == datetime(2025, 12, 1, 12, 0, 1, 28_000, tzinfo=UTC)
    assert job.worker == "rig-7" and job.batch_id == "batch_1"
    assert job.result == {"choices": [{"message": {"content": "hello"}}]}
    assert job.usage == Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    assert job.timings == Timings(queued_ms=5, run_ms=900, total_ms=905)
    assert job.metadata == {"run": "a"}


def test_a_failed_job_carries_its_error_and_a_null_usage_reads_as_none() -> None:
    error = {"message": "backend said 500", "type": "backend_error", "code": None}
    job = job_from_hash(queued_fields(status="failed", error=json.dumps(error), usage="null"))
    assert job.error == JobError(message="backend said 500", type="backend_error")
    assert job.usage is None


def test_text_that_needs_escaping_survives() -> None:
    owner = 'key "quoted" \\ back\nslash'
    metadata = {"note": 'say "hi" \u00e9 \U0001f600'}
    job = job_from_hash(queued_fields(owner=owner, worker='rig "2"', metadata=json.dumps(metadata)))
    assert job.owner == owner and job.worker == 'rig "2"' and job.metadata == metadata


def test_a_damaged_hash_is_an_error_not_a_wrong_job() -> None:
    with pytest.raises(ValidationError):
        job_from_hash(queued_fields(result="{not json"))
    with pytest.raises(ValidationError):
        job_from_hash(queued_fields(status="exploded"))
    with pytest.raises(ValueError):
        job_from_hash(queued_fields(attempt="two"))
