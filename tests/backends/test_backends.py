"""The contract every backend adapter keeps, checked against fake servers on loopback HTTP.

One suite runs over both adapters (`ollama`, `openai`), each against its fake from
`tests/fakes` served by uvicorn in a thread. Then come what only one adapter does (Ollama's
option mapping, OpenAI keys and error variants), checks that the fakes speak their server's
wire format, and the fakes' `python -m` entries as subprocesses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from garage.contract import Kind
from garage.worker.backends import (
    Backend,
    BackendRejected,
    BackendUnavailable,
    make_backend,
)
from garage.worker.backends.openai import api_root, server_root
from tests.fakes import FakeServer, FakeState, count_tokens, embedding, reply_tokens, token_ids
from tests.fakes import ollama as ollama_fake
from tests.fakes import openai as openai_fake
from tests.support import ROOT

_DEADLINE_S = 5.0
_NOT_FOUND = {  # each server's own words for an unknown model
    "ollama": 'model "nope" not found, try pulling it first',
    "openai": "The model `nope` does not exist.",
}


@dataclass
class Rig:
    name: str
    fake: FakeState
    url: str
    backend: Backend


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, tuple[FakeState, str]]]:
    states = {"ollama": FakeState(), "openai": FakeState()}
    with (
        FakeServer(ollama_fake.build_app(states["ollama"])) as ollama,
        FakeServer(openai_fake.build_app(states["openai"])) as openai,
    ):
        yield {"ollama": (states["ollama"], ollama.url), "openai": (states["openai"], openai.url)}


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=_DEADLINE_S) as client:
        yield client


SERVER_KINDS = ("ollama", "openai")  # the adapters that speak to a server (not the demo)


@pytest.fixture(params=SERVER_KINDS)
def rig(request: pytest.FixtureRequest, fakes: dict, http: httpx.AsyncClient) -> Rig:
    state, url = fakes[request.param]
    state.reset()
    return Rig(request.param, state, url, make_backend(request.param, url, http))


class Pieces:
    """An `on_text` that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.arrived = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.items.append(text)
        self.arrived.set()


def chat(text: str, model: str = "fake-chat", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **params}


async def wait_for(fake: FakeState, predicate: Callable[[FakeState], bool]) -> bool:
    return await asyncio.to_thread(fake.wait_for, predicate, _DEADLINE_S)


def unused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def float32s(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# --- the contract, for every adapter -------------------------------------------------------


async def test_list_models(rig: Rig) -> None:
    rig.fake.configure(models=["alpha", "beta:7b"])
    assert await rig.backend.list_models() == ["alpha", "beta:7b"]
    assert await rig.backend.ping()


async def test_chat_streams_text_and_returns_an_openai_response(rig: Rig) -> None:
    pieces = Pieces()
    done = await rig.backend.run(Kind.chat, chat("the quick brown fox"), pieces)

    assert pieces.items == reply_tokens("the quick brown fox")
    result = done.result
    assert result["object"] == "chat.completion"
    assert result["id"] and result["created"] and result["model"] == "fake-chat"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: the quick brown fox"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    record = rig.fake.requests[-1]
    expected = {
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.prompt_tokens + record.completion_tokens,
    }
    assert expected == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    assert result["usage"] == expected
    assert (done.prompt_tokens, done.completion_tokens) == (4, 5)
    assert done.first_token_ms is not None and done.wall_ms >= done.first_token_ms
    if rig.name == "ollama":
        assert done.backend_ms == record.final["total_duration"] / 1e6
        assert done.eval_ms == record.final["eval_duration"] / 1e6
    else:
        assert done.backend_ms == done.wall_ms


async def test_chat_hits_max_tokens(rig: Rig) -> None:
    done = await rig.backend.run(Kind.chat, chat("one two three four", max_tokens=2))
    choice = done.result["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("echo: one", "length")
    assert done.completion_tokens == 2


async def test_completion(rig: Rig) -> None:
    pieces = Pieces()
    request = {"model": "fake-chat", "prompt": "once upon a time"}
    done = await rig.backend.run(Kind.completion, request, pieces)
    assert "".join(pieces.items) == "echo: once upon a time"
    assert done.result["object"] == "text_completion"
    assert done.result["choices"][0]["text"] == "echo: once upon a time"
    assert done.result["choices"][0]["finish_reason"] == "stop"
    assert done.prompt_tokens == 4 and done.completion_tokens == 5


@pytest.mark.parametrize("given", ["hello world", ["hello world", "bye"]])
async def test_embedding(rig: Rig, given: str | list[str]) -> None:
    texts = [given] if isinstance(given, str) else given
    done = await rig.backend.run(Kind.embedding, {"model": "fake-embed", "input": given})
    assert done.result["object"] == "list"
    assert [d["index"] for d in done.result["data"]] == list(range(len(texts)))
    assert {d["object"] for d in done.result["data"]} == {"embedding"}
    assert [d["embedding"] for d in done.result["data"]] == [embedding(t, 8) for t in texts]
    assert done.result["usage"]["prompt_tokens"] == count_tokens(texts)
    assert done.prompt_tokens == count_tokens(texts) and done.completion_tokens == 0


async def test_embedding_as_base64(rig: Rig) -> None:
    request = {"model": "fake-embed", "input": "hello", "encoding_format": "base64"}
    done = await rig.backend.run(Kind.embedding, request)
    decoded = float32s(done.result["data"][0]["embedding"])
    assert decoded == pytest.approx(embedding("hello", 8), abs=1e-6)


async def test_tool_call(rig: Rig) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    done = await rig.backend.run(Kind.chat, chat("call the moon", tools=[tool]))
    choice = done.result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] and call["type"] == "function"
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"text": "the moon"}


