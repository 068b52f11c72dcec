"""The rig's health as the worker reports it: the backend's and the GPUs', in one verdict."""

from __future__ import annotations

from collections.abc import Sequence

from garage.contract import Health, HealthState

__all__ = ["combine"]

_RANK = {HealthState.ok: 0, HealthState.warn: 1, HealthState.critical: 2}


def combine(parts: Sequence[Health]) -> Health:
    """The worst state of `parts`, with every reason given."""
    state = max((part.state for part in parts), key=_RANK.__getitem__, default=HealthState.ok)
    return Health(state=state, reasons=[reason for part in parts for reason in part.reasons])
