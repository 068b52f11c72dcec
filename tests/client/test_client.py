"""The Python client against a live broker and worker: handles, streaming, resume,
timeouts, cancel, batch map, and the typed errors."""

from __future__ import annotations

import asyncio

import pytest

from garage.broker.store import Store
from garage.client import (
    AsyncClient,
    AuthError,
    BrokerUnreachable,
    Client,
    JobCancelled,
    JobFailed,
    NotFound,
    RateLimited,
    StreamRestarted,
    Unavailable,
    WaitTimeout,
)
from garage.client.errors import error_for_status
from tests.fakes import Outcome

from ..conftest import Network
from ..netproxy import Proxy
from ..support import eventually

WORDS = "one two three four five six seven eight"
IMAGE_URL_MESSAGE = [  # Ollama takes images only inline, so its adapter rejects a URL
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
]


def test_submit_wait_text(network: Network) -> None:
    with Client(network.url, network.user_key) as client:
        handle = client.submit("m", "hello garage")
        assert handle.text(timeout_s=10) == "echo: hello garage"
        assert handle.job.status.value == "succeeded" and handle.job.usage.total_tokens == 5
        again = client.job(handle.id)
        assert again.result()["choices"][0]["message"]["content"] == "echo: hello garage"
        completion = client.submit("m", "a b", kind="completion")
        assert completion.text(timeout_s=10) == "echo: a b"
        embedding = client.submit("m", {"input": ["x", "y"]})
        assert len(embedding.result(timeout_s=10)["data"]) == 2
        listed = client.list(limit=10)
        # the broker's clock stands still in these tests, so compare without order
        assert {j.id for j in listed.data} == {embedding.id, completion.id, handle.id}


def test_stream_yields_the_text_as_it_comes(network: Network) -> None:
    network.backend.configure(tokens_per_s=40)
    with Client(network.url, network.user_key) as client:
        handle = client.submit("m", WORDS)
        pieces = list(handle.stream())
        assert len(pieces) > 1 and "".join(pieces) == f"echo: {WORDS}"
        assert handle.wait(timeout_s=5).status.value == "succeeded"


async def test_sync_client_works_inside_a_running_event_loop(network: Network) -> None:
    asyncio.get_running_loop()  # as in a Jupyter cell: a loop runs in this thread
    with Client(network.url, network.user_key) as client:
        assert client.submit("m", "from a notebook").text(timeout_s=10) == "echo: from a notebook"
        [item] = client.map("m", ["mapped"], progress=False)
        assert item.ok and item.text == "echo: mapped"


async def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(
    network: Network,
) -> None:
    network.backend.configure(tokens_per_s=25)
    port = int(network.url.rsplit(":", 1)[1])
    with Proxy("127.0.0.1", port) as proxy:
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", network.user_key) as client:
            handle = await client.submit("m", WORDS)
            pieces: list[str] = []
            ids: list[str] = []
            async for event_id, event in client.events_with_ids(handle.id):
                ids.append(event_id)
                if event.type == "delta":
                    pieces.append(event.text)
                    if len(pieces) == 2:
                        proxy.cut()  # the connection drops mid-stream
            assert len(ids) == len(set(ids))  # nothing repeated
            assert "".join(pieces) == f"echo: {WORDS}"  # nothing lost
            assert len(pieces) > 2


async def test_run_submits_and_waits_in_one_call(network: Network) -> None:
    async with AsyncClient(network.url, network.user_key) as client:
        job = await client.run("m", "all at once", timeout_s=10)
        assert job.status.value == "succeeded"
        assert job.result["choices"][0]["message"]["content"] == "echo: all at once"
        network.backend.configure(fail_status=400, fail_message="no such thing")
        with pytest.raises(JobFailed):
            await client.run("m", "rejected", timeout_s=10)
        network.backend.configure(fail_status=None, hang=True)
        with pytest.raises(WaitTimeout) as timed_out:
            await client.run("m", "never answered", timeout_s=0.5)
        assert timed_out.value.job.status.value == "running"
        await client.cancel(timed_out.value.job.id)
    with Client(network.url, network.user_key) as blocking:
        network.backend.configure(hang=False)
        assert blocking.run("m", "blocking", timeout_s=10).status.value == "succeeded"


