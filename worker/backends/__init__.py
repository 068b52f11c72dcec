"""Backend adapters: one module per inference-server API, behind the `Backend` protocol.

`make_backend` picks the adapter for a backend kind; the worker never imports an adapter
module directly. `ollama` speaks Ollama's native API; `openai` speaks the OpenAI-compatible
API of vLLM, llama.cpp server, TGI, SGLang, LM Studio and cloud services; `demo` is no
model at all (see `demo.py`), for trying garage where no backend runs.
"""

from __future__ import annotations

from typing import Literal, get_args

import httpx

from .base import (
    Backend,
    BackendError,
    BackendRejected,
    BackendResult,
    BackendUnavailable,
    OnText,
)
from .demo import DEMO_MODEL, DemoBackend
from .ollama import OllamaBackend
from .openai import OpenAIBackend

__all__ = [
    "BACKEND_KINDS",
    "DEMO_MODEL",
    "Backend",
    "BackendError",
    "BackendKind",
    "BackendRejected",
    "BackendResult",
    "BackendUnavailable",
    "DemoBackend",
    "OllamaBackend",
    "OnText",
    "OpenAIBackend",
    "make_backend",
]

BackendKind = Literal["ollama", "openai", "demo"]
BACKEND_KINDS: tuple[str, ...] = get_args(BackendKind)


def make_backend(
    kind: str,
    base_url: str,
    http: httpx.AsyncClient,
    api_key: str | None = None,
    *,
    demo_tokens_per_s: float = 40.0,
) -> Backend:
    """The adapter for a backend `kind` (`ollama` or `openai`) at `base_url`.

    `http` is the caller's client and stays the caller's to close. Its timeouts apply to
    every request but `ping`, so give it a generous read timeout: a backend loading a
    model can be silent for a minute before the first token.
    """
    match kind:
        case "ollama":
            return OllamaBackend(http, base_url, api_key=api_key)
        case "openai":
            return OpenAIBackend(http, base_url, api_key=api_key)
        case "demo":
            return DemoBackend(tokens_per_s=demo_tokens_per_s)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")
