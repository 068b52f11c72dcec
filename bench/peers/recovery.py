"""The kill scenario, the same for every peer: one job that takes `job_s` seconds is
submitted to two idle workers; once it has run for half of that, the worker holding it is
killed with SIGKILL (the worker whole: its process group and every process it started; or,
for a peer whose job runs in a process of its own, that process alone); then the clock
runs until the job starts again, as the job's own record of its starts says.

Seconds from the kill to the second start, or None when it did not start again within
`limit_s` (the figure is then the limit waited, never a guess).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass

import psutil
from processes import kill_tree

from .base import WORKER, Session

__all__ = ["Recovery", "measure"]

START_TIMEOUT_S = 60.0  # for the job's first start (arq polls every 0.5 s by default)


@dataclass(frozen=True)
class Recovery:
    target: str  # WORKER, or the process inside a worker that was killed
    seconds: float | None  # from the kill to the second start; None: not within limit_s
    limit_s: float
    killed_worker: int  # 0 or 1
    rerun_worker: int | None  # the worker the second start ran in (None: unknown or none)


def measure(
    session: Session, pids: list[int], target: str, *, job_s: float, limit_s: float
) -> Recovery:
    """Runs the scenario on the two workers `pids` (as `Session.workers` yields them)."""
    token = uuid.uuid4().hex
    session.hold(token, job_s)
    first = session.next_start(token, START_TIMEOUT_S)
    if first is None:
        raise RuntimeError(f"the held job did not start within {START_TIMEOUT_S:g} s")
    owner = _worker_of(first.pid, pids)
    if owner is None:
        raise RuntimeError(f"the held job runs in {first.pid}, in neither worker {pids}")
    time.sleep(max(0.0, first.at + job_s / 2 - time.time()))  # the kill lands mid-job
    if target == WORKER:
        kill_tree(pids[owner])
    else:
        os.kill(first.pid, signal.SIGKILL)
    killed_at = time.time()
    second = session.next_start(token, limit_s)
    if second is None:
        return Recovery(target, None, limit_s, owner, None)
    return Recovery(target, second.at - killed_at, limit_s, owner, _worker_of(second.pid, pids))


def _worker_of(pid: int, pids: list[int]) -> int | None:
    """Which of the workers `pids` the process `pid` belongs to (itself or an ancestor)."""
    try:
        process = psutil.Process(pid)
        lineage = [process.pid, *(parent.pid for parent in process.parents())]
    except psutil.Error:
        return None
    for ancestor in lineage:
        if ancestor in pids:
            return pids.index(ancestor)
    return None
