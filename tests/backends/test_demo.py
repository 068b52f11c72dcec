"""The demo backend `garage up` falls back on: honest about what it is, streams, counts."""

from __future__ import annotations

import pytest

from garage.contract import Kind
from garage.worker.backends import DEMO_MODEL, BackendRejected, make_backend


@pytest.fixture
def demo():
    return make_backend("demo", "", http=None)  # type: ignore[arg-type]


async def test_chat_streams_a_reply_that_says_it_is_no_model(demo) -> None:
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    request = {"model": DEMO_MODEL, "messages": [{"role": "user", "content": "two words"}]}
    done = await demo.run(Kind.chat, request, on_text)
    content = done.result["choices"][0]["message"]["content"]
    assert content == "[garage demo backend, not a model] You said: two words"
    assert "".join(pieces) == content and len(pieces) == len(content.split())
    assert done.prompt_tokens == 2 and done.completion_tokens == len(pieces)
    assert await demo.count_tokens(DEMO_MODEL, content) == len(pieces)  # its token: a word
    assert done.result["object"] == "chat.completion" and done.first_token_ms is not None


async def test_max_tokens_cuts_with_length(demo) -> None:
    done = await demo.run(
        Kind.completion, {"model": DEMO_MODEL, "prompt": "a b c", "max_tokens": 2}
    )
    assert done.result["choices"][0] == {
        "index": 0,
        "text": "[garage demo",
        "logprobs": None,
        "finish_reason": "length",
    }


async def test_embeddings_are_deterministic_unit_vectors(demo) -> None:
    request = {"model": DEMO_MODEL, "input": ["same", "same", "other"]}
    data = (await demo.run(Kind.embedding, request)).result["data"]
    assert data[0]["embedding"] == data[1]["embedding"] != data[2]["embedding"]
    assert abs(sum(v * v for v in data[0]["embedding"]) - 1) < 1e-4


async def test_other_models_are_rejected(demo) -> None:
    assert await demo.list_models() == [DEMO_MODEL] and await demo.ping()
    with pytest.raises(BackendRejected, match="only 'garage-demo'"):
        await demo.run(Kind.chat, {"model": "llama3", "messages": []})