async def test_unknown_model_is_rejected_with_the_backends_message(rig: Rig) -> None:
    with pytest.raises(BackendRejected) as caught:
        await rig.backend.run(Kind.chat, chat("hi", model="nope"))
    assert caught.value.message == _NOT_FOUND[rig.name]
    assert caught.value.status == 404 and not caught.value.retryable
    job_error = caught.value.to_job_error()
    assert (job_error.message, job_error.type) == (_NOT_FOUND[rig.name], "backend_rejected")


async def test_a_request_without_a_model_is_rejected(rig: Rig) -> None:
    with pytest.raises(BackendRejected):
        await rig.backend.run(Kind.chat, {"messages": []})
    assert rig.fake.requests == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BackendRejected), (500, BackendUnavailable), (429, BackendUnavailable)],
)
async def test_http_errors_are_classified(rig: Rig, status: int, error: type) -> None:
    rig.fake.configure(fail_status=status, fail_message="no can do")
    with pytest.raises(error) as caught:
        await rig.backend.run(Kind.chat, chat("hi"))
    assert caught.value.status == status
    assert "no can do" in caught.value.message


async def test_backend_down_is_unavailable(rig: Rig, http: httpx.AsyncClient) -> None:
    backend = make_backend(rig.name, unused_url(), http)
    assert not await backend.ping()
    with pytest.raises(BackendUnavailable):
        await backend.list_models()
    with pytest.raises(BackendUnavailable) as caught:
        await backend.run(Kind.chat, chat("hi"))
    assert caught.value.retryable and caught.value.status is None


async def test_stream_cut_midway_is_unavailable(rig: Rig) -> None:
    rig.fake.configure(cut_after=2)
    pieces = Pieces()
    with pytest.raises(BackendUnavailable):
        await rig.backend.run(Kind.chat, chat("a b c d e"), pieces)
    assert pieces.items == reply_tokens("a b c d e")[:2]
    assert rig.fake.requests[-1].outcome == "cut"


async def test_stream_cut_before_the_end_is_unavailable(rig: Rig) -> None:
    rig.fake.configure(cut_after=99)  # every token, then no final line / usage / [DONE]
    with pytest.raises(BackendUnavailable):
        await rig.backend.run(Kind.completion, {"model": "fake-chat", "prompt": "a b"})


async def test_error_inside_the_stream_is_unavailable(rig: Rig) -> None:
    rig.fake.configure(error_after=1, fail_message="the model crashed")
    pieces = Pieces()
    with pytest.raises(BackendUnavailable, match="the model crashed"):
        await rig.backend.run(Kind.chat, chat("a b c"), pieces)
    assert pieces.items == ["echo:"]


