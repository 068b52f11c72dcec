"""A job's path through the broker: submitted (`service.py`), leased and reported on
(`leasing.py`), with parked polls (`polls.py`) and this process's pub/sub (`notify.py`)
in between. The API modules are adapters over `JobService` and `LeaseService`."""

from .leasing import LeaseService
from .notify import JobEnd, Notifier
from .service import JobService

__all__ = ["JobEnd", "JobService", "LeaseService", "Notifier"]
