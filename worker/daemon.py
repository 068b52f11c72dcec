"""The worker daemon: pulls jobs from the broker and runs them on the rig's backend.

One loop long-polls for as many jobs as there are free slots; each leased job runs in its
own task (`runner.py`). A monitor checks the backend and the GPUs every few seconds, and
the poll carries what it found: when the rig is critical (backend down, GPU too hot or
lost) the worker stops asking for work and says why in the fleet view, and resumes when it
clears. Polls to a broker that is down retry with backoff; jobs in hand keep running.

SIGTERM drains: no new work, running jobs get `drain_grace_s` to finish, then the rest are
handed back (requeued at once, no attempt used). A second SIGTERM hands back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
import time
from typing import Any

from garage.client import WorkerAPI
from garage.contract import (
    MAX_MODEL_NAME,
    MAX_POLL_MODELS,
    GpuInfo,
    GpuLimits,
    Health,
    HealthState,
    Lease,
    PollRequest,
    WorkerState,
    __version__,
)

from .backends import Backend
from .gpu import NvmlProbe, assess
from .health import combine
from .retries import call_broker
from .runner import JobRunner
from .settings import WorkerSettings
from .usage import UsageCounter

__all__ = ["Worker"]

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:@-]")

logger = logging.getLogger(__name__)

_HAND_BACK_S = 10.0  # how long a stopping worker tries to hand its jobs back


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        api: WorkerAPI,
        backend: Backend,
        gpu: NvmlProbe | None,
    ) -> None:
        self.settings = settings
        self._api = api
        self._backend = backend
        self._usage = UsageCounter(backend.count_tokens)
        self._gpu = gpu
        # the id allows fewer characters than a name: "rig 1 <x>" polls as "rig-1--x--..."
        self.worker_id = f"{_ID_UNSAFE.sub('-', settings.name)[:100]}-{secrets.token_hex(3)}"
        self.models: list[str] = []
        self.gpus: list[GpuInfo] = []
        self.health = Health()
        self.jobs: dict[str, JobRunner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()  # a slot freed, health changed, or drain began
        limits = settings.gpu
        self._gpu_limits = GpuLimits(
            temp_warn_c=limits.temp_warn_c,
            temp_critical_c=limits.temp_critical_c,
            memory_warn_pct=limits.memory_warn_pct,
        )
        self._check_now = asyncio.Event()
        self._draining = asyncio.Event()
        self._hand_back_now = asyncio.Event()
        self._models_read_at = 0.0

    # signals

    def request_stop(self) -> None:
        """First call: drain. Second call: hand back what is running, now."""
        if self._draining.is_set():
            logger.info("worker.hand_back_now", extra={"worker_id": self.worker_id})
            self._hand_back_now.set()
        else:
            logger.info("worker.draining", extra={"worker_id": self.worker_id})
            self._draining.set()
        self._changed.set()

    # main loop

    async def run(self) -> None:
        logger.info(
            "worker.starting",
            extra={"worker_id": self.worker_id, "backend": self.settings.backend_url},
        )
        await self._check()
        monitor = asyncio.create_task(self._monitor())
        try:
            while not self._draining.is_set():
                for lease in await self._poll_once():
                    self._start(lease)
            await self._drain()
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        logger.info("worker.stopped", extra={"worker_id": self.worker_id})

    @property
    def pulling(self) -> bool:
        return bool(self.models) and self.health.state is not HealthState.critical

    def _poll_request(self, free: int) -> PollRequest:
        return PollRequest(
            **self._state_fields(free),
            wait_s=self.settings.poll_wait_s if free else self.settings.health_interval_s,
        )

    def _state_fields(self, free: int) -> dict[str, Any]:
        return dict(
            worker_id=self.worker_id,
            name=self.settings.name,
            models=self.models,
            slots_free=free,
            slots_total=self.settings.slots,
            backend=self.settings.backend,
            version=__version__,
            health=self.health,
            gpus=self.gpus,
            gpu_limits=self._gpu_limits,
            fallback_after_s=self.settings.fallback_after_s,
        )

    async def _heartbeat(self) -> None:
        """Tells the broker of a health change now; the parked poll told it the old one."""
        free = self.settings.slots - len(self.jobs) if self.pulling else 0
        try:
            await self._api.heartbeat(WorkerState(**self._state_fields(free)))
        except Exception as exc:  # the next poll carries the same news
            logger.info("worker.heartbeat_failed", extra={"error": str(exc)})

    async def _poll_once(self) -> list[Lease]:
        free = self.settings.slots - len(self.jobs) if self.pulling else 0
        poll = asyncio.create_task(self._send_poll(self._poll_request(free)))
        while not poll.done():
            self._changed.clear()
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait({poll, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if not poll.done() and (free == 0 or self._draining.is_set() or not self.pulling):
                # A poll for no slots cannot be handed jobs, so it is safe to drop; a
                # draining worker, or one that turned critical, drops its poll too (the
                # broker sees the disconnect and leases nothing to it, or hands back what
                # it leased as the poll left). A poll that may bring jobs is otherwise
                # awaited.
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll
                return []
        return poll.result()

    async def _send_poll(self, request: PollRequest) -> list[Lease]:
        reply = await call_broker("poll", functools.partial(self._api.poll, request))
        return reply.leases

    def _start(self, lease: Lease) -> None:
        runner = JobRunner(
            lease,
            api=self._api,
            backend=self._backend,
            usage=self._usage,
            heartbeat_s=self.settings.heartbeat_s,
        )
        # Keyed by lease: the broker may lease a job to this worker again (its earlier
        # lease ran out) while the runner of the earlier lease is still winding down.
        self.jobs[lease.lease_token] = runner
        task = asyncio.create_task(self._run_job(runner))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_job(self, runner: JobRunner) -> None:
        try:
            await runner.run()
        except Exception:  # loop boundary: one job's failure must not stop the worker
            logger.exception("job.runner_failed", extra={"job_id": runner.lease.job_id})
        finally:
            del self.jobs[runner.lease.lease_token]
            if runner.backend_failed:
                self._check_now.set()
            self._changed.set()

    async def _drain(self) -> None:
        if self._tasks:
            logger.info(
                "worker.drain",
                extra={"running": len(self._tasks), "grace_s": self.settings.drain_grace_s},
            )
            everything = asyncio.gather(*self._tasks, return_exceptions=True)
            hurry = asyncio.create_task(self._hand_back_now.wait())
            await asyncio.wait(
                {everything, hurry},
                timeout=self.settings.drain_grace_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            hurry.cancel()
            for runner in list(self.jobs.values()):
                runner.hand_back()
            # A hand-back only spares the broker waiting out the lease, so a broker that
            # does not answer is not waited for long: the job comes back when it expires.
            await asyncio.wait({everything}, timeout=_HAND_BACK_S)
            if not everything.done():
                logger.warning("worker.hand_back_abandoned", extra={"jobs": len(self._tasks)})
                for task in list(self._tasks):
                    task.cancel()
                await everything

    # health

    async def _monitor(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), self.settings.health_interval_s)
            self._check_now.clear()
            try:
                await self._check()
            except Exception:  # loop boundary: keep monitoring whatever one check did
                logger.exception("health.check_failed")

    async def _check(self) -> None:
        """Reads the backend and the GPUs and updates what the next poll reports."""
        parts: list[Health] = []
        backend_up = await self._backend.ping()
        if not backend_up:
            parts.append(
                Health(
                    state=HealthState.critical,
                    reasons=[f"backend unreachable at {self.settings.backend_url}"],
                )
            )
        elif not self.models or time.monotonic() - self._models_read_at > (
            self.settings.models_refresh_s
        ):
            await self._read_models()
        if self._gpu is not None:
            self.gpus = await self._gpu.read_async()
            parts.append(
                assess(
                    self.gpus,
                    self.settings.gpu,
                    expected_count=self._gpu.expected_count,
                    errors=self._gpu.errors,
                )
            )
        health, before = combine(parts), self.health
        self.health = health
        if health.state is not before.state or health.reasons != before.reasons:
            log = logger.warning if health.state is not HealthState.ok else logger.info
            log(
                "worker.health",
                extra={"state": health.state.value, "reasons": "; ".join(health.reasons)},
            )
            if health.state is not before.state:
                self._changed.set()
            await self._heartbeat()

    async def _read_models(self) -> None:
        try:
            found = await self._backend.list_models()
        except Exception as exc:  # a flaky listing keeps the models we had
            logger.warning("models.read_failed", extra={"error": str(exc)})
            return
        wanted = self.settings.models
        models = [m for m in wanted if m in found] if wanted else found
        servable = [m for m in models if 0 < len(m) <= MAX_MODEL_NAME][:MAX_POLL_MODELS]
        if len(servable) < len(models):  # a poll naming them would be refused
            dropped = [m[:80] for m in models if m not in servable]
            logger.warning("models.unservable", extra={"models": ", ".join(dropped)})
        models = servable
        if wanted and len(models) < len(wanted):
            missing = sorted(set(wanted) - set(found))
            logger.warning("models.missing", extra={"models": ", ".join(missing)})
        if models != self.models:
            logger.info("worker.models", extra={"models": ", ".join(models)})
            self._changed.set()
        self.models = models
        self._models_read_at = time.monotonic()
