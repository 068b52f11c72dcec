"""The chaos suite's checks catch what they are meant to catch."""

from __future__ import annotations

import logging
from pathlib import Path

from garage.cli.logs import _JsonFormatter

from .checks import WorkerLogs, accepted_by_brokers, stream_problem


def stream(*events: tuple[str, int, str]) -> list[dict]:
    """Events from (type, attempt, text) triples, with increasing ids."""
    built = []
    for n, (kind, attempt, text) in enumerate(events):
        event = {"type": kind, "attempt": attempt, "id": f"1-{n}"}
        if kind == "delta":
            event["text"] = text
        built.append(event)
    return built


def test_a_stream_with_a_restart_between_attempts_passes() -> None:
    events = stream(
        ("status", 1, ""), ("delta", 1, "echo:"), ("restart", 2, ""),
        ("delta", 2, "echo:"), ("delta", 2, " hi"), ("done", 2, ""),
    )  # fmt: skip
    assert stream_problem(events, "echo: hi") is None


def test_a_spliced_stream_is_caught() -> None:
    no_restart = stream(("delta", 1, "echo:"), ("delta", 2, " hi"), ("done", 2, ""))
    assert "spliced" in (stream_problem(no_restart, "echo: hi") or "")
    stale_text = stream(("restart", 2, ""), ("delta", 1, "x"), ("done", 2, ""))
    assert "spliced" in (stream_problem(stale_text, "x") or "")


def test_a_stream_whose_text_is_not_the_result_or_that_repeats_is_caught() -> None:
    events = stream(("delta", 1, "echo:"), ("done", 1, ""))
    assert "not the result" in (stream_problem(events, "echo: hi") or "")
    assert "twice" in (stream_problem([*events[:1], *events], "echo:echo:") or "")
    assert "not done" in (stream_problem(events[:1], "echo:") or "")
    late = {**events[0], "id": "1-9"}
    assert "after the done" in (stream_problem([*events, late], "echo:") or "")


def line(message: str, **extra: object) -> str:
    """A log line as `garage` writes it when not on a terminal."""
    record = logging.makeLogRecord(
        {"msg": message, "levelname": "INFO", "name": "garage.x", **extra}
    )
    return _JsonFormatter().format(record)


def test_worker_logs_are_read_in_the_format_the_cli_writes(tmp_path: Path) -> None:

    (tmp_path / "worker-1.log").write_text(
        "\n".join(
            [
                line("job.completed", job_id="job_1", attempt=2, reports=3, report_ms=1.5),
                line("job.result_refused", job_id="job_2", error="lease lost"),
                line("job.stop", job_id="job_3", reason="lease lost"),
                line("job.stop", job_id="job_4", reason="cancelled"),
                line("job.completed", job_id="job_5", attempt=1)[:40],  # cut by a SIGKILL
            ]
        )
    )
    logs = WorkerLogs.read([tmp_path / "worker-1.log"])
    assert (logs.accepted, logs.refused, logs.lease_lost) == ({"job_1": [2]}, 1, 1)


def test_broker_logs_are_read_in_the_format_the_cli_writes(tmp_path: Path) -> None:
    (tmp_path / "a-0.log").write_text(line("job.succeeded", job_id="j1") + "\n")
    second = "garage broker listening\n" + line("job.succeeded", job_id="j1")
    (tmp_path / "b-1.log").write_text(second)
    assert accepted_by_brokers(tmp_path.glob("*.log")) == {"j1": 2}
