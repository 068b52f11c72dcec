"""Prometheus metrics: what this broker process did, and what the shared store holds.

Counters (jobs submitted, leases handed out, results accepted, stale reports refused) are
this process's own, as Prometheus expects of replicas; it sums them. Gauges that describe
the whole system (queued jobs per model and lane, running jobs, live workers) are read
from Redis when `/metrics` is scraped, so every replica reports the same values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from .store import Store

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.submitted = Counter(
            "garage_jobs_submitted",
            "Jobs queued through this broker.",
            ["model", "lane"],
            registry=self.registry,
        )
        self.leased = Counter(
            "garage_leases",
            "Leases handed out by this broker.",
            ["model"],
            registry=self.registry,
        )
        self.finished = Counter(
            "garage_job_reports",
            "Final reports accepted by this broker, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.stale = Counter(
            "garage_stale_reports",
            "Reports refused because the lease had moved on (409).",
            registry=self.registry,
        )
        self.queued = Gauge(
            "garage_jobs_queued",
            "Jobs waiting, per model and lane.",
            ["model", "lane"],
            registry=self.registry,
        )
        self.running = Gauge("garage_jobs_running", "Jobs under a lease.", registry=self.registry)
        self.workers = Gauge(
            "garage_workers_live",
            "Workers that polled recently, by health.",
            ["health"],
            registry=self.registry,
        )
        self.parked = Gauge(
            "garage_polls_parked", "Worker polls parked in this broker.", registry=self.registry
        )

    async def render(self, store: Store, parked: int) -> bytes:
        """The exposition text, with the store-wide gauges read now."""
        self.queued.clear()
        for (model, lane), depth in (await store.jobs.queue_depths()).items():
            self.queued.labels(model, lane).set(depth)
        self.running.set(await store.leases.running())
        self.workers.clear()
        for worker in await store.fleet.live():
            self.workers.labels(worker.health.state.value).inc()
        self.parked.set(parked)
        return generate_latest(self.registry)
