"""A peer's two worker processes: started from its own command line in the bench folder
(where `peers.<peer>` is importable), each as the leader of its own process group, with the
peer's Redis URL and settings in the environment; ready when the peer says so; stopped with
their groups when the block ends, whatever ends it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from processes import GRACE_S, start, stop

__all__ = ["BENCH", "READY", "TUNED_ENV", "URL_ENV", "pair", "tuned"]

BENCH = Path(__file__).resolve().parent.parent
URL_ENV = "BENCH_PEER_REDIS"  # the peer's database: redis://host:port/db
TUNED_ENV = "BENCH_PEER_TUNED"  # "1": the peer's tuned redelivery settings
READY = "bench:ready"  # a counter each worker increments once it consumes (where no API says)
STARTUP_S = 60.0


def tuned() -> bool:
    """In a worker: whether it was started with the tuned settings."""
    return os.environ.get(TUNED_ENV) == "1"


@contextlib.contextmanager
def pair(
    commands: Sequence[Sequence[str]],
    *,
    name: str,
    folder: Path,
    env: dict[str, str],
    ready: Callable[[], bool],
    grace_s: float = GRACE_S,
) -> Iterator[list[int]]:
    """Runs `commands` until the block ends; yields their pids (each a process group's
    leader) once `ready()`; SIGKILL to what is left `grace_s` after SIGTERM. The logs are
    `folder/<name>-<i>.log`."""
    processes = []
    logs = [folder / f"{name}-{i}.log" for i in range(len(commands))]
    try:
        for command, log in zip(commands, logs, strict=True):
            processes.append(start(command, log=log, cwd=BENCH, env={**os.environ, **env}))
        deadline = time.monotonic() + STARTUP_S
        while not ready():
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                tails = "\n".join(f"{log}:\n{log.read_text()[-2000:]}" for log in logs)
                raise RuntimeError(f"{name}: the workers did not come up\n{tails}")
            time.sleep(0.05)
        yield [process.pid for process in processes]
    finally:
        stop(processes, grace_s)
