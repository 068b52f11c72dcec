"""Fake inference servers for tests: real HTTP on loopback, each server's own wire format.

`ollama.py` speaks Ollama's native API and `openai.py` the OpenAI-compatible API as vLLM
serves it; each has a `build_app(state)` factory and a `python -m tests.fakes.<name>` entry.
This module holds what they share:

- `FakeConfig`, the knobs: models served, pacing, failure modes. Change them while serving.
  Pacing is a first-token delay and a rate, or a continuous-batching engine (`engine.py`,
  `engine=ContinuousBatching(max_seqs, step_ms, prefill_ms)`) that the replies share.
- `FakeState`, the config plus a log of every request and how it ended (`Outcome`), and
  `wait_for` to block on a condition with a deadline.
- Deterministic content: the reply to a prompt is "echo: " + the prompt, one token per word
  (`reply_tokens`); prompt tokens are words (`count_tokens`, and the openai fake's
  `/tokenize`: `token_ids`); an embedding is a unit vector drawn from a hash of the text
  (`embedding`).
- `FakeResponse`, which sends a reply while watching for the client to leave, as real
  servers do, so a test can see a cancelled job reach the backend.
- `control_routes`: `/_fake/requests`, `/_fake/config`, `/_fake/reset`, `/_fake/engine`,
  to observe and steer a fake running as a subprocess.
- `FakeServer` serves an app under uvicorn in a thread; `main` is the command-line entry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import socket
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .engine import ContinuousBatching

__all__ = [
    "DEFAULT_MODELS",
    "ContinuousBatching",
    "Cut",
    "FakeConfig",
    "FakeResponse",
    "FakeServer",
    "FakeState",
    "InjectedError",
    "Outcome",
    "RequestRecord",
    "control_routes",
    "count_tokens",
    "dumps",
    "embedding",
    "main",
    "message_text",
    "paced",
    "reply_tokens",
    "token_ids",
]

DEFAULT_MODELS = ("fake-chat", "fake-embed")


@dataclass
class FakeConfig:
    """What a fake serves and how it misbehaves. Read on every request."""

    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    first_token_s: float = 0.0  # latency before the first token (or an embedding reply)
    tokens_per_s: float = 0.0  # pace after the first token; 0 sends them at once
    # Replies paced by one shared continuous-batching engine instead (engine.py); the two
    # settings above are then unused.
    engine: ContinuousBatching | None = None
    fail_status: int | None = None  # answer generation and embedding with this HTTP status
    fail_message: str = "injected failure"  # the message of fail_status and error_after
    cut_after: int | None = None  # drop the connection after this many tokens, mid-body
    error_after: int | None = None  # after this many tokens, the server's in-stream error
    stall_after: int | None = None  # after this many tokens, silence until the client leaves
    hang: bool = False  # take generation and embedding requests, never send a byte
    embedding_dim: int = 8
    # openai only
    # Honour stream_options.include_usage; False streams no usage chunk, as llama-cpp-python's
    # server and older ones do.
    include_usage: bool = True
    # Serve POST /tokenize in llama.cpp's server's format ("llama.cpp": {"content"} ->
    # {"tokens"}) or vLLM's ("vllm": {"model", "prompt"} -> {"count", "tokens", ...}).
    tokenize: str | None = None
    ignore_stream: bool = False  # answer `stream: true` with one JSON body, as some servers do
    legacy_errors: bool = False  # older vLLM's flat {"object": "error", ...} error body
    api_key: str | None = None  # require `Authorization: Bearer <api_key>`


class Outcome(StrEnum):
    open = "open"  # still being answered
    done = "done"  # the whole reply was sent
    failed = "failed"  # answered with an HTTP error status
    aborted = "aborted"  # the client went away before the reply was complete
    cut = "cut"  # the fake dropped the connection mid-body (cut_after)


@dataclass
class RequestRecord:
    """One request a fake saw, and how it ended."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    outcome: Outcome = Outcome.open
    tokens_sent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    final: dict[str, Any] | None = None  # the last JSON object sent (done line, usage chunk)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FakeState:
    """A fake's knobs and its log of requests; shared with the test that drives it."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self._initial = dataclasses.replace(self.config)
        self.requests: list[RequestRecord] = []
        self.tokenized: list[dict[str, Any]] = []  # bodies of /tokenize requests (openai)
        self._changed = threading.Condition()

    def configure(self, **changes: Any) -> FakeConfig:
        self.config = dataclasses.replace(self.config, **changes)
        return self.config

    def reset(self, **changes: Any) -> None:
        """Forget all requests and go back to the starting config, plus `changes`."""
        with self._changed:
            self.requests.clear()
            self.tokenized.clear()
            self.config = dataclasses.replace(self._initial, **changes)
            self._changed.notify_all()

    def record(self, request: Request, body: dict[str, Any]) -> RequestRecord:
        record = RequestRecord(path=request.url.path, body=body, headers=dict(request.headers))
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()
        return record

    def record_tokenize(self, body: dict[str, Any]) -> None:
        with self._changed:
            self.tokenized.append(body)
            self._changed.notify_all()

    def finish(self, record: RequestRecord, outcome: Outcome) -> None:
        with self._changed:
            record.outcome = outcome
            self._changed.notify_all()

    def matching(self, outcome: str | None = None) -> list[RequestRecord]:
        with self._changed:
            return [r for r in self.requests if outcome is None or r.outcome == outcome]

    def wait_for(self, predicate: Callable[[FakeState], bool], timeout_s: float) -> bool:
        """Block until `predicate(self)` holds; False if `timeout_s` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout_s)