async def test_cancelling_a_stream_aborts_the_backend_request(rig: Rig) -> None:
    rig.fake.configure(tokens_per_s=20)  # 100 tokens: 5 s unless cancelled
    pieces = Pieces()
    task = asyncio.create_task(rig.backend.run(Kind.chat, chat("word " * 99), pieces))
    await asyncio.wait_for(pieces.arrived.wait(), _DEADLINE_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for(rig.fake, lambda s: len(s.matching("aborted")) == 1)
    assert rig.fake.requests[-1].tokens_sent < 20


@pytest.mark.parametrize("kind", [Kind.chat, Kind.embedding])
async def test_cancelling_while_the_backend_hangs_aborts_it(rig: Rig, kind: Kind) -> None:
    rig.fake.configure(hang=True)
    request = chat("hi") if kind == Kind.chat else {"model": "fake-embed", "input": "hi"}
    task = asyncio.create_task(rig.backend.run(kind, request))
    assert await wait_for(rig.fake, lambda s: len(s.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_for(rig.fake, lambda s: len(s.matching("aborted")) == 1)


async def test_on_text_errors_pass_through_untouched(rig: Rig) -> None:
    async def broken(text: str) -> None:
        raise httpx.ConnectError("the broker is gone")

    with pytest.raises(httpx.ConnectError):
        await rig.backend.run(Kind.chat, chat("hi"), broken)


def test_unknown_backend_kind(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="ollama, openai"):
        make_backend("tgi", "http://localhost", http)


# --- Ollama only ----------------------------------------------------------------------------


@pytest.fixture
def ollama(fakes: dict, http: httpx.AsyncClient) -> Rig:
    state, url = fakes["ollama"]
    state.reset()
    return Rig("ollama", state, url, make_backend("ollama", url, http))


async def test_ollama_maps_openai_parameters(ollama: Rig) -> None:
    request = chat(
        "a b c d",
        temperature=0.2,
        top_p=0.9,
        seed=7,
        max_tokens=3,
        stop="\n",
        presence_penalty=0.5,
        frequency_penalty=0.25,
        response_format={"type": "json_object"},
        options={"num_ctx": 8192},
        keep_alive="5m",
    )
    done = await ollama.backend.run(Kind.chat, request)
    body = ollama.fake.requests[-1].body
    assert body["stream"] is True
    assert body["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "num_predict": 3,
        "stop": ["\n"],
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "num_ctx": 8192,
    }
    assert (body["format"], body["keep_alive"]) == ("json", "5m")
    assert done.result["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("kind", [Kind.chat, Kind.completion])
async def test_ollama_takes_a_json_schema_as_its_format(ollama: Rig, kind: Kind) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    request = chat("hi") if kind == Kind.chat else {"model": "fake-chat", "prompt": "hi"}
    await ollama.backend.run(kind, request | {"response_format": response_format})
    body = ollama.fake.requests[-1].body
    assert body["format"] == schema and "response_format" not in body


async def test_ollama_defaults_to_openai_sampling(ollama: Rig) -> None:
    await ollama.backend.run(Kind.completion, {"model": "fake-chat", "prompt": ["hi"]})
    body = ollama.fake.requests[-1].body
    assert body["prompt"] == "hi"
    assert body["options"] == {"temperature": 1.0, "top_p": 1.0}


async def test_ollama_converts_messages(ollama: Rig) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
    ]
    await ollama.backend.run(Kind.chat, {"model": "fake-chat", "messages": messages})
    sent = ollama.fake.requests[-1].body["messages"]
    assert sent == [
        {"role": "user", "content": "what is this", "images": ["aGk="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "x"}}}],
        },
        {"role": "tool", "content": "a cat", "tool_name": "lookup"},
    ]


async def test_ollama_rejects_image_urls(ollama: Rig) -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(BackendRejected, match="base64"):
        await ollama.backend.run(
            Kind.chat, {"model": "fake-chat", "messages": [{"role": "user", "content": [part]}]}
        )


# --- OpenAI-compatible only -----------------------------------------------------------------


@pytest.fixture
def openai(fakes: dict, http: httpx.AsyncClient) -> Rig:
    state, url = fakes["openai"]
    state.reset()
    return Rig("openai", state, url, make_backend("openai", url, http))


async def test_openai_sends_the_request_as_it_came_plus_streaming(openai: Rig) -> None:
    request = chat("hi", top_k=5, stream_options={"continuous_usage_stats": False})
    await openai.backend.run(Kind.chat, request)
    record = openai.fake.requests[-1]
    assert record.body == request | {
        "stream": True,
        "stream_options": {"continuous_usage_stats": False, "include_usage": True},
    }
    assert record.headers["accept"] == "text/event-stream"


async def test_openai_bearer_key(openai: Rig, http: httpx.AsyncClient) -> None:
    openai.fake.configure(api_key="sk-test")
    keyed = make_backend("openai", openai.url + "/v1", http, api_key="sk-test")
    assert await keyed.list_models() == ["fake-chat", "fake-embed"]
    done = await keyed.run(Kind.chat, chat("hi"))
    assert done.result["choices"][0]["message"]["content"] == "echo: hi"
    assert openai.fake.requests[-1].headers["authorization"] == "Bearer sk-test"
    with pytest.raises(BackendUnavailable) as caught:  # the rig's key, not the job, is wrong
        await openai.backend.run(Kind.chat, chat("hi"))
    assert caught.value.status == 401


