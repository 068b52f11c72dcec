"""One line of OpenAI's batch output format, built in one place for the broker's output
files, the client's unfinished requests and `garage job submit --lane interactive`."""

from __future__ import annotations

from typing import Any

import pytest

from garage.contract import ErrorCode, JobStatus
from garage.contract.batch_file import output_line

REJECTED = {"message": "no images", "type": "backend_rejected", "code": "job_failed"}
BROKEN = {"message": "backend down", "type": "backend_unavailable", "code": "job_failed"}


def test_a_succeeded_job_answers_200_with_its_result() -> None:
    assert output_line("job_1", "a", JobStatus.succeeded, {"ok": True}) == {
        "id": "batch_req_job_1",
        "custom_id": "a",
        "response": {"status_code": 200, "request_id": "job_1", "body": {"ok": True}},
        "error": None,
    }


@pytest.mark.parametrize(("error", "status_code"), [(REJECTED, 400), (BROKEN, 500)])
def test_a_failed_job_answers_with_its_error(error: dict[str, Any], status_code: int) -> None:
    line = output_line("job_1", "a", "failed", None, error)
    assert line["error"] is None
    assert line["response"] == {
        "status_code": status_code,
        "request_id": "job_1",
        "body": {"error": error},
    }


@pytest.mark.parametrize(
    ("job_id", "status", "error", "code", "message"),
    [
        ("job_1", "expired", {"message": "late", "code": "start_deadline_exceeded"},
         ErrorCode.batch_expired, "late"),
        ("job_1", "cancelled", {"message": "stop", "code": "batch_cancelled"},
         ErrorCode.batch_cancelled, "stop"),
        ("job_1", "running", {"message": "waited 5 s"}, ErrorCode.unfinished, "waited 5 s"),
        ("job_1", "queued", None, ErrorCode.unfinished, "job queued"),
        ("job_1", None, None, ErrorCode.job_lost, "job lost"),
        (None, None, {"message": "no worker", "code": "model_not_served"},
         "model_not_served", "no worker"),
    ],
)  # fmt: skip
def test_a_request_without_a_response_gets_an_error_code(
    job_id: str | None, status: str | None, error: dict[str, Any] | None, code: str, message: str
) -> None:
    line = output_line(job_id, "a", status, None, error)
    assert line == {
        "id": f"batch_req_{job_id}" if job_id else None,
        "custom_id": "a",
        "response": None,
        "error": {"code": str(code), "message": message},
    }
