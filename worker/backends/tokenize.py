"""The tokenizer an OpenAI-compatible server exposes, found by probing once per worker.

Two servers expose one, each at its root (not under `/v1`), in its own format:

- llama.cpp's server: `POST /tokenize` `{"content": text}` -> `{"tokens": [ids]}`
  (special tokens such as BOS are added only when asked, with `add_special`);
- vLLM: `POST /tokenize` `{"model", "prompt", "add_special_tokens": false}` ->
  `{"count": n, "max_model_len": m, "tokens": [ids]}`.

The first count tries llama.cpp's format, then vLLM's: llama.cpp answers a body without
`content` with no tokens at all rather than an error, so the other order would take its
empty answer for a count. A format that counts a non-empty text as at least one token is
kept and used from then on; a server where neither does (404 on both, say) is not asked
again. A transport failure or a 5xx decides nothing: that count is None and the next one
probes again.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any

import httpx

from .base import PING_TIMEOUT_S

__all__ = ["ServerTokenizer", "TokenizerFormat"]

logger = logging.getLogger(__name__)


class TokenizerFormat(StrEnum):
    llama_cpp = "llama.cpp"
    vllm = "vllm"


class _Undecided(Exception):
    """The server could not be asked (down, timed out, 5xx): nothing learned."""


class ServerTokenizer:
    def __init__(self, http: httpx.AsyncClient, root_url: str, headers: dict[str, str]) -> None:
        self._http = http
        self._url = root_url.rstrip("/") + "/tokenize"
        self._headers = headers
        self._probed = False
        self.format: TokenizerFormat | None = None  # once probed: the one that works, if any
        self._probing = asyncio.Lock()

    async def count(self, model: str, text: str) -> int | None:
        """Tokens in `text` by the server's tokenizer; None where it has none or could
        not be asked now. `text` is not empty."""
        if not self._probed:
            async with self._probing:
                if not self._probed:
                    return await self._probe(model, text)
        if self.format is None:
            return None
        try:
            return await self._ask(self.format, model, text)
        except _Undecided:
            return None

    async def _probe(self, model: str, text: str) -> int | None:
        for candidate in TokenizerFormat:
            try:
                tokens = await self._ask(candidate, model, text)
            except _Undecided:
                return None
            if tokens:
                self.format, self._probed = candidate, True
                logger.info("backend.tokenizer", extra={"format": candidate.value})
                return tokens
        self._probed = True
        logger.info("backend.no_tokenizer", extra={"url": self._url})
        return None

    async def _ask(self, kind: TokenizerFormat, model: str, text: str) -> int | None:
        """The count in one format; None where the server does not answer that format."""
        body: dict[str, Any] = (
            {"content": text}
            if kind is TokenizerFormat.llama_cpp
            else {"model": model, "prompt": text, "add_special_tokens": False}
        )
        try:
            response = await self._http.post(
                self._url, json=body, headers=self._headers, timeout=PING_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            raise _Undecided from exc
        if response.status_code >= 500:
            raise _Undecided
        if not response.is_success:
            return None
        try:
            reply = response.json()
        except ValueError:
            return None
        return _count_in(reply)


def _count_in(reply: Any) -> int | None:
    if not isinstance(reply, dict):
        return None
    count = reply.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    tokens = reply.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None
