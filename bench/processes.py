"""The child processes of a benchmark, each started as the leader of its own process group,
so that stopping it stops whatever it started too (a Celery pool process, dramatiq's worker
process), and a block that ends for any reason leaves nothing running. A descendant that
left the group (RQ's work horse starts a session of its own) is found through the process
tree and killed with it.

`servers.py` starts garage's processes with it and `peers/` the peers' workers; what the
processes are and when they count as ready is theirs to say.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import psutil

__all__ = ["GRACE_S", "descendants", "kill", "kill_tree", "running", "start", "stop"]

GRACE_S = 15.0  # garage's daemon drains a running job on SIGTERM; a peer's warm shutdown too


def start(
    command: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`command` in a new session (its own process group), output to `log`."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            list(command), cwd=cwd, env=dict(env) if env is not None else None,
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def kill(group: int, sig: int = signal.SIGKILL) -> None:
    """Sends `sig` to every process of the group led by `group` (gone already: nothing)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def descendants(pid: int) -> list[psutil.Process]:
    """The processes `pid` started, and theirs (none once it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_tree(pid: int) -> None:
    """SIGKILL to `pid`'s group and to every descendant of `pid`, whatever its group: a
    worker dying whole, as when its machine goes."""
    below = descendants(pid)
    kill(pid)
    for process in below:
        with contextlib.suppress(psutil.Error):
            process.kill()


def stop(processes: Sequence[subprocess.Popen[bytes]], grace_s: float = GRACE_S) -> None:
    """SIGTERM to each group, SIGKILL to whatever is left after `grace_s` (the groups and
    every descendant seen on the way), and every leader reaped."""
    below = {p.pid: descendants(p.pid) for p in processes}
    for process in processes:
        if process.poll() is None:
            kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        kill(process.pid)  # a group whose leader is gone may still have members
        for child in below[process.pid]:
            with contextlib.suppress(psutil.Error):
                child.kill()
        process.wait()


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """`process` until the block ends, then stopped with its group."""
    try:
        yield process
    finally:
        stop([process])
