"""The official `openai` SDK against the broker, with a worker thread on a fake Ollama:
chat, completion and embedding, streamed and not, and the errors. Then what passes through
to either kind of backend (a fake Ollama, a fake vLLM): structured output, tools, and
embedding inputs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from garage.contract import Kind
from garage.worker.backends import Backend, BackendResult, OnText, make_backend
from tests.fakes import FakeConfig, FakeServer, FakeState, Outcome, embedding
from tests.fakes.openai import build_app as build_fake_openai

from ..conftest import ADMIN_KEY, LiveBroker, Network
from ..support import WorkerThread, eventually

WORDS = "one two three four five six"


@pytest.fixture
def sdk(network: Network) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{network.url}/v1", api_key=network.user_key, max_retries=0)


@pytest.fixture
def async_sdk(network: Network) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{network.url}/v1", api_key=network.user_key, max_retries=0)


def test_chat_not_streamed(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello there"}], temperature=0
    )
    assert reply.object == "chat.completion" and reply.model == "m"
    assert reply.id.startswith("chatcmpl-job_")
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 3)


def test_chat_streamed_with_usage(sdk: openai.OpenAI, network: Network) -> None:
    network.backend.configure(tokens_per_s=50)
    stream = sdk.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": WORDS}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"echo: {WORDS}"
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) > 1
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7


def test_completion_streamed_and_not(sdk: openai.OpenAI) -> None:
    reply = sdk.completions.create(model="m", prompt="a b c", max_tokens=50)
    assert reply.object == "text_completion" and reply.choices[0].text == "echo: a b c"
    streamed = sdk.completions.create(model="m", prompt="x y", stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo: x y"


def test_embeddings(sdk: openai.OpenAI) -> None:
    reply = sdk.embeddings.create(model="m", input=["first", "second"])
    assert [d.index for d in reply.data] == [0, 1] and len(reply.data[0].embedding) == 8
    assert reply.model == "m" and reply.usage.prompt_tokens == 2
    single = sdk.embeddings.create(model="m", input="one")  # the SDK asks for base64
    assert len(single.data[0].embedding) == 8


def test_errors_use_openai_bodies(sdk: openai.OpenAI, network: Network) -> None:
    with pytest.raises(openai.APIStatusError) as unserved:
        sdk.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert unserved.value.status_code == 503
    assert unserved.value.body["code"] == "model_not_served"
    assert unserved.value.response.headers["x-should-retry"] == "false"
    assert unserved.value.body["message"] == (  # no native-API option named at this door
        "no live worker serves model 'ghost' (GET /v1/models lists the models served now)"
    )
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="m", messages=[])
    assert "messages" in bad.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{network.url}/v1", api_key="nope").models.list()
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    with pytest.raises(openai.BadRequestError) as rejected:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": [image]}])
    assert rejected.value.body["type"] == "invalid_request_error"


def test_models_lists_the_fleet(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["m"]


async def test_a_client_that_disconnects_cancels_its_job(
    async_sdk: openai.AsyncOpenAI, network: Network
) -> None:
    network.backend.configure(tokens_per_s=5)
    stream = await async_sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": WORDS}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()

    async def aborted():
        return any(r.outcome is Outcome.aborted for r in network.backend.requests)

    await eventually(aborted, what="the streamed request to be aborted")

    network.backend.configure(hang=True)
    waiting = asyncio.create_task(
        async_sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    )

    async def started():
        return any(r.outcome is Outcome.open for r in network.backend.requests)

    await eventually(started, what="the hung request to reach the backend")
    waiting.cancel()  # the client gives up on a non-streamed request

    async def both_aborted():
        return sum(r.outcome is Outcome.aborted for r in network.backend.requests) == 2

    await eventually(both_aborted, what="the second request to be aborted too")


def _store(live_broker, redis):
    from garage.broker.store import Store

    return Store.on(
        redis, live_broker.clock, lease_ms=30_000, retention_ms=3_600_000, worker_alive_ms=60_000
    )


async def test_a_worker_lost_after_text_ends_the_stream_with_an_error(
    async_sdk: openai.AsyncOpenAI, network: Network, live_broker, redis
) -> None:
    network.backend.configure(tokens_per_s=10)
    stream = await async_sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": WORDS}], stream=True
    )
    text = []
    with pytest.raises(openai.APIError) as lost:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
                if len(text) == 1:  # the lease runs out under the worker
                    live_broker.clock.advance(31)
                    assert (await _store(live_broker, redis).leases.reap()).requeued == 1
    await stream.close()  # an error event leaves the SDK's response open
    assert "worker was lost" in lost.value.message
    assert len(text) < 7  # the stream stopped; nothing of a second attempt was glued on


async def test_a_restart_before_any_text_is_invisible(
    async_sdk: openai.AsyncOpenAI, network: Network, live_broker, redis
) -> None:
    network.backend.configure(first_token_s=1.0)
    stream = await async_sdk.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "late start"}], stream=True
    )

    async def leased():
        return await redis.zcard("garage:leases") == 1

    await eventually(leased, what="the job to be leased")
    live_broker.clock.advance(31)
    assert (await _store(live_broker, redis).leases.reap()).requeued == 1
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: late start"


def test_the_sdk_does_not_retry_a_model_nobody_serves(network: Network) -> None:
    """Retrying cannot help: the answer says so, and the SDK (3 retries allowed) asks once."""
    sent = []
    http = httpx.Client(event_hooks={"request": [sent.append]})
    sdk = openai.OpenAI(
        base_url=f"{network.url}/v1", api_key=network.user_key, max_retries=3, http_client=http
    )
    with pytest.raises(openai.APIStatusError):
        sdk.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert len(sent) == 1
    http.close()


# --- what passes through to either kind of backend ------------------------------------------

CITY_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
    "additionalProperties": False,
}


class City(BaseModel):
    name: str
    population: int


class Lookup(BaseModel):
    text: str


class _Answering:
    """A real adapter whose chat answers' text is replaced by `text` when it is set: the
    fakes only echo, and the SDK's `parse()` needs JSON back."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.text: str | None = None

    async def list_models(self) -> list[str]:
        return await self.inner.list_models()

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def count_tokens(self, model: str, text: str) -> int | None:
        return await self.inner.count_tokens(model, text)

    async def run(
        self, kind: Kind, request: dict[str, Any], on_text: OnText | None = None
    ) -> BackendResult:
        if self.text is None or kind != Kind.chat:
            return await self.inner.run(kind, request, on_text)
        done = await self.inner.run(kind, request)
        done.result["choices"][0]["message"]["content"] = self.text
        if on_text is not None:
            await on_text(self.text)
        return done


