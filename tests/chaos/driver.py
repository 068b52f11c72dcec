"""The chaos suite's fault injector, and the Redis it restarts.

`Chaos` runs in a thread of the test process and injects one fault at a time, at seeded
random intervals: SIGKILL a worker and start it again, SIGKILL broker replica B and start
it again on the same port, or restart Redis (a shutdown or a SIGKILL, alternately) on the
same port with the same append-only file. Each fault ends with its restart, so faults never
overlap and every kind is counted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ..e2e.conftest import Proc
from ..support import free_port, spawn, wait_until

__all__ = ["Chaos", "Faults", "Profile", "RedisServer", "Restartable"]


@dataclass(frozen=True)
class Profile:
    """How big a run is: the quick profile by default, the large one by environment."""

    jobs: int  # requests in the batch
    streamed: int  # native jobs submitted during the chaos and read live
    seed: int
    report: Path | None  # where the counts go as JSON, if anywhere

    @classmethod
    def from_env(cls) -> Profile:
        jobs = int(os.environ.get("GARAGE_CHAOS_JOBS", "240"))
        report = os.environ.get("GARAGE_CHAOS_REPORT")
        return cls(
            jobs=jobs,
            streamed=max(8, min(150, jobs // 40)),
            seed=int(os.environ.get("GARAGE_CHAOS_SEED", "16")),
            report=Path(report) if report else None,
        )

    @property
    def timeout_s(self) -> float:
        """The whole test's limit: generous, as the 2-core CI machine is shared."""
        return 150 + self.jobs * 0.15


class RedisServer:
    """redis-server on a fixed port with append-only persistence, fsynced on every write, so
    it can be stopped and started again on its data as an operator's restart would."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.data_dir / f"redis-{self.starts}.log"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--appendonly", "yes",
                "--appendfsync", "always", "--save", ""]  # fmt: skip
        self.process = spawn(args, log=log)
        wait_until(lambda: self._answers(log), timeout_s=30, what="redis-server to answer")

    def _answers(self, log: Path) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{log.read_text()}")
        try:
            with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.ConnectionError:  # also LOADING while it reads its file
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


class Restartable:
    """A process the driver kills and starts again; `start` spawns a fresh one."""

    def __init__(self, name: str, start: Callable[[], Proc]) -> None:
        self.name = name
        self._start = start
        self.proc = start()

    @property
    def url(self) -> str:
        return self.proc.url

    def kill(self) -> None:
        self.proc.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.proc = self._start()


@dataclass
class Faults:
    worker_kills: int = 0
    broker_kills: int = 0
    redis_restarts: int = 0
    redis_kills: int = 0  # the Redis restarts that began with a SIGKILL, not a shutdown
    streaming_kills: int = 0  # the worker kills aimed at a job read live
    log: list[str] = field(default_factory=list)  # "12.3 s: kill -9 worker rig-2"

    @property
    def every_kind(self) -> bool:
        """Whether each kind happened: a worker kill, a broker kill, and Redis restarted
        both after a shutdown and after a SIGKILL."""
        shutdowns = self.redis_restarts - self.redis_kills
        return min(self.worker_kills, self.broker_kills, shutdowns, self.redis_kills) > 0


class Chaos:
    """Injects faults from a thread until `stop`: one at a time, each a kill and a restart,
    after a random gap. The first four are a worker kill, a broker kill and two Redis
    restarts (a shutdown, then a SIGKILL), in a random order; then worker kills are three
    times as likely as each of the others. Half the worker kills go to the worker that
    `busy_worker` names, if it names one (the one running a job read live)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        workers: list[Restartable],
        broker: Restartable,
        redis_server: RedisServer,
        busy_worker: Callable[[], str | None] = lambda: None,
        gap_s: tuple[float, float] = (1.0, 2.5),
    ) -> None:
        self.rng = rng
        self.workers = workers
        self.broker = broker
        self.redis = redis_server
        self.busy_worker = busy_worker
        self.gap_s = gap_s
        self.faults = Faults()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._started = 0.0
        self._error: str | None = None

    def start(self) -> Chaos:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> Faults:
        """Stops after the fault under way (its restart included); raises what went wrong
        in the thread, if anything."""
        self.halt()
        assert not self._thread.is_alive(), "the chaos driver did not stop"
        assert self._error is None, f"the chaos driver failed:\n{self._error}"
        return self.faults

    def halt(self) -> None:
        """Stops after the fault under way, whatever happened: a test that failed must
        not leave the thread starting processes its teardown does not know about."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            kinds = self._plan()
            while not self._stopping.wait(self.rng.uniform(*self.gap_s)):
                getattr(self, f"_{next(kinds)}")()
        except BaseException:  # the test reads it in `stop`
            self._error = traceback.format_exc()

    def _plan(self) -> Iterator[str]:
        kinds = ["worker", "broker", "redis", "redis"]
        self.rng.shuffle(kinds)
        yield from kinds
        while True:
            yield self.rng.choices(["worker", "broker", "redis"], weights=[3, 1, 1])[0]

    def _note(self, what: str) -> None:
        self.faults.log.append(f"{time.monotonic() - self._started:6.1f} s: {what}")

    def _worker(self) -> None:
        busy = self.busy_worker() if self.rng.random() < 0.5 else None
        chosen = [w for w in self.workers if w.name == busy]
        worker = chosen[0] if chosen else self.rng.choice(self.workers)
        self._note(f"kill -9 worker {worker.name}{' (streaming)' if chosen else ''}")
        worker.kill()
        self.faults.worker_kills += 1
        self.faults.streaming_kills += bool(chosen)
        time.sleep(self.rng.uniform(0.0, 1.0))
        worker.restart()

    def _broker(self) -> None:
        self._note(f"kill -9 broker {self.broker.name}")
        self.broker.kill()
        self.faults.broker_kills += 1
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.broker.restart()
        self._note(f"broker {self.broker.name} serves again")

    def _redis(self) -> None:
        kill = self.faults.redis_restarts % 2 == 1  # shutdown first, then SIGKILL, ...
        self._note(f"{'kill -9' if kill else 'shut down'} redis")
        self.redis.stop(signal.SIGKILL if kill else signal.SIGTERM)
        self.faults.redis_restarts += 1
        self.faults.redis_kills += kill
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.redis.start()
        self._note("redis answers again")
