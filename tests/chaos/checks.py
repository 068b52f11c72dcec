"""What the chaos suite reads after a run: a job's event stream, the brokers' counters
and what the processes' logs say about accepted results."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
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


_SUCCEEDED = re.compile(r"job\.succeeded job_id=(\S+)")
_COMPLETED = re.compile(r"job\.completed job_id=(\S+) attempt=(\d+)")
_REFUSED = re.compile(r"job\.result_refused job_id=(\S+)")
_LEASE_LOST = re.compile(r"job\.stop job_id=(\S+) reason=lease lost")


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
        for log in logs:
            text = log.read_text(errors="replace")
            for job_id, attempt in _COMPLETED.findall(text):
                accepted[job_id].append(int(attempt))
            refused += len(_REFUSED.findall(text))
            lease_lost += len(_LEASE_LOST.findall(text))
        return cls(dict(accepted), refused, lease_lost)


def accepted_by_brokers(logs: Iterable[Path]) -> Counter[str]:
    """How many times the brokers' logs (killed replicas' included) say they accepted each
    job's result: logged after the script took it, so a kill can only lose a line."""
    accepted: Counter[str] = Counter()
    for log in logs:
        accepted.update(_SUCCEEDED.findall(log.read_text(errors="replace")))
    return accepted