@dataclass
class Rig:
    """The broker and one worker on one kind of backend, spoken to with the openai SDK."""

    kind: str  # "ollama" or "openai"
    sdk: openai.OpenAI
    fake: FakeState  # the fake server the adapter talks to, and its log of requests
    backend: _Answering


@pytest.fixture(scope="module")
def fake_vllm() -> Iterator[tuple[FakeState, str]]:
    state = FakeState(FakeConfig(models=["m"]))
    with FakeServer(build_fake_openai(state)) as server:
        yield state, server.url


def _new_key(broker_url: str, role: str) -> str:
    reply = httpx.post(
        f"{broker_url}/v1/admin/keys",
        json={"role": role, "name": role},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    return reply.json()["key"]


@contextmanager
def _serving(broker: LiveBroker, kind: str, fake: tuple[FakeState, str]) -> Iterator[Rig]:
    state, url = fake
    state.reset()
    backend = _Answering(make_backend(kind, url, httpx.AsyncClient(timeout=30)))
    user_key, worker_key = _new_key(broker.url, "user"), _new_key(broker.url, "worker")
    sdk = openai.OpenAI(base_url=f"{broker.url}/v1", api_key=user_key, max_retries=0)
    with WorkerThread(broker.url, worker_key, backend, admin_key=ADMIN_KEY, slots=8):
        yield Rig(kind, sdk, state, backend)


@pytest.fixture(params=["ollama", "openai"])
def rig(
    request: pytest.FixtureRequest, live_broker: LiveBroker, redis, fake_ollama, fake_vllm
) -> Iterator[Rig]:
    fake = fake_ollama if request.param == "ollama" else fake_vllm
    with _serving(live_broker, request.param, fake) as serving:
        yield serving


@pytest.mark.parametrize(
    ("response_format", "ollama_format"),
    [
        ({"type": "json_object"}, "json"),
        (
            {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}},
            CITY_SCHEMA,
        ),
    ],
    ids=["json_object", "json_schema"],
)
@pytest.mark.parametrize("stream", [False, True])
def test_response_format_reaches_the_backend(
    rig: Rig, response_format: dict, ollama_format: Any, stream: bool
) -> None:
    reply = rig.sdk.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "a city"}],
        response_format=response_format,
        stream=stream,
    )
    if stream:
        list(reply)
    [sent] = rig.fake.requests
    if rig.kind == "ollama":  # Ollama's own `format` field: "json" or the schema itself
        assert sent.path == "/api/chat"
        assert sent.body["format"] == ollama_format and "response_format" not in sent.body
    else:  # an OpenAI-compatible server gets the field as the client sent it
        assert sent.path == "/v1/chat/completions"
        assert sent.body["response_format"] == response_format