async def test_openai_legacy_vllm_errors(openai: Rig) -> None:
    openai.fake.configure(legacy_errors=True)
    with pytest.raises(BackendRejected) as caught:
        await openai.backend.run(Kind.chat, chat("hi", model="nope"))
    assert caught.value.message == _NOT_FOUND["openai"]
    openai.fake.configure(error_after=1, fail_message="engine dead")
    with pytest.raises(BackendUnavailable, match="engine dead"):
        await openai.backend.run(Kind.chat, chat("hi"))


async def test_openai_server_that_ignores_include_usage(openai: Rig) -> None:
    openai.fake.configure(include_usage=False)
    done = await openai.backend.run(Kind.chat, chat("hi there"))
    assert done.result["choices"][0]["message"]["content"] == "echo: hi there"
    # Nothing reported is not zero: the counts are missing, for the worker to count.
    assert (done.prompt_tokens, done.completion_tokens) == (None, None)
    assert done.result["usage"] is None


async def test_openai_server_that_ignores_stream(openai: Rig) -> None:
    openai.fake.configure(ignore_stream=True)
    tool = {"type": "function", "function": {"name": "lookup"}}
    pieces = Pieces()
    done = await openai.backend.run(Kind.chat, chat("hi there"), pieces)
    assert pieces.items == ["echo: hi there"]
    assert done.result["choices"][0]["message"]["content"] == "echo: hi there"
    assert (done.prompt_tokens, done.completion_tokens) == (2, 3)
    done = await openai.backend.run(Kind.chat, chat("call home", tools=[tool]))
    [call] = done.result["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"text": "home"}
    done = await openai.backend.run(Kind.completion, {"model": "fake-chat", "prompt": "hi"})
    assert done.result["choices"][0]["text"] == "echo: hi"


@pytest.mark.parametrize("server", ["llama.cpp", "vllm"])
async def test_openai_counts_with_the_servers_tokenizer_found_by_one_probe(
    openai: Rig, server: str
) -> None:
    openai.fake.configure(tokenize=server)
    assert await openai.backend.count_tokens("fake-chat", "the quick brown fox") == 4
    assert await openai.backend.count_tokens("fake-chat", "jumps") == 1
    if server == "llama.cpp":
        assert openai.fake.tokenized == [{"content": "the quick brown fox"}, {"content": "jumps"}]
    else:  # llama.cpp's format first (refused), then vLLM's, kept from then on
        assert openai.fake.tokenized == [
            {"content": "the quick brown fox"},
            {"model": "fake-chat", "prompt": "the quick brown fox", "add_special_tokens": False},
            {"model": "fake-chat", "prompt": "jumps", "add_special_tokens": False},
        ]


async def test_openai_server_without_a_tokenizer_is_probed_once(openai: Rig) -> None:
    assert await openai.backend.count_tokens("fake-chat", "hi there") is None
    assert await openai.backend.count_tokens("fake-chat", "and again") is None
    assert len(openai.fake.tokenized) == 2  # each format asked once, then never again


async def test_openai_tokenizer_of_a_server_that_is_down_counts_nothing(
    http: httpx.AsyncClient,
) -> None:
    backend = make_backend("openai", unused_url(), http)
    assert await backend.count_tokens("fake-chat", "hi") is None


def test_openai_api_root() -> None:
    assert api_root("http://rig:8000") == "http://rig:8000/v1"
    assert api_root("http://rig:8000/") == "http://rig:8000/v1"
    assert api_root("http://rig:8000/v1/") == "http://rig:8000/v1"
    assert api_root("https://openrouter.ai/api/v1") == "https://openrouter.ai/api/v1"
    assert server_root("http://rig:8000/v1/") == "http://rig:8000"
    assert server_root("https://openrouter.ai/api/v1") == "https://openrouter.ai/api"


# --- the fakes speak their servers' wire formats --------------------------------------------


async def sse_data(http: httpx.AsyncClient, url: str, body: dict) -> list[str]:
    response = await http.post(url, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


async def test_openai_fake_chat_stream_format(openai: Rig, http: httpx.AsyncClient) -> None:
    body = chat("hi there", stream=True, stream_options={"include_usage": True})
    data = await sse_data(http, openai.url + "/v1/chat/completions", body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "total_tokens": 5, "completion_tokens": 3}
    assert "usage" not in chunks[1]


async def test_openai_fake_completion_stream_format(openai: Rig, http: httpx.AsyncClient) -> None:
    body = {"model": "fake-chat", "prompt": "hi", "stream": True}
    data = await sse_data(http, openai.url + "/v1/completions", body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert [c["choices"][0]["text"] for c in chunks] == ["echo:", " hi"]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert chunks[0]["usage"] is None  # no include_usage, no usage chunk


async def test_openai_fake_error_formats(openai: Rig, http: httpx.AsyncClient) -> None:
    response = await http.post(openai.url + "/v1/chat/completions", json=chat("hi", model="x"))
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `x` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    openai.fake.configure(error_after=1)
    data = await sse_data(http, openai.url + "/v1/chat/completions", chat("hi", stream=True))
    assert data[-1] == "[DONE]"
    assert json.loads(data[-2])["error"]["message"] == "injected failure"


async def test_openai_fake_tokenize_formats(openai: Rig, http: httpx.AsyncClient) -> None:
    url = f"{openai.url}/tokenize"
    assert (await http.post(url, json={"content": "a b"})).status_code == 404
    openai.fake.configure(tokenize="llama.cpp")
    reply = await http.post(url, json={"content": "a b"})
    assert reply.json() == {"tokens": token_ids("a b")}
    reply = await http.post(url, json={"content": "a b", "add_special": True})
    assert reply.json()["tokens"][1:] == token_ids("a b")
    assert (await http.post(url, json={"prompt": "a b"})).json() == {"tokens": []}
    openai.fake.configure(tokenize="vllm")
    reply = await http.post(url, json={"model": "fake-chat", "prompt": "a b"})
    assert reply.json() == {  # BOS first, as vLLM adds special tokens unless told not to
        "count": 3,
        "max_model_len": 4096,
        "tokens": [1, *token_ids("a b")],
        "token_strs": None,
    }
    assert (await http.post(url, json={"content": "a b"})).status_code == 400


async def test_ollama_fake_chat_stream_format(ollama: Rig, http: httpx.AsyncClient) -> None:
    response = await http.post(ollama.url + "/api/chat", json=chat("hi there"))
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    *pieces, last = lines
    assert [p["message"]["content"] for p in pieces] == ["echo:", " hi", " there"]
    assert all(p["done"] is False and p["created_at"].endswith("Z") for p in pieces)
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert (last["prompt_eval_count"], last["eval_count"]) == (2, 3)
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(last[name], int) and last[name] > 0, name
    assert last["total_duration"] > last["eval_duration"]


async def test_ollama_fake_generate_and_embed_formats(ollama: Rig, http: httpx.AsyncClient) -> None:
    body = {"model": "fake-chat", "prompt": "hi", "options": {"num_predict": 1}}
    response = await http.post(ollama.url + "/api/generate", json=body)
    *pieces, last = [json.loads(line) for line in response.text.splitlines()]
    assert [p["response"] for p in pieces] == ["echo:"]
    assert (last["response"], last["done_reason"], last["context"]) == ("", "length", [1, 2, 3])

    response = await http.post(
        ollama.url + "/api/embed", json={"model": "fake-embed", "input": "a b"}
    )
    reply = response.json()
    assert reply["embeddings"] == [embedding("a b", 8)]
    assert reply["prompt_eval_count"] == 2 and reply["total_duration"] > 0

    response = await http.post(ollama.url + "/api/chat", json=chat("hi", model="x"))
    assert (response.status_code, response.json()) == (
        404,
        {"error": 'model "x" not found, try pulling it first'},
    )


async def test_ollama_fake_error_inside_the_stream(ollama: Rig, http: httpx.AsyncClient) -> None:
    ollama.fake.configure(error_after=1)
    response = await http.post(ollama.url + "/api/chat", json=chat("a b"))
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200
    assert lines[-1] == {"error": "injected failure"}


# --- the fakes as subprocesses --------------------------------------------------------------


@pytest.mark.parametrize("name", SERVER_KINDS)
async def test_fake_cli(name: str, http: httpx.AsyncClient) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"tests.fakes.{name}",
        "--port",
        "0",
        "--models",
        "a,b",
        "--tokens-per-s",
        "1000",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 15)  # type: ignore[union-attr]
        assert line.startswith(b"listening on http://127.0.0.1:")
        url = line.decode().split()[-1]
        backend = make_backend(name, url, http)
        assert await backend.list_models() == ["a", "b"]
        done = await backend.run(Kind.chat, chat("hi", model="a"))
        assert done.result["choices"][0]["message"]["content"] == "echo: hi"
        log = await http.get(url + "/_fake/requests", params={"outcome": "done", "count": 1})
        assert [r["body"]["model"] for r in log.json()["requests"]] == ["a"]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
