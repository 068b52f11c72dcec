"""The broker's runtime parts, built once by `build_app` and handed to every endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from .auth import Authenticator
from .clock import Clock
from .jobs.leasing import LeaseService
from .jobs.notify import Notifier
from .jobs.service import JobService
from .metrics import Metrics
from .settings import BrokerSettings
from .store import Store

__all__ = ["Broker"]


@dataclass
class Broker:
    settings: BrokerSettings
    store: Store
    clock: Clock
    auth: Authenticator
    metrics: Metrics
    notifier: Notifier  # this process's pub/sub: wakes, ends, stream growth
    jobs: JobService  # a job's path on the submitter's side
    leases: LeaseService  # a job's path on the worker's side

    def stop_waiting(self) -> None:
        """Before the server stops: requests that wait (long-polls, event streams) answer
        with what they have and end, rather than being cut when the server closes."""
        self.notifier.stop_waiting()
        self.leases.stop()