class Cut(Exception):
    """Raised in a reply's body to drop the connection without finishing it."""


class InjectedError(Exception):
    """Raised in a reply's body where the fake must send its in-stream error object."""


def reply_tokens(prompt: str) -> list[str]:
    """The fake's reply to a prompt, one token per word, spaces leading:
    "hi there" -> ["echo:", " hi", " there"]."""
    return re.findall(r"\s*\S+", f"echo: {prompt}")


def count_tokens(texts: Iterable[str]) -> int:
    return sum(len(text.split()) for text in texts)


def token_ids(text: str) -> list[int]:
    """The fake tokenizer (a token per word, as `count_tokens` counts): an id per word."""
    return [2 + int.from_bytes(hashlib.sha256(word.encode()).digest()[:2]) for word in text.split()]


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, or the text parts of a list."""
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for `text`."""
    values: list[float] = []
    seed = text.encode()
    while len(values) < dim:
        seed = hashlib.sha256(seed).digest()
        values.extend(b / 127.5 - 1 for b in seed)
    norm = math.sqrt(sum(v * v for v in values[:dim])) or 1.0
    return [round(v / norm, 6) for v in values[:dim]]


def dumps(value: Any) -> str:
    """Compact JSON, as Go's encoder and pydantic write it."""
    return json.dumps(value, separators=(",", ":"))


async def paced(state: FakeState, record: RequestRecord, tokens: list[str]) -> AsyncIterator[str]:
    """Yield `tokens` at the configured pace; raise Cut or InjectedError where configured,
    at the latest before the end, so a reply never completes when either is set."""
    config = state.config
    engine = config.engine.admit(len(tokens)) if config.engine else contextlib.nullcontext()
    async with engine as sequence:
        for i, token in enumerate(tokens):
            await _stall(config, sent=i)
            _inject(config, sent=i)
            if sequence is not None:
                await sequence.next_token()
            elif delay := (
                config.first_token_s
                if i == 0
                else 1 / config.tokens_per_s
                if config.tokens_per_s
                else 0
            ):
                await asyncio.sleep(delay)
            record.tokens_sent += 1
            yield token
    await _stall(config, sent=None)
    _inject(config, sent=None)


