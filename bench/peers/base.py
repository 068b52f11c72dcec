"""What every peer module provides, and the figures it hands back.

A `Peer` opens a `Session` on one Redis database (its own number, flushed when the session
opens and closes), with the peer's defaults or with its tuned redelivery settings. Within
a session the runner starts the peer's two worker processes as often as it needs them, and
drives jobs through the peer's own client and result mechanism.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["WORKER", "Drain", "Peer", "Queued", "Session", "Setting", "Start"]

WORKER = "worker"  # the kill target every peer has: the worker whole, every process of it


@dataclass(frozen=True)
class Setting:
    """One setting a peer runs with: its value with defaults and when tuned, and where the
    peer documents it (a doc page, or the source file and name)."""

    name: str
    default: str
    tuned: str
    source: str


@dataclass(frozen=True)
class Queued:
    """Jobs queued with no worker running: the peer's handles on them, and how fast they
    went in (jobs/s, from the first submit to the last one answered)."""

    handles: Any
    per_s: float


@dataclass(frozen=True)
class Drain:
    """Queued jobs drained: from the first job's start to the last job's end, both read from
    the jobs' own records (garage's broker timestamps; the time each peer's job returns)."""

    jobs: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.jobs / max(self.seconds, 1e-6)


@dataclass(frozen=True)
class Start:
    """One start of a held job: the process that runs it, and the wall-clock time
    (time.time()) it started."""

    pid: int
    at: float


class Session(Protocol):
    def workers(self, *, for_kill: bool = False) -> AbstractContextManager[list[int]]:
        """Two workers, ready to take jobs; the pids of the processes started (each the
        leader of its process group). Stopped, with all they started, when the block
        ends. `for_kill`: workers for the kill scenario (garage's demo backend then streams
        at a pace, so a job takes a known time); whatever the scenario left in Redis is
        dropped when the block ends."""
        ...

    def round_trips(self, rounds: int, *, warmup: int, budget_s: float) -> list[float]:
        """Milliseconds of each of up to `rounds` jobs run one at a time (submit, then wait
        for the result through the peer's own mechanism), after `warmup` untimed ones,
        stopping once `budget_s` seconds have gone by. Needs workers running."""
        ...

    def enqueue(self, jobs: int) -> Queued:
        """Queues `jobs` no-op jobs (no worker should be running)."""
        ...

    def drained(self, queued: Queued) -> Drain:
        """Waits until every queued job has succeeded; the drain's span."""
        ...

    def hold(self, token: str, job_s: float) -> None:
        """Submits one job that takes `job_s` seconds and records each of its starts."""
        ...

    def next_start(self, token: str, timeout_s: float) -> Start | None:
        """The held job's next start not returned yet, or None after `timeout_s`."""
        ...


class Peer(Protocol):
    name: str
    kill_targets: tuple[str, ...]  # WORKER, and a process inside the worker where it has one
    settings: tuple[Setting, ...]

    def session(
        self, redis_url: str, db: int, folder: Path, *, tuned: bool
    ) -> AbstractContextManager[Session]: ...