async def test_calls_honour_http_proxy_and_no_proxy(network: Network, monkeypatch) -> None:
    """httpx routes a call to a proxy where HTTP_PROXY applies (here one that is down, so
    the call fails) and straight to the broker where NO_PROXY exempts it."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with AsyncClient(network.url, network.user_key) as client:
        with pytest.raises(BrokerUnreachable):
            await client.models()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with AsyncClient(network.url, network.user_key) as client:
        assert [m.id for m in (await client.models()).data] == ["m"]


async def test_wait_timeout_then_cancel_reaches_the_backend(network: Network) -> None:
    network.backend.configure(hang=True)
    async with AsyncClient(network.url, network.user_key) as client:
        handle = await client.submit("m", "never answered")
        with pytest.raises(WaitTimeout) as timed_out:
            await handle.wait(timeout_s=0.5)
        assert timed_out.value.job.status.value == "running"
        await handle.cancel()
        with pytest.raises(JobCancelled):
            await handle.wait(timeout_s=10)

        async def aborted():
            return any(r.outcome is Outcome.aborted for r in network.backend.requests)

        await eventually(aborted, what="the backend request to be aborted")


async def test_map_returns_every_outcome_in_order(network: Network) -> None:
    async with AsyncClient(network.url, network.user_key) as client:
        inputs = [
            "first",
            {"no_messages": True},  # malformed: never submitted
            IMAGE_URL_MESSAGE,  # the backend rejects it
            {"messages": [{"role": "user", "content": "fourth"}], "temperature": 0},
        ]
        items = await client.map("m", inputs, progress=False, timeout_s=30)
    assert [item.index for item in items] == [0, 1, 2, 3]
    assert [item.ok for item in items] == [True, False, False, True]
    assert items[0].text == "echo: first" and items[3].text == "echo: fourth"
    assert items[1].job is None and "messages" in str(items[1].error)
    assert isinstance(items[2].error, JobFailed)
    assert items[2].job.error.type == "backend_rejected"


async def test_stream_raises_on_restart_and_resumes_with_the_new_attempt(
    network: Network, live_broker, redis
) -> None:
    network.backend.configure(tokens_per_s=10)
    store = Store.on(
        redis, live_broker.clock, lease_ms=30_000, retention_ms=3_600_000, worker_alive_ms=60_000
    )
    async with AsyncClient(network.url, network.user_key) as client:
        handle = await client.submit("m", WORDS)
        seen: list[str] = []
        with pytest.raises(StreamRestarted) as restarted:
            async for piece in handle.stream():
                seen.append(piece)
                if len(seen) == 1:  # the worker's lease runs out under it
                    live_broker.clock.advance(31)
                    assert (await store.leases.reap()).requeued == 1
        assert restarted.value.attempt == 2
        rest = [piece async for piece in handle.stream(after=restarted.value.event_id)]
        assert "".join(rest) == f"echo: {WORDS}"
        assert (await handle.wait(timeout_s=10)).attempt == 2


async def test_typed_errors(network: Network) -> None:
    async with AsyncClient(network.url, "gk-u-wrong") as client:
        with pytest.raises(AuthError) as denied:
            await client.list()
        assert denied.value.status == 401 and denied.value.message == "invalid API key"
    async with AsyncClient(network.url, network.user_key) as client:
        with pytest.raises(NotFound):
            await client.get("job_nope")
        with pytest.raises(Unavailable) as unserved:
            await client.submit("nobody-serves-this", "hi")
        assert unserved.value.code == "model_not_served"
        with pytest.raises(JobFailed) as failed:
            await (await client.submit("m", IMAGE_URL_MESSAGE)).wait(timeout_s=10)
        assert failed.value.job.error.type == "backend_rejected"
    async with AsyncClient("http://127.0.0.1:9", network.user_key) as client:
        with pytest.raises(BrokerUnreachable):
            await client.list()
    limited = error_for_status(429, {"error": {"message": "slow down", "code": "rate_limited"}})
    assert isinstance(limited, RateLimited) and limited.message == "slow down"


async def test_run_takes_sampling_options_and_gives_the_text(network: Network) -> None:
    """As in the openai SDK: `max_tokens=` and the like go into the request, and the
    answer's text is `job.text`."""
    async with AsyncClient(network.url, network.user_key) as client:
        job = await client.run("m", "one two three four", max_tokens=2, temperature=0.5,
                               timeout_s=10)  # fmt: skip
        assert job.request["max_tokens"] == 2 and job.request["temperature"] == 0.5
        assert job.text == job.result["choices"][0]["message"]["content"]
        assert job.text == "echo: one"  # the backend got max_tokens: two tokens
        with pytest.raises(ValueError, match="max_attempts"):
            await client.run("m", "x", max_attempts=0)  # a job's own option is still checked


async def test_leaving_an_event_stream_early_closes_it_quietly(
    network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    network.backend.configure(tokens_per_s=25)
    errors: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    async with AsyncClient(network.url, network.user_key) as client:
        handle = await client.submit("m", WORDS)
        async for event in client.events(handle.id):
            if event.type == "delta":
                break  # the generator is closed here, its stream's connection with it
        await asyncio.sleep(0.2)  # a finaliser left to the garbage collector would run now
        await handle.cancel()
    assert errors == [] and "athrow" not in caplog.text
