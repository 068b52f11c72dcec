"""The official `openai` SDK against the broker, with a worker thread on a fake Ollama:
chat, completion and embedding, streamed and not, and the errors."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.fakes import Outcome

from ..conftest import Network
from ..support import eventually

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