def test_parse_with_a_pydantic_model(rig: Rig) -> None:
    rig.backend.text = '{"name": "Lyon", "population": 520000}'
    reply = rig.sdk.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": "a city"}], response_format=City
    )
    assert reply.choices[0].message.parsed == City(name="Lyon", population=520000)
    body = rig.fake.requests[-1].body
    if rig.kind == "ollama":
        assert body["format"]["required"] == ["name", "population"]
    else:
        sent = body["response_format"]
        assert (sent["type"], sent["json_schema"]["name"]) == ("json_schema", "City")
        assert sent["json_schema"]["strict"] is True


def test_tool_calls_parsed_into_a_pydantic_model(rig: Rig) -> None:
    tool = openai.pydantic_function_tool(Lookup)
    reply = rig.sdk.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": "call the moon"}], tools=[tool]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "Lookup"
    assert call.function.parsed_arguments == Lookup(text="the moon")
    assert rig.fake.requests[-1].body["tools"] == [tool]  # both adapters pass tools as given


def test_tool_calls_come_whole_in_the_last_chunk_of_a_stream(rig: Rig) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    chunks = list(
        rig.sdk.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "call the moon"}],
            tools=[tool],
            stream=True,
        )
    )
    [last] = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert last.choices[0].finish_reason == "tool_calls"
    [call] = last.choices[0].delta.tool_calls
    assert (call.index, call.function.name) == (0, "lookup")
    assert call.function.arguments == '{"text": "the moon"}'


@pytest.mark.parametrize("given", ["one", ["first", "second"]])
def test_embeddings_of_strings(rig: Rig, given: str | list[str]) -> None:
    texts = [given] if isinstance(given, str) else given
    reply = rig.sdk.embeddings.create(model="m", input=given)  # the SDK asks for base64
    assert [d.embedding for d in reply.data] == [
        pytest.approx(embedding(t, 8), abs=1e-6) for t in texts
    ]
    assert rig.fake.requests[-1].body["input"] == given


def test_token_ids_for_embeddings_go_to_the_backend_as_they_are(rig: Rig) -> None:
    """What LangChain's OpenAIEmbeddings sends by default (tiktoken ids). Ollama refuses
    them with its own 400; vLLM would embed them as ids of its own vocabulary (the fake
    vLLM refuses them, so here both end in a 400)."""
    with pytest.raises(openai.BadRequestError) as refused:
        rig.sdk.embeddings.create(model="m", input=[[15339, 1917]])
    assert rig.fake.requests[-1].body["input"] == [[15339, 1917]]
    assert refused.value.body["type"] == "invalid_request_error"
    if rig.kind == "ollama":
        assert refused.value.body["message"] == "invalid input type"  # Ollama's words


def test_the_sdk_reads_the_rate_limit_headers_and_a_429(
    sdk: openai.OpenAI, network: Network
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    keys = httpx.get(f"{network.url}/v1/admin/keys", headers=admin).json()
    [user] = [k for k in keys if k["role"] == "user"]
    httpx.put(
        f"{network.url}/v1/admin/keys/{user['id']}/limits",
        json={"requests_per_minute": 2},
        headers=admin,
    ).raise_for_status()
    messages = [{"role": "user", "content": "hi"}]
    for left in ("1", "0"):
        raw = sdk.chat.completions.with_raw_response.create(model="m", messages=messages)
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == left
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(model="m", messages=messages)
    assert refused.value.code == "rate_limit_exceeded"
    assert int(refused.value.response.headers["retry-after"]) in range(1, 31)
