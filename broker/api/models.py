"""`GET /v1/models`: the models live workers serve, in OpenAI's list format."""

from __future__ import annotations

from starlette.responses import Response

from garage.contract import ModelCard, ModelList, Role

from ..routing import Call, Endpoint, json_response

__all__ = ["endpoints"]


async def list_models(call: Call[None, None]) -> Response:
    """Models served by live workers that are not critical, with how many serve each."""
    served = await call.broker.store.fleet.models()
    cards = [ModelCard(id=model, workers=count) for model, count in sorted(served.items())]
    return json_response(ModelList(data=cards))


endpoints = [
    Endpoint("GET", "/v1/models", list_models, "Models served by live workers", ("models",),
             Role.user, reply=ModelList),
]  # fmt: skip