async def _stall(config: FakeConfig, sent: int | None) -> None:
    if config.stall_after is not None and (sent is None or sent >= config.stall_after):
        await asyncio.Event().wait()  # ends when the client leaves (FakeResponse cancels it)


def _inject(config: FakeConfig, sent: int | None) -> None:
    if config.cut_after is not None and (sent is None or sent >= config.cut_after):
        raise Cut
    if config.error_after is not None and (sent is None or sent >= config.error_after):
        raise InjectedError


class FakeResponse(Response):
    """A reply sent while watching for the client to leave.

    Starlette's StreamingResponse only notices a disconnect on some ASGI versions; here the
    body races the disconnect, so the log says `aborted` whenever the client drops a reply
    that is not complete, hung or streaming. `headers_first=False` holds the status line
    back until the first chunk, as Go servers (Ollama) do; `whole` sends one body with a
    Content-Length, for non-streamed replies.
    """

    def __init__(
        self,
        state: FakeState,
        record: RequestRecord,
        chunks: AsyncIterable[bytes | str],
        *,
        status_code: int = 200,
        media_type: str = "application/json",
        headers_first: bool = True,
        whole: bool = False,
    ) -> None:
        self.state = state
        self.record = record
        self.chunks = chunks
        self.status_code = status_code
        self.media_type = media_type
        self.headers_first = headers_first
        self.whole = whole
        self.background = None
        self.init_headers()

    @classmethod
    def json(
        cls, state: FakeState, record: RequestRecord, value: Any, status_code: int = 200
    ) -> FakeResponse:
        async def body() -> AsyncIterator[str]:
            yield dumps(value)

        return cls(state, record, body(), status_code=status_code, whole=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sending = asyncio.ensure_future(self._send(send))
        leaving = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait({sending, leaving}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, leaving):
                task.cancel()
            await asyncio.gather(sending, leaving, return_exceptions=True)
        if sending.cancelled():  # the client left first
            outcome = Outcome.aborted
        elif isinstance(error := sending.exception(), Cut):
            # Returning without the last body message makes uvicorn close the connection.
            outcome = Outcome.cut
        elif error is not None:
            raise error
        else:
            outcome = Outcome.failed if self.status_code >= 400 else Outcome.done
        self.state.finish(self.record, outcome)

    async def _send(self, send: Send) -> None:
        if self.state.config.hang:
            await asyncio.Event().wait()  # never answers; ends when the client leaves
        headers = list(self.raw_headers)
        if self.whole:
            body = b"".join([_bytes(c) async for c in self.chunks])
            headers.append((b"content-length", str(len(body)).encode()))
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
        start = {"type": "http.response.start", "status": self.status_code, "headers": headers}
        started = self.headers_first
        if started:
            await send(start)
        async for chunk in self.chunks:
            if not started:
                await send(start)
                started = True
            await send({"type": "http.response.body", "body": _bytes(chunk), "more_body": True})
        if not started:
            await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _bytes(chunk: bytes | str) -> bytes:
    return chunk.encode() if isinstance(chunk, str) else chunk


def control_routes(state: FakeState) -> list[Route]:
    """`/_fake/...` endpoints for a fake in another process.

    `GET /_fake/requests?outcome=aborted&count=1&timeout_s=5` lists the log, first waiting
    up to `timeout_s` for at least `count` requests (with that outcome, when given).
    `POST /_fake/config` takes a JSON object of FakeConfig fields; `POST /_fake/reset`
    forgets the log and restores the starting config. `GET /_fake/engine` gives the
    continuous-batching engine's counters (steps, tokens, running, waiting), with
    `?since=T` also the times of the sequences that arrived after time.monotonic() T;
    404 without an engine.
    """

    async def requests(request: Request) -> Response:
        outcome = request.query_params.get("outcome")
        count = int(request.query_params.get("count", "0"))
        timeout_s = float(request.query_params.get("timeout_s", "0"))
        if count:
            await asyncio.to_thread(
                state.wait_for, lambda s: len(s.matching(outcome)) >= count, timeout_s
            )
        return JSONResponse({"requests": [r.to_dict() for r in state.matching(outcome)]})

    async def configure(request: Request) -> Response:
        try:
            config = state.configure(**await request.json())
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(dataclasses.asdict(config))

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse(dataclasses.asdict(state.config))

    async def engine(request: Request) -> Response:
        if state.config.engine is None:
            return JSONResponse({"error": "no engine configured"}, status_code=404)
        since = request.query_params.get("since")
        return JSONResponse(state.config.engine.stats(float(since) if since else None))

    return [
        Route("/_fake/requests", requests),
        Route("/_fake/engine", engine),
        Route("/_fake/config", configure, methods=["POST"]),
        Route("/_fake/reset", reset, methods=["POST"]),
    ]


class _Server(uvicorn.Server):
    """uvicorn, telling us once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


def _uvicorn_config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class FakeServer:
    """Serves an ASGI app with uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", ready_timeout_s: float = 10.0):
        self._sock = _bind(host, 0)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._ready = threading.Event()
        self._server = _Server(_uvicorn_config(app), on_started=self._ready.set)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._ready_timeout_s = ready_timeout_s

    def start(self) -> FakeServer:
        self._thread.start()
        if not self._ready.wait(self._ready_timeout_s):
            self.stop()
            raise RuntimeError(f"fake server at {self.url} did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(name: str, build_app: Callable[[FakeState], ASGIApp], argv: Sequence[str] | None) -> None:
    """Serve a fake until interrupted; prints `listening on http://HOST:PORT` once ready."""
    parser = argparse.ArgumentParser(
        prog=f"python -m tests.fakes.{name}", description=f"A fake {name} server for tests."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="0: all at once")
    parser.add_argument("--first-token-ms", type=float, default=0.0)
    parser.add_argument(
        "--max-seqs", type=int, help="pace replies by a continuous-batching engine (engine.py)"
    )
    parser.add_argument("--step-ms", type=float, default=20.0, help="the engine's step")
    parser.add_argument(
        "--prefill-ms", type=float, default=0.0, help="added to a step per sequence joining"
    )
    parser.add_argument("--fail-status", type=int, help="answer jobs with this HTTP status")
    parser.add_argument("--cut-after", type=int, help="drop streams after N tokens")
    parser.add_argument("--error-after", type=int, help="in-stream error after N tokens")
    parser.add_argument("--stall-after", type=int, help="go silent after N tokens")
    parser.add_argument("--hang", action="store_true", help="never answer jobs")
    parser.add_argument(
        "--no-usage-chunk", action="store_true", help="stream no usage chunk (openai)"
    )
    parser.add_argument("--tokenize", choices=("llama.cpp", "vllm"), help="serve /tokenize")
    parser.add_argument("--embedding-dim", type=int, default=8)
    parser.add_argument("--api-key", help="require this Bearer key (openai)")
    args = parser.parse_args(argv)
    state = FakeState(
        FakeConfig(
            models=[m for m in args.models.split(",") if m],
            first_token_s=args.first_token_ms / 1000,
            tokens_per_s=args.tokens_per_s,
            engine=ContinuousBatching(args.max_seqs, args.step_ms, args.prefill_ms)
            if args.max_seqs
            else None,
            fail_status=args.fail_status,
            cut_after=args.cut_after,
            error_after=args.error_after,
            stall_after=args.stall_after,
            hang=args.hang,
            include_usage=not args.no_usage_chunk,
            tokenize=args.tokenize,
            embedding_dim=args.embedding_dim,
            api_key=args.api_key,
        )
    )
    sock = _bind(args.host, args.port)
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    server = _Server(
        _uvicorn_config(build_app(state)),
        on_started=lambda: print(f"listening on {url}", flush=True),
    )
    server.run(sockets=[sock])
