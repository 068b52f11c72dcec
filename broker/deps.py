"""What each request handler gets injected: the broker's runtime parts and the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from .auth import Authenticator, Principal
from .clock import Clock
from .metrics import Metrics
from .notify import Notifier
from .settings import BrokerSettings
from .store import Store

__all__ = ["Broker", "BrokerDep", "Caller", "get_broker", "get_principal"]


@dataclass
class Broker:
    settings: BrokerSettings
    store: Store
    clock: Clock
    notifier: Notifier
    auth: Authenticator
    metrics: Metrics


async def get_broker(request: Request) -> Broker:  # async: FastAPI runs sync deps in threads
    return request.app.state.broker


BrokerDep = Annotated[Broker, Depends(get_broker)]


async def get_principal(
    broker: BrokerDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return await broker.auth.authenticate(authorization)


Caller = Annotated[Principal, Depends(get_principal)]
