"""`GET /v1/models`: the models live workers serve, in OpenAI's list format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from garage.contract import ModelCard, ModelList, Role

from ..deps import BrokerDep, Caller
from ..responses import model_response

__all__ = ["router"]

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(broker: BrokerDep, caller: Caller) -> Response:
    """Models served by live workers that are not critical, with how many serve each."""
    caller.require(Role.user)
    served = await broker.store.fleet.models()
    cards = [ModelCard(id=model, workers=count) for model, count in sorted(served.items())]
    return model_response(ModelList(data=cards))
