"""What the chaos suite reads after a run: a job's event stream, the brokers' counters
and what the processes' logs say about accepted results."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..e2e.conftest import ADMIN_HEADERS
from .client import TERMINAL

__all__ = ["WorkerLogs", "accepted_by_brokers", "scrape", "stream_problem"]


def stream_problem(events: list[dict[str, Any]], text: str) -> str | None:
    """What is wrong with a finished job's event stream, or None. A `restart` must stand
    between two attempts' text (no splice), every event comes once, the stream ends with
    one `done`, and the text after the last restart is the job's result text."""
    ids = [e["id"] for e in events]
    if len(set(ids)) != len(ids):
        return f"an event came twice: {ids}"
    attempt: int | None = None
    since_restart = ""
    for event in events:
        kind = event["type"]
        if kind == "restart":
            if attempt is not None and event["attempt"] <= attempt:
                return f"restart to attempt {event['attempt']} after attempt {attempt}"
            attempt, since_restart = event["attempt"], ""
        elif kind == "delta":
            attempt = attempt or event["attempt"]
            if event["attempt"] != attempt:
                return f"attempt {event['attempt']}'s text spliced onto attempt {attempt}'s"
            since_restart += event["text"]
        elif kind in TERMINAL:
            if event is not events[-1]:
                return f"events after the {kind} event"
            if attempt is not None and event["attempt"] != attempt:
                return f"{kind} of attempt {event['attempt']} after text of attempt {attempt}"
    if not events or events[-1]["type"] != "done":
        return f"ends with {events[-1]['type'] if events else 'nothing'}, not done"
    if since_restart != text:
        return f"text since the last restart {since_restart!r} is not the result {text!r}"
    return None


_METRIC = re.compile(r"^(garage_\w+(?:\{[^}]*\})?) (\S+)$")


def scrape(url: str) -> Counter[str]:
    """A broker's `garage_*` counters and gauges, by name with labels."""
    text = httpx.get(f"{url}/metrics", headers=ADMIN_HEADERS, timeout=10).text
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if matched := _METRIC.match(line):
            found[matched[1]] += float(matched[2])
    return found


def _log_events(logs: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """The JSON log lines of the processes' logs (`garage` logs JSON when not on a
    terminal); a line cut by a SIGKILL, or another process's text, is skipped."""
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                yield json.loads(line)
            except ValueError:
                continue


@dataclass
class WorkerLogs:
    """What the workers' logs (those of killed processes included) say about results."""

    accepted: dict[str, list[int]]  # job id -> the attempts whose result the broker took
    refused: int  # final reports answered 409 or 404: a late result, fenced
    lease_lost: int  # jobs a worker stopped mid-stream because its lease had moved on

    @classmethod
    def read(cls, logs: Iterable[Path]) -> WorkerLogs:
        accepted: dict[str, list[int]] = defaultdict(list)
        refused = lease_lost = 0
        for entry in _log_events(logs):
            event = entry.get("event")
            if event == "job.completed":
                accepted[entry["job_id"]].append(int(entry["attempt"]))
            elif event == "job.result_refused":
                refused += 1
            elif event == "job.stop" and entry.get("reason") == "lease lost":
                lease_lost += 1
        return cls(dict(accepted), refused, lease_lost)


def accepted_by_brokers(logs: Iterable[Path]) -> Counter[str]:
    """How many times the brokers' logs (killed replicas' included) say they accepted each
    job's result: logged after the script took it, so a kill can only lose a line."""
    return Counter(e["job_id"] for e in _log_events(logs) if e.get("event") == "job.succeeded")
